"""Annotation-quality analysis (engine/analysis.py) on synthetic laws with known answers."""
import numpy as np
import pandas as pd
import pytest

from engine.analysis import (
    annotation_curves,
    crossing_points,
    exchange_rate,
    fit_annotation_laws,
    metric_correlations,
    pairs_for_loss,
)
from engine.errors import InputError
from engine.laws import FitConfig, ScalingLaw

LAWS = {   # annotation -> (B, beta, delta) of Eq. 7
    "human": (3.49e3, 1.05, 0.05),     # the paper's MS MARCO fit
    "llm": (2.0e4, 0.70, 0.07),
    "ict": (5.0e4, 0.40, 0.60),        # a floor far above what human pairs reach
}
D = np.geomspace(1e3, 5e5, 7)


def law(name):
    B, beta, delta = LAWS[name]
    return ScalingLaw("data", {"B": B, "beta": beta, "delta": delta})


@pytest.fixture(scope="module")
def fits():
    rng = np.random.default_rng(0)
    rows = [{"annotation": name, "d": d, "loss": float(law(name).predict(d=d)) * np.exp(rng.normal(0, 0.005))}
            for name in LAWS for d in D for _ in range(2)]
    return fit_annotation_laws(pd.DataFrame(rows), FitConfig(bootstrap=200, seed=1))


def test_one_law_per_annotation_type(fits):
    assert set(fits) == set(LAWS)
    for name, (B, beta, delta) in LAWS.items():
        params = fits[name].law.params
        assert params["beta"] == pytest.approx(beta, rel=0.05)
        assert params["delta"] == pytest.approx(delta, rel=0.1, abs=0.005)


def test_pairs_for_loss_inverts_eq7():
    human = law("human")
    for d in (1e3, 4.2e4, 3e6):
        assert pairs_for_loss(human, float(human.predict(d=d))) == pytest.approx(d, rel=1e-9)
    assert pairs_for_loss(human, 0.05) == float("inf") == pairs_for_loss(human, 0.01)
    with pytest.raises(InputError, match="data-size law"):
        pairs_for_loss(ScalingLaw("model", {"A": 1e4, "alpha": 0.5, "delta": 0.1}), 0.5)


def test_exchange_rate_matches_the_known_answer(fits):
    n = 1e4
    target = float(law("human").predict(d=n))                            # 0.381
    B, beta, delta = LAWS["llm"]
    expected = B * (target - delta) ** (-1 / beta)                       # Eq. 7 of llm solved for D: 1.06e5
    rate = exchange_rate(fits, "llm", n)
    assert rate.target_loss == pytest.approx(target, rel=0.01)
    assert rate.pairs == pytest.approx(expected, rel=0.05)
    assert rate.reachable and rate.ratio == pytest.approx(rate.pairs / n) and rate.ratio > 5
    lo, hi = rate.interval
    assert lo <= rate.pairs <= hi and lo < expected < hi and hi < 2 * expected
    assert rate.level == 0.95 and rate.p_unreachable < 0.05
    assert "llm needs" in rate.describe()
    same = exchange_rate(fits, "human", n)
    assert same.pairs == pytest.approx(n, rel=1e-6)


def test_exchange_rate_says_never_when_the_floor_is_above_the_target(fits):
    rate = exchange_rate(fits, "ict", 1e5)
    assert not rate.reachable and rate.pairs == float("inf")
    assert rate.p_unreachable == 1.0 and rate.interval == (float("inf"), float("inf"))
    assert "never" in rate.describe() and "floor" in rate.describe()


def test_exchange_rate_refuses_unknown_types(fits):
    with pytest.raises(InputError, match="no fitted law for annotation 'docT5query'"):
        exchange_rate(fits, "docT5query", 1e4)
    with pytest.raises(InputError, match="positive"):
        exchange_rate(fits, "llm", 0)


def test_crossing_point_of_two_known_laws():
    a = ScalingLaw("data", {"B": 1e4, "beta": 1.0, "delta": 0.10})       # a(1e5) = 0.2
    b = ScalingLaw("data", {"B": 250.0, "beta": 0.5, "delta": 0.15})     # b(1e5) = 0.2
    (cross,) = crossing_points(a, b, 1.0, 1e12)
    assert cross == pytest.approx(1e5, rel=1e-6)
    assert crossing_points(a, b, 1e6, 1e9) == []
    assert crossing_points(a, a, 1.0, 1e6) == []                         # the same curve: no crossing
    with pytest.raises(InputError):
        crossing_points(a, b, 10.0, 1.0)


def test_crossing_points_accept_fits(fits):
    crossings = crossing_points(fits["human"], fits["ict"], 10.0, 1e9)
    assert len(crossings) == 1
    d = crossings[0]
    assert float(fits["human"].law.predict(d=d)) == pytest.approx(float(fits["ict"].law.predict(d=d)), rel=1e-6)


def test_annotation_curves_for_one_chart(fits):
    curves = annotation_curves(fits, [1e3, 1e4, 1e5])
    assert list(curves.columns) == ["annotation", "d", "loss", "ci_lo", "ci_hi"]
    assert len(curves) == 9
    assert (curves["ci_lo"] <= curves["loss"] + 1e-12).all() and (curves["loss"] <= curves["ci_hi"] + 1e-12).all()


def test_fit_annotation_laws_says_which_type_is_short_of_points():
    points = pd.DataFrame({"annotation": ["human"] * 5 + ["llm"] * 2, "d": [1e3, 1e4, 1e5, 1e6, 1e7, 1e3, 1e4],
                           "loss": [3.0, 0.5, 0.1, 0.06, 0.055, 4.0, 1.0]})
    with pytest.raises(InputError, match="annotation 'llm'"):
        fit_annotation_laws(points, FitConfig(bootstrap=0))
    with pytest.raises(InputError, match="no annotation type"):
        fit_annotation_laws(points.assign(annotation=["human"] * 6 + [None]))
    with pytest.raises(InputError, match="missing \\['annotation'\\]"):
        fit_annotation_laws(points.drop(columns="annotation"))


def test_metric_correlations_have_the_right_sign():
    rng = np.random.default_rng(0)
    entropy = rng.uniform(0.1, 2.0, 40)
    runs = pd.DataFrame({"contrastive_entropy": entropy,
                         "mrr@10": 0.4 - 0.15 * entropy + rng.normal(0, 0.01, 40),
                         "recall@1000": 0.99 - 0.2 * entropy ** 2 + rng.normal(0, 0.01, 40),
                         "ndcg@10": 0.3,                                   # constant: undefined
                         "noise": rng.normal(size=40)})
    runs.loc[3, "mrr@10"] = None
    table = metric_correlations(runs).set_index("metric")
    assert list(table.index) == ["mrr@10", "ndcg@10", "recall@1000"]      # map@10 absent, noise ignored
    assert table.loc["mrr@10", "n_runs"] == 39
    assert table.loc["mrr@10", "pearson"] < -0.95 and table.loc["mrr@10", "spearman"] < -0.95
    assert table.loc["recall@1000", "spearman"] < -0.95 and table.loc["recall@1000", "pearson_p"] < 1e-6
    assert np.isnan(table.loc["ndcg@10", "pearson"])
    positive = metric_correlations(runs.assign(**{"map@10": 0.1 + entropy}), metrics=["map@10"])
    assert positive.loc[0, "pearson"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="contrastive_entropy"):
        metric_correlations(runs.drop(columns="contrastive_entropy"))
    with pytest.raises(InputError, match="none of the metric columns"):
        metric_correlations(runs[["contrastive_entropy", "noise"]])
