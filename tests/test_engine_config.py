"""The run configuration in two parts: what a run measures (hashed into sweep run ids)
and how it is run (not hashed); configs stored before the split still load."""
import json
import subprocess
import sys
from dataclasses import asdict, replace

import pytest

from engine.config import (
    MEASUREMENT_FIELDS,
    RUN_OPTION_FIELDS,
    EvalConfig,
    Measurement,
    RunOptions,
    TrainConfig,
)
from engine.paths import PROJECT_ROOT
from engine.sweep import load_sweep, run_sweep
from store import Store

# a config as engine/train.py stored it before the split (asdict of the old flat TrainConfig)
STORED_BEFORE_SPLIT = json.loads(
    '{"dataset": "/data/syn", "model": "scratch-L1-H32", "init": "scratch", "tokenizer": null, '
    '"tokenizer_vocab_size": 8192, "scratch_embedding_std": 1.0, "pooling": "mean", "train_data": null, '
    '"annotation": "human", "train_pairs": null, "data_seed": 0, "lenient_qrels": false, "steps": 40, '
    '"batch_size": 128, "negatives": 256, "in_batch_negatives": true, "lr": 0.003, "warmup_steps": 0, '
    '"weight_decay": 0.001, "max_grad_norm": 1.0, "max_query_length": 32, "max_passage_length": 180, "seed": 0, '
    '"eval_every": 1000, "eval_at_start": false, "eval": {"negatives": 256, "repeats": 10, '
    '"subcorpus_size": 100000, "max_test_pairs": null, "ranking": "final", "batch_size": 64, "seed": 0}, '
    '"precision": "no", "dropout_masks": "fast", "grad_accum": 1, "gradient_checkpointing": false, '
    '"compile": "no", "checkpoint_every": 10, "keep_checkpoints": 1, "cpu": false, "run_id": "old-run", '
    '"label": null}')

SWEEP = """name = "legacy"
[grid]
models = ["scratch-L1-H32"]
train_pairs = [100]
[train]
dataset = "/data/syn"
steps = 40
{extra}
[train.eval]
repeats = 2
"""
# the id the sweep above got before the split (computed with the code of commit c5baa96)
LEGACY_ID = "legacy-scratch-L1-H32-D100-human-s0-643417e0"


def sweep_runs(tmp_path, extra="checkpoint_every = 10"):
    path = tmp_path / f"sweep-{abs(hash(extra))}.toml"
    path.write_text(SWEEP.format(extra=extra))
    return load_sweep(path).runs


@pytest.mark.slow
def test_config_module_does_not_import_torch():
    code = "import sys, engine.config; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_parts_cover_the_config_once():
    assert not set(MEASUREMENT_FIELDS) & set(RUN_OPTION_FIELDS)
    config = TrainConfig(dataset="d", steps=7, checkpoint_every=3, eval=EvalConfig(repeats=2))
    assert config.measurement == Measurement(dataset="d", steps=7, eval=EvalConfig(repeats=2))
    assert config.run_options == RunOptions(checkpoint_every=3)


@pytest.mark.parametrize("run_option", ["checkpoint_every = 500", "keep_checkpoints = 3", "eval_batch_size = 16",
                                        "label = 'x'", "compile = 'yes'", "cpu = true", "gradient_checkpointing = true"])
def test_run_options_leave_the_run_id(tmp_path, run_option):
    assert [r.run_id for r in sweep_runs(tmp_path, run_option)] == [r.run_id for r in sweep_runs(tmp_path)]


@pytest.mark.parametrize("setting", ["lr = 0.02", "negatives = 64", "precision = 'bf16'", "max_passage_length = 64",
                                     "dropout_masks = 'torch'", "grad_accum = 2"])
def test_measurement_settings_change_the_run_id(tmp_path, setting):
    assert sweep_runs(tmp_path, setting)[0].run_id != sweep_runs(tmp_path)[0].run_id


def test_finished_runs_are_not_rerun_for_a_new_checkpoint_interval(tmp_path, monkeypatch):
    store = Store(tmp_path / "results.duckdb")
    first = sweep_runs(tmp_path)[0]
    store.start_run(config=asdict(first.config), model_name="scratch-L1-H32", n_params=1, n_params_strict=1,
                    train_pairs=100, annotation="human", dataset="syn", seed=0, device="cpu", code_version="t",
                    run_id=first.run_id, source="engine")
    store.finish_run(first.run_id, status="completed", best_contrastive_entropy=1.0)
    monkeypatch.setattr("engine.sweep.train_command", lambda *a, **k: pytest.fail("a finished run was started"))
    lines = []
    outcome = run_sweep(sweep_runs(tmp_path, "checkpoint_every = 250"), store, log=lines.append)
    assert outcome == {"completed": 1, "failed": 0} and "0 to run" in lines[0]


def test_runs_completed_under_a_legacy_id_are_not_rerun(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.sweep.hashed_lr", lambda model: None)  # the rung's default as it was then
    run = sweep_runs(tmp_path)[0]
    assert run.legacy_run_id == LEGACY_ID and run.run_id != LEGACY_ID
    store = Store(tmp_path / "results.duckdb")
    store.start_run(config=STORED_BEFORE_SPLIT, model_name="scratch-L1-H32", n_params=1, n_params_strict=1,
                    train_pairs=100, annotation="human", dataset="syn", seed=0, device="cpu", code_version="t",
                    run_id=LEGACY_ID, source="engine")
    store.finish_run(LEGACY_ID, status="completed", best_contrastive_entropy=1.0)
    monkeypatch.setattr("engine.sweep.train_command", lambda *a, **k: pytest.fail("a finished run was started"))
    assert run_sweep([run], store, log=lambda line: None) == {"completed": 1, "failed": 0}


def test_configs_stored_before_the_split_load(tmp_path):
    store = Store(tmp_path / "results.duckdb")
    store.start_run(config=STORED_BEFORE_SPLIT, model_name="scratch-L1-H32", n_params=1, n_params_strict=1,
                    train_pairs=100, annotation="human", dataset="syn", seed=0, device="cpu", code_version="t",
                    run_id="old-run", source="engine")
    config = TrainConfig.from_dict(store.run("old-run")["config"])
    assert config.eval_batch_size == 64 and config.eval == EvalConfig()  # eval.batch_size was a run option
    assert config.checkpoint_every == 10 and config.steps == 40 and config.lr == 0.003 and config.run_id == "old-run"
    assert TrainConfig.from_dict(asdict(config)) == config  # and the new layout round-trips


def test_measurement_differences_name_the_fields():
    base = TrainConfig(dataset="d")
    other = replace(base, steps=5, lr=0.1, checkpoint_every=3, eval=EvalConfig(repeats=1))
    assert base.measurement_differences(other) == ["steps", "lr", "eval.repeats"]
    assert base.measurement_digest() == replace(base, label="x", keep_checkpoints=9).measurement_digest()
