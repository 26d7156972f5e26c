"""A scaling study in one command: models x data sizes x annotation types x seeds.

A sweep file (TOML) names the grid and the training settings every run shares:

    name = "squad-scratch"

    [grid]
    models = ["scratch-L1-H32", "scratch-L2-H64"]
    train_pairs = [500, 1000, "all"]
    annotations = ["human", "ict"]
    seeds = [0]
    lr = [1e-3, 3e-3]            # optional: peak learning rates (else [train] lr or the rung's)

    [annotation_data]            # training pairs of each non-human annotation type
    ict = "annotations/squad-ict" # a BEIR folder written by `python -m engine annotate`

    [train]                      # TrainConfig fields shared by every run
    dataset = "../../shared/data/squad-dev"
    steps = 300

Relative paths are relative to the sweep file. Every run gets a deterministic id
from its full config, so a restarted sweep skips runs that completed (the store
says so) and resumes interrupted ones from their last checkpoint (the training
loop finds it in the run's folder). `--shard i/n` takes every n-th run, so n
machines or GPUs share a sweep without overlap; results meet in the store.
Each run is an ordinary `python -m engine train --config FILE` process, or
`accelerate launch -m engine train ...` with `--launcher accelerate`.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from engine.errors import InputError
from engine.flops import train_step_flops
from engine.processes import outcome_line, start_process
from engine.ladder import hashed_lr, hashed_similarity
from engine.paths import resolved, runs_dir, validate_name
from engine.command_progress import CommandProgress
from engine.config import MAX_SEED, TrainConfig, without_later_defaults  # not engine.train: reading a sweep imports no torch

GRID_KEYS = ("models", "train_pairs", "annotations", "seeds", "lr")
PATH_FIELDS = ("dataset", "train_data", "tokenizer")


@dataclass(frozen=True)
class SweepRun:
    config: TrainConfig
    legacy_run_id: str | None = None  # the id this run had when ids hashed every setting

    @property
    def run_id(self) -> str:
        return self.config.run_id


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    runs: tuple[SweepRun, ...]
    spec: dict = field(default_factory=dict, compare=False)  # the file's tables, paths made absolute

    def inputs(self) -> dict[str, Path]:
        """What its runs read (what -> path), which no output may overwrite: the data sets,
        the annotated training sets, the tokenizers."""
        found: dict[str, str] = {}
        for run in self.runs:
            for name in PATH_FIELDS:
                if value := getattr(run.config, name):
                    found.setdefault(value, name)
        return {f"the sweep's {name} input{'' if i == 0 else f' ({i + 1})'}": Path(value)
                for i, (value, name) in enumerate(found.items())}

    def to_toml(self) -> str:
        """The sweep file `load_sweep` reads back into the same runs, from any folder."""
        import tomli_w

        return tomli_w.dumps(self.spec)


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and expand its grid into runs, in a stable order."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a sweep file; give the .toml file's path")
    if not path.is_file():
        raise InputError(f"{path}: no such sweep file")
    try:
        spec = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: nested 100k deep
        raise InputError(f"{path}: not valid TOML ({type(err).__name__}: {err})") from None
    return sweep_from_spec(spec, path)


def sweep_from_spec(spec: dict, path: Path) -> Sweep:
    """A sweep file's tables (as tomllib reads them) checked and expanded into runs;
    relative paths are relative to `path`'s folder."""
    name = validate_name(f"{path}: sweep name", spec.get("name") or path.stem)
    grid, shared = _grid(spec, path), dict(_table(spec, "train", path))
    allowed = {f.name for f in fields(TrainConfig)} - {"model", "train_pairs", "seed", "run_id", "annotation"}
    bad = set(shared) - allowed
    if bad:
        raise InputError(f"{path}: unknown [train] settings {sorted(bad)}")
    if "lr" in grid and "lr" in shared:
        raise InputError(f"{path}: lr is both a [grid] axis and a [train] setting; keep one")
    if "dataset" not in shared:
        raise InputError(f"{path}: [train] needs dataset = \"PATH\"")
    base = path.parent
    shared = {k: _resolve_path(base, v, f"{path}: [train] {k}") if k in PATH_FIELDS and v else v
              for k, v in shared.items()}
    annotation_data = {k: _resolve_path(base, v, f"{path}: [annotation_data] {k}")
                       for k, v in _table(spec, "annotation_data", path).items()}
    runs = [SweepRun(config, _legacy_run_id(config)) for config in _expand(name, grid, shared, annotation_data, path)]
    tables = {"name": name, "grid": grid, "annotation_data": annotation_data, "train": shared}
    return Sweep(name, path, tuple(runs), {key: value for key, value in tables.items() if value})


def _table(spec: dict, name: str, path: Path) -> dict:
    value = spec.get(name, {})
    if not isinstance(value, dict):
        raise InputError(f"{path}: {name} must be a table ([{name}] with one setting a line), got {value!r}")
    return value


# what each [grid] list holds, and an example of it
_GRID_ENTRIES = {"models": (str, '["scratch-L2-H64"]'), "annotations": (str, '["human", "ict"]'),
                 "seeds": (int, "[0, 1]"), "train_pairs": (int | str, '[500, 1000, "all"]'),
                 "lr": (float | int, "[1e-3, 3e-3]")}


def _grid(spec: dict, path: Path) -> dict[str, list]:
    """[grid] as lists that each give at least one run: a string where a list belongs
    would expand into one run per character, an empty list into no runs at all."""
    grid = _table(spec, "grid", path)
    unknown = set(grid) - set(GRID_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown [grid] keys {sorted(unknown)}; allowed: {', '.join(GRID_KEYS)}")
    if "models" not in grid:
        raise InputError(f"{path}: [grid] needs ['models'], e.g. models = {_GRID_ENTRIES['models'][1]}")
    for key, values in grid.items():
        kind, example = _GRID_ENTRIES[key]
        if not isinstance(values, list):
            raise InputError(f"{path}: [grid] {key} must be a list, e.g. {key} = {example}; got {values!r}")
        if not values:
            raise InputError(f"{path}: [grid] {key} is empty, so the sweep has no runs; list at least one, "
                             f"e.g. {key} = {example}")
        wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, kind) or (kind is int and v < 0)
                 or (key == "lr" and not 0 < v < float("inf")) or (key == "seeds" and v >= MAX_SEED)]
        if wrong:
            raise InputError(f"{path}: [grid] {key} holds {wrong[0]!r}; entries look like {key} = {example}")
        if len(set(values)) < len(values):
            raise InputError(f"{path}: [grid] {key} lists an entry twice ({values}); list each once")
    return grid


def _resolve_path(base: Path, value: str, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a path in quotes, e.g. \"../data/squad-dev\"; got {value!r}")
    candidate = Path(value).expanduser()
    return str(candidate if candidate.is_absolute() else resolved(base / candidate, what))


def _expand(name, grid, shared, annotation_data, path) -> list[TrainConfig]:
    configs = []
    for annotation in grid.get("annotations", ["human"]):
        if annotation != "human" and annotation not in annotation_data:
            raise InputError(f"{path}: annotation {annotation!r} needs a training set in [annotation_data]")
        for model in grid["models"]:
            for pairs in grid.get("train_pairs", ["all"]):
                for seed in grid.get("seeds", [0]):
                    for lr in grid.get("lr", [None]):
                        configs.append(_run_config(name, shared, model, pairs, annotation, seed, lr,
                                                   annotation_data.get(annotation), path))
    return configs


def _run_config(name, shared, model, pairs, annotation, seed, lr, train_data, path) -> TrainConfig:
    if pairs != "all" and (not isinstance(pairs, int) or pairs <= 0):
        raise InputError(f"{path}: train_pairs entries are positive integers or \"all\", got {pairs!r}")
    values = {**shared, "model": model, "train_pairs": None if pairs == "all" else pairs, "seed": seed,
              "annotation": annotation, "train_data": train_data}
    if lr is not None:  # the grid's lr axis (its runs' ids name the rate)
        values["lr"] = float(lr)
    elif values.get("lr") is None:  # the rung's default, in the id where it changed (engine.ladder.hashed_lr)
        values["lr"] = hashed_lr(model)
    if values.get("similarity", "auto") == "auto":  # likewise the rung's score (engine.ladder.hashed_similarity)
        values["similarity"] = hashed_similarity(model) or "auto"
    try:
        config = TrainConfig.from_dict(values)
    except (TypeError, InputError) as err:  # a wrong type or range in [train]: name the file
        raise InputError(f"{path}: {err}") from err
    rate = "" if lr is None else f"-lr{float(lr):g}"
    run_id = f"{name}-{Path(model).name}-D{pairs}-{annotation}-s{seed}{rate}-{config.measurement_digest()}"
    return replace(config, run_id=validate_name(f"{path}: run id", run_id))


# the settings the run ids of sweeps before the Measurement / RunOptions split hashed
_LEGACY_HASHED = frozenset(
    "dataset model init tokenizer tokenizer_vocab_size scratch_embedding_std pooling train_data annotation "
    "train_pairs data_seed lenient_qrels steps batch_size negatives in_batch_negatives lr warmup_steps "
    "weight_decay max_grad_norm max_query_length max_passage_length seed eval_every eval_at_start eval "
    "precision dropout_masks grad_accum gradient_checkpointing compile checkpoint_every keep_checkpoints cpu "
    "run_id label".split())


def _legacy_run_id(config: TrainConfig) -> str:
    """The id the same run got when the digest covered every setting (run options too),
    so a store's runs completed under such ids are not run again."""
    values = {k: v for k, v in without_later_defaults(asdict(replace(config, run_id=None))).items()
              if k in _LEGACY_HASHED}
    values["eval"] = {**values["eval"], "batch_size": config.eval_batch_size}
    digest = hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{config.run_id.rsplit('-', 1)[0]}-{digest}"


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as err:
        raise InputError(f"--shard takes i/n, e.g. 0/2; got {text!r}") from err
    if count <= 0 or not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return index, count


def shard(runs, index: int, count: int) -> list[SweepRun]:
    """Every `count`-th run starting at `index`: disjoint shards that cover the sweep."""
    return list(runs)[index::count]


def check_data(runs: list[SweepRun]) -> None:
    """Every run's data set reads, has its test split and holds the D pairs the run asks for, checked
    before anything trains (each data set and training set read once)."""
    from engine.data import load_retrieval_data, training_pairs

    available: dict[tuple, int] = {}
    for run in runs:
        c = run.config
        key = (c.dataset, c.train_data, c.lenient_qrels, c.data_seed, c.eval.test_split)
        if key not in available:
            for what, path in (("dataset", c.dataset), ("train_data", c.train_data)):
                if path:
                    resolved(path, f"run {run.run_id}: {what}")  # a link loop is one line, not a RuntimeError
            data = load_retrieval_data(c.dataset, strict=not c.lenient_qrels, test_split=c.eval.test_split)
            data.test_split  # resolves now: several candidate test splits and none named is an InputError
            pairs = training_pairs(data, c.train_data, None, c.data_seed, strict=not c.lenient_qrels)
            available[key] = pairs.n_available
        if c.train_pairs is not None and c.train_pairs > available[key]:
            source = c.train_data or c.dataset
            raise InputError(f"run {run.run_id}: D = {c.train_pairs:,} training pairs, but {source} has "
                             f"{available[key]:,}; choose D <= {available[key]:,} or \"all\"")
    _check_tokenizers(runs)


def _check_tokenizers(runs: list[SweepRun]) -> None:
    """Each tokenizer the runs name loads (a sweep's tokenizer is a path beside the
    sweep file): a missing one would fail every run that names it, after the sweep started."""
    from engine.tokenize_cache import load_tokenizer

    for spec in sorted({run.config.tokenizer for run in runs if run.config.tokenizer}):
        users = sum(run.config.tokenizer == spec for run in runs)
        try:
            load_tokenizer(spec)
        except InputError as err:
            raise InputError(f"{users} run(s) of the sweep would fail: {err}") from None


def completed_run_ids(store) -> set[str]:
    runs = store.runs(status="completed")
    return set(runs["run_id"]) if len(runs) else set()


# --- estimates ----------------------------------------------------------------

def estimate(config: TrainConfig, peak_flops: float, assumed_mfu: float) -> dict:
    """FLOPs and seconds of a run from its shape alone (nothing is loaded)."""
    from engine.ladder import ladder_model

    rung = ladder_model(config.model)
    if rung is None:
        return {"flops": None, "seconds": None}
    n_params = rung.describe()["n_params"]
    step = train_step_flops(n_params, rung.layers, rung.hidden,
                            [(config.batch_size, config.max_query_length),
                             (config.batch_size + config.negatives, config.max_passage_length)])
    flops = step * config.steps
    return {"flops": flops, "seconds": flops / (peak_flops * assumed_mfu), "n_params": n_params}


# --- running ------------------------------------------------------------------

def config_file(config: TrainConfig) -> Path:
    """Where a run's config is written for its training process."""
    path = runs_dir() / config.run_id / "sweep_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(config), indent=1))
    return path


def train_command(config: TrainConfig, store_path: Path, launcher: str) -> list[str]:
    args = ["-m", "engine", "train", "--config", str(config_file(config)), "--store", str(store_path)]
    if launcher == "accelerate":
        return ["accelerate", "launch", *args]
    return [sys.executable, *args]


def run_sweep(runs: list[SweepRun], store, launcher: str = "python", parallel: int = 1,
              log=print) -> dict[str, int]:
    """Run the runs not yet completed, `parallel` at a time; returns counts by outcome
    ("busy" too when another sweep process was training some of the runs: each run is
    trained under a lock on its folder, so two sweeps on one store never train a run twice)."""
    done = completed_run_ids(store)
    pending = [run for run in runs if run.run_id not in done and run.legacy_run_id not in done]
    log(f"{len(runs) - len(pending)} of {len(runs)} runs already complete; {len(pending)} to run")
    env = _thread_env(parallel)
    outcome = {"completed": len(runs) - len(pending), "failed": 0}
    active: list[tuple[SweepRun, subprocess.Popen, int]] = []
    queue = list(pending)
    with CommandProgress("sweep", len(runs), "run", initial=outcome["completed"]) as progress:
        while queue or active:
            while queue and len(active) < parallel:
                run = queue.pop(0)
                lock = _run_lock(run.run_id)
                if lock is None:
                    outcome["busy"] = outcome.get("busy", 0) + 1
                    log(f"skipped {run.run_id}: another sweep is training it now")
                    progress.advance(detail=run.run_id)
                    continue
                log_path = runs_dir() / run.run_id / "train.log"
                command = train_command(run.config, store.path, launcher)
                # in the sweep's process group: a cancel of the study reaches the run too. The trainer
                # inherits the run's lock: a sweep killed with -9 leaves it held by the trainer while that
                # still runs, so a second sweep skips the run instead of training it twice in one folder
                active.append((run, start_process(command, log_path, env=env, own_session=False, cwd=None,
                                                  keep_fds=(lock,)), lock))
                log(f"started {run.run_id} (log: {log_path})")
            time.sleep(0.2)
            for run, process, lock in list(active):
                if process.poll() is None:
                    continue
                active.remove((run, process, lock))
                os.close(lock)  # releases the run's lock
                outcome["completed" if process.returncode == 0 else "failed"] += 1
                log(outcome_line(run.run_id, process.returncode))
                progress.advance(detail=run.run_id)
    return outcome


def _run_lock(run_id: str) -> int | None:
    """An open descriptor holding the exclusive lock of the run's folder (released when
    every process holding it, this one and the trainer it is passed to, has closed it
    or died), None when another process holds it."""
    folder = runs_dir() / run_id
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "sweep.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _thread_env(parallel: int) -> dict[str, str]:
    """Split the machine's cores between parallel runs."""
    env = dict(os.environ)
    if parallel > 1:
        threads = max(1, (os.cpu_count() or 1) // parallel)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env
