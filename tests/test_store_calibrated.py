"""Raw and calibrated contrastive entropy side by side in the store: points keep both
and the temperature, runs the best of each, fits choose one; old stores, old spool
records and the demo study keep loading."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine import eval_protocol as protocol
from engine.errors import InputError
from engine.paths import PROJECT_ROOT, spool_dir
from engine.train import TrainerState, train
from store import Store
from store.demo import load_demo
from tests.test_store import _v1_database, start

FINGERPRINT = {"negatives": 256, "repeats": 10, "pool": 1000, "pool_seed": 0, "test_pairs": 200,
               "max_query_length": 32, "max_passage_length": 96, "precision": "fp32",
               "test_split": "test:0123456789ab", "metric": "raw"}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "db" / "workbench.duckdb")


def finished(store: Store, run_id: str, raw: float, calibrated: float | None, **overrides) -> None:
    start(store, run_id, eval_fingerprint=FINGERPRINT, **overrides)
    store.add_point(run_id, step=10, contrastive_entropy=raw + 0.5, calibrated_entropy=calibrated,
                    temperature=2.5, metrics={"mrr@10": 0.2}, wall_time_s=1.0)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=raw, best_calibrated_entropy=calibrated)


def test_points_keep_both_entropies_and_the_temperature(store):
    finished(store, "a", raw=5.2, calibrated=4.6)
    points = store.points("a")
    assert points["calibrated_entropy"].tolist() == [4.6] and points["temperature"].tolist() == [2.5]
    assert points["contrastive_entropy"].tolist() == [5.7] and points["mrr@10"].tolist() == [0.2]
    run = store.run("a")
    assert run["best_contrastive_entropy"] == 5.2 and run["best_calibrated_entropy"] == 4.6
    assert store.runs()["best_calibrated_entropy"].tolist() == [4.6]


def test_law_points_choose_the_metric_and_the_fingerprint_names_it(store):
    finished(store, "a", raw=5.2, calibrated=4.6, n_params=1000)
    finished(store, "b", raw=5.0, calibrated=4.1, n_params=8000)
    finished(store, "no-calibrated", raw=5.1, calibrated=None, n_params=3000)
    raw = store.law_points().set_index("run_id")
    calibrated = store.law_points(metric="calibrated").set_index("run_id")
    assert raw["loss"].to_dict() == {"a": 5.2, "no-calibrated": 5.1, "b": 5.0}
    assert calibrated["loss"].to_dict() == {"a": 4.6, "b": 4.1}  # runs without it are left out
    assert {f["metric"] for f in raw["eval_fingerprint"]} == {"raw"}
    assert {f["metric"] for f in calibrated["eval_fingerprint"]} == {"calibrated"}
    assert calibrated.loc["a", "eval_protocol"] == protocol.protocol_id({**FINGERPRINT, "metric": "calibrated"})
    assert calibrated.loc["a", "eval_protocol"] != raw.loc["a", "eval_protocol"]  # a protocol of its own
    with pytest.raises(InputError, match="metric must be one of raw, calibrated"):
        store.law_points(metric="tempered")


def test_an_old_store_upgrades_without_calibrated_values(tmp_path):
    path = tmp_path / "old.duckdb"
    _v1_database(path)
    store = Store(path)
    assert list(store.law_points()["run_id"]) == ["old-run"]
    assert store.law_points(metric="calibrated").empty
    assert math.isnan(store.run("old-run")["best_calibrated_entropy"] or math.nan)


def test_spool_records_written_before_calibration_still_ingest(tmp_path):
    """A run that started before the upgrade left records without the new fields."""
    path = tmp_path / "w.duckdb"
    Store(path).info()  # the database and its spool folder exist
    old_start = {"run_id": "old", "config": "{}", "model_name": "m", "n_params": 10, "n_params_strict": 9,
                 "train_pairs": 100, "annotation": "human", "dataset": "toy", "seed": 0, "device": "cpu",
                 "code_version": "x", "source": "engine", "label": None}
    records = [
        {"op": "start_run", "ts": 1.0, "args": old_start},
        {"op": "add_point", "ts": 2.0, "args": {"run_id": "old", "step": 5, "contrastive_entropy": 5.0,
                                                "metrics": None, "wall_time_s": 1.0}},
        {"op": "finish_run", "ts": 3.0, "args": {"run_id": "old", "status": "completed",
                                                 "best_contrastive_entropy": 5.0, "metrics": None,
                                                 "wall_time_s": 2.0}},
    ]
    folder = spool_dir(path)
    folder.mkdir(exist_ok=True)
    (folder / "1-old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    store = Store(path)
    points = store.points("old")
    assert points["contrastive_entropy"].tolist() == [5.0] and math.isnan(points["calibrated_entropy"].iloc[0])
    assert store.run("old")["status"] == "completed" and store.info()["spool_records_quarantined"] == 0
    assert math.isnan(store.run("old")["stopped_early_at"] or math.nan)   # nor where it stopped early
    assert store.law_points()["loss"].tolist() == [5.0] and store.law_points(metric="calibrated").empty


def test_the_demo_study_loads_and_fits_both_entropies(store):
    loaded = load_demo(store, PROJECT_ROOT / "demo" / "cpu-study.json")  # conftest hides the default
    assert loaded > 0 and len(store.law_points(source="demo")) == loaded
    calibrated = store.law_points(source="demo", metric="calibrated")
    assert len(calibrated) == loaded and (calibrated["loss"] > 0).all()  # the rerun demo has both (issue 15)


def test_training_tracks_the_best_of_each_metric_apart():
    state = TrainerState()
    for step, raw, calibrated in ((0, 5.5, 5.4), (100, 5.0, 4.9), (200, 5.6, 4.5), (300, 7.3, 4.7)):
        state.record(step, {"contrastive_entropy": raw, "calibrated_entropy": calibrated, "temperature": 1.0})
    assert (state.best_contrastive_entropy, state.best_step) == (5.0, 100)
    assert (state.best_calibrated_entropy, state.best_calibrated_step) == (4.5, 200)
    assert TrainerState(**{"step": 3, "best_contrastive_entropy": 5.0, "best_step": 3, "curve": [],
                           "wall_time_s": 1.0}).best_calibrated_entropy is None  # an older checkpoint's state


@pytest.mark.slow
def test_a_training_run_stores_both_at_every_evaluation(tmp_path, capsys):
    from engine.cli import main
    from engine.paths import runs_dir
    from tests.helpers import tiny_config, write_synthetic
    store = Store(tmp_path / "results.duckdb")
    data = write_synthetic(tmp_path / "syn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared machine
    try:
        result = train(tiny_config(data, run_id="both", eval_at_start=True), store=store)
        assert main(["evaluate", "--dataset", str(data), "--checkpoint", str(runs_dir() / "both" / "model"),
                     "--eval-repeats", "1", "--eval-ranking", "never", "--json", "--record",
                     "--store", str(store.path)]) == 0
    finally:
        torch.set_num_threads(threads)
    evaluated = json.loads(capsys.readouterr().out)
    recorded = store.run(evaluated["run_id"])
    assert recorded["best_calibrated_entropy"] == pytest.approx(evaluated["calibrated_entropy"])
    assert store.points(evaluated["run_id"])["temperature"].tolist() == [pytest.approx(evaluated["temperature"])]
    points = store.points("both")
    assert points["step"].tolist() == [0, 1, 2, 5, 10, 20, 40]
    assert points["calibrated_entropy"].notna().all() and (points["temperature"] > 0).all()
    assert "calibrated_entropy" not in points["metrics"].iloc[-1]  # a column of its own, not a metric too
    assert (points["calibrated_entropy"] <= points["contrastive_entropy"] + 0.01).all()
    run = store.run("both")
    assert run["best_calibrated_entropy"] == pytest.approx(points["calibrated_entropy"].min())
    assert result.best_calibrated_entropy == pytest.approx(run["best_calibrated_entropy"])
    assert result.best_calibrated_step in (0, 20, 40)
    assert run["best_calibrated_entropy"] in store.law_points(metric="calibrated")["loss"].tolist()


def law_grid(store: Store) -> None:
    """16 runs: calibrated entropy follows the paper's joint law; raw adds a score-scale
    penalty that grows with the model (overconfident large models)."""
    from engine.laws import preset

    law = preset("paper-joint")
    for i, (n, d) in enumerate((n, d) for n in np.geomspace(5e5, 5e7, 4) for d in np.geomspace(1e4, 1e6, 4)):
        calibrated = float(law.predict(np.array([n]), np.array([d]))[0])
        start(store, f"r{i}", eval_fingerprint=FINGERPRINT, n_params=int(n), train_pairs=int(d))
        store.finish_run(f"r{i}", status="completed", best_contrastive_entropy=calibrated + 0.3 * math.log10(n / 1e5),
                         best_calibrated_entropy=calibrated)


def test_laws_fit_store_fits_the_chosen_metric(tmp_path, capsys):
    from engine.cli import main
    from engine.laws import preset

    path = tmp_path / "s.duckdb"
    law_grid(Store(path))
    Store(path).info()  # the spool ingested: the database file exists
    fits = {}
    for metric in ("raw", "calibrated"):
        code = main(["laws", "fit", "--store", str(path), "--metric", metric, "--law", "joint", "--bootstrap", "0",
                     "--json", "--out", str(tmp_path / f"{metric}.json")])
        assert code == 0, capsys.readouterr().err
        fits[metric] = json.loads(capsys.readouterr().out)
    assert fits["calibrated"]["params"]["alpha"] == pytest.approx(preset("paper-joint").params["alpha"], rel=1e-3)
    assert fits["raw"]["params"]["alpha"] != pytest.approx(fits["calibrated"]["params"]["alpha"], rel=0.05)
    assert main(["laws", "fit", "--csv", str(tmp_path / "x.csv"), "--metric", "calibrated", "--law", "joint"]) == 2
    assert "use it with --store" in capsys.readouterr().err

    empty = tmp_path / "old.duckdb"
    _v1_database(empty)
    assert main(["laws", "fit", "--store", str(empty), "--metric", "calibrated", "--law", "model"]) == 2
    assert "with a calibrated entropy" in capsys.readouterr().err


@pytest.mark.slow
def test_the_fit_page_fits_the_chosen_metric():
    from engine.laws import preset
    from tests.helpers import assert_clean, open_page, press_fit, table_with
    law_grid(Store())
    alphas = {}
    for metric in ("raw", "calibrated"):
        at = open_page("pages/2_Fit_laws.py")
        at.selectbox(key="fit_metric").set_value(metric)
        at.radio(key="fit_kind").set_value("joint").run()
        press_fit(at)
        assert_clean(at)
        alphas[metric] = float(table_with(at, "parameter").set_index("parameter").at["alpha", "value"])
    assert alphas["calibrated"] == pytest.approx(preset("paper-joint").params["alpha"], rel=0.02)
    assert alphas["raw"] != pytest.approx(alphas["calibrated"], rel=0.05)


@pytest.mark.slow
def test_the_fit_page_says_when_no_run_has_a_calibrated_entropy():
    from tests.helpers import assert_clean, open_page
    start(Store(), "raw-only", eval_fingerprint=FINGERPRINT)
    Store().finish_run("raw-only", status="completed", best_contrastive_entropy=5.0)
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_metric").set_value("calibrated").run()
    assert_clean(at)
    assert any("has a calibrated entropy" in info.value for info in at.info)


def test_the_study_reports_the_chosen_metric(tmp_path, capsys):
    from engine.cli import main
    from engine.study import StudyConfig, build_report, report_markdown
    from tests.test_study import TRUE, study_runs

    runs = study_runs()
    runs["best_calibrated_entropy"] = runs["best_contrastive_entropy"]  # the law, as calibrated entropy
    runs["best_contrastive_entropy"] += 0.4 * np.log10(runs["n_params"] / 1e4)  # raw: larger models overconfident
    raw = build_report(runs, StudyConfig(bootstrap=0))
    calibrated = build_report(runs, StudyConfig(bootstrap=0, metric="calibrated"))
    assert sorted(calibrated.points["loss"]) == pytest.approx(sorted(
        runs.loc[(runs["dataset"] == "squad-dev") & (runs["annotation"] == "human"), "best_calibrated_entropy"]))
    assert calibrated.joint_law.law.params["alpha"] == pytest.approx(TRUE.params["alpha"], rel=0.1)
    assert abs(raw.joint_law.law.params["alpha"] - TRUE.params["alpha"]) > 0.1
    assert "calibrated contrastive entropy from" in report_markdown(calibrated)
    assert "raw contrastive entropy from" in report_markdown(raw)

    path = tmp_path / "imported.duckdb"
    plain = study_runs().rename(columns={"n_params": "n", "train_pairs": "d", "best_contrastive_entropy": "loss",
                                         "model_name": "model"})
    Store(path).load_rows(plain, source="demo")  # an import: raw entropy only
    assert main(["study", "--store", str(path), "--metric", "calibrated", "--bootstrap", "0"]) == 2
    assert "no run has a calibrated contrastive entropy" in capsys.readouterr().err
