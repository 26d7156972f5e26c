"""The compiled training path: when it is chosen, and fixed batch shapes under it."""
from dataclasses import replace

import pytest

from engine.batches import TrainingBatches
from engine.errors import InputError
from engine.evaluate import EvalConfig
from engine.train import COMPILE_MIN_STEPS, TrainConfig, prepare, resolve_config
from tests.helpers import write_synthetic


def config(dataset, **changes) -> TrainConfig:
    base = TrainConfig(dataset=str(dataset), model="scratch-L1-H32", tokenizer_vocab_size=400, steps=20,
                       batch_size=8, negatives=8, max_query_length=16, max_passage_length=32,
                       eval=EvalConfig(repeats=1))
    return replace(base, **changes)


def test_auto_compiles_long_runs_only(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.train.shutil.which", lambda name: "/usr/bin/g++")
    assert resolve_config(config(tmp_path, steps=10_000)).compile == "no"                 # off unless asked
    assert resolve_config(config(tmp_path, steps=COMPILE_MIN_STEPS - 1, compile="auto")).compile == "no"
    assert resolve_config(config(tmp_path, steps=COMPILE_MIN_STEPS, compile="auto")).compile == "yes"
    assert resolve_config(config(tmp_path, steps=10, compile="yes")).compile == "yes"
    assert resolve_config(config(tmp_path, steps=10_000, compile="no")).compile == "no"


def test_auto_does_not_compile_without_a_cpu_compiler(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.train.shutil.which", lambda name: None)
    monkeypatch.setattr("engine.train.torch.cuda.is_available", lambda: False)
    assert resolve_config(config(tmp_path, steps=10_000, compile="auto")).compile == "no"


def test_unknown_compile_choice_is_refused(tmp_path):
    with pytest.raises(InputError, match="compile must be one of"):
        resolve_config(config(tmp_path, compile="maybe"))


def test_compiled_runs_get_fixed_batch_shapes(tmp_path):
    dataset = write_synthetic(tmp_path / "syn")
    prepared = prepare(resolve_config(config(dataset, compile="no")))
    for compile, fixed in (("no", False), ("yes", True)):
        cfg = resolve_config(config(dataset, compile=compile))
        batches = TrainingBatches(prepared, cfg, 0, 1)
        shapes = {(b["query_input_ids"].shape[1], b["passage_input_ids"].shape[1]) for b in map(batches, range(6))}
        if fixed:
            assert shapes == {(16, 32)}
        else:
            assert all(q <= 16 and p <= 32 for q, p in shapes) and shapes != {(16, 32)}
