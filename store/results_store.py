"""The `Store`: the workbench's only door to its DuckDB results database.

See the package docstring for how writers, readers and several processes share it.
"""
from __future__ import annotations

import datetime as dt
import operator
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
import contextlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from engine import eval_protocol, paths
from engine.errors import InputError
from store import table_import
from store.connection import connection, transaction
from store.table_import import ImportReport
from store.spool_ingest import ingest
from store.schema import current_version, migrate
from store.spool import QUARANTINE, SpoolWriter, quarantined, spool_files
from store.json_values import finite_or_none, from_json, to_json, utc_now

_MAX_COUNT = 2**63 - 1  # BIGINT
RUN_STATUSES = ("running", "completed", "failed", "cancelled")
FINISH_STATUSES = RUN_STATUSES[1:]
TABLES = ("datasets", "runs", "points", "fits", "exports")
EXPORT_FORMATS = {
    "csv": "(FORMAT csv, HEADER true)",
    "parquet": "(FORMAT parquet)",
    "json": "(FORMAT json, ARRAY true)",
}
RUN_COLUMNS = (
    "run_id", "label", "source", "status", "dataset", "annotation", "model_name",
    "n_params", "n_params_strict", "train_pairs", "seed", "device", "code_version",
    "started_at", "ended_at", "wall_time_s", "best_contrastive_entropy", "metrics", "config",
    "eval_protocol", "eval_fingerprint", "best_calibrated_entropy", "stopped_early_at",
)  # fmt: skip
_SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
# the runs column each fit metric reads (engine.eval_protocol.METRICS)
_LOSS_COLUMNS = {"raw": "best_contrastive_entropy", "calibrated": "best_calibrated_entropy"}
_DATASET_NAMES = "SELECT name FROM datasets UNION SELECT dataset FROM runs WHERE dataset IS NOT NULL ORDER BY 1"
EXPORT_QUERIES = {
    "runs": f"{_SELECT_RUNS} ORDER BY started_at, run_id",
    "points": "SELECT * FROM points ORDER BY run_id, step",
    "fits": "SELECT * FROM fits ORDER BY created_at, fit_id",
}

_RESULT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("label", pa.string()), ("source", pa.string()),
    ("status", pa.string()), ("dataset", pa.string()), ("annotation", pa.string()),
    ("model_name", pa.string()), ("n_params", pa.int64()), ("train_pairs", pa.int64()),
    ("started_at", pa.timestamp("us")), ("ended_at", pa.timestamp("us")),
    ("best_contrastive_entropy", pa.float64()), ("metrics", pa.string()), ("config", pa.string()),
    ("eval_fingerprint", pa.string()), ("eval_protocol", pa.string()), ("best_calibrated_entropy", pa.float64()),
])  # fmt: skip


def _point_record(run_id: str, *, step: int, contrastive_entropy: float | None, metrics: dict | None = None,
                  wall_time_s: float | None = None, calibrated_entropy: float | None = None,
                  temperature: float | None = None) -> dict[str, Any]:
    """The spool arguments of one evaluation point, checked."""
    return {
        "run_id": _name("run_id", run_id),
        "step": _count("step", step),
        "contrastive_entropy": finite_or_none(contrastive_entropy),
        "metrics": _metrics_json(metrics),
        "wall_time_s": finite_or_none(wall_time_s),
        "calibrated_entropy": finite_or_none(calibrated_entropy),
        "temperature": finite_or_none(temperature),
    }  # fmt: skip


def _count(name: str, value: Any) -> int:
    """A non-negative whole number (numpy integers welcome), else InputError."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be a whole number, got {value!r}") from None
    if number < 0:
        raise InputError(f"{name} must not be negative, got {number}")
    if number > _MAX_COUNT:
        raise InputError(f"{name} {number} is too large: the store holds whole numbers up to 2^63 - 1")
    return number


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} must be a non-empty string, got {value!r}")
    return paths.validate_text(name, value)


def _text(name: str, value: Any) -> str:
    """Free text kept as it is (a device, a path): valid Unicode, else InputError."""
    return paths.validate_text(name, str(value))


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _metrics_json(metrics: dict[str, float] | None) -> str | None:
    if metrics is None:
        return None
    if not isinstance(metrics, dict):
        raise InputError(f"metrics must be a dict of name -> number, got {metrics!r}")
    try:
        return to_json({_name("metric name", k): finite_or_none(v) for k, v in metrics.items()})
    except InputError:
        raise
    except (TypeError, ValueError):
        raise InputError(f"metrics must map names to numbers, got {metrics!r}") from None


def _where(filters: dict[str, str | Sequence[str] | None]) -> tuple[str, list[Any]]:
    """` AND col IN (?, …)` for each filter given (a value or a list of values)."""
    clauses, params = [], []
    for column, wanted in filters.items():
        if wanted is None:
            continue
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        clauses.append(f" AND {column} IN ({', '.join('?' for _ in values) or 'NULL'})")
        params.extend(values)
    return "".join(clauses), params


def _decoded(
    frame: pd.DataFrame, json_columns: Sequence[str], flatten: str | None = None
) -> pd.DataFrame:
    """Parse JSON columns into Python objects; spread the dict in `flatten` into
    columns of its own (a key that clashes with an existing column stays in the dict)."""
    for column in json_columns:
        decoded = [from_json(text) for text in frame[column]]
        frame[column] = pd.Series(decoded, index=frame.index, dtype=object)
    if flatten:
        dicts = [value if isinstance(value, dict) else {} for value in frame[flatten]]
        for key in sorted({key for value in dicts for key in value} - set(frame.columns)):
            values = [value.get(key) for value in dicts]
            frame[key] = pd.Series(values, index=frame.index, dtype="float64")
    return frame


def _checked_rows(rows: pd.DataFrame) -> list[tuple[int, dict[str, Any]]]:
    """Result rows (n, d, loss, ...) checked by store.table_import, or InputError."""
    missing = [column for column in table_import.REQUIRED_COLUMNS if column not in rows.columns]
    if missing:
        raise InputError(f"rows lack the column(s) {', '.join(missing)}")
    return table_import.check_frame(rows.to_dict("records"))  # NaN reads as missing


def _delete_source(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """Delete every run of `source` and its points (inside the caller's transaction)."""
    (count,) = con.execute("SELECT count(*) FROM runs WHERE source = ?", [source]).fetchone()
    con.execute("DELETE FROM points WHERE run_id IN (SELECT run_id FROM runs WHERE source = ?)", [source])
    con.execute("DELETE FROM runs WHERE source = ?", [source])
    con.execute('DELETE FROM "references" WHERE source = ?', [source])
    return int(count)


def _row_dict(cursor: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([column[0] for column in cursor.description], row, strict=True))


class Store:
    """Runs, evaluation points, data sets and fitted laws of one workbench.

    `path` defaults to `engine.paths.store_path()`; the file and its folder are
    created on first use. `timeout_s` bounds how long an operation waits for another
    process's hold on the file before raising `StoreBusyError`.
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path if path is not None else paths.store_path()).expanduser().absolute()
        if not paths.is_unicode(str(self.path)):  # DuckDB opens UTF-8 paths only (std::bad_cast otherwise)
            raise InputError(f"the store path {ascii(str(self.path))} is not valid UTF-8 (a Latin-1 file name?), "
                             "which DuckDB cannot open; point --store (or $WORKBENCH_STORE) at another path")
        self.timeout_s = timeout_s
        self.spool_dir = paths.spool_dir(self.path)
        self._spool = SpoolWriter(self.spool_dir)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived, up-to-date connection: schema migrated, spool ingested."""
        with connection(self.path, self.timeout_s) as con:
            migrate(con)
            ingest(con, self.spool_dir)
            yield con

    def ingest(self) -> int:
        """Move waiting spool records into the database now; return how many."""
        with connection(self.path, self.timeout_s) as con:
            migrate(con)
            return ingest(con, self.spool_dir)

    # -- writers: append to the spool, never wait for the database ---------------

    def all_or_nothing(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes land together when it ends, or not at all when it raises
        (an import of many runs: one bad run leaves none of them half-written)."""
        return self._spool.all_or_nothing()

    def register_dataset(
        self,
        name: str,
        *,
        language: str,
        format: str,  # noqa: A002 - the column's name
        path: str | Path,
        n_passages: int,
        n_queries: int,
        n_train_pairs: int,
        n_test_pairs: int,
        annotation: str = "human",
        generator: dict | None = None,
    ) -> str:
        """Record a data set; registering the same name again updates it."""
        self._spool.append("register_dataset", {
            "name": _name("dataset name", name),
            "language": _text("language", language),
            "format": _text("format", format),
            "path": _text("data set path", path),
            "n_passages": _count("n_passages", n_passages),
            "n_queries": _count("n_queries", n_queries),
            "n_train_pairs": _count("n_train_pairs", n_train_pairs),
            "n_test_pairs": _count("n_test_pairs", n_test_pairs),
            "annotation": _name("annotation", annotation),
            "generator": to_json(generator),
        })  # fmt: skip
        return name

    def start_run(
        self,
        *,
        config: dict,
        model_name: str,
        n_params: int,
        n_params_strict: int,
        train_pairs: int,
        annotation: str,
        dataset: str,
        seed: int,
        device: str,
        code_version: str,
        run_id: str | None = None,
        source: str = "engine",
        label: str | None = None,
        eval_fingerprint: dict | None = None,
    ) -> str:
        """Record a run as running; with the id of an existing run (a resume), set it
        back to running instead of adding another. `eval_fingerprint` is how it is
        evaluated (engine.eval_protocol.evaluation_fingerprint). Returns the run id."""
        if not isinstance(config, dict):
            raise InputError(f"config must be a dict, got {type(config).__name__}")
        run_id = uuid.uuid4().hex if run_id is None else _name("run_id", run_id)
        fingerprint = eval_protocol.check_fingerprint(eval_fingerprint)
        self._spool.append("start_run", {
            "run_id": run_id,
            "config": to_json(config),
            "model_name": _name("model_name", model_name),
            "n_params": _count("n_params", n_params),
            "n_params_strict": _count("n_params_strict", n_params_strict),
            "train_pairs": _count("train_pairs", train_pairs),
            "annotation": _name("annotation", annotation),
            "dataset": _name("dataset", dataset),
            "seed": _count("seed", seed),
            "device": _text("device", device),
            "code_version": _text("code_version", code_version),
            "source": _name("source", source),
            "label": None if label is None else _text("label", label),
            "eval_fingerprint": to_json(fingerprint),
            "eval_protocol": eval_protocol.protocol_id(fingerprint),
        })  # fmt: skip
        return run_id

    def add_point(
        self,
        run_id: str,
        *,
        step: int,
        contrastive_entropy: float,
        metrics: dict[str, float] | None = None,
        wall_time_s: float,
        calibrated_entropy: float | None = None,
        temperature: float | None = None,
    ) -> None:
        """Record an evaluation: raw and calibrated contrastive entropy and the calibrated
        one's temperature (engine.evaluate); the same (run_id, step) again replaces the
        earlier one."""
        self._spool.append("add_point", _point_record(
            run_id, step=step, contrastive_entropy=contrastive_entropy, metrics=metrics, wall_time_s=wall_time_s,
            calibrated_entropy=calibrated_entropy, temperature=temperature))

    def add_points(self, run_id: str, points: Iterable[dict[str, Any]]) -> None:
        """Record many evaluations of one run at once (each a dict of `add_point`'s
        keyword arguments), durably with one fsync: a tracker import's thousands."""
        self._spool.append_many("add_point", [_point_record(run_id, **point) for point in points])

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        best_contrastive_entropy: float | None,
        metrics: dict | None = None,
        wall_time_s: float | None = None,
        best_calibrated_entropy: float | None = None,
        stopped_early_at: int | None = None,
    ) -> None:
        """Mark a run completed, failed or cancelled with its best result: the best raw
        and the best calibrated entropy over training, each tracked on its own, and the
        step where an early stop began the decay (None: it trained its planned steps)."""
        self._spool.append("finish_run", {
            "run_id": _name("run_id", run_id),
            "status": _choice("status", status, FINISH_STATUSES),
            "best_contrastive_entropy": finite_or_none(best_contrastive_entropy),
            "metrics": _metrics_json(metrics),
            "wall_time_s": finite_or_none(wall_time_s),
            "best_calibrated_entropy": finite_or_none(best_calibrated_entropy),
            "stopped_early_at": None if stopped_early_at is None else _count("stopped_early_at", stopped_early_at),
        })  # fmt: skip

    # -- readers: ingest the spool first, so they see every finished write ---------

    def datasets(self) -> pd.DataFrame:
        """The registered data sets, `generator` decoded (None for human annotations)."""
        with self._session() as con:
            frame = con.execute("SELECT * FROM datasets ORDER BY name").df()
        return _decoded(frame, ["generator"])

    def runs(
        self,
        *,
        dataset: str | Sequence[str] | None = None,
        annotation: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """One row per run; `config`, `metrics` and `eval_fingerprint` as dicts (None where
        not recorded), each metric also a column; `eval_protocol` names the fingerprint."""
        for wanted in [status] if isinstance(status, str) else status or []:
            _choice("status", wanted, RUN_STATUSES)
        where, params = _where({"dataset": dataset, "annotation": annotation, "status": status})
        query = f"{_SELECT_RUNS} WHERE true{where} ORDER BY started_at, run_id"
        with self._session() as con:
            frame = con.execute(query, params).df()
        return _decoded(frame, ["metrics", "config", "eval_fingerprint"], flatten="metrics")

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run as a dict (config and metrics decoded), or None if unknown."""
        with self._session() as con:
            row = _row_dict(con.execute(f"{_SELECT_RUNS} WHERE run_id = ?", [run_id]))
        if row is not None:
            for column in ("config", "metrics", "eval_fingerprint"):
                row[column] = from_json(row[column])
        return row

    def add_reference(self, *, dataset: str, eval_fingerprint: dict, method: str, metrics: dict[str, float],
                      source: str = "engine") -> None:
        """Record a lexical reference (engine/lexical.py) of `dataset` under an evaluation
        protocol: one per (data set, protocol, method), a new one replacing it."""
        fingerprint = eval_protocol.check_fingerprint(eval_fingerprint)
        if fingerprint is None:
            raise InputError("a reference needs the evaluation fingerprint it was measured under")
        self._spool.append("add_reference", {
            "dataset": _name("dataset", dataset), "eval_protocol": eval_protocol.reference_protocol(fingerprint),
            "method": _name("method", method), "eval_fingerprint": to_json(fingerprint),
            "metrics": _metrics_json(metrics), "source": _name("source", source),
        })  # fmt: skip

    def references(self, dataset: str | None = None) -> pd.DataFrame:
        """Lexical references by data set, protocol and method; each metric also a column."""
        where, params = _where({"dataset": dataset})
        with self._session() as con:
            frame = con.execute(f'SELECT * FROM "references" WHERE true{where} ORDER BY dataset, eval_protocol, '
                                "method", params).df()
        return _decoded(frame, ["metrics", "eval_fingerprint"], flatten="metrics")

    def points(self, run_id: str | None = None) -> pd.DataFrame:
        """Evaluation points by run and step; each metric also a column."""
        where, params = _where({"run_id": run_id})
        with self._session() as con:
            frame = con.execute(
                f"SELECT * FROM points WHERE true{where} ORDER BY run_id, step", params
            ).df()
        return _decoded(frame, ["metrics"], flatten="metrics")

    def law_points(
        self,
        *,
        dataset: str | Sequence[str] | None = None,
        annotation: str | Sequence[str] | None = None,
        source: str | Sequence[str] | None = None,
        metric: str = "raw",
    ) -> pd.DataFrame:
        """(n, d, loss) of every completed run — trained, imported or demo — for fitting,
        with how it was evaluated: `eval_protocol` (8 hex, None where not recorded) and
        `eval_fingerprint` (a dict, or None). A fit takes one protocol's points. `loss` is
        the best raw contrastive entropy (the paper's), or with metric="calibrated" the
        best calibrated one (runs without it are left out), which the fingerprint then names."""
        loss = _LOSS_COLUMNS[_choice("metric", metric, tuple(_LOSS_COLUMNS))]
        where, params = _where({"dataset": dataset, "annotation": annotation, "source": source})
        query = f"""
            SELECT n_params AS n, train_pairs AS d, {loss} AS loss, label,
                   dataset, annotation, model_name AS model, run_id, source, eval_protocol, eval_fingerprint
            FROM runs
            WHERE status = 'completed' AND {loss} IS NOT NULL
                  AND n_params IS NOT NULL AND train_pairs IS NOT NULL{where}
            ORDER BY source, n, d, run_id"""
        with self._session() as con:
            frame = con.execute(query, params).df()
        frame = _decoded(frame, ["eval_fingerprint"])
        if metric == "raw":  # the stored fingerprint says what best_contrastive_entropy measures
            return frame
        fingerprints = [None if f is None else {**f, "metric": metric} for f in frame["eval_fingerprint"]]
        return frame.assign(eval_fingerprint=pd.Series(fingerprints, index=frame.index, dtype=object),
                            eval_protocol=[eval_protocol.protocol_id(f) for f in fingerprints])

    def info(self) -> dict[str, Any]:
        """Where the store is, its schema version, how many rows each table holds, the
        data sets it knows (`dataset_names`: registered or named by a run, as imported and
        demo runs name theirs without registering them) and how many malformed spool
        records were set aside (and where)."""
        with self._session() as con:
            counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
            names = con.execute(_DATASET_NAMES).fetchall()
            version = current_version(con)
        return {
            "path": str(self.path),
            "schema_version": version,
            "counts": counts,
            "dataset_names": [name for (name,) in names],
            "spool_files_waiting": len(spool_files(self.spool_dir)),
            "spool_records_quarantined": quarantined(self.spool_dir),
            "quarantine_file": str(self.spool_dir / QUARANTINE),
        }

    # -- direct writes: short transactions under the file lock ---------------------

    def delete_run(self, run_id: str) -> None:
        """Remove a run and its points (a process still running it may add it again)."""
        with self._session() as con, transaction(con):
            con.execute("DELETE FROM points WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])

    def remove_demo(self) -> int:
        """Delete every run loaded as the demo study; return how many."""
        with self._session() as con, transaction(con):
            return _delete_source(con, "demo")

    def setting(self, key: str) -> Any:
        """A named setting of this store (JSON value), or None."""
        with self._session() as con:
            row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return from_json(row[0]) if row else None

    def set_setting(self, key: str, value: Any) -> None:
        with self._session() as con, transaction(con):
            con.execute("DELETE FROM settings WHERE key = ?", [key])
            con.execute("INSERT INTO settings VALUES (?, ?, ?)", [_name("key", key), to_json(value), utc_now()])

    def save_fit(
        self,
        *,
        law: str,
        params: dict,
        intervals: dict,
        r2: float,
        points: list,
        config: dict,
        name: str | None = None,
    ) -> str:
        """Keep a fitted law with the points it was fitted on; returns its fit_id."""
        fit_id = uuid.uuid4().hex
        row = [
            fit_id, name, _name("law", law), to_json(params), to_json(intervals),
            finite_or_none(r2), to_json(list(points)), to_json(config), utc_now(),
        ]  # fmt: skip
        with self._session() as con:
            con.execute(
                """INSERT INTO fits (fit_id, name, law, params, intervals, r2, points, config,
                                     created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                row,
            )
        return fit_id

    def fits(self) -> pd.DataFrame:
        """Saved fits, oldest first, with params, intervals, points and config decoded."""
        with self._session() as con:
            frame = con.execute(EXPORT_QUERIES["fits"]).df()
        return _decoded(frame, ["params", "intervals", "points", "config"])

    def fit(self, fit_id: str) -> dict[str, Any] | None:
        """One saved fit as a dict, or None if unknown."""
        with self._session() as con:
            row = _row_dict(con.execute("SELECT * FROM fits WHERE fit_id = ?", [fit_id]))
        if row is not None:
            for column in ("params", "intervals", "points", "config"):
                row[column] = from_json(row[column])
        return row

    def delete_fit(self, fit_id: str) -> None:
        """Forget a saved fit (the runs it was fitted on stay)."""
        with self._session() as con:
            con.execute("DELETE FROM fits WHERE fit_id = ?", [fit_id])

    def load_rows(
        self,
        rows: pd.DataFrame,
        *,
        source: str,
        label: str | None = None,
        origin: dict | None = None,
    ) -> int:
        """Add result rows (n, d, loss, optional label, dataset, annotation, model and
        ranking metrics) as completed runs, all or none; `label` fills rows without
        one and `origin` (where the rows came from) is kept in each run's config."""
        label = None if label is None else _text("label", label)
        return self._insert_results(_checked_rows(rows), _name("source", source), label, origin)

    def replace_rows(self, rows: pd.DataFrame, *, source: str, origin: dict | None = None) -> int:
        """Replace every run of `source` (e.g. the demo study) by `rows`, as `load_rows`
        adds them: every row is checked before anything is deleted, and the old runs
        go and the new ones come in one transaction, so bad rows leave the old ones."""
        good = _checked_rows(rows)
        if not good:
            raise InputError(f"no rows to replace the {source} runs with")
        return self._insert_results(good, _name("source", source), None, origin, replace=True)

    def _insert_results(
        self,
        good: list[tuple[int, dict[str, Any]]],
        source: str,
        label: str | None,
        origin: dict | None,
        replace: bool = False,
    ) -> int:
        """Insert checked rows as completed runs in one transaction (after deleting the
        runs of `source` if `replace`)."""
        if not good:
            return 0
        now = utc_now()
        table = pa.Table.from_pylist([
            {
                "run_id": uuid.uuid4().hex, "label": row["label"] or label, "source": source,
                "status": "completed", "dataset": row["dataset"], "annotation": row["annotation"],
                "model_name": row["model"], "n_params": row["n"], "train_pairs": row["d"],
                "started_at": now, "ended_at": now, "best_contrastive_entropy": row["loss"],
                "metrics": to_json(row["metrics"]),
                "config": to_json({**(origin or {}), "row": line}),
                "eval_fingerprint": to_json(row.get("eval_fingerprint")),
                "eval_protocol": eval_protocol.protocol_id(row.get("eval_fingerprint")),
                "best_calibrated_entropy": row.get("calibrated_loss"),
            }
            for line, row in good
        ], schema=_RESULT_SCHEMA)  # fmt: skip
        columns = ", ".join(table.column_names)
        with self._session() as con, transaction(con):
            if replace:
                _delete_source(con, source)
            con.register("incoming_results", table)
            try:
                con.execute(f"INSERT INTO runs ({columns}) SELECT {columns} FROM incoming_results")
            finally:
                con.unregister("incoming_results")
        return len(good)

    def import_file(
        self,
        path: str | Path,
        *,
        label: str | None = None,
        dataset: str | None = None,
        annotation: str | None = None,
    ) -> ImportReport:
        """Import results from a CSV or Parquet file made by another tool.

        Good rows are imported and bad rows reported by line; a problem with the file
        as a whole raises InputError and imports nothing. `dataset` and `annotation`
        fill rows that lack them; `label` too, else the file's name. Files over
        `table_import.MAX_IMPORT_BYTES` (10 MiB) or `table_import.MAX_IMPORT_ROWS` (100,000 rows)
        are refused.
        """
        path = Path(path).expanduser()
        label, dataset, annotation = (None if value is None else _text(what, value) for what, value in
                                      (("label", label), ("dataset", dataset), ("annotation", annotation)))
        shown_path = _text("import file path (rename it)", path.absolute())
        checked = table_import.check_file(path)
        for _, row in checked.good:
            row["dataset"] = row["dataset"] or dataset
            row["annotation"] = row["annotation"] or annotation
        imported = self._insert_results(
            checked.good, "import", label or path.stem, {"imported_from": shown_path}
        )
        return ImportReport(path, imported, checked.rejected, checked.ignored_columns)

    def export(self, what: str, fmt: str, out: str | Path | None = None) -> Path:
        """Write runs, points or fits as CSV, Parquet or JSON (an array of objects).

        Without `out` the file goes to an `exports/` folder beside the database. The
        file appears whole or not at all, and every export is logged. An `out` that is
        the store, its write-ahead log or inside its spool folder is refused first.
        """
        query = EXPORT_QUERIES[_choice("what", what, tuple(EXPORT_QUERIES))]
        options = EXPORT_FORMATS[_choice("fmt", fmt, tuple(EXPORT_FORMATS))]
        target = paths.check_output_path(self._export_target(what, fmt, out), protected=self.own_files())
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        with self._session() as con:
            try:
                (rows,) = con.execute(f"COPY ({query}) TO ? {options}", [str(partial)]).fetchone()
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            con.execute(
                "INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?)",
                [uuid.uuid4().hex, what, fmt, str(target), rows, utc_now()],
            )
        return target

    def _export_target(self, what: str, fmt: str, out: str | Path | None) -> Path:
        """The export's file: `out`, a default name inside `out` if it is a folder, or
        a default name in the exports folder beside the database."""
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        default_name = f"{what}-{stamp}-{uuid.uuid4().hex[:6]}.{fmt}"
        if out is None:
            target = self.path.parent / "exports" / default_name
        else:
            out = Path(out).expanduser()
            target = out / default_name if out.is_dir() else out
        return target.absolute()

    def own_files(self) -> dict[str, Path]:
        """The files no output of the workbench may overwrite (what -> path): the
        database, its write-ahead log and its spool folder (with the quarantine file)."""
        return {
            "the store": self.path,
            "the store's write-ahead log": self.path.with_name(self.path.name + ".wal"),
            "the store's spool folder": self.spool_dir,
        }
