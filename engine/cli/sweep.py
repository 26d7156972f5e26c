"""`python -m engine sweep FILE`: run a whole scaling study (engine/sweep.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli import sweep_slurm


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="run models x data sizes x annotations x seeds from a TOML file")
    parser.add_argument("file", type=Path, help="sweep file (TOML), see engine/sweep.py")
    parser.add_argument("--dry-run", action="store_true", help="list the runs with estimated FLOPs and time")
    parser.add_argument("--shard", help="i/n: run every n-th run starting at i (several machines or GPUs)")
    parser.add_argument("--parallel", type=int, default=1, help="runs sharing this device at once")
    parser.add_argument("--launcher", choices=("python", "accelerate"), default="python",
                        help="accelerate: each run via `accelerate launch` (multi-GPU, multi-node)")
    parser.add_argument("--assumed-mfu", type=float, default=0.3,
                        help="fraction of the measured matmul peak a run achieves, for --dry-run times")
    parser.add_argument("--store", type=Path, help="results store (default: $WORKBENCH_STORE or .store/)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (the dry run's estimates or the sweep's outcome); logs go to stderr")
    sweep_slurm.add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from engine.errors import InputError
    from engine.sweep import check_data, load_sweep, parse_shard, run_sweep, shard
    from store import Store

    if args.parallel < 1:
        raise InputError(f"--parallel must be at least 1, got {args.parallel}")
    if not 0 < args.assumed_mfu <= 1:  # NaN fails this too
        raise InputError(f"--assumed-mfu is a fraction of the matmul peak in (0, 1], e.g. 0.3; got {args.assumed_mfu}")
    sweep = load_sweep(args.file)
    if args.emit:
        return sweep_slurm.emit(sweep, args)
    runs = shard(sweep.runs, *parse_shard(args.shard))
    check_data(runs)  # a missing corpus or a D beyond the data is refused before any run starts
    if args.dry_run:
        return dry_run(sweep.name, runs, args.assumed_mfu, args.json)
    outcome = run_sweep(runs, Store(args.store), args.launcher, args.parallel, log=_log_for(args.json))
    if args.json:
        print(json.dumps({"sweep": sweep.name, "runs": len(runs), **outcome}))
    else:
        busy = f", {outcome['busy']} being trained by another sweep" if outcome.get("busy") else ""
        print(f"sweep {sweep.name}: {outcome['completed']} of {len(runs)} runs complete, {outcome['failed']} failed"
              f"{busy}")
    return 1 if outcome["failed"] else 0


def _log_for(as_json: bool):
    """With --json stdout carries the one object only, so progress lines go to stderr."""
    return (lambda line: print(line, file=sys.stderr)) if as_json else print


def dry_run(sweep_name: str, runs, assumed_mfu: float, as_json: bool = False) -> int:
    from engine.flops import matmul_dtype, measure_matmul_peak
    from engine.sweep import estimate
    from engine.train import resolve_precision

    log = _log_for(as_json)
    peaks = {}  # the matmul peak of each precision the runs use (bf16 where the device computes it)
    rows, total = [], 0.0
    for run in runs:
        dtype = matmul_dtype(resolve_precision(run.config.precision, run.config.cpu))
        if dtype not in peaks:
            peaks[dtype] = measure_matmul_peak(dtype=dtype)
            log(f"measured {dtype} matmul peak {peaks[dtype] / 1e9:.0f} GFLOP/s; assuming "
                f"{100 * assumed_mfu:.0f}% of it")
        guess = estimate(run.config, peaks[dtype], assumed_mfu)
        seconds = guess["seconds"]
        total += seconds or 0.0
        rows.append({"run_id": run.run_id, "model": run.config.model, "train_pairs": run.config.train_pairs,
                     "annotation": run.config.annotation, "seed": run.config.seed, "matmul_dtype": str(dtype),
                     "n_params": guess.get("n_params"), "flops": guess["flops"], "seconds": seconds})
        if not as_json:
            flops = f"{guess['flops']:.3g} FLOP" if guess["flops"] else "unknown FLOPs (not a ladder model)"
            time_text = f"~{seconds / 60:.1f} min" if seconds else "?"
            print(f"{run.run_id:<60} {flops:>16}  {time_text}")
    if as_json:
        print(json.dumps({"sweep": sweep_name, "dry_run": True, "assumed_mfu": assumed_mfu,
                          "matmul_peak_flops": {str(dtype): peak for dtype, peak in peaks.items()},
                          "runs": rows, "total_seconds": total}))
    else:
        print(f"{len(runs)} runs, ~{total / 3600:.2f} h of training on this device")
    return 0
