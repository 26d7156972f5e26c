"""Thin command-line drivers. Each command lives in its own module that exposes
`register(subparsers)`. Only the chosen command's module is imported (`--help` lists
every command from the table below without importing any), and heavy imports
(torch, transformers) happen inside the handlers, so `python -m engine budget`
starts about as fast as numpy, scipy and pandas import."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

from engine.errors import InputError

# command -> (module under engine.cli, one line for `--help`), in the order `--help` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "laws": ("laws", "fit and inspect scaling laws (Eq. 6-8)"),
    "budget": ("budget", "optimal N and D for a budget (Eq. 11-14)"),
    "paper": ("paper", "recompute every number the paper derives from its coefficients"),
    "models": ("models", "list the model ladder and its sizes"),
    "train": ("train", "train and evaluate one dense retriever (Sections 3.4-3.5)"),
    "evaluate": ("evaluate", "measure a trained or pretrained encoder"),
    "sweep": ("sweep", "run models x data sizes x annotations x seeds from a TOML file"),
    "annotate": ("annotate", "generate pseudo-annotations (ICT, docT5query, LLM)"),
    "study": ("study", "fit, extrapolate and chart a scaling study from the store"),
    "tune-lr": ("tune_lr", "each model's best learning rate from a sweep with an lr axis"),
    "references": ("references", "BM25 beside the store's runs, under each of their protocols"),
    "plan-runs": ("plan_runs", "choose the next runs that most narrow the decision's interval"),
    "export-model": ("export_model", "write a trained run's model for sentence-transformers"),
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full subparser of each of `commands` (None: all), their
    modules imported; every other command is listed by name and help only. A table
    entry whose module is missing raises ModuleNotFoundError."""
    built = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name in built:
            importlib.import_module(f"engine.cli.{module_name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def keep_undecodable_bytes() -> None:
    """Print a path whose bytes are not UTF-8 (a Latin-1 file name, decoded with
    surrogate escapes) as those bytes, where a strict UTF-8 stdout would raise."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdout else "backslashreplace")


def main(argv: list[str] | None = None) -> int:
    keep_undecodable_bytes()
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[:1] if argv and argv[0] in COMMANDS else []  # `--help` or a typo: list, build nothing
    args = build_parser(chosen).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
