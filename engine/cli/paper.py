"""`python -m engine paper`: the paper's derived numbers, recomputed (engine/paper_check.py)."""
from __future__ import annotations

import json
from dataclasses import asdict


def register(subparsers) -> None:
    parser = subparsers.add_parser("paper", help="recompute every number the paper derives from its coefficients")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run_paper)


def run_paper(args) -> int:
    from engine.paper_check import all_numbers

    numbers = all_numbers()
    if args.json:
        print(json.dumps([asdict(n) for n in numbers]))
        return 0
    for n in numbers:
        mark = "ok " if n.agrees else "DIFFERS"
        print(f"{mark:<8}{n.quantity:<44} paper: {n.paper:<14} recomputed: {n.recomputed:<12.4g} {n.note}")
    return 0
