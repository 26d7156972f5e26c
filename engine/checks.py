"""What counts as a number, a whole number and a confidence level: the one set of
input predicates every boundary applies (config files, fit files, progress files,
spool records, tracker stores, exported models, budget and planner questions).

A bool is never a number here (JSON's `true` must not pass for 1); numpy scalars are
(pandas hands them over); NaN and infinities are numbers but not finite ones.
"""
from __future__ import annotations

import math
import numbers

from engine.errors import InputError


def is_number(value) -> bool:
    """An int or float of Python or numpy, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """A number a float can hold: not NaN or infinite, and no int too large for a double
    (10**400 would raise OverflowError in math.isfinite)."""
    if not is_number(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_positive_number(value) -> bool:
    """A finite number above 0 (NaN, inf, None and text are not)."""
    return is_finite_number(value) and value > 0


def is_whole(value) -> bool:
    """An int of Python or numpy, not a bool (2.0 is not: a count is written as one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_whole(value) -> bool:
    return is_whole(value) and value > 0


def check_level(level) -> float:
    """A confidence level strictly between 0 and 1 (0.95 for 95 %), or InputError."""
    if not is_number(level) or not 0 < level < 1:
        raise InputError(f"the confidence level must lie strictly between 0 and 1 (0.95 for 95%), got {level!r}")
    return float(level)
