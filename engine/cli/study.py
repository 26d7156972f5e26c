"""`python -m engine study`: the report of a scaling study in the store (engine/study.py):
fitted laws, extrapolation to the largest model and data size, annotation types,
entropy against ranking metrics; Markdown to stdout; with `--out`, report.md with
figures/*.svg and *.png, and the same report as one standalone report.html."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("study", help="fit, extrapolate and chart a scaling study from the store")
    parser.add_argument("--store", help="results store (default: $WORKBENCH_STORE or .store/workbench.duckdb)")
    parser.add_argument("--source", default="demo", choices=["demo", "engine", "import", "any"],
                        help="which runs: the demo study, runs trained here, imported ones, or all")
    parser.add_argument("--dataset", default="squad-dev", help="the data set of the main study")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap refits per law")
    parser.add_argument("--metric", default="raw", choices=["raw", "calibrated"],
                        help="each run's loss: its best raw contrastive entropy (the paper's) or its best calibrated "
                             "one (Eq. 5 at a cross-fitted temperature; runs without it are left out)")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.html and figures/*.svg, *.png")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (the fitted laws, extrapolations, files written) instead of "
                             "the Markdown")
    parser.set_defaults(handler=run_study)


def run_study(args) -> int:
    from engine.errors import InputError
    from engine.command_progress import CommandProgress
    from engine.study import StudyConfig, build_report, study_document, with_metric_comparison, with_references
    from engine.paths import check_output_path
    from engine.report import FIGURES_FOLDER
    from store import Store

    store = Store(args.store)
    if args.out:  # before the fits: an output that cannot be made, or would overwrite the store, fails now
        figures = args.out / FIGURES_FOLDER
        existing = sorted(figures.iterdir()) if figures.is_dir() else []   # an earlier report's figures, or links
        for path in [args.out / "report.md", args.out / "report.html", figures / "model-law.svg", *existing]:
            check_output_path(path, protected=store.own_files())
    runs = store.runs(status="completed")
    if args.source != "any":
        runs = runs[runs["source"] == args.source]
    if runs.empty:
        raise InputError(f"the store holds no completed {args.source} runs")
    with CommandProgress("study", 2 if args.out else 1, "step", desc="study") as progress:
        report = build_report(runs, StudyConfig(dataset=args.dataset, bootstrap=args.bootstrap, metric=args.metric))
        report = with_references(with_metric_comparison(report, runs), store.references())
        progress.advance(detail="laws fitted")
        document = study_document(report)
        if not args.json:
            print(document.body)
        written = document.write(args.out, protected=store.own_files()) if args.out else []
        if args.out:
            progress.advance(detail="report written")
    if args.json:
        from store.json_values import to_json
        print(to_json(study_summary(report, written)))
    else:
        for path in written:
            print(f"wrote {path}")
    return 0


def study_summary(report, written: list[Path]) -> dict:
    """The --json object: the laws (without their bootstrap draws), extrapolations, files."""
    laws = {"model": report.model_law, "data": report.data_law, "joint": report.joint_law}
    return {"dataset": report.config.dataset, "runs_fitted": len(report.points), "left_out": len(report.diverged),
            "laws": {name: fit.to_dict(include_bootstrap=False) for name, fit in laws.items()},
            "annotation_laws": {a: fit.to_dict(include_bootstrap=False) for a, fit in report.annotation_laws.items()},
            "extrapolations": [e.summary() for e in report.extrapolations.values()],
            "metric_comparison": None if report.comparison is None else report.comparison.to_dict("records"),
            "written": [str(path) for path in written]}
