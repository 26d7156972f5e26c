"""The command-line features used as a hostile user would: files that are not what they
should be, odd names, bad numbers. Each case is one line `error: ...`, exit code 2, or a
result that stays correct; never a traceback."""
import json
import os
import socket

import pytest

from engine.paths import runs_dir


def store_main(argv):
    from store.__main__ import main

    return main(argv)


def engine_main(argv):
    from engine.cli import main

    return main(argv)


def running_run(run_id: str, progress_text: str) -> None:
    """A run the store calls running, with `progress_text` as its progress file."""
    from store.results_store import Store

    store = Store()
    store.start_run(config={}, model_name="m", n_params=10, n_params_strict=10, train_pairs=10,
                    annotation="human", dataset="d", seed=0, device="cpu", code_version="x", run_id=run_id)
    store.ingest()
    folder = runs_dir() / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "progress.json").write_text(progress_text)


@pytest.mark.parametrize("progress_text", [
    "[]", '"text"', '{"status": "running", "pid": "abc"}', '{"status": "running", "pid": -5}',
    '{"status": "running", "host": "another-host", "updated_at": "abc"}', '{"status": "runn',
    '{"status": "running", "pid": 999999999, "step": NaN, "total_steps": "x"}',
])
def test_store_info_with_a_broken_progress_file(progress_text, capsys):
    running_run("r-broken", progress_text)
    (runs_dir() / "r-broken" / "checkpoints" / "step-abc").mkdir(parents=True)
    assert store_main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)  # strict JSON: no NaN
    interrupted = {run["run_id"]: run for run in info["interrupted_runs"]}
    if progress_text.startswith("{\"status\": \"running\""):
        assert interrupted["r-broken"]["step"] is None and interrupted["r-broken"]["resumes_from_step"] == 0
    else:  # no progress object: the store's own status stands
        assert "r-broken" not in interrupted


def test_active_commands_skip_unreadable_progress_files():
    from engine.command_progress import active_commands, commands_dir

    commands_dir().mkdir(parents=True)
    (commands_dir() / "list.json").write_text("[]")
    (commands_dir() / "binary.json").write_bytes(b"\xff\xfe")
    (commands_dir() / "folder.json").mkdir()
    live = {"status": "running", "host": socket.gethostname(), "pid": os.getpid(), "done": 1}
    (commands_dir() / "live.json").write_text(json.dumps(live))
    assert [command["path"].rsplit("/", 1)[-1] for command in active_commands()] == ["live.json"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture()
def sweep_file(tmp_path):
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    return write_sweep(tmp_path, write_synthetic(tmp_path / "syn"))


def test_sweep_path_setting_of_the_wrong_type_is_one_line(sweep_file, capsys):
    sweep_file.write_text(sweep_file.read_text().replace('dataset = "', 'dataset = 5\n# "'))
    assert engine_main(["sweep", str(sweep_file), "--dry-run"]) == 2
    assert "[train] dataset must be a path" in one_error_line(capsys)


def test_slurm_script_never_overwrites_a_store(sweep_file, tmp_path, capsys, monkeypatch):
    store = tmp_path / "store" / "workbench.duckdb"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(b"results")
    monkeypatch.setenv("WORKBENCH_STORE", str(store))
    shared = tmp_path / "shared"
    for out in (store, store.with_name(store.name + ".spool") / "x.sbatch", shared / "workbench.duckdb"):
        assert engine_main(["sweep", str(sweep_file), "--emit", "slurm", "--shared-dir", str(shared),
                            "--out", str(out)]) == 2
        assert "would overwrite the store" in one_error_line(capsys)
    assert store.read_bytes() == b"results"


@pytest.mark.parametrize("flags, message", [
    (["--array-tasks", "0"], "--array-tasks must be between 1"),
    (["--max-concurrent", "0"], "--max-concurrent must be at least 1"),
    (["--cpus-per-task", "0"], "--cpus-per-task must be at least 1"),
])
def test_slurm_zero_counts_are_refused(sweep_file, tmp_path, capsys, flags, message):
    out = tmp_path / "t.sbatch"
    assert engine_main(["sweep", str(sweep_file), "--emit", "slurm", "--shared-dir", str(tmp_path / "shared"),
                        "--out", str(out), *flags]) == 2
    assert message in one_error_line(capsys) and not out.exists()


def test_slurm_shared_dir_that_is_a_file_writes_nothing(sweep_file, tmp_path, capsys):
    out = tmp_path / "t.sbatch"
    assert engine_main(["sweep", str(sweep_file), "--emit", "slurm", "--shared-dir", str(sweep_file),
                        "--out", str(out)]) == 2
    assert "is a file, not a folder" in one_error_line(capsys) and not out.exists()


def test_plan_runs_never_overwrites_its_law_or_the_store(tmp_path, capsys):
    from engine.paths import store_path

    law = tmp_path / "fit.json"
    law.write_text("{}")
    for out in (law, store_path()):
        assert engine_main(["plan-runs", "--law", str(law), "--dataset", str(tmp_path), "--out", str(out)]) == 2
        assert "would overwrite the" in one_error_line(capsys)
    assert law.read_text() == "{}" and not store_path().exists()


@pytest.mark.parametrize("name, text, message", [
    ("config.json", '{"n_params": 2e5, "train_pairs": 1e4', "not a readable W&B config.json"),
    ("config.json", "[1, 2]", "holds one JSON object, got list"),
    ("meta.yaml", "x: [\n", "not a readable MLflow meta.yaml"),
    ("meta.yaml", "- a\n", "holds one mapping, got list"),
])
def test_tracker_import_with_a_broken_run_file_is_one_line(tmp_path, capsys, name, text, message):
    run = tmp_path / "logs" / "0" / "run-1"
    if name == "config.json":  # a W&B export
        run.mkdir(parents=True)
        (run / "history.csv").write_text("_step,eval/ce\n0,4.5\n")
    else:  # an MLflow file store
        (run / "metrics").mkdir(parents=True)
        (run / "metrics" / "loss").write_text("1 4.5 0\n")
    (run / name).write_text(text)
    kind = "wandb" if name == "config.json" else "mlflow"
    argv = ["import-tracker", str(tmp_path / "logs"), "--kind", kind, "--loss", "eval/ce", "--n", "100",
            "--d", "100", "--dry-run"]
    assert store_main(argv) == 2
    assert message in one_error_line(capsys)


def test_an_output_write_that_fails_keeps_the_old_file(tmp_path):
    from engine.paths import write_output

    out = tmp_path / "plan.toml"
    out.write_text("old plan")
    with pytest.raises(TypeError):
        write_output(out, None)  # fails while writing, as a killed or full-disk write would
    assert out.read_text() == "old plan" and sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]
    write_output(out, "new plan")
    assert out.read_text() == "new plan" and sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]


@pytest.mark.parametrize("model_json, encoder_json", [
    ('{"pooling": "me', None), ("[]", "{}"), ("{}", '{"hidden_size": 32}'),
    ('{"pooling": "mean", "projection_dim": 0}', None),  # no encoder/config.json
])
def test_export_model_of_a_broken_model_folder_is_one_line(tmp_path, capsys, model_json, encoder_json):
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "bi_encoder.json").write_text(model_json)
    if encoder_json is not None:
        (model / "encoder").mkdir()
        (model / "encoder" / "config.json").write_text(encoder_json)
    assert engine_main(["export-model", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 2
    assert "not a complete trained model" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_export_model_with_a_run_id_too_long_for_a_path_is_one_line(tmp_path, capsys):
    assert engine_main(["export-model", "a" * 300, "--out", str(tmp_path / "out")]) == 2
    assert "too long" in one_error_line(capsys)


def test_a_folder_named_like_a_spool_file_does_not_stop_the_store(capsys):
    from engine.paths import spool_dir, store_path

    (spool_dir(store_path()) / "x.jsonl").mkdir(parents=True)  # e.g. an export written there
    assert store_main(["info"]) == 0
    assert json.loads(capsys.readouterr().out)["spool_files_waiting"] == 0


@pytest.mark.parametrize("settings, message", [
    ({"level": 1.0}, "--level"), ({"level": float("nan")}, "--level"), ({"noise": float("nan")}, "--noise"),
    ({"noise": -1.0}, "--noise"), ({"min_gain": -1.0}, "--min-gain"),
])
def test_plan_settings_out_of_range_are_refused(settings, message):
    from engine.errors import InputError
    from engine.plan_runs import PlanConfig

    with pytest.raises(InputError, match=message):
        PlanConfig(**settings)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -5.0, 0.0])
def test_plan_target_budget_must_be_a_positive_number(budget):
    from engine.budget import BudgetQuestion
    from engine.errors import InputError
    from engine.plan_runs import PlanTarget

    with pytest.raises(InputError, match="--budget must be a positive number"):
        PlanTarget(BudgetQuestion(budget))
    with pytest.raises(InputError, match="positive --target-n"):
        PlanTarget(n=budget, d=1000.0)


def test_a_run_another_sweep_is_training_is_not_started_twice(sweep_file):
    from engine.sweep import _run_lock, load_sweep, run_sweep
    from store.results_store import Store

    first = load_sweep(sweep_file).runs[0]
    held = _run_lock(first.run_id)  # as the other sweep process holds it while its run trains
    assert held is not None and _run_lock(first.run_id) is None
    lines = []
    try:
        assert run_sweep([first], Store(), log=lines.append) == {"completed": 0, "failed": 0, "busy": 1}
    finally:
        os.close(held)
    assert "another sweep is training it now" in lines[-1]
    again = _run_lock(first.run_id)  # released with its holder
    assert again is not None
    os.close(again)


def test_a_huge_plan_budget_is_written_in_powers_of_ten():
    from engine.budget import BudgetQuestion
    from engine.plan_runs import PlanTarget

    assert PlanTarget(BudgetQuestion(1e300)).describe() == "N* at a budget of $1e+300"
    assert PlanTarget(BudgetQuestion(10_000)).describe() == "N* at a budget of $10,000"


def test_a_folder_given_as_the_sweep_file_is_named_as_one(tmp_path, capsys):
    assert engine_main(["sweep", str(tmp_path), "--dry-run"]) == 2
    assert "a folder, not a sweep file" in one_error_line(capsys)


def fake_model_folder(tmp_path):
    """A run's model folder complete enough for export-model to read (no weights)."""
    model = tmp_path / "run" / "model"
    (model / "encoder").mkdir(parents=True)
    (model / "bi_encoder.json").write_text('{"pooling": "mean", "projection_dim": 0}')
    (model / "encoder" / "config.json").write_text('{"hidden_size": 32}')
    return model


def test_export_model_never_writes_into_the_store_or_the_model(tmp_path, capsys):
    from engine.paths import store_files, store_path

    model = fake_model_folder(tmp_path)
    spool = store_files(store_path())["the store's spool folder"]
    for out, what in ((spool / "exp", "the store's spool folder"), (store_path(), "the store"),
                      (model / "exp", "the run's model folder")):
        assert engine_main(["export-model", str(model), "--out", str(out)]) == 2
        assert what in one_error_line(capsys) and not out.exists()


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_tracker_import_that_skips_every_run_is_one_line(tmp_path, capsys, dry_run):
    from store.results_store import Store

    for name in ("run-1", "run-2"):  # a W&B export of two runs
        run = tmp_path / "logs" / name
        run.mkdir(parents=True)
        (run / "history.csv").write_text("_step,eval/ce\n0,4.5\n")
        (run / "config.json").write_text('{"train_pairs": 1e4}')
    argv = ["import-tracker", str(tmp_path / "logs"), "--kind", "wandb", "--loss", "eval/ce", "--n", "0",
            "--d", "train_pairs", *dry_run]
    assert store_main(argv) == 2
    line = one_error_line(capsys)
    assert "none of its 2 run(s) can be imported" in line and "1 more" in line and "--n" in line
    assert len(Store().runs()) == 0
