"""`python -m engine models`: the model ladder with each rung's size N (the paper's
non-embedding count, projection to 768 included), computed from the config alone."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the model ladder and its sizes", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.add_argument("--family", choices=("bert", "ernie", "scratch"), help="only this family")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.ladder import LADDER

    rows = [m.describe() for m in LADDER.values() if args.family in (None, m.family)]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'name':42} {'L':>3} {'H':>5} {'N':>12} {'N/2^20':>8}  init")
    for row in rows:
        init = "scratch" if row["scratch"] else "pretrained"
        print(f"{row['name']:42} {row['layers']:>3} {row['hidden']:>5} {row['n_params']:>12,} "
              f"{row['n_params_mebi']:>8.3f}  {init}")
    return 0
