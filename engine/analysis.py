"""Annotation quality (the paper's Section 4.3, Figure 5) and the check that
contrastive entropy tracks ranking metrics (Section 3.5, Figure 2). Pure functions
on DataFrames and fitted laws; charts live in the app.

- `fit_annotation_laws`: one data-size law (Eq. 7) per annotation type.
- `exchange_rate`: how many pairs of type X reach the loss n human pairs reach.
- `crossing_points`: data sizes where two types' curves meet.
- `metric_correlations`: Pearson and Spearman correlation of contrastive entropy
  with each ranking metric. Lower entropy is better and higher metrics are, so a
  metric that agrees with the entropy correlates *negatively* with it; the paper's
  "strong positive correlation" is this agreement.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import pearsonr, spearmanr

from engine.errors import InputError
from engine.laws import EXTRAPOLATION_WARNING, FitConfig, LawFit, ScalingLaw, extrapolation_factor, fit_law

RANKING_METRICS = ("mrr@10", "ndcg@10", "map@10", "recall@1000")


# --- data-size laws per annotation type (Figure 5) ---------------------------------

def fit_annotation_laws(points: pd.DataFrame, config: FitConfig = FitConfig(),
                        progress: Callable[[int, int], None] | None = None) -> dict[str, LawFit]:
    """Annotation type -> Eq. 7 fitted to that type's rows of `points` (columns d,
    loss, annotation); `progress(done, total)` over the bootstrap refits of all types."""
    missing = [c for c in ("d", "loss", "annotation") if c not in points.columns]
    if missing:
        raise InputError(f"annotation laws need columns d, loss, annotation; missing {missing}")
    unlabelled = points.index[points["annotation"].isna()]
    if len(unlabelled):
        raise InputError(f"rows {list(unlabelled[:5])} have no annotation type; label or drop them")
    fits = {}
    groups = list(points.groupby("annotation", sort=True))
    for i, (annotation, rows) in enumerate(groups):
        report = None if progress is None else (
            lambda done, total, i=i: progress(i * total + done, len(groups) * total))
        try:
            fits[str(annotation)] = fit_law(rows[["d", "loss"]], "data", config, progress=report)
        except InputError as err:
            raise InputError(f"annotation {annotation!r}: {err}") from err
    if not fits:
        raise InputError("no points to fit: the table is empty")
    return fits


def annotation_curves(fits: dict[str, LawFit], d) -> pd.DataFrame:
    """Fitted loss and its confidence band per type at data sizes `d`, long form
    (annotation, d, loss, ci_lo, ci_hi) for one chart."""
    d = np.asarray(d, dtype=float)
    frames = []
    for annotation, fit in fits.items():
        band = fit.predict_interval(d=d)   # over the finite refits: a diverged refit has no curve
        frames.append(pd.DataFrame({"annotation": annotation, "d": d, "loss": band["pred"],
                                    "ci_lo": band["ci_lo"], "ci_hi": band["ci_hi"]}))
    return pd.concat(frames, ignore_index=True)


# --- exchange rate ----------------------------------------------------------------

def pairs_for_loss(law: ScalingLaw, loss: float) -> float:
    """Eq. 7 solved for D: the pairs at which `law` reaches `loss`; inf when the
    loss is at or below the law's floor delta (never reached)."""
    if law.kind != "data":
        raise InputError(f"need a data-size law (Eq. 7); got the {law.kind} law")
    p = law.params
    gap = loss - p["delta"]
    return float(p["B"] * gap ** (-1.0 / p["beta"])) if gap > 0 else float("inf")


@dataclass(frozen=True)
class ExchangeRate:
    """`pairs` of `other` reach `target_loss`, the loss of `n_reference` pairs of
    `reference`; `interval` from the bootstrap laws of both types."""

    reference: str
    other: str
    n_reference: float
    target_loss: float
    pairs: float                      # inf: never reached (other's floor is above the target)
    interval: tuple[float, float]     # either end may be inf
    level: float
    p_unreachable: float              # share of bootstrap draws where it is never reached
    d_support: tuple[float, float] | None = None   # the data sizes `other`'s law was fitted to
    draws: int = 0                    # paired bootstrap draws the interval comes from (both laws finite)

    @property
    def reachable(self) -> bool:
        return bool(np.isfinite(self.pairs))

    @property
    def extrapolation(self) -> float:
        """How far `pairs` lies beyond the data sizes of `other`'s law (1: inside them)."""
        if self.d_support is None or not self.reachable:
            return 1.0
        return extrapolation_factor(self.pairs, self.d_support)

    @property
    def beyond_warning(self) -> bool:
        return self.extrapolation > EXTRAPOLATION_WARNING

    def warning(self) -> str | None:
        """A plain warning when `pairs` is a projection far beyond the measured data sizes."""
        if not self.beyond_warning:
            return None
        from engine.budget import format_factor
        from engine.formatting import format_count

        lo, hi = self.d_support
        return (f"{self.other} needs {format_count(self.pairs)} pairs: a projection {format_factor(self.extrapolation)} "
                f"beyond its measured {format_count(lo)} to {format_count(hi)} pairs, not a measurement; "
                f"train {self.other} at larger D to check it.")

    @property
    def ratio(self) -> float:
        """Pairs of `other` per pair of `reference`."""
        return self.pairs / self.n_reference

    def describe(self) -> str:
        head = f"{self.n_reference:,.0f} {self.reference} pairs reach loss {self.target_loss:.4f}"
        if not self.reachable:
            return (f"{head}; {self.other} never does: its floor (delta) is above that loss "
                    f"({100 * self.p_unreachable:.0f}% of bootstrap draws agree)")
        lo, hi = self.interval
        return (f"{head}; {self.other} needs {self.pairs:,.0f} pairs ({self.ratio:.2f} per {self.reference} pair), "
                f"{100 * self.level:.0f}% interval [{lo:,.0f}, {hi:,.0f}]")


def exchange_rate(fits: dict[str, LawFit], other: str, n: float, reference: str = "human",
                  level: float | None = None) -> ExchangeRate:
    """How many `other` pairs reach the loss `n` `reference` pairs reach (Eq. 7 of
    both types), with a percentile interval over paired bootstrap draws."""
    for name in (reference, other):
        if name not in fits:
            raise InputError(f"no fitted law for annotation {name!r}; have {sorted(fits)}")
    if not n > 0:
        raise InputError(f"n (reference pairs) must be positive; got {n}")
    ref, oth = fits[reference], fits[other]
    level = ref.config.level if level is None else level
    target = float(ref.law.predict(d=n))
    support = oth.support.get("d")
    with np.errstate(invalid="ignore", over="ignore"):
        draws = np.array([pairs_for_loss(o, float(r.predict(d=n)))
                          for r, o in zip(ref.bootstrap_laws(), oth.bootstrap_laws())
                          if np.isfinite(list(r.params.values())).all() and np.isfinite(list(o.params.values())).all()])
    draws = draws[~np.isnan(draws)]                                  # a refit whose law gives no number
    point = pairs_for_loss(oth.law, target)
    if len(draws) == 0:
        return ExchangeRate(reference, other, float(n), target, point, (point, point), level, float(np.isinf(point)),
                            support)
    tail = (1 - level) / 2
    with np.errstate(invalid="ignore"):                              # inf - inf inside numpy, unused by nearest
        lo, hi = np.quantile(draws, [tail, 1 - tail], method="nearest")   # nearest: inf-safe
    return ExchangeRate(reference, other, float(n), target, point, (float(lo), float(hi)), level,
                        float(np.isinf(draws).mean()), support, len(draws))


# --- crossings --------------------------------------------------------------------

def crossing_points(a: LawFit | ScalingLaw, b: LawFit | ScalingLaw, d_min: float, d_max: float,
                    grid: int = 2048) -> list[float]:
    """Data sizes in [d_min, d_max] where two data-size laws predict the same loss,
    ascending; [] when they do not cross there (or coincide everywhere)."""
    if not 0 < d_min < d_max:
        raise InputError(f"need 0 < d_min < d_max; got {d_min}, {d_max}")
    law_a, law_b = (x.law if isinstance(x, LawFit) else x for x in (a, b))

    def gap(log_d: float) -> float:
        return float(law_a.predict(d=np.exp(log_d)) - law_b.predict(d=np.exp(log_d)))

    xs = np.linspace(np.log(d_min), np.log(d_max), grid)
    values = np.array([gap(x) for x in xs])
    crossings = [float(np.exp(x)) for x, v in zip(xs, values) if v == 0]
    for i in np.nonzero(values[:-1] * values[1:] < 0)[0]:
        crossings.append(float(np.exp(brentq(gap, xs[i], xs[i + 1], xtol=1e-12))))
    return sorted(crossings) if len(crossings) < grid else []


# --- contrastive entropy vs ranking metrics (Figure 2) ----------------------------

def entropy_of_metrics(runs: pd.DataFrame, best_column: str) -> pd.Series:
    """Per run, the contrastive entropy of the evaluation its ranking metrics come from
    (`contrastive_entropy`, kept with the metrics), else its best entropy (`best_column`),
    so that each (entropy, metric) pair is one evaluation where the run says which."""
    kept = runs["contrastive_entropy"] if "contrastive_entropy" in runs else pd.Series(np.nan, index=runs.index)
    return kept.fillna(runs[best_column])


ENTROPY_COLUMNS = {"raw": ("contrastive_entropy", "best_contrastive_entropy"),
                   "calibrated": ("calibrated_entropy", "best_calibrated_entropy")}


def with_entropy(runs: pd.DataFrame, metric: str = "raw") -> pd.DataFrame:
    """`Store.runs()` rows with `contrastive_entropy` (that of the evaluation the ranking
    metrics come from, else the best) and `best_entropy` of `metric` (raw: Eq. 5 as the
    paper computes it; calibrated: at a cross-fitted temperature); runs without that
    entropy are left out."""
    if metric not in ENTROPY_COLUMNS:
        raise InputError(f"metric must be one of {', '.join(ENTROPY_COLUMNS)}; got {metric!r}")
    at_metrics, best = ENTROPY_COLUMNS[metric]
    if best not in runs:
        return runs.iloc[:0].assign(contrastive_entropy=[], best_entropy=[])
    kept = runs[at_metrics] if at_metrics in runs else pd.Series(np.nan, index=runs.index)
    out = runs.assign(contrastive_entropy=kept.fillna(runs[best]), best_entropy=runs[best])
    return out.dropna(subset=["contrastive_entropy"])


def metric_correlations(runs: pd.DataFrame, metrics=RANKING_METRICS) -> pd.DataFrame:
    """Per metric present in `runs`: the runs with both values, Pearson r and
    Spearman rho (with p-values) of contrastive_entropy against the metric."""
    if "contrastive_entropy" not in runs.columns:
        raise InputError("runs need a contrastive_entropy column")
    present = [m for m in metrics if m in runs.columns]
    if not present:
        raise InputError(f"runs have none of the metric columns {list(metrics)}")
    rows = []
    for metric in present:
        both = runs[["contrastive_entropy", metric]].apply(pd.to_numeric, errors="coerce").dropna()
        x, y = both["contrastive_entropy"].to_numpy(), both[metric].to_numpy()
        row = {"metric": metric, "n_runs": len(both), "pearson": np.nan, "pearson_p": np.nan,
               "spearman": np.nan, "spearman_p": np.nan}
        if len(both) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            row["pearson"], row["pearson_p"] = map(float, pearsonr(x, y))
            row["spearman"], row["spearman_p"] = map(float, spearmanr(x, y))
        rows.append(row)
    return pd.DataFrame(rows)
