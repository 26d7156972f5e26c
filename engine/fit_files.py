"""A saved fit read back (`laws fit --out`, the store's saved fits, an upload on the
Fit page), every field checked before it is trusted: InputError names the first one
that is wrong. engine.laws.LawFit.to_dict writes the format; `fit_from_dict` reads it; `load_law`
takes a preset name or such a file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from engine.checks import is_number
from engine.errors import InputError
from engine.laws import LAW_KINDS, PARAM_NAMES, POSITIVE_PARAMS, PRESETS, FitConfig, LawFit, ScalingLaw, preset

JSON_INFINITY = {"inf": np.inf, "-inf": -np.inf}   # JSON has no infinity: a fit writes it as these strings


def fit_from_dict(data: dict) -> LawFit:
    """A fit from its JSON form (LawFit.to_dict), checked."""
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
    if not is_number(r2):
        raise InputError(f"field 'r2' must be a number, got {r2!r}")
    return LawFit(
        law=ScalingLaw(kind, params),
        r2=float(r2),
        intervals=_checked_intervals(data.get("intervals", {})),
        bootstrap_params=_checked_matrix(data.get("bootstrap", []), "bootstrap", len(PARAM_NAMES[kind])),
        log_residuals=_checked_matrix(data.get("log_residuals", [0.0]), "log_residuals", None),
        points=_checked_points(data.get("points", []), kind),
        config=FitConfig(**config),
    )


def _checked_params(kind: str, params) -> dict[str, float]:
    names = PARAM_NAMES[kind]
    if not isinstance(params, dict) or set(params) != set(names):
        raise InputError(f"field 'params' of a {kind} law must be an object with exactly {', '.join(names)}")
    for name, value in params.items():
        if not is_number(value) or not np.isfinite(value):
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
        if column in frame and not all(is_number(v) and np.isfinite(v) and v > 0 for v in frame[column]):
            raise InputError(f"field 'points': every {column} must be a positive number")
    return frame


def _checked_intervals(intervals) -> dict[str, tuple[float, float]]:
    if not isinstance(intervals, dict):
        raise InputError("field 'intervals' must be an object of [low, high] pairs")
    for name, pair in intervals.items():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                is_number(v) or v is None or v in JSON_INFINITY for v in pair):
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
        return fit_from_dict(json.loads(path.read_text()))
    except InputError as err:
        raise InputError(f"{path}: {err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as err:
        raise InputError(f"{path}: not a fit JSON written by `laws fit` ({type(err).__name__}: {err})") from None
