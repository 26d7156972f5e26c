"""Append-only spool files: how writers hand results over without the database lock.

Each `Store` object in each process appends JSON lines to a file of its own,
`<db>.spool/<pid>-<uuid>.jsonl`, one record per call, flushed with `os.fsync` before
the call returns. A SIGKILL therefore loses at most the record being written, and the
torn line it leaves is set aside when read.

A record is `{"op", "ts", "args"}` with exactly the fields `RECORD_FIELDS` gives its op,
of their kinds (a field added later, `ADDED_FIELDS`, may be absent from older records). A line that is not one (torn, not JSON, a field missing, unknown or of
the wrong type, e.g. from a newer writer; text UTF-8 cannot hold, such as a lone surrogate; a
ts outside 1970 to 9999) is set aside in `<db>.spool/quarantine.log`
with the reason, once, and the records around it are ingested as usual.

Writers and the ingester meet on the file through `flock`: a writer holds it while it
appends one line, the ingester while it reads new bytes and while it removes a file it
has fully ingested. A writer that finds its file removed (link count 0, or gone)
starts a new file under a new name; names are never reused, so the ingested byte
offsets the database keeps per file name can never point into someone else's data.

A disk that refuses an append (full, over quota, read-only) is a `SpoolWriteError`, an
InputError naming the spool file and what to do; the lines before it stay readable.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.checks import is_finite_number, is_whole
from engine.errors import InputError
from engine.paths import WRITE_FAILURES, is_unicode

SUFFIX = ".jsonl"
QUARANTINE = "quarantine.log"  # rejected lines, one JSON object each; not a spool file


def spool_files(directory: Path) -> list[Path]:
    """The spool files waiting in `directory` (none if it does not exist yet); a folder
    or other non-file that happens to end in .jsonl is no spool file."""
    return sorted(p for p in directory.glob(f"*{SUFFIX}") if p.is_file()) if directory.is_dir() else []


def quarantine(directory: Path, rejected: list[Rejected]) -> list[Rejected]:
    """Append to `directory`'s quarantine file the rejected lines it does not hold yet
    (fsynced: kept even if the ingest that found them rolls back); return those."""
    if not rejected:
        return []
    path = directory / QUARANTINE
    kept = _quarantined_keys(path)
    new = [entry for entry in rejected if (entry.file, entry.offset) not in kept]
    if new:
        found_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = "".join(json.dumps({**asdict(entry), "found_at": found_at}) + "\n" for entry in new)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, (b"\n" if _ends_torn(fd) else b"") + text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    return new


def quarantined(directory: Path) -> int:
    """How many spool lines `directory`'s quarantine file holds."""
    return len(_quarantined_keys(directory / QUARANTINE))


def _quarantined_keys(path: Path) -> set[tuple[str, int]]:
    """(spool file, offset) of every line in the quarantine file at `path`."""
    if not path.is_file():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            keys.add((entry["file"], entry["offset"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash while quarantining: written again next time
    return keys


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




class SpoolWriteError(InputError):
    """A result record could not be written to the spool: a full disk or quota, or a
    read-only file system (an InputError: the CLIs report it in one line)."""


class SpoolWriter:
    """Appends records to this process's spool file; never touches the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: Path | None = None
        self._pid = os.getpid()
        self._held: list[str] | None = None  # lines of an all_or_nothing block, written at its end

    def append(self, op: str, args: dict[str, Any]) -> None:
        """Write one record durably: it survives a SIGKILL once this returns."""
        self.append_many(op, [args])

    def append_many(self, op: str, args_list: list[dict[str, Any]]) -> None:
        """Write several records of one kind with one write and one fsync (a tracker
        import's thousands of points): all of them survive a SIGKILL once this
        returns; a crash during the write keeps the records before the torn one.
        Inside `all_or_nothing` they wait for the end of the block instead."""
        if not args_list:
            return
        now = time.time()
        lines = []
        for args in args_list:
            record = {"op": op, "ts": now, "args": args}
            problem = check_record(record)
            if problem:  # a writer out of step with RECORD_FIELDS: fail here, not at every read
                raise ValueError(f"not a valid spool record: {problem}")
            lines.append(json.dumps(record, allow_nan=False) + "\n")
        if self._held is not None:
            self._held.extend(lines)
        else:
            self._write(lines, f"a {op} record")

    @contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Hold the records appended inside the block and write them together at its
        end (one write, one fsync); a block that raises writes none of them. A nested
        block belongs to the outer one."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
            lines = self._held
        finally:
            self._held = None
        self._write(lines, f"{len(lines)} records")

    def _write(self, lines: list[str], what: str) -> None:
        if not lines:
            return
        try:
            self._append_line("".join(lines).encode())
        except OSError as err:
            if err.errno not in WRITE_FAILURES:
                raise
            problem, remedy = WRITE_FAILURES[err.errno]
            target = self._file or self.directory
            raise SpoolWriteError(
                f"cannot write {what} to the results spool {target}: {problem} ({err.strerror}); {remedy}, "
                f"or point --store (or $WORKBENCH_STORE) at a writable disk with room (the records written before "
                f"are kept, and ingested on the next store access)"
            ) from err

    def _append_line(self, line: bytes) -> None:
        """Append encoded records (whole lines) under the file's lock and fsync them."""
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
class Rejected:
    """A spool line that is no well-formed record: kept in the quarantine file."""

    file: str
    offset: int  # of the line in its file: with the file's name (never reused), its key
    line: str
    reason: str


@dataclass
class Chunk:
    """The records read from one spool file between byte offsets `start` and `end`,
    and the lines among them that were no well-formed record."""

    path: Path
    start: int
    end: int
    records: list[dict[str, Any]]
    rejected: list[Rejected] = field(default_factory=list)


# What each op's record carries: field -> kind. Anything else is refused, so the SQL the
# ingester builds from these names can never be steered by a spool file's keys.
TEXT, JSON_TEXT, COUNT, NUMBER = "UTF-8 text", "JSON text (its strings UTF-8)", "whole number", "number"
OPTIONAL_TEXT, OPTIONAL_JSON, OPTIONAL_NUMBER = "UTF-8 text or null", "JSON text (its strings UTF-8) or null", "number or null"
OPTIONAL_COUNT = "whole number or null"
RECORD_FIELDS: dict[str, dict[str, str]] = {
    "register_dataset": {
        "name": TEXT, "language": TEXT, "format": TEXT, "path": TEXT, "n_passages": COUNT,
        "n_queries": COUNT, "n_train_pairs": COUNT, "n_test_pairs": COUNT, "annotation": TEXT,
        "generator": OPTIONAL_JSON,
    },
    "start_run": {
        "run_id": TEXT, "config": JSON_TEXT, "model_name": TEXT, "n_params": COUNT,
        "n_params_strict": COUNT, "train_pairs": COUNT, "annotation": TEXT, "dataset": TEXT,
        "seed": COUNT, "device": TEXT, "code_version": TEXT, "source": TEXT, "label": OPTIONAL_TEXT,
        "eval_fingerprint": OPTIONAL_JSON, "eval_protocol": OPTIONAL_TEXT,
    },
    "add_point": {
        "run_id": TEXT, "step": COUNT, "contrastive_entropy": OPTIONAL_NUMBER,
        "metrics": OPTIONAL_JSON, "wall_time_s": OPTIONAL_NUMBER,
        "calibrated_entropy": OPTIONAL_NUMBER, "temperature": OPTIONAL_NUMBER,
    },
    "finish_run": {
        "run_id": TEXT, "status": TEXT, "best_contrastive_entropy": OPTIONAL_NUMBER,
        "metrics": OPTIONAL_JSON, "wall_time_s": OPTIONAL_NUMBER, "best_calibrated_entropy": OPTIONAL_NUMBER,
        "stopped_early_at": OPTIONAL_COUNT,
    },
    "add_reference": {
        "dataset": TEXT, "eval_protocol": TEXT, "method": TEXT, "eval_fingerprint": OPTIONAL_JSON,
        "metrics": OPTIONAL_JSON, "source": TEXT,
    },
}  # fmt: skip
# Fields added to an op after its first release: a record from an older writer (a spool
# file left by a run that started before the upgrade) may lack them, and reads as null.
ADDED_FIELDS: dict[str, frozenset[str]] = {
    "start_run": frozenset({"eval_fingerprint", "eval_protocol"}),
    "add_point": frozenset({"calibrated_entropy", "temperature"}),
    "finish_run": frozenset({"best_calibrated_entropy", "stopped_early_at"}),
}
_MAX_COUNT = 2**63 - 1  # BIGINT
_LAST_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a timestamp column holds


def _fits(kind: str, value: Any) -> bool:
    if value is None:
        return kind.endswith("or null")
    if kind in (TEXT, OPTIONAL_TEXT):
        return isinstance(value, str) and is_unicode(value)
    if kind in (JSON_TEXT, OPTIONAL_JSON):
        return isinstance(value, str) and is_unicode(value) and _is_json(value)
    if kind in (COUNT, OPTIONAL_COUNT):
        return is_whole(value) and 0 <= value <= _MAX_COUNT
    return is_finite_number(value)


def _is_json(text: str) -> bool:
    """Whether `text` is JSON whose strings are all valid Unicode (an escaped lone
    surrogate, "\\udce9", parses, and then fails wherever it is written out)."""
    try:
        return is_unicode(json.dumps(json.loads(text), ensure_ascii=False))
    except (ValueError, RecursionError):
        return False


def check_record(record: Any) -> str | None:
    """Why `record` is no well-formed spool record, or None if it is one."""
    if not isinstance(record, dict) or set(record) != {"op", "ts", "args"}:
        return "a record is an object with exactly op, ts and args"
    if record["op"] not in RECORD_FIELDS:
        return f"unknown op {record['op']!r}"
    if not _fits(NUMBER, record["ts"]) or not 0 <= record["ts"] < _LAST_TIME:
        return f"ts must be seconds since 1970 before the year 10000, got {record['ts']!r}"
    args, expected = record["args"], RECORD_FIELDS[record["op"]]
    if not isinstance(args, dict):
        return "args must be an object"
    missing = set(expected) - set(args) - ADDED_FIELDS.get(record["op"], frozenset())
    if missing or not set(args) <= set(expected):
        return f"{record['op']}: missing field(s) {sorted(missing)}, unknown field(s) {sorted(set(args) - set(expected))}"
    wrong = [f"{name} must be {kind}" for name, kind in expected.items() if not _fits(kind, args.get(name))]
    return f"{record['op']}: {'; '.join(wrong)}" if wrong else None


def _parse(data: bytes, path: Path, start: int) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """The well-formed records in `data` (read from byte `start` of `path`), and the
    lines that are not: torn by a killed writer, not JSON, or not a record of a known
    op with exactly its fields and their types."""
    records, rejected, offset = [], [], start
    for line in data.split(b"\n"):
        line_offset, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            reason = check_record(record)
        except (ValueError, RecursionError) as err:
            reason = f"torn or not JSON ({err})"
        if reason is None:
            records.append(record)
        else:
            text = line.decode("utf-8", "replace")
            rejected.append(Rejected(path.name, line_offset, text, reason))
    return records, rejected


def read_from(path: Path, start: int) -> Chunk | None:
    """The records appended to `path` since byte `start`, or None if it is gone.

    The flock is held while reading, so no writer is half-way through a line: a line
    without its newline at the end is a record torn by a killed writer, rejected
    like any malformed line.
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
    return Chunk(path, start, start + len(data), *_parse(data, path, start))


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
