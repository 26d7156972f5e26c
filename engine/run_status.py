"""Whether a training run is alive: its progress file, and a run the file calls running
told apart from one whose process died. The Runs page, the store's CLI and the
training loop share it.

A training run reports through `runs_dir()/<run_id>/progress.json` (`ProgressFile`):
rewritten atomically, with the process id, the host and `updated_at`, the heartbeat.
A run the file calls running is *interrupted* when its process is gone (same host),
or, on another host sharing the runs folder, when the heartbeat is older than
`STALE_AFTER_S`. An interrupted run resumes from its last checkpoint when its sweep
or `engine train` command runs again.
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path

from engine.checks import is_whole
from engine.errors import InputError
from engine.paths import runs_dir, validate_name

PROGRESS_INTERVAL_S = 1.0    # at most one progress write a second, except forced ones
STALE_AFTER_S = 15 * 60      # a run on another host without a heartbeat this long is interrupted
INTERRUPTED = "interrupted"  # shown in place of "running" for a run whose process is gone


class ProgressFile:
    """`progress.json` of a run, rewritten atomically (temp file + os.replace) so a
    reader such as the app never sees half a file; it carries the writer's pid and
    host, and `updated_at` on every write."""

    def __init__(self, path: Path, **fixed):
        self.path = path
        self.state = {"pid": os.getpid(), "host": socket.gethostname(), **fixed}
        self._written = 0.0

    def update(self, force: bool = False, **fields) -> None:
        self.state.update(fields, updated_at=time.time())
        if not force and time.monotonic() - self._written < PROGRESS_INTERVAL_S:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(self.state, handle, indent=1)
        os.replace(handle.name, self.path)
        self._written = time.monotonic()


def read_progress(run_id: str) -> dict | None:
    """The run's progress file, None when it has none (or it is unreadable, or the id
    could not be a run folder: an imported row's id never leads outside runs/), or
    holds no JSON object."""
    try:
        progress = json.loads((runs_dir() / validate_name("run id", run_id) / "progress.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, InputError, RecursionError):  # nested 100k deep
        return None
    return progress if isinstance(progress, dict) else None


def process_alive(pid: int | None) -> bool:
    """A process with this id exists on this host and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal test is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def run_state(progress: dict, now: float | None = None) -> str:
    """The progress file's status, with "running" turned into INTERRUPTED when the
    process is gone (this host) or the heartbeat stopped (another host)."""
    status = progress.get("status") or "running"
    if status != "running":
        return status
    if progress.get("host", socket.gethostname()) == socket.gethostname():
        pid = progress.get("pid")
        return status if isinstance(pid, int) and process_alive(pid) else INTERRUPTED
    updated_at = progress.get("updated_at")
    if not isinstance(updated_at, (int, float)) or not math.isfinite(updated_at):
        return INTERRUPTED  # no heartbeat it could be judged by
    return status if (now or time.time()) - updated_at <= STALE_AFTER_S else INTERRUPTED


def active_runs() -> dict[str, dict]:
    """run_id -> progress of every run that is training now, launched here or from a shell."""
    found = {}
    for run_dir in sorted(runs_dir().glob("*/")):
        progress = read_progress(run_dir.name)
        if progress and run_state(progress) == "running":
            found[run_dir.name] = progress
    return found


def live_status(run_id: str, stored: str) -> str:
    """A store status corrected by the run's progress file: a run the store calls
    running whose process is gone reads as INTERRUPTED."""
    if stored != "running":
        return stored
    progress = read_progress(run_id)
    return INTERRUPTED if progress and run_state(progress) == INTERRUPTED else stored


def with_live_status(runs):
    """A copy of a store's runs table (columns run_id, status) with live statuses."""
    return runs.assign(status=[live_status(r, s) for r, s in zip(runs["run_id"], runs["status"])])


def interrupted_runs(runs) -> list[dict]:
    """Each INTERRUPTED run of a runs table with live statuses (`with_live_status`):
    the step it reached and the checkpoint step it resumes from."""
    found = []
    for run_id in runs.loc[runs["status"] == INTERRUPTED, "run_id"]:
        progress = read_progress(run_id) or {}
        found.append({"run_id": run_id, "step": _count(progress.get("step")),
                      "total_steps": _count(progress.get("total_steps")), "resumes_from_step": checkpoint_step(run_id)})
    return found


def _count(value) -> int | None:
    """A step count from a progress file, None when it holds no whole number (NaN, text)."""
    return value if is_whole(value) else None


def checkpoint_step(run_id: str) -> int:
    """The step of the run's latest checkpoint (`checkpoints/step-N`), 0 without one."""
    steps = [int(p.name.split("-", 1)[1]) for p in (runs_dir() / run_id / "checkpoints").glob("step-*")
             if p.name.split("-", 1)[1].isdigit()]
    return max(steps, default=0)
