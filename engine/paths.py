"""Where the workbench keeps its files. Every default lives inside the project
folder (git-ignored) and can be moved with an environment variable."""
from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
SHARED_VOCAB = PROJECT_ROOT.parent / "shared" / "vocab"


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else default


def store_path() -> Path:
    """The DuckDB results store: $WORKBENCH_STORE or .store/workbench.duckdb."""
    return _from_env("WORKBENCH_STORE", PROJECT_ROOT / ".store" / "workbench.duckdb")


def runs_dir() -> Path:
    """Per-run folders (progress file, checkpoints, logs): $WORKBENCH_RUNS or runs/."""
    return _from_env("WORKBENCH_RUNS", PROJECT_ROOT / "runs")


def cache_dir() -> Path:
    """Tokenised data sets and trained tokenizers: $WORKBENCH_CACHE or .cache/."""
    return _from_env("WORKBENCH_CACHE", PROJECT_ROOT / ".cache")


# ---------------------------------------------------------------- names and outputs

MAX_NAME_LENGTH = 200  # a path component is at most 255 bytes; leave room for suffixes
_NAME_RULE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
NAME_RULE_TEXT = (f"letters, digits, '.', '_' and '-' only, not starting with '.', "
                  f"1 to {MAX_NAME_LENGTH} characters")


def validate_name(kind: str, value: str) -> str:
    """`value` unchanged if it is safe as one path component (a run id, a sweep name,
    an annotation type); else InputError naming `kind`, the value and the rule. The
    one check for every id or name that becomes part of a path."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not _NAME_RULE.fullmatch(value):
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "..."
        raise InputError(f"{kind} {shown!r} is not a safe name: use {NAME_RULE_TEXT}")
    return value


def check_output_path(out: str | Path, *, protected: dict[str, str | Path]) -> Path:
    """`out`, absolute, unless it resolves to one of the `protected` paths (what -> path:
    the store file, its WAL, an input of the same command) or lies inside one (a spool
    folder); then InputError naming both. Call it before doing the work."""
    target = Path(out).expanduser().resolve()
    for what, path in protected.items():
        kept = Path(path).expanduser().resolve()
        if target == kept or kept in target.parents:
            inside = "" if target == kept else " (inside it)"
            raise InputError(f"output {out} would overwrite {what} {kept}{inside}; choose another output path")
    return Path(out).expanduser().absolute()
