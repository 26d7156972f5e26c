"""Progress of the long commands (sweep, annotate, study, tracker import, evaluate):
a tqdm bar on a terminal and a progress file the app can watch.

    with CommandProgress("sweep", total=len(runs), unit="run") as progress:
        for run in runs:
            ...
            progress.advance(detail=run.run_id)

The bar goes to stderr and only when stderr is a terminal, so logs, pipes and
`--json` output stay clean. The file is JSON, rewritten atomically (temp file +
os.replace, so a reader never sees half of it) at most once a second and whenever
the command ends: {command, pid, host, status, done, total, unit, detail,
started_at, updated_at, eta_s}. It lives at $WORKBENCH_PROGRESS_FILE when that is
set (a launcher that wants to watch one command names its file), else at
`runs_dir()/.commands/<command>-<pid>.json`, where `active_commands` finds every
command running now. Training runs keep their own `runs_dir()/<run_id>/progress.json`.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from engine.run_status import process_alive
from engine.paths import runs_dir

WRITE_INTERVAL_S = 1.0
PROGRESS_FILE_VARIABLE = "WORKBENCH_PROGRESS_FILE"


def commands_dir() -> Path:
    """Progress files of running commands (a dot folder: never a run id)."""
    return runs_dir() / ".commands"


def progress_file(command: str) -> Path:
    chosen = os.environ.get(PROGRESS_FILE_VARIABLE)
    return Path(chosen).expanduser() if chosen else commands_dir() / f"{command}-{os.getpid()}.json"


class CommandProgress:
    """A bar and a progress file for one command; `advance` after each unit of work."""

    def __init__(self, command: str, total: int | None, unit: str = "it", *, initial: int = 0,
                 desc: str | None = None, path: Path | None = None):
        from tqdm import tqdm

        self.path = path or progress_file(command)
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc or command, file=sys.stderr,
                        disable=not sys.stderr.isatty(), dynamic_ncols=True)
        now = time.time()
        self.state = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "status": "running",
                      "done": initial, "total": total, "unit": unit, "detail": None, "started_at": now,
                      "updated_at": now, "eta_s": None}
        self._initial, self._started, self._written = initial, time.monotonic(), 0.0
        self._write()

    def advance(self, n: int = 1, detail: str | None = None) -> None:
        self.bar.update(n)
        if detail is not None:
            self.bar.set_postfix_str(detail, refresh=False)
        self.state["done"] += n
        self.state["detail"] = detail if detail is not None else self.state["detail"]
        self.state["eta_s"] = self._eta()
        if time.monotonic() - self._written >= WRITE_INTERVAL_S:
            self._write()

    def set_total(self, total: int) -> None:
        self.bar.total = total
        self.bar.refresh()
        self.state["total"] = total
        self._write()

    def close(self, status: str = "completed") -> None:
        self.bar.close()
        self.state["status"] = status
        self.state["eta_s"] = 0.0 if status == "completed" else None
        self._write()

    def __enter__(self) -> CommandProgress:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close("completed" if kind is None else "failed")

    def _eta(self) -> float | None:
        done, total = self.state["done"] - self._initial, self.state["total"]
        if not done or total is None:
            return None
        return (time.monotonic() - self._started) / done * max(0, total - self.state["done"])

    def _write(self) -> None:
        self.state["updated_at"] = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(self.state, handle)
        os.replace(handle.name, self.path)
        self._written = time.monotonic()


def read_command_progress(path: Path) -> dict | None:
    """The progress file at `path`, None when it is unreadable or holds no JSON object."""
    try:
        progress = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nested 100k deep
        return None
    return progress if isinstance(progress, dict) else None


def active_commands() -> list[dict]:
    """Progress of every command running now on this host (its process alive)."""
    found = []
    for path in sorted(commands_dir().glob("*.json")) if commands_dir().is_dir() else []:
        progress = read_command_progress(path)
        if progress and progress.get("status") == "running" and _alive(progress):
            found.append({**progress, "path": str(path)})
    return found


def _alive(progress: dict) -> bool:
    if progress.get("host") != socket.gethostname():
        return True  # another host sharing the runs folder: its own process table would tell
    pid = progress.get("pid")
    return isinstance(pid, int) and process_alive(pid)
