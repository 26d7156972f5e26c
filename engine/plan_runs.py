"""Which runs to do next: the planner designs the scaling study.

A fitted joint law (Eq. 8) comes with bootstrap laws (engine/laws.py); together they
say how sure the decision is, e.g. the interval of N* at a budget (engine/budget.py)
or of the predicted loss at a target (N, D). This module chooses the next runs, from
the model ladder (engine/ladder.py) x the data sizes a data set allows, that are
expected to narrow that interval most per unit of training cost.

Method: expected shrinkage of the target's bootstrap spread per unit cost, computed
from the bootstrap ensemble itself (an ensemble Kalman update, Evensen 2003; the
bootstrap as the ensemble follows Epoch AI's Chinchilla replication, which carries
the bootstrap through to the decision; the design criterion and the greedy batch
choice follow active design of scaling studies, arXiv 2604.22753):

1. Under each of the B bootstrap laws compute the target T_b (log10 N* at the budget,
   or log10 L at (N, D)) and the predicted log loss of every candidate run, P_bc.
2. Standardise each column robustly (median, IQR; clipped at 4) and take the
   ensemble covariance K of (T, P_1..P_C). A run c is one noisy look at P_c, with
   the fit's residual scatter sigma (robust sd of its log residuals) as noise.
3. The expected spread of T after observing a set S is the Gaussian conditional
   variance K_TT - K_TS (K_SS + sigma^2 I)^-1 K_ST; the interval width is taken to
   shrink by the square root of its ratio to K_TT. Conditioning on the runs already
   chosen is what makes a batch diverse: a run that would tell what the chosen ones
   already tell has no covariance with T left, so it gains nothing.
4. Greedy in factorial moves, best variance reduction per cost first: add one model
   (at every data size chosen so far) or one data size (for every model chosen so
   far), while the experiment budget lasts. The plan stays a models x data sizes
   grid, which is what a sweep file (engine/sweep.py) runs.

When to stop: if every run of the ladder, each once, would leave more than
`ladder_share` of the interval, more runs of the ladder will not help. When the
decision lies beyond the largest rung (N* or the target N), the interval then comes
from extrapolating the law, not from the noise of the runs (stop reason
"extrapolation"), and the planner says how much one run of a larger model would
narrow it; inside the ladder the interval is at the noise floor ("converged").

Costs: training FLOPs of a run from its rung's shape and the shared steps, batch and
token settings (engine/flops.py, as `engine sweep --dry-run` estimates them), turned
into GPU-hours through a peak FLOP/s and an MFU, or into dollars through a GPU price.
With fixed steps a run's cost does not depend on D (the paper's Eq. 13).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.budget import BudgetQuestion, data_for, n_max
from engine.checks import is_positive_number
from engine.errors import InputError
from engine.flops import train_step_flops
from engine.ladder import LADDER, LadderModel, rung_size
from engine.laws import FitConfig, LawFit, fit_law
from engine.eval_protocol import better_than_random, protocol_labels
from engine.formatting import format_count

COST_UNITS = ("gpu-hours", "dollars")
UNIT_WORDS = {"gpu-hours": "GPU-hours", "dollars": "dollars"}    # a cost unit as a sentence writes it
FAMILIES = ("bert", "ernie", "scratch")
Z_CLIP = 4.0                  # robust z-scores beyond this are clipped: one wild bootstrap law is not a trend
NOISE_FLOOR = 1e-3            # smallest run-to-run scatter assumed (log loss)
UNINFORMATIVE = 1e12          # noise variance of a run that tells nothing new (one already measured)
STOP_REASONS = {
    "extrapolation": "every run of the ladder, each once, would narrow the interval by only {ladder_gain:.0%}: "
                     "it comes from extrapolating beyond the ladder, not from the noise of the runs",
    "converged": "every run of the ladder, each once, would narrow the interval by only {ladder_gain:.0%}: "
                 "inside the ladder it is already about as narrow as runs with this noise make it",
    "budget": "the experiment budget buys no run that narrows the interval by {min_gain:.0%}; "
              "the whole ladder could narrow it by {ladder_gain:.0%}",
}


# --- what is asked, what a run costs --------------------------------------------------

@dataclass(frozen=True)
class PlanTarget:
    """The decision whose uncertainty the runs should reduce: N* at `question`'s
    budget, or the predicted loss at (n, d) when both are given."""

    question: BudgetQuestion | None = None
    n: float | None = None
    d: float | None = None

    def __post_init__(self):
        point = self.n is not None or self.d is not None
        if point and not (is_positive_number(self.n) and is_positive_number(self.d)):
            raise InputError(f"a point target needs both a positive --target-n and --target-d, got {self.n} "
                             f"and {self.d}")
        if not point and self.question is None:
            raise InputError("give a budget (the N* interval) or --target-n and --target-d")
        if not point and not is_positive_number(self.question.budget):
            raise InputError(f"--budget must be a positive number of dollars, got {self.question.budget}")

    @property
    def kind(self) -> str:
        return "point" if self.n is not None else "n_opt"

    def describe(self) -> str:
        if self.kind == "point":
            return f"predicted loss at N = {format_count(self.n)}, D = {format_count(self.d)}"
        budget = self.question.budget  # written out below a trillion dollars, in powers of ten above
        return f"N* at a budget of ${budget:,.0f}" if budget < 1e12 else f"N* at a budget of ${budget:.3g}"


@dataclass(frozen=True)
class RunSettings:
    """Training settings every planned run shares ([train] of the sweep file); with
    the rung they fix a run's FLOPs. Defaults: TrainConfig's (the paper's)."""

    steps: int = 10_000
    batch_size: int = 128
    negatives: int = 256
    max_query_length: int = 32
    max_passage_length: int = 180

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise InputError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Hardware:
    """How FLOPs become cost: hours at `mfu` of `peak_flops`, dollars at a GPU price."""

    peak_flops: float = 312e12           # FLOP/s of one GPU (A100 bf16)
    mfu: float = 0.3                     # achieved fraction of the peak
    gpu_price_per_hour: float = 3.93     # $ per GPU-hour
    unit: str = "gpu-hours"

    def __post_init__(self):
        if self.unit not in COST_UNITS:
            raise InputError(f"cost unit {self.unit!r}: choose one of {', '.join(COST_UNITS)}")
        for name in ("peak_flops", "mfu", "gpu_price_per_hour"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be positive, got {value}")
        if self.mfu > 1:
            raise InputError(f"mfu is a fraction of the peak (0-1], got {self.mfu}")

    def cost(self, flops) -> np.ndarray:
        hours = np.asarray(flops, dtype=float) / (self.peak_flops * self.mfu * 3600)
        return hours * self.gpu_price_per_hour if self.unit == "dollars" else hours


@dataclass(frozen=True)
class PlanConfig:
    """How the plan is chosen."""

    experiment_budget: float | None = None   # in the hardware's unit; None: half the cost of every candidate
    level: float = 0.95                      # the interval whose width is reduced
    noise: float | None = None               # run-to-run scatter of log L; None: from the fit's residuals
    min_gain: float = 0.05                   # below this fraction of narrowing, more runs do not help
    min_step: float = 0.01                   # a move must lower the target's variance by this fraction of it
    ladder_share: float = 0.7                # every ladder run leaving more than this of the width: extrapolation
    probe_factor: float = 10.0               # the larger model the stop advice prices: this x the largest rung

    def __post_init__(self):
        if not 0 < self.level < 1:
            raise InputError(f"--level is the interval's level strictly between 0 and 1 (0.95), got {self.level}")
        if self.noise is not None and not is_positive_number(self.noise):
            raise InputError(f"--noise is the run-to-run scatter of log L, a positive number (e.g. 0.02), "
                             f"got {self.noise}")
        if not 0 <= self.min_gain < 1:
            raise InputError(f"--min-gain is a fraction of the interval's width in [0, 1), got {self.min_gain}")


@dataclass(frozen=True)
class Candidate:
    model: str
    n: float
    d: int
    flops: float
    cost: float


def run_flops(rung: LadderModel, settings: RunSettings) -> float:
    """Training FLOPs of one run, as engine.sweep.estimate counts them."""
    n = rung_size(rung)
    step = train_step_flops(n, rung.layers, rung.hidden,
                            [(settings.batch_size, settings.max_query_length),
                             (settings.batch_size + settings.negatives, settings.max_passage_length)])
    return step * settings.steps


def ladder_rungs(family: str, models: list[str] | None = None) -> list[LadderModel]:
    """The rungs to plan over: the named ones, else a whole family, smallest first."""
    if models:
        unknown = [m for m in models if m not in LADDER and f"google/{m}" not in LADDER]
        if unknown:
            raise InputError(f"not ladder models: {', '.join(unknown)} (see `python -m engine models`)")
        rungs = [LADDER.get(m) or LADDER[f"google/{m}"] for m in models]
    else:
        if family not in FAMILIES:
            raise InputError(f"unknown ladder family {family!r}: choose one of {', '.join(FAMILIES)}")
        rungs = [m for m in LADDER.values() if m.family == family]
    return sorted(rungs, key=rung_size)


def data_sizes(available: int, smallest: int, points: int) -> list[int]:
    """`points` log-spaced data sizes from `smallest` to all `available` pairs."""
    if available < 1:
        raise InputError("the data set has no training pairs")
    if smallest < 1 or points < 1:
        raise InputError(f"--d-min and --d-points must be positive, got {smallest} and {points}")
    smallest = min(smallest, available)
    return sorted({int(round(v)) for v in np.geomspace(smallest, available, points)})


MAX_CANDIDATES = 2000  # the planner holds a (1 + C)^2 covariance: 2,000 candidates are 32 MB, 100,000 are 80 GB


def candidates(rungs: list[LadderModel], d_values, settings: RunSettings, hardware: Hardware) -> list[Candidate]:
    """Every (model, data size) run the planner may choose: at most MAX_CANDIDATES."""
    if len(rungs) * len(d_values) > MAX_CANDIDATES:
        raise InputError(f"{len(rungs)} models x {len(d_values):,} data sizes = {len(rungs) * len(d_values):,} "
                         f"candidate runs, more than the planner compares ({MAX_CANDIDATES:,}); ask for fewer "
                         "--d-points or --d-values, or fewer --models")
    out = []
    for rung in rungs:
        flops = run_flops(rung, settings)
        out += [Candidate(rung.name, float(rung_size(rung)), int(d), flops, float(hardware.cost(flops)))
                for d in d_values]
    return out


# --- the ensemble: the target and every candidate under each bootstrap law -------------

def _log_loss(params: np.ndarray, n, d) -> np.ndarray:
    """log L of Eq. 8 for every law (rows of params: A, B, alpha, beta, delta) at
    every (n, d): (laws, points), in log space so a wild law gives inf, not an error."""
    a, b, alpha, beta, delta = (params[:, i:i + 1] for i in range(5))            # (B, 1) each
    log_n, log_d = np.log(np.asarray(n, dtype=float))[None], np.log(np.asarray(d, dtype=float))[None]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        bracket = np.logaddexp((alpha / beta) * (np.log(a) - log_n), np.log(b) - log_d)   # (B, P)
        return np.log(np.exp(beta * bracket) + delta)


def n_opt_per_law(fit: LawFit, question: BudgetQuestion) -> np.ndarray:
    """log10 N* of the budget problem under each bootstrap law of `fit`, (laws,),
    nan for a law with no finite loss along the budget line; solved for all laws at
    once by engine.budget's decision_uncertainty (the planner's one dependency on
    how N* is solved)."""
    from engine.budget import COARSE_POINTS, decision_uncertainty

    params = np.asarray(fit.bootstrap_params, dtype=float)
    n = np.exp(np.linspace(np.log(question.n_min), np.log(n_max(question)), COARSE_POINTS))
    finite = np.isfinite(_log_loss(params, n, np.maximum(data_for(n, question), 1e-300))).all(axis=1)
    out = np.full(len(params), np.nan)
    if finite.any():
        samples = decision_uncertainty(replace(fit, bootstrap_params=params[finite]), question).n_opt_samples
        if len(samples) != finite.sum():
            raise RuntimeError("decision_uncertainty left out laws the planner kept: the two filters disagree")
        out[finite] = np.log10(samples)
    return out


def target_samples(fit: LawFit, target: PlanTarget) -> np.ndarray:
    """The target under each bootstrap law of `fit` (log10 units), (laws,); nan where a law has none."""
    if target.kind == "point":
        return _log_loss(np.asarray(fit.bootstrap_params, dtype=float), [target.n], [target.d])[:, 0] / np.log(10)
    return n_opt_per_law(fit, target.question)


def _robust_z(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns standardised by median and IQR, clipped: (z, scale per column)."""
    median = np.median(values, axis=0)
    q1, q3 = np.percentile(values, [25, 75], axis=0)
    scale = (q3 - q1) / 1.349
    scale = np.where(scale > 0, scale, np.maximum(values.std(axis=0), 1e-12))
    return np.clip((values - median) / scale, -Z_CLIP, Z_CLIP), scale


@dataclass
class Ensemble:
    """Robust-standardised covariance of (target, candidate predictions) over the
    bootstrap laws, and each candidate's noise in the same units."""

    covariance: np.ndarray         # (1 + C, 1 + C); index 0 is the target
    noise_var: np.ndarray          # (C,)
    prior_width: float             # percentile width of the target, log10 units
    laws: int

    def conditioned(self, runs, k: np.ndarray | None = None) -> np.ndarray:
        """The covariance after observing `runs` (candidate indices), from k (default: the prior)."""
        k = self.covariance if k is None else k
        for c in runs:
            column = k[:, c + 1].copy()
            k = k - np.outer(column, column) / (column[c + 1] + self.noise_var[c])
        return k

    def width(self, k: np.ndarray) -> float:
        """Expected interval width under covariance k (the prior width, scaled)."""
        return self.prior_width * float(np.sqrt(max(k[0, 0], 0.0) / self.covariance[0, 0]))


def build_ensemble(fit: LawFit, target: PlanTarget, cands: list[Candidate], noise: float,
                   level: float) -> Ensemble:
    t = target_samples(fit, target)                                                  # (B,)
    params = np.asarray(fit.bootstrap_params, dtype=float)
    p = _log_loss(params, [c.n for c in cands], [c.d for c in cands])                # (B, C)
    keep = np.isfinite(t) & np.isfinite(p).all(axis=1)
    if keep.sum() < 10:
        raise InputError(f"only {int(keep.sum())} bootstrap laws give a finite {target.describe()}: "
                         f"refit with more bootstrap refits")
    t, p = t[keep], p[keep]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(t, [tail, 100 - tail])
    z, scale = _robust_z(np.column_stack([t, p]))
    covariance = np.cov(z, rowvar=False)
    if covariance[0, 0] <= 0:
        raise InputError(f"every bootstrap law gives the same {target.describe()}: nothing to reduce")
    return Ensemble(covariance, (noise / scale[1:]) ** 2, float(hi - lo), int(keep.sum()))


def residual_noise(fit: LawFit) -> float:
    """Run-to-run scatter of log L: the robust sd (1.4826 MAD) of the fit's log residuals."""
    residuals = np.asarray(fit.log_residuals, dtype=float)
    mad = np.median(np.abs(residuals - np.median(residuals))) if len(residuals) else 0.0
    return max(1.4826 * float(mad), NOISE_FLOOR)


# --- the plan ---------------------------------------------------------------------

@dataclass
class PlannedRun:
    model: str
    n: float
    d: int
    cost: float
    flops: float
    gain: float              # narrowing of the interval (log10 units) given the runs ranked above
    width_after: float
    measured: bool           # already among the fit's points (a repeat)


@dataclass
class Plan:
    target: PlanTarget
    unit: str
    width_now: float
    width_after: float
    ladder_width: float                # expected width after every candidate once
    runs: list[PlannedRun]
    budget: float
    noise: float
    laws: int
    min_gain: float
    larger_model: dict | None          # what one run of a larger model would do
    stop_reason: str | None
    config: PlanConfig = field(default_factory=PlanConfig)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in sorted(self.runs, key=lambda r: r.n)))

    @property
    def data_sizes(self) -> list[int]:
        return sorted({r.d for r in self.runs})

    @property
    def total_cost(self) -> float:
        return float(sum(r.cost for r in self.runs))

    def table(self) -> pd.DataFrame:
        """The ranked runs: run, expected gain, cost."""
        return pd.DataFrame([{"rank": i + 1, "model": r.model, "n": r.n, "d": r.d, "expected_gain": r.gain,
                              "width_after": r.width_after, "cost": r.cost, "flops": r.flops,
                              "measured": r.measured} for i, r in enumerate(self.runs)])

    def message(self) -> str:
        """What the plan does, or why more runs of the ladder will not help and what would."""
        unit = UNIT_WORDS[self.unit]
        if self.stop_reason is None:
            return (f"{len(self.runs)} runs ({self.total_cost:.3g} {unit}) narrow the interval of "
                    f"{self.target.describe()} from {self.width_now:.3g} to {self.width_after:.3g} (expected).")
        text = STOP_REASONS[self.stop_reason].format(min_gain=self.min_gain,
                                                     ladder_gain=1 - self.ladder_width / self.width_now)
        probe = self.larger_model
        if probe:
            text += (f". One run of a larger model, N = {format_count(probe['n'])} ({probe['factor']:g}x the largest "
                     f"rung) at D = {format_count(probe['d'])}, would narrow it by {probe['gain']:.0%} (about "
                     f"{probe['cost']:.3g} {unit})")
        prefix = "Stop: " if self.stop_reason == "budget" else "More runs of the ladder will not help much: "
        return prefix + text + "."

    def to_dict(self) -> dict:
        return {
            "target": {"kind": self.target.kind, "describe": self.target.describe(), "n": self.target.n,
                       "d": self.target.d, "budget": self.target.question.budget if self.target.question else None},
            "width_units": "log10", "width_now": self.width_now, "width_after": self.width_after,
            "ladder_width": self.ladder_width, "unit": self.unit, "experiment_budget": self.budget,
            "total_cost": self.total_cost, "noise": self.noise, "bootstrap_laws": self.laws,
            "models": self.models, "data_sizes": self.data_sizes,
            "runs": json_records(self.table()), "stop_reason": self.stop_reason, "message": self.message(),
            "larger_model": self.larger_model, "config": asdict(self.config),
        }


def json_records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


def _measured(fit: LawFit, cands: list[Candidate]) -> np.ndarray:
    points = fit.points
    if not {"n", "d"} <= set(points.columns):
        return np.zeros(len(cands), dtype=bool)
    seen = {(float(n), float(d)) for n, d in zip(points["n"], points["d"])}
    return np.array([(c.n, float(c.d)) in seen for c in cands])


def _variance_drop(ens: Ensemble, k: np.ndarray, runs: list[int]) -> float:
    """How much observing `runs` lowers the target's variance under covariance k."""
    if not runs:
        return 0.0
    j = np.array(runs) + 1
    k_ss = k[np.ix_(j, j)] + np.diag(ens.noise_var[runs])
    k_ts = k[0, j]
    return float(k_ts @ np.linalg.solve(k_ss, k_ts))


def _moves(cands: list[Candidate], chosen: list[int], grid: bool) -> list[list[int]]:
    """Candidate-index lists of every next move: one run not chosen yet, or (grid)
    a model or data size added so that the design stays a models x sizes grid."""
    models, sizes = {cands[i].model for i in chosen}, {cands[i].d for i in chosen}
    if not grid or not models:
        taken = set(chosen)
        return [[i] for i in range(len(cands)) if i not in taken]
    moves = {}
    for i, c in enumerate(cands):
        if c.model not in models and c.d in sizes:
            moves.setdefault(("model", c.model), []).append(i)
        elif c.model in models and c.d not in sizes:
            moves.setdefault(("size", c.d), []).append(i)
    return list(moves.values())


def design(ens: Ensemble, cands: list[Candidate], budget: float, grid: bool = True,
           min_step: float = 0.01) -> list[int]:
    """Greedy design: the move with the largest variance drop per cost that the
    remaining budget pays for, until none is left or none lowers the variance left
    by `min_step` of it."""
    costs = np.array([c.cost for c in cands])
    chosen: list[int] = []
    k, spent = ens.covariance, 0.0
    floor = 1e-9 * max(costs.max(), 1e-300)   # measured runs cost nothing; a move still costs something
    while True:
        best, best_score = None, 0.0
        tiny = max(min_step * k[0, 0], 1e-12 * ens.covariance[0, 0])
        for move in _moves(cands, chosen, grid):
            cost = costs[move].sum()
            drop = _variance_drop(ens, k, move)
            if spent + cost > budget or drop < tiny:
                continue
            if drop / max(cost, floor) > best_score:
                best, best_score = move, drop / max(cost, floor)
        if best is None:
            return chosen
        chosen += best
        spent += costs[best].sum()
        k = ens.conditioned(best, k)


def rank(ens: Ensemble, cands: list[Candidate], pool: list[int]) -> list[tuple[int, float]]:
    """Order `pool` greedily by narrowing per cost; (index, width after it) in order."""
    ranked, k, left = [], ens.covariance, list(pool)
    while left:
        scores = [_variance_drop(ens, k, [i]) / max(cands[i].cost, 1e-9) for i in left]
        i = left.pop(int(np.argmax(scores)))
        k = ens.conditioned([i], k)
        ranked.append((i, ens.width(k)))
    return ranked


def plan_runs(fit: LawFit, target: PlanTarget, cands: list[Candidate], config: PlanConfig = PlanConfig(),
              unit: str = "gpu-hours", grid: bool = True) -> Plan:
    """Choose the next runs among `cands` for the decision `target` (module docstring)."""
    _require_bootstrap(fit)
    if not cands:
        raise InputError("no candidate runs: give ladder models and data sizes")
    noise = config.noise if config.noise is not None else residual_noise(fit)
    measured = _measured(fit, cands)
    cands = [replace(c, cost=0.0) if seen else c for c, seen in zip(cands, measured)]
    ens = build_ensemble(fit, target, cands, noise, config.level)
    ens.noise_var[measured] = UNINFORMATIVE   # the same run again measures the same number
    budget = config.experiment_budget
    budget = 0.5 * sum(c.cost for c in cands) if budget is None else budget
    if not np.isfinite(budget) or budget <= 0:
        raise InputError(f"the experiment budget must be positive, got {budget}")
    chosen = design(ens, cands, budget, grid, config.min_step)
    runs, before = [], ens.prior_width
    for i, width in rank(ens, cands, chosen):
        c = cands[i]
        runs.append(PlannedRun(c.model, c.n, c.d, c.cost, c.flops, before - width, width, bool(measured[i])))
        before = width
    width_after = runs[-1].width_after if runs else ens.prior_width
    ladder_width = ens.width(ens.conditioned(range(len(cands))))
    stop = None
    if ladder_width > config.ladder_share * ens.prior_width:
        stop = "extrapolation" if _beyond_ladder(fit, target, cands) else "converged"
    elif 1 - width_after / ens.prior_width < config.min_gain:
        stop = "budget"
    probe = _larger_model(fit, target, cands, noise, config) if stop == "extrapolation" else None
    return Plan(target, unit, ens.prior_width, width_after, ladder_width, runs, float(budget), noise, ens.laws,
                config.min_gain, probe, stop, config)


def _beyond_ladder(fit: LawFit, target: PlanTarget, cands: list[Candidate]) -> bool:
    """Does the decision lie beyond the largest model of the ladder (median N* or the target N)?"""
    largest = max(c.n for c in cands)
    if target.kind == "point":
        return target.n > largest
    return float(np.nanmedian(target_samples(fit, target))) > np.log10(largest)


def _require_bootstrap(fit: LawFit) -> None:
    if not isinstance(fit, LawFit) or fit.law.kind != "joint":
        raise InputError("planning runs needs a fitted joint law L(N, D) (Eq. 8) with its bootstrap: "
                         "fit one with `engine laws fit --law joint` or the Fit laws page")
    params = np.asarray(fit.bootstrap_params, dtype=float)
    if len(params) < 10:
        raise InputError(f"the fit has {len(params)} bootstrap laws; planning needs at least 10 "
                         f"(refit with --bootstrap 200 or more)")


def _larger_model(fit: LawFit, target: PlanTarget, cands: list[Candidate], noise: float, config: PlanConfig) -> dict:
    """One run of a model `probe_factor` x the largest rung, at the data size where it
    helps most, after every ladder run: how much narrower would the interval get?"""
    top = max(cands, key=lambda c: c.n)
    factor = config.probe_factor
    probes = [Candidate("larger model", top.n * factor, d, top.flops * factor, top.cost * factor)
              for d in sorted({c.d for c in cands})]
    ens = build_ensemble(fit, target, [*cands, *probes], noise, config.level)
    ladder = ens.conditioned(range(len(cands)))
    widths = [ens.width(ens.conditioned([len(cands) + i], ladder)) for i in range(len(probes))]
    best = int(np.argmin(widths))
    gain = float(1 - widths[best] / ens.width(ladder))
    return {"n": probes[best].n, "d": probes[best].d, "factor": factor, "gain": gain, "cost": probes[best].cost,
            "width_with_ladder": ens.width(ladder), "width_with_larger_model": widths[best]}


# --- the sweep file -----------------------------------------------------------------

def sweep_name(out: Path) -> str:
    return "plan-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", Path(out).stem).strip("-") or "runs")


def plan_spec(plan: Plan, dataset: Path, name: str, settings: RunSettings, available: int | None,
              annotation: str = "human", inherited: dict | None = None) -> dict:
    """The plan as a sweep file's tables (engine/sweep.py): its models x data sizes
    and the shared [train] settings, over `inherited` (the other [train] settings of
    the study the plan extends, engine.studies.inherited_settings). The full data set is
    written "all" so run ids match those of a study that used "all"."""
    if not plan.runs:
        raise InputError("the plan has no runs to write: " + plan.message())
    sizes = ["all" if available is not None and d == available else int(d) for d in plan.data_sizes]
    return {"name": name,
            "grid": {"models": plan.models, "train_pairs": sizes, "annotations": [annotation], "seeds": [0]},
            "train": {**(inherited or {}), "dataset": str(Path(dataset).resolve()), **asdict(settings)}}


def plan_sweep(plan: Plan, dataset: Path, out: Path, settings: RunSettings, available: int | None,
               annotation: str = "human"):
    """The plan as a sweep read back through the sweep reader, and its file text."""
    from engine.sweep import sweep_from_spec

    spec = plan_spec(plan, dataset, sweep_name(out), settings, available, annotation)
    sweep = sweep_from_spec(spec, Path(out).resolve())
    if len(sweep.runs) != len(plan.runs):
        raise InputError(f"the plan's {len(plan.runs)} runs are not a models x data sizes grid "
                         f"({len(sweep.runs)} runs); plan with grid=True to write a sweep")
    header = (f"# written by `python -m engine plan-runs`: {len(plan.runs)} runs for the {plan.target.describe()}\n"
              f"# expected interval width {plan.width_now:.3g} -> {plan.width_after:.3g} (log10), "
              f"cost {plan.total_cost:.3g} {plan.unit}\n")
    return sweep, header + sweep.to_toml()


def store_points(store, dataset: str, annotation: str = "human", metric: str = "raw",
                 protocol: str | None = None) -> pd.DataFrame:
    """The store's completed `annotation` runs of `dataset` as law points of `metric`,
    those of one evaluation protocol group when `protocol` names one (engine/eval_protocol.py
    protocol_labels), runs no better than a random scorer left out, as the study does."""
    points, _ = better_than_random(store.law_points(dataset=dataset, annotation=annotation, metric=metric))
    if protocol is not None:
        points = points[[label == protocol for label in protocol_labels(points)]]
    if points.empty:
        chosen = f" under protocol {protocol}" if protocol else ""
        raise InputError(f"the store has no completed {annotation} runs of data set {dataset!r}{chosen} to fit")
    return points


def fit_store_runs(store, dataset: str, bootstrap: int, annotation: str = "human", metric: str = "raw",
                   protocol: str | None = None):
    """Eq. 8 fitted to `store_points`: one protocol group's when `protocol` names one
    (points of several protocols are refused, engine.eval_protocol.check_one_protocol)."""
    points = store_points(store, dataset, annotation, metric, protocol)
    return fit_law(points[["n", "d", "loss", "eval_fingerprint"]], "joint", FitConfig(bootstrap=bootstrap))
