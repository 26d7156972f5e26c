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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from engine.errors import InputError
from engine.progress import CommandProgress
from store.imports import METRIC_COLUMNS

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
    runs = readers[kind](path)
    if not runs:
        raise InputError(f"{path}: no {kind} runs found there")
    return runs


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
            series.setdefault(tag, {})[int(step)] = float(value)
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
            meta = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}
        except (OSError, ValueError, yaml.YAMLError) as err:  # ValueError: not UTF-8
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
        params = {p.relative_to(run_dir / "params").as_posix(): p.read_text(encoding="utf-8").strip()
                  for p in sorted((run_dir / "params").rglob("*")) if p.is_file()} if (run_dir / "params").is_dir() else {}
        name_tag = run_dir / "tags" / "mlflow.runName"
        name = name_tag.read_text(encoding="utf-8").strip() if name_tag.is_file() else meta.get("run_name") or run_uuid
        runs.append(TrackerRun("mlflow", run_uuid, str(name), params, series, str(run_dir.resolve())))
    return runs


def _mlflow_metric_lines(path: Path) -> dict[int, float]:
    """`timestamp value step` per line (MLflow's file store); the last value per step wins."""
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise InputError(f"{path}:{number}: expected 'timestamp value step', got {line!r}")
        try:
            values[int(parts[2]) if len(parts) == 3 else 0] = float(parts[1])
        except ValueError:
            raise InputError(f"{path}:{number}: expected 'timestamp value step', got {line!r}") from None
    return values


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
        series.setdefault(run_uuid, {}).setdefault(key, {})[int(step)] = math.nan if is_nan else float(value)
    run_params: dict[str, dict[str, str]] = {}
    for run_uuid, key, value in params:
        run_params.setdefault(run_uuid, {})[key] = str(value)
    return [TrackerRun("mlflow", run_uuid, name or run_uuid, run_params.get(run_uuid, {}), series.get(run_uuid, {}),
                       f"{path.resolve()}#{run_uuid}")
            for run_uuid, name, stage in runs if stage != "deleted"]


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
    series = {}
    steps = table["_step"]
    for column in table.columns:
        if column.startswith("_"):
            continue  # _step, _runtime, _timestamp
        values = pd.to_numeric(table[column], errors="coerce")
        series[column] = {int(step): float(value) for step, value in zip(steps, values) if not math.isnan(value)}
    config_file = history.with_name("config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (OSError, ValueError) as err:  # ValueError: not JSON, not UTF-8
        raise InputError(f"{config_file}: not a readable W&B config.json ({err}); fix or remove it") from None
    if not isinstance(config, dict):
        raise InputError(f"{config_file}: a W&B config.json holds one JSON object, got {type(config).__name__}")
    params = {str(k): str(v["value"] if isinstance(v, dict) and "value" in v else v)
              for k, v in config.items() if not str(k).startswith("_")}
    run_dir = history.parent.resolve()
    return TrackerRun("wandb", str(run_dir), run_dir.name, params, series, str(history.resolve()))


# ---------------------------------------------------------------- mapping

def run_id_for(run: TrackerRun) -> str:
    digest = hashlib.sha256(f"{run.kind}\0{run.identity}".encode()).hexdigest()[:16]
    return f"{SOURCE}-{run.kind}-{digest}"


def map_run(run: TrackerRun, mapping: TrackerMapping) -> MappedRun:
    """The run as N, D and (step, loss, metrics) points, or the reason it cannot be."""
    run_id = run_id_for(run)
    try:
        n, d = _size(run, "N", mapping.n), _size(run, "D", mapping.d)
    except ValueError as err:
        return MappedRun(run_id, run, problem=str(err))
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
    if not (math.isfinite(value) and value > 0 and value.is_integer()):
        raise ValueError(f"{what} from {spec!r} is {text!r}, not a positive whole number")
    return int(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def check_mapping(mapping: TrackerMapping) -> TrackerMapping:
    unknown = set(mapping.metrics) - set(METRIC_COLUMNS)
    if unknown:
        raise InputError(f"--metric names the workbench metric first: one of {', '.join(METRIC_COLUMNS)}; "
                         f"got {sorted(unknown)}")
    for what, value in (("--loss", mapping.loss), ("--n", mapping.n), ("--d", mapping.d),
                        ("--dataset", mapping.dataset), ("--annotation", mapping.annotation)):
        if not value or not str(value).strip():
            raise InputError(f"{what} must not be empty")
    return mapping


# ---------------------------------------------------------------- preview and import

def preview(store, path: str | Path, mapping: TrackerMapping, kind: str = "auto") -> list[dict]:
    """What `import_runs` would do, one row per run, writing nothing."""
    mapped = [map_run(run, check_mapping(mapping)) for run in read_runs(path, kind)]
    return [_summary(run, _run_ids(store)) for run in mapped]


def import_runs(store, path: str | Path, mapping: TrackerMapping, kind: str = "auto",
                label: str | None = None) -> list[dict]:
    """Import every mappable run under `path`; the same runs again update in place."""
    mapped = [map_run(run, check_mapping(mapping)) for run in read_runs(path, kind)]
    existing = _run_ids(store)
    summaries = [_summary(run, existing) for run in mapped]
    with CommandProgress("import", len(mapped), "run", desc="importing runs") as progress:
        for run in mapped:
            if run.problem is None:
                _write(store, run, mapping, label)
            progress.advance(detail=run.source.name)
    return summaries


def _run_ids(store) -> set[str]:
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
    config = {"imported_from": source.kind, "location": source.location, "identity": source.identity,
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
    value = params.get("seed")
    return int(float(value)) if value is not None and _is_number(value) and float(value) >= 0 else 0
