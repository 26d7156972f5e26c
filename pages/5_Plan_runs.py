"""Plan runs: which runs of the ladder would most narrow the interval of the decision
(N* at a budget, or the prediction at a target N and D), ranked with their expected
gain and cost, and a button that launches them as a sweep through engine/studies.py,
the same job code as the Runs page. The method is engine/plan_runs.py's."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from engine import processes, studies
from engine.budget import BudgetQuestion
from engine.charts import law_fit_from_record
from engine.errors import InputError, in_words
from engine.laws import LawFit
from engine.formatting import formatted_table
from engine.paths import SHARED_DATA
from engine.plan_runs import (FAMILIES, Hardware, PlanConfig, PlanTarget, RunSettings, candidates, data_sizes,
                              fit_store_runs, ladder_rungs, plan_runs, plan_spec, store_points,
                              sweep_name)
from engine.point_selection import of_protocol, protocol_groups, where_any
from store import Store

FROM_RUNS = "fit Eq. 8 to the store's runs now"
METRIC_NAMES = {"raw": "raw contrastive entropy (the paper's)", "calibrated": "calibrated contrastive entropy"}
TABLE_FORMAT = {"n": st.column_config.TextColumn("N", help="parameters"),
                "d": st.column_config.TextColumn("D", help="annotated training pairs"),
                "expected_gain": st.column_config.NumberColumn("expected gain (decades)", format="%.4f"),
                "width_after": st.column_config.NumberColumn("width after (decades)", format="%.3f"),
                "cost": st.column_config.NumberColumn("cost (GPU-hours)", format="%.3g")}


def current_launcher() -> processes.Launcher:
    """The real launcher, unless a test put another in session state."""
    return st.session_state.get("run_launcher", processes.start_process)


@st.cache_data(ttl=5, show_spinner=False)
def law_sources(store_path: str) -> dict[str, str]:
    """Choice label -> saved joint fit id ('' for a fresh fit to the store's runs)."""
    fits = Store(store_path).fits()
    joint = where_any(fits, "law", ["joint"])
    return {FROM_RUNS: "", **{f"{row.name or 'fit'} [{row.fit_id[:6]}]": row.fit_id for row in joint.itertuples()}}


@st.cache_data(show_spinner=False)
def load_fit(store_path: str, fit_id: str, dataset: str, bootstrap: int, metric: str, protocol: str | None) -> LawFit:
    store = Store(store_path)
    if fit_id:
        record = store.fit(fit_id)
        if record is None:
            raise InputError(f"the saved fit {fit_id} is no longer in the store")
        return law_fit_from_record(record)
    return fit_store_runs(store, dataset, bootstrap, metric=metric, protocol=protocol)


@st.cache_data(show_spinner=False)
def available_pairs(folder: str) -> int:
    from engine.data import load_retrieval_data

    return len(load_retrieval_data(folder).pairs("train"))


@st.cache_data(ttl=5, show_spinner=False)
def datasets_with_runs(store_path: str) -> dict[str, str]:
    """Data set -> its folder (as registered, else under ../shared/data), most runs first."""
    store = Store(store_path)
    counts = store.law_points()["dataset"].value_counts()
    registered = store.datasets()
    folders = dict(zip(registered["name"], registered["path"])) if len(registered) else {}
    names = list(counts.index) or ["squad-dev"]
    return {name: str(folders.get(name) or SHARED_DATA / name) for name in names}


@st.cache_data(ttl=5, show_spinner=False)
def points_of(store_path: str, dataset: str, metric: str) -> pd.DataFrame:
    try:
        return store_points(Store(store_path), dataset, metric=metric)
    except InputError:
        return pd.DataFrame()


@st.cache_data(ttl=30, show_spinner=False)
def study_bases(store_path: str) -> list[studies.StudyBase]:
    return studies.study_bases(Store(store_path).runs())


def law_choice(store: Store) -> dict:
    """The law to plan with: a saved joint fit, or Eq. 8 fitted now to one data set's runs
    of one metric and one evaluation protocol group (as the Fit laws page groups them);
    and the study the planned runs extend (the one those runs belong to)."""
    datasets = datasets_with_runs(str(store.path))
    left, right = st.columns(2)
    source = left.selectbox("Fitted law", list(law_sources(str(store.path))), key="plan_source")
    dataset = right.selectbox("Data set (runs in the store)", list(datasets), key="plan_dataset")
    choice = {"source": source, "dataset": dataset, "folder": datasets[dataset], "metric": "raw", "protocol": None}
    if source != FROM_RUNS:
        fit = load_fit(str(store.path), law_sources(str(store.path))[source], dataset, 0, "raw", None)
        run_ids = fit.points["run_id"] if "run_id" in fit.points else []
        return {**choice, "base": studies.base_of_runs(study_bases(str(store.path)), run_ids)}
    left, right = st.columns([1, 2])
    choice["metric"] = left.selectbox("Metric", list(METRIC_NAMES), format_func=METRIC_NAMES.get, key="plan_metric")
    points = points_of(str(store.path), dataset, choice["metric"])
    if points.empty:
        st.info(f"No completed human runs of {dataset} better than a random scorer"
                + (" with a calibrated entropy" if choice["metric"] == "calibrated" else "")
                + ": train some on the **Runs** page, or plan with a saved fit.")
        return {**choice, "base": None}
    groups = protocol_groups(points).set_index("protocol")
    choice["protocol"] = right.selectbox(
        "Evaluation protocol", list(groups.index), key=f"plan_protocol_{dataset}_{choice['metric']}",
        format_func=lambda p: f"{p} ({groups.at[p, 'points']} runs): {groups.at[p, 'description']}",
        help="Runs measured differently are not one curve: Eq. 8 is fitted to one protocol's runs.")
    chosen = of_protocol(points, choice["protocol"])
    base = studies.base_of_runs(study_bases(str(store.path)), chosen["run_id"])
    st.caption(f"Eq. 8 is fitted to the {len(chosen)} runs of protocol {choice['protocol']} "
               "(runs no better than a random scorer left out). "
               + (f"Planned runs extend **{base.describe()}** and keep its settings"
                  + (", so they join its curves." if base.current else ".")
                  if base else "No study file in the store made these runs: planned runs use the engine's "
                                "default evaluation, a protocol of their own."))
    if base and base.stale():
        st.warning(base.stale())
    return {**choice, "base": base}


def plan_form(choice: dict) -> dict | None:
    base = choice["base"]
    train = base.train if base else {}
    tag = base.name if base else "new"   # a study's own defaults in the fields when the study changes
    with st.form("plan"):
        folder = st.text_input("Data set folder (its train pairs bound D; empty: the data set's)", "")
        kind = st.radio("Decision", ["N* at a budget", "prediction at a target N, D"], horizontal=True)
        a, b, c = st.columns(3)
        budget = a.number_input("Budget ($)", min_value=1.0, value=10_000.0, step=1_000.0, key="plan_budget")
        target_n = b.number_input("Target N", min_value=1.0, value=1e7, format="%g")
        target_d = c.number_input("Target D", min_value=1.0, value=1e4, format="%g")
        a, b, c = st.columns(3)
        family = a.selectbox("Ladder family", FAMILIES, index=FAMILIES.index("scratch"))
        d_points = b.number_input("Data sizes", 2, 20, 6)
        experiment = c.number_input("Experiment budget (GPU-hours, 0: half of every candidate)", 0.0, value=0.0)
        a, b, c, d, e = st.columns(5)
        peak = a.number_input("Peak TFLOP/s", 0.001, value=0.418, format="%g", help="0.418: the development CPU, bf16")
        mfu = b.number_input("MFU", 0.01, 1.0, 0.4)
        steps = c.number_input("Steps", 1, value=int(train.get("steps", 400)), key=f"plan_steps_{tag}")
        batch = d.number_input("Batch", 1, value=int(train.get("batch_size", 32)), key=f"plan_batch_{tag}")
        negatives = e.number_input("Negatives", 1, value=int(train.get("negatives", 64)), key=f"plan_negatives_{tag}")
        if not st.form_submit_button("Plan", type="primary"):
            kept = st.session_state.get("plan_inputs")
            same = kept and all(kept[k] == choice[k] for k in ("source", "dataset", "metric", "protocol"))
            return kept if same else None
    defaults = RunSettings()
    settings = RunSettings(int(steps), int(batch), int(negatives),
                           int(train.get("max_query_length", defaults.max_query_length)),
                           int(train.get("max_passage_length", defaults.max_passage_length)))
    inputs = dict(choice, folder=folder.strip() or choice["folder"], kind=kind, budget=budget, target_n=target_n,
                  target_d=target_d, family=family, d_points=int(d_points), experiment=experiment or None,
                  peak=peak * 1e12, mfu=mfu, settings=settings)
    st.session_state["plan_inputs"] = inputs
    return inputs


def make_plan(store: Store, inputs: dict):
    with st.spinner("Fitting Eq. 8 with 200 bootstrap refits ..."):
        fit = load_fit(str(store.path), law_sources(str(store.path))[inputs["source"]], inputs["dataset"], 200,
                       inputs["metric"], inputs["protocol"])
    available = available_pairs(inputs["folder"])
    settings = inputs["settings"]
    smallest = int(fit.points["d"].min()) if "d" in fit.points and len(fit.points) else 500
    cands = candidates(ladder_rungs(inputs["family"]), data_sizes(available, smallest, inputs["d_points"]),
                       settings, Hardware(inputs["peak"], inputs["mfu"]))
    target = (PlanTarget(BudgetQuestion(inputs["budget"])) if inputs["kind"].startswith("N*")
              else PlanTarget(n=inputs["target_n"], d=inputs["target_d"]))
    plan = plan_runs(fit, target, cands, PlanConfig(experiment_budget=inputs["experiment"]))
    return plan, settings, available


def launch(store: Store, plan, settings: RunSettings, available: int, inputs: dict) -> None:
    """The plan as a sweep, a job of engine/processes.py: the Runs page shows it and can cancel it."""
    base = inputs["base"]
    name = base.name if base else sweep_name(Path("plan"))
    spec = plan_spec(plan, Path(inputs["folder"]), name, settings, available,
                     inherited=studies.inherited_settings(base))
    sweep = studies.new_sweep_file(spec)
    job = studies.launch_sweep(sweep.path, store.path, 1, current_launcher())
    st.session_state["plan_job"] = {"sweep": str(sweep.path), "log": str(job.log_path), "name": job.name}


def show_plan(store: Store, plan, settings: RunSettings, available: int, inputs: dict) -> None:
    a, b, c = st.columns(3)
    a.metric("Interval width now (decades)", f"{plan.width_now:.3f}")
    b.metric("Expected after the plan", f"{plan.width_after:.3f}")
    c.metric("Cost (GPU-hours)", f"{plan.total_cost:.3g}")
    if plan.stop_reason:
        st.warning(plan.message())
    else:
        st.success(plan.message())
    st.caption(f"Every run of the ladder, each once, would leave a width of {plan.ladder_width:.3f}; "
               f"{plan.laws} bootstrap laws, run noise {plan.noise:.3g} in log L.")
    table = plan.table()
    columns = ["rank", "model", "n", "d", "expected_gain", "width_after", "cost", "measured"]
    st.dataframe(formatted_table(table[columns], counts=("n", "d")), hide_index=True, column_config=TABLE_FORMAT)
    if not plan.runs:
        return
    if st.button("Launch this plan as a sweep", type="primary", key="plan_launch"):
        launch(store, plan, settings, available, inputs)
    if "plan_job" in st.session_state:
        launched = st.session_state["plan_job"]
        st.info(f"Launched study {launched['name']} ({launched['sweep']}, log {launched['log']}): watch it, "
                "or cancel it, on the **Runs** page.")


def main() -> None:
    st.set_page_config(page_title="Plan runs · Scaling-law workbench", layout="wide")
    st.title("Plan runs")
    st.write("Which runs would most narrow the interval of your decision? Each candidate's outcome is "
             "simulated under every bootstrap law of the fit; the runs are chosen greedily by the expected "
             "narrowing per GPU-hour, as a models x data sizes grid that a sweep runs as it is.")
    store = Store()
    choice = law_choice(store)
    inputs = plan_form(choice)
    if not inputs:
        return
    try:
        plan, settings, available = make_plan(store, inputs)
    except InputError as err:
        st.error(f"Cannot plan runs: {in_words(err)}")
        return
    show_plan(store, plan, settings, available, inputs)


main()
