"""Runs logged by experiment trackers, as runs and evaluation points of the store.

Three sources are read, each into `TrackerRun`s (a stable identity, a name, the
run's parameters and its metric series by step):

- TensorBoard: a log folder; every folder under it that holds `events.out.tfevents.*`
  files is one run, read with tbparse (scalars; hyperparameters from the hparams
  plugin). Identity: the run folder's absolute path.
- MLflow: an `mlruns/` folder (`<experiment>/<run uuid>/metrics/<key>` files of
  "timestamp value step" lines, `params/<key>` files holding the value,
  `tags/mlflow.runName`, `meta.yaml`), or its SQLite tracking store (tables `runs`,
  `metrics`, `params`), opened read-only. Deleted runs are skipped. Identity: the
  run uuid, the same from both stores.
- Weights & Biases run exports: a folder per run with `history.csv` or
  `history.parquet` (one row per logged step, `_step` the step column) and
  `config.json` (`run.config`; the `{"value": ...}` wrapping of W&B's config files is
  unwrapped). Identity: the run folder's absolute path.

A `TrackerMapping` names which metric is the contrastive entropy (`loss`, lower is
better), which parameters hold N and D (or gives them as numbers), and which metrics
are the ranking metrics. Each mapped run gets the id `tracker-<kind>-<hash of its
identity>`, so importing the same runs again updates them in place (the store's
`start_run` upserts, `add_point` replaces a (run, step)): exactly once. `preview`
says what an import would do without writing anything.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from engine.checks import is_number, is_whole
from engine.errors import InputError
from engine.paths import validate_text
from engine.command_progress import CommandProgress
from store.table_import import METRIC_COLUMNS, check_read_table, csv_header
from store.spool import spool_files

KINDS = ("tensorboard", "mlflow", "wandb")
SOURCE = "tracker"
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class TrackerRun:
    kind: str                                   # one of KINDS
    identity: str                               # stable across re-imports
    name: str
    params: dict[str, str]
    series: dict[str, dict[int, float]]         # metric -> {step: value}
    location: str                               # where it was read from


@dataclass(frozen=True)
class TrackerMapping:
    loss: str                                   # metric holding the contrastive entropy (Eq. 5)
    n: str                                      # parameter holding N, or N itself
    d: str                                      # parameter holding D, or D itself
    metrics: dict[str, str] = field(default_factory=dict)   # workbench metric -> tracker metric
    dataset: str = "imported"
    annotation: str = "human"
    model: str | None = None                    # parameter naming the model (else the run's name)


@dataclass(frozen=True)
class MappedRun:
    run_id: str
    source: TrackerRun
    n: int | None = None
    d: int | None = None
    points: tuple[tuple[int, float, dict], ...] = ()   # (step, loss, ranking metrics at that step)
    problem: str | None = None                 # why this run cannot be imported

    @property
    def best_loss(self) -> float | None:
        return min(loss for _, loss, _ in self.points) if self.points else None


# ---------------------------------------------------------------- reading

def read_runs(path: str | Path, kind: str = "auto") -> list[TrackerRun]:
    """Every run under `path`, from the tracker `kind` (auto: told by the files)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    kind = detect_kind(path) if kind == "auto" else kind
    readers = {"tensorboard": read_tensorboard, "mlflow": read_mlflow, "wandb": read_wandb}
    if kind not in readers:
        raise InputError(f"--kind must be one of auto, {', '.join(KINDS)}; got {kind!r}")
    runs = [_keepable(run) for run in readers[kind](path)]
    if not runs:
        raise InputError(f"{path}: no {kind} runs found there")
    return runs


def _readable(text: str) -> str:
    """`text` read from a tracker's files as text the store can keep: a byte that is not
    UTF-8 (a Latin-1 folder name) or a lone surrogate (an escape in JSON) becomes U+FFFD."""
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


def _keepable(run: TrackerRun) -> TrackerRun:
    """The run with every name the store keeps or the CLI prints readable; `identity`
    stays as read, so the run id (its hash) is the one it always had."""
    return replace(run, name=_readable(run.name), location=_readable(run.location),
                   params={_readable(k): _readable(v) for k, v in run.params.items()},
                   series={_readable(k): v for k, v in run.series.items()})


def detect_kind(path: Path) -> str:
    if path.is_file():
        with open(path, "rb") as handle:
            if handle.read(16) == _SQLITE_MAGIC:
                return "mlflow"
        if path.name.startswith("events.out.tfevents"):
            return "tensorboard"
        if path.suffix in (".csv", ".parquet"):
            return "wandb"
    elif any(path.rglob("events.out.tfevents.*")):
        return "tensorboard"
    elif any(path.rglob("meta.yaml")):
        return "mlflow"
    elif any(path.rglob("history.csv")) or any(path.rglob("history.parquet")):
        return "wandb"
    raise InputError(f"{path}: not a TensorBoard log folder, an MLflow store (mlruns/ or SQLite) or a W&B "
                     "export (history.csv/parquet + config.json); pass --kind if it is one")


def read_tensorboard(path: Path) -> list[TrackerRun]:
    from tbparse import SummaryReader

    root = path.parent if path.is_file() else path
    with warnings.catch_warnings():  # tbparse's own pandas deprecations are no news to the user
        warnings.filterwarnings("ignore", module="tbparse")
        reader = SummaryReader(str(path), extra_columns={"dir_name"})
        scalars, hparams = reader.scalars, reader.hparams
    runs = []
    folders = sorted(set(scalars.get("dir_name", [])) | set(hparams.get("dir_name", [])))
    for folder in folders:
        mine = scalars[scalars["dir_name"] == folder] if len(scalars) else scalars
        series: dict[str, dict[int, float]] = {}
        for tag, step, value in zip(mine.get("tag", []), mine.get("step", []), mine.get("value", [])):
            series.setdefault(tag, {})[_step(step, f"{root / folder}: {tag}")] = float(value)
        params = {}
        if len(hparams):
            mine_h = hparams[hparams["dir_name"] == folder]
            params = {str(tag): str(value) for tag, value in zip(mine_h["tag"], mine_h["value"])}
        run_dir = (root / folder).resolve() if folder else root.resolve()
        runs.append(TrackerRun("tensorboard", str(run_dir), folder or root.resolve().name, params, series,
                               str(run_dir)))
    return runs


def read_mlflow(path: Path) -> list[TrackerRun]:
    return _read_mlflow_sqlite(path) if path.is_file() else _read_mlruns(path)


def _read_mlruns(root: Path) -> list[TrackerRun]:
    import yaml

    runs = []
    for meta_file in sorted(root.rglob("meta.yaml")):
        run_dir = meta_file.parent
        if not (run_dir / "metrics").is_dir() or ".trash" in run_dir.parts:
            continue  # an experiment's meta.yaml, or a run already deleted
        try:
            meta = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}  # ValueError: not UTF-8
        except (OSError, ValueError, yaml.YAMLError, RecursionError) as err:  # ValueError: not UTF-8
            raise InputError(f"{meta_file}: not a readable MLflow meta.yaml ({' '.join(str(err).split())}); fix or remove it") from None
        if not isinstance(meta, dict):
            raise InputError(f"{meta_file}: an MLflow meta.yaml holds one mapping, got {type(meta).__name__}")
        if meta.get("lifecycle_stage") == "deleted":
            continue
        run_uuid = run_dir.name   # MLflow names the folder by the run's uuid (YAML may read the uuid as a number)
        series = {}
        for metric_file in sorted(p for p in (run_dir / "metrics").rglob("*") if p.is_file()):
            key = metric_file.relative_to(run_dir / "metrics").as_posix()   # "val/loss" is a nested file
            series[key] = _mlflow_metric_lines(metric_file)
        params = {p.relative_to(run_dir / "params").as_posix(): _text_of(p)
                  for p in sorted((run_dir / "params").rglob("*")) if p.is_file()} if (run_dir / "params").is_dir() else {}
        name_tag = run_dir / "tags" / "mlflow.runName"
        name = _text_of(name_tag) if name_tag.is_file() else meta.get("run_name") or run_uuid
        runs.append(TrackerRun("mlflow", run_uuid, str(name), params, series, str(run_dir.resolve())))
    return runs


def _text_of(path: Path) -> str:
    """A parameter or tag file's value; a byte that is not UTF-8 reads as U+FFFD."""
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _mlflow_metric_lines(path: Path) -> dict[int, float]:
    """`timestamp value step` per line (MLflow's file store); the last value per step wins."""
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise InputError(f"{path}:{number}: expected 'timestamp value step', got {line!r}")
        try:
            value = float(parts[1])
        except ValueError:
            raise InputError(f"{path}:{number}: expected 'timestamp value step', got {line!r}") from None
        values[_step(parts[2], f"{path}:{number}") if len(parts) == 3 else 0] = value
    return values


_MAX_STEP = 2**63 - 1  # the store's BIGINT


def _step(value: object, where: str) -> int:
    """A logged step as the store keeps it: a whole number from 0 to 2^63 - 1 (1.0 is
    step 1; 1.7, NaN, text are no step); else InputError naming where it was read."""
    number = value.item() if hasattr(value, "item") else value  # numpy scalars
    if isinstance(number, str):
        number = _parsed(number)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not is_whole(number) or not 0 <= number <= _MAX_STEP:
        raise InputError(f"{where}: step {value!r} is not a whole number from 0 to 2^63 - 1; "
                         "fix the export (a step counts optimizer steps)")
    return number


def _parsed(text: str) -> int | float | None:
    """`text` as an int (exactly, however large) or a float; None if it is neither."""
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            continue
    return None


def _read_mlflow_sqlite(path: Path) -> list[TrackerRun]:
    """MLflow's SQLite tracking store, read-only, fixed column lists."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise InputError(f"{path}: cannot open as SQLite ({err})") from None
    try:
        runs = con.execute("SELECT run_uuid, name, lifecycle_stage FROM runs ORDER BY start_time, run_uuid").fetchall()
        metrics = con.execute("SELECT run_uuid, key, step, value, is_nan FROM metrics "
                              "ORDER BY run_uuid, key, step, timestamp").fetchall()
        params = con.execute("SELECT run_uuid, key, value FROM params").fetchall()
    except sqlite3.Error as err:
        raise InputError(f"{path}: not an MLflow tracking store (tables runs, metrics, params): {err}") from None
    finally:
        con.close()
    series: dict[str, dict[str, dict[int, float]]] = {}
    for run_uuid, key, step, value, is_nan in metrics:  # ordered by timestamp: the last value per step wins
        where = f"{path}: metrics of run {run_uuid}, {key}"
        series.setdefault(str(run_uuid), {}).setdefault(str(key), {})[_step(step, where)] = \
            math.nan if is_nan else _number(value, f"{where} at step {step}")
    run_params: dict[str, dict[str, str]] = {}
    for run_uuid, key, value in params:
        run_params.setdefault(str(run_uuid), {})[str(key)] = str(value)
    return [TrackerRun("mlflow", str(run_uuid), str(name or run_uuid), run_params.get(str(run_uuid), {}),
                       series.get(str(run_uuid), {}), f"{path.resolve()}#{run_uuid}")
            for run_uuid, name, stage in runs if stage != "deleted"]


def _number(value: object, where: str) -> float:
    """A metric's value: a number (an SQLite cell may hold NULL or text); else InputError."""
    if is_number(value):
        return float(value)
    raise InputError(f"{where}: value {value!r} is not a number; fix the tracking store (or mark it is_nan)")


def read_wandb(path: Path) -> list[TrackerRun]:
    """Run folders holding history.csv / history.parquet (+ config.json); a history
    file given directly reads its folder."""
    files = [path] if path.is_file() else sorted([*path.rglob("history.csv"), *path.rglob("history.parquet")])
    return [_read_wandb_run(history) for history in files]


def _read_wandb_run(history: Path) -> TrackerRun:
    try:
        table = pd.read_parquet(history) if history.suffix == ".parquet" else pd.read_csv(history)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{history}: not a readable W&B history table ({err})") from None
    if "_step" not in table.columns:
        raise InputError(f"{history}: no _step column (W&B history exports have one)")
    check_read_table(history, table, csv_header(history) if history.suffix != ".parquet" else None)
    series = {}
    steps = [_step(step, f"{history}: row {row} of _step") for row, step in enumerate(table["_step"], start=1)]
    for column in table.columns:
        if column.startswith("_"):
            continue  # _step, _runtime, _timestamp
        values = pd.to_numeric(table[column], errors="coerce")
        series[column] = {int(step): float(value) for step, value in zip(steps, values) if not math.isnan(value)}
    config_file = history.with_name("config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (OSError, ValueError, RecursionError) as err:  # ValueError: not JSON, not UTF-8; nested 100k deep
        raise InputError(f"{config_file}: not a readable W&B config.json ({err}); fix or remove it") from None
    if not isinstance(config, dict):
        raise InputError(f"{config_file}: a W&B config.json holds one JSON object, got {type(config).__name__}")
    params = {str(k): str(v["value"] if isinstance(v, dict) and "value" in v else v)
              for k, v in config.items() if not str(k).startswith("_")}
    run_dir = history.parent.resolve()
    return TrackerRun("wandb", str(run_dir), run_dir.name, params, series, str(history.resolve()))


# ---------------------------------------------------------------- mapping

def run_id_for(run: TrackerRun) -> str:
    digest = hashlib.sha256(f"{run.kind}\0{run.identity}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{SOURCE}-{run.kind}-{digest}"


def map_run(run: TrackerRun, mapping: TrackerMapping) -> MappedRun:
    """The run as N, D and (step, loss, metrics) points, or the reason it cannot be."""
    run_id = run_id_for(run)
    try:
        n, d = _size(run, "N", mapping.n), _size(run, "D", mapping.d)
        _seed(run.params)
    except ValueError as err:
        return MappedRun(run_id, run, problem=str(err))
    if mapping.model and mapping.model not in run.params:  # not the run's name in its place, without a word
        return MappedRun(run_id, run, n, d, problem=f"no parameter {mapping.model!r} for the model (parameters: "
                                                    f"{', '.join(sorted(run.params)) or 'none'})")
    losses = run.series.get(mapping.loss)
    if not losses:
        known = ", ".join(sorted(run.series)) or "none"
        return MappedRun(run_id, run, n, d, problem=f"no metric {mapping.loss!r} (metrics: {known})")
    points = []
    for step, loss in sorted(losses.items()):
        if not math.isfinite(loss) or loss <= 0:
            continue
        ranking = {ours: run.series[theirs][step] for ours, theirs in mapping.metrics.items()
                   if step in run.series.get(theirs, {}) and math.isfinite(run.series[theirs][step])}
        points.append((step, loss, ranking))
    if not points:
        return MappedRun(run_id, run, n, d, problem=f"metric {mapping.loss!r} has no positive finite value")
    return MappedRun(run_id, run, n, d, tuple(points))


def _size(run: TrackerRun, what: str, spec: str) -> int:
    """N or D: `spec` itself when it is a number, else the run's parameter of that name."""
    text = spec if _is_number(spec) else run.params.get(spec)
    if text is None:
        raise ValueError(f"no parameter {spec!r} for {what} (parameters: {', '.join(sorted(run.params)) or 'none'})")
    value = float(text) if _is_number(text) else math.nan
    if not (math.isfinite(value) and value > 0 and value.is_integer() and value <= _MAX_STEP):
        raise ValueError(f"{what} from {spec!r} is {text!r}, not a whole number from 1 to 2^63 - 1")
    return int(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def check_mapping(mapping: TrackerMapping, label: str | None = None) -> TrackerMapping:
    """`mapping` if its names can be used and kept (the label too); else InputError."""
    unknown = set(mapping.metrics) - set(METRIC_COLUMNS)
    if unknown:
        raise InputError(f"--metric names the workbench metric first: one of {', '.join(METRIC_COLUMNS)}; "
                         f"got {sorted(unknown)}")
    for what, value in (("--loss", mapping.loss), ("--n", mapping.n), ("--d", mapping.d),
                        ("--dataset", mapping.dataset), ("--annotation", mapping.annotation)):
        if not value or not str(value).strip():
            raise InputError(f"{what} must not be empty")
        validate_text(what, value)
    for what, value in (("--model", mapping.model), ("--label", label), *mapping.metrics.items()):
        if value is not None:
            validate_text(what if what.startswith("--") else f"--metric {what}", value)
    return mapping


# ---------------------------------------------------------------- preview and import

def preview(store, path: str | Path, mapping: TrackerMapping, kind: str = "auto",
            label: str | None = None) -> list[dict]:
    """What `import_runs` would do, one row per run, writing nothing (not even a new
    store file)."""
    mapped = [map_run(run, check_mapping(mapping, label)) for run in read_runs(path, kind)]
    existing = _run_ids(store)
    return [_summary(run, existing) for run in mapped]


def import_runs(store, path: str | Path, mapping: TrackerMapping, kind: str = "auto",
                label: str | None = None) -> list[dict]:
    """Import every mappable run under `path`, all of them or none (a run the store
    refuses leaves no other run written); the same runs again update in place."""
    mapped = [map_run(run, check_mapping(mapping, label)) for run in read_runs(path, kind)]
    existing = _run_ids(store)
    summaries = [_summary(run, existing) for run in mapped]
    with CommandProgress("import", len(mapped), "run", desc="importing runs") as progress, store.all_or_nothing():
        for run in mapped:
            if run.problem is None:
                _write(store, run, mapping, label)
            progress.advance(detail=run.source.name)
    return summaries


def _run_ids(store) -> set[str]:
    """The store's run ids; none where it has neither file nor spool yet (a preview
    then makes no store)."""
    if not store.path.exists() and not spool_files(store.spool_dir):
        return set()
    runs = store.runs()
    return set(runs["run_id"]) if len(runs) else set()


def _summary(run: MappedRun, existing: set[str]) -> dict:
    action = "skip" if run.problem else ("update" if run.run_id in existing else "new")
    return {"run_id": run.run_id, "kind": run.source.kind, "name": run.source.name, "location": run.source.location,
            "action": action, "problem": run.problem, "n": run.n, "d": run.d, "points": len(run.points),
            "best_loss": run.best_loss}


def _write(store, run: MappedRun, mapping: TrackerMapping, label: str | None) -> None:
    source = run.source
    model = source.params.get(mapping.model) if mapping.model else None
    config = {"imported_from": source.kind, "location": source.location, "identity": _readable(source.identity),
              "tracker_run_name": source.name, "params": source.params, "mapping": asdict(mapping)}
    store.start_run(config=config, model_name=model or source.name, n_params=run.n, n_params_strict=run.n,
                    train_pairs=run.d, annotation=mapping.annotation, dataset=mapping.dataset,
                    seed=_seed(source.params), device="unknown", code_version=f"{source.kind} import",
                    run_id=run.run_id, source=SOURCE, label=label or source.name)
    store.add_points(run.run_id, [{"step": step, "contrastive_entropy": loss, "metrics": ranking or None}
                                  for step, loss, ranking in run.points])
    last_ranked = [(step, loss, ranking) for step, loss, ranking in run.points if ranking]
    final = {**last_ranked[-1][2], "contrastive_entropy": last_ranked[-1][1]} if last_ranked else None
    store.finish_run(run.run_id, status="completed", best_contrastive_entropy=run.best_loss, metrics=final)


def _seed(params: dict[str, str]) -> int:
    """The run's `seed` parameter (0 where it has none, or a negative or text one);
    ValueError for a number no seed can be (inf, 1e30, 1.5)."""
    value = params.get("seed")
    if value is None or not _is_number(value) or float(value) < 0:
        return 0
    number = float(value)
    if not (math.isfinite(number) and number.is_integer() and number <= _MAX_STEP):
        raise ValueError(f"parameter seed is {value!r}, not a whole number from 0 to 2^63 - 1")
    return int(number)
