"""Fit laws: the model-size (Eq. 6), data-size (Eq. 7) or joint law (Eq. 8) fitted to
runs in the store, an uploaded CSV, or shown as the paper published it; chart,
residuals, parameters with intervals, held-out check, save and export.

The fit settings sit in a form: nothing is refitted until **Fit** is pressed, the
bootstrap shows its progress, and the last fit stays on screen (session state) while
a new one computes."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from engine.charts import fit_record, law_chart, law_curves, law_snippet, padded_range, residual_chart, series_name
from engine.errors import InputError, in_words
from engine.identifiability import compare_laws, identifiability
from engine.laws import JOINT_KINDS, LAW_EQUATIONS, PARAM_NAMES, PRESETS, FitConfig, LawFit, ScalingLaw, fit_law
from engine.lexical import reference_of_points
from engine.formatting import format_coefficient, format_count, format_loss, format_percent, format_r2, formatted_table
from engine.point_selection import (ALL, Choice, held_fixed, leave_out, no_better_than_random, of_protocol,
                                    point_names, points_digest, protocol_groups, value_choice, where, where_any)
from engine.report import chart_png, chart_svg, fit_charts, fit_document, refits_kept
from store import Store
from store.table_import import DELIMITER_NAMES, check_csv_bytes

SOURCES = ("Runs in the store", "Upload a CSV", "Paper presets")
KINDS = {"model": "Model size, Eq. 6", "data": "Data size, Eq. 7", "joint": "Joint, Eq. 8",
         "additive": "Additive, E + A/N^α + B/D^β"}
X_OF_KIND = {"model": "n", "data": "d"}
MAX_JOINT_CURVES = 8
METRIC_NAMES = {"raw": "raw contrastive entropy (the paper's)", "calibrated": "calibrated contrastive entropy"}
HELDOUT_COLUMNS = ("label", "n", "d", "loss", "predicted", "rel_error", "pi_lo", "pi_hi", "eval_protocol")
COEFFICIENTS = ("value", "low", "high")
LOSSES = ("loss", "predicted", "pi_lo", "pi_hi")
LAST_FIT = "fit_last"       # session state: the fit on screen, kept while a new one computes
LAST_COMPARISON = "fit_last_comparison"   # session state: the joint forms compared on the points of that fit
PROGRESS_EVERY = 10         # bootstrap refits between two updates of the progress bar
SHOWN_REJECTED = 10


@dataclass
class FitRequest:
    """What the form asks to fit, and where its points come from (named in exports)."""

    kind: str
    points: pd.DataFrame          # the points fitted and held out; left-out points removed
    config: FitConfig
    about: dict                   # source, data set, filters, left-out points: JSON-able

    @property
    def key(self) -> str:
        """Equal for equal requests: a rerun with unchanged settings fits nothing."""
        digest = hashlib.sha256(pd.util.hash_pandas_object(self.points, index=False).to_numpy().tobytes())
        digest.update(json.dumps([self.kind, asdict(self.config)], sort_keys=True).encode())
        return digest.hexdigest()


# --- data -------------------------------------------------------------------------

@st.cache_data(ttl=5, show_spinner=False)
def store_law_points(store_path: str, metric: str = "raw") -> pd.DataFrame:
    return Store(store_path).law_points(metric=metric)


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

def store_source(store_path: str) -> tuple[pd.DataFrame, dict] | None:
    """The store's points of one data set and annotation type (by default the most
    common of each, not a mix), and those filters."""
    metric = st.selectbox("Metric", list(METRIC_NAMES), format_func=METRIC_NAMES.get, key="fit_metric",
                          help="Raw: Eq. 5 as the paper computes it. Calibrated: Eq. 5 at a temperature "
                               "cross-fitted at each evaluation, so a model is not punished for its score scale.")
    points = store_law_points(store_path, metric)
    if points.empty and metric == "calibrated":
        st.info("No completed run in the store has a calibrated entropy (runs trained before it, imports "
                "and the demo study have none): fit the raw entropy, or train runs now.")
        return None
    if points.empty:
        st.info("No completed runs in the store yet. Train some on the **Runs** page, import results "
                "(`python -m store import results.csv`), upload a CSV here, or look at the paper presets.")
        return None
    about = {"source": "store", "metric": metric}
    cols = st.columns(2)
    for col, column, label in zip(cols, ("dataset", "annotation"), ("Data set", "Annotation type")):
        choice = value_choice(points, column, with_all=True) or Choice([ALL])
        about[column] = col.selectbox(label, choice.options, index=choice.default, key=f"fit_{column}")
        points = where(points, column, about[column])
    return points, about


def upload_source(store: Store) -> tuple[pd.DataFrame, dict] | None:
    """The good rows of an uploaded CSV; bad rows are listed by their line in the file."""
    upload = st.file_uploader("CSV with columns n, d, loss (and optional label)", type=["csv"],
                              key="fit_upload")
    if upload is None:
        st.info("Upload a CSV of your results: one row per run, columns `n` (non-embedding parameters), "
                "`d` (annotated pairs), `loss` (contrastive entropy), optional `label`.")
        return None
    data = upload.getvalue()
    try:
        checked = check_csv_bytes(upload.name, data)
    except InputError as err:
        st.error(f"Cannot use {upload.name}: {in_words(err)}")
        return None
    show_rejected(upload.name, checked.rejected, len(checked.good))
    if checked.delimiter != ",":
        st.caption(f"{upload.name} read as {DELIMITER_NAMES[checked.delimiter]}-separated"
                   + (", its decimal commas as decimal points (2,5 as 2.5)." if checked.decimal_commas else "."))
    if not checked.good:
        st.error(f"Cannot use {upload.name}: none of its rows is usable (see above).")
        return None
    if st.button("Import these rows into the store", key="fit_import"):
        try:
            import_upload(store, data, upload.name)
        except InputError as err:
            st.error(in_words(err))
    frame = pd.DataFrame([row for _, row in checked.good]).drop(columns="metrics")
    return frame, {"source": "upload", "file": upload.name}


def show_rejected(name: str, rejected: list[tuple[int, str]], good: int) -> None:
    if not rejected:
        return
    lines = "\n".join(f"- line {line}: {reason}" for line, reason in rejected[:SHOWN_REJECTED])
    more = f"\n- and {len(rejected) - SHOWN_REJECTED} more" if len(rejected) > SHOWN_REJECTED else ""
    st.warning(f"{len(rejected)} of {len(rejected) + good} rows of {name} are left out (line 1 is the "
               f"header):\n{lines}{more}")


def one_protocol(points: pd.DataFrame, about: dict) -> pd.DataFrame:
    """The points of one evaluation protocol (engine/eval_protocol.py; by default the most
    common): a fit over points measured differently is refused."""
    groups = protocol_groups(points).set_index("protocol")
    chosen = st.selectbox("Evaluation protocol", list(groups.index),
                          key="fit_protocol_" + "_".join(groups.index),  # other data, other protocols: their default
                          format_func=lambda p: f"{p} ({groups.at[p, 'points']} runs): {groups.at[p, 'description']}",
                          help="Runs measured with other negatives, repeats, pool, test pairs, lengths or "
                               "precision are not one curve: fit one protocol at a time.")
    about["protocol"] = chosen
    return of_protocol(points, chosen)


def slice_for_kind(points: pd.DataFrame, kind: str, about: dict) -> pd.DataFrame:
    """A one-variable law holds the other variable fixed; let the user pick which value."""
    fixed = held_fixed(points, kind)
    if fixed is None:
        return points
    column, choice = fixed
    label = "Data size D held fixed" if column == "d" else "Model size N held fixed"
    value = st.selectbox(label, choice.options, index=choice.default, format_func=format_count,
                         key=f"fit_fixed_{kind}")
    about[f"{column} held fixed"] = int(value)
    return where(points, column, value)


def fit_settings(points: pd.DataFrame, kind: str, about: dict) -> tuple[FitRequest, bool]:
    """The form: points to leave out, the held-out check, bootstrap and level; returns
    the request it describes and whether **Fit** was pressed."""
    points = slice_for_kind(points, kind, about).reset_index(drop=True)
    names = point_names(points)
    random_level = names[no_better_than_random(points)]
    with st.form("fit_settings"):
        left_out = st.multiselect("Leave points out of the fit", list(names), default=list(random_level),
                                  key=f"fit_leave_out_{kind}_{points_digest(points)}",  # a choice per set of points
                                  help="e.g. a run that diverged; left-out points are not drawn. Runs whose entropy "
                                       "is no better than a random scorer's (>= log(1 + k) of their evaluation's k, "
                                       "log 257 = 5.549 where k is not recorded) start left out.")
        chosen, dropped = leave_out(points, names, left_out)
        size_column = "d" if kind == "data" else "n"
        with st.expander("Held-out check and fit settings"):
            axis = "auto"
            if kind in JOINT_KINDS:
                size_column = axis = st.radio("Hold out along", ["n", "d"], horizontal=True,
                                              key="fit_holdout_axis",
                                              format_func={"n": "model size", "d": "data size"}.get)
            distinct = chosen[size_column].nunique() if size_column in chosen else 0
            holdout = st.number_input(f"Hold out the k largest {'data sizes' if size_column == 'd' else 'models'}",
                                      0, max(distinct - 1, 0), 0, key=f"fit_holdout_{kind}",
                                      help="Fit on the rest and predict these, as the paper's Figure 6 does")
            bootstrap = st.number_input("Bootstrap refits", 0, 2000, 500, 100, key="fit_bootstrap")
            level = st.slider("Interval level", 0.80, 0.99, 0.95, 0.01, key="fit_level")
            seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="fit_seed")
        submitted = st.form_submit_button("Fit", type="primary", key="fit_submit")
    config = FitConfig(bootstrap=int(bootstrap), level=level, seed=int(seed), holdout_largest=int(holdout),
                       holdout_axis=axis)
    about = {**about, "law": kind, "left_out": json.loads(dropped.to_json(orient="records")),
             "held_out": f"largest {int(holdout)} {size_column}" if holdout else "none"}
    return FitRequest(kind, chosen, config, about), submitted


def fit_with_progress(request: FitRequest) -> dict:
    """Fit the request with a progress bar over the bootstrap; the result as kept in
    session state."""
    with st.status(f"Fitting the {request.kind} law to {len(request.points)} points ...", expanded=True) as status:
        bar = st.progress(0.0, text="fitting the law")

        def report(done: int, total: int) -> None:
            if done % PROGRESS_EVERY == 0 or done == total:
                bar.progress(done / total, text=f"bootstrap refit {done:,} of {total:,}")

        st.caption("Changing a setting outside the form, or the page's Stop button, abandons this fit.")
        try:
            fit = fit_law(request.points, request.kind, request.config, progress=report)
        except InputError:
            status.update(label=f"The {request.kind} law could not be fitted", state="error")
            raise
        status.update(label=f"Fitted: {refits_kept(fit)}", state="complete", expanded=False)
    fitted_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"key": request.key, "fit": fit, "kind": request.kind, "about": {**request.about, "fitted_at": fitted_at}}


def show_current_fit(request: FitRequest, submitted: bool, store: Store) -> None:
    """Fit when **Fit** is pressed (or on the first visit); the last fit stays on screen,
    marked as out of date, until its replacement is ready."""
    last = st.session_state.get(LAST_FIT)
    fresh = last is not None and last["key"] == request.key
    working = st.container()
    needs_fit = not fresh and (submitted or last is None)
    notice = st.empty()
    if last is not None and not fresh:
        notice.info("The result below is for earlier settings: " +
                    ("it stays here until the new fit is ready." if needs_fit else "press **Fit** to refit."))
    if last is not None:
        show_fit(last, store)
    if not needs_fit:
        return
    with working:
        try:
            st.session_state[LAST_FIT] = fit_with_progress(request)
        except InputError as err:
            st.error(f"Cannot fit the {request.kind} law: {in_words(err)}")
            if last is not None:
                notice.info("The result below is for earlier settings: the new fit failed (see above).")
            return
    st.rerun()


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


def draw_law(law: LawFit | ScalingLaw, points: pd.DataFrame, x: str, compare: ScalingLaw | None,
             reference: tuple[str, float] | None = None) -> pd.DataFrame:
    """Chart the law (and `compare`, and a lexical `reference` level) over the points;
    return the curves drawn."""
    kind = (law.law if isinstance(law, LawFit) else law).kind
    x_range = padded_range(points[x]) if len(points) else ((3e5, 1e9) if x == "n" else (1e3, 1e7))
    fixed = joint_series(points, x) if kind in JOINT_KINDS and len(points) else None
    if kind in JOINT_KINDS and fixed is None:
        fixed = [1e5, 1e6] if x == "n" else [1e6, 1e8]
    curves = law_curves(law, x, x_range, fixed)
    if compare is not None:
        paper = law_curves(compare, x, x_range, fixed)
        curves = pd.concat([curves, paper.assign(series="paper: " + paper["series"])], ignore_index=True)
    if kind in JOINT_KINDS and len(points):
        other = "d" if x == "n" else "n"
        points = where_any(points, other, fixed).assign(
            series=lambda p: [series_name(x, v) for v in p[other]])
    st.altair_chart(law_chart(points, curves, x, reference=reference), width="stretch")
    return curves


def bm25_reference(points: pd.DataFrame, store: Store, metric: str) -> tuple[tuple[str, float] | None, str]:
    """BM25 on the fitted runs' own protocol: the level to draw (None without one) and
    the caption under the chart saying where the runs stand against it."""
    found = reference_of_points(store.references(), points, metric)
    if found is None:
        return None, ("No BM25 reference for these points' data set and protocol yet: `python -m engine references` "
                      "measures one for every protocol of the store's runs.")
    name, level, metrics = found
    below = int((points["loss"] < level).sum())
    return (name, level), (f"Grey: {name} on the same test pairs and negatives, {metric} entropy "
                           f"{format_loss(level)} (MRR@10 {format_loss(metrics.get('mrr@10'))}). {below} of "
                           f"{len(points)} runs here are below it, so "
                           f"{'no dense run beats' if below == 0 else 'these beat'} word overlap.")


def parameter_table(law: ScalingLaw, intervals: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"parameter": name, "value": law.params[name],
                          "low": intervals.get(name, (np.nan, np.nan))[0],
                          "high": intervals.get(name, (np.nan, np.nan))[1]}
                         for name in PARAM_NAMES[law.kind]])


def fit_title(about: dict) -> str:
    """A fit in words: its law, data set and filters, left-out and held-out points, date."""
    parts = [f"{about['law']} law", about.get("file") or about.get("source", "")]
    parts += [f"{k} {about[k]}" for k in ("dataset", "annotation", "metric", "protocol") if about.get(k)]
    parts += [f"{k} = {format_count(v)}" for k, v in about.items() if k.endswith("held fixed")]
    parts += [f"{len(about.get('left_out', []))} left out", f"held out: {about.get('held_out', 'none')}"]
    return ", ".join(p for p in parts if p) + (f" ({about['fitted_at']})" if about.get("fitted_at") else "")


def export_stem(about: dict) -> str:
    """A file name that tells fits apart: law, data set, filters and the time of the fit."""
    parts = [about["law"], about.get("dataset") or about.get("file", ""), about.get("annotation", ""),
             *(f"{k[0]}{v}" for k, v in about.items() if k.endswith("held fixed")),
             about.get("fitted_at", "")]
    words = (re.sub(r"[^A-Za-z0-9.]+", "-", str(p).removesuffix(".csv")).strip("-") for p in parts)
    return "fit-" + "-".join(w for w in words if w and w != "all")


def export_buttons(payload: dict, table: pd.DataFrame, law: ScalingLaw, stem: str, title: str) -> None:
    text = json.dumps(json.loads(json.dumps(payload), parse_constant=lambda _: None), indent=2)
    cols = st.columns(3)
    cols[0].download_button("Export JSON", text, f"{stem}.json", "application/json", key="export_json",
                            on_click="ignore")
    cols[1].download_button("Export CSV", table.to_csv(index=False), f"{stem}.csv", "text/csv",
                            key="export_csv", on_click="ignore")
    cols[2].download_button("Export Python", law_snippet(law, title), f"{stem}.py", "text/x-python",
                            key="export_py", on_click="ignore")


def report_buttons(fit: LawFit, about: dict, x: str) -> None:
    """The fit's report, as one HTML file or as Markdown with its figures (zip), and its
    charts as SVG and PNG; each is rendered only when its button is pressed."""
    stem = export_stem(about)
    document = fit_document(fit, fit_title(about), fit_charts(fit, x), LAW_EQUATIONS[fit.law.kind])
    cols = st.columns(3)
    cols[0].download_button("Report (HTML)", document.html, f"{stem}.html", "text/html", key="report_html",
                            on_click="ignore")
    cols[1].download_button("Report (Markdown + figures, zip)", document.zip_bytes, f"{stem}-report.zip",
                            "application/zip", key="report_zip", on_click="ignore")
    cols = st.columns(4)
    for i, (name, chart) in enumerate(document.charts.items()):
        cols[2 * i].download_button(f"{name.capitalize()} chart (SVG)", lambda c=chart: chart_svg(c),
                                    f"{stem}-{name}.svg", "image/svg+xml", key=f"chart_svg_{name}", on_click="ignore")
        cols[2 * i + 1].download_button(f"{name.capitalize()} chart (PNG)", lambda c=chart: chart_png(c),
                                        f"{stem}-{name}.png", "image/png", key=f"chart_png_{name}", on_click="ignore")


def fit_table(fit: LawFit, about: dict) -> pd.DataFrame:
    """The points of the fit (fitted, held out and left out) with what the fit was."""
    left_out = pd.DataFrame(about.get("left_out", [])).assign(role="left out")
    return pd.concat([fit.points, left_out], ignore_index=True).assign(fit=fit_title(about))


def show_fit(result: dict, store: Store) -> None:
    fit, kind, about = result["fit"], result["kind"], result["about"]
    st.markdown(f"**Fit:** {fit_title(about)}")
    x = chart_axis(kind)
    compare_options = [None] + [n for n, p in PRESETS.items() if p.law.kind == kind]
    compare = st.selectbox("Compare with a published fit", compare_options, key=f"fit_compare_{kind}",
                           format_func=lambda n: "none" if n is None else f"{n} ({PRESETS[n].source})")
    reference, reference_note = bm25_reference(fit.points, store, about.get("metric", "raw")) \
        if about.get("source") == "store" else (None, "")
    curves = draw_law(fit, fit.points, x, PRESETS[compare].law if compare else None, reference)
    if reference_note:
        st.caption(reference_note)
    if len(fit.heldout):
        st.caption("Triangles: held-out points (coloured by their curve in the joint view), predicted from the "
                   "fit on the rest, with the prediction interval for a new run.")
    st.altair_chart(residual_chart(fit.points, x, (curves["x"].min(), curves["x"].max())), width="stretch")
    cols = st.columns(3)
    cols[0].metric("R² (fitted points)", format_r2(fit.r2))
    cols[1].metric("Points fitted", int((fit.points["role"] == "fit").sum()))
    if len(fit.heldout):
        cols[2].metric("Held-out mean |error|", format_percent(fit.heldout["rel_error"].abs().mean()))
    st.markdown(f"`{LAW_EQUATIONS[kind]}`")
    st.dataframe(formatted_table(parameter_table(fit.law, fit.intervals), coefficients=COEFFICIENTS), hide_index=True)
    st.caption(f"low – high: {fit.config.level:.0%} bootstrap interval, resampling whole configurations "
               f"({refits_kept(fit)}).")
    if len(fit.bootstrap_params):
        st.info(identifiability(fit).sentence())
    if len(fit.heldout):
        st.markdown("**Held-out points** (predicted from the fit on the rest)")
        columns = [c for c in HELDOUT_COLUMNS if c in fit.heldout]
        st.dataframe(formatted_table(fit.heldout[columns], counts=("n", "d"), losses=LOSSES,
                                     percents=("rel_error",)), hide_index=True)
    if kind in JOINT_KINDS:
        show_comparison(fit, x, result["key"])
    save_form(fit, store, about)
    export_buttons({"fit": fit_title(about), **about, **fit.to_dict(include_bootstrap=True)}, fit_table(fit, about),
                   fit.law, export_stem(about), fit_title(about))
    report_buttons(fit, about, x)


def show_comparison(fit: LawFit, x: str, key: str) -> None:
    """Eq. 8 and the additive form fitted the same way to the same points, judged side
    by side, with both curves; computed on request and kept for this fit."""
    st.markdown("**Rival joint forms on the same points**")
    kept = st.session_state.get(LAST_COMPARISON)
    if not (kept and kept["key"] == key):
        st.caption("Fits Eq. 8 and the additive form of Hoffmann et al. the same way (Huber on log L, many "
                   "starts) and judges each by R², AIC and BIC on the log residuals and the error on the largest "
                   "N and D when fitted without them.")
        if not st.button("Compare the joint forms", key="fit_compare_forms"):
            return
        with st.spinner("Fitting both forms, with and without their largest sizes ..."):
            compared = compare_laws(fit.points[["n", "d", "loss"]], config=FitConfig(
                huber_scale=fit.config.huber_scale, bootstrap=0, seed=fit.config.seed))
        kept = st.session_state[LAST_COMPARISON] = {"key": key, "compared": compared}
    compared = kept["compared"]

    def held(c, axis: str) -> str:
        out = c.leave_largest_out[axis]
        return "n/a" if out is None else f"{format_percent(out['mean_abs_error'])} (max {format_percent(out['max_abs_error'])})"

    st.dataframe(pd.DataFrame([{
        "form": KINDS[c.fit.law.kind], "R²": format_r2(c.fit.r2), "AIC": f"{c.aic:.1f}", "BIC": f"{c.bic:.1f}",
        "largest N, fitted without it": held(c, "n"), "largest D, fitted without it": held(c, "d"),
        "parameters": ", ".join(f"{k} = {format_coefficient(v)}" for k, v in c.fit.law.params.items()),
    } for c in compared]), hide_index=True)
    other = "d" if x == "n" else "n"
    at = float(fit.points[other].max())
    curves = pd.concat([law_curves(c.fit.law, x, padded_range(fit.points[x]), [at]).assign(
        series=KINDS[c.fit.law.kind]) for c in compared], ignore_index=True)
    points = where(fit.points, other, at).drop(columns="series", errors="ignore")
    st.altair_chart(law_chart(points, curves, x, f"both forms at {other.upper()} = {format_count(at)}"),
                    width="stretch")
    st.caption("Lower AIC or BIC is better; a difference under about 2 does not tell the forms apart. "
               "Plan with either on the Budget planner: save a fit of each form.")


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
    st.markdown(f"`{LAW_EQUATIONS[law.kind]}` · R² as published: {format_r2(PRESETS[name].r2)}")
    x = chart_axis(law.kind)
    curve = draw_law(law, pd.DataFrame(), x, None)
    st.dataframe(formatted_table(parameter_table(law, {})[["parameter", "value"]], coefficients=COEFFICIENTS),
                 hide_index=True)
    export_buttons({"law": law.kind, "params": law.params, "r2": PRESETS[name].r2,
                    "source": PRESETS[name].source, "equation": LAW_EQUATIONS[law.kind]},
                   curve, law, f"preset-{name}", f"{name} ({PRESETS[name].source})")


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
        st.dataframe(fits.assign(params=fits["params"].map(
            lambda params: ", ".join(f"{k} = {format_coefficient(v)}" for k, v in params.items())),
            r2=fits["r2"].map(format_r2)), hide_index=True)
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
    chosen = store_source(str(store.path)) if source == SOURCES[0] else upload_source(store)
    if chosen is not None:
        points, about = chosen
        points = one_protocol(points, about)
        try:
            request, submitted = fit_settings(points, kind, about)
        except InputError as err:
            st.error(f"Cannot fit the {kind} law: {in_words(err)}")
        else:
            show_current_fit(request, submitted, store)
    manage_saved_fits(store)


main()
