"""Figure 5's exchange rates and Figure 2 on the Analysis page: intervals from the
bootstrap draws that give a number, a warning where a rate is a projection far beyond
the measured data sizes, the fits' progress on a first visit, and raw or calibrated
entropy against the ranking metrics."""
from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
from scipy.stats import pearsonr

from engine.analysis import exchange_rate
from engine.laws import FitConfig, fit_law
from store import Store
from store.demo import load_demo, read_demo
from tests.demo_study import DEMO, ICT_SIZES, write_synthetic_demo
from tests.test_app import assert_clean, open_page, table_with

ANALYSIS = "pages/4_Analysis.py"




@pytest.fixture
def synthetic_store(tmp_path) -> Store:
    """A demo-like store whose ICT pairs are worth a hundredth of a human pair (tests/demo_study.py)."""
    store = Store()
    load_demo(store, write_synthetic_demo(tmp_path / "synthetic.json"))
    return store


def data_law(points, bootstrap: int = 40):
    return fit_law(points, "data", FitConfig(bootstrap=bootstrap))


def test_an_interval_comes_from_the_draws_that_give_a_number():
    d = np.array([500, 1000, 2000, 4000, 8000])
    human = data_law(pd_frame(d, 1.0 + 800 / d))
    other = data_law(pd_frame(d, 1.2 + 900 / d))
    other.bootstrap_params[: len(other.bootstrap_params) // 5] = np.inf    # diverged refits of the other type
    rate = exchange_rate({"human": human, "other": other}, "other", 2000.0)
    assert np.isfinite(rate.interval[0]) and not np.isnan(rate.interval[1])
    assert rate.draws == len(other.bootstrap_params) - len(other.bootstrap_params) // 5


def pd_frame(d, loss):
    import pandas as pd

    return pd.DataFrame({"d": d, "loss": loss})


def rates_at(at, n: float):
    at.selectbox(key="analysis_model").set_value(n).run()
    assert_clean(at)
    return table_with(at, "pairs needed").set_index("type")


def demo_sizes() -> list[float]:
    rows = read_demo(DEMO)[1].query("dataset == 'squad-dev' and annotation == 'ict'")
    return sorted(rows["n"].unique())


def test_a_rate_most_draws_reach_has_an_interval_not_not_reached(demo_store):
    at = open_page(ANALYSIS)
    for n in demo_sizes():
        rates = rates_at(at, n)
        share = float(rates.at["ict", "never reached (share of draws)"].rstrip("%")) / 100
        if share < 0.5:                                  # most draws reach the target: a low end exists
            assert rates.at["ict", "low"] not in ("not reached", "n/a"), (n, rates.to_dict())


def test_a_rate_far_beyond_the_measured_data_sizes_is_called_a_projection(synthetic_store):
    at = open_page(ANALYSIS)
    warned = []
    for n in ICT_SIZES:
        rates = rates_at(at, n)
        beyond = rates.at["ict", "beyond its measured D"]
        said = [w.value for w in at.warning if "projection" in w.value and "beyond its measured" in w.value]
        if beyond != "inside" and float(beyond.rstrip("x").replace(",", "")) > 10:
            assert said, (n, beyond)
            warned.append(n)
        else:
            assert not said, (n, beyond)
    assert warned            # ICT worth 1/100 of a human pair: 2,000 human pairs take ~200k, 25x its 8,000


def test_a_first_visit_shows_the_fits_progress(demo_store, monkeypatch):
    import engine.analysis

    st.cache_resource.clear()
    reported, real = [], engine.analysis.fit_law
    monkeypatch.setattr(engine.analysis, "fit_law", lambda *a, progress=None, **k: (
        reported.append(progress is not None), real(*a, progress=progress, **k))[1])
    assert_clean(open_page(ANALYSIS))
    assert reported and all(reported)
    reported.clear()
    assert_clean(open_page(ANALYSIS))
    assert not reported                                  # a later visit finds the fits kept


def test_figure_2_correlates_raw_or_calibrated_entropy(demo_store):
    at = open_page(ANALYSIS)
    at.checkbox(key="analysis_not_overfit").uncheck().run()
    rows = read_demo(DEMO)[1].query("dataset == 'squad-dev' and annotation == 'human'")
    for metric, column in (("raw", "metrics_loss"), ("calibrated", "metrics_calibrated_loss")):
        at.radio(key="analysis_entropy").set_value(metric).run()
        assert_clean(at)
        shown = table_with(at, "pearson").set_index("metric").at["mrr@10", "pearson"]
        assert shown == pytest.approx(pearsonr(rows[column], rows["mrr@10"])[0], abs=1e-3), metric
