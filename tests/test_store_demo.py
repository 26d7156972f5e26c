"""The demo study (store/demo.py): written from a study's store, loaded into a fresh
store once, labelled, removable in one action and not reloaded after removal; the
committed demo file itself is a real study of the size issue 8 asks for."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import InputError
from store import Store
from store.__main__ import main as store_cli
from store.demo import (
    DEMO_FILE,
    demo_state,
    ensure_demo,
    load_demo,
    read_demo,
    remove_demo,
    write_demo,
)
from tests.demo_study import main_study

STUDY = {"title": "toy study", "datasets": ["toy"], "hardware": "test", "date": "2026-11-24",
         "commands": ["python -m engine sweep sweeps/toy.toml"]}


def _study_store(tmp_path) -> Store:
    store = Store(tmp_path / "study.duckdb")
    for i, (n, d) in enumerate([(1000, 10), (2000, 10), (1000, 20), (2000, 20)]):
        run_id = store.start_run(config={"steps": 1}, model_name=f"m{n}", n_params=n, n_params_strict=n,
                                 train_pairs=d, annotation="human", dataset="toy", seed=0, device="cpu",
                                 code_version="test", run_id=f"run{i}")
        store.add_point(run_id, step=10, contrastive_entropy=5.5 - i / 10, metrics=None, wall_time_s=1.0)
        metrics = {"mrr@10": 0.01 * (i + 1), "recall@1000": 0.5}
        if i == 0:
            metrics["contrastive_entropy"] = 5.25  # recorded with the metrics, as the engine now does
        store.finish_run(run_id, status="completed", best_contrastive_entropy=5.0 - i / 10,
                         metrics=metrics, wall_time_s=1.0)
    failed = store.start_run(config={}, model_name="m", n_params=5, n_params_strict=5, train_pairs=5,
                             annotation="human", dataset="toy", seed=0, device="cpu", code_version="t")
    store.finish_run(failed, status="failed", best_contrastive_entropy=None)
    return store


def test_write_then_first_launch_loads_once_and_removal_sticks(tmp_path):
    demo_file = write_demo(_study_store(tmp_path), STUDY, tmp_path / "demo.json")
    study, rows = read_demo(demo_file)
    assert study == STUDY and len(rows) == 4  # the failed run is not a result
    assert list(rows.sort_values("run_id")["loss"]) == pytest.approx([5.0, 4.9, 4.8, 4.7])
    # the entropy that goes with the ranking metrics: kept with them, else the last evaluation point
    assert list(rows.sort_values("run_id")["metrics_loss"]) == pytest.approx([5.25, 5.4, 5.3, 5.2])

    store = Store(tmp_path / "fresh.duckdb")
    assert demo_state(store) == "never"
    assert ensure_demo(store, demo_file) == 4
    assert ensure_demo(store, demo_file) == 0  # second launch: nothing added
    runs = store.runs()
    assert set(runs["source"]) == {"demo"} and runs["label"].str.startswith("demo: toy study").all()
    assert runs["config"].iloc[0]["demo_study"] == STUDY  # where the numbers came from, with each run
    assert sorted(store.law_points(dataset="toy")["loss"]) == pytest.approx([4.7, 4.8, 4.9, 5.0])
    assert set(runs["mrr@10"].round(2)) == {0.01, 0.02, 0.03, 0.04}
    assert sorted(runs["contrastive_entropy"]) == pytest.approx([5.2, 5.25, 5.3, 5.4])

    assert remove_demo(store) == 4 and store.runs().empty
    assert ensure_demo(store, demo_file) == 0 and demo_state(store) == "removed"
    assert load_demo(store, demo_file) == 4 and load_demo(store, demo_file) == 4  # replaces, never doubles
    assert len(store.runs()) == 4 and demo_state(store) == "loaded"


def test_bad_demo_files_and_empty_study_stores_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"runs\": []}")
    with pytest.raises(InputError, match="not a demo study file"):
        read_demo(bad)
    with pytest.raises(InputError, match="no completed runs"):
        write_demo(Store(tmp_path / "empty.duckdb"), STUDY, tmp_path / "x.json")
    with pytest.raises(InputError, match="title"):
        write_demo(_study_store(tmp_path), {"datasets": []}, tmp_path / "x.json")
    assert ensure_demo(Store(tmp_path / "s.duckdb"), tmp_path / "missing.json") == 0


def test_cli_load_status_remove(tmp_path, capsys):
    demo_file = write_demo(_study_store(tmp_path), STUDY, tmp_path / "demo.json")
    db = str(tmp_path / "cli.duckdb")
    assert store_cli(["demo", "load", "--file", str(demo_file), "--store", db]) == 0
    assert store_cli(["demo", "status", "--store", db]) == 0
    assert store_cli(["demo", "remove", "--store", db]) == 0
    out = capsys.readouterr().out
    assert "loaded 4 demo run(s)" in out and "loaded\n" in out and "removed 4 demo run(s)" in out
    assert store_cli(["demo", "write", "--store", db]) == 2  # --meta is required to write


@pytest.mark.skipif(not DEMO_FILE.exists(), reason="no demo study committed yet")
def test_committed_demo_is_a_study_of_the_promised_size():
    study, rows = read_demo(DEMO_FILE)
    for key in ("title", "datasets", "hardware", "date", "commands"):
        assert study.get(key), key
    squad = main_study(rows)
    assert squad["n"].nunique() >= 6 and np.log10(squad["n"].max() / squad["n"].min()) >= 1.5
    assert squad["d"].nunique() >= 5 and np.log10(squad["d"].max() / squad["d"].min()) >= 1.0
    assert set(squad.loc[squad["run_id"].str.contains("-Dall-"), "d"]) == {squad["d"].max()}  # all the pairs
    assert {"ict"} <= set(rows["annotation"]) and "cmrc2018" in set(rows["dataset"])
    assert rows["loss"].between(0, 20).all() and rows["mrr@10"].notna().all()
    # issue 15: both entropies, the step of each best, and a second seed for every model at the largest D
    assert rows["calibrated_loss"].between(0, 20).all() and rows["calibrated_best_step"].notna().all()
    runs_per_config = squad.groupby(["n", "d"]).size()
    at_largest_d = runs_per_config[runs_per_config.index.get_level_values("d") == squad["d"].max()]
    assert len(at_largest_d) == squad["n"].nunique() and (at_largest_d >= 2).all()
    json.dumps(study)  # plain JSON, shown as is in the app


@pytest.mark.skipif(not DEMO_FILE.exists(), reason="no demo study committed yet")
def test_committed_demo_holds_the_runs_its_sweep_files_make():
    """Each configuration and seed of the study's sweep files once, and nothing else (run ids
    without their settings hash, which the code version may change)."""
    from engine.paths import PROJECT_ROOT
    from engine.sweep import load_sweep

    study, rows = read_demo(DEMO_FILE)
    made = [run.run_id for name in study["sweep_files"] for run in load_sweep(PROJECT_ROOT / name).runs]
    assert rows["run_id"].is_unique
    assert sorted(rows["run_id"].str.rsplit("-", n=1).str[0]) == sorted({i.rsplit("-", 1)[0] for i in made})


def test_the_demo_keeps_calibrated_entropy_and_the_protocol_of_each_run(tmp_path):
    store = Store(tmp_path / "study.duckdb")
    fingerprint = {"negatives": 256, "repeats": 3, "pool": 100000, "pool_seed": 0, "test_pairs": 60,
                   "max_query_length": 32, "max_passage_length": 96, "precision": "fp32",
                   "test_split": "test:0123456789ab", "metric": "raw"}
    for i, n in enumerate([1000, 2000, 4000]):
        run_id = store.start_run(config={}, model_name=f"m{n}", n_params=n, n_params_strict=n, train_pairs=10,
                                 annotation="human", dataset="toy", seed=0, device="cpu", code_version="t",
                                 run_id=f"run{i}", eval_fingerprint=fingerprint)
        store.finish_run(run_id, status="completed", best_contrastive_entropy=5.0 - i / 10,
                         best_calibrated_entropy=4.5 - i / 10,
                         metrics={"mrr@10": 0.1, "contrastive_entropy": 5.1, "calibrated_entropy": 4.6 - i / 10})
        for step, raw, calibrated in ((0, 5.5, 4.5 - i / 10), (10, 5.0 - i / 10, 4.9)):  # calibrated best: untrained
            store.add_point(run_id, step=step, contrastive_entropy=raw, wall_time_s=1.0, calibrated_entropy=calibrated)
    rows = read_demo(write_demo(store, STUDY, tmp_path / "demo.json"))[1]
    assert set(rows["best_step"]) == {10} and set(rows["calibrated_best_step"]) == {0}
    assert set(rows["trained_calibrated_loss"]) == {4.9}  # the best after step 0
    assert list(rows["calibrated_loss"]) == pytest.approx([4.5, 4.4, 4.3])
    assert list(rows["metrics_calibrated_loss"]) == pytest.approx([4.6, 4.5, 4.4])
    assert set(rows["eval_max_passage_length"]) == {96} and set(rows["eval_test_split"]) == {"test:0123456789ab"}

    fresh = Store(tmp_path / "fresh.duckdb")
    load_demo(fresh, tmp_path / "demo.json")
    runs = fresh.runs()
    assert sorted(runs["best_calibrated_entropy"]) == pytest.approx([4.3, 4.4, 4.5])
    assert sorted(runs["calibrated_entropy"]) == pytest.approx([4.4, 4.5, 4.6])
    assert runs["eval_fingerprint"].iloc[0] == fingerprint  # the protocol travels with the numbers
    assert set(runs["best_step"]) == {10} and set(runs["calibrated_best_step"]) == {0}
    assert set(runs["trained_calibrated_entropy"]) == {4.9}
    calibrated = fresh.law_points(dataset="toy", metric="calibrated")
    assert sorted(calibrated["loss"]) == pytest.approx([4.3, 4.4, 4.5])
