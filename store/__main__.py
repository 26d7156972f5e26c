"""`python -m store info | import FILE | export --what W --format F | demo ACTION`: a thin driver over
`store.Store`. Bad input prints one `error: ...` line and exits with status 2; an
import that rejects every row exits with status 1."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import InputError
from engine.paths import check_output_path
from store import Store, StoreBusyError
from store.results_store import EXPORT_FORMATS, EXPORT_QUERIES


def _info(store: Store, args: argparse.Namespace) -> int:
    from engine.run_status import interrupted_runs, with_live_status

    info = store.info()
    # runs the store calls running whose process is gone (engine/run_status.py); rerunning resumes them
    info["interrupted_runs"] = interrupted_runs(with_live_status(store.runs(status="running")))
    print(json.dumps(info, indent=2))
    return 0


def _import(store: Store, args: argparse.Namespace) -> int:
    report = store.import_file(
        args.file, label=args.label, dataset=args.dataset, annotation=args.annotation
    )
    print(f"imported {report.imported} row(s) from {report.path} into {store.path}")
    for line, reason in report.rejected:
        print(f"rejected line {line}: {reason}")
    if report.ignored_columns:
        print(f"ignored column(s): {', '.join(report.ignored_columns)}")
    return 1 if report.rejected and not report.imported else 0


def _export(store: Store, args: argparse.Namespace) -> int:
    print(store.export(args.what, args.format, args.out))
    return 0


def _demo(store: Store, args: argparse.Namespace) -> int:
    from store import demo

    if args.action == "load":
        loaded = demo.load_demo(store, args.file)
        print(f"loaded {loaded} demo run(s) from {args.file or demo.DEMO_FILE} into {store.path}")
    elif args.action == "remove":
        print(f"removed {demo.remove_demo(store)} demo run(s) from {store.path}")
    elif args.action == "status":
        print(demo.demo_state(store))
    else:
        if not args.meta:
            raise InputError("demo write needs --meta FILE: a JSON object with the study's title, data sets, "
                             "hardware, date and commands")
        protected = {**store.own_files(), "the --meta input": Path(args.meta)}
        out = check_output_path(args.file or demo.DEMO_FILE, protected=protected)
        try:
            study = json.loads(Path(args.meta).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise InputError(f"--meta {args.meta}: not a readable JSON file ({err})") from err
        if not isinstance(study, dict):
            raise InputError(f"--meta {args.meta}: expected a JSON object with the study's title, data sets, ...")
        print(demo.write_demo(store, study, out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    store_help = "database file (default: $WORKBENCH_STORE or .store/workbench.duckdb)"
    parser = argparse.ArgumentParser(prog="python -m store", description=__doc__)
    parser.add_argument("--store", metavar="PATH", help=store_help)
    # accepted after the command too; SUPPRESS keeps a value given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS, help=store_help)
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser(
        "info", parents=[common], help="where the store is and what it holds"
    )
    info.set_defaults(handler=_info)

    load = commands.add_parser(
        "import", parents=[common], help="import n, d, loss rows from a CSV or Parquet file"
    )
    load.add_argument("file")
    load.add_argument("--label", help="label for rows without one (default: the file's name)")
    load.add_argument("--dataset", help="data set for rows without one")
    load.add_argument("--annotation", help="annotation type for rows without one")
    load.set_defaults(handler=_import)

    export = commands.add_parser(
        "export", parents=[common], help="write runs, points or fits to a file"
    )
    export.add_argument("--what", required=True, choices=sorted(EXPORT_QUERIES))
    export.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS))
    export.add_argument("--out", help="file or folder (default: exports/ beside the store)")
    export.set_defaults(handler=_export)

    from store.demo import DEMO_FILE

    demo = commands.add_parser(
        "demo", parents=[common], help="the demo study: load it, remove it, its status, or write one from a store"
    )
    demo.add_argument("action", choices=["load", "remove", "status", "write"])
    demo.add_argument("--file", type=Path,
                      help=f"demo study file (default: {DEMO_FILE.relative_to(DEMO_FILE.parents[1])})")
    demo.add_argument("--meta", help="write: JSON file describing the study (title, data sets, hardware, date, "
                                     "commands)")
    demo.set_defaults(handler=_demo)

    from store.trackers_cli import add_command as add_import_tracker  # TensorBoard, MLflow, W&B

    add_import_tracker(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.cli import keep_undecodable_bytes

    keep_undecodable_bytes()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(Store(args.store), args)
    except (InputError, StoreBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
