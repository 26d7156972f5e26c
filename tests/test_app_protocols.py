"""Runs, Fit laws and Plan runs share a protocol: the Runs form extends a study with its
settings and says which, Plan runs fits one protocol group and metric of the store's runs,
and whatever the app launches is a job the Runs page can cancel (engine/studies.py)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from engine import studies
from engine.paths import SHARED_DATA
from engine.sweep import load_sweep
from store import Store
from store.demo import PROJECT_ROOT
from tests.helpers import assert_clean, open_page

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out

DEMO = PROJECT_ROOT / "demo" / "cpu-study.json"
SQUAD = SHARED_DATA / "squad-dev"
RUNS, PLAN = "pages/1_Runs.py", "pages/5_Plan_runs.py"
needs_squad = pytest.mark.skipif(not (DEMO.exists() and SQUAD.is_dir()), reason="no demo study or squad-dev")


class Running:
    pid = -1

    def poll(self):
        return None




@pytest.fixture
def launches() -> list:
    return []


def launcher_into(calls: list):
    def launcher(argv, log_path):
        calls.append(argv)
        return Running()
    return launcher


def squad_study():
    """The demo's largest study as the engine reads its sweep files."""
    return next(b for b in studies.study_bases(Store().runs()) if b.name == load_sweep(
        PROJECT_ROOT / "sweeps" / "squad-scratch-study.toml").name)


def launched_train(argv: list[str]) -> dict:
    return tomllib.loads(Path(argv[4]).read_text())["train"]


@needs_squad
def test_the_runs_form_extends_the_study_with_most_runs_and_keeps_its_protocol(demo_store, launches):
    at = open_page(RUNS, state={"run_launcher": launcher_into(launches)})
    assert_clean(at)
    base = squad_study()
    assert at.selectbox(key="run_base").value == base.name
    said = " ".join(c.value for c in at.caption)
    assert f"Extends **{base.name}" in said and f"protocol {base.protocol}" in said
    assert at.text_input(key="run_name").value == base.name
    at.text_input(key="run_sizes").input("3000")
    at.multiselect(key="run_models").set_value(["scratch-L1-H32"])
    next(b for b in at.form_submit_button if b.label == "Launch").click().run()
    assert_clean(at)
    train = launched_train(launches[0])
    expected = load_sweep(PROJECT_ROOT / "sweeps" / "squad-scratch-study.toml").spec["train"]
    assert {k: train[k] for k in expected} == expected     # lengths, evaluation, negatives: its protocol's


@needs_squad
def test_a_new_study_says_it_gets_a_protocol_of_its_own(demo_store):
    at = open_page(RUNS)
    at.selectbox(key="run_base").set_value("(a new study)").run()
    assert_clean(at)
    assert at.text_input(key="run_name").value == "study"
    assert any("a protocol of their own" in c.value for c in at.caption)


def another_protocols_run(store: Store) -> None:
    """One squad-dev run evaluated with the engine's defaults (10 repeats, 180-token passages)."""
    store.load_rows(pd.DataFrame([{"n": 39104, "d": 3000, "loss": 5.0, "dataset": "squad-dev", "annotation": "human",
                                   "eval_negatives": 256, "eval_repeats": 10, "eval_max_passage_length": 180}]),
                    source="import")


@needs_squad
def test_plan_runs_fits_one_protocol_group_after_a_run_of_another(demo_store):
    another_protocols_run(demo_store)
    at = open_page(PLAN)
    assert_clean(at)
    protocols = next(s for s in at.selectbox if s.label == "Evaluation protocol")
    assert len(protocols.options) == 2 and protocols.value.startswith(squad_study().protocol)
    assert next(s for s in at.selectbox if s.label == "Metric").value == "raw"
    next(b for b in at.button if b.label == "Plan").click().run()
    assert_clean(at)                                   # before: "measured under 2 evaluation protocols"
    assert any("expected_gain" in t.value.columns for t in at.dataframe)


@needs_squad
def test_a_plan_is_a_job_the_runs_page_can_cancel_and_keeps_the_studys_settings(demo_store, launches):
    at = open_page(state={"run_launcher": launcher_into(launches)})
    at.switch_page(PLAN).run()
    next(b for b in at.button if b.label == "Plan").click().run()
    at.button(key="plan_launch").click().run()
    assert_clean(at)
    base = squad_study()
    train = launched_train(launches[0])
    assert {k: train[k] for k in studies.inherited_settings(base)} == studies.inherited_settings(base)
    at.switch_page(RUNS).run()
    assert_clean(at)
    heading = next(m.value for m in at.markdown if m.value.startswith("#### Study "))
    assert heading.startswith(f"#### Study {base.name}-") and heading.endswith("· running")
    assert any(b.label == "Cancel this study" for b in at.button)


def a_study_on(dataset: Path, runs_made: list[str]) -> str:
    """A sweep file the app wrote (runs_dir()/sweeps) and completed runs with the ids in
    `runs_made` (a callable of the sweep's own ids); returns the study's name."""
    from engine.paths import runs_dir
    from tests.test_app_runs import RUN_FIELDS

    spec = {"name": "mystudy", "grid": {"models": ["scratch-L1-H32"], "train_pairs": [100, 200]},
            "train": {"dataset": str(dataset), "steps": 20, "max_passage_length": 64, "eval": {"repeats": 2}}}
    sweep = studies.new_sweep_file(spec)
    store = Store()
    for run_id in runs_made(sweep):
        store.start_run(run_id=run_id, **RUN_FIELDS)
        store.finish_run(run_id, status="completed", best_contrastive_entropy=4.5)
    assert sweep.path.parent == runs_dir() / "sweeps"
    return sweep.name


def test_a_study_whose_runs_its_sweep_still_makes_is_extended_without_a_warning(tmp_path):
    from tests.helpers import write_synthetic
    dataset = write_synthetic(tmp_path / "syn", n_passages=400, n_train=300, n_test=20)
    name = a_study_on(dataset, lambda sweep: [sweep.runs[0].run_id])
    at = open_page(RUNS)
    assert_clean(at)
    assert at.selectbox(key="run_base").value == name and not at.warning
    assert any(f"Extends **{name}" in c.value and "join its curves" in c.value for c in at.caption)


def test_a_study_whose_settings_changed_since_its_runs_says_new_runs_will_not_join_them(tmp_path):
    from tests.helpers import write_synthetic
    dataset = write_synthetic(tmp_path / "syn", n_passages=400, n_train=300, n_test=20)
    name = a_study_on(dataset, lambda sweep: [sweep.runs[0].run_id.rsplit("-", 1)[0] + "-0badc0de"])
    at = open_page(RUNS)
    assert at.selectbox(key="run_base").value == name
    assert any("changed since they ran" in w.value and "a protocol of their own" in w.value for w in at.warning)
