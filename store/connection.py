"""Short-lived DuckDB connections that wait politely for the file lock.

DuckDB lets one process hold a database file; any other process that tries to open it
(even read-only) gets "Could not set lock on file". Every store operation therefore
opens a connection, does its work in one transaction and closes it, and an open that
meets the lock retries with exponential backoff and jitter until `timeout_s` passes.

Inside one process DuckDB shares a single database instance between connections, so
threads (Streamlit serves each session from its own thread) would run concurrent
transactions against each other; a per-file lock serialises them instead.

A path that cannot be a store (a folder, a file that is not DuckDB, a truncated or
read-only file, a full disk) is an `InputError` naming the file and what to do. The
header is checked before DuckDB sees the file: DuckDB takes some foreign files (SQLite)
for extensions and would try to download one.
"""
from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from engine.errors import InputError

FIRST_DELAY_S = 0.005  # a typical store transaction takes a few milliseconds
MAX_DELAY_S = 0.25
MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
MAGIC_OFFSET = 8
# no extension is ever installed or loaded behind the store's back (no network)
CONNECT_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
# what DuckDB says of a file cut short or overwritten in the middle
DAMAGE_SIGNS = ("Could not read enough bytes", "not a valid DuckDB database", "Corrupt database file")
POINT_ELSEWHERE = "point --store (or $WORKBENCH_STORE) at a DuckDB file the workbench wrote, or at a new path"


class StoreBusyError(InputError, TimeoutError):
    """Another process held the store's file lock for longer than the timeout (an
    InputError too, so every CLI reports it in one line)."""


_guard = threading.Lock()
_file_locks: dict[str, threading.RLock] = {}


def _file_lock(path: Path) -> threading.RLock:
    with _guard:
        return _file_locks.setdefault(str(path), threading.RLock())


def _is_lock_conflict(err: duckdb.Error) -> bool:
    text = str(err).lower()  # not just "lock": "block" appears in read errors
    return "could not set lock" in text or "conflicting lock" in text


def check_store_file(path: Path) -> None:
    """InputError unless `path` can hold a store: a DuckDB file that is writable, or
    a new file in a folder that exists or can be made. Reads 12 bytes, takes no lock."""
    folder = next((parent for parent in path.parents if parent.exists()), None)
    if folder is not None and not folder.is_dir():
        raise InputError(f"the store {path} cannot be created: {folder} is a file, not a folder; {POINT_ELSEWHERE}")
    if path.is_dir():
        raise InputError(f"the store {path} is a folder, not a database file; {POINT_ELSEWHERE}")
    if not path.exists():
        return
    if not path.is_file():
        raise InputError(f"the store {path} is not a regular file; {POINT_ELSEWHERE}")
    with path.open("rb") as handle:
        header = handle.read(MAGIC_OFFSET + len(MAGIC))
    if header[MAGIC_OFFSET:] != MAGIC:
        kind = "an empty file" if not header else "not a DuckDB database"
        raise InputError(f"the store {path} is {kind}; {POINT_ELSEWHERE}")
    if not os.access(path, os.R_OK | os.W_OK):
        raise InputError(f"the store {path} is read-only for this user; make it writable (chmod u+rw) "
                         f"or {POINT_ELSEWHERE}")


def store_error(path: Path, err: BaseException, *, opening: bool) -> InputError | None:
    """The InputError that says what an I/O failure on the store means, or None for a
    failure that is no fault of the store (let it surface). After the open, only a
    full disk, or a permission error that names the store's own files, is the store's."""
    text = " ".join(str(err).split())  # one line: DuckDB's messages may span several
    number = getattr(err, "errno", None)
    if number == errno.ENOSPC or "No space left" in text:
        return InputError(f"the disk ran full while working on the store {path} ({text}); free some space, "
                          f"or {POINT_ELSEWHERE}")
    denied = number in (errno.EACCES, errno.EROFS, errno.EPERM) or "Permission denied" in text \
        or "Read-only file system" in text
    if denied and (opening or str(path) in text):
        return InputError(f"the store {path} is read-only ({text}); make it writable, or {POINT_ELSEWHERE}")
    if any(sign in text for sign in DAMAGE_SIGNS):  # at the open, or at the first read of a damaged block
        return InputError(f"the store {path} is truncated or damaged ({text}); restore it from a copy, "
                          f"or {POINT_ELSEWHERE}")
    if not opening:
        return None
    return InputError(f"the store {path} cannot be opened ({text}); {POINT_ELSEWHERE}")


def _open(path: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open `path` read-write, retrying while another process holds it."""
    deadline = time.monotonic() + timeout_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return duckdb.connect(str(path), config=CONNECT_CONFIG)
        except duckdb.Error as err:
            if not _is_lock_conflict(err):
                raise store_error(path, err, opening=True) from err
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"the store {path} stayed locked by another process for more than "
                    f"{timeout_s:g} s ({err}); close the program holding it and retry"
                ) from err
        time.sleep(random.uniform(delay / 2, delay))  # jitter keeps waiters apart
        delay = min(delay * 2, MAX_DELAY_S)


@contextmanager
def connection(path: Path, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to `path` held only for the `with` block; a full disk, a read-only
    file or a damaged one met inside it (a COMMIT's TransactionException too) is an
    InputError."""
    check_store_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"the store {path} cannot be created ({err.strerror}); {POINT_ELSEWHERE}") from None
    with _file_lock(path):
        con = _open(path, timeout_s)
        try:
            yield con
        except (duckdb.Error, OSError) as err:
            meaning = store_error(path, err, opening=False)
            if meaning is None:
                raise
            raise meaning from err
        finally:
            con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, rolled back if the block raises: all or nothing."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
