"""Analysis: contrastive entropy against ranking metrics (the paper's Figure 2) and
the data-size law per annotation type with exchange rates (Figure 5)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from engine.analysis import (RANKING_METRICS, annotation_curves, crossing_points, entropy_of_metrics,
                             exchange_rate, fit_annotation_laws, metric_correlations)
from engine.charts import CURVE_POINTS, annotation_chart, format_count, metric_chart, padded_range
from engine.errors import InputError
from engine.laws import FitConfig, LawFit
from store import Store

DOTS = {"runs": "one run (its best contrastive entropy, final metrics)",
        "points": "one evaluation during training"}
ANNOTATION_CONFIG = FitConfig(bootstrap=200)
CORRELATION_FORMAT = {**{c: st.column_config.NumberColumn(format="%.3f") for c in ("pearson", "spearman")},
                      **{c: st.column_config.NumberColumn(format="%.2g") for c in ("pearson_p", "spearman_p")}}


@st.cache_data(ttl=5, show_spinner=False)
def runs_with_metrics(store_path: str) -> pd.DataFrame:
    """One row per run; contrastive_entropy is that of the evaluation its ranking metrics
    come from (the best value for rows that do not say)."""
    runs = Store(store_path).runs().rename(columns={"model_name": "model"})
    return runs.assign(contrastive_entropy=entropy_of_metrics(runs, "best_contrastive_entropy"))


@st.cache_data(ttl=5, show_spinner=False)
def evaluation_points(store_path: str) -> pd.DataFrame:
    store = Store(store_path)
    runs = store.runs()[["run_id", "model_name", "label"]].rename(columns={"model_name": "model"})
    return store.points().merge(runs, on="run_id", how="left")


@st.cache_data(ttl=5, show_spinner=False)
def store_law_points(store_path: str) -> pd.DataFrame:
    return Store(store_path).law_points()


@st.cache_data(show_spinner="Fitting the data-size law per annotation type ...")
def annotation_law(points: pd.DataFrame) -> LawFit:
    """Eq. 7 for the rows of one annotation type."""
    return next(iter(fit_annotation_laws(points, ANNOTATION_CONFIG).values()))


# --- Figure 2 -----------------------------------------------------------------------

def entropy_vs_metrics(store_path: str) -> None:
    st.subheader("Contrastive entropy and ranking metrics (Figure 2)")
    dots = st.radio("Each dot is", list(DOTS), format_func=DOTS.get, horizontal=True, key="analysis_dots")
    frame = runs_with_metrics(store_path) if dots == "runs" else evaluation_points(store_path)
    try:
        table = metric_correlations(frame).dropna(subset=["pearson"])
    except InputError:
        table = pd.DataFrame()
    if table.empty:
        st.info("No runs with ranking metrics yet (at least 3 are needed). Runs trained here record "
                f"{', '.join(RANKING_METRICS)} at their final evaluation; an imported CSV may carry these "
                "columns next to `loss`.")
        return
    metric = st.selectbox("Ranking metric", list(table["metric"]), key="analysis_metric")
    st.altair_chart(metric_chart(frame.dropna(subset=["contrastive_entropy", metric]), metric, "model"),
                    width="stretch")
    st.dataframe(table, hide_index=True, column_config=CORRELATION_FORMAT)
    st.caption("Lower entropy is better and higher metrics are, so agreement shows as a strong *negative* "
               "correlation (the paper's 'strong positive correlation'). The paper sees ranking quality "
               "jump near a contrastive entropy of 0.25.")


# --- Figure 5 -----------------------------------------------------------------------

def fixed_model_choice(points: pd.DataFrame) -> float:
    """The model size to compare annotation types at: by default the one trained with
    the most annotation types, then the largest (the paper uses BERT-Base)."""
    coverage = points.groupby("n")["annotation"].nunique()
    best = coverage[coverage == coverage.max()].index.max()
    values = sorted(points["n"].unique())
    return st.selectbox("Model size N", values, index=values.index(best), format_func=format_count,
                        key="analysis_model")


def fits_per_annotation(points: pd.DataFrame) -> dict[str, LawFit]:
    fits = {}
    for annotation, rows in points.groupby("annotation"):
        try:
            fits[str(annotation)] = annotation_law(rows[["d", "loss", "annotation"]].reset_index(drop=True))
        except InputError as err:
            st.caption(f"No law for {annotation}: {err}")
    return fits


def annotation_table(fits: dict[str, LawFit]) -> pd.DataFrame:
    return pd.DataFrame([{"annotation": a, **f.law.params, "R²": f.r2, "points": len(f.points)}
                         for a, f in fits.items()])


def annotation_types(store_path: str) -> None:
    st.subheader("Annotation types compared (Figure 5)")
    points = store_law_points(store_path).dropna(subset=["annotation"])
    datasets = sorted(points["dataset"].dropna().unique())
    if datasets:
        dataset = st.selectbox("Data set", datasets, key="analysis_dataset")
        points = points[points["dataset"] == dataset]
    if points.empty:
        st.info("No completed runs with an annotation type yet. Train at several data sizes with human pairs "
                "and with generated ones (`python -m engine annotate ...`, then the Runs page's "
                "pseudo-annotated pairs folder).")
        return
    at_n = points[points["n"] == fixed_model_choice(points)]
    fits = fits_per_annotation(at_n)
    if not fits:
        return
    d_grid = np.geomspace(*padded_range(at_n["d"]), CURVE_POINTS)
    st.altair_chart(annotation_chart(at_n[at_n["annotation"].isin(list(fits))], annotation_curves(fits, d_grid)),
                    width="stretch")
    st.dataframe(annotation_table(fits), hide_index=True)
    if len(fits) > 1:
        exchange_rates(fits, at_n)
    else:
        st.caption("Exchange rates need runs with at least two annotation types at this model size.")


def exchange_rates(fits: dict[str, LawFit], points: pd.DataFrame) -> None:
    """What one reference pair is worth in pairs of every other type, and where
    the curves cross."""
    st.markdown("**Exchange rates**")
    types = sorted(fits)
    cols = st.columns(2)
    reference = cols[0].selectbox("Reference type", types, index=types.index("human") if "human" in types else 0,
                                  key="analysis_reference")
    typical = points.loc[points["annotation"] == reference, "d"].median()   # inside the measured range
    n_reference = cols[1].number_input(f"{reference} pairs", 1, 10**12, int(typical), step=1000,
                                       key="analysis_reference_pairs")
    d_min, d_max = padded_range(points["d"], factor=10)
    rows = []
    for other in (t for t in types if t != reference):
        rate = exchange_rate(fits, other, float(n_reference), reference)
        crossings = crossing_points(fits[reference], fits[other], d_min, d_max)
        rows.append({"type": other, "pairs needed": rate.pairs, "per reference pair": rate.ratio,
                     "low": rate.interval[0], "high": rate.interval[1],
                     "never reached (share of draws)": rate.p_unreachable,
                     "curves cross at D": ", ".join(format_count(c) for c in crossings) or "–"})
        st.caption(rate.describe())
    pairs = st.column_config.NumberColumn(format="compact")
    st.caption(f"Pairs of each type that reach the loss of {n_reference:,} {reference} pairs; low – high: "
               f"{ANNOTATION_CONFIG.level:.0%} interval over the bootstrap laws of both types.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "pairs needed": pairs, "per reference pair": st.column_config.NumberColumn(format="%.2f"),
        "low": pairs, "high": pairs, "never reached (share of draws)": st.column_config.NumberColumn(format="percent")})


def main() -> None:
    st.set_page_config(page_title="Analysis · Scaling-law workbench", layout="wide")
    st.title("Analysis")
    store_path = str(Store().path)
    entropy_vs_metrics(store_path)
    annotation_types(store_path)


main()
