"""The evaluation protocol of a run, as a fingerprint stored with it.

A scaling law is a claim that every point on it measures the same quantity, so two
runs belong on one curve only if they were evaluated the same way: the same k
negatives (Eq. 5) and repeats, the same negative pool and its seed, the same test
pairs, max lengths and evaluation precision, and one metric. `evaluation_fingerprint`
is the one place that derives this from a run's config; `protocol_id` names a
fingerprint in 8 hex digits. Runs without a recorded fingerprint (trained before it
was stored, imported without protocol columns, the demo study) form a group of their
own, `UNRECORDED`.

`check_one_protocol` is the rule every fit goes through (engine.laws.validate_points):
points of more than one protocol are refused, naming the fields that differ.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import InputError

DEFAULT_NEGATIVES = 256  # k where a run does not say (the paper's)
METRICS = ("raw", "calibrated")  # Eq. 5 as the paper computes it; at a cross-fitted temperature (engine.evaluate)
UNRECORDED = "unrecorded"  # the group of runs without a fingerprint
# fingerprint field -> (kind, what it is); a CSV import names them with an eval_ prefix
FIELDS: dict[str, tuple[type, str]] = {
    "negatives": (int, "k negatives per test pair (Eq. 5)"),
    "repeats": (int, "seeded draws of the negatives, averaged"),
    "pool": (int, "sub-corpus the negatives are drawn from (test positives + sampled others)"),
    "pool_seed": (int, "seed of the pool, the negatives and the test-pair cap"),
    "test_pairs": (int, "test pairs evaluated"),
    "max_query_length": (int, "query tokens kept"),
    "max_passage_length": (int, "passage tokens kept"),
    "precision": (str, "numeric precision of the evaluation's forward pass"),
    "test_split": (str, "the test split: its name and a digest of the pairs evaluated"),
    "metric": (str, "raw or calibrated contrastive entropy"),
    "negative_pool": (str, "held-out (articles kept out of training) or unjudged (relevant to no test query)"),
    "pool_training_positives": (int, "passages of the negatives' pool that some training pair has as positive"),
}
NEGATIVE_POOLS = ("unjudged", "held-out")
COLUMN_PREFIX = "eval_"
PROTOCOL_COLUMNS = tuple(COLUMN_PREFIX + name for name in FIELDS)


# The precision every run evaluates in, whatever its mixed precision (engine.evaluate.encode_rows
# uses no autocast). Runs recorded before evaluated under their bf16/fp16 autocast: their
# fingerprints keep saying so, a protocol of their own.
EVALUATION_PRECISION = "fp32"


def test_split_identity(split: str, pairs: Iterable[tuple[str, str]]) -> str:
    """`split:digest`, the digest (12 hex) over the sorted (query id, passage id) pairs
    evaluated: two data sets' test splits with the same name are told apart."""
    text = "\n".join(f"{query}\t{passage}" for query, passage in sorted(pairs))
    return f"{split}:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def evaluation_fingerprint(cfg, *, split: str, pairs: list[tuple[str, str]],
                           pool_training_positives: int) -> dict[str, Any]:
    """The protocol of a run with TrainConfig `cfg` (precision resolved) evaluated on the
    (query id, passage id) test `pairs` of `split`, whose negatives' pool holds
    `pool_training_positives` training positives (engine.evaluate.EvalSet). `pool` is the
    held-out passages asked for, or the sub-corpus size of the unjudged pool."""
    evaluation = cfg.eval
    held_out = evaluation.held_out_negatives > 0
    return {
        "negatives": evaluation.negatives, "repeats": evaluation.repeats,
        "pool": evaluation.held_out_negatives if held_out else evaluation.subcorpus_size,
        "pool_seed": evaluation.seed, "test_pairs": len(pairs), "max_query_length": cfg.max_query_length,
        "max_passage_length": cfg.max_passage_length, "precision": EVALUATION_PRECISION,
        "test_split": test_split_identity(split, pairs), "metric": "raw",
        "negative_pool": "held-out" if held_out else "unjudged", "pool_training_positives": pool_training_positives,
    }  # fmt: skip


def eval_set_pairs(eval_set) -> list[tuple[str, str]]:
    """The (query id, passage id) pairs an engine.evaluate.EvalSet evaluates."""
    return [(eval_set.query_ids[q], eval_set.passage_ids[p])
            for q, p in zip(eval_set.pair_query, eval_set.pair_passage, strict=True)]


def check_fingerprint(fingerprint: Any) -> dict[str, Any] | None:
    """`fingerprint` if it is None or a dict of known fields with values of their kind
    (any subset: an import may record only k), else InputError."""
    if fingerprint is None:
        return None
    if not isinstance(fingerprint, Mapping) or not fingerprint:
        raise InputError(f"an evaluation fingerprint is a non-empty object of {', '.join(FIELDS)}; got {fingerprint!r}")
    for name, value in fingerprint.items():
        if name not in FIELDS:
            raise InputError(f"unknown evaluation fingerprint field {name!r}: known are {', '.join(FIELDS)}")
        kind = FIELDS[name][0]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise InputError(f"evaluation fingerprint field {name} must be "
                             f"{'a whole number >= 0' if kind is int else 'text'}, got {value!r}")
    if fingerprint.get("metric", "raw") not in METRICS:
        raise InputError(f"evaluation fingerprint metric must be one of {', '.join(METRICS)}, "
                         f"got {fingerprint['metric']!r}")
    if fingerprint.get("negative_pool", NEGATIVE_POOLS[0]) not in NEGATIVE_POOLS:
        raise InputError(f"evaluation fingerprint negative_pool must be one of {', '.join(NEGATIVE_POOLS)}, "
                         f"got {fingerprint['negative_pool']!r}")
    return dict(fingerprint)


def protocol_id(fingerprint: Mapping[str, Any] | None) -> str | None:
    """8 hex digits naming the fingerprint (None for none): equal for equal protocols."""
    if fingerprint is None:
        return None
    return hashlib.sha1(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()[:8]


def reference_protocol(fingerprint: Mapping[str, Any]) -> str:
    """The protocol a lexical reference (engine/lexical.py) is kept under: the runs'
    fingerprint with the metric set to raw, since a reference holds both entropies and a
    fit of either metric finds it."""
    return protocol_id({**fingerprint, "metric": "raw"})


def fingerprint_from_row(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fingerprint an imported row's eval_* columns give (None without any);
    ValueError naming each bad value."""
    found, problems = {}, []
    for name, (kind, _) in FIELDS.items():
        value = raw.get(COLUMN_PREFIX + name)
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            continue
        text = str(value).strip()
        if kind is str:
            found[name] = text
            continue
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        zero_allowed = name in ("pool_seed", "pool_training_positives")
        if not (math.isfinite(number) and number.is_integer() and number >= (0 if zero_allowed else 1)):
            problems.append(f"{COLUMN_PREFIX}{name} must be a whole number{' >= 0' if zero_allowed else ' > 0'} "
                            f"(got {value!r})")
            continue
        found[name] = int(number)
    if found.get("metric", "raw") not in METRICS:
        problems.append(f"{COLUMN_PREFIX}metric must be one of {', '.join(METRICS)} (got {found['metric']!r})")
    if problems:
        raise ValueError("; ".join(problems))
    return found or None


def fingerprints_of(points) -> list[dict[str, Any] | None]:
    """Each row's fingerprint: the `eval_fingerprint` column (Store.law_points, dicts or
    JSON text), else the eval_* protocol columns (a CSV), else None for every row."""
    if "eval_fingerprint" in points:
        return [_as_fingerprint(number, value) for number, value in enumerate(points["eval_fingerprint"], start=1)]
    if any(column in points for column in PROTOCOL_COLUMNS):
        rows = points[[c for c in PROTOCOL_COLUMNS if c in points]].to_dict("records")
        fingerprints = []
        for number, row in enumerate(rows, start=1):
            try:
                fingerprints.append(fingerprint_from_row(row))
            except ValueError as err:
                raise InputError(f"row {number}: {err}") from None
        return fingerprints
    return [None] * len(points)


def _as_fingerprint(number: int, value: Any) -> dict[str, Any] | None:
    """Row `number`'s eval_fingerprint cell as a dict: JSON text (a CSV, the store) or a dict."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested too deep to read
            problem = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply to read"
            raise InputError(f"row {number}: eval_fingerprint is not a readable JSON object ({problem}); give the "
                             "protocol as one flat JSON object, or as the eval_* columns") from None
    if isinstance(value, Mapping):
        return dict(value)
    return None  # None, NaN


def protocol_labels(points) -> list[str]:
    """Each row's protocol group: its protocol id, or UNRECORDED."""
    return [protocol_id(f) or UNRECORDED for f in fingerprints_of(points)]


def describe(fingerprint: Mapping[str, Any] | None) -> str:
    """A fingerprint in a line: 'k=256, 10 repeats, pool 100,000 (seed 0), ...'."""
    if not fingerprint:
        return "protocol not recorded"
    f = fingerprint
    pool = f"pool {f['pool']:,}" if "pool" in f else ""
    if "negative_pool" in f:
        pool = f"{f['negative_pool']} {pool}".strip()
    if "pool_training_positives" in f:
        pool = f"{pool} ({f['pool_training_positives']:,} training positives)"
    if "pool_seed" in f:
        pool = f"{pool} (seed {f['pool_seed']})" if pool else f"seed {f['pool_seed']}"
    lengths = (f"lengths {f.get('max_query_length', '?')}/{f.get('max_passage_length', '?')}"
               if "max_query_length" in f or "max_passage_length" in f else "")
    parts = [f"k={f['negatives']}" if "negatives" in f else "", f"{f['repeats']} repeats" if "repeats" in f else "",
             pool, f"{f['test_pairs']:,} test pairs" if "test_pairs" in f else "", lengths,
             f.get("precision", ""), f.get("test_split", ""), f.get("metric", "")]
    return ", ".join(part for part in parts if part)


def differing_fields(fingerprints: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """The fingerprint fields whose values are not the same across `fingerprints`
    (a missing fingerprint or field counts as a value of its own)."""
    distinct = {protocol_id(f): f or {} for f in fingerprints}
    if len(distinct) < 2:
        return []
    values = list(distinct.values())
    return [name for name in FIELDS if len({json.dumps(v.get(name)) for v in values}) > 1]


def check_one_protocol(points) -> None:
    """InputError unless every point was measured under one evaluation protocol (rows
    without a fingerprint are a protocol of their own): the one rule for every fit."""
    fingerprints = fingerprints_of(points)
    groups: dict[str, list[dict | None]] = {}
    for fingerprint in fingerprints:
        groups.setdefault(protocol_id(fingerprint) or UNRECORDED, []).append(fingerprint)
    if len(groups) < 2:
        return
    fields = differing_fields(f[0] for f in groups.values())
    sizes = ", ".join(f"{label}: {len(members)} point(s)" for label, members in groups.items())
    values = "; ".join(f"{name} " + " vs ".join(sorted({str((f[0] or {}).get(name, 'not recorded'))
                                                        for f in groups.values()})) for name in fields)
    raise InputError(f"these points were measured under {len(groups)} evaluation protocols ({sizes}) that differ "
                     f"in {', '.join(fields)} ({values}); fit one protocol at a time (the Fit page's protocol "
                     "choice, or filter the store's runs with --dataset/--annotation)")


def random_scorer_loss(fingerprint: Mapping[str, Any] | None) -> float:
    """Eq. 5 for a model that scores at random: log(1 + k), k = 256 where unknown."""
    k = (fingerprint or {}).get("negatives") or DEFAULT_NEGATIVES
    return math.log(1 + k)


def random_scorer_levels(points) -> list[float]:
    """Each row's random-scorer level, log(1 + its k)."""
    return [random_scorer_loss(f) for f in fingerprints_of(points)]


def better_than_random(points):
    """The rows of `points` whose loss is below their random-scorer level, and the rows
    left out (a run that never beat a random scorer measures no scaling)."""
    beaten = points["loss"] < random_scorer_levels(points)
    return points[beaten], points[~beaten]


def trained_calibrated(points) -> dict[str, float]:
    """run id -> its lowest calibrated entropy at a step after 0 (the trained checkpoints;
    step 0 is the untrained model) from `Store.points()` rows."""
    if "calibrated_entropy" not in points:
        return {}
    trained = points[points["step"] > 0].dropna(subset=["calibrated_entropy"])
    return trained.groupby("run_id")["calibrated_entropy"].min().to_dict()
