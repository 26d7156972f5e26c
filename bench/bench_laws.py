"""Benchmark: a joint-law fit with 1,000 bootstrap refits on 50 points, today's batched
fitter (engine/laws.py) against the one it replaced (bench/laws_before.py), side by
side in one run and interleaved, so a busy machine slows both alike (target: >= 3x);
the intervals of both on the same seed; one budget optimisation with its band
(target <= 50 ms) and the decision uncertainty over 1,000 bootstrap laws.

    .venv/bin/python bench/bench_laws.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.laws_before as before  # noqa: E402
from engine.budget import BudgetQuestion, decision_uncertainty, optimise  # noqa: E402
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


def machine() -> str:
    """CPU model, the vector flags that matter to numpy, cores and the load at the start."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vector = [f for f in flags if f.startswith(("avx", "fma", "sse4"))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, flags {' '.join(vector) or '?'}, load average {load:.2f}, "
            f"python {platform.python_version()}, numpy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each fitter (best kept)")
    args = parser.parse_args()
    print(machine())
    points = fifty_joint_points()
    old_times, new_times = [], []
    for _ in range(args.repeats):        # interleaved: old, new, old, new, ...
        old_s, old = best_of(1, lambda: before.fit_law(points, "joint", before.FitConfig(bootstrap=1000)))
        new_s, fit = best_of(1, lambda: fit_law(points, "joint", FitConfig(bootstrap=1000)))
        old_times.append(old_s)
        new_times.append(new_s)
    print(f"joint fit + 1,000 bootstrap refits, 50 points: before {min(old_times):.3f} s, "
          f"now {min(new_times):.3f} s, {min(old_times) / min(new_times):.1f}x faster (target >= 3x); "
          f"per run before {', '.join(f'{t:.2f}' for t in old_times)} s, now "
          f"{', '.join(f'{t:.3f}' for t in new_times)} s")
    for name in fit.intervals:
        print(f"  {name:>5} 95% interval before [{old.intervals[name][0]:.6g}, {old.intervals[name][1]:.6g}], "
              f"now [{fit.intervals[name][0]:.6g}, {fit.intervals[name][1]:.6g}]")
    law = preset("paper-joint")
    plan_s, _ = best_of(20, lambda: optimise(law, BudgetQuestion(2e4)))
    plan_fit_s, _ = best_of(5, lambda: optimise(fit, BudgetQuestion(1e6, True)))
    decide_s, _ = best_of(5, lambda: decision_uncertainty(fit, BudgetQuestion(1e6, True)))
    print(f"budget optimisation + band, preset law: {1000 * plan_s:.1f} ms (target <= 50 ms)")
    print(f"budget optimisation + band + loss interval, fitted law: {1000 * plan_fit_s:.1f} ms")
    print(f"decision uncertainty (N*, D* intervals, robust N, regret) over {len(fit.bootstrap_params)} "
          f"bootstrap laws: {1000 * decide_s:.1f} ms")


if __name__ == "__main__":
    main()
