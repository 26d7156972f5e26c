"""Step time and MFU for every scratch rung of the ladder, and seconds per
evaluation (contrastive entropy with 10 repeats + ranking metrics on the whole
corpus) for three sizes, on squad-dev with the demo study's settings.

    .venv/bin/python bench/bench_ladder.py [--steps 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve_config().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from bench_train import engine_steps  # noqa: E402

from engine.evaluate import EvalConfig, evaluate  # noqa: E402
from engine.flops import matmul_dtype, measure_matmul_peak, train_step_flops  # noqa: E402
from engine.ladder import LADDER  # noqa: E402
from engine.paths import SHARED_DATA  # noqa: E402
from engine.train import TrainConfig, resolve_config  # noqa: E402

STUDY = TrainConfig(dataset=str(SHARED_DATA / "squad-dev"), steps=300, batch_size=32, negatives=64,
                    max_query_length=32, max_passage_length=96, eval=EvalConfig(repeats=10))
EVAL_SIZES = ("scratch-L1-H32", "scratch-L2-H128", "scratch-L2-H256")


def measure(name: str, steps: int, peak: float, with_eval: bool) -> str:
    times, prepared, model, sample = engine_steps(replace(STUDY, model=name), steps, warm_up=1)
    seconds = statistics.median(times[1:])
    rung = LADDER[name]
    flops = train_step_flops(prepared.n_params, rung.layers, rung.hidden,
                             [tuple(sample["query_input_ids"].shape), tuple(sample["passage_input_ids"].shape)])
    line = f"| {name} | {prepared.n_params:,} | {seconds:.3f} | {100 * flops / seconds / peak:.0f}% | {300 * seconds / 60:.1f} |"
    if with_eval:
        start = time.perf_counter()
        evaluate(model, prepared.eval_set, batch_size=128, ranking=True)  # as a run evaluates: fp32
        line += f" {time.perf_counter() - start:.1f} |"
    return line + ("" if with_eval else " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    precision = resolve_config(STUDY).precision  # the engine's default on this machine
    dtype = matmul_dtype(precision)
    peak = measure_matmul_peak(dtype=dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {precision}, "
          f"{resolve_config(STUDY).dropout_masks} dropout masks; measured {dtype} matmul peak {peak / 1e9:.0f} GFLOP/s")
    print("batch 32 + 64 negatives, max lengths 32/96, squad-dev\n")
    print("| rung | N | s/step | MFU | min per 300 steps | s per evaluation |")
    print("|---|---|---|---|---|---|")
    for name, rung in LADDER.items():
        if rung.scratch:
            print(measure(name, args.steps, peak, name in EVAL_SIZES), flush=True)


if __name__ == "__main__":
    main()
