"""Plan runs: which runs of the ladder would most narrow the interval of the decision
(N* at a budget, or the prediction at a target N and D), ranked with their expected
gain and cost, and a button that launches them as a sweep through engine/jobs.py,
the same job code as the Runs page. The method is engine/plan_runs.py's."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from engine import jobs
from engine.budget import BudgetQuestion
from engine.charts import law_fit_from_record
from engine.errors import InputError
from engine.laws import LawFit
from engine.numbers import formatted_table
from engine.paths import SHARED_DATA
from engine.plan_runs import (FAMILIES, Hardware, PlanConfig, PlanTarget, RunSettings, candidates, data_sizes,
                              fit_store_runs, ladder_rungs, plan_runs, plan_spec, sweep_name)
from store import Store

FROM_RUNS = "fit Eq. 8 to the store's runs now"
TABLE_FORMAT = {"n": st.column_config.TextColumn("N", help="parameters"),
                "d": st.column_config.TextColumn("D", help="annotated training pairs"),
                "expected_gain": st.column_config.NumberColumn("expected gain (decades)", format="%.4f"),
                "width_after": st.column_config.NumberColumn("width after (decades)", format="%.3f"),
                "cost": st.column_config.NumberColumn("cost (GPU-hours)", format="%.3g")}


def current_launcher() -> jobs.Launcher:
    """The real launcher, unless a test put another in session state."""
    return st.session_state.get("run_launcher", jobs.start_process)


@st.cache_data(ttl=5, show_spinner=False)
def law_sources(store_path: str) -> dict[str, str]:
    """Choice label -> saved joint fit id ('' for a fresh fit to the store's runs)."""
    fits = Store(store_path).fits()
    joint = fits[fits["law"] == "joint"] if len(fits) else fits
    return {FROM_RUNS: "", **{f"{row.name or 'fit'} [{row.fit_id[:6]}]": row.fit_id for row in joint.itertuples()}}


@st.cache_data(show_spinner="Fitting Eq. 8 with its bootstrap ...")
def load_fit(store_path: str, fit_id: str, dataset: str, bootstrap: int) -> LawFit:
    store = Store(store_path)
    if fit_id:
        record = store.fit(fit_id)
        if record is None:
            raise InputError(f"the saved fit {fit_id} is no longer in the store")
        return law_fit_from_record(record)
    return fit_store_runs(store, dataset, bootstrap)


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


def plan_form(store: Store) -> dict | None:
    datasets = datasets_with_runs(str(store.path))
    with st.form("plan"):
        left, right = st.columns(2)
        source = left.selectbox("Fitted law", list(law_sources(str(store.path))))
        dataset = right.selectbox("Data set (runs in the store)", list(datasets))
        folder = st.text_input("Data set folder (its train pairs bound D; empty: the data set's)", "")
        kind = st.radio("Decision", ["N* at a budget", "prediction at a target N, D"], horizontal=True)
        a, b, c = st.columns(3)
        budget = a.number_input("Budget ($)", min_value=1.0, value=10_000.0, step=1_000.0)
        target_n = b.number_input("Target N", min_value=1.0, value=1e7, format="%g")
        target_d = c.number_input("Target D", min_value=1.0, value=1e4, format="%g")
        a, b, c = st.columns(3)
        family = a.selectbox("Ladder family", FAMILIES, index=FAMILIES.index("scratch"))
        d_points = b.number_input("Data sizes", 2, 20, 6)
        experiment = c.number_input("Experiment budget (GPU-hours, 0: half of every candidate)", 0.0, value=0.0)
        a, b, c, d, e = st.columns(5)
        peak = a.number_input("Peak TFLOP/s", 0.001, value=0.418, format="%g", help="0.418: the development CPU, bf16")
        mfu = b.number_input("MFU", 0.01, 1.0, 0.4)
        steps = c.number_input("Steps", 1, value=400)
        batch = d.number_input("Batch", 1, value=32)
        negatives = e.number_input("Negatives", 1, value=64)
        if not st.form_submit_button("Plan", type="primary"):
            return st.session_state.get("plan_inputs")
    inputs = dict(source=source, dataset=dataset, folder=folder.strip() or datasets[dataset], kind=kind,
                  budget=budget, target_n=target_n, target_d=target_d, family=family, d_points=int(d_points),
                  experiment=experiment or None, peak=peak * 1e12, mfu=mfu, steps=int(steps), batch=int(batch),
                  negatives=int(negatives))
    st.session_state["plan_inputs"] = inputs
    return inputs


def make_plan(store: Store, inputs: dict):
    fit = load_fit(str(store.path), law_sources(str(store.path))[inputs["source"]], inputs["dataset"], 200)
    available = available_pairs(inputs["folder"])
    settings = RunSettings(inputs["steps"], inputs["batch"], inputs["negatives"], 32, 96)
    smallest = int(fit.points["d"].min()) if "d" in fit.points and len(fit.points) else 500
    cands = candidates(ladder_rungs(inputs["family"]), data_sizes(available, smallest, inputs["d_points"]),
                       settings, Hardware(inputs["peak"], inputs["mfu"]))
    target = (PlanTarget(BudgetQuestion(inputs["budget"])) if inputs["kind"].startswith("N*")
              else PlanTarget(n=inputs["target_n"], d=inputs["target_d"]))
    plan = plan_runs(fit, target, cands, PlanConfig(experiment_budget=inputs["experiment"]))
    return plan, settings, available


def show_plan(store: Store, plan, settings: RunSettings, available: int, folder: str) -> None:
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
    if st.button("Launch this plan as a sweep", type="primary"):
        spec = plan_spec(plan, Path(folder), sweep_name(Path("plan")), settings, available)
        sweep = jobs.new_sweep_file(spec)
        job = jobs.launch_sweep(sweep.path, store.path, 1, current_launcher())
        st.session_state["plan_job"] = {"sweep": str(sweep.path), "log": str(job.log_path), "pid": job.process.pid}
    if "plan_job" in st.session_state:
        launched = st.session_state["plan_job"]
        st.info(f"Launched {launched['sweep']} (log {launched['log']}); its runs appear on the Runs page.")


def main() -> None:
    st.set_page_config(page_title="Plan runs · Scaling-law workbench", layout="wide")
    st.title("Plan runs")
    st.write("Which runs would most narrow the interval of your decision? Each candidate's outcome is "
             "simulated under every bootstrap law of the fit; the runs are chosen greedily by the expected "
             "narrowing per GPU-hour, as a models x data sizes grid that a sweep runs as it is.")
    store = Store()
    inputs = plan_form(store)
    if not inputs:
        return
    try:
        plan, settings, available = make_plan(store, inputs)
    except InputError as err:
        st.error(str(err))
        return
    show_plan(store, plan, settings, available, inputs["folder"])


main()
