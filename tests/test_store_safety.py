"""Store regressions of issue 12: SQL through spool keys, malformed spool records that
blocked every read, outputs that overwrote the store, and a demo load that lost the demo."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import Store
from store.spool import QUARANTINE
from tests.conftest import ROOT

RUN = dict(config={}, model_name="m", n_params=10, n_params_strict=10, train_pairs=5, annotation="human",
           dataset="toy", seed=0, device="cpu", code_version="t")
DATASET_ARGS = {"name": "evil", "language": "en", "format": "beir", "path": "/x", "n_passages": 1, "n_queries": 1,
                "n_train_pairs": 1, "n_test_pairs": 1, "annotation": "human", "generator": None}


def _spool_line(store: Store, name: str, *lines: str) -> Path:
    """Lines appended to a spool file as another (buggy, newer or hostile) writer would."""
    store.spool_dir.mkdir(parents=True, exist_ok=True)
    path = store.spool_dir / name
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    return path


def _record(op: str, args: dict, ts: float | None = None) -> str:
    return json.dumps({"op": op, "ts": time.time() if ts is None else ts, "args": args})


def _quarantine(store: Store) -> list[dict]:
    path = store.spool_dir / QUARANTINE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- 3. SQL through spool keys

@pytest.mark.parametrize("extra", ["crafted key only", "beside every real field"])
def test_a_crafted_spool_key_runs_no_sql(tmp_path, extra):
    """Before: the key went into the INSERT's column list and the COPY wrote the file."""
    store = Store(tmp_path / "s.duckdb")
    written = tmp_path / "written-by-sql.csv"
    key = (f"language) SELECT 'x', 'y'; COPY (SELECT 42 AS answer) TO '{written}'; "
           "INSERT INTO datasets (name, language")
    args = {"name": "evil", key: "v"} if extra == "crafted key only" else {**DATASET_ARGS, key: "v"}
    _spool_line(store, "1-evil.jsonl", _record("register_dataset", args))

    info = store.info()

    assert not written.exists()
    assert info["counts"]["datasets"] == 0  # neither the crafted INSERT nor the record itself
    (kept,) = _quarantine(store)
    assert "unknown field(s)" in kept["reason"] and "COPY" in kept["reason"]


def test_spool_sql_uses_the_fixed_field_lists_only(tmp_path):
    """A well-formed record still lands: the fixed lists are the writers' fields."""
    store = Store(tmp_path / "s.duckdb")
    store.register_dataset("toy", language="en", format="beir", path="/d", n_passages=3, n_queries=2,
                           n_train_pairs=1, n_test_pairs=1)
    run_id = store.start_run(**RUN)
    store.add_point(run_id, step=1, contrastive_entropy=1.5, metrics={"ndcg@10": 0.5}, wall_time_s=1.0)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.5, metrics={"ndcg@10": 0.5})
    assert store.run(run_id)["status"] == "completed" and list(store.points(run_id)["step"]) == [1]
    assert store.info()["spool_records_quarantined"] == 0


# ---------------------------------------------------------------- 8. malformed spool records

def _good_run(store: Store) -> str:
    run_id = store.start_run(**RUN)
    store.add_point(run_id, step=1, contrastive_entropy=2.0, wall_time_s=0.5)
    return run_id


BAD_LINES = {
    "missing field": _record("add_point", {"run_id": "r", "step": 1}),
    "extra field": _record("finish_run", {"run_id": "r", "status": "completed", "best_contrastive_entropy": 1.0,
                                          "metrics": None, "wall_time_s": None, "from_a_newer_writer": 1}),
    "wrong type": _record("add_point", {"run_id": "r", "step": "two", "contrastive_entropy": 1.0, "metrics": None,
                                        "wall_time_s": 1.0}),
    "bad json": '{"op": "add_point", "ts": 1.0, "args": {"run_id": ',
    "unknown op": _record("drop_everything", {}),
    "ts not a number": json.dumps({"op": "add_point", "ts": "soon", "args": {}}),
    "metrics not JSON": _record("add_point", {"run_id": "r", "step": 1, "contrastive_entropy": 1.0,
                                              "metrics": "{not json", "wall_time_s": 1.0}),
    "count out of range": _record("add_point", {"run_id": "r", "step": 2**70, "contrastive_entropy": 1.0,
                                                "metrics": None, "wall_time_s": 1.0}),
    # before: accepted, then every read failed (a timestamp out of range, text UTF-8 cannot hold)
    "ts past the year 9999": json.dumps({"op": "add_point", "ts": 1e300, "args": {
        "run_id": "r", "step": 3, "contrastive_entropy": 1.0, "metrics": None, "wall_time_s": 1.0}}),
    "ts before 1970": json.dumps({"op": "add_point", "ts": -1e15, "args": {
        "run_id": "r", "step": 3, "contrastive_entropy": 1.0, "metrics": None, "wall_time_s": 1.0}}),
    "lone surrogate in text": _record("start_run", {**dict(zip(("run_id", "config", "model_name"),
                                                               ("r9", "{}", "caf\udce9"))),
                                                    "n_params": 1, "n_params_strict": 1, "train_pairs": 1,
                                                    "annotation": "human", "dataset": "d", "seed": 0, "device": "cpu",
                                                    "code_version": "x", "source": "engine", "label": "a\ud800"}),
    "lone surrogate in JSON text": _record("add_point", {"run_id": "r", "step": 3, "contrastive_entropy": 1.0,
                                                         "metrics": json.dumps({"caf\udce9": 0.5}),
                                                         "wall_time_s": 1.0}),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_one_bad_spool_line_is_quarantined_and_the_rest_ingested(tmp_path, kind, caplog):
    """Before: a record missing an argument (KeyError), an extra one (SQL error), a wrong
    type or a non-number ts (merge) failed every read until someone deleted the file."""
    store = Store(tmp_path / "s.duckdb")
    run_id = _good_run(store)
    (spool_file,) = store.spool_dir.glob("*.jsonl")
    _spool_line(store, spool_file.name, BAD_LINES[kind])
    store.add_point(run_id, step=2, contrastive_entropy=1.0, wall_time_s=1.0)

    with caplog.at_level(logging.WARNING, logger="store.spool_ingest"):
        assert list(store.points(run_id)["step"]) == [1, 2]

    (kept,) = _quarantine(store)
    assert kept["file"] == spool_file.name and kept["line"] == BAD_LINES[kind] and kept["reason"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 malformed spool record(s) set aside" in warnings[0]
    info = store.info()
    assert info["spool_records_quarantined"] == 1 and info["spool_files_waiting"] == 0
    assert info["quarantine_file"] == str(store.spool_dir / QUARANTINE)


def test_a_record_is_quarantined_once_even_when_its_file_is_read_again(tmp_path, monkeypatch, caplog):
    import store.spool_ingest as ingest_module

    store = Store(tmp_path / "s.duckdb")
    run_id = _good_run(store)
    (spool_file,) = store.spool_dir.glob("*.jsonl")
    _spool_line(store, spool_file.name, BAD_LINES["missing field"])
    store.add_point(run_id, step=2, contrastive_entropy=1.0, wall_time_s=1.0)
    # the ingest dies after quarantining, before its COMMIT: the next one reads the file again
    monkeypatch.setattr(ingest_module, "_save_offsets", _raise_after_quarantine)
    with pytest.raises(RuntimeError):
        store.ingest()
    monkeypatch.undo()
    assert len(_quarantine(store)) == 1

    with caplog.at_level(logging.WARNING, logger="store.spool_ingest"):
        assert store.ingest() == 3
        assert store.ingest() == 0 and len(store.points(run_id)) == 2
    assert len(_quarantine(store)) == 1 and store.info()["spool_records_quarantined"] == 1
    assert not [r for r in caplog.records if "set aside" in r.getMessage()]  # warned the first time only


def _raise_after_quarantine(con, chunks, directory):
    from store.spool import quarantine

    quarantine(directory, [entry for chunk in chunks for entry in chunk.rejected])
    raise RuntimeError("killed before COMMIT")


@pytest.mark.slow
def test_store_info_cli_counts_quarantined_records_and_warns_on_stderr(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    _good_run(store)
    (spool_file,) = store.spool_dir.glob("*.jsonl")
    _spool_line(store, spool_file.name, BAD_LINES["extra field"])
    done = _store_cli("info", "--store", store.path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spool_records_quarantined"] == 1
    assert "1 malformed spool record(s) set aside" in done.stderr
    again = _store_cli("info", "--store", store.path)
    assert json.loads(again.stdout)["spool_records_quarantined"] == 1 and "set aside" not in again.stderr
    assert json.loads(again.stdout)["counts"] == {"datasets": 0, "runs": 1, "points": 1, "fits": 0, "exports": 0}


def _store_cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "store", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- 6. outputs onto the store or an input

def _seeded_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.duckdb")
    run_id = store.start_run(**RUN)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.0)
    store.ingest()
    return store


def _fingerprint(store: Store) -> dict:
    files = [store.path, *store.spool_dir.glob("*")] if store.spool_dir.exists() else [store.path]
    return {path: path.read_bytes() for path in files if path.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["store", "wal", "spool", "inside spool", "store via symlink"])
def test_store_export_refuses_to_overwrite_the_store(tmp_path, target):
    """Before: `--out` naming the store file replaced the database with a CSV, exit 0."""
    store = _seeded_store(tmp_path)
    store.spool_dir.mkdir(exist_ok=True)
    link = tmp_path / "link.duckdb"
    link.symlink_to(store.path)
    out = {"store": store.path, "wal": store.path.with_name("s.duckdb.wal"), "spool": store.spool_dir,
           "inside spool": store.spool_dir / "x.csv", "store via symlink": link}[target]
    before = _fingerprint(store)
    done = _store_cli("export", "--what", "runs", "--format", "csv", "--out", out, "--store", store.path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: output ") and "would overwrite the store" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _fingerprint(store) == before and not store.path.with_name("s.duckdb.wal").exists()
    assert Store(store.path).info()["counts"]["runs"] == 1 and Store(store.path).info()["counts"]["exports"] == 0


@pytest.mark.slow
def test_store_export_to_an_ordinary_path_still_works(tmp_path):
    store = _seeded_store(tmp_path)
    done = _store_cli("export", "--what", "runs", "--format", "csv", "--out", tmp_path / "runs.csv",
                      "--store", store.path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs.csv").read_text().count("\n") == 2


@pytest.mark.slow
def test_demo_write_refuses_the_store_and_its_meta_file(tmp_path):
    store = _seeded_store(tmp_path)
    meta = tmp_path / "meta.json"
    meta.write_text('{"title": "t"}')
    for out, what in ((store.path, "the store"), (meta, "the --meta input")):
        done = _store_cli("demo", "write", "--store", store.path, "--meta", meta, "--file", out)
        assert done.returncode == 2 and f"would overwrite {what}" in done.stderr, done.stderr
    assert meta.read_text() == '{"title": "t"}' and Store(store.path).info()["counts"]["runs"] == 1


@pytest.mark.slow
def test_laws_fit_refuses_to_overwrite_its_csv_before_fitting(tmp_path):
    """Before: `laws fit --out` onto its own `--csv` replaced the data with the fit."""
    csv = tmp_path / "points.csv"
    csv.write_text("n,d,loss\n" + "".join(f"{n},1000,{2 + 1e4 / n ** 0.5:.4f}\n" for n in (1e4, 3e4, 1e5, 3e5, 1e6)))
    original = csv.read_text()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "engine", "laws", "fit", "--csv", str(csv), "--law", "model",
                           "--bootstrap", "100000", "--out", str(csv)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"error: output {csv} would overwrite the --csv input {csv}" in done.stderr
    assert csv.read_text() == original
    assert time.monotonic() - started < 60  # refused before 100,000 bootstrap refits


@pytest.mark.slow
def test_laws_fit_refuses_to_overwrite_the_store(tmp_path):
    store = _seeded_store(tmp_path)
    csv = tmp_path / "points.csv"
    csv.write_text("n,d,loss\n1,2,3\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_STORE": str(store.path)}
    done = subprocess.run([sys.executable, "-m", "engine", "laws", "fit", "--csv", str(csv), "--law", "model",
                           "--out", str(store.path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "would overwrite the store" in done.stderr, done.stderr
    assert Store(store.path).info()["counts"]["runs"] == 1


# ---------------------------------------------------------------- 7. a bad demo file keeps the loaded demo

DEMO_STUDY = {"title": "toy", "datasets": ["toy"], "hardware": "test", "date": "2026-12-01", "commands": []}
DEMO_RUNS = [{"run_id": f"r{i}", "model": f"m{n}", "n": n, "d": 100, "loss": 3.0 - i / 10, "dataset": "toy",
              "annotation": "human"} for i, n in enumerate((1000, 2000, 4000))]


def _demo_file(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


BAD_DEMO_FILES = {
    "a bad loss": {"study": DEMO_STUDY, "runs": [*DEMO_RUNS[:2], {**DEMO_RUNS[2], "loss": -1}]},
    "a run without id": {"study": DEMO_STUDY, "runs": [*DEMO_RUNS[:2], {k: v for k, v in DEMO_RUNS[2].items()
                                                                       if k != "run_id"}]},
    "a study without title": {"study": {"date": "x"}, "runs": DEMO_RUNS},
    "no runs": {"study": DEMO_STUDY, "runs": []},
    "runs not a list": {"study": DEMO_STUDY, "runs": "r1"},
    "not JSON": "{",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BAD_DEMO_FILES))
def test_demo_load_of_a_bad_file_keeps_the_loaded_demo(tmp_path, kind):
    """Before: the old demo rows were deleted first, then the new file failed its check
    (or raised a KeyError traceback), leaving no demo at all."""
    db = tmp_path / "s.duckdb"
    good = _demo_file(tmp_path / "good.json", {"study": DEMO_STUDY, "runs": DEMO_RUNS})
    assert _store_cli("demo", "load", "--file", good, "--store", db).returncode == 0
    before = Store(db).runs().sort_values("run_id")[["run_id", "label", "n_params", "best_contrastive_entropy"]]

    bad = _demo_file(tmp_path / "bad.json", BAD_DEMO_FILES[kind])
    done = _store_cli("demo", "load", "--file", bad, "--store", db)

    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {bad}: ")
    assert len(done.stderr.strip().splitlines()) == 1
    after = Store(db).runs().sort_values("run_id")[["run_id", "label", "n_params", "best_contrastive_entropy"]]
    assert after.reset_index(drop=True).equals(before.reset_index(drop=True))
    assert _store_cli("demo", "status", "--store", db).stdout.strip() == "loaded"


def test_demo_load_replaces_the_old_demo_in_one_transaction(tmp_path, monkeypatch):
    """A failure after the old rows were deleted (disk full, a kill) rolls the deletion back."""
    import store.results_store as core
    from store.demo import load_demo

    store = Store(tmp_path / "s.duckdb")
    load_demo(store, _demo_file(tmp_path / "good.json", {"study": DEMO_STUDY, "runs": DEMO_RUNS}))
    delete_source = core._delete_source

    def delete_then_fail(con, source):
        delete_source(con, source)
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        raise RuntimeError("disk full")

    monkeypatch.setattr(core, "_delete_source", delete_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        load_demo(store, _demo_file(tmp_path / "new.json", {"study": DEMO_STUDY, "runs": DEMO_RUNS[:1]}))
    monkeypatch.undo()
    assert len(store.runs()) == 3 and set(store.runs()["source"]) == {"demo"}


@pytest.mark.slow
@pytest.mark.parametrize("meta_text", [None, "{", "[1]"])
def test_demo_write_with_an_unreadable_meta_file_is_one_error_line(tmp_path, meta_text):
    store = _seeded_store(tmp_path)
    meta = tmp_path / "meta.json"
    if meta_text is not None:
        meta.write_text(meta_text)
    done = _store_cli("demo", "write", "--store", store.path, "--meta", meta, "--file", tmp_path / "demo.json")
    assert done.returncode == 2 and done.stderr.startswith(f"error: --meta {meta}: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "demo.json").exists()
