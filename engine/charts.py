"""Altair charts of the app and the small pure conversions its pages share.

Every chart plots contrastive entropy on a log axis against N or D on a log axis, as
the paper's Figures 1-8 do. Nothing here imports Streamlit: the pages draw what these
functions return, and tests can check the tables behind a chart without a browser.
"""
from __future__ import annotations

import math
from dataclasses import asdict

import altair as alt
import numpy as np
import pandas as pd

from engine.budget import BudgetAnswer, DecisionUncertainty
from engine.fit_files import fit_from_dict
from engine.laws import LAW_EQUATIONS, FitConfig, LawFit, ScalingLaw
from engine.formatting import COUNT_LABEL_EXPR, format_count, format_loss

LOSS_TITLE = "contrastive entropy (nats)"
AXIS_TITLES = {"n": "non-embedding parameters N", "d": "annotated pairs D"}
FIT_COLOR, HELDOUT_COLOR = "#1f77b4", "#d62728"
ROLE_WORDS = {"fit": "fitted", "heldout": "held out"}     # a point's role as a legend names it
FIT_ROLE_COLORS = alt.Scale(domain=list(ROLE_WORDS.values()), range=[FIT_COLOR, HELDOUT_COLOR])
CURVE_POINTS = 120
MARKER_MARGIN = 1.04    # a log axis reaches this factor past the outermost value, so no marker is cut
LOSS_AXIS_CAP = 3.0
CATEGORY_SCHEME = "tableau10"      # distinct hues; the default theme's blues are hard to tell apart
CATEGORIES = alt.Scale(scheme=CATEGORY_SCHEME)


# --- the tables behind the law charts ------------------------------------------

def law_curves(law: LawFit | ScalingLaw, x: str, x_range: tuple[float, float],
               fixed: list[float] | None = None) -> pd.DataFrame:
    """Predicted loss along `x` ('n' or 'd') over `x_range`, one curve per value of
    the other variable in `fixed` (joint law only): columns x, series, pred and, for a
    fit with a bootstrap, ci_lo / ci_hi (the confidence band of the curve)."""
    grid = np.geomspace(*x_range, CURVE_POINTS)
    base = law.law if isinstance(law, LawFit) else law
    frames = []
    for other in fixed if base.uses_n and base.uses_d and fixed else [None]:  # joint or additive
        n, d = (grid, other) if x == "n" else (other, grid)
        args = {"n": n if base.uses_n else None, "d": d if base.uses_d else None}
        if isinstance(law, LawFit) and len(law.bootstrap_params):
            band = law.predict_interval(**args)
            frame = pd.DataFrame({"pred": band["pred"], "ci_lo": band["ci_lo"], "ci_hi": band["ci_hi"]})
        else:
            frame = pd.DataFrame({"pred": np.broadcast_to(base.predict(**args), grid.shape)})
        frame["x"] = grid
        frame["series"] = series_name(x, other)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def series_name(x: str, other: float | None) -> str:
    if other is None:
        return "law"
    return f"D = {format_count(other)}" if x == "n" else f"N = {format_count(other)}"


def padded_range(values: pd.Series, factor: float = 1.5) -> tuple[float, float]:
    """The range of `values` widened by `factor` on a log scale each way."""
    return float(values.min()) / factor, float(values.max()) * factor


def log_domain(*columns: pd.Series, margin: float = MARKER_MARGIN) -> list[float]:
    """A log axis's domain that holds every finite positive value of `columns` with
    `margin` to spare, so a marker on the outermost value is drawn whole."""
    values = pd.concat([pd.to_numeric(c, errors="coerce") for c in columns], ignore_index=True)
    values = values[np.isfinite(values) & (values > 0)]
    return [float(values.min()) / margin, float(values.max()) * margin]


# --- law charts (Figures 1, 3, 4, 6) --------------------------------------------

def log_axis(field: str, title: str, domain: list[float] | None = None) -> alt.X:
    """A log-scale size axis labelled 1k, 10M, 1B ... as `format_count` writes sizes."""
    scale = alt.Scale(type="log", nice=False, domain=domain) if domain else alt.Scale(type="log", nice=False)
    return alt.X(field, scale=scale, title=title, axis=alt.Axis(labelExpr=COUNT_LABEL_EXPR))


def law_chart(points: pd.DataFrame, curves: pd.DataFrame, x: str, title: str = "",
              reference: tuple[str, float] | None = None) -> alt.LayerChart:
    """Observed points, the fitted curve(s) dashed as in the paper with the curve's
    confidence band, and held-out points as triangles with their prediction interval
    (Figure 6's stars). Joint-law points, held-out ones too, share the colour of their
    curve. The x axis spans the curves (`residual_chart` spans the same range), the y
    axis every point and interval, each with a margin for the markers. `reference`
    (name, loss), a lexical retriever's level (engine/lexical.py), is a grey rule where
    it lies on the axis, and a line of text at the edge it lies beyond otherwise."""
    x_enc = log_axis("x:Q", AXIS_TITLES[x], [float(curves["x"].min()), float(curves["x"].max())])
    domain = law_loss_domain(points, curves, x)
    y_scale = alt.Scale(type="log", zero=False, nice=False, domain=domain)
    series = list(curves["series"].unique())           # in the order drawn: by size, not alphabet
    legend = alt.Legend(title=None, symbolType="stroke", symbolOpacity=1) if len(series) > 1 else None
    color = alt.Color("series:N", scale=alt.Scale(domain=series, scheme=CATEGORY_SCHEME), legend=legend)
    layers = []
    if "ci_lo" in curves:
        layers.append(alt.Chart(curves).mark_area(opacity=0.18, clip=True).encode(
            x=x_enc, y=alt.Y("ci_lo:Q", scale=y_scale, title=LOSS_TITLE), y2="ci_hi:Q", color=color))
    layers.append(alt.Chart(curves).mark_line(strokeDash=[6, 4], clip=True).encode(
        x=x_enc, y=alt.Y("pred:Q", scale=y_scale, title=LOSS_TITLE), color=color))
    if len(points):
        layers.extend(_point_layers(points.assign(x=points[x]), x_enc, y_scale, color))
    if reference is not None:
        layers.extend(reference_layers(*reference, domain, y_scale))
    return alt.layer(*layers).properties(title=title, height=380).interactive()


def reference_layers(name: str, level: float, domain: list[float], y_scale: alt.Scale) -> list[alt.Chart]:
    """A reference level on a loss axis of `domain`: a dotted grey rule labelled with
    its name and value, or, beyond the axis, that label at the edge with the direction."""
    inside = domain[0] <= level <= domain[1]
    where = "" if inside else (" (below the chart: better than every run)" if level < domain[0]
                               else " (above the chart: worse than every run)")
    y = level if inside else (domain[0] * 1.01 if level < domain[0] else domain[1] / 1.01)
    frame = pd.DataFrame({"y": [y], "label": [f"{name} {format_loss(level)}{where}"]})
    text = alt.Chart(frame).mark_text(align="left", baseline="bottom" if inside or level < domain[0] else "top",
                                      dx=4, dy=-2, color="#555", fontSize=11).encode(
        x=alt.value(0), y=alt.Y("y:Q", scale=y_scale), text="label:N")
    if not inside:
        return [text]
    rule = alt.Chart(frame).mark_rule(color="#777", strokeDash=[2, 3]).encode(y=alt.Y("y:Q", scale=y_scale))
    return [rule, text]


def law_loss_domain(points: pd.DataFrame, curves: pd.DataFrame, x: str) -> list[float]:
    """The loss axis of a law chart: the points, their prediction intervals and the
    curves where the points are (with a margin); where a weak law runs off beyond the
    points (40 nats left of the smallest N) the curve is cut at the edge, not drawn
    with the points squashed at the bottom. Without points: the curves."""
    if not len(points):
        return log_domain(*(curves[c] for c in ("pred", "ci_lo", "ci_hi") if c in curves))
    inside = curves[(curves["x"] >= points[x].min()) & (curves["x"] <= points[x].max())]
    return log_domain(inside["pred"], *(points[c] for c in ("loss", "pi_lo", "pi_hi") if c in points))


def _point_layers(points: pd.DataFrame, x_enc: alt.X, y_scale: alt.Scale, color: alt.Color) -> list[alt.Chart]:
    tooltip = [c for c in ("label", "n", "d", "loss", "predicted", "role") if c in points]
    y_enc = alt.Y("loss:Q", scale=y_scale)
    fitted, heldout = points[points["role"] == "fit"], points[points["role"] == "heldout"]
    by_series = "series" in points
    layers = [alt.Chart(fitted).mark_point(filled=True, size=70, opacity=0.9).encode(
        x=x_enc, y=y_enc, color=color if by_series else alt.value(FIT_COLOR), tooltip=tooltip)]
    if len(heldout):
        held_color = color if by_series else alt.value(HELDOUT_COLOR)
        layers.append(alt.Chart(heldout).mark_rule().encode(
            x=x_enc, y=alt.Y("pi_lo:Q", scale=y_scale), y2="pi_hi:Q", color=held_color))
        layers.append(alt.Chart(heldout).mark_point(filled=True, size=120, shape="triangle-up", opacity=1,
                                                    stroke="black", strokeWidth=0.6).encode(
            x=x_enc, y=y_enc, color=held_color, tooltip=tooltip))
    return layers


RESIDUAL_TITLE = ["predicted / observed", "- 1 (%)"]   # two lines: one is taller than the 220-pixel chart


def residual_chart(points: pd.DataFrame, x: str, x_range: tuple[float, float] | None = None) -> alt.LayerChart:
    """Relative error of the law at every point, in percent, against N or D, over
    `x_range` (default: that of the law chart of the same points, `padded_range`)."""
    frame = points.assign(x=points[x], error_pct=100 * points["rel_error"], point=points["role"].map(ROLE_WORDS))
    x_range = x_range or padded_range(points[x])
    low, high = float(frame["error_pct"].min()), float(frame["error_pct"].max())
    pad = max(0.1 * (high - low), 0.5)                   # percent: room for the outermost markers
    base = alt.Chart(frame).mark_point(filled=True, size=60).encode(
        x=log_axis("x:Q", AXIS_TITLES[x], [float(x_range[0]), float(x_range[1])]),
        y=alt.Y("error_pct:Q", title=RESIDUAL_TITLE,
                scale=alt.Scale(domain=[min(low, 0.0) - pad, max(high, 0.0) + pad])),
        color=alt.Color("point:N", scale=FIT_ROLE_COLORS, title="point"),
        tooltip=[c for c in ("label", "n", "d", "loss", "predicted", "error_pct") if c in frame])
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="gray").encode(y="zero:Q")
    return alt.layer(zero, base).properties(height=220)


# --- budget charts (Figures 7, 8) ------------------------------------------------

def budget_label(budget: float) -> str:
    return f"${format_count(budget)}"


def with_count_labels(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` with a `<column>_label` text column per count column, for tooltips that
    write counts as the rest of the app does (a Vega format would say 6.77G)."""
    return frame.assign(**{f"{c}_label": frame[c].map(format_count) for c in columns})


def optima_table(answers: list[BudgetAnswer], tolerance: float) -> pd.DataFrame:
    """One row per budget: the optimum and the edges of its near-optimal band."""
    return with_count_labels(pd.DataFrame([{
        "budget_label": budget_label(a.question.budget), "n_opt": a.n_opt, "d_opt": a.d_opt, "loss": a.loss,
        "band_lo": a.band[0], "band_hi": a.band[1], "band_loss": a.loss * (1 + tolerance),
    } for a in answers]), ["n_opt", "d_opt", "band_lo", "band_hi"])


def budget_chart(curves: pd.DataFrame, optima: pd.DataFrame, highlight: float,
                 decision: DecisionUncertainty | None = None,
                 support: tuple[float, float] | None = None) -> alt.LayerChart:
    """Predicted loss against N for each budget; a diamond at the optimum and a bar
    spanning the near-optimal band at the band's loss level. The axes hold the curves,
    every diamond and band, and (with `decision`, of the highlighted budget) a strip
    below them: each bootstrap law's N* as a faint tick, its interval as a black bar and
    the robust choice as a triangle (`budget_axes`). With `support` (the N range the law
    was fitted to), grey bands where the law extrapolates."""
    curves, x_domain, y_domain, strip = budget_axes(curves, optima, decision)
    curves = with_count_labels(curves, ["n", "d"]).assign(budget_label=curves["budget"].map(budget_label),
                                                          width=np.where(curves["budget"] == highlight, 3.5, 1.5))
    order = [budget_label(b) for b in sorted(curves["budget"].unique())]
    color = alt.Color("budget_label:N", scale=alt.Scale(domain=order, scheme=CATEGORY_SCHEME), title="budget")
    y_scale = alt.Scale(type="log", domain=y_domain, nice=False)
    x_scale = alt.Scale(type="log", domain=x_domain, nice=False)
    lines = alt.Chart(curves).mark_line(clip=True).encode(
        x=log_axis("n:Q", AXIS_TITLES["n"], x_domain),
        y=alt.Y("loss:Q", scale=y_scale, title=f"predicted {LOSS_TITLE}"),
        color=color, strokeWidth=alt.StrokeWidth("width:Q", legend=None),
        tooltip=[alt.Tooltip("budget_label:N", title="budget"), alt.Tooltip("n_label:N", title="N"),
                 alt.Tooltip("d_label:N", title="D"), alt.Tooltip("loss:Q", format=".4f")])
    bands = alt.Chart(optima).mark_rule(strokeWidth=6, opacity=0.5).encode(
        x=alt.X("band_lo:Q", scale=x_scale), x2="band_hi:Q", y=alt.Y("band_loss:Q", scale=y_scale), color=color)
    dots = alt.Chart(optima).mark_point(filled=True, size=120, shape="diamond", stroke="black",
                                        strokeWidth=0.8, opacity=1).encode(
        x=alt.X("n_opt:Q", scale=x_scale), y=alt.Y("loss:Q", scale=y_scale), color=color,
        tooltip=[alt.Tooltip("budget_label:N", title="budget"), alt.Tooltip("n_opt_label:N", title="N*"),
                 alt.Tooltip("d_opt_label:N", title="D*"), alt.Tooltip("loss:Q", format=".4f"),
                 alt.Tooltip("band_lo_label:N", title="band from"),
                 alt.Tooltip("band_hi_label:N", title="band to")])
    layers = [lines, bands, dots]
    if support is not None:
        layers.insert(0, support_shading(support, tuple(x_domain)))
    if decision is not None:
        layers += n_opt_spread(decision, strip, y_scale, x_scale)
    return alt.layer(*layers).properties(height=440)


STRIP_SHARE = 0.12    # of the loss axis's (log) height: the strip under the curves for the N* spread
MIN_LOSS_SPAN = 0.02  # log units: a loss axis at least this tall, so a flat law's curves are told apart


def budget_axes(curves: pd.DataFrame, optima: pd.DataFrame,
                decision: DecisionUncertainty | None) -> tuple[pd.DataFrame, list[float], list[float], float]:
    """(curves cut at LOSS_AXIS_CAP times the worst optimum, the N domain, the loss
    domain, the loss of the N* strip). The loss axis spans the curves, diamonds and bands
    (where a budget runs out of data the loss explodes: drawing that flattens the rest),
    plus a strip below them for the N* spread; the N axis spans the curves, the bands,
    the optima and the spread, so no marker sits on an edge."""
    curves = curves[curves["loss"] <= LOSS_AXIS_CAP * optima["loss"].max()]
    low = float(min(curves["loss"].min(), optima["loss"].min()))
    high = float(max(curves["loss"].max(), optima["band_loss"].max()))
    span = max(np.log(high / low), MIN_LOSS_SPAN)
    strip = low * np.exp(-STRIP_SHARE * span) if decision is not None else low
    bottom = strip * np.exp(-0.5 * STRIP_SHARE * span) if decision is not None else low
    y_domain = [bottom / MARKER_MARGIN, high * MARKER_MARGIN]
    n_columns = [curves["n"], optima["n_opt"], optima["band_lo"], optima["band_hi"]]
    if decision is not None:
        n_columns += [pd.Series(decision.n_opt_samples), pd.Series([decision.n_robust, *decision.n_opt_interval])]
    return curves, log_domain(*n_columns), y_domain, float(strip)


BEYOND_SUPPORT_COLOR = "#7f7f7f"


def beyond_support(support: tuple[float, float], domain: tuple[float, float]) -> pd.DataFrame:
    """The stretches of an axis over `domain` outside the fitted `support`: columns
    start, end, side; empty when the support covers the domain."""
    lo, hi = domain
    rows = [{"start": lo, "end": min(support[0], hi), "side": "below the fitted sizes"},
            {"start": max(support[1], lo), "end": hi, "side": "beyond the fitted sizes"}]
    return pd.DataFrame([r for r in rows if r["end"] > r["start"]], columns=["start", "end", "side"])


def support_shading(support: tuple[float, float], domain: tuple[float, float]) -> alt.Chart:
    """Grey bands over the parts of a size axis where the law extrapolates."""
    return alt.Chart(beyond_support(support, domain)).mark_rect(opacity=0.12, color=BEYOND_SUPPORT_COLOR).encode(
        x="start:Q", x2="end:Q", tooltip=[alt.Tooltip("side:N", title="outside the fit's points")])


SPREAD_BINS = 48   # ticks of the N* spread: one per log bin, not one per law (a chart of 1,000 rows renders slowly)


def n_opt_histogram(n_opt_samples: np.ndarray, bins: int = SPREAD_BINS) -> pd.DataFrame:
    """N* of the bootstrap laws in log-spaced bins: columns n (the bin's geometric
    centre), share (of the laws), n_label; empty bins left out."""
    logs = np.log(n_opt_samples)
    counts, edges = np.histogram(logs, bins=bins if np.ptp(logs) > 0 else 1)
    centres = np.exp((edges[:-1] + edges[1:]) / 2)
    keep = counts > 0
    return with_count_labels(pd.DataFrame({"n": centres[keep], "share": counts[keep] / len(logs)}), ["n"])


def n_opt_spread(decision: DecisionUncertainty, at_loss: float, y_scale: alt.Scale,
                 x_scale: alt.Scale | None = None) -> list[alt.Chart]:
    """Layers at height `at_loss`: the bootstrap laws' N* as ticks whose darkness is the
    share of laws in each log bin, the N* interval as a bar, the robust choice as a triangle."""
    y = alt.Y("loss:Q", scale=y_scale)
    x_scale = x_scale or alt.Scale(type="log")
    ticks = alt.Chart(n_opt_histogram(decision.n_opt_samples).assign(loss=at_loss)).mark_tick(
        thickness=2, size=14, color="black").encode(
        x=alt.X("n:Q", scale=x_scale), y=y, opacity=alt.Opacity("share:Q", scale=alt.Scale(range=[0.08, 0.9]), legend=None),
        tooltip=[alt.Tooltip("n_label:N", title="N*"), alt.Tooltip("share:Q", format=".1%", title="of the laws")])
    lo, hi = decision.n_opt_interval
    summary = with_count_labels(pd.DataFrame([{"lo": lo, "hi": hi, "n_robust": decision.n_robust,
                                               "loss": at_loss}]), ["lo", "hi", "n_robust"])
    bar = alt.Chart(summary).mark_rule(strokeWidth=2, color="black").encode(
        x=alt.X("lo:Q", scale=x_scale), x2="hi:Q", y=y, tooltip=[alt.Tooltip("lo_label:N", title=f"{decision.level:.0%} N* interval from"),
                                           alt.Tooltip("hi_label:N", title="to")])
    robust = alt.Chart(summary).mark_point(shape="triangle-up", size=110, filled=True, color="black").encode(
        x=alt.X("n_robust:Q", scale=x_scale), y=y, tooltip=[alt.Tooltip("n_robust_label:N", title="robust N")])
    return [ticks, bar, robust]


# --- training progress ----------------------------------------------------------

def training_curve(frame: pd.DataFrame, column: str, title: str) -> alt.Chart:
    """`column` against step, with a dot per value so that one evaluation shows."""
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("step:Q", title="step", axis=alt.Axis(labelExpr=COUNT_LABEL_EXPR)),
        y=alt.Y(f"{column}:Q", title=title, scale=alt.Scale(zero=False)),
        tooltip=["step:Q", alt.Tooltip(f"{column}:Q", format=".4f")]).properties(height=180)


# --- analysis charts (Figures 2, 5) ---------------------------------------------

def metric_chart(frame: pd.DataFrame, metric: str, color: str | None = None,
                 entropy: str = "contrastive entropy") -> alt.LayerChart:
    """A ranking metric against contrastive entropy (`entropy` names which) with a least-squares line."""
    base = alt.Chart(frame).encode(
        x=alt.X("contrastive_entropy:Q", scale=alt.Scale(zero=False), title=f"{entropy} (nats)"),
        y=alt.Y(f"{metric}:Q", title=metric))
    dots = base.mark_point(filled=True, size=60).encode(
        color=alt.Color(f"{color}:N", scale=CATEGORIES) if color else alt.value(FIT_COLOR),
        tooltip=[c for c in ("label", "model", "run_id", "step", "contrastive_entropy", metric) if c in frame])
    trend = base.transform_regression("contrastive_entropy", metric).mark_line(color="gray", strokeDash=[6, 4])
    return alt.layer(dots, trend).properties(height=320)


def annotation_chart(points: pd.DataFrame, curves: pd.DataFrame) -> alt.LayerChart:
    """Data-size law per annotation type (Figure 5): observed points, the fitted
    curves dashed, and each curve's confidence band (`engine.analysis.annotation_curves`).
    The loss axis spans the points and curves; a band that widens past them (a law
    extrapolated below its smallest D) is cut at the edge rather than flattening the rest."""
    color = alt.Color("annotation:N", scale=CATEGORIES,
                      legend=alt.Legend(title="annotation", symbolType="stroke", symbolOpacity=1))
    x = log_axis("d:Q", AXIS_TITLES["d"])
    y_scale = alt.Scale(type="log", zero=False, nice=False, domain=log_domain(points["loss"], curves["loss"]))
    band = alt.Chart(curves).mark_area(opacity=0.15, clip=True).encode(
        x=x, y=alt.Y("ci_lo:Q", scale=y_scale, title=LOSS_TITLE), y2="ci_hi:Q", color=color)
    lines = alt.Chart(curves).mark_line(strokeDash=[6, 4]).encode(
        x=x, y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE), color=color)
    dots = alt.Chart(points).mark_point(filled=True, size=60).encode(
        x=x, y=alt.Y("loss:Q", scale=y_scale), color=color,
        tooltip=[c for c in ("annotation", "label", "n", "d", "loss") if c in points])
    return alt.layer(band, lines, dots).properties(height=380).interactive()


# --- exports and saved fits (LawFit <-> the store's fit record) -------------------

def law_snippet(law: ScalingLaw, title: str = "") -> str:
    """A few lines of Python that evaluate `law` (the fit named by `title`), for a
    notebook or a paper."""
    formula = {"model": "(A / n) ** alpha + delta", "data": "(B / d) ** beta + delta",
               "joint": "((A / n) ** (alpha / beta) + B / d) ** beta + delta",
               "additive": "E + A / n ** alpha + B / d ** beta"}[law.kind]
    args = {"model": "n", "data": "d"}.get(law.kind, "n, d")
    example = {"model": "1e8", "data": "1e5"}.get(law.kind, "1e8, 1e5")
    constants = "\n".join(f"{name} = {value!r}" for name, value in law.params.items())
    title = title.replace('"', "'").replace("\\", "/")   # inside the docstring
    return (f'"""{LAW_EQUATIONS[law.kind]}: contrastive entropy (nats) of a dense retriever\n'
            f'with n non-embedding parameters trained on d annotated pairs.'
            + (f"\nFit: {title}." if title else "") + f'"""\n{constants}\n\n\n'
            f"def contrastive_entropy({args}):\n    return {formula}\n\n\n"
            f"print(contrastive_entropy({example}))\n")


def fit_record(fit: LawFit, name: str | None, origin: dict) -> dict:
    """Keyword arguments of `Store.save_fit` for `fit`; the bootstrap and residuals
    travel in `config` so a loaded fit still gives prediction intervals."""
    data = fit.to_dict(include_bootstrap=True)
    return {
        "law": data["law"], "params": data["params"], "intervals": data["intervals"],
        "r2": data["r2"] if math.isfinite(data["r2"]) else None, "points": data["points"],
        "config": {"fit": asdict(fit.config), "bootstrap": data["bootstrap"],
                   "log_residuals": data["log_residuals"], "origin": origin},
        "name": name,
    }


def law_fit_from_record(record: dict) -> LawFit:
    """The LawFit behind a saved fit record (`Store.fit` / a row of `Store.fits`)."""
    config = record.get("config") or {}
    fit_config = config.get("fit") or {}
    r2 = record.get("r2")
    return fit_from_dict({
        "law": record["law"], "params": record["params"],
        "r2": math.nan if r2 is None or not math.isfinite(r2) else float(r2),
        "intervals": record.get("intervals") or {}, "points": record.get("points") or [],
        "config": {k: v for k, v in fit_config.items() if k in FitConfig.__dataclass_fields__},
        "bootstrap": config.get("bootstrap") or [], "log_residuals": config.get("log_residuals") or [0.0],
    })
