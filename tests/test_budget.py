import numpy as np
import pandas as pd
import pytest

from engine.budget import (
    BudgetQuestion,
    CostAssumptions,
    budget_curves,
    decision_uncertainty,
    extrapolation,
    loss_along_budget,
    n_max,
    optimise,
    total_cost,
)
from engine.errors import InputError
from engine.laws import FitConfig, LawFit, ScalingLaw, fit_law, preset

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


# --- decision uncertainty: the budget problem under every bootstrap law ---------------

def synthetic_fit(laws=200, spread=0.05, seed=0, n_support=(5e5, 9e7), d_support=(1e3, 5e5)) -> LawFit:
    """The paper's joint law as a fit whose bootstrap laws scatter its exponents by `spread`."""
    rng = np.random.default_rng(seed)
    names = ["A", "B", "alpha", "beta", "delta"]
    centre = np.array([JOINT.params[k] for k in names])
    boot = centre * np.exp(rng.normal(0, spread, (laws, 5)))
    points = pd.DataFrame({"n": list(n_support), "d": list(d_support), "loss": [1.0, 0.5], "role": "fit"})
    return LawFit(JOINT, 0.99, {}, boot, np.zeros(2), points, FitConfig(bootstrap=laws))


@pytest.mark.parametrize("question", [BudgetQuestion(2e4), BudgetQuestion(1e6, True)])
def test_each_bootstrap_laws_optimum_equals_its_brute_force_grid(question):
    fit = synthetic_fit(laws=40)
    u = decision_uncertainty(fit, question)
    grid = np.geomspace(question.n_min, n_max(question), 200_000)
    for law, n_opt in zip(fit.bootstrap_laws(), u.n_opt_samples):
        assert n_opt == pytest.approx(grid[np.argmin(loss_along_budget(law, question, grid))], rel=1e-3)


def test_decision_intervals_robust_choice_and_regret():
    fit = synthetic_fit()
    question = BudgetQuestion(2e4)
    u = decision_uncertainty(fit, question, level=0.9)
    assert u.n_opt_interval[0] < u.n_opt < u.n_opt_interval[1]
    assert u.d_opt_interval[0] < u.d_opt < u.d_opt_interval[1]
    assert np.mean((u.n_opt_samples >= u.n_opt_interval[0]) & (u.n_opt_samples <= u.n_opt_interval[1])) \
        == pytest.approx(0.9, abs=0.01)
    # the robust choice minimises the mean loss of the bootstrap laws: no grid point beats it
    grid = np.geomspace(question.n_min, n_max(question), 20_000)
    mean = np.mean([loss_along_budget(law, question, grid) for law in fit.bootstrap_laws()], axis=0)
    assert u.n_robust == pytest.approx(grid[np.argmin(mean)], rel=1e-2)
    assert 0 <= u.regret_robust <= u.regret
    assert total_cost(u.n_robust, u.d_robust, question.costs, False) == pytest.approx(question.budget)
    wider = decision_uncertainty(synthetic_fit(spread=0.15), question, level=0.9)
    assert np.log(wider.n_opt_interval[1] / wider.n_opt_interval[0]) > np.log(u.n_opt_interval[1] / u.n_opt_interval[0])
    assert wider.regret > u.regret


def test_extrapolation_factor_and_warning():
    question = BudgetQuestion(2e4)                     # N* = 6.8e9 under the paper's law
    far = decision_uncertainty(synthetic_fit(), question).extrapolation
    assert far.n == pytest.approx(optimise(JOINT, question).n_opt / 9e7, rel=1e-6)
    assert far.d == 1.0                                # D* = 33k lies inside 1e3-5e5
    assert far.beyond_warning and "Warning" in far.describe()
    near = extrapolation(synthetic_fit(n_support=(1e8, 1e10)), 6.8e9, 3e4)
    assert near.n == 1.0 and not near.beyond_warning and "Warning" not in near.describe()
    below = extrapolation(synthetic_fit(n_support=(1e8, 1e10)), 1e7, 3e4)
    assert below.n == pytest.approx(10.0)


def test_decision_uncertainty_needs_bootstrap_laws():
    fit = synthetic_fit()
    fit.bootstrap_params = np.empty((0, 5))
    with pytest.raises(InputError, match="no bootstrap laws"):
        decision_uncertainty(fit, BudgetQuestion(2e4))
    with pytest.raises(InputError, match="confidence level"):
        decision_uncertainty(synthetic_fit(), BudgetQuestion(2e4), level=1.5)


@pytest.mark.parametrize("field, value", [("n_min", 0), ("n_min", -1e3), ("n_min", np.nan),
                                          ("band_tolerance", 0), ("band_tolerance", -0.1),
                                          ("band_tolerance", np.nan)])
def test_question_refuses_non_positive_settings(field, value):
    with pytest.raises(InputError, match=field):
        BudgetQuestion(2e4, **{field: value})


def test_budget_plans_with_the_additive_form():
    additive = ScalingLaw("additive", {"A": 400.0, "B": 60.0, "alpha": 0.34, "beta": 0.28, "E": 1.0})
    question = BudgetQuestion(1e5)
    answer = optimise(additive, question)
    grid = np.geomspace(question.n_min, n_max(question), 200_000)
    assert answer.n_opt == pytest.approx(grid[np.argmin(loss_along_budget(additive, question, grid))], rel=1e-3)
    boot = np.array([list(additive.params.values())] * 30) * np.exp(np.random.default_rng(1).normal(0, 0.03, (30, 5)))
    fit = LawFit(additive, 0.99, {}, boot, np.zeros(2), pd.DataFrame({"n": [1e5, 1e8], "d": [1e3, 1e5],
                                                                      "loss": [2.0, 1.5], "role": "fit"}))
    u = decision_uncertainty(fit, question)
    for law, n_opt in zip(fit.bootstrap_laws(), u.n_opt_samples):
        assert n_opt == pytest.approx(grid[np.argmin(loss_along_budget(law, question, grid))], rel=1e-3)


def test_degenerate_bootstrap_laws_are_left_out_and_named():
    fit = synthetic_fit(laws=20)
    fit.bootstrap_params[3] = [np.inf, 7e3, 0.5, 1.3, 0.03]        # a refit whose scale overflowed
    fit.bootstrap_params[7, 3] = np.nan
    u = decision_uncertainty(fit, BudgetQuestion(2e4))
    assert u.laws == 18 and not u.kept[3] and not u.kept[7] and u.kept.sum() == 18


def test_a_devices_own_runs_price_training_in_its_hours():
    """Two runs of the largest model, 1,000 steps of 32 queries (32 tokens) with 64 shared
    negatives (96 tokens each), took 100 s and 300 s: the device did 6 N tokens FLOPs in
    400 s, and a model of that size trained the same way costs 200 s of it."""

    from engine.budget import measured_hardware

    config = {"batch_size": 32, "max_query_length": 32, "max_passage_length": 96, "negatives": 64}
    runs = pd.DataFrame({"run_id": ["a", "b", "small"], "n_params": [1e6, 1e6, 1e4],
                         "wall_time_s": [100.0, 300.0, 1.0], "config": [config] * 3})
    hardware = measured_hardware(runs, {"a": 1000, "b": 1000, "small": 10})
    tokens = 32 * 32 + 96 * 96
    assert hardware.runs == 2 and hardware.passages_per_query == 3 and hardware.steps == 1000
    assert hardware.flops_per_s == pytest.approx(6 * 1e6 * tokens * 2000 / 400)
    costs = hardware.costs(1.0, price_per_pair=0.5)  # $1 per hour: dollars are device hours
    assert costs.z_train * 1e6 * 3600 == pytest.approx(200.0)
    answer = optimise(preset("paper-joint"), BudgetQuestion(10.0, costs=costs))
    assert answer.device_hours["training"] == pytest.approx(answer.spend["training"])
    with pytest.raises(InputError, match="no completed run with a wall time"):
        measured_hardware(runs, {})
