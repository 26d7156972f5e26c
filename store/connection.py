"""Short-lived DuckDB connections that wait politely for the file lock.

DuckDB lets one process hold a database file; any other process that tries to open it
(even read-only) gets "Could not set lock on file". Every store operation therefore
opens a connection, does its work in one transaction and closes it, and an open that
meets the lock retries with exponential backoff and jitter until `timeout_s` passes.

Inside one process DuckDB shares a single database instance between connections, so
threads (Streamlit serves each session from its own thread) would run concurrent
transactions against each other; a per-file lock serialises them instead.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

FIRST_DELAY_S = 0.005  # a typical store transaction takes a few milliseconds
MAX_DELAY_S = 0.25


class StoreBusyError(TimeoutError):
    """Another process held the store's file lock for longer than the timeout."""


_guard = threading.Lock()
_file_locks: dict[str, threading.RLock] = {}


def _file_lock(path: Path) -> threading.RLock:
    with _guard:
        return _file_locks.setdefault(str(path), threading.RLock())


def _is_lock_conflict(err: duckdb.Error) -> bool:
    return "lock" in str(err).lower()


def _open(path: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open `path` read-write, retrying while another process holds it."""
    deadline = time.monotonic() + timeout_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as err:
            if not _is_lock_conflict(err):
                raise
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"the store {path} stayed locked by another process for more than "
                    f"{timeout_s:g} s ({err}); close the program holding it and retry"
                ) from err
        time.sleep(random.uniform(delay / 2, delay))  # jitter keeps waiters apart
        delay = min(delay * 2, MAX_DELAY_S)


@contextmanager
def connection(path: Path, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to `path` held only for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path):
        con = _open(path, timeout_s)
        try:
            yield con
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
