"""Fit laws: the model-size (Eq. 6), data-size (Eq. 7) or joint law (Eq. 8) fitted to
runs in the store, an uploaded CSV, or shown as the paper published it; chart,
residuals, parameters with intervals, held-out check, save and export."""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from engine.charts import (fit_record, format_count, law_chart, law_curves, law_snippet, padded_range,
                           residual_chart, series_name)
from engine.errors import InputError
from engine.laws import (LAW_EQUATIONS, PARAM_NAMES, PRESETS, FitConfig, LawFit, ScalingLaw,
                         fit_law, validate_points)
from engine.study import RANDOM_SCORER_LOSS
from store import Store

SOURCES = ("Runs in the store", "Upload a CSV", "Paper presets")
KINDS = {"model": "Model size, Eq. 6", "data": "Data size, Eq. 7", "joint": "Joint, Eq. 8"}
X_OF_KIND = {"model": "n", "data": "d"}
MAX_JOINT_CURVES = 8
ALL = "(all)"
HELDOUT_COLUMNS = ("label", "n", "d", "loss", "predicted", "rel_error", "pi_lo", "pi_hi")
NUMBERS = {column: st.column_config.NumberColumn(format="%.4g")
           for column in ("value", "low", "high", "n", "d", "loss", "predicted", "rel_error", "pi_lo", "pi_hi")}


# --- data -------------------------------------------------------------------------

@st.cache_data(ttl=5, show_spinner=False)
def store_law_points(store_path: str) -> pd.DataFrame:
    return Store(store_path).law_points()


@st.cache_data(show_spinner="Fitting the law and its bootstrap ...")
def cached_fit(points: pd.DataFrame, kind: str, bootstrap: int, level: float, seed: int,
               holdout: int, holdout_axis: str = "auto") -> LawFit:
    return fit_law(points, kind, FitConfig(bootstrap=bootstrap, level=level, seed=seed,
                                           holdout_largest=holdout, holdout_axis=holdout_axis))


def read_csv_upload(data: bytes) -> pd.DataFrame:
    """The uploaded table, or InputError saying why it cannot be read."""
    if not data.strip():
        raise InputError("the file is empty; upload a CSV with a header row n, d, loss")
    try:
        return pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV ({err}); save it as comma-separated text") from err


def import_upload(store: Store, data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        report = store.import_file(path, label=path.stem)
    st.cache_data.clear()
    st.success(f"Imported {report.imported} row(s) into the store.")
    for line, reason in report.rejected:
        st.warning(f"line {line} rejected: {reason}")


# --- choosing the points ------------------------------------------------------------

def store_source(store_path: str) -> pd.DataFrame | None:
    points = store_law_points(store_path)
    if points.empty:
        st.info("No completed runs in the store yet. Train some on the **Runs** page, import results "
                "(`python -m store import results.csv`), upload a CSV here, or look at the paper presets.")
        return None
    cols = st.columns(2)
    for col, column, label in zip(cols, ("dataset", "annotation"), ("Data set", "Annotation type")):
        counts = points[column].value_counts()   # default: the most common value, not a mix
        options = [ALL, *sorted(counts.index)]
        chosen = col.selectbox(label, options, index=options.index(counts.idxmax()) if len(counts) else 0,
                               key=f"fit_{column}")
        if chosen != ALL:
            points = points[points[column] == chosen]
    return points


def upload_source(store: Store, kind: str) -> pd.DataFrame | None:
    upload = st.file_uploader("CSV with columns n, d, loss (and optional label)", type=["csv"],
                              key="fit_upload")
    if upload is None:
        st.info("Upload a CSV of your results: one row per run, columns `n` (non-embedding parameters), "
                "`d` (annotated pairs), `loss` (contrastive entropy), optional `label`.")
        return None
    data = upload.getvalue()
    try:
        frame = validate_points(read_csv_upload(data), kind)
    except InputError as err:
        st.error(f"Cannot use {upload.name}: {err}")
        return None
    if st.button("Import these rows into the store", key="fit_import"):
        try:
            import_upload(store, data, upload.name)
        except InputError as err:
            st.error(str(err))
    return frame


def slice_for_kind(points: pd.DataFrame, kind: str) -> pd.DataFrame:
    """A one-variable law holds the other variable fixed (the paper: full data for
    Eq. 6, the largest model for Eq. 7); let the user pick which value."""
    if kind == "joint":
        return points
    other = "d" if kind == "model" else "n"
    if other not in points or points[other].nunique() < 2:
        return points
    values = sorted(points[other].dropna().unique())
    label = "Data size D held fixed" if other == "d" else "Model size N held fixed"
    fixed = st.selectbox(label, values, index=len(values) - 1, format_func=format_count,
                         key=f"fit_fixed_{kind}")
    return points[points[other] == fixed]


def point_names(points: pd.DataFrame) -> pd.Series:
    labels = points["label"] if "label" in points else pd.Series("", index=points.index)
    sizes = [" · ".join(f"{c.upper()}={format_count(v)}" for c, v in row.items() if pd.notna(v))
             for row in points[[c for c in ("n", "d") if c in points]].to_dict("records")]
    return pd.Series([f"{i}: {label or ''} {size}".replace("  ", " ") for i, label, size
                      in zip(points.index, labels.fillna(""), sizes)], index=points.index)


def choose_points(points: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, FitConfig]:
    points = slice_for_kind(points, kind).reset_index(drop=True)
    names = point_names(points)
    random_level = names[points["loss"] >= RANDOM_SCORER_LOSS]  # no better than a random scorer (k = 256)
    left_out = st.multiselect("Leave points out of the fit", list(names), default=list(random_level),
                              key=f"fit_leave_out_{kind}",
                              help="e.g. a run that diverged; left-out points are not drawn. Runs whose entropy is "
                                   f"no better than a random scorer's (>= log 257 = {RANDOM_SCORER_LOSS:.3f}) start "
                                   "left out.")
    chosen = points[~names.isin(left_out)]
    size_column = "d" if kind == "data" else "n"
    with st.expander("Held-out check and fit settings"):
        axis = "auto"
        if kind == "joint":
            size_column = axis = st.radio("Hold out along", ["n", "d"], horizontal=True, key="fit_holdout_axis",
                                          format_func={"n": "model size", "d": "data size"}.get)
        distinct = chosen[size_column].nunique() if size_column in chosen else 0
        holdout = st.number_input(f"Hold out the k largest {'data sizes' if size_column == 'd' else 'models'}",
                                  0, max(distinct - 1, 0), 0, key=f"fit_holdout_{kind}",
                                  help="Fit on the rest and predict these, as the paper's Figure 6 does")
        bootstrap = st.number_input("Bootstrap refits", 0, 2000, 500, 100, key="fit_bootstrap")
        level = st.slider("Interval level", 0.80, 0.99, 0.95, 0.01, key="fit_level")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="fit_seed")
    return chosen, FitConfig(bootstrap=int(bootstrap), level=level, seed=int(seed), holdout_largest=int(holdout),
                             holdout_axis=axis)


# --- showing a law ----------------------------------------------------------------

def chart_axis(kind: str) -> str:
    if kind in X_OF_KIND:
        return X_OF_KIND[kind]
    return st.radio("x axis", ["n", "d"], format_func={"n": "model size N", "d": "data size D"}.get,
                    horizontal=True, key="fit_axis")


def joint_series(points: pd.DataFrame, x: str) -> list[float]:
    """Values of the other variable to draw one curve each for (at most a few)."""
    other = sorted(points["d" if x == "n" else "n"].unique())
    if len(other) <= MAX_JOINT_CURVES:
        return other
    return [other[i] for i in np.linspace(0, len(other) - 1, MAX_JOINT_CURVES).round().astype(int)]


def draw_law(law: LawFit | ScalingLaw, points: pd.DataFrame, x: str, compare: ScalingLaw | None) -> pd.DataFrame:
    """Chart the law (and `compare`) over the points; return the curves drawn."""
    kind = (law.law if isinstance(law, LawFit) else law).kind
    x_range = padded_range(points[x]) if len(points) else ((3e5, 1e9) if x == "n" else (1e3, 1e7))
    fixed = joint_series(points, x) if kind == "joint" and len(points) else None
    if kind == "joint" and fixed is None:
        fixed = [1e5, 1e6] if x == "n" else [1e6, 1e8]
    curves = law_curves(law, x, x_range, fixed)
    if compare is not None:
        paper = law_curves(compare, x, x_range, fixed)
        curves = pd.concat([curves, paper.assign(series="paper: " + paper["series"])], ignore_index=True)
    if kind == "joint" and len(points):
        other = "d" if x == "n" else "n"
        points = points[points[other].isin(fixed)].assign(
            series=lambda p: [series_name(x, v) for v in p[other]])
    st.altair_chart(law_chart(points, curves, x), width="stretch")
    return curves


def parameter_table(law: ScalingLaw, intervals: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"parameter": name, "value": law.params[name],
                          "low": intervals.get(name, (np.nan, np.nan))[0],
                          "high": intervals.get(name, (np.nan, np.nan))[1]}
                         for name in PARAM_NAMES[law.kind]])


def export_buttons(payload: dict, table: pd.DataFrame, law: ScalingLaw, stem: str) -> None:
    text = json.dumps(json.loads(json.dumps(payload), parse_constant=lambda _: None), indent=2)
    cols = st.columns(3)
    cols[0].download_button("Export JSON", text, f"{stem}.json", "application/json", key="export_json",
                            on_click="ignore")
    cols[1].download_button("Export CSV", table.to_csv(index=False), f"{stem}.csv", "text/csv",
                            key="export_csv", on_click="ignore")
    cols[2].download_button("Export Python", law_snippet(law), f"{stem}.py", "text/x-python",
                            key="export_py", on_click="ignore")


def show_fit(fit: LawFit, kind: str, store: Store, origin: dict) -> None:
    x = chart_axis(kind)
    compare_options = [None] + [n for n, p in PRESETS.items() if p.law.kind == kind]
    compare = st.selectbox("Compare with a published fit", compare_options, key=f"fit_compare_{kind}",
                           format_func=lambda n: "none" if n is None else f"{n} ({PRESETS[n].source})")
    draw_law(fit, fit.points, x, PRESETS[compare].law if compare else None)
    if len(fit.heldout):
        st.caption("Red triangles: held-out points, predicted from the fit on the rest, with the "
                   "prediction interval for a new run.")
    st.altair_chart(residual_chart(fit.points, x), width="stretch")
    cols = st.columns(3)
    cols[0].metric("R² (fitted points)", f"{fit.r2:.4f}")
    cols[1].metric("Points fitted", int((fit.points["role"] == "fit").sum()))
    if len(fit.heldout):
        cols[2].metric("Held-out mean |error|", f"{fit.heldout['rel_error'].abs().mean():.2%}")
    st.markdown(f"`{LAW_EQUATIONS[kind]}`")
    st.dataframe(parameter_table(fit.law, fit.intervals), hide_index=True, column_config=NUMBERS)
    st.caption(f"low – high: {fit.config.level:.0%} bootstrap interval ({len(fit.bootstrap_params)} refits "
               "resampling whole configurations).")
    if len(fit.heldout):
        st.markdown("**Held-out points** (predicted from the fit on the rest)")
        columns = [c for c in HELDOUT_COLUMNS if c in fit.heldout]
        st.dataframe(fit.heldout[columns], hide_index=True, column_config=NUMBERS)
    save_form(fit, store, origin)
    export_buttons(fit.to_dict(include_bootstrap=True), fit.points, fit.law, f"fit-{kind}")


def save_form(fit: LawFit, store: Store, origin: dict) -> None:
    with st.form("fit_save"):
        name = st.text_input("Name of this fit", placeholder="e.g. msmarco human, scratch ladder",
                             key="fit_save_name")
        if st.form_submit_button("Save the fit to the store"):
            fit_id = store.save_fit(**fit_record(fit, name.strip() or None, origin))
            st.cache_data.clear()
            st.success(f"Saved as {fit_id[:8]}; the Budget planner can use it if it is a joint law.")


def show_preset() -> None:
    name = st.selectbox("Published fit", list(PRESETS), key="fit_preset",
                        format_func=lambda n: f"{n} ({PRESETS[n].source})")
    law = PRESETS[name].law
    st.markdown(f"`{LAW_EQUATIONS[law.kind]}` · R² as published: "
                f"{PRESETS[name].r2 if PRESETS[name].r2 is not None else 'not reported'}")
    x = chart_axis(law.kind)
    curve = draw_law(law, pd.DataFrame(), x, None)
    st.dataframe(parameter_table(law, {})[["parameter", "value"]], hide_index=True, column_config=NUMBERS)
    export_buttons({"law": law.kind, "params": law.params, "r2": PRESETS[name].r2,
                    "source": PRESETS[name].source, "equation": LAW_EQUATIONS[law.kind]},
                   curve, law, name)


# --- saved fits ---------------------------------------------------------------------

@st.cache_data(ttl=5, show_spinner=False)
def saved_fits(store_path: str) -> pd.DataFrame:
    fits = Store(store_path).fits()
    return fits[["fit_id", "name", "law", "r2", "params", "created_at"]] if len(fits) else fits


def manage_saved_fits(store: Store) -> None:
    fits = saved_fits(str(store.path))
    with st.expander(f"Saved fits ({len(fits)})"):
        if fits.empty:
            st.caption("None yet: fit a law above and save it.")
            return
        st.dataframe(fits.assign(params=fits["params"].map(json.dumps)), hide_index=True)
        doomed = st.multiselect("Delete fits", list(fits["fit_id"]), key="fit_delete",
                                format_func=lambda f: f"{fits.set_index('fit_id').at[f, 'name']} ({f[:6]})")
        sure = st.checkbox("Yes, delete them for good", key="fit_delete_sure", disabled=not doomed)
        if st.button("Delete", disabled=not (doomed and sure), key="fit_delete_button"):
            for fit_id in doomed:
                store.delete_fit(fit_id)
            st.cache_data.clear()
            st.rerun()


def main() -> None:
    st.set_page_config(page_title="Fit laws · Scaling-law workbench", layout="wide")
    st.title("Fit laws")
    st.caption("Fit the paper's laws with a robust loss and bootstrap intervals; hold out the largest "
               "sizes to see how well a law extrapolates.")
    store = Store()
    source = st.radio("Points from", SOURCES, horizontal=True, key="fit_source")
    if source == SOURCES[2]:
        show_preset()
        return
    kind = st.radio("Law", list(KINDS), format_func=KINDS.get, horizontal=True, key="fit_kind")
    points = store_source(str(store.path)) if source == SOURCES[0] else upload_source(store, kind)
    if points is not None:
        try:
            chosen, config = choose_points(points, kind)
            fit = cached_fit(chosen, kind, config.bootstrap, config.level, config.seed, config.holdout_largest,
                             config.holdout_axis)
        except InputError as err:
            st.error(f"Cannot fit the {kind} law: {err}")
        else:
            show_fit(fit, kind, store, {"source": source, "points": len(chosen)})
    manage_saved_fits(store)


main()
