"""What keeps a number on the page honest: published laws carry the paper's sizes and
the projection warning, a shared link says what it dropped, charts hold their points."""
from __future__ import annotations

import pytest

from engine.budget import BudgetQuestion, optimise, preset_support
from engine.formatting import format_count
from engine.laws import preset
from tests.helpers import N_LABEL, assert_clean, metric, open_page

PLANNER = "pages/3_Budget_planner.py"


@pytest.mark.slow
@pytest.mark.parametrize("query", [{}, {"inference": "true", "budget": "10k"}])
def test_the_paper_preset_warns_when_n_star_lies_beyond_its_ladder(query):
    at = open_page(PLANNER, query=query)
    assert_clean(at)
    answer = optimise(preset("paper-joint"), BudgetQuestion(float(at.select_slider(key="budget").value),
                                                            bool(at.toggle(key="inference").value)))
    assert metric(at, N_LABEL) == format_count(answer.n_opt)
    lo, hi = preset_support("paper-joint")["n"]
    assert not lo <= answer.n_opt <= hi                  # 6.77B above BERT-Base; 10.9k below BERT-Tiny
    warning = " ".join(w.value for w in at.warning)
    assert "projection" in warning and f"the paper's {format_count(lo)} to {format_count(hi)} parameters" in warning


@pytest.mark.slow
def test_the_overviews_paper_answer_carries_the_same_warning():
    at = open_page()
    assert_clean(at)
    assert sum("projection" in w.value and "the paper's" in w.value for w in at.warning) == 2


def link_warnings(at) -> list[str]:
    return [w.value for w in at.warning if w.value.startswith("This link asks for")]


@pytest.mark.slow
def test_a_link_naming_a_law_this_store_lacks_says_so():
    at = open_page(PLANNER, query={"law": "their joint fit [1a2b3c]", "budget": "50k"})
    assert_clean(at)
    [said] = link_warnings(at)
    assert "the law = their joint fit [1a2b3c]" in said and "does not hold" in said and "paper-joint instead" in said
    assert at.select_slider(key="budget").value == 50_000     # the rest of the link still holds


@pytest.mark.slow
def test_every_value_a_link_loses_is_named_and_a_good_link_gives_no_warning():
    at = open_page(PLANNER, query={"tolerance": "50", "inference": "maybe", "price_per_pair": "0.60"})
    assert_clean(at)
    said = " ".join(link_warnings(at))
    assert "band tolerance = 50" in said and "with inference cost = maybe" in said
    assert "Price per annotated pair" not in said              # 0.60 is the paper's 0.6: used, not lost
    good = open_page(PLANNER, query={"budget": "1M", "inference": "true", "compare": ["5k", "50k"]})
    assert not link_warnings(good) and good.multiselect(key="compare").value == [5_000, 50_000]


# --- charts that stay readable when the law is weak ---------------------------------

def scale_domains(spec: dict, channel: str) -> list[list[float]]:
    return [layer["encoding"][channel]["scale"]["domain"] for layer in spec["layer"]
            if "domain" in layer.get("encoding", {}).get(channel, {}).get("scale", {})]


def test_the_law_chart_holds_its_points_not_a_curve_that_runs_off_left_of_them():
    import pandas as pd

    from engine.charts import law_chart, law_curves, padded_range
    from engine.laws import ScalingLaw

    steep = ScalingLaw("joint", {"A": 2e6, "B": 1e3, "alpha": 6.0, "beta": 1.0, "delta": 1.0})
    points = pd.DataFrame({"n": [2e6, 4e6, 8e6, 1.6e7], "d": 1e5, "role": "fit"})
    points["loss"] = steep.predict(points["n"], points["d"])
    curves = law_curves(steep, "n", padded_range(points["n"], factor=3), [1e5])
    assert curves["pred"].max() > 10 * points["loss"].max()       # the curve left of the smallest N runs off
    [domain] = set(map(tuple, scale_domains(law_chart(points, curves, "n").to_dict(), "y")))
    assert domain[0] <= points["loss"].min() and points["loss"].max() <= domain[1] <= 1.1 * points["loss"].max()


def test_the_budget_chart_of_a_weak_law_spreads_its_curves_and_keeps_every_mark_inside():
    from engine.budget import (
        BudgetQuestion,
        budget_curves,
        decision_uncertainty,
        optimise,
    )
    from engine.charts import budget_chart, optima_table
    from engine.laws import FitConfig, fit_law
    from tests.test_laws import flat_points

    fit = fit_law(flat_points(), "joint", FitConfig(bootstrap=60))   # exponents near 0.04: a flat, weak law
    budgets = [5_000.0, 20_000.0, 50_000.0, 500_000.0]
    answers = [optimise(fit, BudgetQuestion(b)) for b in budgets]
    optima = optima_table(answers, 0.01)
    curves = budget_curves(fit, budgets, False)
    spec = budget_chart(curves, optima, 20_000.0, decision_uncertainty(fit, BudgetQuestion(20_000.0)),
                        fit.support["n"]).to_dict()
    [(y_lo, y_hi)] = set(map(tuple, scale_domains(spec, "y")))
    [(x_lo, x_hi)] = set(map(tuple, scale_domains(spec, "x")))
    for loss in [*optima["loss"], *optima["band_loss"]]:
        assert y_lo < loss < y_hi
    ticks = [row["loss"] for rows in spec["datasets"].values() for row in rows if set(row) >= {"share", "loss"}]
    assert ticks and all(y_lo < t < min(optima["loss"]) for t in ticks)   # the spread has a strip of its own
    assert y_hi <= 1.05 * curves["loss"].max()                    # no empty band above the curves
    for n in [*optima["n_opt"], *optima["band_lo"], *optima["band_hi"]]:
        assert x_lo < n < x_hi                                    # no diamond or band end on the edge


@pytest.mark.slow
def test_errors_on_a_page_name_settings_not_command_line_flags(seeded_store):
    from engine.charts import fit_record
    from engine.laws import FitConfig, fit_law
    from store import Store

    few = fit_law(Store().law_points(annotation="human"), "joint", FitConfig(bootstrap=5))
    Store().save_fit(**fit_record(few, "five refits", {"source": "test"}))
    at = open_page("pages/5_Plan_runs.py")
    source = next(s for s in at.selectbox if s.label == "Fitted law")
    source.set_value(next(o for o in source.options if o.startswith("five refits"))).run()
    next(b for b in at.button if b.label == "Plan").click().run()
    assert not at.exception and at.error
    assert not [e.value for e in at.error if "--" in e.value]
