"""Studies started from the app: a sweep file written from the Runs page's form or a
plan, its estimate (`engine sweep --dry-run`), its launch as a background process
(engine/processes.py), and the earlier studies a new one can extend.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError
from engine.eval_protocol import describe, protocol_id
from engine.paths import PROJECT_ROOT, runs_dir, validate_name
from engine.processes import Job, Launcher, start_process
from engine.sweep import load_sweep, sweep_from_spec

ESTIMATE_TIMEOUT_S = 300


# --- studies ------------------------------------------------------------------------

def new_sweep_file(spec: dict):
    """Check a sweep's tables as `load_sweep` would, write them to a new file under
    `runs_dir()/sweeps/`; returns the Sweep."""
    path = runs_dir() / "sweeps" / f"{spec.get('name', 'sweep')}-{time.strftime('%Y%m%d-%H%M%S')}.toml"
    sweep = sweep_from_spec(spec, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sweep.to_toml())
    return sweep


def estimate_spec(spec: dict) -> str:
    """`estimate` of a sweep's tables, from a file in a temporary folder that is gone
    afterwards (an estimate leaves no sweep file behind)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{spec.get('name', 'sweep')}.toml"
        path.write_text(sweep_from_spec(spec, path).to_toml())
        return estimate(path)


def estimate(sweep_file: Path) -> str:
    """`python -m engine sweep FILE --dry-run`: every run's id, FLOPs and time on this
    machine, after the engine checked the data. Its refusal is an InputError."""
    try:
        done = subprocess.run([sys.executable, "-m", "engine", "sweep", str(sweep_file), "--dry-run"],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=ESTIMATE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"the estimate took longer than {ESTIMATE_TIMEOUT_S} s; launch without one or "
                         "try again") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        reason = lines[-1].removeprefix("error: ") if lines else f"exit {done.returncode}"
        raise InputError(f"the engine refused this study: {reason}")
    return done.stdout


_LAUNCHED: dict[str, dict[str, Job]] = {}   # runs folder -> job name -> Job, for this process's life


def launched_jobs() -> dict[str, Job]:
    """The studies this process launched (the app's server: from any page or session)
    into the runs folder in use, oldest first: the Runs page watches and cancels them."""
    return _LAUNCHED.setdefault(str(runs_dir()), {})


def launch_sweep(sweep_file: Path, store_path: Path, parallel: int, launcher: Launcher = start_process) -> Job:
    """Start `python -m engine sweep FILE` in its own process group; log beside the
    file; the job joins `launched_jobs`."""
    argv = [sys.executable, "-m", "engine", "sweep", str(sweep_file), "--store", str(store_path),
            "--parallel", str(parallel)]
    log_path = sweep_file.with_suffix(".log")
    job = Job(sweep_file.stem, sweep_file, log_path, launcher(argv, log_path))
    launched_jobs()[job.name] = job
    return job


# --- a study from the Runs page's form ------------------------------------------------

@dataclass(frozen=True)
class StudyBase:
    """A study a new one can extend: its sweep files' tables (the grids merged) and its
    runs in the store with their most common evaluation protocol. A new study that keeps
    its [train] settings is measured as its runs were, so its runs join their curves."""

    name: str
    sweep_files: tuple[Path, ...]
    spec: dict                           # Sweep.spec of the first file, grid lists merged over all
    runs: int
    protocol: str | None                 # engine/eval_protocol.py protocol_id, None: not recorded
    fingerprint: dict | None
    run_ids: frozenset = frozenset()     # its runs' ids in the store
    current: bool = True                 # a sweep file still makes some of those runs (same settings, same ids)

    @property
    def train(self) -> dict:
        return self.spec.get("train", {})

    def stale(self) -> str | None:
        """Why new runs will not join this study's runs, when no sweep file makes them any more."""
        if self.current:
            return None
        return (f"No sweep file of {self.name} makes the ids of its {self.runs} run(s) in the store any more: a "
                "setting that measures (the recipe, the evaluation or a ladder default) changed since they ran. "
                "Runs launched now are measured the new way, a protocol of their own, until the whole study is "
                "rerun with its sweep files.")

    def describe(self) -> str:
        files = ", ".join(_shown_path(f) for f in self.sweep_files)
        protocol = f"protocol {self.protocol} ({describe(self.fingerprint)})" if self.protocol else \
            "no recorded evaluation protocol"
        return f"{self.name} ({files}): {self.runs} run(s) in the store, {protocol}"


def _shown_path(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def study_sweep_files() -> list[Path]:
    """Sweep files a study may come from: the project's sweeps/ and those the app wrote."""
    return [*sorted((PROJECT_ROOT / "sweeps").glob("*.toml")), *sorted((runs_dir() / "sweeps").glob("*.toml"))]


def original_run_id(run_id: str, label: str | None, source: str | None) -> str:
    """The id a run had in its study: a demo row keeps it after its label's ' / ' (store/demo.py)."""
    return label.rsplit(" / ", 1)[-1] if source == "demo" and isinstance(label, str) and " / " in label else run_id


def study_bases(runs, files: list[Path] | None = None) -> list[StudyBase]:
    """The studies of `files` (default `study_sweep_files`) with runs in `runs` (a
    store's runs table), most runs first. A run is a study's when its id in the study
    starts with the study's name and a dash. Of a study's files, the one whose runs'
    ids (which hash every setting that measures) are most often in the store gives
    its [train] settings; `current` says whether any file still makes its stored runs.
    Unreadable sweep files are skipped."""

    ids = [original_run_id(r, lab, src) for r, lab, src in zip(runs["run_id"], runs["label"], runs["source"])]
    stored = set(ids)
    files_of: dict[str, list[tuple[int, Path, dict]]] = {}
    for path in study_sweep_files() if files is None else files:
        try:
            sweep = load_sweep(path)
        except InputError:
            continue
        made = sum(r.run_id in stored or r.legacy_run_id in stored for r in sweep.runs)
        files_of.setdefault(sweep.name, []).append((made, path, sweep.spec))
    bases = []
    for name, found in files_of.items():
        mine = [i for i, run in enumerate(ids) if run.startswith(f"{name}-")]
        if not mine:
            continue
        made, _, spec = max(found, key=lambda f: f[0])          # first of the best: max keeps the earliest
        spec = json.loads(json.dumps(spec))
        for _, _, other in found:
            for key, values in other["grid"].items():
                spec["grid"][key] = _merged(spec["grid"].get(key, []), values)
        fingerprints = {protocol_id(f): f for f in (runs["eval_fingerprint"].iloc[i] for i in mine)
                        if isinstance(f, dict)}
        counts = Counter(runs["eval_protocol"].iloc[i] for i in mine if isinstance(runs["eval_protocol"].iloc[i], str))
        protocol = counts.most_common(1)[0][0] if counts else None
        bases.append(StudyBase(name, tuple(path for _, path, _ in found), spec, len(mine), protocol,
                               fingerprints.get(protocol), frozenset(runs["run_id"].iloc[i] for i in mine), made > 0))
    return sorted(bases, key=lambda b: (-b.runs, b.name))


def _merged(values: list, more: list) -> list:
    """Two grid lists as one, each entry once: numbers ascending, then words (models, "all") in order."""
    entries = list(dict.fromkeys([*values, *more]))
    return [*sorted(v for v in entries if not isinstance(v, str)), *(v for v in entries if isinstance(v, str))]


def base_of_runs(bases: list[StudyBase], run_ids) -> StudyBase | None:
    """The study most of `run_ids` belong to (None: none of them belongs to one)."""
    ids = set(run_ids)
    best = max(bases, key=lambda b: len(b.run_ids & ids), default=None)
    return best if best is not None and best.run_ids & ids else None


FORM_SETTINGS = ("dataset", "steps", "batch_size", "negatives", "eval_every")   # [train] keys the Runs form sets


def inherited_settings(base: StudyBase | None) -> dict:
    """The [train] settings a study extending `base` keeps from it: all but the form's."""
    return {k: v for k, v in (base.train if base else {}).items() if k not in FORM_SETTINGS}


@dataclass(frozen=True)
class Study:
    """A form's answers: a sweep grid and the training settings its runs share."""

    name: str
    dataset: str
    models: tuple[str, ...]
    train_pairs: tuple[int | str, ...]       # "all": every training pair
    annotation_data: dict[str, str]          # generated annotation type -> BEIR folder of pairs
    with_human: bool
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    negatives: int
    eval_every: int
    inherited: dict = field(default_factory=dict)   # [train] settings of the study it extends

    @property
    def runs(self) -> int:
        types = len(self.annotation_data) + int(self.with_human)
        return len(self.models) * len(self.train_pairs) * types * len(self.seeds)

    def spec(self) -> dict:
        """The sweep file's tables (engine/sweep.py)."""
        annotations = (["human"] if self.with_human else []) + list(self.annotation_data)
        return {"name": self.name,
                "grid": {"models": list(self.models), "train_pairs": list(self.train_pairs),
                         "annotations": annotations, "seeds": list(self.seeds)},
                "annotation_data": dict(self.annotation_data),
                "train": {**self.inherited, "dataset": self.dataset, "steps": self.steps,
                          "batch_size": self.batch_size, "negatives": self.negatives, "eval_every": self.eval_every}}


def study_from_form(name: str, folder: str, models: list[str], sizes: str, seeds: str, with_human: bool,
                    generated: str, steps: int, batch_size: int, negatives: int, eval_every: int,
                    inherited: dict | None = None) -> Study:
    """The form's text fields parsed and checked; bad input is an InputError.
    `inherited`: the other [train] settings (`inherited_settings` of the study extended)."""
    from engine.data import detect_format

    dataset = Path(folder.strip()).expanduser() if folder.strip() else None
    if dataset is None or not dataset.is_dir():
        raise InputError(f"data set folder {folder or '(none)'} does not exist; choose one or type a path")
    detect_format(dataset.resolve())  # no corpus.jsonl or collection.tsv: refused here
    if not models:
        raise InputError("choose at least one model")
    study = Study(validate_name("study name", name.strip()), str(dataset.resolve()), tuple(models),
                  parse_counts(sizes, "data size", ("all",), 1), parse_annotation_folders(generated), with_human,
                  parse_counts(seeds, "seed", (0,), 0), int(steps), int(batch_size), int(negatives), int(eval_every),
                  dict(inherited or {}))
    if study.runs == 0:
        raise InputError("no annotation type chosen: tick human annotations or add a generated one")
    return study


def parse_counts(text: str, what: str, empty: tuple, minimum: int) -> tuple:
    """'1000, 3e3, 10k' -> (1000, 3000, 10000); nothing -> `empty`; a word of `empty`
    ('all': every training pair) is kept, last."""
    values, words = [], []
    for item in re.split(r"[,;\s]+", text.strip().lower()):
        if not item:
            continue
        if item in empty:
            words.append(item)
            continue
        try:
            value = float(item.rstrip("k")) * (1000 if item.endswith("k") else 1)
        except ValueError:
            raise InputError(f"{what} {item!r} is not a number; write e.g. 1000, 3000, 10k") from None
        if not (math.isfinite(value) and value >= minimum and value == int(value)):
            raise InputError(f"{what} {item!r} must be a whole number, at least {minimum}")
        values.append(int(value))
    return (*sorted(set(values)), *dict.fromkeys(words)) or empty


def parse_annotation_folders(text: str) -> dict[str, str]:
    """Lines 'ict = /path/to/pairs' -> {'ict': '/path/to/pairs'}; each folder must exist."""

    folders = {}
    for number, line in enumerate(text.strip().splitlines(), 1):
        if not line.strip():
            continue
        name, sep, folder = (part.strip() for part in line.partition("="))
        if not sep or not name or not folder:
            raise InputError(f"generated annotations, line {number}: write TYPE = FOLDER, got {line!r}")
        validate_name(f"generated annotations, line {number}: type", name)
        if not Path(folder).expanduser().is_dir():
            raise InputError(f"generated annotations, line {number}: folder {folder} does not exist "
                             "(write one with `python -m engine annotate ...`)")
        folders[name] = str(Path(folder).expanduser().resolve())
    return folders
