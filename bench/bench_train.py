"""Train-step throughput: the engine against the baseline loop (bench/baseline_loop.py)
on the same model shape, batch, negatives and data (squad-dev), plus MFU against
this machine's measured matmul peak.

    .venv/bin/python bench/bench_train.py [--steps 8] [--models L2-H128 L4-H512]

Targets (issue 5, 2-core CPU): >= 2x the baseline for L2/H128, >= 1.3x for L4/H512,
MFU >= 50% for an L4/H512-class model.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve_config().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from baseline_loop import SHARED, time_baseline  # noqa: E402
from engine.evaluate import EvalConfig  # noqa: E402
from engine.flops import measure_matmul_peak, train_step_flops  # noqa: E402
from engine.batches import TrainingBatches  # noqa: E402
from engine.train import TrainConfig, _optimizer, _optimizer_step, prepare, resolve_config  # noqa: E402

SHAPES = {"L2-H128": (2, 128), "L4-H256": (4, 256), "L4-H512": (4, 512)}
BATCH, NEGATIVES, Q_LEN, P_LEN = 32, 64, 32, 128


def engine_config(layers: int, hidden: int, **changes) -> TrainConfig:
    return TrainConfig(
        dataset=str(SHARED / "data" / "squad-dev"), model=f"google/bert_uncased_L-{layers}_H-{hidden}_A-{max(hidden // 64, 1)}",
        init="scratch", tokenizer=str(SHARED / "vocab" / "bert-base-uncased-vocab.txt"), batch_size=BATCH,
        negatives=NEGATIVES, max_query_length=Q_LEN, max_passage_length=P_LEN, steps=1000, lr=1e-4,
        eval=EvalConfig(max_test_pairs=64, repeats=1), **changes,
    )


def engine_steps(cfg: TrainConfig, steps: int, warm_up: int = 2):
    """Time the engine's own step (engine.train._optimizer_step) on its own batches:
    (seconds of each step, warm-up included; the prepared run; the trained model; a batch)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cfg = resolve_config(cfg)
    AcceleratorState._reset_state(reset_partial_state=True)  # each variant its own precision, in one process
    accelerator = Accelerator(cpu=True, mixed_precision=cfg.precision)
    prepared = prepare(cfg)
    optimizer, scheduler = _optimizer(prepared.model, cfg)
    model, optimizer = accelerator.prepare(prepared.model, optimizer)
    if cfg.compile == "yes":
        model.compile()
    batches = TrainingBatches(prepared, cfg, 0, 1)
    model.train()
    times = []
    for step in range(steps + warm_up):
        start = time.perf_counter()
        _optimizer_step(cfg, accelerator, model, optimizer, scheduler, batches, step)
        times.append(time.perf_counter() - start)
    return times, prepared, model, batches(0)


# engine variants: its defaults on this machine, then each speed-up taken away
VARIANTS = {
    "defaults": {},
    "fp32, fast masks": {"precision": "no"},
    "fp32, torch masks": {"precision": "no", "dropout_masks": "torch"},
    "defaults + compile": {"compile": "yes"},
}


def time_engine(layers: int, hidden: int, steps: int, changes: dict) -> dict:
    cfg = resolve_config(engine_config(layers, hidden, **changes))
    times, prepared, _, sample = engine_steps(cfg, steps)
    return {"seconds_per_step": statistics.median(times[2:]), "first_step_s": times[0], "n_params": prepared.n_params,
            "precision": cfg.precision, "dropout_masks": cfg.dropout_masks,
            "q_padded": sample["query_input_ids"].shape[1], "p_padded": sample["passage_input_ids"].shape[1]}


def time_engine_n_params(layers: int, hidden: int) -> int:
    from engine.ladder import ladder_model

    return ladder_model(engine_config(layers, hidden).model).describe()["n_params"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["L2-H128", "L4-H512"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    peaks = {"no": measure_matmul_peak(), "bf16": measure_matmul_peak(dtype="bfloat16")}
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; measured "
          f"matmul peak fp32 {peaks['no'] / 1e9:.0f}, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print(f"batch {BATCH} queries + {NEGATIVES} shared negatives, max lengths {Q_LEN}/{P_LEN}, squad-dev")
    for name in args.models:
        layers, hidden = SHAPES[name]
        base = time_baseline(layers, hidden, BATCH, NEGATIVES, Q_LEN, P_LEN, args.steps)
        # useful work: the baseline's tokens (padded to the longest in its batch), whatever the engine pads
        flops = train_step_flops(time_engine_n_params(layers, hidden), layers, hidden,
                                 [(BATCH, base["q_padded"]), (BATCH + NEGATIVES, base["p_padded"])])
        print(f"{name}: baseline {base['seconds_per_step']:.3f} s/step, "
              f"MFU {100 * flops / base['seconds_per_step'] / peaks['no']:.0f}% of the fp32 peak")
        for variant in args.variants:
            engine = time_engine(layers, hidden, args.steps, VARIANTS[variant])
            speedup = base["seconds_per_step"] / engine["seconds_per_step"]
            peak = peaks.get(engine["precision"], peaks["no"])
            print(f"  engine {variant} (precision {engine['precision']}, {engine['dropout_masks']} masks): "
                  f"{engine['seconds_per_step']:.3f} s/step (first step {engine['first_step_s']:.1f} s) -> "
                  f"{speedup:.2f}x baseline; MFU {100 * flops / engine['seconds_per_step'] / peak:.0f}% of the "
                  f"{'bf16' if engine['precision'] == 'bf16' else 'fp32'} peak ({flops / 1e9:.1f} GFLOP/step)", flush=True)


if __name__ == "__main__":
    main()
