"""Issue 14: one evaluation precision on every path (item 3), training batches that
never read test labels and draw exactly k negatives across processes (item 6)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine import protocol
from engine.evaluate import EvalConfig, evaluate_checkpoint
from engine.paths import runs_dir
from engine.train import TrainConfig, train
from test_data import write_synthetic


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(dataset, **changes) -> TrainConfig:
    config = TrainConfig(
        dataset=str(dataset), model="scratch-L1-H32", tokenizer_vocab_size=400, steps=12, batch_size=16,
        negatives=16, lr=3e-3, max_query_length=16, max_passage_length=32, eval_every=12, checkpoint_every=0,
        eval=EvalConfig(repeats=2, ranking="never", negatives=32),
    )
    return replace(config, **changes)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU computes no bf16")
def test_a_bf16_run_evaluates_as_engine_evaluate_does(tmp_path):
    """A bf16 run's training-time evaluation and `engine evaluate` of its saved weights
    agree to 1e-4: both score in fp32 (Eq. 5), and the fingerprint says fp32."""
    dataset = write_synthetic(tmp_path / "syn")
    cfg = tiny_config(dataset, run_id="bf16", precision="bf16", cpu=True)
    result = train(cfg)
    metrics, _ = evaluate_checkpoint(str(runs_dir() / "bf16" / "model"), str(dataset), cfg.eval,
                                     max_query_length=cfg.max_query_length,
                                     max_passage_length=cfg.max_passage_length, pooling=cfg.pooling)
    for name in ("contrastive_entropy", "calibrated_entropy"):
        assert result.final_metrics[name] == pytest.approx(metrics[name], abs=1e-4)
    fingerprint = protocol.evaluation_fingerprint(cfg, split="test", pairs=[("q", "p")])
    assert fingerprint["precision"] == "fp32"


def test_fingerprints_recorded_with_bf16_evaluation_still_load():
    old = {"negatives": 256, "repeats": 5, "pool": 100000, "pool_seed": 0, "test_pairs": 10, "max_query_length": 32,
           "max_passage_length": 180, "precision": "bf16", "test_split": "test:abc", "metric": "raw"}
    assert protocol.check_fingerprint(old) == old
    assert protocol.differing_fields([old, {**old, "precision": "fp32"}]) == ["precision"]  # a protocol of its own
