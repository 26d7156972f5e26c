"""`python -m store import-tracker PATH --loss METRIC --n PARAM --d PARAM`: runs from
TensorBoard, MLflow or W&B exports into the store (store/trackers.py), with a
`--dry-run` preview."""
from __future__ import annotations

import argparse
import json

from engine.errors import InputError
from store.table_import import METRIC_COLUMNS
from store.trackers import KINDS, TrackerMapping, import_runs, preview


def add_command(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("import-tracker", parents=[common],
                                 help="import runs from TensorBoard logs, MLflow (mlruns/ or SQLite) or W&B exports")
    parser.add_argument("path", help="TensorBoard log folder, mlruns/ folder, MLflow SQLite file, or W&B export folder")
    parser.add_argument("--kind", choices=("auto", *KINDS), default="auto")
    parser.add_argument("--loss", required=True, help="the metric that is the contrastive entropy (lower is better)")
    parser.add_argument("--n", required=True, help="parameter holding N (non-embedding parameters), or N itself")
    parser.add_argument("--d", required=True, help="parameter holding D (annotated pairs), or D itself")
    parser.add_argument("--metric", action="append", default=[], metavar="OURS=THEIRS",
                        help=f"a ranking metric ({', '.join(METRIC_COLUMNS)}) = the tracker's metric (repeatable)")
    parser.add_argument("--model", help="parameter naming the model (default: the run's name)")
    parser.add_argument("--dataset", default="imported", help="data set the runs were evaluated on")
    parser.add_argument("--annotation", default="human", help="annotation type of the runs' training pairs")
    parser.add_argument("--label", help="label for the runs (default: each run's name)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be imported; write nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    parser.set_defaults(handler=run)


def run(store, args) -> int:
    mapping = TrackerMapping(loss=args.loss, n=args.n, d=args.d, metrics=_metric_pairs(args.metric),
                             dataset=args.dataset, annotation=args.annotation, model=args.model)
    if args.dry_run:
        rows = preview(store, args.path, mapping, args.kind, label=args.label)
    else:
        rows = import_runs(store, args.path, mapping, args.kind, label=args.label)
    imported = sum(row["action"] != "skip" for row in rows)
    if not imported:
        raise InputError(_nothing_importable(args.path, rows))
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "store": str(store.path), "runs": rows,
                          "imported": 0 if args.dry_run else imported}))
    else:
        for row in rows:
            detail = row["problem"] or f"N={row['n']} D={row['d']} {row['points']} points, best loss {row['best_loss']:.4g}"
            print(f"{row['action']:<6} {row['run_id']}  {row['name']}: {detail}")
        verb = "would import" if args.dry_run else "imported"
        print(f"{verb} {imported} of {len(rows)} run(s) into {store.path}")
    return 0


def _nothing_importable(path: str, rows: list[dict]) -> str:
    """One line: no run under `path` can be imported, with the first run's problem."""
    if not rows:
        return f"{path}: no tracker runs found there; give a TensorBoard, MLflow or W&B export"
    first = rows[0]
    more = f" (and {len(rows) - 1} more run(s) skipped)" if len(rows) > 1 else ""
    return (f"{path}: none of its {len(rows)} run(s) can be imported: {first['name']}: {first['problem']}{more}; "
            "check --loss, --n and --d (see --dry-run)")


def _metric_pairs(pairs: list[str]) -> dict[str, str]:
    mapped = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours or not theirs:
            raise InputError(f"--metric {pair!r}: give OURS=THEIRS, e.g. --metric mrr@10=val/mrr")
        mapped[ours] = theirs
    return mapped
