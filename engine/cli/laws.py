"""`python -m engine laws fit|compare|presets`: fit Eq. 6, 7, 8 or the additive form to a
CSV of runs or the store's runs (`--store`, one evaluation protocol at a time); compare
the joint forms on the same points."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.errors import InputError
from engine.paths import write_output
from engine.eval_protocol import better_than_random


def register(subparsers) -> None:
    laws = subparsers.add_parser("laws", help="fit and inspect scaling laws (Eq. 6-8)")
    actions = laws.add_subparsers(dest="laws_command", required=True)
    fit = actions.add_parser("fit", help="fit a law to a CSV with columns n, d, loss [, label], or to the store's runs")
    source = fit.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="columns n (non-embedding params), d (pairs), loss "
                                                 "[, eval_negatives and the other eval_* protocol columns]")
    source.add_argument("--store", type=Path, metavar="PATH",
                        help="fit the completed runs of this results store (all of one evaluation protocol)")
    fit.add_argument("--dataset", action="append", help="with --store: only runs on this data set (repeatable)")
    fit.add_argument("--annotation", action="append",
                     help="with --store: only runs of this annotation type, e.g. human (repeatable)")
    fit.add_argument("--metric", choices=["raw", "calibrated"],
                     help="with --store: fit each run's best raw contrastive entropy (the paper's; the default) or "
                          "its best calibrated one (Eq. 5 at a cross-fitted temperature, engine/evaluate.py)")
    fit.add_argument("--law", required=True, choices=["model", "data", "joint", "additive"],
                     help="model (Eq. 6), data (Eq. 7), joint (Eq. 8) or additive (E + A/N^alpha + B/D^beta)")
    fit.add_argument("--holdout-largest", type=int, default=0, metavar="K",
                     help="fit without the K largest model sizes (data law: data sizes) and report their error")
    fit.add_argument("--holdout-axis", choices=["auto", "n", "d"], default="auto",
                     help="which sizes --holdout-largest takes: n, d, or auto (d for the data law, n otherwise)")
    fit.add_argument("--bootstrap", type=int, default=1000, help="bootstrap refits for the intervals")
    fit.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    fit.add_argument("--huber-scale", type=float, default=0.05,
                     help="residuals in log L beyond this count linearly (Epoch AI's Chinchilla replication: 1e-3)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", type=Path, help="where to write the fit as JSON (default: next to the CSV or store)")
    fit.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    fit.set_defaults(handler=run_fit)
    compare = actions.add_parser("compare", help="fit every joint form to the same points and compare them")
    compare.add_argument("--csv", required=True, type=Path, help="columns n, d, loss")
    compare.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits for each form's intervals")
    compare.add_argument("--huber-scale", type=float, default=0.05, help="as for `laws fit`")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    compare.set_defaults(handler=run_compare)
    predict = actions.add_parser("predict", help="a fitted law's prediction at (N, D) with its intervals, "
                                                 "against a measured value")
    predict.add_argument("--law", required=True, help="a fit JSON from `laws fit --out`, or a preset name")
    predict.add_argument("--n", required=True, type=float, help="non-embedding parameters")
    predict.add_argument("--d", required=True, type=float, help="annotated pairs")
    predict.add_argument("--measured", type=float, help="the entropy a run at (N, D) measured")
    predict.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    predict.set_defaults(handler=run_predict)
    presets = actions.add_parser("presets", help="list the paper's published fits")
    presets.add_argument("--json", action="store_true")
    presets.set_defaults(handler=run_presets)


def read_points(path: Path):
    """The CSV at `path` as a DataFrame, or InputError."""
    import pandas as pd

    from store.table_import import check_read_table, csv_header

    check_input_file(path, "a CSV file")
    try:
        points = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read as CSV ({err})") from err
    check_read_table(path, points, csv_header(path))   # a second loss column, a quote left open
    return points


def check_input_file(path: Path, what: str) -> None:
    """InputError unless `path` is a file: a folder is named as one, not as missing."""
    if path.is_dir():
        raise InputError(f"{path} is a folder, not {what}; give the path of {what}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")


def run_fit(args) -> int:
    from engine.identifiability import identifiability
    from engine.laws import FitConfig, fit_law

    config = FitConfig(bootstrap=args.bootstrap, level=args.level, seed=args.seed, huber_scale=args.huber_scale,
                       holdout_largest=args.holdout_largest, holdout_axis=args.holdout_axis)
    if args.csv and args.metric:
        raise InputError("--metric chooses which of the store's entropies to fit: use it with --store; a CSV's loss "
                         "column is fitted as it is (an eval_metric column says which it is)")
    source = args.csv or args.store
    check_input_file(source, "a CSV file" if args.csv else "a results store file")
    if args.csv and (args.dataset or args.annotation):
        raise InputError("--dataset and --annotation filter the store's runs: use them with --store, not --csv")
    out = _checked_out(args.out or source.with_name(f"{source.stem}.{args.law}-fit.json"), source, args.store)
    points = (read_points(args.csv) if args.csv else
              store_points(args.store, args.dataset, args.annotation, args.metric or "raw"))
    fit = fit_law(points, args.law, config)
    write_output(out, json.dumps(fit.to_dict(), indent=1, allow_nan=False))
    if args.json:
        print(json.dumps({**fit.to_dict(include_bootstrap=False), "identifiability": identifiability(fit).to_dict(),
                          "saved_to": str(out)}, allow_nan=False))
    else:
        print(format_fit(fit))
        print(f"saved to {out}")
    return 0


def store_points(path: Path, dataset: list[str] | None, annotation: list[str] | None, metric: str = "raw"):
    """The completed runs of the store at `path` (filtered) as law points of `metric`
    (raw or calibrated contrastive entropy), or InputError."""
    from store import Store

    points = Store(path).law_points(dataset=dataset, annotation=annotation, metric=metric)
    if points.empty:
        filters = [f"{name} {', '.join(values)}" for name, values in (("dataset", dataset), ("annotation", annotation))
                   if values]
        measured = " with a calibrated entropy (runs trained before it have none)" if metric == "calibrated" else ""
        raise InputError(f"the store {path} holds no completed runs{' of ' + ' and '.join(filters) if filters else ''}"
                         f"{measured}; see `python -m store info`")
    kept, left_out = better_than_random(points)
    if len(left_out):
        print(f"left out {len(left_out)} run(s) no better than a random scorer (loss >= log(1 + k)): "
              + ", ".join(left_out["run_id"].astype(str)), file=sys.stderr)
    if kept.empty:
        raise InputError(f"none of the {len(points)} runs in {path} beat a random scorer; nothing to fit")
    return kept


def _checked_out(out: Path, source: Path, store: Path | None) -> Path:
    """`out`, unless writing it would overwrite the input (--csv or --store) or the results store."""
    from engine.paths import check_output_path
    from store import Store

    protected = {"the --store input" if store else "the --csv input": source, **Store().own_files()}
    if store:
        protected.update({f"{what} (--store)": path for what, path in Store(store).own_files().items()})
    return check_output_path(out, protected=protected)


def format_fit(fit) -> str:
    level = int(round(fit.config.level * 100))
    lines = [fit.law.describe(), f"R^2 = {fit.r2:.4f} on {int((fit.points['role'] == 'fit').sum())} points",
             f"{'param':>6}  {'value':>11}  {level}% interval"]
    for name, value in fit.law.params.items():
        lo, hi = fit.intervals.get(name, (float("nan"), float("nan")))
        lines.append(f"{name:>6}  {value:11.4g}  [{lo:.4g}, {hi:.4g}]")
    from engine.identifiability import identifiability

    lines.append(identifiability(fit).sentence())
    if fit.bootstrap_kept < fit.config.bootstrap:
        lines.append(f"intervals from the {fit.bootstrap_kept} of {fit.config.bootstrap} bootstrap refits that are "
                     "finite (the others could not determine the law, or a scale ran to infinity)")
    held = fit.heldout
    if len(held):
        lines.append("held-out points (fit without them):")
        for row in held.itertuples():
            size = f"n={row.n:.4g}" if "n" in held else ""
            size += f" d={row.d:.4g}" if "d" in held else ""
            lines.append(f"  {size}: observed {row.loss:.4f}, predicted {row.predicted:.4f} "
                         f"({100 * row.rel_error:+.1f}%), {level}% PI [{row.pi_lo:.4f}, {row.pi_hi:.4f}]")
    return "\n".join(lines)


def run_compare(args) -> int:
    from engine.identifiability import compare_laws
    from engine.laws import FitConfig

    config = FitConfig(bootstrap=args.bootstrap, seed=args.seed, huber_scale=args.huber_scale)
    compared = compare_laws(read_points(args.csv), config=config)
    points = len(compared[0].fit.log_residuals)
    if args.json:
        print(json.dumps({"csv": str(args.csv), "points": points, "forms": [c.to_dict() for c in compared]}))
        return 0
    print(f"{points} points from {args.csv}; AIC and BIC on the log residuals (lower is better), "
          "mean error on the largest N and D when fitted without them")
    print(f"{'form':<10}{'R^2':>8}{'AIC':>10}{'BIC':>10}{'largest N':>12}{'largest D':>12}")
    for c in compared:
        held = ["-" if c.leave_largest_out[a] is None else f"{100 * c.leave_largest_out[a]['mean_abs_error']:.2f}%"
                for a in ("n", "d")]
        print(f"{c.fit.law.kind:<10}{c.fit.r2:>8.4f}{c.aic:>10.2f}{c.bic:>10.2f}{held[0]:>12}{held[1]:>12}")
    for c in compared:
        print(c.fit.law.describe())
    return 0


def run_presets(args) -> int:
    from engine.laws import PRESETS

    rows = [{"name": name, "law": p.law.kind, "params": p.law.params, "source": p.source, "r2": p.r2}
            for name, p in PRESETS.items()]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['name']:<24} {row['source']:<22} {PRESETS[row['name']].law.describe()}")
    return 0


def run_predict(args) -> int:
    """The law at one (N, D): a prediction where the fitted runs surround it, a
    projection beyond them (engine.budget.extrapolation), and a measured value's error."""
    from engine.budget import extrapolation
    from engine.errors import InputError
    from engine.fit_files import load_law
    from engine.laws import LawFit
    from engine.formatting import format_count

    if not (args.n > 0 and args.d > 0) or (args.measured is not None and not args.measured > 0):
        raise InputError("--n, --d and --measured must be positive numbers")
    law = load_law(args.law)
    fit = law if isinstance(law, LawFit) else None
    interval = fit.predict_interval(args.n, args.d) if fit else None
    value = float(law.predict(args.n, args.d) if fit is None else interval["pred"][0])
    result = {"n": args.n, "d": args.d, "predicted": value,
              "confidence_interval": None if fit is None else [float(interval["ci_lo"][0]), float(interval["ci_hi"][0])],
              "prediction_interval": None if fit is None else [float(interval["pi_lo"][0]), float(interval["pi_hi"][0])],
              "extrapolation": extrapolation(fit, args.n, args.d).to_dict() if fit else None}
    if args.measured is not None:
        pi = result["prediction_interval"]
        result.update(measured=args.measured, error=(value - args.measured) / args.measured,
                      inside_prediction_interval=None if pi is None else pi[0] <= args.measured <= pi[1])
    if args.json:
        from store.json_values import to_json
        print(to_json(result))
        return 0
    print(f"at N = {format_count(args.n)}, D = {format_count(args.d)}: predicted {value:.4f}")
    if fit:
        ci, pi = result["confidence_interval"], result["prediction_interval"]
        print(f"  {fit.config.level:.0%} interval of the curve [{ci[0]:.4f}, {ci[1]:.4f}], for a new run "
              f"[{pi[0]:.4f}, {pi[1]:.4f}]")
        print("  " + extrapolation(fit, args.n, args.d).describe())
    if args.measured is not None:
        inside = result["inside_prediction_interval"]
        print(f"  measured {args.measured:.4f}: the prediction is off by {100 * result['error']:+.2f}%"
              + ("" if inside is None else f", {'inside' if inside else 'outside'} the prediction interval"))
    return 0
