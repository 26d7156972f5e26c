"""The law fitter as it was before the batched bootstrap (engine/laws.py at c5baa96),
kept unchanged below this note so bench/bench_laws.py can time the old and the new
bootstrap side by side in one run and tests/test_laws.py can check that both give
the same intervals on a fixed seed. Not used by the engine.

The paper's three scaling laws, their published fits, and a trustworthy fitter.

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
from dataclasses import asdict, dataclass, field
from itertools import product

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize_scalar

from engine.errors import InputError

LAW_KINDS = ("model", "data", "joint")
PARAM_NAMES = {
    "model": ("A", "alpha", "delta"),
    "data": ("B", "beta", "delta"),
    "joint": ("A", "B", "alpha", "beta", "delta"),
}
LAW_EQUATIONS = {
    "model": "L(N) = (A/N)^alpha + delta   (Eq. 6)",
    "data": "L(D) = (B/D)^beta + delta   (Eq. 7)",
    "joint": "L(N,D) = [(A/N)^(alpha/beta) + B/D]^beta + delta   (Eq. 8)",
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
        return self.kind in ("model", "joint")

    @property
    def uses_d(self) -> bool:
        return self.kind in ("data", "joint")

    def predict(self, n=None, d=None) -> np.ndarray:
        """Predicted contrastive entropy at model size n and/or data size d."""
        p = self.params
        if self.kind == "model":
            return model_size_law(_required(n, "n"), p["A"], p["alpha"], p["delta"])
        if self.kind == "data":
            return data_size_law(_required(d, "d"), p["B"], p["beta"], p["delta"])
        return joint_law(_required(n, "n"), _required(d, "d"), p["A"], p["B"],
                         p["alpha"], p["beta"], p["delta"])

    def describe(self) -> str:
        coefs = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"{LAW_EQUATIONS[self.kind]} with {coefs}"


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
    """Check the points a `kind` law is fitted to; return them with float columns."""
    if kind not in LAW_KINDS:
        raise InputError(f"unknown law {kind!r}: choose one of {', '.join(LAW_KINDS)}")
    needed = {"model": ["n", "loss"], "data": ["d", "loss"], "joint": ["n", "d", "loss"]}[kind]
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
    n_params = len(PARAM_NAMES[kind])
    if len(clean) < n_params + 1:
        raise InputError(f"the {kind} law has {n_params} parameters and needs at least "
                         f"{n_params + 1} points; got {len(clean)}")
    for column, what in (("n", "model sizes"), ("d", "data sizes")):
        if column in needed and clean[column].nunique() < 2:
            raise InputError(f"the {kind} law needs at least 2 distinct {what} ({column}); "
                             f"all points have {column}={clean[column].iloc[0]:g}")
    return clean


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
        curves = np.stack([np.atleast_1d(law.predict(n, d)) for law in self.bootstrap_laws()])
        rng = np.random.default_rng(self.config.seed)
        noise = np.exp(rng.choice(self.log_residuals, size=curves.shape))
        ci_lo, ci_hi = np.percentile(curves, [tail, 100 - tail], axis=0)
        pi_lo, pi_hi = np.percentile(curves * noise, [tail, 100 - tail], axis=0)
        return {"pred": pred, "ci_lo": ci_lo, "ci_hi": ci_hi, "pi_lo": pi_lo, "pi_hi": pi_hi}

    def to_dict(self, include_bootstrap: bool = True) -> dict:
        """The JSON contract: law, params, r2, intervals (+ points, config, bootstrap)."""
        out = {
            "law": self.law.kind,
            "params": dict(self.law.params),
            "r2": self.r2,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "level": self.config.level,
            "equation": LAW_EQUATIONS[self.law.kind],
            "config": asdict(self.config),
            "points": json.loads(self.points.to_json(orient="records")),
        }
        if include_bootstrap:
            out["bootstrap"] = self.bootstrap_params.tolist()
            out["log_residuals"] = self.log_residuals.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "LawFit":
        kind = data["law"]
        config = FitConfig(**data.get("config", {}))
        return cls(
            law=ScalingLaw(kind, {k: float(v) for k, v in data["params"].items()}),
            r2=float(data.get("r2", float("nan"))),
            intervals={k: tuple(v) for k, v in data.get("intervals", {}).items()},
            bootstrap_params=np.asarray(data.get("bootstrap", []), dtype=float).reshape(-1, len(PARAM_NAMES[kind])),
            log_residuals=np.asarray(data.get("log_residuals", [0.0]), dtype=float),
            points=pd.DataFrame(data.get("points", [])),
            config=config,
        )


def fit_law(points: pd.DataFrame, kind: str, config: FitConfig = FitConfig()) -> LawFit:
    """Fit Eq. 6, 7 or 8 to points with columns n and/or d, loss (and optional label)."""
    points = validate_points(points, kind).reset_index(drop=True)
    points["role"] = _roles(points, kind, config.holdout_largest, config.holdout_axis)
    train = validate_points(points[points["role"] == "fit"], kind)
    x, loss = _design(train, kind), train["loss"].to_numpy()
    theta = _fit_theta(kind, x, loss, config.huber_scale)
    law = ScalingLaw(kind, _natural(kind, theta))
    predicted = law.predict(points.get("n"), points.get("d"))
    points["predicted"] = predicted
    points["rel_error"] = predicted / points["loss"] - 1
    boot = _bootstrap(kind, train, theta, config)
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
    """Internal parameters (log scale, exponents, delta) -> the paper's names."""
    if kind == "joint":
        log_a, log_b, alpha, beta, delta = theta
        return {"A": float(np.exp(log_a)), "B": float(np.exp(log_b)), "alpha": float(alpha),
                "beta": float(beta), "delta": float(delta)}
    log_k, exponent, delta = theta
    scale, power = ("A", "alpha") if kind == "model" else ("B", "beta")
    with np.errstate(over="ignore"):  # a degenerate bootstrap draw may put its scale at infinity
        return {scale: float(np.exp(log_k)), power: float(exponent), "delta": float(delta)}


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    total = np.sum((observed - observed.mean()) ** 2)
    return float(1 - np.sum((observed - predicted) ** 2) / total) if total > 0 else float("nan")


# Internal parameterisations, both predicting in log space:
#   one-variable: theta = (log K, p, delta),  L = exp(p (log K - x)) + delta
#   joint:        theta = (log A, log B, alpha, beta, delta)
EXPONENT_BOUNDS = (1e-3, 5.0)


def _power_residuals(theta, x, log_loss):
    log_k, p, delta = theta
    return np.log(np.exp(p * (log_k - x)) + delta) - log_loss


def _power_jacobian(theta, x, log_loss):
    log_k, p, delta = theta
    term = np.exp(p * (log_k - x))
    pred = term + delta
    return np.column_stack([p * term / pred, (log_k - x) * term / pred, 1 / pred])


def _joint_parts(theta, x):
    log_a, log_b, alpha, beta, delta = theta
    u = (alpha / beta) * (log_a - x[:, 0])        # log (A/N)^(alpha/beta)
    v = log_b - x[:, 1]                           # log B/D
    s = np.logaddexp(u, v)                        # log of the bracket in Eq. 8
    with np.errstate(over="ignore"):              # far-off trial points overflow to inf; the solver backs off
        term = np.exp(beta * s)
    return u, v, s, term, term + delta


def _joint_residuals(theta, x, log_loss):
    return np.log(_joint_parts(theta, x)[4]) - log_loss


def _joint_jacobian(theta, x, log_loss):
    log_a, log_b, alpha, beta, delta = theta
    u, v, s, term, pred = _joint_parts(theta, x)
    w_u, w_v = np.exp(u - s), np.exp(v - s)       # softmax weights of the two terms
    return np.column_stack([
        term * alpha * w_u, term * beta * w_v, term * w_u * (log_a - x[:, 0]),
        term * (s - w_u * u), np.ones_like(term),
    ]) / pred[:, None]


def _polish(kind, theta0, x, loss, huber_scale):
    """Huber on log L from theta0, tolerances tight enough to reach the optimum."""
    lo_exp, hi_exp = EXPONENT_BOUNDS
    if kind == "joint":
        fun, jac = _joint_residuals, _joint_jacobian
        bounds = ([-np.inf, -np.inf, lo_exp, 1e-2, 0.0], [np.inf, np.inf, hi_exp, hi_exp, loss.max()])
    else:
        fun, jac = _power_residuals, _power_jacobian
        bounds = ([-np.inf, lo_exp, 0.0], [np.inf, hi_exp, loss.max()])
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


def _fit_joint(x, loss, huber_scale):
    fits = [_polish("joint", start, x, loss, huber_scale) for start in _joint_starts(x, loss)]
    return min(fits, key=lambda fit: fit[1])[0]


def _fit_theta(kind, x, loss, huber_scale):
    if kind == "joint":
        return _fit_joint(x, loss, huber_scale)
    return _fit_one_variable(x, loss, huber_scale)


def _bootstrap(kind, train: pd.DataFrame, theta, config: FitConfig) -> np.ndarray:
    """Refit on configurations resampled with replacement; a configuration is one
    (n, d) pair with all its rows (seeds), so repeated seeds are not counted as
    independent evidence. Joint refits start from the full-data optimum."""
    if config.bootstrap <= 0:
        return np.empty((0, len(PARAM_NAMES[kind])))
    keys = [c for c in ("n", "d") if c in train.columns]
    groups = list(train.groupby(keys).indices.values())   # positional rows of each configuration
    x, loss = _design(train, kind), train["loss"].to_numpy()
    rng = np.random.default_rng(config.seed)
    samples = []
    for _ in range(config.bootstrap):
        positions = np.concatenate([groups[g] for g in rng.integers(len(groups), size=len(groups))])
        xs, ls = x[positions], loss[positions]
        if not _identifiable(kind, xs, len(PARAM_NAMES[kind])):
            continue
        if kind == "joint":
            refit, _ = _polish("joint", theta, xs, ls, config.huber_scale)
        else:
            refit = _fit_one_variable(xs, ls, config.huber_scale)
        samples.append(list(_natural(kind, refit).values()))
    return np.asarray(samples, dtype=float).reshape(-1, len(PARAM_NAMES[kind]))


def _identifiable(kind, xs, n_params) -> bool:
    if len(xs) < n_params + 1:
        return False
    if kind == "joint":
        return len(np.unique(xs[:, 0])) > 1 and len(np.unique(xs[:, 1])) > 1
    return len(np.unique(xs)) > 2


def _percentile_intervals(kind, boot: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    if len(boot) == 0:
        return {}
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(PARAM_NAMES[kind], lo, hi)}
