import numpy as np
import pandas as pd
import pytest

from engine.budget import (BudgetQuestion, CostAssumptions, budget_curves, loss_along_budget, n_max,
                           optimise, total_cost)
from engine.errors import InputError
from engine.laws import FitConfig, fit_law, preset

JOINT = preset("paper-joint")


def test_defaults_reproduce_eq_13_and_14():
    costs = CostAssumptions()
    assert costs.z_data == 0.6                                    # Eq. 12
    assert costs.z_train == pytest.approx(3.22e-8, rel=0.01)      # Eq. 13
    assert costs.z_infer == pytest.approx(0.43, rel=0.01)         # Eq. 14
    # Eq. 13 written out as the paper prints it
    assert costs.z_train == pytest.approx(10000 * (30 + 2 * 60) * 256 * 6 * 3.93 / (312e12 * 3600 * 0.25))


def test_total_cost_is_eq_11():
    costs = CostAssumptions()
    assert total_cost(1e6, 1000, costs, True) == pytest.approx(0.6 * 1000 + (costs.z_train + costs.z_infer) * 1e6)
    assert total_cost(1e6, 1000, costs, False) == pytest.approx(0.6 * 1000 + costs.z_train * 1e6)


@pytest.mark.parametrize("budget, with_inference", [(2e4, False), (1e5, False), (2e4, True), (1e6, True), (1e7, True)])
def test_optimum_equals_brute_force_grid(budget, with_inference):
    question = BudgetQuestion(budget, with_inference)
    answer = optimise(JOINT, question)
    grid = np.geomspace(question.n_min, n_max(question), 400_000)
    losses = loss_along_budget(JOINT, question, grid)
    assert answer.n_opt == pytest.approx(grid[np.argmin(losses)], rel=1e-3)
    assert answer.loss == pytest.approx(losses.min(), rel=1e-9)
    assert answer.loss <= losses.min() + 1e-12
    # the whole budget is spent
    assert total_cost(answer.n_opt, answer.d_opt, question.costs, with_inference) == pytest.approx(budget)


def test_band_edges_are_within_tolerance_and_contain_optimum():
    question = BudgetQuestion(2e4)
    answer = optimise(JOINT, question)
    lo, hi = answer.band
    assert lo < answer.n_opt < hi
    for edge in (lo, hi):
        assert loss_along_budget(JOINT, question, edge) == pytest.approx(answer.loss * 1.01, rel=1e-6)
    wider = optimise(JOINT, BudgetQuestion(2e4, band_tolerance=0.05)).band
    assert wider[0] < lo and wider[1] > hi


def test_inference_cost_shrinks_the_optimal_model():
    without = optimise(JOINT, BudgetQuestion(1e6, False))
    with_inf = optimise(JOINT, BudgetQuestion(1e6, True))
    assert with_inf.n_opt < without.n_opt / 100
    assert 1e5 < with_inf.n_opt < 1e8                               # "million-scale" (Section 5)


def test_cheaper_annotation_buys_more_data_and_moves_the_optimum():
    base = optimise(JOINT, BudgetQuestion(2e4))
    cheap = optimise(JOINT, BudgetQuestion(2e4, costs=CostAssumptions(price_per_pair=0.06)))
    assert cheap.d_opt > base.d_opt
    assert cheap.n_opt != pytest.approx(base.n_opt, rel=0.01)


def test_fitted_law_gives_a_loss_interval():
    rng = np.random.default_rng(0)
    n, d = np.meshgrid(np.geomspace(5e5, 9e7, 8), np.geomspace(1e3, 5e5, 4))
    n, d = n.ravel(), d.ravel()
    points = pd.DataFrame({"n": n, "d": d, "loss": JOINT.predict(n, d) * np.exp(rng.normal(0, 0.01, n.size))})
    fit = fit_law(points, "joint", FitConfig(bootstrap=100))
    answer = optimise(fit, BudgetQuestion(1e6, True))
    lo, hi = answer.loss_interval
    assert lo < answer.loss < hi


def test_curves_have_one_minimum_per_budget_at_the_optimum():
    curves = budget_curves(JOINT, [1e4, 1e5], with_inference=False, points=2000)
    assert set(curves["budget"]) == {1e4, 1e5}
    for budget, curve in curves.groupby("budget"):
        best_n = curve.loc[curve["loss"].idxmin(), "n"]
        assert best_n == pytest.approx(optimise(JOINT, BudgetQuestion(budget)).n_opt, rel=0.02)
        assert (curve["d"] >= 1).all()


def test_impossible_budget_is_explained():
    with pytest.raises(InputError, match="cannot pay for the smallest model"):
        optimise(JOINT, BudgetQuestion(100, with_inference=True))
    with pytest.raises(InputError, match="positive number of dollars"):
        optimise(JOINT, BudgetQuestion(0))
    with pytest.raises(InputError, match="positive number of dollars"):
        optimise(JOINT, BudgetQuestion(-5))


@pytest.mark.parametrize("field", ["price_per_pair", "gpu_price_per_hour", "utilisation", "peak_flops"])
def test_zero_or_negative_prices_are_refused(field):
    for value in (0, -1):
        with pytest.raises(InputError, match=field):
            CostAssumptions(**{field: value})


def test_law_without_d_is_refused():
    with pytest.raises(InputError, match="needs the joint law"):
        optimise(preset("paper-msmarco-model"), BudgetQuestion(2e4))
    with pytest.raises(InputError, match="needs the joint law"):
        optimise(preset("paper-msmarco-data"), BudgetQuestion(2e4))
