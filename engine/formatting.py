"""One way of writing numbers, in text, tables and chart axes alike.

Counts (parameters N, annotated pairs D, budgets) are written as people say them, with
the suffixes k, M, B, T: `format_count(6.77e9) == "6.77B"`, `format_count(39_000) ==
"39k"`. Chart axes label their ticks with the same suffixes (`COUNT_LABEL_EXPR`, a Vega
expression), so a chart never says 1G beside a caption that says 1B. Coefficients of a
law keep 4 significant digits in scientific notation when they are large or small, so
no 15-digit integer is ever written out; a missing value reads "n/a".
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:                  # engine.formatting stays light enough for a CLI's --help
    import pandas as pd

SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
COUNT_DIGITS = 3
MISSING = "n/a"


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_count(value: float | None) -> str:
    """6.77e9 -> '6.77B', 39_000 -> '39k', 32_969 -> '33k', 999_999 -> '1M', 512 -> '512'."""
    if _missing(value):
        return MISSING
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    rounded = float(f"{value:.{COUNT_DIGITS}g}")       # round first: 999,999 is 1M, not 1e+03k
    for threshold, suffix in SUFFIXES:                   # largest first: the first match is the one
        if abs(rounded) >= threshold:
            scaled = rounded / threshold
            if abs(scaled) >= 1000:                      # beyond 999T: scientific, not 1e+03T
                return f"{value:.{COUNT_DIGITS}g}"
            return f"{scaled:.{COUNT_DIGITS}g}{suffix}"
    return f"{rounded:.{COUNT_DIGITS}g}"


def format_coefficient(value: float | None) -> str:
    """A fitted or published coefficient: 0.5377 -> '0.5377', 5.422e14 -> '5.422e+14'."""
    if _missing(value):
        return MISSING
    return f"{float(value):.4g}"


def format_r2(value: float | None) -> str:
    """R² with 4 decimals; a fit or paper that gives none reads 'n/a'."""
    if _missing(value) or math.isinf(float(value)):
        return MISSING
    return f"{float(value):.4f}"


def _label_expr(field: str) -> str:
    """A Vega expression writing `field` as `format_count` does (for ticks of a size axis)."""
    expression = f"format({field}, '.{COUNT_DIGITS}~g')"
    for threshold, suffix in reversed(SUFFIXES):       # built inside out: the largest test comes first
        expression = (f"abs({field}) >= {threshold:g} ? format({field} / {threshold:g}, '.{COUNT_DIGITS}~g') "
                      f"+ '{suffix}' : {expression}")
    return expression


COUNT_LABEL_EXPR = _label_expr("datum.value")


def format_percent(value: float | None) -> str:
    """A relative error or share, 3 significant digits, zeros kept so that neighbours
    line up: 0.0278 -> '2.78%', 0.03 -> '3.00%', 0.00715 -> '0.715%', 1 -> '100%', 0 -> '0%'."""
    if _missing(value):
        return MISSING
    percent = 100 * float(value)
    if percent == 0:
        return "0%"
    return f"{percent:,.0f}%" if abs(percent) >= 1000 else f"{percent:#.3g}".rstrip(".") + "%"


def format_loss(value: float | None) -> str:
    """A contrastive entropy (nats), 4 significant digits, zeros kept: 5.14 -> '5.140',
    5.0632 -> '5.063', 0.25314 -> '0.2531'."""
    if _missing(value):
        return MISSING
    return f"{float(value):#.4g}".rstrip(".")


def formatted_table(frame: pd.DataFrame, counts: tuple[str, ...] = (), coefficients: tuple[str, ...] = (),
                    percents: tuple[str, ...] = (), losses: tuple[str, ...] = ()) -> pd.DataFrame:
    """A copy of `frame` for display: the named columns written as text by the helpers
    above (columns it lacks are skipped), so a table never shows 110200000000000."""
    writers = {**dict.fromkeys(counts, format_count), **dict.fromkeys(coefficients, format_coefficient),
               **dict.fromkeys(percents, format_percent), **dict.fromkeys(losses, format_loss)}
    return frame.assign(**{c: frame[c].map(write) for c, write in writers.items() if c in frame})
