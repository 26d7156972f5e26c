"""The store's schema as a list of additive migration steps.

A database records in `schema_version` every step applied to it; opening it applies the
missing ones in order, each in its own transaction, so a file written by an older
version of the workbench upgrades in place and keeps its rows. Steps are only ever
appended: never edit a released step, add a new one.

No table has a PRIMARY KEY, UNIQUE constraint or index: DuckDB has refused ALTERs on
indexed tables, and every step after the first may ALTER any table. Keys (run_id,
(run_id, step), dataset name, fit_id) are kept unique by the store's own upserts, which
run under DuckDB's single-writer file lock inside one transaction.
"""
from __future__ import annotations

import duckdb

from engine.errors import InputError
from store.connection import transaction
from store.json_values import utc_now

# Step 1: the first released schema (v1). Kept verbatim so an old file can be rebuilt
# in tests and upgraded by the steps after it.
_V1_CORE = (
    """CREATE TABLE datasets (
        name VARCHAR NOT NULL,
        language VARCHAR,
        format VARCHAR,
        path VARCHAR,
        n_passages BIGINT,
        n_queries BIGINT,
        n_train_pairs BIGINT,
        n_test_pairs BIGINT,
        annotation VARCHAR,
        generator JSON,
        registered_at TIMESTAMP,
        updated_at TIMESTAMP
    )""",
    """CREATE TABLE runs (
        run_id VARCHAR NOT NULL,
        config JSON,
        model_name VARCHAR,
        n_params BIGINT,
        n_params_strict BIGINT,
        train_pairs BIGINT,
        annotation VARCHAR,
        dataset VARCHAR,
        seed BIGINT,
        device VARCHAR,
        code_version VARCHAR,
        status VARCHAR NOT NULL,
        started_at TIMESTAMP,
        ended_at TIMESTAMP,
        wall_time_s DOUBLE,
        best_contrastive_entropy DOUBLE,
        metrics JSON
    )""",
    """CREATE TABLE points (
        run_id VARCHAR NOT NULL,
        step BIGINT NOT NULL,
        contrastive_entropy DOUBLE,
        metrics JSON,
        wall_time_s DOUBLE,
        recorded_at TIMESTAMP
    )""",
    """CREATE TABLE fits (
        fit_id VARCHAR NOT NULL,
        name VARCHAR,
        law VARCHAR NOT NULL,
        params JSON,
        intervals JSON,
        r2 DOUBLE,
        points JSON,
        config JSON,
        created_at TIMESTAMP
    )""",
)

# Step 2: an audit log of exports, and how far each spool file has been ingested
# (byte offset), which makes replaying a spool file exactly idempotent.
_V2_EXPORTS_AND_SPOOL = (
    """CREATE TABLE exports (
        export_id VARCHAR NOT NULL,
        what VARCHAR NOT NULL,
        format VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        rows BIGINT,
        created_at TIMESTAMP
    )""",
    """CREATE TABLE spool_files (
        name VARCHAR NOT NULL,
        ingested_bytes BIGINT NOT NULL,
        updated_at TIMESTAMP
    )""",
)

# Step 3: where a run came from (engine, import, demo) and a free label, so imported
# and demo results sit beside trained ones and the demo can be removed in one action.
_V3_RUN_SOURCE = (
    "ALTER TABLE runs ADD COLUMN source VARCHAR DEFAULT 'engine'",
    "ALTER TABLE runs ADD COLUMN label VARCHAR",
)

# Step 4: small named settings of the store itself (whether the demo study was loaded
# or removed, so a removed demo stays removed).
_V4_SETTINGS = (
    """CREATE TABLE settings (
        key VARCHAR NOT NULL,
        value JSON,
        updated_at TIMESTAMP
    )""",
)

# Step 5: how each run was evaluated (engine/eval_protocol.py): its evaluation fingerprint and
# the fingerprint's 8-hex name, so a fit takes one protocol's runs. Rows from before
# keep NULL: a group of their own.
_V5_EVAL_PROTOCOL = (
    "ALTER TABLE runs ADD COLUMN eval_fingerprint JSON",
    "ALTER TABLE runs ADD COLUMN eval_protocol VARCHAR",
)

# Step 6: calibrated contrastive entropy beside the raw one (engine/evaluate.py): at
# each evaluation, and its temperature; a run's best of it, tracked apart from the raw
# best. Rows from before keep NULL (the demo study, imports, older runs).
_V6_CALIBRATED_ENTROPY = (
    "ALTER TABLE points ADD COLUMN calibrated_entropy DOUBLE",
    "ALTER TABLE points ADD COLUMN temperature DOUBLE",
    "ALTER TABLE runs ADD COLUMN best_calibrated_entropy DOUBLE",
)

# Step 7: lexical references (engine/lexical.py: BM25), one per data set, evaluation
# protocol and method, measured as the dense runs are, drawn beside their curves.
_V7_REFERENCES = (
    """CREATE TABLE "references" (
        dataset VARCHAR NOT NULL,
        eval_protocol VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        eval_fingerprint JSON,
        metrics JSON,
        source VARCHAR,
        recorded_at TIMESTAMP
    )""",
)

# Step 8: where a run's early stop began its decay (engine/schedule.py early_end): the
# evaluation step whose patience ran out. NULL for a run that trained its planned steps,
# and for rows from before (their result.json may still say).
_V8_EARLY_STOP = (
    "ALTER TABLE runs ADD COLUMN stopped_early_at BIGINT",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1_CORE, _V2_EXPORTS_AND_SPOOL, _V3_RUN_SOURCE, _V4_SETTINGS, _V5_EVAL_PROTOCOL, _V6_CALIBRATED_ENTROPY,
    _V7_REFERENCES, _V8_EARLY_STOP,
)
LATEST_VERSION = len(MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest step applied to this database (0 for a new file)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)"
    )
    (version,) = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate(con: duckdb.DuckDBPyConnection, *, upto: int = LATEST_VERSION) -> int:
    """Apply the steps this database lacks, up to `upto`; return its version after.

    A database from a newer workbench is refused rather than half-understood.
    """
    version = current_version(con)
    if version > LATEST_VERSION:
        (path,) = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
        raise InputError(
            f"the store {path} has schema version {version} but this workbench knows only up to "
            f"{LATEST_VERSION}; update the workbench or point --store at another file"
        )
    for number in range(version + 1, upto + 1):
        with transaction(con):
            for statement in MIGRATIONS[number - 1]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [number, utc_now()])
    return max(version, upto)
