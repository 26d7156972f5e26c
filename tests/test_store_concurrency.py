"""Several processes at once: nothing lost, nothing duplicated, nobody blocked for long.

Workers are separate Python processes (subprocess), as training runs, sweeps and the
app are; each runs a short script from this file with the project on PYTHONPATH.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import store.spool_ingest as ingest_module
from store import Store, StoreBusyError

pytestmark = pytest.mark.slow  # starts Python processes: `pytest -m "not slow"` leaves it out

ROOT = Path(__file__).resolve().parent.parent

WRITER = """
import sys
from store import Store
path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = Store(path)
for i in range(count):
    run_id = f"w{writer}-{i:03d}"
    store.start_run(config={"writer": writer, "i": i}, model_name="tiny", n_params=1000 + i,
                    n_params_strict=900, train_pairs=100 * (writer + 1), annotation="human",
                    dataset="toy", seed=i, device="cpu", code_version="test", run_id=run_id)
    store.add_point(run_id, step=10, contrastive_entropy=2.0, wall_time_s=0.1)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.0 / (i + 1))
    if i % 10 == 9:
        store.ingest()  # writers contend for the database file too
"""

READER = """
import sys, pathlib
from store import Store
store, stop = Store(sys.argv[1]), pathlib.Path(sys.argv[2])
reads, seen = 0, 0
while not stop.exists() or reads == 0:
    runs = store.runs()
    assert runs["run_id"].is_unique, "duplicate run rows"
    assert len(runs) >= seen, "a run disappeared"
    points = store.points()
    assert not points.duplicated(["run_id", "step"]).any(), "duplicate points"
    seen, reads = len(runs), reads + 1
print(reads)
"""

KILLED_WRITER = """
import sys
from store import Store
store = Store(sys.argv[1])
i = 0
while True:
    run_id = f"run-{i}"
    store.start_run(config={}, model_name="tiny", n_params=1000, n_params_strict=900,
                    train_pairs=100, annotation="human", dataset="toy", seed=0,
                    device="cpu", code_version="test", run_id=run_id)
    for step in range(5):
        store.add_point(run_id, step=step, contrastive_entropy=1.0, wall_time_s=0.0)
        print(run_id, step, flush=True)  # only after add_point returned
    store.runs()  # ingest, so a kill may land inside a database transaction too
    i += 1
"""

HOLDER = """
import sys, time, duckdb

con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def python(script: str, *args: object, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)], env=env, text=True, **kwargs
    )


def test_four_writers_and_a_reader_lose_and_duplicate_nothing(tmp_path):
    path, stop = tmp_path / "w.duckdb", tmp_path / "stop"
    reader = python(READER, path, stop, stdout=subprocess.PIPE)
    writers = [python(WRITER, path, number, 50) for number in range(4)]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]
    stop.touch()
    reads, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0 and int(reads) >= 1

    store = Store(path)
    runs = store.runs()
    assert len(runs) == 200 and runs["run_id"].is_unique
    assert set(runs["run_id"]) == {f"w{w}-{i:03d}" for w in range(4) for i in range(50)}
    assert set(runs["status"]) == {"completed"}
    assert len(store.points()) == 200
    assert len(store.law_points()) == 200
    assert store.info()["spool_files_waiting"] == 0


def _killed_writer_output(path: Path, lines_before_kill: int) -> list[tuple[str, int]]:
    writer = python(KILLED_WRITER, path, stdout=subprocess.PIPE)
    written = []
    for line in writer.stdout:
        run_id, step = line.split()
        written.append((run_id, int(step)))
        if len(written) == lines_before_kill:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    writer.stdout.close()
    return written


@pytest.mark.parametrize("lines_before_kill", [23, 61])
def test_writer_killed_mid_writing_loses_nothing_written_before(tmp_path, lines_before_kill):
    path = tmp_path / "k.duckdb"
    written = _killed_writer_output(path, lines_before_kill)
    store = Store(path)
    points = store.points()
    stored = set(zip(points["run_id"], points["step"], strict=True))
    assert set(written) <= stored
    assert not points.duplicated(["run_id", "step"]).any()
    assert {run_id for run_id, _ in written} <= set(store.runs()["run_id"])


def test_torn_spool_line_is_skipped_and_later_records_kept(tmp_path):
    store = Store(tmp_path / "t.duckdb")
    run_id = store.start_run(config={}, model_name="m", n_params=1, n_params_strict=1,
                             train_pairs=1, annotation="human", dataset="toy", seed=0,
                             device="cpu", code_version="t")  # fmt: skip
    store.add_point(run_id, step=1, contrastive_entropy=1.0, wall_time_s=0.0)
    (spool_file,) = store.spool_dir.glob("*.jsonl")
    with spool_file.open("ab") as handle:  # what a SIGKILL inside write() leaves
        handle.write(b'{"op": "add_point", "ts": 1.0, "args": {"run_id": "')
    store.add_point(run_id, step=2, contrastive_entropy=0.5, wall_time_s=1.0)
    assert list(store.points(run_id)["step"]) == [1, 2]
    assert not list(store.spool_dir.glob("*.jsonl"))


def test_replaying_a_spool_file_duplicates_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path / "r.duckdb")
    run_id = store.start_run(config={}, model_name="m", n_params=1, n_params_strict=1,
                             train_pairs=1, annotation="human", dataset="toy", seed=0,
                             device="cpu", code_version="t")  # fmt: skip
    store.add_point(run_id, step=1, contrastive_entropy=1.0, wall_time_s=0.0)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.0)
    (spool_file,) = store.spool_dir.glob("*.jsonl")
    backup = tmp_path / "backup.jsonl"
    shutil.copy(spool_file, backup)

    # a crash after COMMIT but before the file is deleted: the next ingest skips it
    monkeypatch.setattr(ingest_module, "remove_if_done", lambda *args: None)
    assert store.ingest() == 3
    assert spool_file.exists() and store.ingest() == 0
    monkeypatch.undo()

    # the same records under a name the store has never seen: keys keep rows unique
    shutil.copy(backup, store.spool_dir / "replayed.jsonl")
    assert store.ingest() == 3
    assert len(store.runs()) == 1 and len(store.points()) == 1
    assert store.run(run_id)["status"] == "completed"
    assert not list(store.spool_dir.glob("*.jsonl"))


def test_writers_do_not_wait_for_a_held_database_and_readers_wait_then_proceed(tmp_path):
    path = tmp_path / "h.duckdb"
    store = Store(path, timeout_s=0.3)
    store.info()  # create the file
    holder = python(HOLDER, path, 2.5, stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "held"

    began = time.monotonic()
    run_id = store.start_run(config={}, model_name="m", n_params=1, n_params_strict=1,
                             train_pairs=1, annotation="human", dataset="toy", seed=0,
                             device="cpu", code_version="t")  # fmt: skip
    store.add_point(run_id, step=1, contrastive_entropy=1.0, wall_time_s=0.0)
    assert time.monotonic() - began < 1.0  # spooled: no wait for the 2.5 s hold

    with pytest.raises(StoreBusyError, match="stayed locked by another process"):
        store.runs()
    patient = Store(path, timeout_s=30)
    assert list(patient.runs()["run_id"]) == [run_id]  # retried until the holder let go
    holder.wait(timeout=30)
    holder.stdout.close()
