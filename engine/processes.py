"""Commands as background processes: start one (never through a shell, output to a
log), read its log's outcome, cancel it with its children.

A study is one `python -m engine sweep FILE` process in a session of its own; its
training runs are its children in its process group, so a cancel (SIGTERM to the
group) stops the sweep and every run, which record themselves as cancelled.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from engine.paths import PROJECT_ROOT, runs_dir

LOG_TAIL_LINES = 15
_OUTCOME = re.compile(r"^FAILED \(exit (-?\d+)\) (\S+)$")
_ERROR_LINE = re.compile(r"^(error: |\w+(Error|Exception)\b)")   # how a command or a traceback says why it stopped


class Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...


Launcher = Callable[[list[str], Path], Process]


def start_process(argv: list[str], log_path: Path, env: dict | None = None, own_session: bool = True,
                  cwd: Path | None = PROJECT_ROOT, keep_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start `argv` (never a shell) with its output appended to `log_path` (never a
    pipe that could fill up). `own_session`: in a new session and process group, so a
    cancel can stop it and its children together. `keep_fds`: descriptors the process
    inherits (a lock it then holds for as long as it lives)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=own_session, pass_fds=keep_fds)


def outcome_line(run_id: str, exit_code: int) -> str:
    """How a sweep logs a finished run (`failed_run_ids` reads it back)."""
    return f"finished {run_id}" if exit_code == 0 else f"FAILED (exit {exit_code}) {run_id}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Job:
    """A study launched from here: one `python -m engine sweep` process."""

    name: str
    sweep_file: Path
    log_path: Path
    process: Process
    cancelled: bool = False  # a user asked to stop it

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    @property
    def state(self) -> str:
        """running, finished, cancelled (a user's cancel), or failed: with the exit codes of
        the runs that failed (the sweep itself exits 1 then), else the sweep's own."""
        code = self.exit_code
        if code is None:
            return "running"
        if code == 0:
            return "finished"
        if self.cancelled:
            return "cancelled"
        failed = self.failed_runs()
        if not failed:
            return f"failed (exit {code})"
        codes = ", ".join(sorted({str(c) for _, c in failed}))
        return f"failed ({len(failed)} run{'s' if len(failed) > 1 else ''} failed, exit {codes})"

    def failed_runs(self) -> list[tuple[str, int]]:
        """(run id, exit code) of each run the sweep's log reports as failed."""
        return [(m.group(2), int(m.group(1))) for line in log_tail(self.log_path, lines=10_000).splitlines()
                if (m := _OUTCOME.match(line.strip()))]

    def failed_run_ids(self) -> list[str]:
        """The runs the sweep's log reports as failed."""
        return [run_id for run_id, _ in self.failed_runs()]

    def failure_report(self) -> list[tuple[str, str]]:
        """(log file, its last lines): the sweep's log, then each failed run's train.log."""
        logs = [self.log_path] + [runs_dir() / run_id / "train.log" for run_id in self.failed_run_ids()]
        return [(str(path), log_tail(path) or "(empty log)") for path in logs]

    def failure_reasons(self) -> list[tuple[str, str]]:
        """(run id, the line of its train.log that says why it stopped) for each failed run."""
        return [(run_id, decisive_line(log_tail(runs_dir() / run_id / "train.log", lines=10_000)))
                for run_id in self.failed_run_ids()]


def decisive_line(log: str) -> str:
    """The line of a log that says why the command stopped: the last `error: ...` line
    (engine/cli) or exception line of a traceback, else the last line that says anything."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return next((line for line in reversed(lines) if _ERROR_LINE.match(line)), lines[-1] if lines else "(empty log)")


def cancel(job: Job) -> None:
    """SIGTERM to the study's process group: the sweep stops, and the training run
    in progress records itself as cancelled (engine/cli/train.py)."""
    if job.exit_code is None:
        job.cancelled = True
        os.killpg(job.process.pid, signal.SIGTERM)


def process_group(pid: int | None) -> int | None:
    """The process group of a live process, None if it is gone."""
    try:
        return os.getpgid(pid) if pid and pid > 0 else None
    except (ProcessLookupError, PermissionError):
        return None
