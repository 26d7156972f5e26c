"""One way of writing numbers on every page and in every export, and a budget plan that
says which law it used and how sure it is."""
from __future__ import annotations

import pytest

from engine.budget import BudgetQuestion, decision_uncertainty, law_identity, optimise, plan_record
from engine.charts import fit_record
from engine.laws import FitConfig, fit_law
from engine.formatting import format_loss, format_percent
from store import Store
from tests.test_app import N_LABEL, assert_clean, metric, open_page, press_fit, seeded_store  # noqa: F401

PLANNER = "pages/3_Budget_planner.py"


@pytest.mark.parametrize("value, text", [(0.03, "3.00%"), (0.0455, "4.55%"), (0.00715, "0.715%"), (1.0, "100%"),
                                         (12.5, "1,250%")])
def test_percentages_keep_three_digits(value, text):
    assert format_percent(value) == text


@pytest.mark.parametrize("value, text", [(5.14, "5.140"), (5.0632, "5.063"), (0.25314, "0.2531")])
def test_losses_keep_four_digits(value, text):
    assert format_loss(value) == text


def saved_joint(store: Store, origin: dict) -> tuple[str, object]:
    fit = fit_law(store.law_points(annotation="human"), "joint", FitConfig(bootstrap=60))
    return store.save_fit(**fit_record(fit, "seeded joint", origin)), fit


def test_the_planner_writes_losses_and_shares_as_everywhere_else(seeded_store):
    fit_id, fit = saved_joint(seeded_store, {"source": "test"})
    at = open_page(PLANNER)
    at.selectbox(key="law").set_value(fit_id).run()
    assert_clean(at)
    answer = optimise(fit, BudgetQuestion(20_000.0))
    assert metric(at, "Predicted contrastive entropy") == format_loss(answer.loss)
    regret = decision_uncertainty(fit, BudgetQuestion(20_000.0)).regret_relative
    assert metric(at, "Expected regret of N*") == format_percent(regret)
    labels = [m.label for m in at.metric]
    assert f"Near-optimal N (loss within {format_percent(0.01)})" in labels


def test_the_fit_page_writes_held_out_errors_and_refits_kept(seeded_store):
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_annotation").set_value("human")
    at.radio(key="fit_kind").set_value("joint").run()
    at.number_input(key="fit_holdout_joint").set_value(1)
    at.number_input(key="fit_bootstrap").set_value(100)
    press_fit(at)
    assert_clean(at)
    shown = metric(at, "Held-out mean |error|")
    assert shown == format_percent(float(shown.rstrip("%")) / 100) and len(shown.rstrip("%").replace(".", "")) == 3
    assert any("of 100 bootstrap refits kept" in c.value for c in at.caption)


def test_a_plan_names_its_law_by_parameters_data_set_metric_and_date(seeded_store):
    origin = {"source": "store", "dataset": "msmarco", "annotation": "human", "metric": "raw",
              "protocol": "unrecorded", "fitted_at": "2026-12-02 10:00:00 UTC", "left_out": []}
    fit_id, fit = saved_joint(seeded_store, origin)
    answer = optimise(fit, BudgetQuestion(20_000.0))
    plan = plan_record(law_identity("seeded joint", fit, {**origin, "fit_id": fit_id}), answer,
                       decision_uncertainty(fit, BudgetQuestion(20_000.0)))
    law = plan["law"]
    assert set(law["params"]) == {"A", "B", "alpha", "beta", "delta"}
    assert {law[k] for k in ("dataset", "metric", "fitted_at", "fit_id")} == {"msmarco", "raw", origin["fitted_at"],
                                                                            fit_id}
    assert law["support"]["n"] == list(fit.support["n"]) and "left_out" not in law


def test_the_d_star_interval_leaves_out_laws_that_spend_everything_on_the_model(seeded_store):
    _, fit = saved_joint(seeded_store, {"source": "test"})
    corner = fit.bootstrap_params.copy()
    corner[: len(corner) // 4, 1] = 1e-12          # B ~ 0: data costs nothing in loss, so every dollar buys N
    fit.bootstrap_params = corner
    u = decision_uncertainty(fit, BudgetQuestion(20_000.0))
    assert u.at_bound == pytest.approx(0.25, abs=0.02)
    assert u.d_opt_interval[0] > 100                # not the search's 1-pair end
    assert "end of the search" in u.bound_note()
