"""Append-only spool files: how writers hand results over without the database lock.

Each `Store` object in each process appends JSON lines to a file of its own,
`<db>.spool/<pid>-<uuid>.jsonl`, one record per call, flushed with `os.fsync` before
the call returns. A SIGKILL therefore loses at most the record being written, and the
torn line it leaves is skipped when read.

Writers and the ingester meet on the file through `flock`: a writer holds it while it
appends one line, the ingester while it reads new bytes and while it removes a file it
has fully ingested. A writer that finds its file removed (link count 0, or gone)
starts a new file under a new name; names are never reused, so the ingested byte
offsets the database keeps per file name can never point into someone else's data.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".jsonl"
log = logging.getLogger(__name__)


def spool_dir(db_path: Path) -> Path:
    """The spool folder that belongs to the database at `db_path`."""
    return db_path.with_name(db_path.name + ".spool")


def spool_files(directory: Path) -> list[Path]:
    """The spool files waiting in `directory` (none if it does not exist yet)."""
    return sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_after(fd: int, start: int) -> bytes:
    """Every byte of the file from offset `start` to its end."""
    parts, offset = [], start
    while part := os.pread(fd, 1 << 20, offset):
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


def _ends_torn(fd: int) -> bool:
    """Whether the file ends in the middle of a line (a writer died mid-record)."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


class SpoolWriter:
    """Appends records to this process's spool file; never touches the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: Path | None = None
        self._pid = os.getpid()

    def append(self, op: str, args: dict[str, Any]) -> None:
        """Write one record durably: it survives a SIGKILL once this returns."""
        record = {"op": op, "ts": time.time(), "args": args}
        line = (json.dumps(record, allow_nan=False) + "\n").encode()
        while True:
            fd = self._open()
            if fd is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink == 0:  # ingested and removed while we opened it
                    self._file = None
                    continue
                # a torn record left by a crash must stay a line of its own
                _write_all(fd, b"\n" + line if _ends_torn(fd) else line)
                os.fsync(fd)
                return
            finally:
                os.close(fd)  # also releases the flock

    def _open(self) -> int | None:
        """This writer's file for appending, or None if the ingester removed it."""
        if self._file is None or self._pid != os.getpid():  # first use, or a forked child
            return self._create()
        try:
            return os.open(self._file, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            self._file = None
            return None

    def _create(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        self._file = self.directory / f"{self._pid}-{uuid.uuid4().hex}{SUFFIX}"
        fd = os.open(self._file, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)  # the new name survives a crash too
        finally:
            os.close(directory_fd)
        return fd


@dataclass
class Chunk:
    """The records read from one spool file between byte offsets `start` and `end`."""

    path: Path
    start: int
    end: int
    records: list[dict[str, Any]]


def _parse(data: bytes, path: Path) -> list[dict[str, Any]]:
    """The well-formed records in `data`; torn or corrupt lines are logged and skipped."""
    records = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not {"op", "ts", "args"} <= record.keys():
                raise ValueError("missing op, ts or args")
        except (ValueError, AttributeError) as err:
            log.warning("skipping a torn or corrupt spool line in %s: %s", path.name, err)
            continue
        records.append(record)
    return records


def read_from(path: Path, start: int) -> Chunk | None:
    """The records appended to `path` since byte `start`, or None if it is gone.

    The flock is held while reading, so no writer is half-way through a line: a line
    without its newline at the end is a record torn by a killed writer, read and
    skipped like any corrupt line.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = _read_after(fd, start)
    finally:
        os.close(fd)
    return Chunk(path, start, start + len(data), _parse(data, path))


def remove_if_done(path: Path, ingested: int) -> None:
    """Delete `path` if nothing was appended after byte `ingested` (call after COMMIT)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size == ingested and os.fstat(fd).st_nlink > 0:
            os.unlink(path)
    finally:
        os.close(fd)
