"""One way of writing numbers on every page and in every export, and a budget plan that
says which law it used and how sure it is."""
from __future__ import annotations

import pandas as pd
import pytest

from engine.budget import (
    BudgetQuestion,
    decision_uncertainty,
    law_identity,
    optimise,
    plan_record,
)
from engine.charts import fit_record
from engine.formatting import format_loss, format_percent
from engine.laws import FitConfig, fit_law, preset
from store import Store
from tests.helpers import assert_clean, metric, open_page, press_fit, table_with

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.parametrize("value, text", [(6.77e9, "6.77B"), (39_000, "39k"), (39_104, "39.1k"), (999_999, "1M"),
                                         (5.422e14, "542T"), (512, "512"), (0.25, "0.25"), (None, "n/a"),
                                         (float("nan"), "n/a")])
def test_format_count(value, text):
    from engine.formatting import format_count

    assert format_count(value) == text


def test_coefficients_and_r2_are_never_long_integers_or_none():
    from engine.formatting import format_coefficient, format_r2

    assert format_coefficient(5.422e14) == "5.422e+14" and format_coefficient(0.5377) == "0.5377"
    assert format_r2(None) == "n/a" and format_r2(float("nan")) == "n/a" and format_r2(0.99123) == "0.9912"


def test_axis_ticks_use_the_suffixes_of_format_count():
    import json

    from engine.budget import BudgetQuestion, budget_curves, optimise
    from engine.charts import (
        budget_chart,
        law_chart,
        law_curves,
        optima_table,
        training_curve,
    )
    from engine.formatting import COUNT_LABEL_EXPR, SUFFIXES

    for threshold, suffix in SUFFIXES:
        assert f">= {threshold:g} ? format(datum.value / {threshold:g}, '.3~g') + '{suffix}'" in COUNT_LABEL_EXPR
    law = preset("paper-joint")
    answer = optimise(law, BudgetQuestion(20_000))
    charts = [law_chart(pd.DataFrame(), law_curves(law, "n", (1e5, 1e9), [1e5]), "n"),
              budget_chart(budget_curves(law, [20_000], False), optima_table([answer], 0.01), 20_000),
              training_curve(pd.DataFrame({"step": [100, 200], "loss": [1.0, 0.9]}), "loss", "loss")]
    for chart in charts:
        spec = json.dumps(chart.to_dict())
        assert COUNT_LABEL_EXPR.replace("'", "\\'") in spec or json.dumps(COUNT_LABEL_EXPR) in spec
        assert '"~s"' not in spec and '".3s"' not in spec, "SI suffixes (G) would disagree with B"


@pytest.mark.slow
def test_the_overview_writes_a_missing_r2_as_n_a():
    at = open_page()
    presets = table_with(at, "preset").set_index("preset")
    assert presets.at["paper-joint", "R²"] == "n/a"


FIT_PAGE = "pages/2_Fit_laws.py"


@pytest.mark.slow
def test_the_fit_tables_write_coefficients_with_four_digits(seeded_store):
    from engine.formatting import format_coefficient

    at = open_page(FIT_PAGE)
    table = table_with(at, "parameter")
    assert not table["value"].str.contains(r"\d{7,}").any(), list(table["value"])   # was 110200000000000
    assert table.set_index("parameter").at["alpha", "value"] == format_coefficient(float(table.set_index(
        "parameter").at["alpha", "value"]))


@pytest.fixture
def downloads(monkeypatch):
    """Every download button drawn: (label, data, file_name)."""
    from streamlit.delta_generator import DeltaGenerator

    drawn, real = [], DeltaGenerator.download_button

    def download_button(self, label, data, file_name=None, *args, **kwargs):
        drawn.append((label, data, file_name))
        return real(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", download_button)
    return drawn


@pytest.mark.slow
def test_exports_name_the_fit_and_get_distinct_file_names(seeded_store, downloads):
    import io
    import json

    at = open_page(FIT_PAGE)
    at.radio(key="fit_kind").set_value("data").run()
    exported = {}
    for annotation in ("human", "doct5query"):
        downloads.clear()
        at.selectbox(key="fit_annotation").set_value(annotation).run()
        at.button(key="fit_submit").click().run()
        assert_clean(at)
        exported[annotation] = {label: (data, name) for label, data, name in downloads}
    names = [name for files in exported.values() for _, name in files.values()]
    assert len(set(names)) == len(names), names
    data, name = exported["doct5query"]["Export JSON"]
    payload = json.loads(data)
    assert "doct5query" in name and "msmarco" in name and name.endswith(".json")
    assert payload["dataset"] == "msmarco" and payload["annotation"] == "doct5query" and payload["law"] == "data"
    assert "left_out" in payload and payload["held_out"] == "none" and payload["fitted_at"].startswith("20")
    assert "doct5query" in payload["fit"] and "doct5query" in exported["doct5query"]["Export Python"][0]
    assert set(pd.read_csv(io.StringIO(exported["doct5query"]["Export CSV"][0]))["fit"]) == {payload["fit"]}


@pytest.mark.slow
def test_a_saved_fit_exported_from_the_store_says_where_it_came_from(seeded_store, tmp_path):
    import json

    at = open_page(FIT_PAGE)
    at.text_input(key="fit_save_name").input("model law, human")
    next(b for b in at.button if b.label == "Save the fit to the store").click().run()
    out = seeded_store.export("fits", "json", tmp_path / "fits.json")
    [fit] = json.loads(out.read_text())
    origin = (json.loads(fit["config"]) if isinstance(fit["config"], str) else fit["config"])["origin"]
    assert origin["dataset"] == "msmarco" and origin["annotation"] == "human" and origin["law"] == "model"
    assert "left_out" in origin and origin["fitted_at"].startswith("20") and fit["name"] == "model law, human"
