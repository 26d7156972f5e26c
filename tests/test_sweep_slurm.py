"""`engine sweep FILE --emit slurm`: the sbatch array script parses (`bash -n`), and
run through stub `sbatch`/`srun` commands that execute every array task locally it
completes the whole sweep, each task its own shard, with the store on the "shared"
folder; odd characters in paths survive the quoting; bad #SBATCH values are refused."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from engine.errors import InputError
from engine.slurm import ShardCommand, SlurmOptions, render_sbatch
from engine.sweep import load_sweep
from store import Store
from tests.conftest import ROOT
from tests.helpers import write_synthetic
from tests.test_sweep import write_sweep

# sbatch: run each index of the --array directive as its own task, sequentially, output to
# the --output pattern (%x job name, %A job id, %a task index); srun: drop its options.
STUB_SBATCH = textwrap.dedent(r"""
    #!/bin/bash
    set -euo pipefail
    script=$1
    range=$(sed -n 's/^#SBATCH --array=\([0-9]*-[0-9]*\).*/\1/p' "$script")
    name=$(sed -n 's/^#SBATCH --job-name=//p' "$script")
    pattern=$(sed -n 's/^#SBATCH --output=//p' "$script")
    for task in $(seq "${range%-*}" "${range#*-}"); do
        out=${pattern//%x/$name}; out=${out//%A/4242}; out=${out//%a/$task}
        SLURM_ARRAY_JOB_ID=4242 SLURM_ARRAY_TASK_ID=$task bash "$script" >"$out" 2>&1
    done
    echo "Submitted batch job 4242"
""").lstrip()
STUB_SRUN = "#!/bin/bash\nwhile [[ $1 == -* ]]; do shift; done\nexec \"$@\"\n"


@pytest.fixture()
def stub_slurm(tmp_path):
    folder = tmp_path / "stub-bin"
    folder.mkdir()
    for name, body in (("sbatch", STUB_SBATCH), ("srun", STUB_SRUN)):
        (folder / name).write_text(body)
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def tiny_sweep(folder):
    """Two runs of 4 steps in a folder whose name needs quoting."""
    folder.mkdir(parents=True)
    path = write_sweep(folder, write_synthetic(folder / "syn"), pairs="[100, 200]")
    path.write_text(path.read_text().replace("steps = 40", "steps = 4").replace("eval_every = 20", "eval_every = 4"))
    return path


def emit(path, *argv):
    return subprocess.run([sys.executable, "-m", "engine", "sweep", str(path), "--emit", "slurm", *map(str, argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_array_script_runs_every_shard_once_through_stub_slurm(tmp_path, stub_slurm):
    path = tiny_sweep(tmp_path / "my sweeps $HOME 'q' `x`")
    shared = tmp_path / "shared"
    script = tmp_path / "sweep.sbatch"
    result = emit(path, "--shared-dir", shared, "--out", script, "--time", "00:10:00", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"script": str(script), "sweep": "t", "runs": 2, "array_tasks": 2,
                                         "shared_dir": str(shared)}
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-1" in text and "#SBATCH --time=00:10:00" in text
    assert '--shard "${SLURM_ARRAY_TASK_ID}/2"' in text

    submitted = subprocess.run(["sbatch", str(script)], env=stub_slurm, capture_output=True, text=True, timeout=600)
    logs = {p.name: p.read_text() for p in (shared / "logs").glob("*.out")}
    assert submitted.returncode == 0, (submitted.stderr, logs)
    runs = [run.run_id for run in load_sweep(path).runs]
    table = Store(shared / "workbench.duckdb").runs()
    assert sorted(table["run_id"]) == sorted(runs) and set(table["status"]) == {"completed"}
    assert sorted(logs) == ["t-4242_0.out", "t-4242_1.out"]
    for task, run_id in enumerate(runs):                     # task i ran shard i/2 and nothing else
        log = logs[f"t-4242_{task}.out"]
        assert f"started {run_id}" in log and f"started {runs[1 - task]}" not in log
        assert (shared / "runs" / run_id / "train.log").is_file()     # run folders on the shared path too


def test_several_gpus_per_node_run_under_accelerate(tmp_path):
    path = tiny_sweep(tmp_path / "s")
    options = SlurmOptions(shared_dir=tmp_path / "shared", array_tasks=1, gpus_per_node=4, partition="gpu",
                           max_concurrent=1, extra=("--constraint=a100",))
    text = render_sbatch("t", 2, options, ShardCommand(sweep_file=path))
    assert "--launcher accelerate" in text and "#SBATCH --gpus-per-node=4" in text
    assert "#SBATCH --array=0-0%1" in text and "#SBATCH --constraint=a100" in text
    assert "#SBATCH --partition=gpu" in text
    assert "--launcher python" in render_sbatch("t", 2, SlurmOptions(tmp_path, 2, gpus_per_node=1),
                                                ShardCommand(sweep_file=path))
    with pytest.raises(InputError, match="use --parallel 1"):
        render_sbatch("t", 2, options, ShardCommand(sweep_file=path, parallel=2))


@pytest.mark.parametrize("change, message", [
    ({"partition": "gpu\nrm -rf /"}, "cannot go on an #SBATCH line"),
    ({"time": "1:00 --x"}, "cannot go on an #SBATCH line"),
    ({"array_tasks": 3}, "between 1 and"),
    ({"extra": ("constraint=a100",)}, "long sbatch option"),
    ({"shared_dir": "relative/dir"}, "absolute path"),
])
def test_bad_slurm_options_are_refused(tmp_path, change, message):
    values = {"shared_dir": tmp_path, "array_tasks": 2, **change}
    values["shared_dir"] = type(tmp_path)(values["shared_dir"])
    with pytest.raises(InputError, match=message):
        render_sbatch("t", 2, SlurmOptions(**values), ShardCommand(sweep_file=tmp_path / "x.toml"))


@pytest.mark.slow
def test_emit_without_shared_dir_is_one_line_error(tmp_path):
    result = emit(tiny_sweep(tmp_path / "s"))
    assert result.returncode == 2 and "--shared-dir" in result.stderr and "Traceback" not in result.stderr
