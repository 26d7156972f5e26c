"""Training recipes for the from-scratch ladder, side by side (issue 22 item 1).

Each variant trains the chosen rungs on squad-dev at the largest D with the demo
study's settings and a held-out pool of evaluation negatives, then the table gives,
per rung and variant, the untrained model (step 0) and the best calibrated entropy
after step 0 with its MRR@10, and the last evaluation's:

    .venv/bin/python bench/bench_recipe.py --variants baseline warmup --rungs scratch-L1-H32 \\
        --steps 1500 --parallel 2 --out study/recipe

Runs already in the store are not trained again (an `engine train` run id resumes or
is complete), so the table can grow variant by variant. One torch thread per run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATASET = ROOT.parent / "shared" / "data" / "squad-dev"
BASE = {  # the demo study's settings, negatives held out of training (issue 27)
    "batch-size": 32, "negatives": 64, "negatives-from": "training", "max-query-length": 32,
    "max-passage-length": 96, "eval-repeats": 3, "eval-ranking": "every", "eval-held-out-negatives": 300,
    "eval-every": 25, "evals-per-doubling": 2, "checkpoint-every": 0,
}
# issue 15's dot-product rates (the previous ladder defaults); "lr-scale" multiplies them
DOT_LR = {"scratch-L1-H32": 1e-2, "scratch-L1-H64": 3e-3, "scratch-L2-H64": 3e-3, "scratch-L1-H128": 3e-3,
          "scratch-L2-H128": 3e-3, "scratch-L2-H256": 1e-3}
DOT = {"similarity": "dot", "lr-scale": 1.0}
VARIANTS = {
    "baseline": DOT,  # issue 15's recipe: dot products at the tuned rate, no warm-up, linear decay over the run
    "warmup": {**DOT, "warmup-steps": 100},
    "wsd": {**DOT, "warmup-steps": 100, "lr-schedule": "wsd"},
    "wsd-emb0.1": {**DOT, "warmup-steps": 100, "lr-schedule": "wsd", "embedding-lr-scale": 0.1},
    "wsd-lr/3": {**DOT, "warmup-steps": 100, "lr-schedule": "wsd", "lr-scale": 1 / 3},
    "wsd-cosine": {**DOT, "warmup-steps": 100, "lr-schedule": "wsd", "similarity": "cosine"},
    "cosine-lr/10": {**DOT, "similarity": "cosine", "lr-scale": 0.1},
    "cosine-lr/30": {**DOT, "similarity": "cosine", "lr-scale": 1 / 30},
    "cosine-1e-3": {"similarity": "cosine", "lr": 1e-3},
    "cosine-3e-4": {"similarity": "cosine", "lr": 3e-4},  # the ladder's default since issue 22
    "cosine-1e-4": {"similarity": "cosine", "lr": 1e-4},
}


def run_id(variant: str, rung: str, steps: int) -> str:
    return f"recipe-{variant.replace('/', 'div')}-{rung}-{steps}"


def train_command(variant: str, rung: str, steps: int, store: Path) -> list[str]:
    flags = {**BASE, **VARIANTS[variant], "steps": steps}
    scale = flags.pop("lr-scale", None)
    if scale is not None:
        flags["lr"] = DOT_LR[rung] * scale
    argv = [sys.executable, "-m", "engine", "train", "--dataset", str(DATASET), "--model", rung,
            "--run-id", run_id(variant, rung, steps), "--store", str(store), "--json"]
    for name, value in flags.items():
        argv += [f"--{name}", str(value)]
    return argv


def train_one(variant: str, rung: str, steps: int, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WORKBENCH_RUNS": str(out / "runs")}
    log = out / "logs" / f"{run_id(variant, rung, steps)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        done = subprocess.run(train_command(variant, rung, steps, out / "workbench.duckdb"), cwd=ROOT, env=env,
                              stdout=handle, stderr=subprocess.STDOUT)
    print(f"{run_id(variant, rung, steps)}: exit {done.returncode}", flush=True)


def table(out: Path, variants: list[str], rungs: list[str], steps: int) -> str:
    from store import Store

    store = Store(out / "workbench.duckdb")
    points = store.points()
    lines = ["| rung | variant | step 0: calibrated / MRR@10 | best after step 0: calibrated (step) / MRR@10 | "
             "last: calibrated / MRR@10 | raw, best | eval share |", "|---|---|---|---|---|---|---|"]
    for rung in rungs:
        for variant in variants:
            rows = points[points["run_id"] == run_id(variant, rung, steps)].sort_values("step")
            if rows.empty:
                continue
            start, trained, last = rows.iloc[0], rows[rows["step"] > 0], rows.iloc[-1]
            best = trained.loc[trained["calibrated_entropy"].idxmin()] if len(trained) else start
            run = store.run(run_id(variant, rung, steps)) or {}
            share = rows["eval_seconds"].sum() / run["wall_time_s"] if run.get("wall_time_s") else float("nan")
            lines.append(
                f"| {rung} | {variant} | {start['calibrated_entropy']:.3f} / {start['mrr@10']:.3f} | "
                f"{best['calibrated_entropy']:.3f} ({int(best['step'])}) / {best['mrr@10']:.3f} | "
                f"{last['calibrated_entropy']:.3f} / {last['mrr@10']:.3f} | "
                f"{rows['contrastive_entropy'].min():.3f} | {share:.0%} |")
    return "\n".join(lines)


def cpu_flags() -> str:
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.machine())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(wanted)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rungs", nargs="+", default=["scratch-L1-H32", "scratch-L1-H128", "scratch-L2-H256"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "study" / "recipe")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    print(cpu_flags(), flush=True)
    if not args.table_only:
        jobs = [(variant, rung) for rung in args.rungs for variant in args.variants]
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda job: train_one(job[0], job[1], args.steps, args.out), jobs))
    print(table(args.out, args.variants, args.rungs, args.steps))
    print(json.dumps({"command": sys.argv, "base": BASE}))


if __name__ == "__main__":
    main()
