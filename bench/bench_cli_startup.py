"""Benchmark: start-up of `python -m engine budget` and `python -m engine laws presets`
against importing what they need, `python -c "import numpy, scipy.optimize, pandas"`
(target: within 1.5x, issue 13). The three commands run interleaved, so a busy
machine slows each alike; median wall time and peak RSS of each.

    .venv/bin/python bench/bench_cli_startup.py --repeats 7
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    'python -c "import numpy, scipy.optimize, pandas"': [sys.executable, "-c", "import numpy, scipy.optimize, pandas"],
    "python -m engine budget --budget 20000": [sys.executable, "-m", "engine", "budget", "--budget", "20000"],
    "python -m engine laws presets": [sys.executable, "-m", "engine", "laws", "presets"],
}
FLAGS_SHOWN = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    shown = [f for f in FLAGS_SHOWN if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(shown) or 'none of ' + ' '.join(FLAGS_SHOWN)}"


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one run of `argv`."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {cpu_description()}; python {platform.python_version()}; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    samples = {name: [] for name in COMMANDS}
    for name, argv in COMMANDS.items():
        run_once(argv)  # warm the file cache
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            samples[name].append(run_once(argv))
    base = statistics.median(s for s, _ in next(iter(samples.values())))  # the imports come first
    print(f"median of {args.repeats} interleaved runs; load average at end {os.getloadavg()[0]:.2f}\n")
    print("| command | median wall | ratio to the imports | peak RSS |")
    print("|---|---|---|---|")
    for name, runs in samples.items():
        wall = statistics.median(s for s, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"| `{name}` | {wall:.2f} s | "
              f"{wall / base:.2f}x | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
