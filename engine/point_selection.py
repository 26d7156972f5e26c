"""Which points a fit or a chart rests on: the choices the Fit laws, Analysis and Plan
runs pages offer (evaluation protocol, the size held fixed, data set, annotation type,
model size, the points left out) with their defaults, and the rows each choice keeps.
Pure functions of frames: the pages draw the widgets and pass the chosen values back."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd

from engine.eval_protocol import describe, fingerprints_of, protocol_labels, random_scorer_levels
from engine.formatting import format_count
from engine.laws import JOINT_KINDS, PARAM_NAMES, sizes_determine

ALL = "(all)"   # the option that keeps every value of a column
MIN_DATA_SIZES = len(PARAM_NAMES["data"]) + 1    # distinct D a data-size law (Eq. 7) needs at one N


@dataclass(frozen=True)
class Choice:
    """What a select box offers: its values in order and the position of the default."""

    options: list
    default: int = 0


# --- evaluation protocol ----------------------------------------------------------------

def protocol_groups(points: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluation protocol group of `points`, most points first: protocol
    (its id, or UNRECORDED), points, description (engine/eval_protocol.py describe)."""
    labels = protocol_labels(points)
    described = dict(zip(labels, (describe(f) for f in fingerprints_of(points))))
    counts = pd.Series(labels, dtype=object).value_counts()
    rows = [{"protocol": label, "points": int(counts[label]), "description": described[label]}
            for label in sorted(counts.index, key=lambda label: (-counts[label], label))]
    return pd.DataFrame(rows, columns=["protocol", "points", "description"])


def of_protocol(points: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The rows measured under `protocol` (a fit over points measured differently is
    refused), with `eval_protocol` and the fingerprint as JSON text in `eval_fingerprint`
    (a column of dicts cannot be hashed for a page's cache key)."""
    kept = [label == protocol for label in protocol_labels(points)]
    text = [json.dumps(f, sort_keys=True) if f else None for f, keep in zip(fingerprints_of(points), kept) if keep]
    return points[kept].assign(eval_protocol=protocol, eval_fingerprint=text)


# --- columns and sizes ------------------------------------------------------------------

def value_choice(frame: pd.DataFrame, column: str, preferred=None, with_all: bool = False) -> Choice | None:
    """The values of `column`, sorted; the default `preferred` where it is one, else the
    most common. `with_all` puts ALL first. None when the column holds no value."""
    counts = frame[column].value_counts() if column in frame else pd.Series(dtype=int)
    if counts.empty:
        return None
    options = [*([ALL] if with_all else []), *sorted(counts.index)]
    default = preferred if preferred in options else counts.idxmax()
    return Choice(options, options.index(default))


def where(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """The rows whose `column` is `value` (all rows for ALL)."""
    return frame if value == ALL else frame[frame[column] == value]


def where_any(frame: pd.DataFrame, column: str, values) -> pd.DataFrame:
    """The rows whose `column` is one of `values`; every row when none is chosen (an
    empty multiselect) or the frame is empty."""
    values = list(values)
    return frame if frame.empty or not values else frame[frame[column].isin(values)]


def held_fixed(points: pd.DataFrame, kind: str) -> tuple[str, Choice] | None:
    """A one-variable law holds the other size fixed (the paper: full data for Eq. 6,
    the largest model for Eq. 7): that column and its values, by default the largest at
    which the law has enough sizes to be fitted (the largest where none has); None for a
    joint law or where the column has fewer than two values."""
    if kind in JOINT_KINDS:
        return None
    other, fitted = ("d", "n") if kind == "model" else ("n", "d")
    if other not in points or points[other].nunique() < 2:
        return None
    values = sorted(points[other].dropna().unique())
    enough = [i for i, value in enumerate(values) if fitted in points
              and sizes_determine(kind, points.loc[points[other] == value, fitted].dropna())]
    return other, Choice(values, enough[-1] if enough else len(values) - 1)


# --- points by name ---------------------------------------------------------------------

def point_names(points: pd.DataFrame) -> pd.Series:
    """'3: label N=39.1k · D=2k' per row, by the row's index."""
    labels = points["label"] if "label" in points else pd.Series("", index=points.index)
    sizes = [" · ".join(f"{c.upper()}={format_count(v)}" for c, v in row.items() if pd.notna(v))
             for row in points[[c for c in ("n", "d") if c in points]].to_dict("records")]
    return pd.Series([f"{i}: {label or ''} {size}".replace("  ", " ") for i, label, size
                      in zip(points.index, labels.fillna(""), sizes)], index=points.index)


def no_better_than_random(points: pd.DataFrame) -> pd.Series:
    """True where a point's loss is at or above its random scorer's, log(1 + k) of its
    evaluation's k: such a run measured no scaling, so it starts left out."""
    return pd.Series(points["loss"].to_numpy() >= random_scorer_levels(points), index=points.index)


def leave_out(points: pd.DataFrame, names: pd.Series, left_out: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the points kept, the points left out: label, n, d, loss) for the names in `left_out`."""
    dropped = names.isin(left_out)
    return points[~dropped], points.loc[dropped, [c for c in ("label", "n", "d", "loss") if c in points]]


def points_digest(points: pd.DataFrame) -> str:
    """Equal for the same points (another upload, protocol or slice is another set): a
    page keeps its leave-out choice per set, so a second file starts from its own defaults."""
    columns = [c for c in ("n", "d", "loss", "label") if c in points]
    return hashlib.sha256(pd.util.hash_pandas_object(points[columns], index=False).to_numpy().tobytes()).hexdigest()[:12]


# --- Figures 2 and 5 --------------------------------------------------------------------

def evaluation_points(runs: pd.DataFrame, points: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`Store.points()` joined to their runs' model, label, data set and annotation;
    `contrastive_entropy` is the calibrated one where `metric` is "calibrated"; points
    without it are left out."""
    runs = runs[["run_id", "model_name", "label", "dataset", "annotation"]].rename(columns={"model_name": "model"})
    joined = points.merge(runs, on="run_id", how="left")
    if metric == "calibrated":
        joined = joined.assign(contrastive_entropy=joined["calibrated_entropy"])
    return joined.dropna(subset=["contrastive_entropy"])


def not_overfit(runs: pd.DataFrame, gap: float) -> pd.DataFrame:
    """Runs whose entropy at the metrics' evaluation is within `gap` of their best, as the
    study report counts them: an overfit model's entropy climbs while its ranking holds."""
    return runs[runs["contrastive_entropy"] - runs["best_entropy"] < gap]


def comparison_keys(points: pd.DataFrame) -> pd.Series:
    """Per (dataset, n): (annotation types with runs at MIN_DATA_SIZES or more data sizes,
    points, n), a key whose largest is the best place to compare annotation types."""
    sizes = points.groupby(["dataset", "n", "annotation"])["d"].nunique()
    types = (sizes >= MIN_DATA_SIZES).groupby(["dataset", "n"]).sum()
    counts = points.groupby(["dataset", "n"]).size()
    return pd.Series(list(zip(types, counts, types.index.get_level_values("n"))), index=types.index)


def comparison_dataset(points: pd.DataFrame) -> Choice:
    """The data sets, by default the one where the most annotation types can be compared."""
    datasets = sorted(points["dataset"].unique())
    return Choice(datasets, datasets.index(comparison_keys(points).idxmax()[0]))


def comparison_model_size(points: pd.DataFrame) -> Choice:
    """The model sizes of one data set's points, by default the one with a law for the
    most annotation types, then the most points, then the largest (the paper uses BERT-Base)."""
    values = sorted(points["n"].unique())
    return Choice(values, values.index(comparison_keys(points).idxmax()[1]))
