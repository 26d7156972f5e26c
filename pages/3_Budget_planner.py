"""Budget planner (the paper's Section 5): the model size N* and data size D* that a
budget buys, with the near-optimal band, under cost assumptions the user can move.
Every control is bound to the URL, so a scenario is shared by sharing the link."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import streamlit as st

from engine.budget import (BudgetAnswer, BudgetQuestion, CostAssumptions, DecisionUncertainty, Extrapolation,
                           budget_curves, decision_uncertainty, extrapolation, law_identity, optimise, plan_record,
                           preset_extrapolation, preset_support, store_hardware)
from engine.charts import budget_chart, law_fit_from_record, optima_table
from engine.point_selection import where_any
from engine.errors import InputError, in_words
from engine.laws import JOINT_KINDS, PRESETS, LawFit, ScalingLaw
from engine.formatting import format_count, format_loss, format_percent, format_r2
from store import Store

PAPER = CostAssumptions()
BUDGETS = [m * 10 ** e for e in range(2, 8) for m in (1, 2, 5)]   # $100 ... $50M, 1-2-5 steps
COMPARE_DEFAULT = [5_000, 50_000, 500_000]
JOINT_PRESETS = [name for name, p in PRESETS.items() if p.law.kind in JOINT_KINDS]
OWN_DEVICE = "Price compute on the device of this store's runs"


@dataclass(frozen=True)
class CostControl:
    """One cost assumption as a widget; widget value x `scale` = the field's value."""

    field: str
    label: str
    maximum: float
    step: float
    scale: float = 1.0
    slider: bool = True
    help: str = ""
    floor: float | None = None    # the smallest value, when one step is too coarse for it
    format: str | None = None     # number_input's printf format, to show values below one step

    @property
    def minimum(self) -> float:
        """Above 0 (one step unless `floor` says): every cost of Eq. 12-14 is a positive number."""
        return self.step if self.floor is None else self.floor

    @property
    def key(self) -> str:
        return self.field if self.scale == 1.0 else f"{self.field}_scaled"

    @property
    def default(self) -> float:
        value = getattr(PAPER, self.field) / self.scale
        return int(value) if isinstance(self.step, int) else float(value)


COST_CONTROLS = (
    CostControl("price_per_pair", "Price per annotated pair ($)", 5.0, 0.01,
                help="Z_data (Eq. 12): the paper assumes $0.6 per human-annotated pair"),
    CostControl("gpu_price_per_hour", "GPU price ($ per hour)", 20.0, 0.01,
                help="The paper: an A100 80G in the cloud at $3.93/h"),
    CostControl("peak_flops", "Peak TFLOP/s per GPU", 2000.0, 1.0, scale=1e12,
                help="The paper: A100 bf16 peak, 312 TFLOP/s"),
    CostControl("utilisation", "Utilisation (achieved / peak)", 1.0, 0.01,
                help="The paper assumes 25 % of peak"),
    CostControl("steps", "Training steps", 1_000_000, 100, slider=False),
    CostControl("batch_size", "Batch size (queries per step)", 65_536, 1, slider=False),
    CostControl("query_tokens", "Tokens per query", 2_048, 1, slider=False),
    CostControl("passage_tokens", "Tokens per passage", 8_192, 1, slider=False),
    CostControl("passages_per_query", "Passages per query (positive + negatives)", 1_024, 1, slider=False),
    CostControl("train_flops_per_token", "Training FLOPs per parameter and token", 100.0, 1.0, slider=False,
                help="6 N per token: forward and backward"),
    CostControl("infer_flops_per_token", "Inference FLOPs per parameter and token", 100.0, 1.0, slider=False,
                help="2 N per token: forward only"),
    CostControl("corpus_pages", "Corpus size (billion pages)", 1e6, 1.0, scale=1e9, slider=False, floor=0.001,
                format="%.3f", help="Pages encoded once at inference; the paper: Google's index, 30 trillion "
                                    "(30000); MS MARCO's 8.8 million passages: 0.009"),
    CostControl("tokens_per_page", "Tokens per page", 100_000, 1, slider=False),
)


@st.cache_data(ttl=5, show_spinner=False)
def saved_joint_fits(store_path: str) -> dict[str, str]:
    """fit_id -> how the law selector (and so the URL) names every saved joint fit."""
    fits = Store(store_path).fits()
    joint = where_any(fits, "law", JOINT_KINDS)   # Eq. 8 or the additive form
    return {row.fit_id: f"{row.name or 'fit'} [{row.fit_id[:6]}]" for row in joint.itertuples()}


@st.cache_data(show_spinner=False)
def saved_fit(store_path: str, fit_id: str) -> LawFit:
    record = Store(store_path).fit(fit_id)
    if record is None:
        raise InputError(f"the saved fit {fit_id} is no longer in the store")
    return law_fit_from_record(record)


@st.cache_data(show_spinner=False)
def saved_fit_origin(store_path: str, fit_id: str) -> dict:
    """Where a saved fit came from (the Fit page's data set, metric, protocol, date) and when it was saved."""
    record = Store(store_path).fit(fit_id) or {}
    saved = record.get("created_at")
    return {**((record.get("config") or {}).get("origin") or {}), "fit_id": fit_id, "name": record.get("name"),
            "saved_at": None if saved is None else str(saved)}


def reset_costs() -> None:
    """The paper's values in every cost widget. Set, not dropped: a URL-bound widget whose
    state is dropped reloads its old value from the URL; one set to its default takes its
    parameter out of the URL."""
    for control in COST_CONTROLS:
        st.session_state[control.key] = control.default


def cost_widget(control: CostControl) -> float:
    common = dict(key=control.key, help=control.help, bind="query-params")
    if control.slider:
        value = st.slider(control.label, float(control.minimum), control.maximum, control.default, control.step,
                          **common)
    else:
        value = st.number_input(control.label, control.minimum, control.maximum, control.default,
                                control.step, format=control.format, **common)
    return value * control.scale


def cost_controls() -> dict[str, float]:
    """The sidebar: every assumption of Eq. 12-14, the paper's values by default."""
    with st.sidebar:
        st.header("Cost assumptions")
        st.button("Reset to the paper's values", on_click=reset_costs, width="stretch", key="reset_costs")
        values = {c.field: cost_widget(c) for c in COST_CONTROLS}
    return values


def law_choice(store_path: str) -> tuple[str, LawFit | ScalingLaw, dict]:
    """The chosen law, its label and its identity for the plan's JSON (`law_identity`)."""
    fits = saved_joint_fits(store_path)
    names = {**{p: p for p in JOINT_PRESETS}, **fits}
    choice = st.selectbox("Law L(N, D)", list(names), format_func=names.__getitem__, key="law",
                          bind="query-params",
                          help="A preset with the paper's coefficients or a joint fit (Eq. 8 or the additive "
                               "form) saved on the Fit laws page")
    if choice in PRESETS:
        st.caption(f"{PRESETS[choice].source}. Fit and save a joint law on the **Fit laws** page to plan "
                   "with your own data.")
        law = PRESETS[choice].law
        return choice, law, law_identity(choice, law, {"source": PRESETS[choice].source}, preset_support(choice))
    law = saved_fit(store_path, choice)
    held = len(law.heldout) if "role" in law.points else 0
    held_text = f" ({held} held out)" if held else ""
    st.caption(f"Saved fit: R² {format_r2(law.r2)} on {len(law.points) - held} fitted points{held_text}, "
               f"{law.bootstrap_kept:,} bootstrap refits.")
    return names[choice], law, law_identity(names[choice], law, saved_fit_origin(store_path, choice))


def show_answer(answer: BudgetAnswer) -> None:
    q = answer.question
    cols = st.columns(4)
    cols[0].metric("N* (optimal model size)", format_count(answer.n_opt),
                   help=f"{answer.n_opt:,.0f} non-embedding parameters")
    cols[1].metric("D* (annotated pairs)", format_count(answer.d_opt), help=f"{answer.d_opt:,.0f} pairs")
    cols[2].metric("Predicted contrastive entropy", format_loss(answer.loss))
    cols[3].metric(f"Near-optimal N (loss within {format_percent(q.band_tolerance)})",
                   f"{format_count(answer.band[0])} – {format_count(answer.band[1])}")
    if answer.loss_interval:
        lo, hi = answer.loss_interval
        st.caption(f"Prediction interval of the loss at the optimum: {format_loss(lo)} – {format_loss(hi)} "
                   "(bootstrap of the fit, times its residual spread).")
    else:
        st.caption("No interval for the loss: a published law comes without its uncertainty. "
                   "Plan with a saved fit to see one.")
    hours = answer.device_hours
    for col, (part, dollars) in zip(st.columns(3), answer.spend.items()):
        col.metric(f"{part.capitalize()} ({format_percent(dollars / q.budget)} of the budget)", f"${dollars:,.0f}",
                   help=f"{format_count(hours[part])} device hours at ${q.costs.gpu_price_per_hour:g} an hour"
                   if part in hours else None)
        if part in hours:
            col.caption(f"{format_count(hours[part])} device hours")


def device_costs(store_path: str, raw_costs: dict[str, float]) -> CostAssumptions | None:
    """With the sidebar's toggle on: compute priced on the device that trained the store's
    runs (its measured throughput and step shape, `engine.budget.store_hardware`); the
    price per hour, per pair and the corpus stay the sidebar's. None with it off."""
    if not st.sidebar.toggle(OWN_DEVICE, key="own_device",
                             help="Throughput measured from the largest model's completed runs (step time as "
                                  "measured, evaluation included); the GPU price per hour becomes that "
                                  "device's price per hour (1: plan in device hours)."):
        return None
    try:
        hardware = store_hardware(Store(store_path))
    except InputError as err:
        raise InputError(f"{err}; or turn off '{OWN_DEVICE}' to price compute on the sidebar's GPU") from err
    st.sidebar.caption(f"Measured: {hardware.flops_per_s:.3g} FLOP/s (6N per token) over {hardware.runs} run(s) of "
                       f"N = {format_count(hardware.n)}; {hardware.steps} steps of {hardware.batch_size} queries. "
                       "Peak, utilisation, steps, batch and tokens above are replaced by these.")
    return hardware.costs(raw_costs["gpu_price_per_hour"], price_per_pair=raw_costs["price_per_pair"],
                          corpus_pages=raw_costs["corpus_pages"], tokens_per_page=raw_costs["tokens_per_page"])


def show_decision(law: LawFit, answer: BudgetAnswer) -> DecisionUncertainty | None:
    """How sure the answer is: N* under each bootstrap law, the robust choice, the regret,
    and how far N* and D* lie beyond the fitted points (a plain warning beyond 10x)."""
    reach = extrapolation(law, answer.n_opt, answer.d_opt)
    if reach is not None:
        (st.warning if reach.beyond_warning else st.caption)(reach.describe())
    if not len(law.bootstrap_params):
        st.caption("No interval on N*: this fit was saved without bootstrap refits.")
        return None
    u = decision_uncertainty(law, answer.question)
    cols = st.columns(3)
    cols[0].metric(f"N* {u.level:.0%} interval", f"{format_count(u.n_opt_interval[0])} – "
                   f"{format_count(u.n_opt_interval[1])}", help=f"Where the {u.laws:,} bootstrap laws put the optimum; "
                   f"D* {format_count(u.d_opt_interval[0])} – {format_count(u.d_opt_interval[1])}")
    cols[1].metric("Robust N (lowest expected loss)", format_count(u.n_robust),
                   help=f"The N with the lowest loss averaged over the bootstrap laws; D = {format_count(u.d_robust)}")
    cols[2].metric("Expected regret of N*", format_percent(u.regret_relative),
                   help=f"{u.regret:.4g} nats: how much worse N* does, on average, than each bootstrap law's own "
                        f"optimum (the robust N: {u.regret_robust:.4g} nats)")
    if note := u.bound_note():
        st.caption(note)
    return u


def show_reach(law_name: str, answer: BudgetAnswer) -> Extrapolation | None:
    """How far N* and D* of a published law lie beyond the paper's ladder and data."""
    reach = preset_extrapolation(law_name, answer.n_opt, answer.d_opt)
    if reach is not None:
        (st.warning if reach.beyond_warning else st.caption)(reach.describe())
    return reach


def show_curves(law: LawFit | ScalingLaw, answer: BudgetAnswer, compare: list[int],
                decision: DecisionUncertainty | None = None, support: tuple[float, float] | None = None) -> None:
    """Loss against N for the chosen budget and the comparison budgets (Figures 7, 8)."""
    q = answer.question
    answers, skipped = [answer], []
    for budget in sorted(set(compare) - {q.budget}):
        try:
            answers.append(optimise(law, replace(q, budget=float(budget))))
        except InputError:
            skipped.append(format_count(budget))
    budgets = [a.question.budget for a in answers]
    curves = budget_curves(law, budgets, q.with_inference, q.costs, q.n_min)
    st.altair_chart(budget_chart(curves, optima_table(answers, q.band_tolerance), q.budget, decision, support),
                    width="stretch")
    st.caption("Diamonds mark N* for each budget; the bar under each is the near-optimal band. "
               + ("Grey: model sizes outside the fitted points, where the law extrapolates. " if support else "")
               + ("Faint ticks: N* under each bootstrap law, the black bar their interval, the triangle the "
                  "robust N. " if decision else "")
               + (f"Too small for the smallest model: ${', $'.join(skipped)}." if skipped else ""))


def means(text: str, value, write=None) -> bool:
    """Does a link's `text` stand for the widget's `value`? Numbers compare as numbers
    (0.60 is 0.6); other values as `write` writes them in the URL (a label, 20k, true)."""
    if write is None:
        try:
            return abs(float(text) - float(value)) <= 1e-9 * max(abs(float(value)), 1.0)
        except ValueError:
            return False
    return text == write(value)


def say_what_the_link_dropped(box, asked: dict[str, list[str]], shown: dict[str, tuple[str, object, object]]) -> None:
    """A warning for every value of the link (`asked`, the URL as it came) that the page
    could not use: `shown` maps a bound widget's key to (its label, its value now, how
    the URL writes a value; None: a number). Streamlit drops such a value from the URL
    and uses the default, so without this a shared scenario changes silently."""
    for key, texts in asked.items():
        if key not in shown:
            continue
        label, value, write = shown[key]
        if isinstance(value, list):
            used = sorted(texts) == sorted(write(v) for v in value)
            now = ", ".join(write(v) for v in value) or "none"
        else:
            used = means(texts[-1], value, write)
            now = write(value) if write else f"{value:g}"
        if used:
            continue
        what = ("a law this store does not hold (a fit saved in another store?)" if key == "law"
                else "a value this page cannot use")
        box.warning(f"This link asks for {label} = {', '.join(texts)}: {what}. The page shows {now} instead; "
                    f"results below are for {now}, not for the link's scenario.")


def main() -> None:
    st.set_page_config(page_title="Budget planner · Scaling-law workbench", layout="wide")
    st.title("Budget planner")
    st.caption("Split a budget between annotation and model size with the joint law (Eq. 8) and the "
               "cost model Z = Z_data·D + Z_train·N + Z_infer·N (Eq. 11). The URL keeps the scenario: "
               "copy it to share.")
    asked = {key: st.query_params.get_all(key) for key in st.query_params}   # the link, before widgets drop values
    dropped_box = st.container()
    store_path = str(Store().path)
    raw_costs = cost_controls()
    top = st.columns([2, 1, 1])
    with top[0]:
        budget = st.select_slider("Budget ($)", BUDGETS, value=20_000, format_func=format_count,
                                  key="budget", bind="query-params")
    with top[1]:
        with_inference = st.toggle("With inference cost", key="inference", bind="query-params",
                                   help="Encoding the whole corpus once (Eq. 14); the paper's Figure 8")
    with top[2]:
        tolerance = st.slider("Band tolerance (%)", 0.1, 10.0, 1.0, 0.1, key="tolerance",
                              bind="query-params", help="N whose loss is within this of the optimum")
    try:
        law_name, law, identity = law_choice(store_path)
    except InputError as err:
        st.error(in_words(err))
        return
    compare = st.multiselect("Also draw budgets", BUDGETS, default=COMPARE_DEFAULT, format_func=format_count,
                             key="compare", bind="query-params")
    say_what_the_link_dropped(dropped_box, asked, {
        "law": ("the law", law_name, str), "budget": ("the budget", budget, format_count),
        "inference": ("with inference cost", with_inference, lambda v: str(v).lower()),
        "tolerance": ("the band tolerance", tolerance, None), "compare": ("also draw budgets", compare, format_count),
        **{c.key: (c.label, st.session_state[c.key], None) for c in COST_CONTROLS}})
    try:
        costs = device_costs(store_path, raw_costs) or CostAssumptions(**raw_costs)
        st.sidebar.caption(f"Z_data = ${costs.z_data:.3g}/pair · Z_train = ${costs.z_train:.3g}/param · "
                           f"Z_infer = ${costs.z_infer:.3g}/param (Eq. 12-14)")
        answer = optimise(law, BudgetQuestion(float(budget), with_inference, costs,
                                              band_tolerance=tolerance / 100))
    except InputError as err:
        st.error(f"Cannot plan this scenario: {in_words(err)}")
        return
    show_answer(answer)
    decision = show_decision(law, answer) if isinstance(law, LawFit) else None
    reach = None if decision else show_reach(law_name, answer)
    support = law.support.get("n") if isinstance(law, LawFit) else preset_support(law_name).get("n")
    show_curves(law, answer, compare, decision, support)
    plan = plan_record(identity, answer, decision, reach)
    st.download_button("Download this plan (JSON)", json.dumps(plan, indent=2),
                       file_name="budget-plan.json", mime="application/json", on_click="ignore")


main()
