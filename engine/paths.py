"""Where the workbench keeps its files. Every default lives inside the project
folder (git-ignored) and can be moved with an environment variable."""
from __future__ import annotations

import os
from pathlib import Path

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
