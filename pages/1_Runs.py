"""Runs: configure and launch training runs as separate processes, watch them learn,
and manage the runs in the store (filter, cancel, delete)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import pandas as pd
import streamlit as st

from engine.charts import format_count
from engine.errors import InputError
from engine.flops import train_step_flops
from engine.ladder import LADDER
from engine.paths import PROJECT_ROOT, SHARED_DATA, runs_dir
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


class Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...


Launcher = Callable[[list[str], Path], Process]


@dataclass
class Job:
    """A training process this server started."""

    run_id: str
    argv: list[str]
    log_path: Path
    process: Process

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def launch_process(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start `argv` in its own process group (so cancel can stop its children too),
    output to a log file: never a shell string, never a pipe that could fill up."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def current_launcher() -> Launcher:
    """The real launcher, unless a test put another in session state."""
    return st.session_state.get("run_launcher", launch_process)


@st.cache_resource
def job_registry(runs_folder: str) -> dict[str, Job]:
    """Jobs started by this server process, shared by every browser session."""
    return {}


# --- reading what runs report ------------------------------------------------------

def read_progress(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def active_runs(jobs: dict[str, Job]) -> dict[str, dict]:
    """run_id -> progress of every run that is running now: launched here and alive,
    or reporting 'running' from a live process started elsewhere (the CLI)."""
    found = {}
    for run_dir in sorted(runs_dir().glob("*/")):
        progress = read_progress(run_dir)
        if progress is None:
            continue
        job = jobs.get(run_dir.name)
        alive = job.running if job else pid_alive(progress.get("pid"))
        if progress.get("status") == "running" and alive:
            found[run_dir.name] = progress
    for run_id, job in jobs.items():
        if job.running and run_id not in found:
            found[run_id] = {"status": "starting", "step": 0}
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

def cancel(job: Job, store: Store, progress: dict) -> None:
    """Stop the run's whole process group and record it as cancelled."""
    if job.running:
        os.killpg(job.process.pid, signal.SIGTERM)
    store.finish_run(job.run_id, status="cancelled",
                     best_contrastive_entropy=progress.get("best_contrastive_entropy"),
                     wall_time_s=progress.get("wall_time_s"))
    st.cache_data.clear()


def remember_loss(run_id: str, progress: dict) -> pd.DataFrame:
    """Training loss seen so far (the progress file holds only the latest)."""
    history = st.session_state.setdefault("loss_history", {}).setdefault(run_id, {})
    if progress.get("loss") is not None:
        history[int(progress["step"])] = float(progress["loss"])
    return pd.DataFrame({"step": list(history), "training loss": list(history.values())}).set_index("step")


def show_progress(run_id: str, progress: dict, job: Job | None, store: Store) -> None:
    step, total = int(progress.get("step") or 0), int(progress.get("total_steps") or 0)
    with st.container(border=True):
        st.markdown(f"**{run_id}** · {progress.get('status', '?')}")
        st.progress(step / total if total else 0.0, text=f"step {step:,} of {total:,}" if total else "starting")
        cols = st.columns(4)
        cols[0].metric("loss", f"{progress['loss']:.4f}" if progress.get("loss") is not None else "–")
        best = progress.get("best_contrastive_entropy")
        cols[1].metric("best contrastive entropy", f"{best:.4f}" if best is not None else "–")
        eta = progress.get("eta_s")
        cols[2].metric("time left", f"{eta / 60:.1f} min" if eta is not None else "–")
        if job is not None:
            cols[3].button("Cancel", key=f"cancel_{run_id}", on_click=cancel, args=(job, store, progress))
        else:
            cols[3].caption(f"started outside this app (pid {progress.get('pid')})")
        curves = st.columns(2)
        curves[0].line_chart(remember_loss(run_id, progress), height=180, x_label="step")
        points = eval_points(str(store.path), run_id)
        if len(points):
            curves[1].line_chart(points.set_index("step")[["contrastive_entropy"]], height=180, x_label="step")
        if job is not None:
            st.caption(f"log: `{job.log_path}`")


@st.fragment(run_every=POLL_SECONDS)
def live_runs(store: Store) -> None:
    jobs = job_registry(str(runs_dir()))
    active = active_runs(jobs)
    st.subheader(f"Running now ({len(active)})")
    if not active:
        st.caption("Nothing is training. Start runs below, or from a shell: "
                   "`python -m engine train --dataset ../shared/data/squad-dev --model scratch-L2-H64 "
                   "--train-pairs 2000 --steps 300`.")
    for run_id, progress in active.items():
        show_progress(run_id, progress, jobs.get(run_id), store)


# --- starting runs ------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    dataset: str
    models: tuple[str, ...]
    data_sizes: tuple[int | None, ...]       # None: every training pair
    annotation: str
    train_data: str
    steps: int
    batch_size: int
    negatives: int
    eval_every: int
    seed: int
    label: str

    def argv(self, model: str, train_pairs: int | None, run_id: str) -> list[str]:
        options = {"dataset": self.dataset, "model": model, "train-pairs": train_pairs, "steps": self.steps,
                   "batch-size": self.batch_size, "negatives": self.negatives, "eval-every": self.eval_every,
                   "seed": self.seed, "annotation": self.annotation or None,
                   "train-data": self.train_data or None, "label": self.label or None, "run-id": run_id}
        argv = [sys.executable, "-m", "engine", "train"]
        for name, value in options.items():
            if value is not None:
                argv += [f"--{name}", str(value)]
        return argv

    def combinations(self) -> list[tuple[str, int | None]]:
        return [(model, d) for model in self.models for d in self.data_sizes]


def parse_data_sizes(text: str) -> tuple[int | None, ...]:
    """'1000, 3e3, 10k' -> (1000, 3000, 10000); empty -> every pair (None)."""
    sizes = []
    for item in text.replace(";", ",").split(","):
        item = item.strip().lower()
        if not item:
            continue
        scale = 1000 if item.endswith("k") else 1
        try:
            value = float(item.rstrip("k")) * scale
        except ValueError:
            raise InputError(f"data size {item!r} is not a number; write e.g. 1000, 3000, 10k") from None
        if value < 1 or value != int(value):
            raise InputError(f"data size {item!r} must be a whole number of pairs, at least 1")
        sizes.append(int(value))
    return tuple(sorted(set(sizes))) or (None,)


def new_run_id(model: str, train_pairs: int | None, seed: int) -> str:
    return f"{Path(model).name}-D{train_pairs or 'all'}-s{seed}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


def launch(plan: RunPlan, store: Store) -> list[str]:
    jobs, launcher = job_registry(str(runs_dir())), current_launcher()
    started = []
    for model, train_pairs in plan.combinations():
        run_id = new_run_id(model, train_pairs, plan.seed)
        argv = plan.argv(model, train_pairs, run_id) + ["--store", str(store.path)]
        log_path = runs_dir() / run_id / "app-launch.log"
        jobs[run_id] = Job(run_id, argv, log_path, launcher(argv, log_path))
        started.append(run_id)
    return started


@st.cache_data(show_spinner="Counting the parameters of the ladder (python -m engine models) ...")
def ladder_sizes() -> dict[str, int]:
    """name -> N of every rung, from the engine's own count (torch runs in that
    process, not in this server); empty if the command is not available."""
    try:
        out = subprocess.run([sys.executable, "-m", "engine", "models", "--json"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=300, check=True).stdout
        rows = json.loads(out)
    except (subprocess.SubprocessError, OSError, json.JSONDecodeError):
        return {}
    return {row["name"]: int(row["n_params"]) for row in rows if "name" in row and "n_params" in row}


def estimate(plan: RunPlan, throughput_tflops: float) -> pd.DataFrame:
    """Training FLOPs of every run of the plan (6 N per token plus attention, as
    engine/flops.py counts them) and the time they take at the given throughput."""
    sizes, rows = ladder_sizes(), []
    for model, train_pairs in plan.combinations():
        rung, n = LADDER[model], sizes.get(model)
        flops = None if n is None else plan.steps * train_step_flops(
            n, rung.layers, rung.hidden, [(plan.batch_size, 32), (plan.batch_size + plan.negatives, 180)])
        rows.append({"model": model, "N": format_count(n) if n else "unknown", "D": train_pairs or "all",
                     "PFLOP": flops / 1e15 if flops else None,
                     "minutes": flops / (throughput_tflops * 1e12) / 60 if flops else None})
    return pd.DataFrame(rows)


def dataset_options(store_path: str) -> dict[str, str]:
    shared = {p.name: str(p) for p in sorted(SHARED_DATA.glob("*/"))} if SHARED_DATA.is_dir() else {}
    return {**shared, **datasets_in_store(store_path)}


def run_form(store: Store) -> None:
    st.subheader("Start runs")
    datasets = dataset_options(str(store.path))
    with st.form("run_form"):
        cols = st.columns(2)
        dataset_name = cols[0].selectbox("Data set", list(datasets) or ["(none found)"], key="run_dataset")
        dataset_path = cols[1].text_input("or a data set folder", key="run_dataset_path",
                                          placeholder="/data/msmarco (BEIR, MS MARCO or T2Ranking layout)")
        models = st.multiselect("Models from the ladder", list(LADDER), default=DEFAULT_MODELS, key="run_models",
                                help="scratch-* rungs train on a CPU in minutes; BERT rungs need their weights")
        sizes_text = st.text_input("Data sizes D (annotated pairs)", "1000, 3000", key="run_sizes",
                                   help="comma-separated; empty: all training pairs. One run per model and size.")
        cols = st.columns(4)
        steps = cols[0].number_input("Steps", 1, 1_000_000, 300, key="run_steps")
        batch_size = cols[1].number_input("Batch size", 1, 4096, 32, key="run_batch")
        negatives = cols[2].number_input("Random negatives", 1, 4096, 64, key="run_negatives")
        eval_every = cols[3].number_input("Evaluate every", 1, 1_000_000, 100, key="run_eval_every")
        cols = st.columns(4)
        annotation = cols[0].text_input("Annotation type", "human", key="run_annotation")
        train_data = cols[1].text_input("Pseudo-annotated pairs folder", key="run_train_data",
                                        help="BEIR folder of generated pairs instead of the train split")
        seed = cols[2].number_input("Seed", 0, 2**31 - 1, 0, key="run_seed")
        label = cols[3].text_input("Label", key="run_label")
        throughput = st.number_input("Achieved TFLOP/s of this machine (for the time estimate)", 0.001, 10_000.0,
                                     0.05, format="%.3f", key="run_throughput",
                                     help="a 2-core CPU reaches about 0.05; an A100 about 80 at 25 % of peak")
        buttons = st.columns(2)
        estimate_clicked = buttons[0].form_submit_button("Estimate")
        launch_clicked = buttons[1].form_submit_button("Launch", type="primary")
    if not (estimate_clicked or launch_clicked):
        return
    try:
        if not models:
            raise InputError("choose at least one model")
        folder = dataset_path.strip() or datasets.get(dataset_name, "")
        if not folder or not Path(folder).expanduser().is_dir():
            raise InputError(f"data set folder {folder or '(none)'} does not exist; choose one or type a path")
        plan = RunPlan(folder, tuple(models), parse_data_sizes(sizes_text), annotation.strip(), train_data.strip(),
                       int(steps), int(batch_size), int(negatives), int(eval_every), int(seed), label.strip())
    except InputError as err:
        st.error(str(err))
        return
    table = estimate(plan, throughput)
    st.dataframe(table, hide_index=True)
    if table["PFLOP"].notna().any():
        st.caption(f"{len(table)} run(s), {table['PFLOP'].sum():.3g} PFLOP, at most about "
                   f"{table['minutes'].sum():.0f} minutes one after another at {throughput:g} TFLOP/s "
                   "(sequences padded to 32 query and 180 passage tokens).")
    else:
        st.caption(f"{len(table)} run(s); no FLOP estimate: `python -m engine models --json` is not available.")
    if launch_clicked:
        started = launch(plan, store)
        st.success(f"Launched {len(started)} run(s): {', '.join(started)}")


# --- the runs in the store ---------------------------------------------------------

def delete_runs(store: Store, run_ids: list[str]) -> None:
    for run_id in run_ids:
        store.delete_run(run_id)
    st.cache_data.clear()


def runs_in_store(store: Store) -> None:
    st.subheader("Runs in the store")
    everything = runs_table(str(store.path), (), (), ())
    if everything.empty:
        st.info("The store holds no runs yet: launch some above, or import results with "
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
    st.caption("Every run trains in its own process (`python -m engine train`), writes its progress to "
               f"`{runs_dir()}` and its results to the store; this page only watches.")
    store = Store()
    live_runs(store)
    run_form(store)
    runs_in_store(store)


main()
