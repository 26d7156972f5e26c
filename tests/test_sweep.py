"""Sweeps: grid expansion, shards, dry runs, and a sweep killed mid-run that
resumes without losing or duplicating work."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.errors import InputError
from engine.paths import runs_dir
from engine.sweep import load_sweep, parse_shard, shard
from store import Store
from tests.conftest import ROOT
from tests.helpers import write_synthetic

TINY_TRAIN = """
[train]
dataset = "{dataset}"
tokenizer_vocab_size = 400
steps = 40
batch_size = 16
negatives = 16
lr = 0.003
max_query_length = 16
max_passage_length = 32
eval_every = 20
checkpoint_every = 10
[train.eval]
repeats = 2
"""


def write_sweep(folder, dataset, models=('"scratch-L1-H32"',), pairs="[100, 200]", extra=""):
    path = folder / "sweep.toml"
    path.write_text(f'name = "t"\n[grid]\nmodels = [{", ".join(models)}]\ntrain_pairs = {pairs}\n{extra}'
                    + TINY_TRAIN.format(dataset=dataset))
    return path


@pytest.fixture()
def dataset(tmp_path):
    return write_synthetic(tmp_path / "syn")


def test_grid_expands_with_stable_unique_ids(tmp_path, dataset):
    path = write_sweep(tmp_path, dataset, models=('"scratch-L1-H32"', '"scratch-L2-H32"'), pairs='[100, 200, "all"]',
                       extra="seeds = [0, 1]\n")
    sweep = load_sweep(path)
    ids = [run.run_id for run in sweep.runs]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert ids == [run.run_id for run in load_sweep(path).runs]            # deterministic
    first = sweep.runs[0].config
    assert first.dataset == str(dataset) and first.steps == 40 and first.eval.repeats == 2
    assert {run.config.train_pairs for run in sweep.runs} == {100, 200, None}


def test_shards_cover_the_sweep_exactly_once(tmp_path, dataset):
    runs = load_sweep(write_sweep(tmp_path, dataset, pairs="[10, 20, 30, 40, 50]",
                                  models=('"scratch-L1-H32"', '"scratch-L2-H32"'))).runs
    zero, one = shard(runs, *parse_shard("0/2")), shard(runs, *parse_shard("1/2"))
    assert not {r.run_id for r in zero} & {r.run_id for r in one}
    assert sorted(r.run_id for r in zero + one) == sorted(r.run_id for r in runs)


@pytest.mark.slow
def test_dry_run_lists_runs_with_estimates(tmp_path, dataset):
    path = write_sweep(tmp_path, dataset)
    result = subprocess.run([sys.executable, "-m", "engine", "sweep", str(path), "--dry-run", "--shard", "1/2"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "t-scratch-L1-H32-D200-human" in result.stdout and "D100" not in result.stdout
    assert "FLOP" in result.stdout and "1 runs" in result.stdout


@pytest.mark.parametrize("body, message", [
    ("name = 't'\n[grid]\ntrain_pairs = [1]\n[train]\ndataset = 'x'\n", "needs ['models']"),
    ("name = 't'\n[grid]\nmodels = ['m']\nsizes = [1]\n[train]\ndataset = 'x'\n", "unknown [grid] keys"),
    ("name = 't'\n[grid]\nmodels = ['m']\n[train]\ndataset = 'x'\nsteps_typo = 3\n", "unknown [train] settings"),
    ("name = 't'\n[grid]\nmodels = ['m']\n[train]\nsteps = 3\n", "needs dataset"),
    ("name = 't'\n[grid]\nmodels = ['m']\nannotations = ['ict']\n[train]\ndataset = 'x'\n", "[annotation_data]"),
    ("name = 't'\n[grid]\nmodels = ['m']\ntrain_pairs = [0]\n[train]\ndataset = 'x'\n", "positive integers"),
    ("name = 't\n", "not valid TOML"),
])
def test_bad_sweep_files_are_explained(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(path)


def test_bad_shard_is_explained():
    for text in ("2/2", "a/b", "1"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(text)


def sweep_process(path, store_path):
    return subprocess.Popen([sys.executable, "-m", "engine", "sweep", str(path), "--store", str(store_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_killed_sweep_resumes_and_completes_every_run_once(tmp_path):
    dataset = write_synthetic(tmp_path / "syn")
    path = write_sweep(tmp_path, dataset)                    # two runs: D = 100 and 200
    runs = load_sweep(path).runs
    store_path = tmp_path / "store.duckdb"
    victim = runs[1].run_id                                  # the first completes, the second is killed mid-way
    checkpoints = runs_dir() / victim / "checkpoints"
    process = sweep_process(path, store_path)
    deadline = time.monotonic() + 240
    while not sorted(checkpoints.glob("step-0000002[0-9]")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)                   # the sweep and its training process
    process.wait()
    killed_at = max(int(p.name[5:]) for p in checkpoints.glob("step-[0-9]*") if p.name[5:].isdigit())
    assert 20 <= killed_at < 40

    again = sweep_process(path, store_path)
    output = again.communicate(timeout=600)[0].decode()
    assert again.returncode == 0, output
    assert "1 of 2 runs already complete" in output

    store = Store(store_path)
    table = store.runs()
    assert sorted(table["run_id"]) == sorted(run.run_id for run in runs)         # all there, none twice
    assert set(table["status"]) == {"completed"}
    progress = json.loads((runs_dir() / victim / "progress.json").read_text())
    assert progress["resumed_from_step"] == killed_at
    points = store.points(victim)
    assert points["step"].is_unique and points["step"].max() == 40
    assert len(list(checkpoints.glob("step-*"))) <= 1                          # old checkpoints pruned


def test_the_demo_seed_files_join_the_demo_study():
    """sweeps/squad-seeds-*.toml add a second seed to squad-scratch-study.toml's runs: same
    name and [train], so their ids are that study's, and the run both hold trains once."""
    main = load_sweep(ROOT / "sweeps" / "squad-scratch-study.toml")
    seeds = [load_sweep(ROOT / "sweeps" / f"squad-seeds-{axis}.toml") for axis in ("largest-n", "largest-d")]
    for extra in seeds:
        assert extra.name == main.name and extra.spec["train"] == main.spec["train"]
        assert {run.config.seed for run in extra.runs} == {1}
    main_configs = {(r.config.model, r.config.train_pairs) for r in main.runs}
    both = {r.run_id for r in seeds[0].runs} & {r.run_id for r in seeds[1].runs}
    assert len(both) == 1 and all((r.config.model, r.config.train_pairs) in main_configs
                                  for extra in seeds for r in extra.runs)
