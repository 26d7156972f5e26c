"""Tracker imports (store/trackers.py, `python -m store import-tracker`): TensorBoard
event files written by torch's SummaryWriter and read with tbparse, MLflow's mlruns/
folder and SQLite store in their documented formats, W&B history CSV/Parquet + config
JSON as its exports write them. Each becomes runs and points with N, D and the loss
mapped from the user's names; a dry run writes nothing; importing again changes nothing."""
import json
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from engine.errors import InputError
from store import Store
from store.trackers import TrackerMapping, import_runs, preview, read_runs
from tests.conftest import ROOT

# (run name, N, D): loss falls with step, lower for bigger runs
RUNS = [("small", 1000, 500), ("big", 8000, 2000)]
STEPS = (100, 200, 300)


def loss_at(n, d, step):
    return 6.0 - 0.1 * (n / 1000) ** 0.3 - 0.2 * (d / 500) ** 0.3 - step / 1000


def write_tensorboard(root):
    from torch.utils.tensorboard import SummaryWriter

    for name, n, d in RUNS:
        writer = SummaryWriter(str(root / name))
        for step in STEPS:
            writer.add_scalar("eval/ce", loss_at(n, d, step), step)
            writer.add_scalar("eval/mrr", 0.1 + step / 10_000, step)
            writer.add_scalar("train/loss", 1.0, step)
        writer.add_hparams({"n_params": n, "pairs": d, "lr": 0.001}, {"hparam/ce": 0.0}, run_name=".")
        writer.close()
    return root


def write_mlruns(root):
    """mlruns/<experiment>/<run uuid>/{meta.yaml, metrics/<key>, params/<key>, tags/mlflow.runName}."""
    experiment = root / "mlruns" / "1"
    experiment.mkdir(parents=True)
    (experiment / "meta.yaml").write_text("experiment_id: '1'\nname: study\nlifecycle_stage: active\n")
    for index, (name, n, d) in enumerate([*RUNS, ("gone", 3000, 700)]):
        run = experiment / f"{index:032x}"
        stage = "deleted" if name == "gone" else "active"
        for folder in ("metrics/val", "params", "tags"):
            (run / folder).mkdir(parents=True)
        (run / "meta.yaml").write_text(f"run_id: {run.name}\nrun_name: {name}\nexperiment_id: '1'\n"
                                       f"lifecycle_stage: {stage}\nstatus: 3\n")
        (run / "metrics" / "val" / "ce").write_text(
            "".join(f"{1700000000000 + step} {loss_at(n, d, step)} {step}\n" for step in STEPS))
        (run / "params" / "n").write_text(str(n))
        (run / "params" / "d").write_text(str(d))
        (run / "tags" / "mlflow.runName").write_text(name)
    return root / "mlruns"


def write_mlflow_sqlite(path):
    """The tracking store's tables as MLflow's schema defines them (the columns read)."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, name VARCHAR(250), source_type VARCHAR(20),
            status VARCHAR(9), start_time BIGINT, end_time BIGINT, lifecycle_stage VARCHAR(20),
            artifact_uri VARCHAR(200), experiment_id INTEGER);
        CREATE TABLE metrics (key VARCHAR(250), value FLOAT, timestamp BIGINT, run_uuid VARCHAR(32),
            step BIGINT DEFAULT 0, is_nan BOOLEAN DEFAULT 0, PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan));
        CREATE TABLE params (key VARCHAR(250), value VARCHAR(8000), run_uuid VARCHAR(32), PRIMARY KEY (key, run_uuid));
    """)
    for index, (name, n, d) in enumerate(RUNS):
        uuid = f"{index:032x}"
        con.execute("INSERT INTO runs VALUES (?, ?, 'LOCAL', 'FINISHED', ?, ?, 'active', '', 1)",
                    (uuid, name, index, index + 1))
        for step in STEPS:
            con.execute("INSERT INTO metrics VALUES ('val/ce', ?, ?, ?, ?, 0)", (loss_at(n, d, step), step, uuid, step))
        con.execute("INSERT INTO metrics VALUES ('val/ce', 0, 999, ?, 400, 1)", (uuid,))   # a NaN, skipped
        con.executemany("INSERT INTO params VALUES (?, ?, ?)", [("n", str(n), uuid), ("d", str(d), uuid)])
    con.commit()
    con.close()
    return path


def write_wandb(root):
    """One folder per run: history (run.history()) and config.json as W&B's files wrap it."""
    for index, (name, n, d) in enumerate(RUNS):
        folder = root / name
        folder.mkdir(parents=True)
        history = pd.DataFrame({"_step": STEPS, "_runtime": [1.0, 2.0, 3.0],
                                "eval/ce": [loss_at(n, d, step) for step in STEPS],
                                "eval/mrr": [0.2, None, 0.3]})
        if index == 0:
            history.to_csv(folder / "history.csv", index=False)
        else:
            history.to_parquet(folder / "history.parquet")
        (folder / "config.json").write_text(json.dumps({"model_params": {"desc": None, "value": n},
                                                        "train_pairs": {"value": d}, "_wandb": {"value": {}}}))
    return root


SOURCES = {  # kind -> (writer, mapping)
    "tensorboard": (write_tensorboard, TrackerMapping(loss="eval/ce", n="n_params", d="pairs",
                                                      metrics={"mrr@10": "eval/mrr"})),
    "mlflow": (write_mlruns, TrackerMapping(loss="val/ce", n="n", d="d")),
    "mlflow-sqlite": (lambda root: write_mlflow_sqlite(root.mkdir() or root / "mlflow.db"), TrackerMapping(loss="val/ce", n="n", d="d")),
    "wandb": (write_wandb, TrackerMapping(loss="eval/ce", n="model_params", d="train_pairs",
                                          metrics={"mrr@10": "eval/mrr"})),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_each_tracker_becomes_runs_and_points_exactly_once(tmp_path, kind):
    writer, mapping = SOURCES[kind]
    source = writer(tmp_path / "src")
    store = Store(tmp_path / "s.duckdb")

    shown = preview(store, source, mapping)
    assert [row["action"] for row in shown] == ["new", "new"] and len(store.runs()) == 0   # dry run writes nothing
    import_runs(store, source, mapping)
    again = import_runs(store, source, mapping)                   # the same runs again: updated, not added
    assert [row["action"] for row in again] == ["update", "update"]

    laws = store.law_points(source="tracker").sort_values("n")
    assert laws[["n", "d"]].values.tolist() == [[n, d] for _, n, d in RUNS]
    assert laws["loss"].tolist() == pytest.approx([loss_at(n, d, STEPS[-1]) for _, n, d in RUNS])  # best = last
    assert sorted(laws["label"]) == ["big", "small"]
    points = store.points()
    assert len(points) == len(RUNS) * len(STEPS) and sorted(set(points["step"])) == list(STEPS)
    assert set(store.runs()["dataset"]) == {"imported"}
    if "mrr@10" in mapping.metrics:
        small = store.run(laws["run_id"].iloc[0])
        assert small["metrics"]["mrr@10"] > 0.1 and "contrastive_entropy" in small["metrics"]


def test_run_ids_come_from_source_identity(tmp_path):
    mlruns, database = write_mlruns(tmp_path / "a"), write_mlflow_sqlite(tmp_path / "m.db")
    mapping = SOURCES["mlflow"][1]
    store = Store(tmp_path / "s.duckdb")
    from_folder = [row["run_id"] for row in import_runs(store, mlruns, mapping)]
    from_sqlite = [row["run_id"] for row in preview(store, database, mapping)]
    assert from_folder == from_sqlite                             # same MLflow run uuid, same workbench run
    assert all(row["action"] == "update" for row in preview(store, database, mapping))
    assert len({*from_folder}) == 2 and all(run_id.startswith("tracker-mlflow-") for run_id in from_folder)


def test_runs_that_cannot_be_mapped_are_skipped_with_the_reason(tmp_path):
    source = write_wandb(tmp_path / "w")
    rows = preview(Store(tmp_path / "s.duckdb"), source, TrackerMapping(loss="eval/ce", n="width", d="train_pairs"))
    assert {row["action"] for row in rows} == {"skip"}
    assert all("no parameter 'width' for N" in row["problem"] and "model_params" in row["problem"] for row in rows)
    rows = preview(Store(tmp_path / "s.duckdb"), source, TrackerMapping(loss="val/nope", n="1000", d="train_pairs"))
    assert all("no metric 'val/nope'" in row["problem"] and "eval/ce" in row["problem"] for row in rows)
    with pytest.raises(InputError, match="workbench metric first"):
        preview(Store(tmp_path / "s.duckdb"), source, TrackerMapping(loss="eval/ce", n="1", d="1", metrics={"x": "y"}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("nothing a tracker wrote")
    with pytest.raises(InputError, match="not a TensorBoard"):
        read_runs(tmp_path / "other")


def store_cli(*argv):
    return subprocess.run([sys.executable, "-m", "store", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_dry_run_then_import_then_reimport(tmp_path):
    source = write_tensorboard(tmp_path / "tb")
    db = tmp_path / "s.duckdb"
    flags = ["--store", db, "--loss", "eval/ce", "--n", "n_params", "--d", "pairs", "--metric", "mrr@10=eval/mrr",
             "--dataset", "squad-dev"]
    dry = store_cli("import-tracker", source, *flags, "--dry-run", "--json")
    assert dry.returncode == 0 and "Warning" not in dry.stderr, dry.stderr    # tbparse's deprecations kept off
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["imported"] == 0 and len(report["runs"]) == 2
    assert all(row["points"] == 3 and row["action"] == "new" for row in report["runs"])
    assert len(Store(db).runs()) == 0
    first = store_cli("import-tracker", source, *flags)
    assert first.returncode == 0 and "imported 2 of 2 run(s)" in first.stdout, first.stderr
    second = store_cli("import-tracker", source, *flags, "--json")
    assert [row["action"] for row in json.loads(second.stdout)["runs"]] == ["update", "update"]
    assert len(Store(db).runs()) == 2 and len(Store(db).points()) == 6
    assert set(Store(db).runs()["dataset"]) == {"squad-dev"}
    bad = store_cli("import-tracker", source, *flags, "--metric", "mrr@10")
    assert bad.returncode == 2 and "OURS=THEIRS" in bad.stderr and "Traceback" not in bad.stderr
