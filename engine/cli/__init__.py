"""Thin command-line drivers. Each command lives in its own module that exposes
`register(subparsers)`; heavy imports (torch, transformers) happen inside the
handlers so `python -m engine laws ...` starts fast."""
from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import InputError

# (module under engine.cli, in the order `--help` lists them)
COMMAND_MODULES = ("laws", "budget", "paper", "models", "train", "evaluate", "sweep", "annotate", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"engine.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"engine.cli.{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
