"""Peak memory of one training step with the paper's batch on a BERT-base-sized
model: 128 queries + 256 shared negatives, passages of 180 tokens, gradient
checkpointing on (target: fits in 24 GB). Weights are random (from the config):
memory does not depend on their values.

    .venv/bin/python bench/bench_memory.py [--no-gradient-checkpointing]
"""
from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_train import engine_steps  # noqa: E402
from engine.evaluate import EvalConfig  # noqa: E402
from engine.paths import SHARED_DATA, SHARED_VOCAB  # noqa: E402
from engine.train import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    cfg = TrainConfig(dataset=str(SHARED_DATA / "squad-dev"), model="google/bert_uncased_L-12_H-768_A-12",
                      init="scratch", tokenizer=str(SHARED_VOCAB / "bert-base-uncased-vocab.txt"),
                      batch_size=128, negatives=256, max_query_length=32, max_passage_length=180, lr=5e-6,
                      gradient_checkpointing=not args.no_gradient_checkpointing,
                      eval=EvalConfig(max_test_pairs=16, repeats=1))
    times, prepared, _, sample = engine_steps(cfg, steps=1, warm_up=0)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # ru_maxrss is in KiB on Linux
    print(f"BERT-base (N = {prepared.n_params:,}), batch 128 + 256 negatives, passages padded to "
          f"{sample['passage_input_ids'].shape[1]} tokens, gradient checkpointing "
          f"{'off' if args.no_gradient_checkpointing else 'on'}: one step {times[0]:.0f} s, "
          f"peak RSS {peak_gib:.2f} GiB (target: fits in 24 GB)")


if __name__ == "__main__":
    main()
