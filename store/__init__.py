"""The results store: every run, evaluation point, data set, fitted law and export of
the workbench, in one DuckDB file. This is the only package that speaks SQL.

    from store import Store
    store = Store()          # engine.paths.store_path(): $WORKBENCH_STORE or .store/
    run_id = store.start_run(config=..., model_name=..., ...)
    store.add_point(run_id, step=100, contrastive_entropy=1.9, wall_time_s=12.0)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.9)
    store.law_points(dataset="msmarco")   # n, d, loss, ... for fitting the laws

How several processes share it. DuckDB lets one process hold the file; no other may
open it meanwhile, not even read-only. So writers never open it: `register_dataset`,
`start_run`, `add_point` and `finish_run` append one JSON line each to the calling
Store's own spool file, `<db>.spool/<pid>-<uuid>.jsonl`, fsynced before returning
(store/spool.py). Training processes therefore never wait for the app or each other,
and a SIGKILL loses at most the record being written. Every other operation opens a
short-lived connection (retrying with exponential backoff and jitter while another
process holds the file, store/connection.py), first moves all waiting spool records
into the database in one transaction — exactly once, by byte offsets committed with
the rows (store/spool_ingest.py) — then reads or writes, and closes. No connection outlives
a call, so the lock is held for milliseconds. `ingest()` does the move explicitly.

The schema is a list of additive migration steps recorded in `schema_version`
(store/schema.py); older files upgrade when opened. Imports check every row and
report bad ones by line (store/table_import.py); `python -m store` is the command line.
"""
from store.connection import StoreBusyError
from store.results_store import Store
from store.table_import import ImportReport

__all__ = ["ImportReport", "Store", "StoreBusyError"]
