"""The paper's three scaling laws, their published fits, and a trustworthy fitter.

- Model-size law, Eq. 6:  L(N) = (A/N)^alpha + delta_N
- Data-size law,  Eq. 7:  L(D) = (B/D)^beta + delta_D
- Joint law,      Eq. 8:  L(N, D) = [(A/N)^(alpha/beta) + B/D]^beta + delta

N is the number of non-embedding parameters, D the number of annotated
query-passage pairs, L the test contrastive entropy (Eq. 5), in nats.

The paper fits these by plain least squares. Here every fit minimises a Huber loss
on log L (relative errors, robust to one bad run), the one-variable laws by
variable projection (the linear part solved exactly for each exponent, so a fit is
deterministic), the joint law from a grid of starting points, all with tolerances
tight enough to reach the optimum. Uncertainty comes from a bootstrap that
resamples whole configurations (all rows of one (N, D) pair together); its refits
start from the full-data optimum (`_bootstrap` says what that means for the
intervals).

Beside this module: engine/fit_optimisers.py solves the fits (scipy, and a batched
Levenberg-Marquardt for the bootstrap), engine/identifiability.py says what a fit's
points determine and compares the joint forms, engine/fit_files.py reads a saved fit
back, checked.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from engine.checks import check_level, is_positive_number, is_whole
from engine.errors import InputError
from engine.fit_optimisers import fit_theta, refit_resamples
from engine.eval_protocol import check_one_protocol

LAW_KINDS = ("model", "data", "joint", "additive")
PARAM_NAMES = {
    "model": ("A", "alpha", "delta"),
    "data": ("B", "beta", "delta"),
    "joint": ("A", "B", "alpha", "beta", "delta"),
    "additive": ("A", "B", "alpha", "beta", "E"),
}
JOINT_KINDS = ("joint", "additive")          # laws of both N and D: what budget planning needs
SCALE_COLUMNS = {"model": (0,), "data": (0,), "joint": (0, 1), "additive": (0, 1)}  # log-scale columns of theta
POSITIVE_PARAMS = ("A", "B", "alpha", "beta")   # scales and exponents; delta and E (floors) may be 0
LOSS_RANGE = (1e-12, 1e12)   # losses a fit handles without overflow (an entropy is a few nats)
EXTRAPOLATION_WARNING = 10.0   # a prediction this many times beyond the fitted sizes gets a plain warning
LAW_EQUATIONS = {
    "model": "L(N) = (A/N)^alpha + delta   (Eq. 6)",
    "data": "L(D) = (B/D)^beta + delta   (Eq. 7)",
    "joint": "L(N,D) = [(A/N)^(alpha/beta) + B/D]^beta + delta   (Eq. 8)",
    "additive": "L(N,D) = E + A/N^alpha + B/D^beta   (Hoffmann et al. 2022)",
}


# --- the laws -------------------------------------------------------------------

def model_size_law(n, A, alpha, delta):
    """Eq. 6: contrastive entropy of a model with n non-embedding parameters."""
    return (A / np.asarray(n, dtype=float)) ** alpha + delta


def data_size_law(d, B, beta, delta):
    """Eq. 7: contrastive entropy after training on d annotated pairs."""
    return (B / np.asarray(d, dtype=float)) ** beta + delta


def joint_law(n, d, A, B, alpha, beta, delta):
    """Eq. 8: contrastive entropy of an n-parameter model trained on d pairs."""
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    return ((A / n) ** (alpha / beta) + B / d) ** beta + delta


def additive_law(n, d, A, B, alpha, beta, E):
    """The additive form of Hoffmann et al. (2022, Chinchilla): an irreducible E plus
    one power-law term per size, so model and data shortfalls add instead of
    combining inside one bracket as in Eq. 8."""
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    return E + A / n ** alpha + B / d ** beta


@dataclass(frozen=True)
class ScalingLaw:
    """One law with its coefficients; `kind` says which equation."""

    kind: str
    params: dict[str, float]
    name: str = ""

    def __post_init__(self):
        if self.kind not in LAW_KINDS:
            raise InputError(f"unknown law {self.kind!r}: choose one of {', '.join(LAW_KINDS)}")
        missing = set(PARAM_NAMES[self.kind]) - set(self.params)
        if missing:
            raise InputError(f"the {self.kind} law needs parameters {sorted(missing)}")

    @property
    def uses_n(self) -> bool:
        return self.kind in ("model", *JOINT_KINDS)

    @property
    def uses_d(self) -> bool:
        return self.kind in ("data", *JOINT_KINDS)

    def predict(self, n=None, d=None) -> np.ndarray:
        """Predicted contrastive entropy at model size n and/or data size d."""
        p = self.params
        if self.kind == "model":
            return model_size_law(_required(n, "n"), p["A"], p["alpha"], p["delta"])
        if self.kind == "data":
            return data_size_law(_required(d, "d"), p["B"], p["beta"], p["delta"])
        law = joint_law if self.kind == "joint" else additive_law
        return law(_required(n, "n"), _required(d, "d"), *(p[k] for k in PARAM_NAMES[self.kind]))

    def describe(self) -> str:
        coefs = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"{LAW_EQUATIONS[self.kind]} with {coefs}"


def extrapolation_factor(value: float, support: tuple[float, float]) -> float:
    """1 inside [low, high]; value / high above it, low / value below it."""
    low, high = support
    return float(max(value / high, low / value, 1.0))


def predict_params(kind: str, params: np.ndarray, n=None, d=None) -> np.ndarray:
    """Every law of one kind at once: params (k, n_params) in PARAM_NAMES order, n and d
    broadcast against (k, 1), so n of shape (m,) or (k, m) gives (k, m). Computed in
    log space, so a wild bootstrap draw gives inf, never an overflow error."""
    columns = dict(zip(PARAM_NAMES[kind], np.asarray(params, dtype=float).T[..., None]))  # each (k, 1)
    log_n = None if n is None else np.log(np.asarray(n, dtype=float))
    log_d = None if d is None else np.log(np.asarray(d, dtype=float))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if kind == "joint":
            a, b, alpha, beta = (columns[k] for k in ("A", "B", "alpha", "beta"))
            u = alpha / beta * (np.log(a) - log_n)
            return np.exp(beta * np.logaddexp(u, np.log(b) - log_d)) + columns["delta"]
        if kind == "additive":
            a, b, alpha, beta = (columns[k] for k in ("A", "B", "alpha", "beta"))
            return columns["E"] + np.exp(np.log(a) - alpha * log_n) + np.exp(np.log(b) - beta * log_d)
        if kind == "model":
            return np.exp(columns["alpha"] * (np.log(columns["A"]) - log_n)) + columns["delta"]
        return np.exp(columns["beta"] * (np.log(columns["B"]) - log_d)) + columns["delta"]


def _required(values, name):
    if values is None:
        raise InputError(f"this law needs {name}")
    return values


# --- the paper's published fits -------------------------------------------------

@dataclass(frozen=True)
class Preset:
    law: ScalingLaw
    source: str
    r2: float | None = None


PRESETS: dict[str, Preset] = {
    "paper-msmarco-model": Preset(ScalingLaw("model", {"A": 3.22e4, "alpha": 0.53, "delta": 0.04},
                                             "paper-msmarco-model"), "Table 1, MS MARCO", 0.991),
    "paper-t2ranking-model": Preset(ScalingLaw("model", {"A": 9.89e6, "alpha": 0.53, "delta": 0.14},
                                               "paper-t2ranking-model"), "Table 1, T2Ranking", 0.999),
    "paper-msmarco-data": Preset(ScalingLaw("data", {"B": 3.49e3, "beta": 1.05, "delta": 0.05},
                                            "paper-msmarco-data"), "Table 2, MS MARCO", 0.954),
    "paper-t2ranking-data": Preset(ScalingLaw("data", {"B": 6.04e4, "beta": 0.50, "delta": 0.15},
                                              "paper-t2ranking-data"), "Table 2, T2Ranking", 0.991),
    "paper-joint": Preset(ScalingLaw("joint", {"A": 3.6e4, "B": 7.1e3, "alpha": 0.56, "beta": 1.31,
                                               "delta": 0.03}, "paper-joint"), "Eq. 9-10, MS MARCO"),
}


def preset(name: str) -> ScalingLaw:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name].law


# --- input checks ---------------------------------------------------------------

def validate_points(points: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Check the points a `kind` law is fitted to (all of one evaluation protocol,
    engine.eval_protocol); return them with float columns."""
    if kind not in LAW_KINDS:
        raise InputError(f"unknown law {kind!r}: choose one of {', '.join(LAW_KINDS)}")
    check_one_protocol(points)
    needed = {"model": ["n", "loss"], "data": ["d", "loss"]}.get(kind, ["n", "d", "loss"])
    missing = [c for c in needed if c not in points.columns]
    if missing:
        raise InputError(f"the {kind} law needs columns {needed}; missing {missing}")
    clean = points.copy()
    for column in needed:
        values = pd.to_numeric(clean[column], errors="coerce").astype(float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            rows = ", ".join(str(i) for i in clean.index[bad][:5])
            raise InputError(f"column {column!r} must be positive and finite; bad value at row(s) {rows}")
        clean[column] = values
    lo, hi = LOSS_RANGE
    outside = (clean["loss"] < lo) | (clean["loss"] > hi)
    if outside.any():
        rows = ", ".join(str(i) for i in clean.index[outside][:5])
        raise InputError(f"column 'loss' holds {clean['loss'][outside].iloc[0]:g} at row(s) {rows}: a contrastive "
                         f"entropy is a few nats, and a fit of losses outside [{lo:g}, {hi:g}] overflows; "
                         "check the column")
    n_params = len(PARAM_NAMES[kind])
    if len(clean) < n_params + 1:
        raise InputError(f"the {kind} law has {n_params} parameters and needs at least "
                         f"{n_params + 1} points; got {len(clean)}")
    problem = _too_few_sizes(kind, clean[[c for c in ("n", "d") if c in needed]].to_numpy())
    if problem:
        raise InputError(f"the {kind} law has {n_params} parameters, {problem}: the points cannot determine it; "
                         "add runs at other sizes")
    if clean["loss"].nunique() < 2:
        raise InputError(f"every point has the loss {clean['loss'].iloc[0]:g}: a law of how the loss changes "
                         "with size needs losses that change; check the loss column")
    return clean


def _too_few_sizes(kind: str, xs: np.ndarray) -> str | None:
    """Why the sizes `xs` (one row per point: n, d or both) cannot determine a `kind`
    law, or None: a one-variable law needs as many distinct sizes as it has parameters
    (three), a joint law two distinct sizes on each axis and as many distinct (n, d)
    configurations as parameters. The fit and each bootstrap resample obey it."""
    n_params = len(PARAM_NAMES[kind])
    if kind not in JOINT_KINDS:
        distinct, what = len(np.unique(xs)), "model sizes (n)" if kind == "model" else "data sizes (d)"
        return None if distinct >= n_params else (
            f"so it needs at least {n_params} distinct {what}; the points have {distinct}")
    per_axis = [len(np.unique(xs[:, axis])) for axis in (0, 1)]
    if min(per_axis) < 2:
        return (f"so it needs at least 2 distinct model sizes (n) and 2 distinct data sizes (d); the points have "
                f"{per_axis[0]} and {per_axis[1]}")
    configurations = len(np.unique(xs, axis=0))
    return None if configurations >= n_params else (
        f"so it needs at least {n_params} distinct (n, d) configurations; the points have {configurations}")


# --- fitting --------------------------------------------------------------------

@dataclass(frozen=True)
class FitConfig:
    """How a law is fitted; stored with every fit."""

    huber_scale: float = 0.05      # residuals in log L beyond this (about 5 %) count linearly
    bootstrap: int = 1000          # refits on resampled configurations
    level: float = 0.95            # confidence level of every interval
    seed: int = 0
    holdout_largest: int = 0       # hold out the k largest sizes along holdout_axis
    holdout_axis: str = "auto"     # n, d, or auto: d for the data law, n otherwise

    def __post_init__(self):
        check_level(self.level)
        if not is_positive_number(self.huber_scale):
            raise InputError(f"huber_scale must be a positive number (e.g. 0.05, or 1e-3 as Epoch AI's "
                             f"Chinchilla replication), got {self.huber_scale!r}")
        for name in ("bootstrap", "holdout_largest", "seed"):
            value = getattr(self, name)
            if not is_whole(value) or value < 0:
                raise InputError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.holdout_axis not in ("auto", "n", "d"):
            raise InputError(f"holdout_axis must be n, d or auto, got {self.holdout_axis!r}")


@dataclass
class LawFit:
    """A fitted law with its uncertainty and the points behind it."""

    law: ScalingLaw
    r2: float
    intervals: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray          # (n_boot, n_params), natural units
    log_residuals: np.ndarray             # log(L_obs / L_pred) on the fitted points
    points: pd.DataFrame                  # input rows + role (fit|heldout), predicted
    config: FitConfig = field(default_factory=FitConfig)

    @property
    def heldout(self) -> pd.DataFrame:
        return self.points[self.points["role"] == "heldout"]

    @property
    def support(self) -> dict[str, tuple[float, float]]:
        """The N and D ranges of the points the law was fitted to ({} if none are kept):
        inside them a prediction interpolates; outside, it extrapolates."""
        if self.points.empty:
            return {}
        fitted = self.points[self.points["role"] == "fit"] if "role" in self.points else self.points
        return {c: (float(fitted[c].min()), float(fitted[c].max()))
                for c in ("n", "d") if c in fitted and len(fitted)}

    def extrapolation(self, n: float | None = None, d: float | None = None) -> dict[str, float]:
        """How far n and d lie beyond the support, as a factor (1 inside it, 10 for ten
        times the largest fitted size or a tenth of the smallest); only the sizes given
        and supported."""
        support = self.support
        return {axis: extrapolation_factor(value, support[axis])
                for axis, value in (("n", n), ("d", d)) if value is not None and axis in support}

    def bootstrap_laws(self) -> list[ScalingLaw]:
        names = PARAM_NAMES[self.law.kind]
        return [ScalingLaw(self.law.kind, dict(zip(names, row))) for row in self.bootstrap_params]

    def predict_interval(self, n=None, d=None, level: float | None = None) -> dict[str, np.ndarray]:
        """Prediction at (n, d): the fitted value, a confidence interval of the curve
        (bootstrap spread of the law) and a prediction interval for a new run (the
        same, times a resampled residual of the fit)."""
        level = self.config.level if level is None else level
        tail = 100 * (1 - level) / 2
        pred = np.atleast_1d(self.law.predict(n, d))
        if len(self.bootstrap_params) == 0:
            return {"pred": pred, "ci_lo": pred, "ci_hi": pred, "pi_lo": pred, "pi_hi": pred}
        kept = finite_refits(self.bootstrap_params)
        if len(kept) == 0:
            unknown = np.full_like(pred, np.nan)
            return {"pred": pred, "ci_lo": unknown, "ci_hi": unknown, "pi_lo": unknown, "pi_hi": unknown}
        curves = predict_params(self.law.kind, kept,                                   # (n_kept, points)
                                None if n is None else np.atleast_1d(np.asarray(n, dtype=float)),
                                None if d is None else np.atleast_1d(np.asarray(d, dtype=float)))
        rng = np.random.default_rng(self.config.seed)
        noise = np.exp(rng.choice(self.log_residuals, size=curves.shape))
        ci_lo, ci_hi = np.percentile(curves, [tail, 100 - tail], axis=0)
        pi_lo, pi_hi = np.percentile(curves * noise, [tail, 100 - tail], axis=0)
        return {"pred": pred, "ci_lo": ci_lo, "ci_hi": ci_hi, "pi_lo": pi_lo, "pi_hi": pi_hi}

    @property
    def bootstrap_kept(self) -> int:
        """How many bootstrap refits are finite: the intervals are computed over these."""
        return len(finite_refits(self.bootstrap_params))

    def to_dict(self, include_bootstrap: bool = True) -> dict:
        """The JSON contract: law, params, r2, intervals (+ points, config, bootstrap), as
        strict JSON: a non-finite number is written as `json_numbers` says."""
        out = {
            "law": self.law.kind,
            "params": dict(self.law.params),
            "r2": json_numbers(self.r2),
            "intervals": {k: json_numbers(list(v)) for k, v in self.intervals.items()},
            "bootstrap_kept": self.bootstrap_kept,
            "level": self.config.level,
            "equation": LAW_EQUATIONS[self.law.kind],
            "config": asdict(self.config),
            "support": {axis: list(bounds) for axis, bounds in self.support.items()},
            "points": json.loads(self.points.to_json(orient="records")),
        }
        if include_bootstrap:
            out["bootstrap"] = json_numbers(self.bootstrap_params)
            out["log_residuals"] = json_numbers(self.log_residuals)
        return out


def json_numbers(values):
    """A number or array as strict JSON values: inf and -inf as the strings "inf" and
    "-inf" (a bootstrap refit whose scale overflowed; read back by `engine.fit_files.fit_from_dict`),
    NaN as null."""
    array = np.asarray(values, dtype=float)
    out = array.astype(object)
    out[np.isposinf(array)], out[np.isneginf(array)], out[np.isnan(array)] = "inf", "-inf", None
    return out.tolist()


def fit_law(points: pd.DataFrame, kind: str, config: FitConfig = FitConfig(),
            progress: Callable[[int, int], None] | None = None) -> LawFit:
    """Fit Eq. 6, 7 or 8 to points with columns n and/or d, loss (and optional label);
    `progress(done, total)` is called as the bootstrap refits proceed (0 to total)."""
    points = validate_points(points, kind).reset_index(drop=True)
    points["role"] = _roles(points, kind, config.holdout_largest, config.holdout_axis)
    train = validate_points(points[points["role"] == "fit"], kind)
    x, loss = _design(train, kind), train["loss"].to_numpy()
    theta = fit_theta(kind, x, loss, config.huber_scale)
    law = ScalingLaw(kind, _natural(kind, theta))
    predicted = law.predict(points.get("n"), points.get("d"))
    points["predicted"] = predicted
    points["rel_error"] = predicted / points["loss"] - 1
    boot = _bootstrap(kind, train, theta, config, progress)
    intervals = _percentile_intervals(kind, boot, config.level)
    fit = LawFit(law, _r2(loss, law.predict(train.get("n"), train.get("d"))), intervals, boot,
                 np.log(loss / law.predict(train.get("n"), train.get("d"))), points, config)
    if (points["role"] == "heldout").any():
        band = fit.predict_interval(points["n"] if law.uses_n else None,
                                    points["d"] if law.uses_d else None)
        points["pi_lo"], points["pi_hi"] = band["pi_lo"], band["pi_hi"]
    return fit


def _roles(points: pd.DataFrame, kind: str, k: int, axis: str = "auto") -> list[str]:
    if axis not in ("auto", "n", "d"):
        raise InputError(f"holdout_axis must be n, d or auto, got {axis!r}")
    if k <= 0:
        return ["fit"] * len(points)
    column = ("d" if kind == "data" else "n") if axis == "auto" else axis
    if column not in points.columns:
        raise InputError(f"cannot hold out the largest {column}: the {kind}-size law has no {column}")
    sizes = np.sort(points[column].unique())
    if k >= len(sizes):
        raise InputError(f"cannot hold out the {k} largest of only {len(sizes)} distinct {column} values")
    cut = sizes[-k]
    return ["heldout" if v >= cut else "fit" for v in points[column]]


def _design(points: pd.DataFrame, kind: str) -> np.ndarray:
    """Log sizes the law is fitted on: (n_points,) or (n_points, 2) for the joint law."""
    if kind == "model":
        return np.log(points["n"].to_numpy())
    if kind == "data":
        return np.log(points["d"].to_numpy())
    return np.log(points[["n", "d"]].to_numpy())


def _natural(kind: str, theta: np.ndarray) -> dict[str, float]:
    """Internal parameters (log scales, exponents, floor) -> the paper's names."""
    return dict(zip(PARAM_NAMES[kind], (float(v) for v in _natural_rows(kind, np.atleast_2d(theta))[0])))


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    total = np.sum((observed - observed.mean()) ** 2)
    return float(1 - np.sum((observed - predicted) ** 2) / total) if total > 0 else float("nan")


def _bootstrap(kind, train: pd.DataFrame, theta, config: FitConfig,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Refit on configurations resampled with replacement; a configuration is one
    (n, d) pair with all its rows (seeds), so repeated seeds are not counted as
    independent evidence. A resample is a weight per row (how often it was drawn),
    so all refits share one design and are solved together by the batched
    Levenberg-Marquardt (engine.fit_optimisers.refit_resamples).

    Joint and additive refits start from the full-data optimum `theta` and descend
    from there; they do not search the grid of starts the full fit searches. Where
    the loss surface has one basin this finds each resample's own optimum (checked
    against scipy from the same start, tests/test_laws.py). Where it has several (a
    flat, weakly determined joint law), a resample whose best lies in another basin
    stays in this one, so the intervals describe the spread around this optimum and
    may understate the uncertainty. One-variable refits start from each resample's
    best exponent on a profile grid over every exponent, as the single fits do.
    `progress(done, total)` goes from 0 to total as refits converge."""
    names = PARAM_NAMES[kind]
    if config.bootstrap <= 0:
        return np.empty((0, len(names)))
    total = config.bootstrap
    if progress is not None:
        progress(0, total)
    keys = [c for c in ("n", "d") if c in train.columns]
    groups = list(train.groupby(keys).indices.values())   # positional rows of each configuration
    x, loss = _design(train, kind), train["loss"].to_numpy()
    rng = np.random.default_rng(config.seed)
    counts = np.stack([np.bincount(rng.integers(len(groups), size=len(groups)), minlength=len(groups))
                       for _ in range(total)])                                  # (B, configurations)
    weights = np.zeros((total, len(loss)))                                      # (B, rows)
    for g, rows in enumerate(groups):
        weights[:, rows] = counts[:, [g]]
    weights = weights[[_identifiable(kind, x[w > 0], len(names), int(w.sum())) for w in weights]]
    refits = np.empty((0, len(names)))
    if len(weights):
        report = None if progress is None else (
            lambda converged: progress(total - len(weights) + converged, total))  # skipped draws count as done
        refits = _natural_rows(kind, refit_resamples(kind, theta, x, loss, weights, config.huber_scale, report))
    if progress is not None:
        progress(total, total)
    return refits


def _natural_rows(kind: str, theta: np.ndarray) -> np.ndarray:
    """`_natural` for every row of theta (B, n_params), in PARAM_NAMES order."""
    out = np.array(theta, dtype=float)
    with np.errstate(over="ignore"):  # a degenerate draw may put its scale at infinity
        for i in SCALE_COLUMNS[kind]:
            out[:, i] = np.exp(out[:, i])
    return out


def sizes_determine(kind: str, xs) -> bool:
    """Whether points at the sizes `xs` (one row per point) can determine a `kind` law:
    the rule validate_points applies to a fit (engine/point_selection.py offers slices by it)."""
    return _identifiable(kind, np.asarray(xs, dtype=float), len(PARAM_NAMES[kind]))


def _identifiable(kind, xs, n_params, rows: int | None = None) -> bool:
    """Whether a resample can determine the law: enough rows (`rows`, counting repeats;
    default len(xs)) and enough distinct sizes among the distinct rows xs (the rule
    validate_points applies to the fit)."""
    if (len(xs) if rows is None else rows) < n_params + 1:
        return False
    return _too_few_sizes(kind, xs) is None


def finite_refits(boot: np.ndarray) -> np.ndarray:
    """(kept, params) the bootstrap refits whose every parameter is finite: the ones
    intervals are taken over (a refit whose scale overflowed has no curve)."""
    return boot[np.isfinite(boot).all(axis=1)]


def _percentile_intervals(kind, boot: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals over the finite refits of `boot` (a refit whose scale
    overflowed says only that the parameter is unbounded); {} when none is finite."""
    boot = finite_refits(boot)
    if len(boot) == 0:
        return {}
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(PARAM_NAMES[kind], lo, hi)}
