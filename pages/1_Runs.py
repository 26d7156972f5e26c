"""Runs: configure a study (models x data sizes x annotation types x seeds), estimate
it, launch it as a separate process (`python -m engine sweep FILE`), watch its runs
learn, cancel it, and manage the runs in the store."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import pandas as pd
import streamlit as st

from engine.charts import training_curve
from engine.errors import InputError
from engine.ladder import LADDER
from engine.paths import PROJECT_ROOT, SHARED_DATA, runs_dir, validate_name
from store import Store
from store.core import RUN_STATUSES

DEFAULT_MODELS = ["scratch-L1-H32", "scratch-L2-H64"]
TABLE_COLUMNS = ["label", "status", "dataset", "annotation", "model_name", "n_params", "train_pairs",
                 "best_contrastive_entropy", "wall_time_s", "started_at", "source", "run_id"]
TABLE_FORMAT = {"n_params": st.column_config.NumberColumn("N", format="compact"),
                "train_pairs": st.column_config.NumberColumn("D", format="compact"),
                "best_contrastive_entropy": st.column_config.NumberColumn("best contrastive entropy", format="%.4f"),
                "wall_time_s": st.column_config.NumberColumn("seconds", format="%.0f")}
POLL_SECONDS = 2.0
ESTIMATE_TIMEOUT_S = 300
LOG_TAIL_LINES = 15
JOBS_SHOWN = 5


class Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...


Launcher = Callable[[list[str], Path], Process]


@dataclass
class Job:
    """A study this server launched: one `python -m engine sweep` process whose
    training runs are its children, in its process group."""

    name: str
    sweep_file: Path
    log_path: Path
    process: Process

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()


def launch_process(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start `argv` in a session of its own, so cancel can stop its whole process
    group; output to a log file, never a pipe that could fill up, never a shell."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def current_launcher() -> Launcher:
    """The real launcher, unless a test put another in session state."""
    return st.session_state.get("run_launcher", launch_process)


@st.cache_resource
def job_registry(runs_folder: str) -> dict[str, Job]:
    """Studies launched by this server process, shared by every browser session."""
    return {}


# --- what running runs report --------------------------------------------------------

def read_progress(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def process_group(pid: int | None) -> int | None:
    """The process group of a live process, None if it is gone."""
    try:
        return os.getpgid(pid) if pid and pid > 0 else None
    except (ProcessLookupError, PermissionError):
        return None


def active_runs() -> dict[str, dict]:
    """run_id -> progress of every run whose progress file says running and whose
    training process is alive, launched here or from a shell."""
    found = {}
    for run_dir in sorted(runs_dir().glob("*/")):
        progress = read_progress(run_dir)
        if progress and progress.get("status") == "running" and process_group(progress.get("pid")):
            found[run_dir.name] = progress
    return found


@st.cache_data(ttl=POLL_SECONDS, show_spinner=False)
def eval_points(store_path: str, run_id: str) -> pd.DataFrame:
    return Store(store_path).points(run_id)


@st.cache_data(ttl=5, show_spinner=False)
def runs_table(store_path: str, dataset: tuple[str, ...], annotation: tuple[str, ...],
               status: tuple[str, ...]) -> pd.DataFrame:
    return Store(store_path).runs(dataset=list(dataset) or None, annotation=list(annotation) or None,
                                  status=list(status) or None)


@st.cache_data(ttl=30, show_spinner=False)
def datasets_in_store(store_path: str) -> dict[str, str]:
    frame = Store(store_path).datasets()
    return {row.name: row.path for row in frame.itertuples() if row.path}


# --- live progress ------------------------------------------------------------------

def cancel(job: Job) -> None:
    """SIGTERM to the study's process group: the sweep stops, and the training run
    in progress records itself as cancelled (engine/cli/train.py)."""
    if job.exit_code is None:
        os.killpg(job.process.pid, signal.SIGTERM)


def remember_loss(run_id: str, progress: dict) -> pd.DataFrame:
    """Training loss seen while this page watched (the progress file holds only the latest)."""
    history = st.session_state.setdefault("loss_history", {}).setdefault(run_id, {})
    if progress.get("loss") is not None:
        history[int(progress["step"])] = float(progress["loss"])
    return pd.DataFrame({"step": list(history), "loss": list(history.values())})


def show_progress(run_id: str, progress: dict, store_path: str) -> None:
    step, total = int(progress.get("step") or 0), int(progress.get("total_steps") or 0)
    with st.container(border=True):
        st.markdown(f"**{run_id}**")
        st.progress(step / total if total else 0.0, text=f"step {step:,} of {total:,}" if total else "starting")
        cols = st.columns(3)
        cols[0].metric("loss", f"{progress['loss']:.4f}" if progress.get("loss") is not None else "–")
        best = progress.get("best_contrastive_entropy")
        cols[1].metric("best contrastive entropy", f"{best:.4f}" if best is not None else "–")
        eta = progress.get("eta_s")
        cols[2].metric("time left", f"{eta / 60:.1f} min" if eta is not None else "–")
        curves = st.columns(2)
        curves[0].altair_chart(training_curve(remember_loss(run_id, progress), "loss", "training loss"),
                               width="stretch")
        points = eval_points(store_path, run_id)
        if len(points):
            curves[1].altair_chart(training_curve(points, "contrastive_entropy", "test contrastive entropy"),
                                   width="stretch")


def log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
    except OSError:
        return ""


def show_job(job: Job, runs: dict[str, dict], store_path: str) -> None:
    code = job.exit_code
    state = "running" if code is None else ("finished" if code == 0 else f"stopped (exit {code})")
    st.markdown(f"#### Study {job.name} · {state}")
    st.caption(f"sweep file `{job.sweep_file}` · log `{job.log_path}`")
    if code is None:
        st.button("Cancel this study", key=f"cancel_{job.name}", on_click=cancel, args=(job,))
    elif code != 0:
        st.code(log_tail(job.log_path) or "(empty log)", language=None)
    for run_id, progress in runs.items():
        show_progress(run_id, progress, store_path)


@st.fragment(run_every=POLL_SECONDS)
def live_runs(store_path: str) -> None:
    jobs = job_registry(str(runs_dir()))
    active = active_runs()
    groups = {run_id: process_group(p.get("pid")) for run_id, p in active.items()}
    st.subheader(f"Training now ({len(active)})")
    for job in reversed(list(jobs.values())[-JOBS_SHOWN:]):
        show_job(job, {r: p for r, p in active.items() if groups[r] == job.process.pid}, store_path)
    elsewhere = {r: p for r, p in active.items() if groups[r] not in {j.process.pid for j in jobs.values()}}
    if elsewhere:
        st.markdown("#### Started from a shell")
        for run_id, progress in elsewhere.items():
            show_progress(run_id, progress, store_path)
    if not jobs and not active:
        st.caption("Nothing is training. Start a study below, or from a shell: "
                   "`python -m engine train --dataset ../shared/data/squad-dev --model scratch-L2-H64 "
                   "--train-pairs 2000 --steps 300` or `python -m engine sweep study.toml`.")


# --- planning a study ---------------------------------------------------------------

@dataclass(frozen=True)
class Study:
    """The form's answers: a sweep grid and the training settings its runs share."""

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

    def sweep_toml(self) -> str:
        """The sweep file `python -m engine sweep` reads (engine/sweep.py); JSON
        scalars and arrays are valid TOML."""
        annotations = (["human"] if self.with_human else []) + list(self.annotation_data)
        lines = [f"name = {json.dumps(self.name)}", "", "[grid]",
                 f"models = {json.dumps(list(self.models))}", f"train_pairs = {json.dumps(list(self.train_pairs))}",
                 f"annotations = {json.dumps(annotations)}", f"seeds = {json.dumps(list(self.seeds))}", ""]
        if self.annotation_data:
            lines += ["[annotation_data]", *(f"{json.dumps(k)} = {json.dumps(v)}"
                                             for k, v in self.annotation_data.items()), ""]
        lines += ["[train]", f"dataset = {json.dumps(self.dataset)}", f"steps = {self.steps}",
                  f"batch_size = {self.batch_size}", f"negatives = {self.negatives}", f"eval_every = {self.eval_every}"]
        return "\n".join(lines) + "\n"

    @property
    def runs(self) -> int:
        types = len(self.annotation_data) + int(self.with_human)
        return len(self.models) * len(self.train_pairs) * types * len(self.seeds)


def parse_counts(text: str, what: str, empty: tuple, minimum: int) -> tuple:
    """'1000, 3e3, 10k' -> (1000, 3000, 10000); nothing -> `empty`."""
    values = []
    for item in re.split(r"[,;\s]+", text.strip().lower()):
        if not item:
            continue
        try:
            value = float(item.rstrip("k")) * (1000 if item.endswith("k") else 1)
        except ValueError:
            raise InputError(f"{what} {item!r} is not a number; write e.g. 1000, 3000, 10k") from None
        if value < minimum or value != int(value):
            raise InputError(f"{what} {item!r} must be a whole number, at least {minimum}")
        values.append(int(value))
    return tuple(sorted(set(values))) or empty


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


def study_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text.strip()).strip("-")
    if not name:
        raise InputError("give the study a name (letters, digits, - and _)")
    return name


def sweep_file(study: Study) -> Path:
    path = runs_dir() / "sweeps" / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(study.sweep_toml())
    return path


def estimate(study: Study) -> None:
    """The engine's own dry run: every run's id, FLOPs and time on this machine."""
    path = sweep_file(study)
    with st.spinner("Estimating with `python -m engine sweep --dry-run` (measures this machine's speed) ..."):
        try:
            done = subprocess.run([sys.executable, "-m", "engine", "sweep", str(path), "--dry-run"],
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=ESTIMATE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            st.error(f"The estimate took longer than {ESTIMATE_TIMEOUT_S} s; launch without one or try again.")
            return
    if done.returncode != 0:
        st.error(f"The engine refused this study: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
        return
    st.code(done.stdout, language=None)


def launch(study: Study, store: Store, parallel: int) -> Job:
    path = sweep_file(study)
    argv = [sys.executable, "-m", "engine", "sweep", str(path), "--store", str(store.path),
            "--parallel", str(parallel)]
    log_path = path.with_suffix(".log")
    job = Job(path.stem, path, log_path, current_launcher()(argv, log_path))
    job_registry(str(runs_dir()))[job.name] = job
    return job


def dataset_options(store_path: str) -> dict[str, str]:
    shared = {p.name: str(p) for p in sorted(SHARED_DATA.glob("*/"))} if SHARED_DATA.is_dir() else {}
    return {**shared, **datasets_in_store(store_path)}


def study_form(store: Store) -> None:
    st.subheader("Start a study")
    datasets = dataset_options(str(store.path))
    with st.form("run_form"):
        cols = st.columns([1, 1, 2])
        name = cols[0].text_input("Study name", "study", key="run_name",
                                  help="runs of a study relaunched under the same name and settings are not repeated")
        dataset_name = cols[1].selectbox("Data set", list(datasets) or ["(none found)"], key="run_dataset")
        dataset_path = cols[2].text_input("or a data set folder", key="run_dataset_path",
                                          placeholder="/data/msmarco (BEIR, MS MARCO or T2Ranking layout)")
        models = st.multiselect("Models from the ladder", list(LADDER), default=DEFAULT_MODELS, key="run_models",
                                help="scratch-* rungs train on a CPU in minutes; BERT rungs download their weights")
        cols = st.columns(2)
        sizes = cols[0].text_input("Data sizes D (annotated pairs)", "1000, 3000", key="run_sizes",
                                   help="comma-separated; empty: all training pairs")
        seeds = cols[1].text_input("Seeds", "0", key="run_seeds", help="one run per seed, e.g. 0, 1, 2")
        cols = st.columns([1, 3])
        with_human = cols[0].checkbox("Human annotations", True, key="run_human",
                                      help="the data set's own training pairs")
        generated = cols[1].text_area("Generated annotations, one TYPE = FOLDER per line", key="run_generated",
                                      height=68, placeholder="ict = annotations/squad-ict")
        cols = st.columns(5)
        steps = cols[0].number_input("Steps", 1, 1_000_000, 300, key="run_steps")
        batch_size = cols[1].number_input("Batch size", 1, 4096, 32, key="run_batch")
        negatives = cols[2].number_input("Random negatives", 1, 4096, 64, key="run_negatives")
        eval_every = cols[3].number_input("Evaluate every", 1, 1_000_000, 100, key="run_eval_every")
        parallel = cols[4].number_input("Runs at once", 1, os.cpu_count() or 1, 1, key="run_parallel")
        buttons = st.columns(6)
        estimate_clicked = buttons[0].form_submit_button("Estimate")
        launch_clicked = buttons[1].form_submit_button("Launch", type="primary")
    if not (estimate_clicked or launch_clicked):
        return
    try:
        folder = dataset_path.strip() or datasets.get(dataset_name, "")
        if not folder or not Path(folder).expanduser().is_dir():
            raise InputError(f"data set folder {folder or '(none)'} does not exist; choose one or type a path")
        if not models:
            raise InputError("choose at least one model")
        study = Study(study_name(name), str(Path(folder).expanduser().resolve()), tuple(models),
                      parse_counts(sizes, "data size", ("all",), 1), parse_annotation_folders(generated), with_human,
                      parse_counts(seeds, "seed", (0,), 0), int(steps), int(batch_size), int(negatives),
                      int(eval_every))
        if study.runs == 0:
            raise InputError("no annotation type chosen: tick human annotations or add a generated one")
    except InputError as err:
        st.error(str(err))
        return
    if estimate_clicked:
        estimate(study)
    else:
        job = launch(study, store, int(parallel))
        st.success(f"Launched study {job.name}: {study.runs} run(s), {int(parallel)} at a time. "
                   "Progress appears above.")


# --- the runs in the store ---------------------------------------------------------

def delete_runs(store: Store, run_ids: list[str]) -> None:
    for run_id in run_ids:
        store.delete_run(run_id)
    st.cache_data.clear()


def runs_in_store(store: Store) -> None:
    st.subheader("Runs in the store")
    everything = runs_table(str(store.path), (), (), ())
    if everything.empty:
        st.info("The store holds no runs yet: launch a study above, or import results with "
                "`python -m store import results.csv` (columns n, d, loss).")
        return
    cols = st.columns(3)
    dataset = cols[0].multiselect("Data set", sorted(everything["dataset"].dropna().unique()), key="runs_dataset")
    annotation = cols[1].multiselect("Annotation", sorted(everything["annotation"].dropna().unique()),
                                     key="runs_annotation")
    status = cols[2].multiselect("Status", list(RUN_STATUSES), key="runs_status")
    runs = runs_table(str(store.path), tuple(dataset), tuple(annotation), tuple(status))
    st.dataframe(runs[[c for c in TABLE_COLUMNS if c in runs]], hide_index=True, column_config=TABLE_FORMAT)
    st.caption(f"{len(runs)} of {len(everything)} runs.")
    with st.expander("Delete runs"):
        doomed = st.multiselect("Runs to delete", list(runs["run_id"]), key="runs_delete")
        sure = st.checkbox(f"Yes, delete {len(doomed)} run(s) and their evaluation points", key="runs_delete_sure",
                           disabled=not doomed)
        st.button("Delete", key="runs_delete_button", disabled=not (doomed and sure), on_click=delete_runs,
                  args=(store, doomed))


def main() -> None:
    st.set_page_config(page_title="Runs · Scaling-law workbench", layout="wide")
    st.title("Runs")
    st.caption("A study runs in its own process (`python -m engine sweep`), one training process per run; "
               f"progress files go to `{runs_dir()}`, results to the store. This page only watches.")
    store = Store()
    live_runs(str(store.path))
    study_form(store)
    runs_in_store(store)


main()
