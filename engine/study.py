"""A scaling study's report: Eq. 6, 7 and 8 fitted to its runs, how well each law
extrapolates to what it did not see (the largest model, the largest data size), the
data-size law of each annotation type, and how contrastive entropy tracks the ranking
metrics (the paper's Section 3.5). Figures are the app's charts, saved as SVG.

    python -m engine study [--source demo] [--out docs/study]

Input is one row per completed run: n, d, loss (best contrastive entropy), dataset,
annotation, model and the ranking-metric columns, as `Store.runs` or the demo file
give them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from engine.analysis import (RANKING_METRICS, annotation_curves, entropy_of_metrics, exchange_rate,
                             fit_annotation_laws, metric_correlations)
from engine.budget import (BudgetQuestion, CostAssumptions, budget_curves, decision_uncertainty, extrapolation,
                           format_factor, optimise)
from engine.errors import InputError
from engine.identifiability import identifiability
from engine.laws import EXTRAPOLATION_WARNING, PARAM_NAMES, FitConfig, LawFit, fit_law
from engine.eval_protocol import DEFAULT_NEGATIVES, METRICS, describe, fingerprints_of, protocol_id, random_scorer_levels

REFERENCE_ANNOTATION = "human"
RANDOM_SCORER_LOSS = float(np.log(1 + DEFAULT_NEGATIVES))  # Eq. 5 at k = 256 (a run's own: engine.eval_protocol)


@dataclass(frozen=True)
class StudyConfig:
    """Which rows make the main study and how laws are fitted; stored with a report."""

    dataset: str = "squad-dev"
    bootstrap: int = 500
    seed: int = 0
    budgets: tuple[float, ...] = (1_000.0, 3_000.0, 10_000.0)  # $, for the budget figure
    budget_with_inference: bool = True
    budget_corpus_pages: float = 1e8  # the budget figure's inference corpus (the paper's: 3e13 pages)
    # a run whose best entropy is no better than a random scorer's, log(1 + k) of its own
    # evaluation's k, has learnt nothing the laws describe (it diverged or overfit before
    # its first evaluation): left out of the fits. A number here replaces every run's level.
    diverged_at: float | None = None
    # each run's loss: its best raw contrastive entropy (the paper's) or its best calibrated
    # one (engine/evaluate.py); runs without the calibrated one are left out of a calibrated study
    metric: str = "raw"


@dataclass
class Extrapolation:
    """A law fitted without the largest sizes along `axis`, judged on what it left out."""

    name: str
    axis: str
    fit: LawFit

    @property
    def heldout(self) -> pd.DataFrame:
        return self.fit.heldout

    def summary(self) -> dict:
        held = self.heldout
        inside = (held["loss"] >= held["pi_lo"]) & (held["loss"] <= held["pi_hi"])
        return {"law": self.name, "held out": f"largest {self.axis} = {held[self.axis].iloc[0]:,.0f}",
                "points": len(held), "mean |error| %": 100 * held["rel_error"].abs().mean(),
                "max |error| %": 100 * held["rel_error"].abs().max(),
                "inside 95% prediction interval": f"{int(inside.sum())} of {len(held)}"}


@dataclass
class StudyReport:
    config: StudyConfig
    points: pd.DataFrame                 # the main study's rows (dataset, reference annotation) fitted
    diverged: pd.DataFrame               # rows of every data set left out as no better than random
    model_law: LawFit                    # Eq. 6 at the largest D
    data_law: LawFit                     # Eq. 7 at the largest N
    joint_law: LawFit                    # Eq. 8 on every point
    extrapolations: dict[str, Extrapolation]  # model, data, joint-n, joint-d (those with enough points)
    annotation_laws: dict[str, LawFit]   # Eq. 7 per annotation type, at the largest model all types share
    annotation_model: str | None
    other_model_laws: dict[str, LawFit]  # Eq. 6 of every other data set
    correlations: pd.DataFrame           # per data set and metric
    all_rows: pd.DataFrame = field(repr=False)
    comparison: pd.DataFrame | None = None  # raw and calibrated entropy side by side (metric_comparison)
    lexical: dict[str, dict[str, float]] = field(default_factory=dict)  # data set -> BM25's metrics (with_references)


def study_rows(runs: pd.DataFrame, metric: str = "raw") -> pd.DataFrame:
    """`Store.runs()` rows (or demo rows) -> n, d, loss, dataset, annotation, model, metrics;
    with metric="calibrated", loss and contrastive_entropy are the calibrated ones."""
    if metric not in METRICS:
        raise InputError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    renames = {"n_params": "n", "train_pairs": "d", "best_contrastive_entropy": "loss", "model_name": "model"}
    if metric == "calibrated":
        runs = _as_calibrated(runs)
    rows = runs.rename(columns={k: v for k, v in renames.items() if k in runs and v not in runs})
    missing = [c for c in ("n", "d", "loss", "dataset", "annotation") if c not in rows]
    if missing:
        raise InputError(f"study rows need columns n, d, loss, dataset, annotation; missing {missing}")
    keep = ["n", "d", "loss", "dataset", "annotation"] + [  # contrastive_entropy: that of the metrics' evaluation
        c for c in ("model", "label", *RANKING_METRICS, "contrastive_entropy", "best_step", "eval_protocol",
                    "eval_fingerprint")
        if c in rows]
    rows = rows[keep].dropna(subset=["n", "d", "loss"]).reset_index(drop=True)
    if rows.empty and metric == "calibrated":
        raise InputError("no run has a calibrated contrastive entropy (runs trained before it, imports and the demo "
                         "study have none): study the raw one (--metric raw) or train runs now")
    return rows


def _as_calibrated(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose entropy columns are the calibrated ones, their fingerprints naming it."""
    columns = {"best_calibrated_entropy": "best_contrastive_entropy", "calibrated_entropy": "contrastive_entropy",
               "calibrated_best_step": "best_step"}
    frame = runs.drop(columns=[c for c in columns.values() if c in runs])
    frame = frame.rename(columns={k: v for k, v in columns.items() if k in frame})
    if "best_contrastive_entropy" not in frame:
        return frame.assign(best_contrastive_entropy=np.nan)
    if "eval_fingerprint" in frame:
        fingerprints = [{**f, "metric": "calibrated"} if isinstance(f, dict) else f for f in frame["eval_fingerprint"]]
        frame = frame.assign(eval_fingerprint=pd.Series(fingerprints, index=frame.index, dtype=object))
        frame = frame.assign(eval_protocol=[protocol_id(f) if isinstance(f, dict) else None for f in fingerprints])
    return frame


def build_report(runs: pd.DataFrame, config: StudyConfig = StudyConfig()) -> StudyReport:
    rows = study_rows(runs, config.metric)
    levels = pd.Series(random_scorer_levels(rows) if config.diverged_at is None else config.diverged_at,
                       index=rows.index, dtype=float)
    random = rows["loss"] >= levels
    diverged = rows[random].assign(random_level=levels[random])
    rows = rows.drop(diverged.index).reset_index(drop=True)
    fit_config = FitConfig(bootstrap=config.bootstrap, seed=config.seed)
    main = rows[(rows["dataset"] == config.dataset) & (rows["annotation"] == REFERENCE_ANNOTATION)]
    if main["n"].nunique() < 3 or main["d"].nunique() < 3:
        raise InputError(f"{config.dataset}: a study needs >= 3 model sizes and >= 3 data sizes of "
                         f"{REFERENCE_ANNOTATION} pairs; have {main['n'].nunique()} and {main['d'].nunique()}")
    at_max_d = main[main["d"] == main["d"].max()]
    at_max_n = main[main["n"] == main["n"].max()]

    extrapolations = {}
    for key, name, subset, kind, axis in (("model", "Eq. 6, L(N) at the largest D", at_max_d, "model", "n"),
                                          ("data", "Eq. 7, L(D) at the largest N", at_max_n, "data", "d"),
                                          ("joint-n", "Eq. 8, L(N, D)", main, "joint", "n"),
                                          ("joint-d", "Eq. 8, L(N, D)", main, "joint", "d")):
        try:
            extrapolations[key] = Extrapolation(name, axis, fit_law(subset, kind, FitConfig(
                bootstrap=config.bootstrap, seed=config.seed, holdout_largest=1, holdout_axis=axis)))
        except InputError:
            continue  # too few sizes left to fit without the largest
    annotation_laws, annotation_model = _annotation_laws(rows[rows["dataset"] == config.dataset], fit_config)
    others = {name: fit_law(group[group["d"] == group["d"].max()], "model", fit_config)
              for name, group in rows[rows["dataset"] != config.dataset].groupby("dataset")
              if group[group["d"] == group["d"].max()]["n"].nunique() >= 3}
    return StudyReport(config, main.reset_index(drop=True), diverged.reset_index(drop=True),
                       fit_law(at_max_d, "model", fit_config),
                       fit_law(at_max_n, "data", fit_config), fit_law(main, "joint", fit_config), extrapolations,
                       annotation_laws, annotation_model, others, _correlations(rows), rows)


def with_metric_comparison(report: StudyReport, runs: pd.DataFrame) -> StudyReport:
    """`report` with its `comparison`: the same study under the other metric beside it
    (issue 15), where every run has both entropies; else `report` as it is."""
    other = "calibrated" if report.config.metric == "raw" else "raw"
    try:
        rival = build_report(runs, replace(report.config, metric=other))
    except InputError:
        return report  # no calibrated entropy (imports, older runs) or too few sizes under it
    reports = {report.config.metric: report, other: rival}
    columns = {metric: _comparison_column(reports[metric]) for metric in METRICS}
    if "trained_calibrated_entropy" in runs and runs["trained_calibrated_entropy"].notna().all():
        trained = runs.assign(best_calibrated_entropy=runs["trained_calibrated_entropy"], calibrated_best_step=np.nan)
        columns[TRAINED_CALIBRATED] = _comparison_column(build_report(trained, replace(report.config,
                                                                                       metric="calibrated")))
    table = pd.DataFrame(columns).fillna("")
    return replace(report, comparison=table.rename_axis("quantity").reset_index())


TRAINED_CALIBRATED = "calibrated, best after step 0"  # the trained checkpoints only


def with_references(report: StudyReport, references: pd.DataFrame) -> StudyReport:
    """The report with each data set's BM25 reference (engine/lexical.py) under its runs'
    protocol, where the store holds one."""
    from engine.lexical import reference_for

    found = {}
    for dataset, rows in report.all_rows.groupby("dataset"):
        reference = reference_for(references, dataset, fingerprints_of(rows)[0])
        if reference is not None:
            found[dataset] = reference
    return replace(report, lexical=found)


def _lexical_level(report: StudyReport, dataset: str) -> tuple[str, float] | None:
    """("BM25", its entropy in the report's metric) for a chart of `dataset`'s runs."""
    from engine.lexical import metric_column

    value = report.lexical.get(dataset, {}).get(metric_column(report.config.metric))
    return None if value is None else ("BM25", float(value))


def _lexical_lines(report: StudyReport) -> list[str]:
    """Each data set's dense runs against BM25 on the same protocol: how many are below it."""
    from engine.lexical import metric_column

    if not report.lexical:
        return []
    rows = []
    for dataset, reference in report.lexical.items():
        runs = report.all_rows[report.all_rows["dataset"] == dataset]
        level = reference.get(metric_column(report.config.metric))
        best = runs.loc[runs["loss"].idxmin()]
        rows.append({"data set": dataset, f"BM25 {report.config.metric} entropy": level,
                     "BM25 MRR@10": reference.get("mrr@10"), "dense runs": len(runs),
                     "dense runs below BM25": int((runs["loss"] < level).sum()),
                     "best dense entropy": best["loss"], "its MRR@10": best.get("mrr@10"),
                     "best dense over BM25": best["loss"] / level})
    return ["", "Against word overlap: BM25 (bm25s, k1 1.5, b 0.75) on each data set's sub-corpus, measured with the "
            "runs' own protocol (the same test pairs, negatives and metric); a dense run below BM25 beats it:", "",
            _table(pd.DataFrame(rows))]


def _comparison_column(report: StudyReport) -> dict[str, str]:
    main = report.points
    column = {
        "runs fitted (main study)": f"{len(main)}",
        "runs left out as no better than random (all data sets)": f"{len(report.diverged)}",
        "best entropy range": f"{main['loss'].min():.3f} to {main['loss'].max():.3f}",
        "R², Eq. 6 / Eq. 7 / Eq. 8": " / ".join(f"{fit.r2:.3f}" for fit in
                                               (report.model_law, report.data_law, report.joint_law)),
    }
    for name, fit, param in (("alpha, Eq. 6", report.model_law, "alpha"), ("beta, Eq. 7", report.data_law, "beta"),
                             ("alpha, Eq. 8", report.joint_law, "alpha"), ("beta, Eq. 8", report.joint_law, "beta")):
        column[f"{name}: 95% interval (high / low)"] = _interval_words(*fit.intervals.get(param, (np.nan, np.nan)))
    for key, axis in (("joint-n", "N"), ("joint-d", "D")):
        if key in report.extrapolations:
            summary = report.extrapolations[key].summary()
            column[f"held-out mean |error| at the largest {axis} (Eq. 8)"] = f"{summary['mean |error| %']:.1f}%"
    column["Pearson r with MRR@10, all runs of the main study"] = _mrr_correlation(report)
    if "best_step" in main and main["best_step"].notna().all():
        untrained = int((main["best_step"] == 0).sum())
        column["runs whose best is the untrained model (step 0)"] = f"{untrained} of {len(main)}"
    spread = main.groupby(["n", "d"])["loss"].agg(["count", np.ptp])
    spread = spread[spread["count"] > 1]
    if len(spread):
        column["seed spread: mean |difference| at one N, D"] = f"{spread['ptp'].mean():.3f} ({len(spread)} configurations)"
    return column


def _interval_words(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not determined"
    factor = f"{hi / lo:.1f}x" if lo > 0 else "spans 0"
    return f"{lo:.3g} to {hi:.3g} ({factor})"


def _mrr_correlation(report: StudyReport) -> str:
    c = report.correlations
    if c.empty:
        return "no ranking metrics"
    row = c[(c["dataset"] == report.config.dataset) & (c["annotation"] == REFERENCE_ANNOTATION)
            & (c["runs"] == "all") & (c["metric"] == "mrr@10")]
    return "no ranking metrics" if row.empty else f"{row['pearson'].iloc[0]:.3f} ({int(row['n_runs'].iloc[0])} runs)"


def _annotation_laws(rows: pd.DataFrame, config: FitConfig) -> tuple[dict[str, LawFit], str | None]:
    """Eq. 7 per annotation type on the largest model that every type was trained on
    (the types with at least 3 data sizes and 2 distinct losses there, when two or more
    have them)."""
    if rows["annotation"].nunique() < 2:
        return {}, None
    shared = set.intersection(*(set(g["n"]) for _, g in rows.groupby("annotation")))
    if not shared:
        return {}, None
    at = rows[rows["n"] == max(shared)]
    at = at[at.groupby("annotation")["d"].transform("nunique") >= 3]   # Eq. 7 has 3 parameters
    at = at[at.groupby("annotation")["loss"].transform("nunique") >= 2]  # all equal (untrained everywhere): no law
    if at["annotation"].nunique() < 2:
        return {}, None
    model = at["model"].iloc[0] if "model" in at else f"N = {max(shared):,}"
    return fit_annotation_laws(at[["d", "loss", "annotation"]], config), model


def _at_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with `contrastive_entropy` = the entropy measured with the ranking metrics
    (the best entropy where a row does not say), so each pair is one evaluation."""
    return rows.assign(contrastive_entropy=entropy_of_metrics(rows, "loss"))


OVERFIT_GAP = 0.05  # nats: a run whose last evaluation is this far above its best has overfit


def _correlations(rows: pd.DataFrame) -> pd.DataFrame:
    """Per data set and annotation type: entropy against each ranking metric, over all
    runs and over the runs that had not overfit by the evaluation of the metrics (an
    overfit model's entropy climbs, its scores overconfident, while its ranking holds)."""
    frames = []
    at_metrics = _at_metrics(rows)
    not_overfit = at_metrics["contrastive_entropy"] - at_metrics["loss"] < OVERFIT_GAP
    for runs, subset in (("all", at_metrics), ("not overfit", at_metrics[not_overfit])):
        for (name, annotation), group in subset.groupby(["dataset", "annotation"]):
            present = [m for m in RANKING_METRICS if m in group and group[m].notna().sum() >= 3
                       and group[m].nunique() > 1]  # Recall@1000 of a sub-corpus under 1,000 is always 1
            if present:
                frames.append(metric_correlations(group, present).assign(dataset=name, annotation=annotation,
                                                                         runs=runs))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- the report as Markdown -----------------------------------------------------------

def _law_row(name: str, fit: LawFit) -> dict:
    row = {"law": name, "points": int((fit.points["role"] == "fit").sum()), "R²": fit.r2}
    for param in PARAM_NAMES[fit.law.kind]:
        lo, hi = fit.intervals.get(param, (np.nan, np.nan))
        row[param] = f"{fit.law.params[param]:.3g} [{lo:.3g}, {hi:.3g}]"
    return row


def _table(frame: pd.DataFrame) -> str:
    """A Markdown table; numbers to 3 significant digits."""
    def cell(value) -> str:  # a "|" inside a cell ("mean |error| %") is escaped, or it splits the cell
        text = f"{value:.3g}" if isinstance(value, (float, np.floating)) else str(value)
        return text.replace("|", "\\|")

    head = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def report_markdown(report: StudyReport) -> str:
    main, c = report.points, report.config
    lines = [
        f"### {c.dataset}: {main['n'].nunique()} model sizes x {main['d'].nunique()} data sizes, "
        f"{REFERENCE_ANNOTATION} pairs",
        "",
        f"N from {main['n'].min():,} to {main['n'].max():,} ({np.log10(main['n'].max() / main['n'].min()):.2f} "
        f"decades), D from {main['d'].min():,} to {main['d'].max():,} "
        f"({np.log10(main['d'].max() / main['d'].min()):.2f} decades); {c.metric} contrastive entropy from "
        f"{main['loss'].min():.3f} to {main['loss'].max():.3f} ({_random_level_words(main)}).",
        "",
        *_protocol_lines(main),
        *_diverged_lines(report),
        "Fitted laws, with 95% bootstrap intervals over configurations:",
        "",
        _table(pd.DataFrame([_law_row("Eq. 6, L(N) at the largest D", report.model_law)])),
        "",
        _table(pd.DataFrame([_law_row("Eq. 7, L(D) at the largest N", report.data_law)])),
        "",
        _table(pd.DataFrame([_law_row("Eq. 8, L(N, D)", report.joint_law)])),
        "",
        "What these points determine (Eq. 8): " + identifiability(report.joint_law).sentence(),
        "",
        "Extrapolation: each law fitted without the largest size along one axis, then asked for the points "
        "it did not see:",
        "",
        _table(pd.DataFrame([e.summary() for e in report.extrapolations.values()])),
    ]
    lines += _lexical_lines(report)
    lines += _decision_lines(report)
    lines += _comparison_lines(report)
    if report.annotation_laws:
        lines += ["", f"Data-size law per annotation type ({report.annotation_model}):", "",
                  _table(pd.DataFrame([_law_row(f"Eq. 7, {a}", f) for a, f in report.annotation_laws.items()]))]
        lines += _exchange_lines(report)
    for name, fit in report.other_model_laws.items():
        lines += ["", f"{name}: Eq. 6 at its largest D:", "", _table(pd.DataFrame([_law_row("Eq. 6", fit)]))]
    if len(report.correlations):
        table = report.correlations[["dataset", "annotation", "runs", "metric", "n_runs", "pearson", "spearman"]]
        lines += ["", "Contrastive entropy against the ranking metrics, one pair per run from the same (final) "
                  "evaluation; negative: lower entropy, better ranking. 'not overfit': runs whose final entropy is "
                  f"within {OVERFIT_GAP} of their best:", "", _table(table)]
    return "\n".join(lines) + "\n"


def _protocol_lines(rows: pd.DataFrame) -> list[str]:
    """The evaluation protocol of the fitted runs, the negatives' pool named."""
    fingerprints = {protocol_id(f): f for f in fingerprints_of(rows)}
    if len(fingerprints) != 1 or None in fingerprints:
        return []
    (label, fingerprint), = fingerprints.items()
    pool = fingerprint.get("negative_pool")
    words = {"held-out": "whole articles kept out of training, so no negative was ever trained on",
             "unjudged": "passages relevant to no test query (the paper's pool; on a small corpus, training "
                         "passages)"}.get(pool, "pool not recorded")
    return [f"Evaluation protocol {label}: {describe(fingerprint)}. Negatives drawn from {words}.", ""]


def _comparison_lines(report: StudyReport) -> list[str]:
    if report.comparison is None:
        return []
    return ["", "The same study on raw and on calibrated contrastive entropy (Eq. 5 on scores divided by a "
            "cross-fitted temperature): raw also punishes the score scale, calibrated only the ranking of the "
            "positive among its negatives. Each is the best over training, step 0 (the untrained model) "
            f"included; '{TRAINED_CALIBRATED}' leaves step 0 out, where the data has it. An exponent interval's "
            "factor is its high end over its low end:", "", _table(report.comparison)]


def _diverged_lines(report: StudyReport) -> list[str]:
    if report.diverged.empty:
        return []
    runs = "; ".join(f"{r.get('model', 'N = %d' % r['n'])} ({r['dataset']}, {r['annotation']}, D = {int(r['d']):,}): "
                     f"{r['loss']:.3f} >= {r['random_level']:.3f}" for _, r in report.diverged.iterrows())
    return [f"Left out of every fit as no better than a random scorer (best entropy >= log(1 + k) of its "
            f"evaluation): {runs}.", ""]


def _random_level_words(rows: pd.DataFrame) -> str:
    """'log 257 = 5.549 is a random scorer' for the k of these rows' evaluations."""
    ks = sorted({(f or {}).get("negatives") or DEFAULT_NEGATIVES for f in fingerprints_of(rows)})
    return ", ".join(f"log {1 + k} = {np.log(1 + k):.3f}" for k in ks) + " is a random scorer" + \
        (f" at k = {', '.join(map(str, ks))}" if len(ks) > 1 else "")


def _exchange_lines(report: StudyReport) -> list[str]:
    d = float(report.points["d"].max())
    lines = []
    for other in report.annotation_laws:
        if other == REFERENCE_ANNOTATION or REFERENCE_ANNOTATION not in report.annotation_laws:
            continue
        lines += ["", exchange_rate(report.annotation_laws, other, d).describe() + "."]
    return lines


# --- figures --------------------------------------------------------------------------

def figures(report: StudyReport) -> dict[str, object]:
    """name -> Altair chart: the fitted laws, the extrapolations, annotation types,
    budget curves of the fitted joint law and entropy against MRR@10."""
    from engine import charts

    main = report.points
    reference = _lexical_level(report, report.config.dataset)
    out = {
        "model-law": _joint_chart(report.joint_law, main, "n", "Eq. 8 along N, one curve per D", reference),
        "data-law": _joint_chart(report.joint_law, main, "d", "Eq. 8 along D, one curve per N", reference),
    }
    for key, x, what in (("joint-n", "n", "model"), ("joint-d", "d", "data size")):
        if key in report.extrapolations:
            out[f"holdout-largest-{x}"] = _joint_chart(report.extrapolations[key].fit, main, x,
                                                       f"Eq. 8 fitted without the largest {what} (red: held out)")
    if report.annotation_laws:
        d = np.geomspace(main["d"].min() / 1.5, main["d"].max() * 1.5, 60)
        points = report.all_rows[(report.all_rows["dataset"] == report.config.dataset)
                                 & (report.all_rows.get("model") == report.annotation_model)]
        out["annotations"] = charts.annotation_chart(points, annotation_curves(report.annotation_laws, d)).properties(
            title=f"Eq. 7 per annotation type, {report.annotation_model}")
    out["budget"] = _budget_chart(report)
    if "mrr@10" in report.all_rows:
        frame = _at_metrics(report.all_rows).dropna(subset=["mrr@10"])
        out["entropy-vs-mrr"] = charts.metric_chart(frame, "mrr@10", color="dataset").properties(
            title="Ranking quality against contrastive entropy, one dot per run")
    return out


def _joint_chart(fit: LawFit, points: pd.DataFrame, x: str, title: str, reference: tuple[str, float] | None = None):
    from engine import charts

    other = "d" if x == "n" else "n"
    fixed = sorted(points[other].unique())
    curves = charts.law_curves(fit, x, charts.padded_range(points[x]), fixed)
    roles = fit.points[["n", "d", "role"] + [c for c in ("pi_lo", "pi_hi") if c in fit.points]]
    shown = points.merge(roles, on=["n", "d"], how="left").assign(
        series=lambda p: [charts.series_name(x, v) for v in p[other]])
    return charts.law_chart(shown, curves, x, title, reference)


def _decision_lines(report: StudyReport) -> list[str]:
    """The budget figure's questions answered under the fitted Eq. 8 and under each of
    its bootstrap laws, with how far each N* and D* lies beyond the fitted runs."""
    from engine.formatting import format_count

    c = report.config
    costs = replace(CostAssumptions(), corpus_pages=c.budget_corpus_pages)
    rows, reaches = [], []
    for budget in c.budgets:
        question = BudgetQuestion(budget, c.budget_with_inference, costs)
        answer = optimise(report.joint_law, question)
        reach = extrapolation(report.joint_law, answer.n_opt, answer.d_opt)
        reaches.append(reach)
        row = {"budget $": f"{budget:,.0f}", "N*": format_count(answer.n_opt), "D*": format_count(answer.d_opt),
               "N* beyond the fitted N": format_factor(reach.n), "D* beyond the fitted D": format_factor(reach.d)}
        if len(report.joint_law.bootstrap_params):
            u = decision_uncertainty(report.joint_law, question)
            row["95% interval of N*"] = f"{format_count(u.n_opt_interval[0])} to {format_count(u.n_opt_interval[1])}"
            row["robust N"] = format_count(u.n_robust)
            row["regret of N* (% of loss)"] = 100 * u.regret_relative
        rows.append(row)
    lines = ["", f"Budget questions under the paper's prices (Eq. 11-14{', inference over ' if c.budget_with_inference else ''}"
             f"{f'{c.budget_corpus_pages:.0e} pages' if c.budget_with_inference else ''}): the fitted law's N* "
             "and, over its bootstrap laws, the interval of N*, the robust choice (lowest expected loss) and the "
             "expected regret of building N*:", "", _table(pd.DataFrame(rows))]
    far = [r for r in reaches if r.beyond_warning]
    if far:
        lines += ["", f"Warning: {len(far)} of these {len(reaches)} answers lie more than {EXTRAPOLATION_WARNING:g}x "
                  f"beyond the fitted runs (up to {format_factor(max(max(r.n, r.d) for r in far))}): they are projections "
                  "of the fitted curve, not predictions checked against runs of that size."]
    return lines


def _budget_chart(report: StudyReport):
    from engine import charts

    c = report.config
    costs = replace(CostAssumptions(), corpus_pages=c.budget_corpus_pages)
    questions = [BudgetQuestion(b, c.budget_with_inference, costs) for b in c.budgets]
    answers = [optimise(report.joint_law, q) for q in questions]
    curves = budget_curves(report.joint_law, c.budgets, c.budget_with_inference, costs)
    middle = len(c.budgets) // 2      # the highlighted budget, with the N* spread of the bootstrap laws
    decision = decision_uncertainty(report.joint_law, questions[middle]) if len(
        report.joint_law.bootstrap_params) else None
    return charts.budget_chart(curves, charts.optima_table(answers, questions[0].band_tolerance), c.budgets[middle],
                               decision, report.joint_law.support["n"]).properties(
        title=f"Fitted Eq. 8 under the paper's prices (Eq. 11-14), inference over {c.budget_corpus_pages:.0e} pages; "
              "grey: beyond the fitted model sizes")


def study_document(report: StudyReport):
    """The report with its figures (560 px wide): `.write(out)` gives report.md with
    figures/*.svg and *.png beside it, and a standalone report.html (engine/report.py)."""
    from engine.report import ReportDocument

    charts = {name: chart.properties(width=560) for name, chart in figures(report).items()}
    return ReportDocument(f"Scaling study: {report.config.dataset}", report_markdown(report), charts)
