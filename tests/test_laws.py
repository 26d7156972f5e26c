from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.fit_files import fit_from_dict
from engine.identifiability import compare_laws, identifiability
from engine.laws import (
    PRESETS,
    FitConfig,
    ScalingLaw,
    fit_law,
    joint_law,
    model_size_law,
    preset,
)

N_GRID = np.geomspace(5e5, 9e7, 12)          # the paper's BERT range
D_GRID = np.geomspace(1e3, 5e5, 10)


def noisy(values, rng, sigma=0.01):
    return values * np.exp(rng.normal(0, sigma, np.shape(values)))


def model_points(rng, law_name="paper-msmarco-model"):
    return pd.DataFrame({"n": N_GRID, "loss": noisy(preset(law_name).predict(N_GRID), rng)})


def data_points(rng, law_name="paper-msmarco-data"):
    return pd.DataFrame({"d": D_GRID, "loss": noisy(preset(law_name).predict(d=D_GRID), rng)})


def joint_points(rng):
    n, d = np.meshgrid(np.geomspace(5e5, 9e7, 10), np.geomspace(1e3, 5e5, 5))
    n, d = n.ravel(), d.ravel()
    return pd.DataFrame({"n": n, "d": d, "loss": noisy(preset("paper-joint").predict(n, d), rng)})


def test_equations_match_the_paper():
    assert model_size_law(1e6, 1e6, 0.5, 0.1) == pytest.approx(1.1)
    assert model_size_law(4e6, 1e6, 0.5, 0.0) == pytest.approx(0.5)
    # Eq. 8 with B/D -> 0 reduces to Eq. 6 with the same A and alpha
    assert joint_law(2e6, 1e30, 3.6e4, 7.1e3, 0.56, 1.31, 0.03) == pytest.approx(
        model_size_law(2e6, 3.6e4, 0.56, 0.03), rel=1e-9)


@pytest.mark.parametrize("points, kind, name", [
    (model_points, "model", "paper-msmarco-model"), (model_points, "model", "paper-t2ranking-model"),
    (data_points, "data", "paper-msmarco-data"), (data_points, "data", "paper-t2ranking-data"),
])
def test_one_variable_laws_recover_exponents(points, kind, name):
    rng = np.random.default_rng(7)
    fit = fit_law(points(rng, name), kind, FitConfig(bootstrap=0))
    truth = preset(name).params
    exponent = "alpha" if kind == "model" else "beta"
    assert fit.law.params[exponent] == pytest.approx(truth[exponent], abs=0.02)
    assert fit.r2 > 0.99


def test_joint_law_recovers_exponents():
    fit = fit_law(joint_points(np.random.default_rng(3)), "joint", FitConfig(bootstrap=0))
    truth = preset("paper-joint").params
    assert fit.law.params["alpha"] == pytest.approx(truth["alpha"], abs=0.02)
    assert fit.law.params["beta"] == pytest.approx(truth["beta"], abs=0.02)


def test_fit_is_deterministic():
    points = model_points(np.random.default_rng(1))
    first = fit_law(points, "model", FitConfig(bootstrap=20)).law.params
    assert fit_law(points, "model", FitConfig(bootstrap=20)).law.params == first


def test_huber_fit_resists_one_bad_run():
    points = model_points(np.random.default_rng(2))
    points.loc[5, "loss"] *= 1.6                 # one diverged run
    fit = fit_law(points, "model", FitConfig(bootstrap=0))
    assert fit.law.params["alpha"] == pytest.approx(0.53, abs=0.03)


@pytest.mark.parametrize("kind", ["model", "data", "joint"])
def test_bootstrap_intervals_cover_truth_in_most_trials(kind):
    make = {"model": model_points, "data": data_points, "joint": joint_points}[kind]
    truth = {"model": preset("paper-msmarco-model"), "data": preset("paper-msmarco-data"),
             "joint": preset("paper-joint")}[kind].params
    trials, covered = 12, {name: 0 for name in truth}
    for seed in range(trials):
        fit = fit_law(make(np.random.default_rng(100 + seed)), kind, FitConfig(bootstrap=150, seed=seed))
        for name, (lo, hi) in fit.intervals.items():
            covered[name] += lo <= truth[name] <= hi
    for name, hits in covered.items():
        assert hits / trials >= 0.6, f"{name} covered in {hits}/{trials} trials"


def test_prediction_interval_contains_prediction_and_widens_with_extrapolation():
    fit = fit_law(model_points(np.random.default_rng(4)), "model", FitConfig(bootstrap=200))
    band = fit.predict_interval(n=[1e7, 1e10])
    assert np.all(band["pi_lo"] <= band["pred"]) and np.all(band["pred"] <= band["pi_hi"])
    width = (band["ci_hi"] - band["ci_lo"]) / band["pred"]
    assert width[1] > width[0]


def test_holdout_largest_reports_heldout_error():
    fit = fit_law(model_points(np.random.default_rng(5)), "model", FitConfig(bootstrap=50, holdout_largest=2))
    held = fit.heldout
    assert sorted(held["n"]) == sorted(N_GRID[-2:])
    assert (fit.points["role"] == "fit").sum() == len(N_GRID) - 2
    assert np.all(np.abs(held["rel_error"]) < 0.05)
    assert np.all(held["pi_lo"] < held["pi_hi"])


def test_json_round_trip_keeps_law_and_intervals():
    fit = fit_law(data_points(np.random.default_rng(6)), "data", FitConfig(bootstrap=30))
    again = fit_from_dict(fit.to_dict())
    assert again.law.params == fit.law.params
    assert again.intervals == fit.intervals
    assert again.bootstrap_params.shape == fit.bootstrap_params.shape


def test_presets_are_the_papers_tables():
    assert PRESETS["paper-msmarco-model"].law.params == {"A": 3.22e4, "alpha": 0.53, "delta": 0.04}
    assert PRESETS["paper-t2ranking-data"].law.params == {"B": 6.04e4, "beta": 0.50, "delta": 0.15}
    assert PRESETS["paper-joint"].law.params["beta"] == 1.31


@pytest.mark.parametrize("points, kind, message", [
    (pd.DataFrame({"n": [1e6, 2e6, 3e6], "loss": [1, 0.9, 0.8]}), "model", "at least 4 points"),
    (pd.DataFrame({"n": [1e6, -2e6, 3e6, 4e6], "loss": [1, 0.9, 0.8, 0.7]}), "model", "positive and finite"),
    (pd.DataFrame({"n": [1e6, 2e6, 3e6, 4e6], "loss": [1, np.nan, 0.8, 0.7]}), "model", "positive and finite"),
    (pd.DataFrame({"n": [1e6, 2e6, np.inf, 4e6], "loss": [1, 0.9, 0.8, 0.7]}), "model", "positive and finite"),
    (pd.DataFrame({"n": [1e6] * 5, "loss": [1, 0.9, 0.8, 0.7, 0.6]}), "model", "3 distinct model sizes"),
    (pd.DataFrame({"d": [1e3] * 5, "loss": [1, 0.9, 0.8, 0.7, 0.6]}), "data", "3 distinct data sizes"),
    (pd.DataFrame({"n": [1e6, 2e6, 3e6, 4e6], "loss": [1, 0.9, 0.8, 0.7]}), "data", "missing ['d']"),
    (pd.DataFrame({"n": [1e6, 2e6, 3e6, 4e6], "loss": [1, 0.9, 0, 0.7]}), "model", "positive and finite"),
    (pd.DataFrame({"n": [1e6, 2e6, 3e6, 4e6], "loss": [1, 0.9, 0.8, 0.7]}), "quadratic", "unknown law"),
])
def test_bad_points_get_clear_errors(points, kind, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        fit_law(points, kind, FitConfig(bootstrap=0))


def test_holding_out_everything_is_refused():
    with pytest.raises(InputError, match="cannot hold out"):
        fit_law(model_points(np.random.default_rng(0)), "model", FitConfig(holdout_largest=12))


def test_law_needs_its_parameters():
    with pytest.raises(InputError, match="needs parameters"):
        ScalingLaw("joint", {"A": 1.0})


def test_joint_law_can_hold_out_the_largest_data_size():
    law = preset("paper-joint")
    n, d = np.meshgrid([1e5, 1e6, 1e7, 1e8], [1e3, 1e4, 1e5, 1e6])
    points = pd.DataFrame({"n": n.ravel(), "d": d.ravel()}).assign(loss=lambda p: law.predict(p["n"], p["d"]))
    fit = fit_law(points, "joint", FitConfig(bootstrap=20, holdout_largest=1, holdout_axis="d"))
    held = fit.heldout
    assert set(held["d"]) == {1e6} and len(held) == 4
    assert np.abs(held["rel_error"]).max() < 0.01  # exact points: the law extrapolates itself
    with pytest.raises(InputError, match="has no n"):
        fit_law(points[["d", "loss"]], "data", FitConfig(holdout_largest=1, holdout_axis="n"))


# --- the batched bootstrap against the fitter it replaced (bench/laws_before.py) ------

def monte_carlo_error(samples: np.ndarray, q: float) -> float:
    """Half-width of a ~95% interval of the q-quantile of `samples` from Monte-Carlo
    noise alone: the spread between the order statistics at q +- 2 sd of the rank."""
    sd = np.sqrt(q * (1 - q) / len(samples))
    lo, hi = np.quantile(samples, [max(q - 2 * sd, 0), min(q + 2 * sd, 1)])
    return (hi - lo) / 2


@pytest.mark.parametrize("kind, make", [("joint", joint_points), ("model", model_points), ("data", data_points)])
def test_batched_bootstrap_agrees_with_the_old_fitter(kind, make):
    import bench.laws_before as before

    points = make(np.random.default_rng(11))
    old = before.fit_law(points, kind, before.FitConfig(bootstrap=200, seed=3))
    new = fit_law(points, kind, FitConfig(bootstrap=200, seed=3))
    assert new.law.params == pytest.approx(old.law.params, rel=1e-6)
    assert new.bootstrap_params.shape == old.bootstrap_params.shape
    for i, name in enumerate(old.intervals):
        for q, old_edge, new_edge in zip((0.025, 0.975), old.intervals[name], new.intervals[name]):
            assert abs(new_edge - old_edge) <= monte_carlo_error(old.bootstrap_params[:, i], q), (name, q)


def test_batched_refits_reach_the_same_optimum_as_scipy():
    """Each batched refit's Huber cost is no worse than scipy's on the same resample."""
    from engine.fit_optimisers import (
        batched_huber_lm,
        huber_cost,
        polish,
        residuals_and_jacobian,
    )
    from engine.laws import _design

    points = joint_points(np.random.default_rng(12))
    x, loss = _design(points, "joint"), points["loss"].to_numpy()
    weights = np.random.default_rng(0).poisson(1.0, (20, len(loss))).astype(float)
    start = np.array([np.log(3e4), np.log(7e3), 0.5, 1.2, 0.02])
    batched = batched_huber_lm("joint", np.tile(start, (20, 1)), x, loss, weights, 0.05)
    cost = huber_cost(residuals_and_jacobian("joint", batched, x, np.log(loss))[0], weights, 0.05)
    for row, w in enumerate(weights.astype(int)):
        _, scipy_cost = polish("joint", start, np.repeat(x, w, axis=0), np.repeat(loss, w), 0.05)
        assert cost[row] <= scipy_cost * (1 + 1e-9)


# --- the additive form (Hoffmann et al. 2022) and the comparison of joint forms --------

ADDITIVE_TRUTH = ScalingLaw("additive", {"A": 400.0, "B": 60.0, "alpha": 0.34, "beta": 0.28, "E": 1.0})


def form_points(law: ScalingLaw, seed: int) -> pd.DataFrame:
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(5e5, 9e7, 10), np.geomspace(1e3, 5e5, 5)))
    return pd.DataFrame({"n": n, "d": d, "loss": noisy(law.predict(n, d), np.random.default_rng(seed))})


@pytest.mark.parametrize("truth", [preset("paper-joint"), ADDITIVE_TRUTH], ids=["joint", "additive"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_joint_form_recovers_its_own_exponents_at_1_percent_noise(truth, seed):
    fit = fit_law(form_points(truth, seed), truth.kind, FitConfig(bootstrap=0))
    assert fit.law.params["alpha"] == pytest.approx(truth.params["alpha"], abs=0.02)
    assert fit.law.params["beta"] == pytest.approx(truth.params["beta"], abs=0.02)


def test_additive_law_is_its_equation_and_round_trips():
    assert ADDITIVE_TRUTH.predict(1e6, 1e4) == pytest.approx(1.0 + 400 / 1e6 ** 0.34 + 60 / 1e4 ** 0.28)
    fit = fit_law(form_points(ADDITIVE_TRUTH, 4), "additive", FitConfig(bootstrap=50))
    assert set(fit.intervals) == {"A", "B", "alpha", "beta", "E"}
    lo, hi = fit.intervals["alpha"]
    assert lo <= fit.law.params["alpha"] <= hi
    again = fit_from_dict(fit.to_dict())
    assert again.law == fit.law and again.bootstrap_params.shape == (50, 5)


@pytest.mark.parametrize("truth", [preset("paper-joint"), ADDITIVE_TRUTH], ids=["joint", "additive"])
def test_comparison_prefers_the_form_that_made_the_points(truth):
    compared = {c.fit.law.kind: c for c in compare_laws(form_points(truth, 5))}
    assert set(compared) == {"joint", "additive"}
    other = "additive" if truth.kind == "joint" else "joint"
    assert compared[truth.kind].aic < compared[other].aic - 2
    assert compared[truth.kind].bic < compared[other].bic
    for axis in ("n", "d"):
        held = compared[truth.kind].leave_largest_out[axis]
        assert held["points"] == (5 if axis == "n" else 10) and held["mean_abs_error"] < 0.03
    assert compared[truth.kind].fit.r2 > 0.99


# --- identifiability in words ------------------------------------------------------------

# A law as flat as a small CPU study's (losses 4.7 to 5.35 across the scratch ladder's 1.7
# decades of N and 1.2 of D): exponents near 0, no floor, 1% noise
FLAT = ScalingLaw("joint", {"A": 4e20, "B": 8e19, "alpha": 0.044, "beta": 0.042, "delta": 0.0})


def flat_points(seed: int = 0) -> pd.DataFrame:
    n, d = (a.ravel() for a in np.meshgrid([39_104, 104_064, 154_048, 313_856, 512_128, 1_842_688],
                                           [500, 1000, 2000, 4000, 7719]))
    return pd.DataFrame({"n": n, "d": d, "loss": noisy(FLAT.predict(n, d), np.random.default_rng(seed))})


def test_identifiability_names_what_flat_points_do_not_determine():
    fit = fit_law(flat_points(), "joint", FitConfig(bootstrap=200))
    facts = identifiability(fit)
    assert {"A", "B", "delta"} <= set(facts.undetermined)
    assert facts.decades["A"] > 10                        # A's interval spans many orders of magnitude
    assert ("A", "alpha") in {(a, b) for a, b, _ in facts.correlated}
    sentence = facts.sentence()
    assert sentence.startswith("These points determine the curve for N in [39.1k, 1.84M] and D in [500, 7.72k]")
    assert "not determined" in sentence and "only their combination is measured" in sentence


def test_identifiability_of_a_well_measured_law():
    fit = fit_law(joint_points(np.random.default_rng(8)), "joint", FitConfig(bootstrap=200))
    facts = identifiability(fit)
    assert {"alpha", "beta", "delta"} <= set(facts.determined) and not facts.at_bound
    assert "A, B, alpha, beta and delta are determined" in facts.sentence()
    assert "not determined" not in facts.sentence() and "only their combination" not in facts.sentence()


def test_identifiability_reports_an_estimate_at_its_bound():
    n = np.geomspace(1e5, 1e8, 8)
    fit = fit_law(pd.DataFrame({"n": n, "loss": (3e4 / n) ** 0.5}), "model", FitConfig(bootstrap=50))  # no floor
    assert identifiability(fit).at_bound == {"delta": "0 (no floor)"}
    assert "delta sits at its bound 0" in identifiability(fit).sentence()


def test_profile_starts_in_chunks_give_the_same_refits(monkeypatch):
    import engine.fit_optimisers as optimisers

    points = model_points(np.random.default_rng(13))
    whole = fit_law(points, "model", FitConfig(bootstrap=60)).bootstrap_params
    monkeypatch.setattr(optimisers, "PROFILE_CELLS", 120 * len(points) * 7)        # 7 resamples per block
    assert np.array_equal(fit_law(points, "model", FitConfig(bootstrap=60)).bootstrap_params, whole)


FLAT_POINTS = pd.DataFrame({"d": [500, 1000, 2000, 3500, 5220.0], "loss": [5.031, 5.012, 4.998, 5.004, 4.987]})


def test_a_bootstrap_on_a_flat_loss_finishes_its_valley_refits_on_a_budget(monkeypatch):
    """Flat points (as ICT gives on squad-dev) leave half the refits creeping along a valley
    where no parameter is determined: they end on a budget, not after 82k scipy evaluations."""
    import engine.fit_optimisers as optimisers

    evaluations, scipy_least_squares = [], optimisers.least_squares

    def counted(*args, **kwargs):
        result = scipy_least_squares(*args, **kwargs)
        evaluations.append(result.nfev)
        return result

    monkeypatch.setattr(optimisers, "least_squares", counted)
    fit = fit_law(FLAT_POINTS, "data", FitConfig(bootstrap=200))
    assert sum(evaluations) <= 100 * 200, (len(evaluations), sum(evaluations))   # 82,324 before the budget
    assert fit.bootstrap_kept >= 150
    band = fit.predict_interval(d=np.array([1e4, 1e6]))
    assert all(np.isfinite(band[k]).all() for k in ("ci_lo", "ci_hi", "pi_lo", "pi_hi"))


def test_intervals_are_taken_over_the_kept_refits_only():
    fit = fit_law(FLAT_POINTS, "data", FitConfig(bootstrap=100))
    finite = np.isfinite(fit.bootstrap_params).all(axis=1)
    with_overflow = fit.bootstrap_params.copy()
    with_overflow[:10, 0] = np.inf                      # B = K overflows when log K > 709: no curve
    broken = replace(fit, bootstrap_params=with_overflow)
    band = broken.predict_interval(d=np.array([1e4, 1e6]))
    assert all(np.isfinite(band[k]).all() for k in ("ci_lo", "ci_hi", "pi_lo", "pi_hi")), band
    assert broken.bootstrap_kept == int(finite[10:].sum())
    none_kept = replace(fit, bootstrap_params=np.full_like(with_overflow, np.inf))
    assert np.isnan(none_kept.predict_interval(d=np.array([1e4]))["ci_lo"]).all()
