"""A sweep as a Slurm array job: one shard of the sweep per array task.

`render_sbatch` writes a bash script for `sbatch`. Array task i runs
`python -m engine sweep FILE --shard i/K`, so K tasks share the sweep without
overlap (engine/sweep.py `shard`), each on one node; with several GPUs on a node
each run goes through `accelerate launch`, which starts one process per GPU.

Every task must see the same store, run folders and caches, so they are exported
as WORKBENCH_STORE / WORKBENCH_RUNS / WORKBENCH_CACHE under one folder on the
shared file system. Training processes never open the DuckDB file: they append
to the store's spool folder beside it (store/spool.py), which is why the store
itself must live there too. The file system needs working `flock` (NFSv4 and
Lustre mounted with `-o flock` have it). Restarted or requeued tasks skip the
runs their shard completed and resume the others from their checkpoints.

Values that reach `#SBATCH` lines are checked against a strict character set (a
newline there would become a shell command); everything in the script body is
quoted with `shlex.quote`.
"""
from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError
from engine.paths import validate_name

# What an #SBATCH value may hold: no whitespace, quotes, `$`, `;` or newlines.
_DIRECTIVE_VALUE = re.compile(r"[A-Za-z0-9_./+@:,=%-]+")


@dataclass(frozen=True)
class SlurmOptions:
    shared_dir: Path                   # seen by every node: store + spool, run folders, cache, logs
    array_tasks: int                   # K: shards of the sweep, one per array task
    gpus_per_node: int = 0             # >1: each run under `accelerate launch` (one process per GPU)
    cpus_per_task: int | None = None
    time: str | None = None            # Slurm's wall-clock limit, e.g. "12:00:00"
    partition: str | None = None
    account: str | None = None
    max_concurrent: int | None = None  # `--array=0-K%M`: at most M tasks at once
    extra: tuple[str, ...] = field(default_factory=tuple)  # more #SBATCH options, e.g. "--constraint=a100"


@dataclass(frozen=True)
class ShardCommand:
    """What each array task runs, apart from its shard index."""
    sweep_file: Path
    launcher: str = "python"
    parallel: int = 1
    python: Path = field(default_factory=lambda: Path(sys.executable).absolute())
    workdir: Path = Path(__file__).resolve().parent.parent   # the project, where `-m engine` is found


def render_sbatch(sweep_name: str, n_runs: int, options: SlurmOptions, command: ShardCommand) -> str:
    """The sbatch script's text."""
    _check(sweep_name, n_runs, options)
    if options.gpus_per_node > 1 and command.parallel > 1:
        raise InputError(f"--parallel {command.parallel} with --gpus-per-node {options.gpus_per_node}: each run "
                         "already uses every GPU of its node through accelerate; use --parallel 1")
    shared = options.shared_dir
    launcher = "accelerate" if options.gpus_per_node > 1 else command.launcher
    argv = [str(command.python), "-m", "engine", "sweep", str(command.sweep_file),
            "--launcher", launcher, "--parallel", str(command.parallel), "--store", str(shared / "workbench.duckdb")]
    shard = f'--shard "${{SLURM_ARRAY_TASK_ID}}/{options.array_tasks}"'   # expanded by bash in each task
    lines = [
        "#!/bin/bash",
        f"# Sweep {sweep_name}: {n_runs} runs in {options.array_tasks} shards, one per array task.",
        "# Written by `python -m engine sweep FILE --emit slurm`; submit with `sbatch THIS_FILE`.",
        *(f"#SBATCH {directive}" for directive in _directives(sweep_name, options)),
        "set -euo pipefail",
        "",
        "# The store (and the spool its writers append to), run folders and caches on the shared file system",
        f"export WORKBENCH_STORE={shlex.quote(str(shared / 'workbench.duckdb'))}",
        f"export WORKBENCH_RUNS={shlex.quote(str(shared / 'runs'))}",
        f"export WORKBENCH_CACHE={shlex.quote(str(shared / 'cache'))}",
        'mkdir -p "$(dirname "$WORKBENCH_STORE")" "$WORKBENCH_RUNS" "$WORKBENCH_CACHE"',
        *(["export SRUN_CPUS_PER_TASK=\"$SLURM_CPUS_PER_TASK\"  # srun does not inherit sbatch's"]
          if options.cpus_per_task else []),
        f"cd {shlex.quote(str(command.workdir))}",
        "",
        f"srun --ntasks=1 {shlex.join(argv)} {shard}",
        "",
    ]
    return "\n".join(lines)


def _directives(sweep_name: str, options: SlurmOptions) -> list[str]:
    last = options.array_tasks - 1
    array = f"0-{last}" + (f"%{options.max_concurrent}" if options.max_concurrent else "")
    directives = [f"--job-name={sweep_name}", f"--array={array}", "--nodes=1", "--ntasks=1",
                  f"--output={options.shared_dir / 'logs'}/%x-%A_%a.out"]
    optional = {"--gpus-per-node": options.gpus_per_node or None, "--cpus-per-task": options.cpus_per_task,
                "--time": options.time, "--partition": options.partition, "--account": options.account}
    directives += [f"{flag}={value}" for flag, value in optional.items() if value is not None]
    return directives + list(options.extra)


def _check(sweep_name: str, n_runs: int, options: SlurmOptions) -> None:
    validate_name("sweep name", sweep_name)
    if not 1 <= options.array_tasks <= max(n_runs, 1):
        raise InputError(f"--array-tasks must be between 1 and the sweep's {n_runs} runs, got {options.array_tasks}")
    if options.gpus_per_node < 0:
        raise InputError(f"--gpus-per-node must not be negative, got {options.gpus_per_node}")
    for what, number in (("--cpus-per-task", options.cpus_per_task), ("--max-concurrent", options.max_concurrent)):
        if number is not None and number < 1:
            raise InputError(f"{what} must be at least 1 (or left out), got {number}")
    if not options.shared_dir.is_absolute():
        raise InputError(f"--shared-dir {options.shared_dir} must be an absolute path on the shared file system")
    values = {"--shared-dir": str(options.shared_dir), "--time": options.time, "--partition": options.partition,
              "--account": options.account}
    values.update({f"--sbatch {value}": value for value in options.extra})
    for what, value in values.items():
        if value is not None and not _DIRECTIVE_VALUE.fullmatch(value):
            raise InputError(f"{what}: {value!r} cannot go on an #SBATCH line; use letters, digits and "
                             f"_ . / + @ : , = % - only (no spaces, quotes or newlines)")
    for value in options.extra:
        if not value.startswith("--"):
            raise InputError(f"--sbatch {value!r}: give a long sbatch option such as --constraint=a100")
