"""What many test files build: the tiny training run the engine's mechanics are tested on."""
from dataclasses import replace

from engine.config import EvalConfig, TrainConfig


def tiny_config(dataset, **changes) -> TrainConfig:
    """scratch-L1-H32 on a synthetic set (tests/test_data.py write_synthetic): 40 steps at a
    high rate with dot-product scores, so a run visibly learns from a poor start in seconds
    (the ladder's default cosine scores start near their best on word-overlap queries)."""
    config = TrainConfig(
        dataset=str(dataset), model="scratch-L1-H32", tokenizer_vocab_size=400, steps=40, batch_size=16,
        negatives=16, lr=3e-3, similarity="dot", max_query_length=16, max_passage_length=32, eval_every=20,
        checkpoint_every=0, eval=EvalConfig(repeats=2, ranking="final"),
    )
    return replace(config, **changes)
