"""The store's API in one process: runs and resumes, points, data sets, fits, the demo,
schema upgrades and exports."""
from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from engine.errors import InputError
from store import Store
from store.schema import LATEST_VERSION, migrate


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "db" / "workbench.duckdb")


def start(store: Store, run_id: str | None = None, **overrides) -> str:
    fields = dict(
        config={"lr": 1e-4, "steps": 100}, model_name="bert-tiny", n_params=500_000,
        n_params_strict=480_000, train_pairs=1000, annotation="human", dataset="toy",
        seed=0, device="cpu", code_version="test",
    )  # fmt: skip
    return store.start_run(run_id=run_id, **{**fields, **overrides})


def test_default_path_is_created_on_first_use(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "er" / "w.duckdb"
    monkeypatch.setenv("WORKBENCH_STORE", str(target))
    store = Store()
    assert store.path == target
    assert store.info()["schema_version"] == LATEST_VERSION
    assert target.is_file()


def test_run_lifecycle_with_points_and_metrics(store):
    run_id = start(store)
    assert len(run_id) == 32
    store.add_point(run_id, step=50, contrastive_entropy=2.0, metrics={"ndcg@10": 0.1}, wall_time_s=1.0)
    store.add_point(run_id, step=100, contrastive_entropy=1.5, metrics={"ndcg@10": 0.3}, wall_time_s=2.0)
    assert store.run(run_id)["status"] == "running"
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.5,
                     metrics={"ndcg@10": 0.3, "mrr@10": 0.25}, wall_time_s=2.5)  # fmt: skip

    run = store.run(run_id)
    assert run["status"] == "completed" and run["ended_at"] is not None
    assert run["config"] == {"lr": 1e-4, "steps": 100}
    assert run["metrics"] == {"ndcg@10": 0.3, "mrr@10": 0.25}
    runs = store.runs()
    assert list(runs["run_id"]) == [run_id]
    assert runs.loc[0, "mrr@10"] == 0.25 and runs.loc[0, "wall_time_s"] == 2.5
    points = store.points(run_id)
    assert list(points["step"]) == [50, 100]
    assert list(points["ndcg@10"]) == [0.1, 0.3]
    assert store.run("no-such-run") is None


def test_resumed_run_is_not_duplicated(store):
    run_id = start(store, "resume-me")
    store.add_point(run_id, step=10, contrastive_entropy=3.0, wall_time_s=1.0)
    store.finish_run(run_id, status="failed", best_contrastive_entropy=None)
    assert store.run(run_id)["status"] == "failed"

    assert start(store, "resume-me") == "resume-me"  # the resumed process starts again
    assert store.run(run_id)["status"] == "running"
    store.add_point(run_id, step=10, contrastive_entropy=2.9, wall_time_s=1.1)  # replayed step
    store.add_point(run_id, step=20, contrastive_entropy=2.5, wall_time_s=2.0)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=2.5)

    runs = store.runs()
    assert len(runs) == 1 and runs.loc[0, "status"] == "completed"
    points = store.points(run_id)
    assert list(points["step"]) == [10, 20]
    assert points.loc[0, "contrastive_entropy"] == 2.9  # the later point replaced the first


def test_runs_filters_and_bad_arguments(store):
    start(store, "a", dataset="msmarco", annotation="human")
    start(store, "b", dataset="msmarco", annotation="ict")
    start(store, "c", dataset="t2ranking", annotation="human")
    store.finish_run("a", status="completed", best_contrastive_entropy=1.0)
    assert set(store.runs(dataset="msmarco")["run_id"]) == {"a", "b"}
    assert set(store.runs(annotation="human", dataset="msmarco")["run_id"]) == {"a"}
    assert set(store.runs(status="running")["run_id"]) == {"b", "c"}
    assert set(store.runs(dataset=["msmarco", "t2ranking"])["run_id"]) == {"a", "b", "c"}
    with pytest.raises(InputError, match="status must be one of"):
        store.finish_run("a", status="done", best_contrastive_entropy=1.0)
    with pytest.raises(InputError, match="status must be one of"):
        store.runs(status="finished")
    with pytest.raises(InputError, match="n_params must not be negative"):
        start(store, n_params=-1)
    with pytest.raises(InputError, match="cannot store a value of type object"):
        start(store, config={"bad": object()})


def test_delete_run_removes_its_points(store):
    keep, drop = start(store), start(store)
    for run_id in (keep, drop):
        store.add_point(run_id, step=1, contrastive_entropy=1.0, wall_time_s=0.1)
    store.delete_run(drop)
    assert list(store.runs()["run_id"]) == [keep]
    assert set(store.points()["run_id"]) == {keep}


def test_datasets_register_is_idempotent_by_name(store):
    common = dict(language="en", format="beir", path="/data/toy", n_queries=10,
                  n_train_pairs=8, n_test_pairs=2)  # fmt: skip
    store.register_dataset("toy", n_passages=100, **common)
    store.register_dataset("toy", n_passages=120, generator={"kind": "ict", "seed": 1}, **common)
    frame = store.datasets()
    assert len(frame) == 1
    assert frame.loc[0, "n_passages"] == 120
    assert frame.loc[0, "generator"] == {"kind": "ict", "seed": 1}
    assert frame.loc[0, "annotation"] == "human"


def test_law_points_combine_completed_runs_and_loaded_rows(store):
    done, running = start(store, n_params=1_000_000, train_pairs=5000), start(store)
    store.finish_run(done, status="completed", best_contrastive_entropy=1.25)
    failed = start(store)
    store.finish_run(failed, status="failed", best_contrastive_entropy=9.0)
    rows = pd.DataFrame({"n": [2e6, 4e6], "d": [100, 200], "loss": [1.1, 0.9],
                         "dataset": ["toy", "other"], "ndcg@10": [0.3, None]})  # fmt: skip
    assert store.load_rows(rows, source="demo", label="demo study") == 2

    points = store.law_points()
    assert list(points.columns) == [
        "n", "d", "loss", "label", "dataset", "annotation", "model", "run_id", "source", "eval_protocol",
        "eval_fingerprint",
    ]  # fmt: skip
    demo_ids = set(store.runs().query("source == 'demo'")["run_id"])
    assert len(demo_ids) == 2 and set(points["run_id"]) == {done} | demo_ids
    engine_row = points[points["source"] == "engine"].iloc[0]
    assert (engine_row["n"], engine_row["d"], engine_row["loss"]) == (1_000_000, 5000, 1.25)
    assert set(store.law_points(dataset="toy")["source"]) == {"engine", "demo"}
    assert list(store.law_points(source="demo")["label"]) == ["demo study", "demo study"]
    assert running not in set(points["run_id"]) and failed not in set(points["run_id"])


def test_load_rows_is_all_or_nothing(store):
    rows = pd.DataFrame({"n": [1000, -5], "d": [10, 10], "loss": [1.0, 1.0]})
    with pytest.raises(InputError, match=r"row 2: n must be greater than 0"):
        store.load_rows(rows, source="demo")
    with pytest.raises(InputError, match="lack the column"):
        store.load_rows(rows.drop(columns="loss"), source="demo")
    assert store.runs().empty


def test_remove_demo_counts_and_keeps_other_runs(store):
    kept = start(store)
    demo = pd.DataFrame({"n": [1000, 2000, 3000], "d": [1, 2, 3], "loss": [3.0, 2.0, 1.0]})
    store.load_rows(demo, source="demo")
    assert store.remove_demo() == 3
    assert list(store.runs()["run_id"]) == [kept]
    assert store.remove_demo() == 0


def test_fits_round_trip_with_non_finite_values(store):
    fit_id = store.save_fit(
        law="model", params={"A": 1.5, "alpha": 0.3, "delta": float("nan")},
        intervals={"A": [1.0, 2.0]}, r2=0.98, points=["r1", "r2"], config={"x": "n"}, name="bert",
    )  # fmt: skip
    fit = store.fit(fit_id)
    assert fit["params"] == {"A": 1.5, "alpha": 0.3, "delta": None}  # JSON has no NaN
    assert fit["intervals"] == {"A": [1.0, 2.0]} and fit["points"] == ["r1", "r2"]
    assert fit["r2"] == 0.98 and fit["name"] == "bert"
    assert list(store.fits()["fit_id"]) == [fit_id]
    store.delete_fit(fit_id)
    assert store.fit(fit_id) is None and store.fits().empty


def _v1_database(path) -> None:
    """A file as the first released schema wrote it, with one run and one fit."""
    con = duckdb.connect(str(path))
    migrate(con, upto=1)
    con.execute(
        """INSERT INTO runs (run_id, config, model_name, n_params, train_pairs, annotation,
                             dataset, status, best_contrastive_entropy)
           VALUES ('old-run', '{"lr": 0.001}', 'bert-base', 82000000, 500000, 'human',
                   'msmarco', 'completed', 0.9)"""
    )
    con.execute("INSERT INTO fits (fit_id, law, params) VALUES ('old-fit', 'model', '{\"A\": 1}')")
    con.close()


def test_database_with_first_schema_upgrades_and_keeps_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    _v1_database(path)
    con = duckdb.connect(str(path))
    assert "source" not in [row[0] for row in con.execute("DESCRIBE runs").fetchall()]
    con.close()

    store = Store(path)
    info = store.info()
    assert info["schema_version"] == LATEST_VERSION > 1
    assert info["counts"]["runs"] == 1 and info["counts"]["fits"] == 1
    old = store.run("old-run")
    assert old["source"] == "engine" and old["config"] == {"lr": 0.001}
    assert list(store.law_points()["run_id"]) == ["old-run"]
    store.export("runs", "csv", tmp_path / "runs.csv")  # the exports table exists now
    Store(path).info()  # opening again applies nothing twice
    con = duckdb.connect(str(path))
    versions = con.execute("SELECT list(version ORDER BY version) FROM schema_version").fetchone()[0]
    con.close()
    assert versions == list(range(1, LATEST_VERSION + 1))


def test_database_from_a_newer_workbench_is_refused(tmp_path):
    path = tmp_path / "new.duckdb"
    con = duckdb.connect(str(path))
    migrate(con)
    con.execute("INSERT INTO schema_version VALUES (?, NULL)", [LATEST_VERSION + 1])
    con.close()
    with pytest.raises(InputError, match="update the workbench"):
        Store(path).runs()


def _seed_for_export(store: Store) -> None:
    run_id = start(store, "exported", label="first")
    store.add_point(run_id, step=5, contrastive_entropy=1.75, metrics={"ndcg@10": 0.2}, wall_time_s=1.0)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=1.75, metrics={"mrr@10": 0.4})
    store.save_fit(law="data", params={"B": 2.0}, intervals={}, r2=0.9, points=[run_id], config={})


def _read_back(path, fmt: str) -> pd.DataFrame:
    if fmt == "json":
        return pd.DataFrame(json.loads(path.read_text()))
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    return duckdb.execute(f"SELECT * FROM {reader}(?)", [str(path)]).df()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_round_trip(store, tmp_path, fmt):
    _seed_for_export(store)
    runs_file = store.export("runs", fmt, tmp_path / "out" / f"runs.{fmt}")
    runs = _read_back(runs_file, fmt)
    assert list(runs["run_id"]) == ["exported"] and runs.loc[0, "label"] == "first"
    assert runs.loc[0, "best_contrastive_entropy"] == 1.75 and runs.loc[0, "n_params"] == 500_000
    config = runs.loc[0, "config"]
    assert (config if isinstance(config, dict) else json.loads(config)) == {"lr": 1e-4, "steps": 100}

    points = _read_back(store.export("points", fmt, tmp_path / "out"), fmt)
    assert list(points["step"]) == [5] and points.loc[0, "contrastive_entropy"] == 1.75
    fits = _read_back(store.export("fits", fmt), fmt)
    assert list(fits["law"]) == ["data"]

    assert store.info()["counts"]["exports"] == 3
    assert not list((tmp_path / "out").glob(".*partial"))


def test_export_rejects_unknown_names(store):
    with pytest.raises(InputError, match="what must be one of runs, points, fits"):
        store.export("laws", "csv")
    with pytest.raises(InputError, match="fmt must be one of csv, parquet, json"):
        store.export("runs", "xlsx")


def test_add_points_writes_many_points_at_once_and_checks_them_all_first(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.start_run(config={}, model_name="m", n_params=1, n_params_strict=1, train_pairs=1, annotation="human",
                    dataset="d", seed=0, device="cpu", code_version="t", run_id="many")
    store.add_points("many", [{"step": s, "contrastive_entropy": 5.0 - s / 100, "metrics": {"mrr@10": 0.1}}
                              for s in range(50)])
    points = store.points("many")
    assert list(points["step"]) == list(range(50)) and points["contrastive_entropy"].iloc[-1] == pytest.approx(4.51)
    with pytest.raises(InputError):
        store.add_points("many", [{"step": 60, "contrastive_entropy": 1.0}, {"step": -1, "contrastive_entropy": 1.0}])
    assert len(store.points("many")) == 50  # the good point before the bad one was not written either


def test_a_run_keeps_the_step_where_its_early_stop_began_the_decay():
    store = Store()
    early, planned = start(store, "early"), start(store, "planned")
    store.finish_run(early, status="completed", best_contrastive_entropy=3.0, stopped_early_at=120)
    store.finish_run(planned, status="completed", best_contrastive_entropy=3.1)
    stopped = store.runs().set_index("run_id")["stopped_early_at"]
    assert stopped["early"] == 120 and pd.isna(stopped["planned"])
    for bad in (-1, 2.5, "120", True):
        with pytest.raises(InputError, match="stopped_early_at must"):
            store.finish_run(early, status="completed", best_contrastive_entropy=3.0, stopped_early_at=bad)

