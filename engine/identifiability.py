"""What a fit's points determine, and which joint form they prefer.

`identifiability` reads a fit's bootstrap refits (engine.laws.fit_law): the width of
each parameter's interval in decades, estimates sitting on a fitting bound, pairs of
parameters that trade off; the Fit page, `laws fit` and the study report say it in a
sentence instead of raw coefficients. `compare_laws` fits Eq. 8 and the additive form
(Hoffmann et al. 2022) to the same points and judges them by information criteria and
by the error on the largest N and D when each is fitted without them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from engine.errors import InputError
from engine.fit_optimisers import EXPONENT_BOUNDS
from engine.laws import JOINT_KINDS, LAW_EQUATIONS, PARAM_NAMES, FitConfig, LawFit, fit_law, json_numbers


# --- which parameters are determined -----------------------------------------------

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
        from engine.formatting import format_count

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


# --- Eq. 8 against the additive form -----------------------------------------------

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
