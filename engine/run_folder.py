"""A run's folder, `runs_dir()/<run_id>/`: the config it started with, its result once
complete, and the rule that a run id's Measurement never changes."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.checkpoints import latest_checkpoint
from engine.config import TrainConfig
from engine.errors import InputError
from engine.paths import PROJECT_ROOT

BEST_DIR = "best"  # runs/<id>/best/: the weights of the best evaluation (BiEncoder.save) and best.json
RESULT_FILE = "result.json"  # runs/<id>/model/result.json: the TrainResult of a completed run


@dataclass
class TrainResult:
    run_id: str
    run_dir: str
    status: str
    n_params: int
    n_params_strict: int
    train_pairs: int
    steps: int
    resumed_from_step: int | None
    best_contrastive_entropy: float | None
    best_step: int | None
    final_metrics: dict
    wall_time_s: float
    already_complete: bool = False  # the run id had completed before: nothing was trained
    test_split: dict | None = None  # the qrels evaluated on: name, file, sha256 (engine.data.split_identity)
    best_calibrated_entropy: float | None = None  # best over training on its own (engine.evaluate)
    best_calibrated_step: int | None = None
    planned_steps: int | None = None  # the steps the run planned (engine.schedule.planned_steps)
    stopped_early_at: int | None = None  # the evaluation whose patience ran out: the decay began there


CONFIG_FILE = "train_config.json"  # a run's resolved config, written when it starts


def completed_result(run_dir: Path, cfg: TrainConfig) -> TrainResult | None:
    """The result of `run_dir`'s run if it completed; None if it has yet to. A run id's
    Measurement is fixed: one used with a different one is an InputError naming the
    settings that differ (run options, such as the checkpoint interval, may change)."""
    stored = stored_config(run_dir)
    if stored is not None:
        old, new = _flat(asdict(stored)), _flat(asdict(cfg))
        differ = [f"{name} {old[name]!r} -> {new[name]!r}" for name in stored.measurement_differences(cfg)]
        if differ:
            raise InputError(f"run id '{cfg.run_id}' already holds a run with other settings ({'; '.join(differ)}); "
                             "choose a new --run-id, or the run's own settings to resume or rerun it")
    result = run_dir / "model" / RESULT_FILE
    if not result.is_file():
        return None
    return replace(TrainResult(**json.loads(result.read_text())), already_complete=True)


def stored_config(run_dir: Path) -> TrainConfig | None:
    """The config a run was started with: written at its start, or (runs of earlier
    versions) beside its final model or its newest checkpoint."""
    checkpoint = latest_checkpoint(run_dir)
    candidates = [run_dir / CONFIG_FILE, run_dir / "model" / CONFIG_FILE]
    for path in candidates + ([checkpoint / CONFIG_FILE] if checkpoint else []):
        if path.is_file():
            return TrainConfig.from_dict(json.loads(path.read_text()))
    return None


def _flat(values: dict) -> dict:
    return {**{k: v for k, v in values.items() if k != "eval"}, **{f"eval.{k}": v for k, v in values["eval"].items()}}


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def code_version() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
