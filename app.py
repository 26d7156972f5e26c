"""Overview: what the workbench does, what the store holds, the paper's laws and
budget answer at a glance, and where to go next. `streamlit run app.py`."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.budget import BudgetQuestion, optimise, preset_extrapolation
from engine.charts import law_chart, law_curves
from engine.errors import InputError, in_words
from engine.laws import LAW_EQUATIONS, PRESETS, preset
from engine.formatting import format_coefficient, format_count, format_loss, format_percent, format_r2
from store import Store, StoreBusyError
from store.demo import demo_state, ensure_demo, load_demo, read_demo, remove_demo

PAGES = (
    ("pages/1_Runs.py", "Runs", "Train models of the ladder on a data set, watch them learn, manage results."),
    ("pages/2_Fit_laws.py", "Fit laws", "Fit Eq. 6, 7 or 8 to runs or a CSV, with intervals and a held-out check."),
    ("pages/3_Budget_planner.py", "Budget planner", "Split a budget between annotation and model size."),
    ("pages/4_Analysis.py", "Analysis", "Contrastive entropy against ranking metrics; annotation types compared."),
    ("pages/5_Plan_runs.py", "Plan runs", "Which runs would most narrow the interval of your decision, and their cost."),
)


@st.cache_data(ttl=5, show_spinner=False)
def store_counts(store_path: str) -> dict[str, int]:
    """Rows per table; `datasets` counts the data sets the store knows, registered or
    named by a run (the demo's and imported runs name theirs without registering them)."""
    info = Store(store_path).info()
    return {**info["counts"], "datasets": len(info["dataset_names"])}


def preset_table() -> pd.DataFrame:
    return pd.DataFrame([{
        "preset": name, "law": p.law.kind, "source": p.source,
        "coefficients": ", ".join(f"{k} = {format_coefficient(v)}" for k, v in p.law.params.items()),
        "R²": format_r2(p.r2),
    } for name, p in PRESETS.items()])


def show_store(store_path: str) -> None:
    st.subheader("Your store")
    try:
        counts = store_counts(store_path)
    except (InputError, StoreBusyError) as err:
        st.error(f"Cannot read the store at {store_path}: {in_words(err)}")
        return
    cols = st.columns(3)
    for col, table, label in zip(cols, ("datasets", "runs", "fits"), ("Data sets", "Runs", "Saved fits")):
        col.metric(label, counts.get(table, 0))
    st.caption(f"Store: `{store_path}` (set `WORKBENCH_STORE` to use another file).")
    if counts.get("runs", 0) == 0:
        st.info("The store holds no runs yet. Everything below works from the paper's published fits. "
                "To add your own results: train on the **Runs** page (or `python -m engine train ...`), "
                "import a CSV with columns `n, d, loss` (`python -m store import results.csv`), "
                "or upload one on the **Fit laws** page.")


@st.cache_resource(show_spinner=False)
def first_launch(store_path: str) -> int:
    """Load the demo study into a store the app has never opened (once per server)."""
    try:
        return ensure_demo(Store(store_path))
    except (InputError, StoreBusyError):
        return 0  # the store section says what is wrong with the store


def show_demo(store_path: str) -> None:
    try:
        state = demo_state(Store(store_path))
        study, rows = read_demo()
    except (InputError, StoreBusyError):
        return
    if state == "loaded":
        with st.container(border=True):
            st.markdown(f"**Demo study loaded: {study['title']}.** {study.get('summary', '')}")
            st.caption(f"Data sets: {', '.join(study['datasets'])} · hardware: {study['hardware']} · "
                       f"date: {study['date']} · {len(rows)} runs. Reproduce with: "
                       + " then ".join(f"`{command}`" for command in study["commands"]))
            st.page_link("pages/2_Fit_laws.py", label="Fit its laws (squad-dev, human) on **Fit laws**; the full "
                         "report with extrapolation checks is docs/study/report.md")
            cols = st.columns([2, 1])
            sure = cols[0].checkbox(f"Yes, remove the demo's {len(rows)} runs (yours stay)", key="demo_remove_sure",
                                    help="Load the demo study brings them back.")
            if cols[1].button("Remove the demo study", disabled=not sure, key="demo_remove"):
                remove_demo(Store(store_path))
                st.cache_data.clear()
                st.rerun()
    elif st.button(f"Load the demo study ({study['title']})"):
        load_demo(Store(store_path))
        st.cache_data.clear()
        st.rerun()


def show_plan_check() -> None:
    """The demo's plan checked by a run: the budget planner's (N*, D*) from the demo's
    fit, the ladder rung nearest it trained on D*, the prediction against the measurement."""
    try:
        check = read_demo()[0].get("plan_check")
    except InputError:
        return
    if not check:
        return
    with st.container(border=True):
        st.markdown(f"**The plan, checked.** {check['question']}")
        cols = st.columns(4)
        lo, hi = check["n_star_interval"]
        cols[0].metric("N* (planned)", format_count(check["n_star"]),
                       help=f"95% interval over the bootstrap laws {format_count(lo)} – {format_count(hi)}")
        cols[1].metric("D* (planned)", format_count(check["d_star"]))
        cols[2].metric(f"Predicted at {check['model']}", format_loss(check["predicted"]),
                       help="calibrated contrastive entropy predicted by the fit, before the run")
        cols[3].metric("Measured", format_loss(check["measured"]),
                       delta=f"prediction off by {format_percent(check['error'])}", delta_color="off",
                       delta_arrow="off")
        pi_lo, pi_hi = check["prediction_interval"]
        verdict = "inside" if pi_lo <= check["measured"] <= pi_hi else "outside"
        st.caption(f"Trained: {check['model']} (N = {format_count(check['n'])}) on {format_count(check['d'])} pairs, a "
                   f"run the fit never saw; {check['extrapolation']}. The measurement lies {verdict} the 95% "
                   f"prediction interval {format_loss(pi_lo)} – {format_loss(pi_hi)}. {check.get('why', '')}")


def show_laws() -> None:
    st.subheader("The paper's laws at a glance")
    for kind in ("model", "data", "joint"):
        st.markdown(f"- **{kind}-size**: `{LAW_EQUATIONS[kind]}`" if kind != "joint"
                    else f"- **joint**: `{LAW_EQUATIONS[kind]}`")
    st.dataframe(preset_table(), hide_index=True, width="stretch")
    curves = pd.concat([law_curves(preset(name), "n", (3e5, 1e9)).assign(series=PRESETS[name].source)
                        for name in ("paper-msmarco-model", "paper-t2ranking-model")])
    st.altair_chart(law_chart(pd.DataFrame(), curves, "n", "Model-size law, Table 1 (Figure 1)"),
                    width="stretch")


def show_budget_example() -> None:
    st.subheader("What $20,000 buys (Section 5, the paper's costs)")
    law = preset("paper-joint")
    answers = [optimise(law, BudgetQuestion(20_000, with_inference)) for with_inference in (False, True)]
    for col, answer in zip(st.columns(2), answers):
        with col:
            st.markdown("**with inference cost** (Figure 8)" if answer.question.with_inference
                        else "**without inference cost** (Figure 7)")
            st.metric("N*", format_count(answer.n_opt), help=f"{answer.n_opt:,.0f} parameters")
            st.metric("D*", format_count(answer.d_opt), help=f"{answer.d_opt:,.0f} annotated pairs")
            st.caption(f"predicted loss {format_loss(answer.loss)}; within {format_percent(0.01)} of it for N in "
                       f"{format_count(answer.band[0])} – {format_count(answer.band[1])}")
            reach = preset_extrapolation("paper-joint", answer.n_opt, answer.d_opt)
            (st.warning if reach.beyond_warning else st.caption)(reach.describe())
    lo, hi = answers[0].band
    st.caption(f"The paper states 13B parameters for this budget without inference. Its own Eq. 9-14 give "
               f"{format_count(answers[0].n_opt)}; 13B lies {'inside' if lo <= 13e9 <= hi else 'outside'} "
               f"the {format_percent(0.01)} band, so the curve is flat there (see the README). Move any "
               "assumption on the Budget planner.")


def show_next_steps() -> None:
    st.subheader("Where to go next")
    for path, label, what in PAGES:
        st.page_link(path, label=f"**{label}** — {what}")


st.set_page_config(page_title="Scaling-law workbench", layout="wide")
st.title("Scaling-law workbench for dense retrieval")
st.markdown(
    "Train dense retrievers of several sizes on several amounts of annotated data, "
    "measure their contrastive entropy, and fit the scaling laws of Fang et al. (SIGIR 2024).  \n"
    "Fitted laws come with bootstrap intervals and a held-out check, so you can see how far to trust them.  \n"
    "Then plan: given a budget, how large a model and how many annotations?"
)
STORE_PATH = str(Store().path)
first_launch(STORE_PATH)
show_store(STORE_PATH)
show_demo(STORE_PATH)
show_plan_check()
show_budget_example()
show_laws()
show_next_steps()
