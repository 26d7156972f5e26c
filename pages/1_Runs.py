"""Runs: configure a study (models x data sizes x annotation types x seeds), estimate
it, launch it as a separate process (`python -m engine sweep FILE`), watch its runs
learn, cancel it, and manage the runs in the store. Process control lives in
engine/studies.py, engine/processes.py and engine/run_status.py; this page only draws."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from engine import processes, run_status, studies
from engine.charts import training_curve
from engine.errors import InputError, in_words
from engine.ladder import LADDER
from engine.formatting import format_count, formatted_table
from engine.paths import SHARED_DATA, runs_dir
from engine.point_selection import where_any
from engine.command_progress import active_commands
from engine.eval_protocol import describe
from store import Store
from store.results_store import RUN_STATUSES

DEFAULT_MODELS = ["scratch-L1-H32", "scratch-L2-H64"]
TABLE_COLUMNS = ["label", "status", "dataset", "annotation", "model_name", "n_params", "train_pairs",
                 "best_contrastive_entropy", "stopped_early_at", "eval_protocol", "wall_time_s", "started_at", "source",
                 "run_id"]
TABLE_FORMAT = {"label": st.column_config.TextColumn("label", width="medium"),   # long demo labels hid N, D, loss
                "model_name": st.column_config.TextColumn("model"),
                "n_params": st.column_config.TextColumn("N", help="non-embedding parameters"),
                "train_pairs": st.column_config.TextColumn("D", help="annotated training pairs"),
                "best_contrastive_entropy": st.column_config.NumberColumn("best contrastive entropy", format="%.4f"),
                "wall_time_s": st.column_config.TextColumn("seconds", help="training wall time; —: not recorded"),
                "stopped_early_at": st.column_config.TextColumn("stopped early at", help="the evaluation step whose "
                                                                "patience ran out, where the decay began; blank: "
                                                                "trained its planned steps (or not recorded)"),
                "eval_protocol": st.column_config.TextColumn("protocol", help="evaluation protocol (engine/eval_protocol.py); "
                                                             "—: not recorded"),
                "started_at": st.column_config.DatetimeColumn("started (UTC)"),
                "run_id": st.column_config.TextColumn("run id")}
NOT_RECORDED = "—"    # a protocol or wall time the run did not record (the demo study's runs, imports)
STATUSES = (*RUN_STATUSES, run_status.INTERRUPTED)
NEW_STUDY = "(a new study)"
NEW_STUDY_TRAIN = {"steps": 300, "batch_size": 32, "negatives": 64, "eval_every": 100}   # the form's own defaults
POLL_SECONDS = 2.0
JOBS_SHOWN = 5


def current_launcher() -> processes.Launcher:
    """The real launcher, unless a test put another in session state."""
    return st.session_state.get("run_launcher", processes.start_process)


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


def show_job(job: processes.Job, runs: dict[str, dict], store_path: str) -> None:
    state = job.state
    st.markdown(f"#### Study {job.name} · {state}")
    st.caption(f"sweep file `{job.sweep_file}` · log `{job.log_path}`")
    if state == "running":
        st.button("Cancel this study", key=f"cancel_{job.name}", on_click=processes.cancel, args=(job,))
    elif state.startswith("failed"):
        for run_id, reason in job.failure_reasons():
            st.error(f"{run_id}: {reason}")
        with st.expander("Last lines of the logs", expanded=not job.failed_run_ids()):
            for path, tail in job.failure_report():
                st.caption(f"last lines of `{path}`")
                st.code(tail, language=None, wrap_lines=True)
    for run_id, progress in runs.items():
        show_progress(run_id, progress, store_path)


def refresh_when_something_finished(watched: set) -> None:
    """A study or run that stopped since the last pass changed the store: drop the
    cached table and draw the whole page again."""
    before = st.session_state.get("runs_watched")
    st.session_state["runs_watched"] = watched
    if before is not None and before - watched:
        runs_table.clear()
        eval_points.clear()
        st.rerun()


def running_commands() -> None:
    """Sweeps, annotation, studies, imports and evaluations running now, from their
    progress files (engine/command_progress.py)."""
    commands = active_commands()
    if commands:
        st.markdown(f"#### Commands running now ({len(commands)})")
    for command in commands:
        done, total = command["done"], command["total"]
        text = f"{command['command']} (pid {command['pid']}): " + (
            f"{done:,} of {total:,} {command['unit']}" if total else "starting")
        if command.get("detail"):
            text += f" · {command['detail']}"
        st.progress(min(done / total, 1.0) if total else 0.0, text=text)


@st.fragment(run_every=POLL_SECONDS)
def live_runs(store_path: str) -> None:
    registry = studies.launched_jobs()   # from this page or Plan runs, any session
    active = run_status.active_runs()
    groups = {run_id: processes.process_group(p.get("pid")) for run_id, p in active.items()}
    refresh_when_something_finished(set(active) | {name for name, job in registry.items() if job.state == "running"})
    st.subheader(f"Training now ({len(active)})")
    for job in reversed(list(registry.values())[-JOBS_SHOWN:]):
        show_job(job, {r: p for r, p in active.items() if groups[r] == job.process.pid}, store_path)
    elsewhere = {r: p for r, p in active.items() if groups[r] not in {j.process.pid for j in registry.values()}}
    if elsewhere:
        st.markdown("#### Started from a shell")
        for run_id, progress in elsewhere.items():
            show_progress(run_id, progress, store_path)
    running_commands()
    if not registry and not active:
        st.caption("Nothing is training. Start a study below, or from a shell: "
                   "`python -m engine train --dataset ../shared/data/squad-dev --model scratch-L2-H64 "
                   "--train-pairs 2000 --steps 300` or `python -m engine sweep study.toml`.")


# --- planning a study ---------------------------------------------------------------

def dataset_options(store_path: str) -> dict[str, str]:
    shared = {p.name: str(p) for p in sorted(SHARED_DATA.glob("*/"))} if SHARED_DATA.is_dir() else {}
    return {**shared, **datasets_in_store(store_path)}


@st.cache_data(ttl=30, show_spinner=False)
def study_bases(store_path: str) -> dict[str, studies.StudyBase]:
    """Studies with runs in the store, most runs first (engine/studies.py)."""
    return {base.name: base for base in studies.study_bases(Store(store_path).runs())}


def form_values(base: studies.StudyBase | None, datasets: dict[str, str]) -> dict:
    """The form's fields for a study extending `base` (None: a new study, the form's
    defaults); its data set in the list when it is one of `datasets`, else as a folder."""
    if base is None:
        return {"run_name": "study", "run_dataset_path": "", "run_models": DEFAULT_MODELS, "run_sizes": "1000, 3000",
                "run_seeds": "0", "run_human": True, "run_generated": "", **{
                    f"run_{key}": value for key, value in NEW_STUDY_TRAIN.items()}}
    grid, train = base.spec["grid"], base.train
    annotations = grid.get("annotations", ["human"])
    listed = {str(Path(folder).resolve()): name for name, folder in datasets.items() if folder}
    folder = str(Path(train["dataset"]).resolve())
    place = {"run_dataset": listed[folder], "run_dataset_path": ""} if folder in listed else \
        {"run_dataset_path": train["dataset"]}
    return {"run_name": base.name, **place,
            "run_models": [m for m in grid["models"] if m in LADDER],
            "run_sizes": ", ".join(map(str, grid.get("train_pairs", ["all"]))),
            "run_seeds": ", ".join(str(seed) for seed in grid.get("seeds", [0])), "run_human": "human" in annotations,
            "run_generated": "\n".join(f"{kind} = {folder}" for kind, folder in base.spec.get("annotation_data", {}).items()),
            **{f"run_{key}": train.get(key, value) for key, value in NEW_STUDY_TRAIN.items()}}


def chosen_base(store_path: str, datasets: dict[str, str]) -> studies.StudyBase | None:
    """The study the form extends (default: the one with most runs in the store); its
    settings go into the form's fields whenever the choice changes."""
    bases = study_bases(store_path)
    options = [*bases, NEW_STUDY]
    choice = st.selectbox("Extend a study", options, key="run_base",
                          format_func=lambda name: name if name == NEW_STUDY else
                          f"{name} ({bases[name].runs} runs, protocol {bases[name].protocol or 'not recorded'})",
                          help="A study's runs are one curve only if they were trained and evaluated alike: "
                               "extending a study keeps its settings (lengths, evaluation, negatives).")
    base = bases.get(choice)
    if st.session_state.get("run_base_applied") != choice:
        st.session_state.update(form_values(base, datasets), run_base_applied=choice)
    if base is None:
        st.caption("A new study with the engine's default evaluation (10 repeats, 180-token passages): its runs "
                   "get a protocol of their own and join no curve already in the store.")
    else:
        kept = ", ".join(f"{k} = {v}" for k, v in studies.inherited_settings(base).items()) or "none"
        joins = "so they are measured as its runs were and join its curves" if base.current else \
            "as its sweep files now say"
        st.caption(f"Extends **{base.describe()}**. New runs keep its other training and evaluation settings "
                   f"({kept}), {joins}.")
        if base.stale():
            st.warning(base.stale())
    return base


def study_form(store: Store) -> None:
    st.subheader("Start a study")
    datasets = dataset_options(str(store.path))
    base = chosen_base(str(store.path), datasets)
    with st.form("run_form"):
        cols = st.columns([1, 1, 2])
        name = cols[0].text_input("Study name", key="run_name",
                                  help="runs of a study relaunched under the same name and settings are not repeated")
        dataset_name = cols[1].selectbox("Data set", list(datasets) or ["(none found)"], key="run_dataset")
        dataset_path = cols[2].text_input("or a data set folder", key="run_dataset_path",
                                          placeholder="/data/msmarco (BEIR, MS MARCO or T2Ranking layout)")
        models = st.multiselect("Models from the ladder", list(LADDER), key="run_models",
                                help="scratch-* rungs train on a CPU in minutes; BERT rungs download their weights")
        cols = st.columns(2)
        sizes = cols[0].text_input("Data sizes D (annotated pairs)", key="run_sizes",
                                   help="comma-separated; all: every training pair (empty: only that)")
        seeds = cols[1].text_input("Seeds", key="run_seeds", help="one run per seed, e.g. 0, 1, 2")
        cols = st.columns([1, 3])
        with_human = cols[0].checkbox("Human annotations", key="run_human", help="the data set's own training pairs")
        generated = cols[1].text_area("Generated annotations, one TYPE = FOLDER per line", key="run_generated",
                                      height=68, placeholder="ict = annotations/squad-ict")
        cols = st.columns(5)
        steps = cols[0].number_input("Steps", 1, 1_000_000, key="run_steps")
        batch_size = cols[1].number_input("Batch size", 1, 4096, key="run_batch_size")
        negatives = cols[2].number_input("Random negatives", 1, 4096, key="run_negatives")
        eval_every = cols[3].number_input("Evaluate every", 1, 1_000_000, key="run_eval_every")
        parallel = cols[4].number_input("Runs at once", 1, os.cpu_count() or 1, 1, key="run_parallel")
        buttons = st.columns(6)
        estimate_clicked = buttons[0].form_submit_button("Estimate")
        launch_clicked = buttons[1].form_submit_button("Launch", type="primary")
    if not (estimate_clicked or launch_clicked):
        return
    try:
        study = studies.study_from_form(name, dataset_path.strip() or datasets.get(dataset_name, ""), models, sizes,
                                     seeds, with_human, generated, steps, batch_size, negatives, eval_every,
                                     studies.inherited_settings(base))
        if estimate_clicked:
            with st.spinner("Estimating with `python -m engine sweep --dry-run` (checks the data, "
                            "measures this machine's speed) ..."):
                st.code(studies.estimate_spec(study.spec()), language=None)
            return
        sweep = studies.new_sweep_file(study.spec())
    except InputError as err:
        st.error(in_words(err))
        return
    job = studies.launch_sweep(sweep.path, store.path, int(parallel), current_launcher())
    st.success(f"Launched study {job.name}: {study.runs} run(s), {int(parallel)} at a time. "
               "Progress appears above.")


# --- the runs in the store ---------------------------------------------------------

def delete_runs(store: Store, run_ids: list[str]) -> None:
    for run_id in run_ids:
        store.delete_run(run_id)
    st.cache_data.clear()


def show_interrupted(runs: pd.DataFrame) -> None:
    interrupted = run_status.interrupted_runs(runs)
    if not interrupted:
        return
    st.warning(f"{len(interrupted)} run(s) interrupted: their process is gone. Launch the same study again (or "
               "rerun the run's `python -m engine train` command) and each resumes from its last checkpoint: "
               + ", ".join(f"{r['run_id']} (step {r['step'] or 0}, resumes from {r['resumes_from_step']})"
                           for r in interrupted))


def short_label(label, source, run_id: str) -> str | None:
    """A run's label as the table shows it: a demo row by its id in the demo study (every
    demo label starts with the same title, which the caption names once)."""
    return studies.original_run_id(run_id, label, source) if source == "demo" else label


def runs_display(runs: pd.DataFrame) -> pd.DataFrame:
    """The table's columns as text, newest run first: N and D as counts, seconds whole,
    NOT_RECORDED where a run has none, demo labels by their run's id in the demo."""
    runs = runs.sort_values("started_at", ascending=False, na_position="last", kind="stable")
    runs = runs.assign(label=[short_label(lab, src, r) for lab, src, r in zip(runs["label"], runs["source"],
                                                                               runs["run_id"])])
    table = formatted_table(runs[[c for c in TABLE_COLUMNS if c in runs]], counts=("n_params", "train_pairs"))
    writers = {"eval_protocol": str, "wall_time_s": lambda seconds: f"{seconds:,.0f}"}
    table = table.assign(**{c: [NOT_RECORDED if pd.isna(v) else write(v) for v in table[c]]
                            for c, write in writers.items() if c in table})
    if "stopped_early_at" in table:
        table = table.assign(stopped_early_at=["" if pd.isna(step) else f"step {step:,.0f}"
                                               for step in table["stopped_early_at"]])
    return table


def demo_note(runs: pd.DataFrame) -> str:
    demo = runs.loc[runs["source"] == "demo", "label"].dropna()
    if demo.empty:
        return ""
    title = demo.iloc[0].rsplit(" / ", 1)[0].removeprefix("demo: ")
    return f" The {len(demo)} demo runs, labelled by their id in the demo study, are from the study “{title}”."


def not_recorded_note(runs: pd.DataFrame) -> str:
    """Which of the table's recorded-or-not columns are missing, for how many runs, from where."""
    parts = []
    for column, what in (("eval_protocol", "no evaluation protocol"), ("wall_time_s", "no training time")):
        missing = runs[column].isna() if column in runs else pd.Series(False, index=runs.index)
        if missing.any():
            sources = ", ".join(sorted(runs.loc[missing, "source"].dropna().astype(str).unique())) or "unknown"
            parts.append(f"{int(missing.sum())} run(s) carry {what} (source: {sources})")
    return f"{NOT_RECORDED}: not recorded. " + "; ".join(parts) + "." if parts else ""


def runs_in_store(store: Store) -> None:
    st.subheader("Runs in the store")
    everything = run_status.with_live_status(runs_table(str(store.path), (), (), ()))
    if everything.empty:
        st.info("The store holds no runs yet: launch a study above, or import results with "
                "`python -m store import results.csv` (columns n, d, loss).")
        return
    cols = st.columns(3)
    dataset = cols[0].multiselect("Data set", sorted(everything["dataset"].dropna().unique()), key="runs_dataset")
    annotation = cols[1].multiselect("Annotation", sorted(everything["annotation"].dropna().unique()),
                                     key="runs_annotation")
    status = cols[2].multiselect("Status", list(STATUSES), key="runs_status")
    runs = run_status.with_live_status(runs_table(str(store.path), tuple(dataset), tuple(annotation), ()))
    runs = where_any(runs, "status", status)
    show_interrupted(runs)
    st.dataframe(runs_display(runs), hide_index=True, column_config=TABLE_FORMAT)
    st.caption(f"{len(runs)} of {len(everything)} runs, newest first." + demo_note(runs))
    if note := not_recorded_note(runs):
        st.caption(note)
    if "eval_fingerprint" in runs:
        protocols = {p: describe(f) for p, f in zip(runs["eval_protocol"], runs["eval_fingerprint"]) if f}
        st.caption("Evaluation protocols: " + "; ".join(f"{p}: {d}" for p, d in sorted(protocols.items()))
                   if protocols else "No run here records its evaluation protocol.")
    with st.expander("Delete runs"):
        names = {r.run_id: f"{short_label(r.label, r.source, r.run_id) or r.run_id} · N {format_count(r.n_params)} · "
                           f"D {format_count(r.train_pairs)} · {r.status}" for r in runs.itertuples()}
        doomed = st.multiselect("Runs to delete", list(names), format_func=names.get, key="runs_delete")
        sure = st.checkbox(f"Yes, delete {len(doomed)} run(s) and their evaluation points", key="runs_delete_sure",
                           disabled=not doomed)
        st.button("Delete", key="runs_delete_button", disabled=not (doomed and sure), on_click=delete_runs,
                  args=(store, doomed))


def tracker_import_form(store: Store) -> None:
    """Runs logged by TensorBoard, MLflow or W&B into the store (store/trackers.py): preview, then import."""
    from store.trackers import KINDS, TrackerMapping, import_runs, preview

    with st.expander("Import runs from TensorBoard, MLflow or W&B"), st.form("tracker_form"):
        cols = st.columns([3, 1])
        path = cols[0].text_input("Folder or file", key="tracker_path",
                                  placeholder="TensorBoard log folder, mlruns/, mlflow.db, or W&B export folder")
        kind = cols[1].selectbox("Tracker", ["auto", *KINDS], key="tracker_kind")
        cols = st.columns(3)
        loss = cols[0].text_input("Metric that is the contrastive entropy", key="tracker_loss", placeholder="eval/ce")
        n = cols[1].text_input("Parameter holding N (or N)", key="tracker_n", placeholder="n_params")
        d = cols[2].text_input("Parameter holding D (or D)", key="tracker_d", placeholder="train_pairs")
        cols = st.columns(3)
        mrr = cols[0].text_input("Metric that is MRR@10 (optional)", key="tracker_mrr")
        dataset = cols[1].text_input("Data set", "imported", key="tracker_dataset")
        annotation = cols[2].text_input("Annotation", "human", key="tracker_annotation")
        buttons = st.columns(6)
        preview_clicked = buttons[0].form_submit_button("Preview")
        import_clicked = buttons[1].form_submit_button("Import", type="primary")
    if not (preview_clicked or import_clicked):
        return
    mapping = TrackerMapping(loss=loss.strip(), n=n.strip(), d=d.strip(), metrics={"mrr@10": mrr.strip()} if mrr.strip()
                             else {}, dataset=dataset.strip(), annotation=annotation.strip())
    try:
        rows = (import_runs if import_clicked else preview)(store, path.strip(), mapping, kind)
    except InputError as err:
        st.error(in_words(err))
        return
    st.dataframe(pd.DataFrame(rows)[["action", "name", "n", "d", "points", "best_loss", "problem", "run_id"]],
                 hide_index=True)
    if import_clicked:
        st.cache_data.clear()
        st.success(f"Imported {sum(r['action'] != 'skip' for r in rows)} of {len(rows)} run(s); "
                   "importing the same runs again updates them.")


def main() -> None:
    st.set_page_config(page_title="Runs · Scaling-law workbench", layout="wide")
    st.title("Runs")
    st.caption("A study runs in its own process (`python -m engine sweep`), one training process per run; "
               f"progress files go to `{runs_dir()}`, results to the store. This page only watches.")
    store = Store()
    live_runs(str(store.path))
    study_form(store)
    runs_in_store(store)
    tracker_import_form(store)


main()
