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
resamples whole configurations (all rows of one (N, D) pair together).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize_scalar

from engine.errors import InputError
from engine.protocol import check_one_protocol

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
    engine.protocol); return them with float columns."""
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
        if not _is_number(self.huber_scale) or not np.isfinite(self.huber_scale) or self.huber_scale <= 0:
            raise InputError(f"huber_scale must be a positive number (e.g. 0.05, or 1e-3 as Epoch AI's "
                             f"Chinchilla replication), got {self.huber_scale!r}")
        for name in ("bootstrap", "holdout_largest", "seed"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise InputError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.holdout_axis not in ("auto", "n", "d"):
            raise InputError(f"holdout_axis must be n, d or auto, got {self.holdout_axis!r}")


def check_level(level) -> float:
    """A confidence level strictly between 0 and 1 (0.95 for 95 %), or InputError."""
    if not _is_number(level) or not 0 < level < 1:
        raise InputError(f"the confidence level must lie strictly between 0 and 1 (0.95 for 95%), got {level!r}")
    return float(level)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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
        curves = predict_params(self.law.kind, self.bootstrap_params,                  # (n_boot, points)
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
        return int(np.isfinite(self.bootstrap_params).all(axis=1).sum())

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

    @classmethod
    def from_dict(cls, data: dict) -> "LawFit":
        """A fit from its JSON form, checked: InputError names the first field that is wrong."""
        if not isinstance(data, dict):
            raise InputError("a fit must be a JSON object with law, params and bootstrap")
        kind = data.get("law")
        if kind not in LAW_KINDS:
            raise InputError(f"field 'law' must be one of {', '.join(LAW_KINDS)}, got {kind!r}")
        params = _checked_params(kind, data.get("params"))
        config = data.get("config", {})
        if not isinstance(config, dict) or set(config) - set(FitConfig.__dataclass_fields__):
            raise InputError(f"field 'config' must be an object with keys among "
                             f"{', '.join(FitConfig.__dataclass_fields__)}")
        r2 = data.get("r2", float("nan"))
        r2 = float("nan") if r2 is None else r2
        if not _is_number(r2):
            raise InputError(f"field 'r2' must be a number, got {r2!r}")
        return cls(
            law=ScalingLaw(kind, params),
            r2=float(r2),
            intervals=_checked_intervals(data.get("intervals", {})),
            bootstrap_params=_checked_matrix(data.get("bootstrap", []), "bootstrap", len(PARAM_NAMES[kind])),
            log_residuals=_checked_matrix(data.get("log_residuals", [0.0]), "log_residuals", None),
            points=_checked_points(data.get("points", []), kind),
            config=FitConfig(**config),
        )


JSON_INFINITY = {"inf": np.inf, "-inf": -np.inf}   # JSON has no infinity: a fit writes it as these strings


def json_numbers(values):
    """A number or array as strict JSON values: inf and -inf as the strings "inf" and
    "-inf" (a bootstrap refit whose scale overflowed; read back by `LawFit.from_dict`),
    NaN as null."""
    array = np.asarray(values, dtype=float)
    out = array.astype(object)
    out[np.isposinf(array)], out[np.isneginf(array)], out[np.isnan(array)] = "inf", "-inf", None
    return out.tolist()


def _checked_params(kind: str, params) -> dict[str, float]:
    names = PARAM_NAMES[kind]
    if not isinstance(params, dict) or set(params) != set(names):
        raise InputError(f"field 'params' of a {kind} law must be an object with exactly {', '.join(names)}")
    for name, value in params.items():
        if not _is_number(value) or not np.isfinite(value):
            raise InputError(f"parameter {name} must be a finite number, got {value!r}")
        if name in POSITIVE_PARAMS and value <= 0:
            raise InputError(f"parameter {name} must be > 0 (a law with {name} = {value:g} is not a power law)")
        if value < 0:
            raise InputError(f"parameter {name} must be >= 0, got {value:g}")
    return {name: float(params[name]) for name in names}


def _checked_points(points, kind: str) -> pd.DataFrame:
    """The fitted points of a saved fit: a list of objects whose sizes (those the law
    uses) and loss are positive numbers."""
    if not isinstance(points, list) or not all(isinstance(row, dict) for row in points):
        raise InputError("field 'points' must be a list of objects with n, d and loss")
    frame = pd.DataFrame(points)
    used = {"model": ("n", "loss"), "data": ("d", "loss")}.get(kind, ("n", "d", "loss"))
    for column in used:
        if column in frame and not all(_is_number(v) and np.isfinite(v) and v > 0 for v in frame[column]):
            raise InputError(f"field 'points': every {column} must be a positive number")
    return frame


def _checked_intervals(intervals) -> dict[str, tuple[float, float]]:
    if not isinstance(intervals, dict):
        raise InputError("field 'intervals' must be an object of [low, high] pairs")
    for name, pair in intervals.items():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                _is_number(v) or v is None or v in JSON_INFINITY for v in pair):
            raise InputError(f"interval of {name} must be a [low, high] pair of numbers, got {pair!r}")
    return {name: tuple(float("nan") if v is None else float(v) for v in pair) for name, pair in intervals.items()}


def _checked_matrix(values, name: str, columns: int | None) -> np.ndarray:
    """A list of numbers (columns None) or of rows of `columns` numbers, without NaN."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise InputError(f"field {name!r} must hold numbers only ({err})") from err
    shape_ok = array.ndim == 1 if columns is None else (
        array.size == 0 or (array.ndim == 2 and array.shape[1] == columns))
    if not shape_ok:
        what = "a list of numbers" if columns is None else f"a list of rows of {columns} numbers"
        raise InputError(f"field {name!r} must be {what}; got shape {array.shape}")
    if np.isnan(array).any():
        raise InputError(f"field {name!r} contains NaN")
    return array.reshape(-1, columns) if columns else array


def load_law(spec: str) -> LawFit | ScalingLaw:
    """A preset name or the path of a fit saved as JSON (`laws fit --out`)."""
    if spec in PRESETS:
        return preset(spec)
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"{spec!r} is neither a preset ({', '.join(PRESETS)}) nor a fit JSON file")
    try:
        return LawFit.from_dict(json.loads(path.read_text()))
    except InputError as err:
        raise InputError(f"{path}: {err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as err:
        raise InputError(f"{path}: not a fit JSON written by `laws fit` ({type(err).__name__}: {err})") from None


def fit_law(points: pd.DataFrame, kind: str, config: FitConfig = FitConfig(),
            progress: Callable[[int, int], None] | None = None) -> LawFit:
    """Fit Eq. 6, 7 or 8 to points with columns n and/or d, loss (and optional label);
    `progress(done, total)` is called as the bootstrap refits proceed (0 to total)."""
    points = validate_points(points, kind).reset_index(drop=True)
    points["role"] = _roles(points, kind, config.holdout_largest, config.holdout_axis)
    train = validate_points(points[points["role"] == "fit"], kind)
    x, loss = _design(train, kind), train["loss"].to_numpy()
    theta = _fit_theta(kind, x, loss, config.huber_scale)
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


# --- what a fit's points determine --------------------------------------------------

DETERMINED_DECADES = {"scale": 1.0, "exponent": 0.3, "floor": 0.3}  # widest interval (decades) still "determined"
MIN_REFITS_KEPT, MIN_REFITS_SHARE = 10, 0.5   # fewer refits kept (or under half those asked for): nothing determined
STRONG_CORRELATION = 0.9        # |rank correlation| of two parameters over the bootstrap: they trade off
FLOOR_PARAMS = ("delta", "E")


def _role(name: str) -> str:
    return "floor" if name in FLOOR_PARAMS else "exponent" if name in ("alpha", "beta") else "scale"


@dataclass
class Identifiability:
    """Which parameters a fit's points pin down, read from its bootstrap."""

    decades: dict[str, float]             # log10(high / low) of each interval; inf if low <= 0
    determined: list[str]
    undetermined: list[str]
    at_bound: dict[str, str]              # parameter -> the bound its estimate sits on
    correlated: list[tuple[str, str, float]]   # pairs with |Spearman rho| >= STRONG_CORRELATION
    support: dict[str, tuple[float, float]]
    bootstrap: tuple[int, int] = (0, 0)   # refits kept (finite), refits asked for

    @property
    def too_few_refits(self) -> bool:
        """Whether the bootstrap kept too few refits to tell anything (MIN_REFITS_KEPT)."""
        kept, wanted = self.bootstrap
        return kept < max(MIN_REFITS_KEPT, MIN_REFITS_SHARE * wanted)

    def sentence(self) -> str:
        """What the Fit page and the report say instead of raw coefficients."""
        from engine.numbers import format_count

        ranges = [f"{axis.upper()} in [{format_count(lo)}, {format_count(hi)}]"
                  for axis, (lo, hi) in self.support.items()]
        if self.too_few_refits:
            kept, wanted = self.bootstrap
            return (f"These points do not determine the curve{' for ' + ' and '.join(ranges) if ranges else ''}: "
                    f"only {kept} of {wanted} bootstrap refits could be made (a resample with too few distinct "
                    f"sizes cannot be fitted, an overflowing refit is dropped), so no parameter is determined; "
                    "add runs at other sizes.")
        parts = [f"These points determine the curve for {' and '.join(ranges)}" if ranges else
                 "This fit keeps no points, so its range is unknown"]
        if self.determined:
            parts.append(f"{_join(self.determined)} {'is' if len(self.determined) == 1 else 'are'} determined")
        if self.undetermined:
            spans = ", ".join("unbounded" if not np.isfinite(self.decades[p]) else f"{self.decades[p]:.2g}"
                              for p in self.undetermined)
            parts.append(f"{_join(self.undetermined)} {'is' if len(self.undetermined) == 1 else 'are'} not "
                         f"determined (interval widths in decades: {spans})")
        sentence = "; ".join(parts) + "."
        if self.at_bound:
            sentence += " " + "; ".join(f"{p} sits at its bound {b}" for p, b in self.at_bound.items()) + "."
        if self.correlated:
            sentence += " " + "; ".join(
                f"{a} and {b} move together (rank correlation {rho:+.2f})"
                + (", so only their combination is measured" if {a, b} & set(self.undetermined) else "")
                for a, b, rho in self.correlated) + "."
        return sentence

    def to_dict(self) -> dict:
        return {"decades": {p: json_numbers(width) for p, width in self.decades.items()}, "determined": self.determined, "undetermined": self.undetermined,
                "at_bound": self.at_bound, "correlated": [list(c) for c in self.correlated],
                "bootstrap_kept": self.bootstrap[0], "bootstrap_asked": self.bootstrap[1],
                "sentence": self.sentence()}


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def identifiability(fit: LawFit) -> Identifiability:
    """Interval width of each parameter in decades (a parameter is determined when it is
    within DETERMINED_DECADES for its role), estimates sitting on a fitting bound, and
    parameter pairs whose bootstrap draws move together (scales compared in log)."""
    names = PARAM_NAMES[fit.law.kind]
    diverged = dict(zip(names, ~np.isfinite(fit.bootstrap_params).all(axis=0)))   # some refit ran to infinity
    decades = {}
    for name in names:
        lo, hi = fit.intervals.get(name, (np.nan, np.nan))
        decades[name] = float(np.log10(hi / lo)) if lo > 0 and hi > 0 and not diverged[name] else float("inf")
    facts = Identifiability(decades, [], list(names), _at_bounds(fit), _correlated_pairs(fit), fit.support,
                            (fit.bootstrap_kept, fit.config.bootstrap))
    if facts.too_few_refits:   # intervals over a handful of refits (or none) say nothing
        return facts
    known = [p for p in names if p in fit.intervals]
    facts.determined = [p for p in known if decades[p] <= DETERMINED_DECADES[_role(p)]]
    facts.undetermined = [p for p in known if p not in facts.determined]
    return facts


def _at_bounds(fit: LawFit) -> dict[str, str]:
    params = fit.law.params
    fitted = fit.points[fit.points["role"] == "fit"] if "role" in fit.points else fit.points
    ceiling = float(fitted["loss"].max()) if "loss" in fitted and len(fitted) else np.inf
    out = {}
    for name, value in params.items():
        if _role(name) == "exponent":
            for bound in (*EXPONENT_BOUNDS, 1e-2 if name == "beta" and fit.law.kind == "joint" else None):
                if bound is not None and abs(value - bound) <= 1e-6 * bound:
                    out[name] = f"{bound:g}"
        elif _role(name) == "floor":
            if value <= 1e-9 * ceiling:
                out[name] = "0 (no floor)"
            elif value >= ceiling * (1 - 1e-9):
                out[name] = f"{ceiling:.4g} (the largest loss fitted)"
    return out


def _correlated_pairs(fit: LawFit) -> list[tuple[str, str, float]]:
    boot = np.asarray(fit.bootstrap_params, dtype=float)
    if len(boot) < 10:
        return []
    names = PARAM_NAMES[fit.law.kind]
    with np.errstate(divide="ignore"):
        values = np.column_stack([np.log(boot[:, i]) if _role(n) == "scale" else boot[:, i]
                                  for i, n in enumerate(names)])
    ranks = pd.DataFrame(values, columns=names).rank()          # Spearman: Pearson on ranks
    rho = ranks.corr().to_numpy()
    return [(names[i], names[j], float(rho[i, j])) for i in range(len(names)) for j in range(i + 1, len(names))
            if np.isfinite(rho[i, j]) and abs(rho[i, j]) >= STRONG_CORRELATION]


@dataclass
class LawComparison:
    """One functional form fitted to shared points, with what tells forms apart: R²,
    information criteria on the log residuals (lower is better; a difference below
    about 2 does not separate two forms) and the error on the largest size along N
    and along D when the form is fitted without it."""

    fit: LawFit
    aic: float
    bic: float
    log_rmse: float
    leave_largest_out: dict[str, dict | None]   # "n" / "d" -> points, mean and max |relative error|

    def to_dict(self) -> dict:
        return {"law": self.fit.law.kind, "equation": LAW_EQUATIONS[self.fit.law.kind],
                "params": dict(self.fit.law.params), "intervals": {k: list(v) for k, v in self.fit.intervals.items()},
                "r2": self.fit.r2, "aic": self.aic, "bic": self.bic, "log_rmse": self.log_rmse,
                "leave_largest_out": self.leave_largest_out}


def compare_laws(points: pd.DataFrame, kinds: tuple[str, ...] = JOINT_KINDS,
                 config: FitConfig = FitConfig(bootstrap=0)) -> list[LawComparison]:
    """Fit every form in `kinds` to the same points the same way (config) and judge
    each: AIC = k log(SSR/k) + 2p and BIC = k log(SSR/k) + p log k on the k log
    residuals of a p-parameter form, and its leave-largest-out error along N and D
    (None where too few sizes remain to fit without the largest)."""
    compared = []
    for kind in kinds:
        fit = fit_law(points, kind, config)
        k, p = len(fit.log_residuals), len(PARAM_NAMES[kind])
        ssr = max(float(np.sum(fit.log_residuals ** 2)), 1e-300)
        held = {}
        for axis in ("n", "d"):
            try:
                out = fit_law(points, kind, replace(config, bootstrap=0, holdout_largest=1, holdout_axis=axis)).heldout
            except InputError:
                held[axis] = None
                continue
            held[axis] = {"largest": float(out[axis].max()), "points": len(out),
                          "mean_abs_error": float(out["rel_error"].abs().mean()),
                          "max_abs_error": float(out["rel_error"].abs().max())}
        compared.append(LawComparison(fit, k * np.log(ssr / k) + 2 * p, k * np.log(ssr / k) + p * np.log(k),
                                      float(np.sqrt(ssr / k)), held))
    return compared


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


# Internal parameterisations, all predicting in log space:
#   one-variable: theta = (log K, p, delta),  L = exp(p (log K - x)) + delta
#   joint:        theta = (log A, log B, alpha, beta, delta)
#   additive:     theta = (log A, log B, alpha, beta, E),  L = exp(log A - alpha x_n) + exp(log B - beta x_d) + E
EXPONENT_BOUNDS = (1e-3, 5.0)


def _bounds(kind, loss) -> tuple[np.ndarray, np.ndarray]:
    """Box bounds of the internal parameters: exponents in EXPONENT_BOUNDS, the floor in [0, max loss]."""
    lo_exp, hi_exp = EXPONENT_BOUNDS
    if kind in JOINT_KINDS:   # Eq. 8 divides by beta: keep it off 0
        return (np.array([-np.inf, -np.inf, lo_exp, 1e-2 if kind == "joint" else lo_exp, 0.0]),
                np.array([np.inf, np.inf, hi_exp, hi_exp, loss.max()]))
    return np.array([-np.inf, lo_exp, 0.0]), np.array([np.inf, hi_exp, loss.max()])


def _polish(kind, theta0, x, loss, huber_scale):
    """Huber on log L from theta0, tolerances tight enough to reach the optimum."""
    fun = lambda theta, x, log_loss: _residuals_and_jacobian(kind, theta[None], x, log_loss)[0][0]  # noqa: E731
    jac = lambda theta, x, log_loss: _residuals_and_jacobian(kind, theta[None], x, log_loss)[1][0]  # noqa: E731
    bounds = _bounds(kind, loss)
    theta0 = np.clip(theta0, np.array(bounds[0]) + 1e-12, np.array(bounds[1]) - 1e-12)
    result = least_squares(fun, theta0, jac=jac, bounds=bounds, args=(x, np.log(loss)),
                           loss="huber", f_scale=huber_scale, x_scale="jac",
                           xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
    return result.x, result.cost


def _profile(exponents, x, loss):
    """Variable projection for a one-variable law: for each exponent p, the best
    (c, delta >= 0) of L = c exp(-p x) + delta in relative least squares, solved
    exactly (2x2 normal equations, vectorised over exponents).
    Returns log K, delta and the sum of squared relative errors, each (n_exponents,)."""
    p = np.atleast_1d(exponents)[:, None]                  # (m, 1)
    w = 1 / loss                                          # relative errors ~ errors in log L
    a1 = np.exp(-p * (x - x.min())) * w                   # (m, k), scaled so max(basis) = 1
    g11, g12, g22 = (a1 * a1).sum(1), (a1 * w).sum(1), (w * w).sum()
    b1, b2 = a1.sum(1), w.sum()
    det = g11 * g22 - g12 ** 2
    c = (b1 * g22 - b2 * g12) / det                       # (m,)
    delta = (g11 * b2 - g12 * b1) / det
    no_floor = (delta < 0) | (c <= 0)                     # delta must be >= 0: refit without it
    c = np.where(no_floor, b1 / g11, c)
    delta = np.where(no_floor, 0.0, delta)
    sse = ((a1 * c[:, None] + w * delta[:, None] - 1) ** 2).sum(1)
    log_k = np.log(np.maximum(c, 1e-300)) / p[:, 0] + x.min()   # c exp(-p (x - x_min)) = exp(p (log K - x))
    return log_k, delta, sse


def _fit_one_variable(x, loss, huber_scale):
    grid = np.geomspace(0.02, EXPONENT_BOUNDS[1], 120)
    i = int(np.argmin(_profile(grid, x, loss)[2]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = minimize_scalar(lambda p: _profile(p, x, loss)[2][0], bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-10})
    log_k, delta, _ = _profile(best.x, x, loss)
    theta, _ = _polish("one-variable", np.array([log_k[0], best.x, delta[0]]), x, loss, huber_scale)
    return theta


def _joint_starts(x, loss):
    log_n_min, log_d_min = x[:, 0].min(), x[:, 1].min()
    for alpha, beta, da, db in product((0.3, 0.7), (0.5, 1.0, 2.0), (-4.0, 0.0), (-3.0, 0.0)):
        yield np.array([log_n_min + da, log_d_min + db, alpha, beta, 0.5 * loss.min()])


def _additive_starts(x, loss):
    """A grid over the exponents and the floor E; each scale set so its term is half of
    what the floor leaves at the median size."""
    median_n, median_d = np.median(x[:, 0]), np.median(x[:, 1])
    for alpha, beta, floor in product((0.1, 0.3, 0.6, 1.0), (0.1, 0.3, 0.6, 1.0), (0.0, 0.5, 0.9)):
        e = floor * loss.min()
        half = np.log(max(0.5 * (np.median(loss) - e), 1e-3 * loss.min()))
        yield np.array([half + alpha * median_n, half + beta * median_d, alpha, beta, e])


def _fit_multistart(kind, starts, x, loss, huber_scale):
    """Every start solved at once by `_batched_huber_lm`, the best finished by `_polish`."""
    starts = np.array(list(starts))
    ones = np.ones((len(starts), len(loss)))
    solved = _batched_huber_lm(kind, starts, x, loss, ones, huber_scale)
    costs = _huber_cost(_residuals_and_jacobian(kind, solved, x, np.log(loss))[0], ones, huber_scale)
    return _polish(kind, solved[int(np.nanargmin(costs))], x, loss, huber_scale)[0]


def _fit_theta(kind, x, loss, huber_scale):
    if kind == "joint":
        return _fit_multistart(kind, _joint_starts(x, loss), x, loss, huber_scale)
    if kind == "additive":
        return _fit_multistart(kind, _additive_starts(x, loss), x, loss, huber_scale)
    return _fit_one_variable(x, loss, huber_scale)


def _bootstrap(kind, train: pd.DataFrame, theta, config: FitConfig,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Refit on configurations resampled with replacement; a configuration is one
    (n, d) pair with all its rows (seeds), so repeated seeds are not counted as
    independent evidence. A resample is a weight per row (how often it was drawn),
    so all refits share one design and are solved together (`_batched_huber_lm`):
    joint refits start from the full-data optimum, one-variable refits from each
    resample's best exponent on a profile grid, as the single fits do.
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
        starts = (np.broadcast_to(theta, (len(weights), len(theta))) if kind in JOINT_KINDS
                  else _profile_starts(x, loss, weights))
        report = None if progress is None else (
            lambda converged: progress(total - len(weights) + converged, total))  # skipped draws count as done
        refits = _natural_rows(kind, _batched_huber_lm(kind, starts, x, loss, weights, config.huber_scale, report))
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


def _profile_starts(x, loss, weights) -> np.ndarray:
    """Starting theta (B, 3) of one-variable refits: each resample's best exponent on
    the profile grid, with its exactly solved log K and delta."""
    grid = np.geomspace(0.02, EXPONENT_BOUNDS[1], 120)
    chunk = max(1, PROFILE_CELLS // (len(grid) * len(loss)))                   # resamples per (chunk, m, k) block
    starts = []
    for first in range(0, len(weights), chunk):
        log_k, delta, sse = _profile_weighted(grid, x, loss, weights[first:first + chunk])  # each (chunk, m)
        best = np.argmin(sse, axis=1)
        rows = np.arange(len(best))
        starts.append(np.column_stack([log_k[rows, best], grid[best], delta[rows, best]]))
    return np.concatenate(starts)


PROFILE_CELLS = 2_000_000   # floats per (resamples, exponents, points) block of the profile grid: ~16 MB


def _profile_weighted(exponents, x, loss, weights):
    """`_profile` for many weightings of the same points at once: (m,) exponents,
    (B, k) weights -> log K, delta, weighted SSE, each (B, m)."""
    p = np.atleast_1d(exponents)[None, :, None]                                 # (1, m, 1)
    w = (1 / loss)[None, None, :]                                               # (1, 1, k)
    counts = weights[:, None, :]                                                # (B, 1, k)
    a1 = np.exp(-p * (x - x.min())) * w                                         # (1, m, k)
    g11, g12 = (counts * a1 * a1).sum(-1), (counts * a1 * w).sum(-1)            # (B, m)
    g22 = (counts * w * w).sum(-1)                                              # (B, 1)
    b1, b2 = (counts * a1).sum(-1), (counts * w).sum(-1)
    det = g11 * g22 - g12 ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (b1 * g22 - b2 * g12) / det
        delta = (g11 * b2 - g12 * b1) / det
    no_floor = ~(delta >= 0) | ~(c > 0)                                         # delta must be >= 0: refit without it
    c = np.where(no_floor, b1 / g11, c)
    delta = np.where(no_floor, 0.0, delta)
    sse = (counts * (a1 * c[..., None] + w * delta[..., None] - 1) ** 2).sum(-1)
    log_k = np.log(np.maximum(c, 1e-300)) / p[..., 0] + x.min()
    return log_k, delta, sse


# --- batched Levenberg-Marquardt with a Huber loss ---------------------------------

LM_TOLERANCE = 1e-12     # relative change of cost or theta at which a refit has converged (scipy's ftol/xtol)
LM_MAX_ITERATIONS = 1000 # then the few refits still creeping along a flat valley finish with scipy (`_polish`)


def _batched_huber_lm(kind, theta0, x, loss, weights, huber_scale, report=None) -> np.ndarray:
    """Minimise sum_k w_bk huber(r_k(theta_b)), r = log L_pred - log L, for every row b
    at once: what `_polish` minimises with scipy, one resample at a time.

    Each iteration solves the (B, P, P) damped normal equations of iteratively
    reweighted Gauss-Newton (Huber weights: 1 inside the scale, scale/|r| beyond),
    damped by Marquardt's diagonal (scale-free, like scipy's x_scale='jac'), within
    the same box bounds: a parameter at a bound whose gradient points outward is held
    there. A step is kept only if it lowers the cost; a row stops when the cost or
    theta change by less than LM_TOLERANCE relatively, or when no step lowers it. Rows
    still running after LM_MAX_ITERATIONS are finished one by one by `_polish`."""
    lower, upper = _bounds(kind, loss)
    theta = np.clip(np.array(theta0, dtype=float), lower + 1e-12, upper - 1e-12)    # (B, P)
    log_loss = np.log(loss)
    residuals, jac = _residuals_and_jacobian(kind, theta, x, log_loss)          # (B, k), (B, k, P)
    cost = _huber_cost(residuals, weights, huber_scale)                         # (B,)
    damping = np.full(len(theta), 1e-3)
    running = np.isfinite(cost)
    eye = np.eye(theta.shape[1])
    for _ in range(LM_MAX_ITERATIONS):
        rows = np.flatnonzero(running)
        if rows.size == 0:
            break
        r, j, w, t = residuals[rows], jac[rows], weights[rows], theta[rows]
        irls = w * np.minimum(1.0, huber_scale / np.maximum(np.abs(r), 1e-300))  # (b, k)
        j_t = j.transpose(0, 2, 1)                                              # (b, P, k)
        grad = (j_t @ (irls * r)[..., None])[..., 0]                            # (b, P)
        hess = (j_t * irls[:, None, :]) @ j                                     # (b, P, P)
        free = ~(((t <= lower) & (grad > 0)) | ((t >= upper) & (grad < 0)))     # held: pressed against a bound
        hess = hess * free[:, :, None] * free[:, None, :] + eye * ~free[:, :, None]
        diagonal = np.diagonal(hess, axis1=1, axis2=2)                          # (b, P)
        diagonal = np.maximum(diagonal, 1e-12 * diagonal.sum(axis=1, keepdims=True) + 1e-300)
        step = -np.linalg.solve(hess + damping[rows, None, None] * eye * diagonal[:, :, None],
                                (grad * free)[..., None])[..., 0] * free
        trial = np.clip(t + step, lower, upper)
        r_new, j_new = _residuals_and_jacobian(kind, trial, x, log_loss)
        cost_new = _huber_cost(r_new, w, huber_scale)
        better = np.isfinite(cost_new) & (cost_new < cost[rows])
        kept, refused = rows[better], rows[~better]
        converged = ((cost[kept] - cost_new[better]) <= LM_TOLERANCE * cost[kept]) | (
            np.abs(trial[better] - t[better]).max(axis=1)
            <= LM_TOLERANCE * (LM_TOLERANCE + np.abs(t[better]).max(axis=1)))
        theta[kept], residuals[kept], jac[kept], cost[kept] = trial[better], r_new[better], j_new[better], cost_new[better]
        damping[kept] = np.maximum(damping[kept] * 0.3, 1e-12)
        damping[refused] *= 10.0
        running[kept[converged]] = False
        running[refused[damping[refused] > 1e16]] = False                       # no step lowers the cost: a minimum
        if report is not None:
            report(int((~running).sum()))
    for row in np.flatnonzero(running):
        repeats = weights[row].astype(int)
        theta[row], _ = _polish(kind, theta[row], np.repeat(x, repeats, axis=0), np.repeat(loss, repeats),
                                huber_scale)
    return theta


def _huber_cost(residuals, weights, scale) -> np.ndarray:
    """sum_k w_k rho(r_k), rho the Huber loss (quadratic within `scale`, linear beyond); (B,)."""
    absolute = np.abs(residuals)
    rho = np.where(absolute <= scale, 0.5 * residuals ** 2, scale * absolute - 0.5 * scale ** 2)
    return (weights * rho).sum(axis=1)


def _residuals_and_jacobian(kind, theta, x, log_loss):
    """Residuals (B, k) and Jacobian (B, k, P) in log L of every row of theta (B, P)."""
    cols = [theta[:, i, None] for i in range(theta.shape[1])]                   # each (B, 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # handled below: non-finite rows
        if kind == "joint":
            log_a, log_b, alpha, beta, delta = cols
            u = (alpha / beta) * (log_a - x[:, 0])                              # (B, k) log (A/N)^(alpha/beta)
            v = log_b - x[:, 1]                                                 # log B/D
            s = np.logaddexp(u, v)
            term = np.exp(beta * s)
            pred = term + delta
            w_u = np.exp(u - s)
            jac = np.stack([term * alpha * w_u, term * beta * (1 - w_u), term * w_u * (log_a - x[:, 0]),
                            term * (s - w_u * u), np.ones_like(term)], axis=-1) / pred[..., None]
        elif kind == "additive":
            log_a, log_b, alpha, beta, floor = cols
            model_term, data_term = np.exp(log_a - alpha * x[:, 0]), np.exp(log_b - beta * x[:, 1])  # (B, k)
            pred = model_term + data_term + floor
            jac = np.stack([model_term, data_term, -x[:, 0] * model_term, -x[:, 1] * data_term,
                            np.ones_like(pred)], axis=-1) / pred[..., None]
        else:
            log_k, p, delta = cols
            term = np.exp(p * (log_k - x))
            pred = term + delta
            jac = np.stack([p * term, (log_k - x) * term, np.ones_like(term)], axis=-1) / pred[..., None]
        residuals = np.log(pred) - log_loss
    residuals[~np.isfinite(residuals)] = np.inf
    jac[~np.isfinite(jac)] = 0.0
    return residuals, jac


def _identifiable(kind, xs, n_params, rows: int | None = None) -> bool:
    """Whether a resample can determine the law: enough rows (`rows`, counting repeats;
    default len(xs)) and enough distinct sizes among the distinct rows xs (the rule
    validate_points applies to the fit)."""
    if (len(xs) if rows is None else rows) < n_params + 1:
        return False
    return _too_few_sizes(kind, xs) is None


def _percentile_intervals(kind, boot: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals over the finite refits of `boot` (a refit whose scale
    overflowed says only that the parameter is unbounded); {} when none is finite."""
    boot = boot[np.isfinite(boot).all(axis=1)]
    if len(boot) == 0:
        return {}
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(PARAM_NAMES[kind], lo, hi)}
