"""`python -m engine sweep FILE --emit slurm`: the sweep as an sbatch array script
(engine/slurm.py). Its flags, added to the sweep command's parser."""
from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    group = parser.add_argument_group("--emit slurm", "write an sbatch array script instead of running")
    group.add_argument("--emit", choices=("slurm",), help="slurm: write the sweep as an sbatch array job")
    group.add_argument("--out", type=Path, help="script path (default: <sweep name>.sbatch beside the sweep file)")
    group.add_argument("--shared-dir", type=Path,
                       help="folder on the shared file system for the store and its spool, run folders, cache, logs")
    group.add_argument("--array-tasks", type=int, help="K shards, one per array task (default: one per run)")
    group.add_argument("--gpus-per-node", type=int, default=0,
                       help="GPUs each task gets; more than 1 runs each training run under `accelerate launch`")
    group.add_argument("--cpus-per-task", type=int)
    group.add_argument("--time", help="Slurm time limit per task, e.g. 12:00:00")
    group.add_argument("--partition")
    group.add_argument("--account")
    group.add_argument("--max-concurrent", type=int, help="at most this many array tasks at once")
    group.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                       help="another #SBATCH option, e.g. --sbatch=--constraint=a100 (repeatable)")


def emit(sweep, args) -> int:
    from engine.errors import InputError
    from engine.paths import (check_not_protected, check_output_path, make_output_folder, store_files, store_path,
                              write_output)
    from engine.slurm import ShardCommand, SlurmOptions, render_sbatch

    if args.shard or args.dry_run:
        raise InputError("--emit slurm makes the shards itself: drop --shard and --dry-run")
    if args.shared_dir is None:
        raise InputError("--emit slurm needs --shared-dir DIR: a folder every node sees "
                         "(the store and its spool, run folders, cache and logs go there)")
    shared = args.shared_dir.expanduser().absolute()
    check_not_protected(shared, protected={what: path for what, path in store_files(args.store or store_path()).items()
                                           if what != "the store"}, name="--shared-dir")  # the store's folder may hold it
    array_tasks = len(sweep.runs) if args.array_tasks is None else args.array_tasks
    options = SlurmOptions(shared_dir=shared, array_tasks=array_tasks,
                           gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task, time=args.time,
                           partition=args.partition, account=args.account, max_concurrent=args.max_concurrent,
                           extra=tuple(args.sbatch))
    command = ShardCommand(sweep_file=sweep.path.expanduser().resolve(), launcher=args.launcher,
                           parallel=args.parallel)
    script = render_sbatch(sweep.name, len(sweep.runs), options, command)
    protected = {"the sweep file": sweep.path, **sweep.inputs(), **store_files(args.store or store_path()),
                 **{f"{what} on --shared-dir": path for what, path in store_files(shared / "workbench.duckdb").items()}}
    out = check_output_path(args.out or sweep.path.with_name(f"{sweep.name}.sbatch"), protected=protected)
    make_output_folder(shared / "logs", args.shared_dir)   # Slurm does not create the --output folder
    write_output(out, script)
    summary = {"script": str(out), "sweep": sweep.name, "runs": len(sweep.runs),
               "array_tasks": options.array_tasks, "shared_dir": str(shared)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {out}: {len(sweep.runs)} runs in {options.array_tasks} array tasks; submit with: sbatch {out}")
    return 0
