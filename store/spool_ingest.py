"""Moving spool records into the database: one transaction, exactly once.

The byte offset up to which each spool file has been applied is committed in the same
transaction as the rows it produced, and a file is deleted only after that commit. A
crash at any point therefore leaves either nothing applied (the file is read again) or
everything applied and the offset saved (the file is skipped up to the offset): a
spool file replayed twice duplicates nothing. Records are applied in time order across
files (merged, each file keeping its own order), so a run resumed in a second process
ends with the state its last record gave it.

Only well-formed records are applied (store/spool.py checks each against its op's fixed
fields); the others are set aside in the quarantine file with their reason, so one bad
line never blocks the store. Every column name in the SQL here comes from this code.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from store.connection import transaction
from store.spool import QUARANTINE, RECORD_FIELDS, Chunk, quarantine, read_from, remove_if_done, spool_files
from store.json_values import utc_from_epoch, utc_now

log = logging.getLogger(__name__)

Record = dict[str, Any]


def upsert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    keys: dict[str, Any],
    values: dict[str, Any],
    on_insert: dict[str, Any] | None = None,
) -> None:
    """Update the row with `keys`, or insert it (with `on_insert` columns too).

    Table and column names come from this package's code, never from input; every
    value is a bound parameter. Safe against duplicates because the caller holds the
    database's only writer lock inside a transaction.
    """
    where = " AND ".join(f"{column} = ?" for column in keys)
    found = con.execute(f"SELECT count(*) FROM {table} WHERE {where}", list(keys.values()))
    if found.fetchone()[0]:
        assignments = ", ".join(f"{column} = ?" for column in values)
        con.execute(
            f"UPDATE {table} SET {assignments} WHERE {where}",
            [*values.values(), *keys.values()],
        )
        return
    row = {**keys, **values, **(on_insert or {})}
    placeholders = ", ".join("?" for _ in row)
    con.execute(
        f"INSERT INTO {table} ({', '.join(row)}) VALUES ({placeholders})", list(row.values())
    )


def _fixed_fields(record: Record) -> dict[str, Any]:
    """The record's arguments under its op's fixed field names (spool.RECORD_FIELDS), in
    their order: column names in SQL come from that list, never from a record's keys."""
    args = record["args"]  # a field added after the record was written (spool.ADDED_FIELDS) reads as null
    return {column: args.get(column) for column in RECORD_FIELDS[record["op"]]}


def _register_dataset(con: duckdb.DuckDBPyConnection, record: Record) -> None:
    args = _fixed_fields(record)
    when = utc_from_epoch(record["ts"])
    name = args.pop("name")
    upsert(con, "datasets", {"name": name}, {**args, "updated_at": when}, {"registered_at": when})


def _start_run(con: duckdb.DuckDBPyConnection, record: Record) -> None:
    """A new run, or a resumed one set back to running (its start time is kept)."""
    args = _fixed_fields(record)
    run_id = args.pop("run_id")
    values = {**args, "status": "running", "ended_at": None}
    upsert(con, "runs", {"run_id": run_id}, values, {"started_at": utc_from_epoch(record["ts"])})


def _finish_run(con: duckdb.DuckDBPyConnection, record: Record) -> None:
    args = record["args"]
    con.execute(
        """UPDATE runs SET status = ?, best_contrastive_entropy = ?, best_calibrated_entropy = ?,
               stopped_early_at = ?, ended_at = ?, metrics = coalesce(?, metrics), wall_time_s = coalesce(?, wall_time_s)
           WHERE run_id = ?""",
        [
            args["status"],
            args["best_contrastive_entropy"],
            args.get("best_calibrated_entropy"),  # absent from records written before it existed
            args.get("stopped_early_at"),  # likewise
            utc_from_epoch(record["ts"]),
            args["metrics"],
            args["wall_time_s"],
            args["run_id"],
        ],
    )


_POINT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("contrastive_entropy", pa.float64()),
        ("metrics", pa.string()),
        ("wall_time_s", pa.float64()),
        ("calibrated_entropy", pa.float64()),
        ("temperature", pa.float64()),
        ("recorded_at", pa.timestamp("us")),
    ]
)


def _write_points(con: duckdb.DuckDBPyConnection, points: dict[tuple[str, int], Record]) -> None:
    """Replace the points with these (run_id, step) keys in two set-based statements.

    Points of runs the store does not know (deleted while their process still ran)
    are dropped rather than left orphaned.
    """
    if not points:
        return
    rows = [
        {**_fixed_fields(record), "recorded_at": utc_from_epoch(record["ts"])}
        for record in points.values()
    ]
    incoming = pa.Table.from_pylist(rows, schema=_POINT_SCHEMA)
    con.register("incoming_points", incoming)
    try:
        con.execute(
            """DELETE FROM points USING incoming_points i
               WHERE points.run_id = i.run_id AND points.step = i.step"""
        )
        con.execute(
            """INSERT INTO points (run_id, step, contrastive_entropy, metrics, wall_time_s,
                                   calibrated_entropy, temperature, recorded_at)
               SELECT i.run_id, i.step, i.contrastive_entropy, i.metrics, i.wall_time_s,
                      i.calibrated_entropy, i.temperature, i.recorded_at
               FROM incoming_points i WHERE i.run_id IN (SELECT run_id FROM runs)"""
        )
    finally:
        con.unregister("incoming_points")


def _add_reference(con: duckdb.DuckDBPyConnection, record: Record) -> None:
    """A lexical reference, one per (data set, protocol, method): a new one replaces it."""
    args = _fixed_fields(record)
    keys = {name: args.pop(name) for name in ("dataset", "eval_protocol", "method")}
    upsert(con, '"references"', keys, {**args, "recorded_at": utc_from_epoch(record["ts"])})


_APPLY: dict[str, Callable[[duckdb.DuckDBPyConnection, Record], None]] = {
    "register_dataset": _register_dataset,
    "start_run": _start_run,
    "finish_run": _finish_run,
    "add_reference": _add_reference,
}


def apply_records(con: duckdb.DuckDBPyConnection, records: Iterable[Record]) -> int:
    """Apply well-formed records (spool.check_record) in order; points are gathered
    (the last per key wins) and written together at the end, since no other record
    reads them."""
    applied = 0
    points: dict[tuple[str, int], Record] = {}
    for record in records:
        if record["op"] == "add_point":
            args = record["args"]
            points[(args["run_id"], args["step"])] = record
        else:
            _APPLY[record["op"]](con, record)
        applied += 1
    _write_points(con, points)
    return applied


def _save_offsets(con: duckdb.DuckDBPyConnection, chunks: list[Chunk], directory: Path) -> None:
    """Record how far each file was applied; forget files that no longer exist."""
    for (name,) in con.execute("SELECT name FROM spool_files").fetchall():
        if not (directory / name).exists():
            con.execute("DELETE FROM spool_files WHERE name = ?", [name])
    for chunk in chunks:
        upsert(
            con,
            "spool_files",
            {"name": chunk.path.name},
            {"ingested_bytes": chunk.end, "updated_at": utc_now()},
        )


def ingest(con: duckdb.DuckDBPyConnection, directory: Path) -> int:
    """Move everything waiting in the spool `directory` into the database.

    Returns the number of records applied. The caller holds the connection (and with it
    the file lock); spool files are removed only after the transaction commits.
    """
    files = spool_files(directory)
    if not files:
        return 0
    with transaction(con):
        offsets = dict(con.execute("SELECT name, ingested_bytes FROM spool_files").fetchall())
        chunks = [
            chunk
            for path in files
            if (chunk := read_from(path, offsets.get(path.name, 0))) is not None
        ]
        merged = heapq.merge(*(chunk.records for chunk in chunks), key=lambda r: r["ts"])
        applied = apply_records(con, merged)
        _save_offsets(con, chunks, directory)
        rejected = [entry for chunk in chunks for entry in chunk.rejected]
        set_aside = quarantine(directory, rejected)  # before COMMIT: a replay finds them kept
    for chunk in chunks:
        remove_if_done(chunk.path, chunk.end)
    if set_aside:
        log.warning("%d malformed spool record(s) set aside in %s (first: %s, %s); the rest were ingested",
                    len(set_aside), directory / QUARANTINE, set_aside[0].file, set_aside[0].reason)
    return applied
