"""engine/processes.py, engine/run_status.py and engine/studies.py: processes started with their output in a log file and in a
session of their own, a study's states (a user's cancel reads cancelled), runs whose
process died read as interrupted (a real training run killed with SIGKILL), and the
sweep file's writer (`Sweep.to_toml`) read back by `load_sweep`."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import processes, run_status, studies
from engine.errors import InputError
from engine.paths import runs_dir
from engine.sweep import load_sweep, sweep_from_spec
from store import Store
from tests.conftest import ROOT
from tests.helpers import write_synthetic

HOSTILE = ['quote " and \' both', "back\\slash \\n not a newline", "new\nline\ttab", "emoji \U0001F600 ü ß 中文",
           '"""triple""" and \'\'\'', "] [table] = x # not a comment", "nul-ish \x1f \x7f", "  spaces  "]


class FakeProcess:
    pid = -1

    def __init__(self, code):
        self.code = code

    def poll(self):
        return self.code


def write_progress(run_id: str, **fields) -> None:
    path = runs_dir() / run_id / "progress.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, **fields}))


# --- processes and studies --------------------------------------------------------

@pytest.mark.slow
def test_a_process_logs_to_its_file_in_a_session_of_its_own(tmp_path):
    log = tmp_path / "logs" / "job.log"
    process = processes.start_process([sys.executable, "-c", "import os; print('pgid', os.getpgid(0))"], log)
    assert process.wait(timeout=60) == 0
    assert log.read_text().split() == ["pgid", str(process.pid)]


@pytest.mark.parametrize("code, cancelled, state", [(None, False, "running"), (0, False, "finished"),
                                                    (0, True, "finished"), (3, False, "failed (exit 3)"),
                                                    (-15, True, "cancelled"), (-15, False, "failed (exit -15)")])
def test_a_study_states(tmp_path, code, cancelled, state):
    assert processes.Job("s", tmp_path / "s.toml", tmp_path / "s.log", FakeProcess(code), cancelled).state == state


@pytest.mark.slow
def test_cancel_stops_the_whole_process_group_and_reads_cancelled(tmp_path):
    # the study starts a child in its own group, as a sweep starts its training runs
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    job = studies.launch_sweep(tmp_path / "s.toml", tmp_path / "store.duckdb", 1,
                            lambda argv, log: processes.start_process([sys.executable, "-c", script], log))
    deadline = time.monotonic() + 30
    while len(children := _group_members(job.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children) == 2
    processes.cancel(job)
    assert job.process.wait(timeout=10) == -signal.SIGTERM
    assert job.state == "cancelled"
    deadline = time.monotonic() + 10
    while _group_members(job.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_members(job.process.pid)


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_a_failed_study_reports_its_log_and_each_failed_runs_log(tmp_path):
    log = tmp_path / "s.log"
    log.write_text("started a\n" + processes.outcome_line("a", 0) + "\n" + processes.outcome_line("b", 2) + "\n")
    (runs_dir() / "b").mkdir(parents=True)
    (runs_dir() / "b" / "train.log").write_text("".join(f"line {i}\n" for i in range(40)) + "error: the reason\n")
    job = processes.Job("s", tmp_path / "s.toml", log, FakeProcess(1))
    assert job.failed_run_ids() == ["b"]
    [(sweep_log, sweep_tail), (run_log, run_tail)] = job.failure_report()
    assert sweep_log == str(log) and "FAILED (exit 2) b" in sweep_tail
    assert run_log == str(runs_dir() / "b" / "train.log")
    assert run_tail.splitlines()[-1] == "error: the reason" and len(run_tail.splitlines()) == processes.LOG_TAIL_LINES


# --- interrupted runs -------------------------------------------------------------

def test_a_live_run_is_running_and_a_dead_one_interrupted():
    alive = subprocess.Popen(["sleep", "60"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        write_progress("alive", status="running", pid=alive.pid, host=socket.gethostname(), updated_at=0)
        write_progress("gone", status="running", pid=gone.pid, host=socket.gethostname(), updated_at=time.time())
        write_progress("old-file", status="running", pid=gone.pid)  # written before pid and host were
        write_progress("done", status="completed", pid=gone.pid)
        states = {run_id: run_status.run_state(run_status.read_progress(run_id))
                  for run_id in ("alive", "gone", "old-file", "done")}
        assert states == {"alive": "running", "gone": "interrupted", "old-file": "interrupted", "done": "completed"}
        assert set(run_status.active_runs()) == {"alive"}
    finally:
        alive.kill()
        alive.wait()


def test_a_zombie_is_not_alive():
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while run_status.process_alive(zombie.pid) and time.monotonic() < deadline:  # exited, not yet reaped
        time.sleep(0.05)
    assert not run_status.process_alive(zombie.pid)
    zombie.wait()


def test_a_run_on_another_host_is_interrupted_when_its_heartbeat_stops():
    now = time.time()
    fresh = {"status": "running", "pid": 1, "host": "elsewhere", "updated_at": now - 60}
    stale = {**fresh, "updated_at": now - run_status.STALE_AFTER_S - 1}
    assert run_status.run_state(fresh, now) == "running" and run_status.run_state(stale, now) == "interrupted"


@pytest.mark.slow
def test_a_killed_training_run_reads_as_interrupted_in_the_store_listing(tmp_path):
    dataset = write_synthetic(tmp_path / "syn", n_passages=80, n_train=60, n_test=10)
    command = [sys.executable, "-m", "engine", "train", "--dataset", str(dataset), "--model", "scratch-L1-H32",
               "--run-id", "victim", "--steps", "100000", "--batch-size", "8", "--negatives", "8",
               "--tokenizer-vocab-size", "300", "--max-query-length", "8", "--max-passage-length", "16",
               "--eval-every", "100000", "--eval-negatives", "16", "--no-eval-at-start", "--checkpoint-every", "5",
               "--compile", "no"]
    log = tmp_path / "train.log"
    trainer = processes.start_process(command, log, env={**os.environ, "OMP_NUM_THREADS": "1"}, own_session=False)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run_status.checkpoint_step("victim") < 5:
            assert trainer.poll() is None, f"the training run stopped by itself:\n{processes.log_tail(log)}"
            time.sleep(0.2)
        progress = run_status.read_progress("victim")
        assert progress["status"] == "running" and progress["pid"] == trainer.pid
        assert progress["host"] == socket.gethostname() and run_status.run_state(progress) == "running"
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
    assert run_status.read_progress("victim")["status"] == "running"          # nobody could write otherwise
    runs = Store().runs()
    assert runs.set_index("run_id").loc["victim", "status"] == "running"  # nor in the store
    assert run_status.with_live_status(runs).set_index("run_id").loc["victim", "status"] == "interrupted"
    info = subprocess.run([sys.executable, "-m", "store", "info"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    [interrupted] = json.loads(info.stdout)["interrupted_runs"]
    assert interrupted["run_id"] == "victim" and interrupted["resumes_from_step"] >= 5


# --- the sweep file: writer and reader --------------------------------------------

def sweep_spec(base: Path, text: str) -> dict:
    dataset = base / f"data {text}"
    pairs = base / f"pairs {text}"
    return {"name": "round-trip",
            "grid": {"models": ["scratch-L1-H32", "scratch-L2-H64"], "train_pairs": [100, "all"],
                     "annotations": ["human", "ict"], "seeds": [0, 1]},
            "annotation_data": {"ict": str(pairs)},
            "train": {"dataset": str(dataset), "steps": 30, "lr": 1e-3, "in_batch_negatives": False,
                      "label": text, "tokenizer": str(base / f"vocab {text}.txt")}}


@pytest.mark.parametrize("text", HOSTILE)
def test_a_written_sweep_file_reads_back_into_the_same_runs(tmp_path, text):
    original = sweep_from_spec(sweep_spec(tmp_path, text), tmp_path / "first.toml")
    elsewhere = tmp_path / "another" / "folder" / "copy.toml"   # absolute paths: readable from anywhere
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text(original.to_toml(), encoding="utf-8")
    again = load_sweep(elsewhere)
    assert [r.config for r in again.runs] == [r.config for r in original.runs]
    assert [r.run_id for r in again.runs] == [r.run_id for r in original.runs] and len(again.runs) == 16
    assert again.runs[0].config.label == text and again.spec == original.spec
    assert again.to_toml() == original.to_toml()


def test_the_form_writes_a_sweep_the_engine_reads(tmp_path):
    dataset = write_synthetic(tmp_path / "syn", n_passages=40, n_train=20, n_test=5)
    study = studies.study_from_form(" my-study ", str(dataset), ["scratch-L1-H32"], "10, 20", "0, 1", True, "",
                                 steps=50, batch_size=8, negatives=8, eval_every=25)
    sweep = studies.new_sweep_file(study.spec())
    assert sweep.path.parent == runs_dir() / "sweeps" and sweep.name == "my-study"
    again = load_sweep(sweep.path)
    assert len(again.runs) == study.runs == 4
    assert {r.config.train_pairs for r in again.runs} == {10, 20} and again.runs[0].config.steps == 50


@pytest.mark.parametrize("name", ["my study!", "../up", ".hidden", ""])
def test_the_form_refuses_a_study_name_that_is_no_safe_name(tmp_path, name):
    """The study name becomes the sweep file's name: engine.paths.validate_name checks it
    (it was silently rewritten, so two different names could write one file)."""
    dataset = write_synthetic(tmp_path / "syn", n_passages=40, n_train=20, n_test=5)
    with pytest.raises(InputError, match="study name .* is not a safe name"):
        studies.study_from_form(name, str(dataset), ["scratch-L1-H32"], "10", "0", True, "",
                             steps=50, batch_size=8, negatives=8, eval_every=25)


@pytest.mark.parametrize("sizes", ["nan", "inf", "1e400", "-5", "2.5"])
def test_the_form_refuses_counts_that_are_no_whole_number(sizes):
    with pytest.raises(InputError, match="whole number"):
        studies.parse_counts(sizes, "data size", ("all",), 1)


@pytest.mark.slow
def test_writing_and_reading_a_sweep_imports_no_torch(tmp_path):
    """The Runs page builds sweep files in the app's server process: no torch there."""
    script = ("import sys, pathlib; from engine.sweep import load_sweep, sweep_from_spec; from tests.test_studies_and_processes import "
              f"sweep_spec; base = pathlib.Path({str(tmp_path)!r}); sweep = sweep_from_spec(sweep_spec(base, 'x'), "
              "base / 'a.toml'); (base / 'a.toml').write_text(sweep.to_toml()); load_sweep(base / 'a.toml'); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_id_that_could_not_be_a_run_folder_has_no_progress(tmp_path):
    outside = runs_dir().parent / "progress.json"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_text(json.dumps({"status": "running", "pid": 1}))
    assert run_status.read_progress("..") is None and run_status.live_status("../", "running") == "running"
