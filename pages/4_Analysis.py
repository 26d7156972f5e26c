"""Analysis: contrastive entropy against ranking metrics (the paper's Figure 2) and
the data-size law per annotation type with exchange rates (Figure 5)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from engine.analysis import (RANKING_METRICS, ExchangeRate, annotation_curves, crossing_points, exchange_rate,
                             fit_annotation_laws, metric_correlations, with_entropy)
from engine.budget import format_factor
from engine.charts import CURVE_POINTS, annotation_chart, metric_chart, padded_range
from engine.errors import InputError, in_words
from engine.laws import FitConfig, LawFit
from engine.formatting import format_coefficient, format_count, format_loss, format_percent, format_r2
from engine.point_selection import (MIN_DATA_SIZES, comparison_dataset, comparison_model_size, evaluation_points,
                                    not_overfit, value_choice, where, where_any)
from engine.study import OVERFIT_GAP
from store import Store

DOTS = {"runs": "one run (its best contrastive entropy, final metrics)",
        "points": "one evaluation during training"}
ANNOTATION_CONFIG = FitConfig(bootstrap=200)
NOT_REACHED = "not reached"
METRIC_NAMES = {"raw": "raw contrastive entropy (the paper's)", "calibrated": "calibrated contrastive entropy"}
CORRELATION_FORMAT = {**{c: st.column_config.NumberColumn(format="%.3f") for c in ("pearson", "spearman")},
                      **{c: st.column_config.NumberColumn(format="%.2g") for c in ("pearson_p", "spearman_p")}}


@st.cache_data(ttl=5, show_spinner=False)
def runs_with_metrics(store_path: str, metric: str) -> pd.DataFrame:
    """One row per run; contrastive_entropy (of `metric`) is that of the evaluation its
    ranking metrics come from (the best value for rows that do not say)."""
    return with_entropy(Store(store_path).runs().rename(columns={"model_name": "model"}), metric)


@st.cache_data(ttl=5, show_spinner=False)
def store_evaluation_points(store_path: str, metric: str) -> pd.DataFrame:
    store = Store(store_path)
    return evaluation_points(store.runs(), store.points(), metric)


@st.cache_data(ttl=5, show_spinner=False)
def store_law_points(store_path: str) -> pd.DataFrame:
    return Store(store_path).law_points()


@st.cache_resource(show_spinner=False)
def kept_laws() -> dict[str, LawFit]:
    """Eq. 7 fits of this server process by their rows' digest (st.cache_data cannot hold
    a fit that draws its own progress bar); read, never changed."""
    return {}


def annotation_law(points: pd.DataFrame, progress) -> LawFit:
    """Eq. 7 for the rows of one annotation type, fitted on the first visit and kept."""
    key = pd.util.hash_pandas_object(points, index=False).to_numpy().tobytes().hex()
    kept = kept_laws()
    if key not in kept:
        kept[key] = next(iter(fit_annotation_laws(points, ANNOTATION_CONFIG, progress).values()))
    return kept[key]


# --- Figure 2 -----------------------------------------------------------------------

def one_kind_of_run(frame: pd.DataFrame) -> pd.DataFrame:
    """Filters for one data set and one annotation type (default: the most common data
    set, human pairs): pooling them mixes relations the study report keeps apart."""
    cols = st.columns(2)
    for col, column, label, preferred in zip(cols, ("dataset", "annotation"), ("Data set", "Annotation type"),
                                             (None, "human")):
        choice = value_choice(frame, column, preferred)
        if choice is not None:
            frame = where(frame, column, col.selectbox(label, choice.options, index=choice.default,
                                                       key=f"analysis_metrics_{column}"))
    return frame


def entropy_metric() -> str:
    return st.radio("Entropy", list(METRIC_NAMES), format_func=METRIC_NAMES.get, horizontal=True,
                    key="analysis_entropy", help="Raw: Eq. 5 as the paper computes it. Calibrated: Eq. 5 at a "
                    "temperature cross-fitted at each evaluation, so a model is not punished for its score scale "
                    "(the study report compares both).")


def only_not_overfit(runs: pd.DataFrame) -> pd.DataFrame:
    """As the study report counts them: an overfit model's entropy climbs while its ranking holds."""
    keep = st.checkbox(f"Only runs that had not overfit (entropy at the metrics within {OVERFIT_GAP} nats of "
                       "the run's best), as the study report", value=True, key="analysis_not_overfit")
    return not_overfit(runs, OVERFIT_GAP) if keep else runs


def entropy_vs_metrics(store_path: str) -> None:
    st.subheader("Contrastive entropy and ranking metrics (Figure 2)")
    cols = st.columns(2)
    with cols[0]:
        dots = st.radio("Each dot is", list(DOTS), format_func=DOTS.get, horizontal=True, key="analysis_dots")
    with cols[1]:
        metric = entropy_metric()
    frame = one_kind_of_run(runs_with_metrics(store_path, metric) if dots == "runs"
                            else store_evaluation_points(store_path, metric))
    if dots == "runs" and len(frame):
        frame = only_not_overfit(frame)
    try:
        table = metric_correlations(frame).dropna(subset=["pearson"])
    except InputError:
        table = pd.DataFrame()
    if table.empty and metric == "calibrated":
        st.info("No runs here with a calibrated contrastive entropy and ranking metrics (at least 3 are needed): "
                "choose the raw entropy, or train runs now.")
        return
    if table.empty and dots == "points":
        st.info("No evaluations during training with ranking metrics here (at least 3 are needed): imported "
                "and demo runs keep only their final numbers. Choose *one run* per dot to see them.")
        return
    if table.empty:
        st.info("No runs with ranking metrics yet (at least 3 are needed). Runs trained here record "
                f"{', '.join(RANKING_METRICS)} at their final evaluation; an imported CSV may carry these "
                "columns next to `loss`.")
        return
    ranking = st.selectbox("Ranking metric", list(table["metric"]), key="analysis_metric")
    st.altair_chart(metric_chart(frame.dropna(subset=["contrastive_entropy", ranking]), ranking, "model",
                                 METRIC_NAMES[metric]), width="stretch")
    st.dataframe(table, hide_index=True, column_config=CORRELATION_FORMAT)
    st.caption("Lower entropy is better and higher metrics are, so agreement shows as a strong *negative* "
               "correlation (the paper's 'strong positive correlation'). The paper sees ranking quality "
               "jump near a contrastive entropy of 0.25.")


# --- Figure 5 -----------------------------------------------------------------------

def dataset_choice(points: pd.DataFrame) -> str:
    choice = comparison_dataset(points)
    return st.selectbox("Data set", choice.options, index=choice.default, key="analysis_dataset")


def fixed_model_choice(points: pd.DataFrame) -> float:
    choice = comparison_model_size(points)
    return st.selectbox("Model size N", choice.options, index=choice.default, format_func=format_count,
                        key="analysis_model")


def fits_per_annotation(points: pd.DataFrame) -> dict[str, LawFit]:
    """Eq. 7 per annotation type, with a progress bar over the bootstrap refits (a
    first visit fits; later ones find the fits kept)."""
    fits, groups = {}, list(points.groupby("annotation"))
    bar = st.empty()
    for i, (annotation, rows) in enumerate(groups):
        def report(done: int, total: int, i=i, annotation=annotation) -> None:
            if done % 20 == 0 or done == total:
                bar.progress((i + done / total) / len(groups), text=f"Fitting Eq. 7 for {annotation} "
                             f"({i + 1} of {len(groups)}): bootstrap refit {done:,} of {total:,}")
        try:
            fits[str(annotation)] = annotation_law(rows[["d", "loss", "annotation"]].reset_index(drop=True), report)
        except InputError as err:
            st.caption(f"No law for {annotation}: {in_words(err)}")
    bar.empty()
    return fits


def annotation_table(fits: dict[str, LawFit]) -> pd.DataFrame:
    return pd.DataFrame([{"annotation": a, **{k: format_coefficient(v) for k, v in f.law.params.items()},
                          "R²": format_r2(f.r2), "points": len(f.points)} for a, f in fits.items()])


def annotation_types(store_path: str) -> None:
    st.subheader("Annotation types compared (Figure 5)")
    points = store_law_points(store_path).dropna(subset=["annotation", "dataset"])
    if points.empty:
        st.info("No completed runs with an annotation type yet. Train at several data sizes with human pairs "
                "and with generated ones (`python -m engine annotate ...`, then the Runs page's "
                "pseudo-annotated pairs folder).")
        return
    points = where(points, "dataset", dataset_choice(points))
    at_n = where(points, "n", fixed_model_choice(points))
    fits = fits_per_annotation(at_n)
    if not fits:
        st.info(f"No annotation type has runs at {MIN_DATA_SIZES} or more data sizes at this model size: "
                "choose another model size or data set, or train at more data sizes.")
        return
    d_grid = np.geomspace(*padded_range(at_n["d"]), CURVE_POINTS)
    st.altair_chart(annotation_chart(where_any(at_n, "annotation", fits), annotation_curves(fits, d_grid)),
                    width="stretch")
    st.dataframe(annotation_table(fits), hide_index=True)
    if len(fits) > 1:
        exchange_rates(fits, at_n)
    else:
        st.caption("Exchange rates need runs with at least two annotation types at this model size.")


def pairs_text(pairs: float) -> str:
    """A number of pairs in words: 'not reached' where the other type's floor is above the target."""
    if np.isnan(pairs):
        return "n/a"
    return format_count(pairs) if np.isfinite(pairs) else NOT_REACHED


def describe_rate(rate: ExchangeRate) -> str:
    head = f"{format_count(rate.n_reference)} {rate.reference} pairs reach loss {format_loss(rate.target_loss)}"
    if not rate.reachable:
        return (f"{head}; {rate.other} never does: its floor (delta) is above that loss "
                f"({format_percent(rate.p_unreachable)} of bootstrap draws agree)")
    lo, hi = (pairs_text(end) for end in rate.interval)
    reach = (f"; {format_percent(rate.p_unreachable)} of {rate.draws:,} bootstrap draws never reach it"
             if rate.p_unreachable else "")
    return (f"{head}; {rate.other} needs {format_count(rate.pairs)} pairs ({format_count(rate.ratio)} per {rate.reference} "
            f"pair), {rate.level:.0%} interval {lo} – {hi}{reach}")


def exchange_rates(fits: dict[str, LawFit], points: pd.DataFrame) -> None:
    """What one reference pair is worth in pairs of every other type, and where
    the curves cross."""
    st.markdown("**Exchange rates**")
    types = sorted(fits)
    cols = st.columns(2)
    reference = cols[0].selectbox("Reference type", types, index=types.index("human") if "human" in types else 0,
                                  key="analysis_reference")
    typical = where(points, "annotation", reference)["d"].median()   # inside the measured range
    n_reference = cols[1].number_input(f"{reference} pairs", 1, 10**12, int(typical), step=1000,
                                       key="analysis_reference_pairs")
    d_min, d_max = padded_range(points["d"], factor=10)
    rows = []
    for other in (t for t in types if t != reference):
        rate = exchange_rate(fits, other, float(n_reference), reference)
        crossings = crossing_points(fits[reference], fits[other], d_min, d_max)
        rows.append({"type": other, "pairs needed": pairs_text(rate.pairs),
                     "per reference pair": format_count(rate.ratio) if rate.reachable else NOT_REACHED,
                     "low": pairs_text(rate.interval[0]), "high": pairs_text(rate.interval[1]),
                     "never reached (share of draws)": format_percent(rate.p_unreachable),
                     "beyond its measured D": format_factor(rate.extrapolation) if rate.extrapolation > 1 else "inside",
                     "curves cross at D": ", ".join(format_count(c) for c in crossings) or "–"})
        st.caption(describe_rate(rate))
        if rate.beyond_warning:
            st.warning(rate.warning())
    st.caption(f"Pairs of each type that reach the loss of {format_count(n_reference)} {reference} pairs; low – "
               f"high: {ANNOTATION_CONFIG.level:.0%} interval over the bootstrap laws of both types; "
               f"'{NOT_REACHED}': that type's floor (delta) lies above the target loss.")
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def main() -> None:
    st.set_page_config(page_title="Analysis · Scaling-law workbench", layout="wide")
    st.title("Analysis")
    store_path = str(Store().path)
    entropy_vs_metrics(store_path)
    annotation_types(store_path)


main()
