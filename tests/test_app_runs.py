"""The Runs page through AppTest: launching, estimating, watching and cancelling a
study through an injected launcher (engine/studies.py and engine/processes.py do the process work), a failed
study's logs, the store table after a run finishes, interrupted runs, and the
estimate's refusals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.paths import runs_dir
from store import Store
from store.demo import PROJECT_ROOT, load_demo
from tests.helpers import assert_clean, metric, open_page, table_with, write_synthetic

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out

PAGE = "pages/1_Runs.py"
RUN_FIELDS = {"config": {}, "model_name": "scratch-L1-H32", "n_params": 39104, "n_params_strict": 30000,
              "train_pairs": 100, "annotation": "human", "dataset": "syn", "seed": 0, "device": "cpu",
              "code_version": "test", "source": "engine"}


class FakeProcess:
    """A launched study that runs until `code` is set."""

    pid = -1

    def __init__(self, code: int | None = None):
        self.code = code

    def poll(self) -> int | None:
        return self.code


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A BEIR set with 2,500 training pairs: enough for D = 100 and 2k."""
    return write_synthetic(tmp_path / "syn", n_passages=2600, n_train=2500, n_test=20)


def fill_study_form(at: AppTest, dataset: Path, sizes: str = "100, 2k") -> None:
    at.text_input(key="run_dataset_path").input(str(dataset))
    at.multiselect(key="run_models").set_value(["scratch-L1-H32", "scratch-L2-H64"])
    at.text_input(key="run_sizes").input(sizes)


def submit(at: AppTest, label: str) -> None:
    next(b for b in at.form_submit_button if b.label == label).click().run()


def launched(at: AppTest, dataset: Path, process) -> list:
    """Launch the form's study with a launcher that hands back `process`."""
    calls = []

    def launcher(argv: list[str], log_path: Path):
        calls.append((argv, log_path))
        return process

    at.session_state["run_launcher"] = launcher
    fill_study_form(at, dataset)
    submit(at, "Launch")
    return calls


def study_heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Study "))


def test_launching_a_study_goes_through_the_injected_launcher(dataset):
    at = open_page(PAGE, state={"run_launcher": pytest.fail})
    [(argv, log_path)] = launched(at, dataset, FakeProcess())
    assert_clean(at)
    assert argv[:4] == [sys.executable, "-m", "engine", "sweep"]
    assert argv[argv.index("--store") + 1] == str(Store().path)
    sweep = tomllib.loads(Path(argv[4]).read_text())
    assert sweep["grid"]["models"] == ["scratch-L1-H32", "scratch-L2-H64"]
    assert sweep["grid"]["train_pairs"] == [100, 2000]
    assert sweep["train"]["dataset"] == str(dataset)
    assert log_path.parent == runs_dir() / "sweeps"
    assert "4 run(s)" in at.success[0].value
    at.run()                                     # the live section polls: the study shows on its next pass
    assert study_heading(at).endswith("· running")


def test_the_estimate_is_the_engines_dry_run(dataset):
    at = open_page(PAGE, state={"run_launcher": pytest.fail})
    fill_study_form(at, dataset)
    submit(at, "Estimate")
    assert_clean(at)
    assert "4 runs" in at.code[0].value


@pytest.mark.parametrize("sizes, message", [("100, lots", "'lots' is not a number"), ("0", "at least 1"),
                                            ("1e400", "whole number")])
def test_a_bad_study_form_shows_a_message(dataset, sizes, message):
    at = open_page(PAGE, state={"run_launcher": pytest.fail})
    fill_study_form(at, dataset, sizes)
    submit(at, "Launch")
    assert not at.exception
    assert message in at.error[0].value


@pytest.mark.parametrize("button", ["Estimate", "Launch"])
def test_a_folder_without_a_corpus_is_refused(tmp_path, button):
    at = open_page(PAGE, state={"run_launcher": pytest.fail})
    fill_study_form(at, tmp_path)
    submit(at, button)
    assert not at.exception
    assert "no corpus.jsonl (BEIR) or collection.tsv" in at.error[0].value


def test_the_estimate_refuses_more_pairs_than_the_data_set_has(dataset):
    at = open_page(PAGE, state={"run_launcher": pytest.fail})
    fill_study_form(at, dataset, "1e12")
    submit(at, "Estimate")
    assert not at.exception and not at.code
    error = at.error[0].value
    assert "D = 1,000,000,000,000 training pairs" in error and "has 2,500" in error


def test_a_running_study_shows_progress_and_a_cancel_reads_cancelled(dataset):
    trainer = subprocess.Popen(["sleep", "60"], start_new_session=True)
    progress = runs_dir() / "study-run-1" / "progress.json"
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"run_id": "study-run-1", "status": "running", "step": 40,
                                    "total_steps": 100, "loss": 1.25, "eta_s": 90, "pid": trainer.pid}))
    try:
        at = open_page(PAGE)
        launched(at, dataset, trainer)
        at.run()
        assert_clean(at)
        assert metric(at, "loss") == "1.2500"
        assert at.progress[0].value == 40
        next(b for b in at.button if b.label == "Cancel this study").click().run()
        assert trainer.wait(timeout=10) == -signal.SIGTERM
        at.run()
        assert study_heading(at).endswith("· cancelled")
        assert not any("exit" in m.value for m in at.markdown)
    finally:
        trainer.kill()
        trainer.wait()


def failed_study(dataset, run: str, run_log: str, study_log: str) -> AppTest:
    """The Runs page after a launched study exited 1 with these logs of its run and itself."""
    process = FakeProcess()
    at = open_page(PAGE)
    [(argv, log_path)] = launched(at, dataset, process)
    (runs_dir() / run).mkdir(parents=True)
    (runs_dir() / run / "train.log").write_text(run_log)
    log_path.write_text(study_log)
    process.code = 1
    return at.run()


def test_a_failed_study_shows_the_last_lines_of_its_runs_logs(dataset):
    at = failed_study(dataset, "study-bad-run",
                      "loading ...\nerror: --max-passage-length 4096 is beyond the model's 512 positions\n",
                      "0 of 1 runs already complete; 1 to run\nstarted study-bad-run\nFAILED (exit 2) study-bad-run\n")
    assert not at.exception, [e.message for e in at.exception]     # the run's reason is an error box
    assert study_heading(at).endswith("· failed (1 run failed, exit 2)")   # the run's code, not the sweep's 1
    logs = "\n".join(c.value for c in at.code)
    assert "FAILED (exit 2) study-bad-run" in logs
    assert "beyond the model's 512 positions" in logs


def test_the_store_table_refreshes_when_a_run_finishes(dataset):
    process = FakeProcess()
    at = open_page(PAGE)
    launched(at, dataset, process)
    at.run()
    assert not any("run_id" in t.value.columns for t in at.dataframe)   # the store is empty
    store = Store()
    store.start_run(run_id="fresh-run", **RUN_FIELDS)
    store.finish_run("fresh-run", status="completed", best_contrastive_entropy=4.5, stopped_early_at=1200)
    process.code = 0
    at.run()
    assert_clean(at)
    assert study_heading(at).endswith("· finished")
    table = table_with(at, "run_id")
    assert table["run_id"].tolist() == ["fresh-run"] and table["stopped_early_at"].tolist() == ["step 1,200"]


def test_a_run_whose_process_is_gone_reads_as_interrupted():
    gone = subprocess.Popen(["true"])
    gone.wait()
    store = Store()
    store.start_run(run_id="killed-run", **RUN_FIELDS)
    progress = runs_dir() / "killed-run" / "progress.json"
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"run_id": "killed-run", "status": "running", "step": 30, "total_steps": 100,
                                    "pid": gone.pid}))
    (runs_dir() / "killed-run" / "checkpoints" / "step-00000020").mkdir(parents=True)
    at = open_page(PAGE)
    assert_clean(at)
    assert table_with(at, "run_id").set_index("run_id").loc["killed-run", "status"] == "interrupted"
    assert "killed-run (step 30, resumes from 20)" in at.warning[0].value
    at.multiselect(key="runs_status").set_value(["interrupted"]).run()
    assert table_with(at, "run_id")["run_id"].tolist() == ["killed-run"]


def test_deleting_a_run_needs_confirmation(seeded_store):
    at = open_page(PAGE)
    doomed = seeded_store.runs()["run_id"][0]
    at.multiselect(key="runs_delete").set_value([doomed]).run()
    assert at.button(key="runs_delete_button").disabled
    at.checkbox(key="runs_delete_sure").check().run()
    at.button(key="runs_delete_button").click().run()
    assert_clean(at)
    assert doomed not in set(seeded_store.runs()["run_id"])


# --- the runs table reads clearly: a failed run's reason first and whole, newest first, demo runs told apart

DEMO = PROJECT_ROOT / "demo" / "cpu-study.json"
RETRIES = "".join(f"Retrying in 1s [Retry {i}/15] huggingface.co: connection refused, a long line of noise "
                  f"that goes on and on past the width of any code box on the page\n" for i in range(1, 16))
REASON = "error: google/bert_uncased_L-2_H-128_A-2 is not downloaded and the hub cannot be reached"


def test_a_failed_run_says_why_first_and_the_header_gives_the_runs_exit_code(dataset):
    at = failed_study(dataset, "study-bert-run", "loading ...\n" + REASON + "\n" + RETRIES,   # the reason, then noise
                      "started study-bert-run\nFAILED (exit 2) study-bert-run\n")
    assert not at.exception, [e.message for e in at.exception]
    assert study_heading(at).endswith("failed (1 run failed, exit 2)")
    assert at.error[0].value == f"study-bert-run: {REASON}"


def test_an_estimate_leaves_no_sweep_file(dataset):
    at = open_page(PAGE)
    fill_study_form(at, dataset)
    submit(at, "Estimate")
    assert_clean(at)
    assert at.code and not list((runs_dir() / "sweeps").glob("*.toml"))


@pytest.fixture
def demo_and_new_runs() -> Store:
    if not DEMO.exists():
        pytest.skip(f"no demo study at {DEMO}")
    store = Store()
    load_demo(store, DEMO)
    for run_id in ("older-run", "newer-run"):
        store.start_run(run_id=run_id, **RUN_FIELDS)
        store.finish_run(run_id, status="completed", best_contrastive_entropy=4.5)
    return store


def test_the_table_is_newest_first_and_tells_demo_runs_apart(demo_and_new_runs):
    at = open_page(PAGE)
    assert_clean(at)
    table = table_with(at, "run_id")
    assert list(table["run_id"][:2]) == ["newer-run", "older-run"]
    demo = table[table["source"] == "demo"]
    assert demo["label"].is_unique and not demo["label"].str.startswith("demo:").any()
    assert any("demo runs, labelled by their id in the demo study" in c.value for c in at.caption)


def test_runs_to_delete_are_named_by_label_and_size(demo_and_new_runs):
    at = open_page(PAGE)
    box = at.multiselect(key="runs_delete")
    run = demo_and_new_runs.runs().query("source == 'demo'").iloc[0]
    shown = next(o for o in box.options if o.startswith(run["label"].rsplit(" / ", 1)[-1]))
    assert run["run_id"] not in " ".join(box.options) and "· N " in shown and "· D " in shown
