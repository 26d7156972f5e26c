"""`python -m engine study`: the report of a scaling study in the store (engine/study.py):
fitted laws, extrapolation to the largest model and data size, annotation types,
entropy against ranking metrics; Markdown to stdout and `--out`, figures as SVG."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("study", help="fit, extrapolate and chart a scaling study from the store")
    parser.add_argument("--store", help="results store (default: $WORKBENCH_STORE or .store/workbench.duckdb)")
    parser.add_argument("--source", default="demo", choices=["demo", "engine", "import", "any"],
                        help="which runs: the demo study, runs trained here, imported ones, or all")
    parser.add_argument("--dataset", default="squad-dev", help="the data set of the main study")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap refits per law")
    parser.add_argument("--out", type=Path, help="folder for report.md and figures/*.svg")
    parser.set_defaults(handler=run_study)


def run_study(args) -> int:
    from engine.errors import InputError
    from engine.study import StudyConfig, build_report, report_markdown, save_figures
    from store import Store

    runs = Store(args.store).runs(status="completed")
    if args.source != "any":
        runs = runs[runs["source"] == args.source]
    if runs.empty:
        raise InputError(f"the store holds no completed {args.source} runs")
    report = build_report(runs, StudyConfig(dataset=args.dataset, bootstrap=args.bootstrap))
    text = report_markdown(report)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text, encoding="utf-8")
        for path in save_figures(report, args.out / "figures"):
            print(f"wrote {path}")
    return 0
