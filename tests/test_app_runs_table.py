"""The Runs page reads clearly: a failed run's reason first and whole, the header's exit
code that of the run, newest runs first, demo runs told apart, runs to delete named by
what they are, and an estimate that leaves no sweep file behind."""
from __future__ import annotations

import pytest

from engine.paths import runs_dir
from store import Store
from store.demo import PROJECT_ROOT, load_demo
from tests.test_app import assert_clean, open_page, table_with
from tests.test_app_runs import PAGE, RUN_FIELDS, FakeProcess, dataset, fill_study_form, launched, study_heading, submit  # noqa: F401

DEMO = PROJECT_ROOT / "demo" / "cpu-study.json"
RETRIES = "".join(f"Retrying in 1s [Retry {i}/15] huggingface.co: connection refused, a long line of noise "
                  f"that goes on and on past the width of any code box on the page\n" for i in range(1, 16))
REASON = "error: google/bert_uncased_L-2_H-128_A-2 is not downloaded and the hub cannot be reached"


def test_a_failed_run_says_why_first_and_the_header_gives_the_runs_exit_code(dataset):
    process = FakeProcess()
    at = open_page(PAGE)
    [(argv, log_path)] = launched(at, dataset, process)
    run_log = runs_dir() / "study-bert-run" / "train.log"
    run_log.parent.mkdir(parents=True)
    run_log.write_text("loading ...\n" + REASON + "\n" + RETRIES)   # the reason, then retry noise after it
    log_path.write_text("started study-bert-run\nFAILED (exit 2) study-bert-run\n")
    process.code = 1
    at.run()
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
