"""FLOP accounting and model FLOPs utilisation (MFU), as nanoGPT reports it.

Training FLOPs per step = 6 * N * tokens (forward + backward through the
non-embedding weights) + the attention score and mix matmuls, 12 * layers * seq^2 *
hidden per sequence (2 matmuls of 2*seq^2*hidden FLOPs forward, times 3 for
backward). MFU = achieved FLOP/s over the device's peak; on a CPU the peak is
measured (`measure_matmul_peak`), not taken from a data sheet.
"""
from __future__ import annotations

import functools
import time


def attention_flops(layers: int, hidden: int, seq_len: int, sequences: int, backward: bool = True) -> float:
    """Q K^T and attention x V: 2 matmuls of 2 * seq^2 * hidden FLOPs per layer."""
    forward = 4.0 * layers * hidden * seq_len ** 2 * sequences
    return forward * (3 if backward else 1)


def train_step_flops(n_params: float, layers: int, hidden: int, seq_lens: list[tuple[int, int]]) -> float:
    """FLOPs of one training step. `seq_lens`: (sequences, padded length) per
    encoder call in the step, e.g. [(batch, q_len), (batch + k, p_len)]."""
    tokens = sum(count * length for count, length in seq_lens)
    return 6.0 * n_params * tokens + sum(attention_flops(layers, hidden, length, count)
                                         for count, length in seq_lens)


def matmul_dtype(precision: str) -> str:
    """The dtype a run's matmuls use under a resolved `TrainConfig.precision`."""
    return {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")


def measure_matmul_peak(size: int = 2048, repeats: int = 10, dtype: str = "float32", device: str = "cpu") -> float:
    """Best FLOP/s of a square matmul on `device` at the current thread setting."""
    import torch

    # a generator of its own: a run that measures its peak mid-training must not move the
    # global random stream that its batches, dropout or evaluation may draw from
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, dtype=getattr(torch, dtype), device=device, generator=generator)
    b = torch.randn(size, size, dtype=getattr(torch, dtype), device=device, generator=generator)
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    torch.mm(a, b)                                             # warm-up: thread pool, caches, kernels
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()                                                 # a CUDA matmul returns before it is done
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best


@functools.cache
def device_peak(device: str, precision: str) -> float:
    """The matmul peak a run's MFU is measured against: measured once per process, at
    the dtype the run's matmuls use (a CPU at 1024^2, where a training step's matmuls
    are no larger; a GPU at 8192^2, large enough to fill it)."""
    size = 8192 if device.startswith("cuda") else 1024
    return measure_matmul_peak(size=size, repeats=5, dtype=matmul_dtype(precision), device=device)


def mfu(step_flops: float, step_seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak."""
    return step_flops / step_seconds / peak_flops
