"""Benchmark: a joint-law fit with 1,000 bootstrap refits on 50 points (target <= 5 s)
and one budget optimisation with its near-optimal band (target <= 50 ms).

    .venv/bin/python bench/bench_laws.py
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.budget import BudgetQuestion, optimise  # noqa: E402
from engine.laws import FitConfig, fit_law, preset  # noqa: E402


def fifty_joint_points(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(5e5, 9e7, 10), np.geomspace(1e3, 5e5, 5))  # 10 sizes x 5 data sizes
    n, d = n.ravel(), d.ravel()
    loss = preset("paper-joint").predict(n, d) * np.exp(rng.normal(0, 0.01, n.size))
    return pd.DataFrame({"n": n, "d": d, "loss": loss})


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    points = fifty_joint_points()
    fit_s, fit = best_of(3, lambda: fit_law(points, "joint", FitConfig(bootstrap=1000)))
    law = preset("paper-joint")
    plan_s, _ = best_of(20, lambda: optimise(law, BudgetQuestion(2e4)))
    plan_fit_s, _ = best_of(5, lambda: optimise(fit, BudgetQuestion(1e6, True)))
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"joint fit + {len(fit.bootstrap_params)} bootstrap refits, 50 points: {fit_s:.2f} s (target <= 5 s)")
    print(f"budget optimisation + band, preset law: {1000 * plan_s:.1f} ms (target <= 50 ms)")
    print(f"budget optimisation + band + loss interval, fitted law: {1000 * plan_fit_s:.1f} ms")


if __name__ == "__main__":
    main()
