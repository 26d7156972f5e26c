"""Turning Python values into what the store keeps: strict JSON and UTC timestamps.

Configs and metrics arrive with numpy scalars, paths and sometimes NaN (a fit that did
not converge). They are encoded when the caller hands them over, so a value that cannot
be stored fails in the caller's hands, not later during ingestion.
"""
from __future__ import annotations

import datetime as dt
import enum
import json
import math
from pathlib import PurePath
from typing import Any

from engine.errors import InputError
from engine.paths import validate_text


def utc_now() -> dt.datetime:
    """Now as a naive UTC timestamp: every TIMESTAMP column in the store is UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def utc_from_epoch(seconds: float) -> dt.datetime:
    """A spool record's epoch time as the naive UTC timestamp the tables hold."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def _plain(value: Any) -> Any:
    """`value` as JSON-native types; non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return validate_text("a text value", value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict):
        return {_plain(str(key)): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, PurePath):
        return validate_text("a path", str(value))
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy
        return _plain(value.tolist())
    raise InputError(
        f"cannot store a value of type {type(value).__name__} ({value!r}) as JSON; "
        "convert it to numbers, strings, lists or dicts first"
    )


def to_json(value: Any) -> str | None:
    """Strict JSON text for a JSON column, or None for a missing value."""
    return None if value is None else json.dumps(_plain(value), allow_nan=False)


def from_json(text: str | float | None) -> Any:
    """The Python value of a JSON column; NULL (None, or NaN in a DataFrame) is None."""
    return json.loads(text) if isinstance(text, str) else None


def finite_or_none(value: float | None) -> float | None:
    """A float column's value: NaN and infinities are stored as NULL."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
