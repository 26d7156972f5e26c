"""Checkpoints hold no pickle: resuming never runs code from a checkpoint folder."""
import json
import shutil
from dataclasses import replace

import pytest
import torch

from engine.checkpoints import latest_checkpoint
from engine.errors import InputError
from engine.paths import runs_dir
from engine.train import train
from tests.helpers import tiny_config, write_synthetic
from tests.test_engine_train import two_process_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

# the files accelerate's load_state reads (custom_checkpoint_0.pkl, the registered scheduler, with
# torch.load(weights_only=False): the hole)
ACCELERATE_FILES = ("custom_checkpoint_0.pkl", "scheduler.bin", "optimizer.bin", "pytorch_model.bin", "random_states_0.pkl",
                    "scaler.pt")


class Payload:
    """Unpickling it creates `marker`: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture()
def interrupted_run(tmp_path):
    """A run that saved its step-10 checkpoint and has no final model: resumable."""
    config = tiny_config(write_synthetic(tmp_path / "syn"), steps=20, eval_every=10, checkpoint_every=10,
                         run_id="crafted")
    train(config)
    shutil.rmtree(runs_dir() / "crafted" / "model")  # as if killed after its last checkpoint
    return config


@pytest.mark.slow
def test_a_checkpoint_is_safetensors_and_json_only(interrupted_run):
    checkpoint = latest_checkpoint(runs_dir() / "crafted")
    assert checkpoint.name == "step-00000010"
    assert {p.suffix for p in checkpoint.iterdir()} == {".safetensors", ".json"}


@pytest.mark.slow
def test_pickle_files_in_a_checkpoint_are_never_loaded(interrupted_run, tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = latest_checkpoint(runs_dir() / "crafted")
    for name in ACCELERATE_FILES:
        torch.save(Payload(marker), checkpoint / name)
    resumed = train(interrupted_run)
    assert resumed.resumed_from_step == 10 and resumed.steps == 20
    assert not marker.exists()


@pytest.mark.slow
def test_a_pickle_in_place_of_the_weights_is_refused(interrupted_run, tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = latest_checkpoint(runs_dir() / "crafted")
    torch.save(Payload(marker), checkpoint / "optimizer.safetensors")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        train(interrupted_run)
    torch.save(Payload(marker), checkpoint / "model.safetensors")
    with pytest.raises(InputError, match="weights not readable"):
        train(interrupted_run)
    assert not marker.exists()


@pytest.mark.slow
def test_a_checkpoint_of_the_pickled_layout_is_refused(interrupted_run, tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = latest_checkpoint(runs_dir() / "crafted")
    (checkpoint / "optimizer.json").unlink()
    torch.save(Payload(marker), checkpoint / "scheduler.bin")
    with pytest.raises(InputError, match="earlier version"):
        train(replace(interrupted_run))
    assert not marker.exists()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 10


@pytest.mark.slow
def test_two_processes_save_and_resume(tmp_path):
    """torchrun, 2 CPU processes (gloo): each writes its own generator file, and a run
    stopped after its checkpoint resumes from it."""
    dataset = write_synthetic(tmp_path / "syn")
    first = two_process_train(dataset, "two", steps=4, negatives=16, checkpoint_every=2)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = latest_checkpoint(runs_dir() / "two")
    assert {p.name for p in checkpoint.glob("rng-*")} == {"rng-0.safetensors", "rng-1.safetensors"}
    shutil.rmtree(runs_dir() / "two" / "model")
    resumed = two_process_train(dataset, "two", steps=4, negatives=16, checkpoint_every=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["resumed_from_step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name, text", [("scheduler.json", "[1, 2]"), ("trainer_state.json", "[1]"),
                                        ("optimizer.json", "[1]"), ("scheduler.json", "[" * 100_000)])
def test_a_checkpoint_json_of_the_wrong_shape_is_refused(interrupted_run, name, text):
    """Before: a raw TypeError (a list where an object belongs) or RecursionError."""
    (latest_checkpoint(runs_dir() / "crafted") / name).write_text(text)
    with pytest.raises(InputError, match="not a readable checkpoint"):
        train(interrupted_run)


@pytest.mark.slow
@pytest.mark.parametrize("change, problem", [({"stepz": 3}, "has 'stepz', which TrainerState has not"),
                                             ({"step": "10"}, "has step = '10', not of its type int"),
                                             ({"curve": [3]}, "has curve = \\[3\\], not of its type list\\[dict\\]")])
def test_a_trainer_state_with_keys_or_values_trainer_state_has_not_is_refused(interrupted_run, change, problem):
    """Before: every key was set on the TrainerState unchecked (an unknown one silently, a
    string step to fail later in the loop)."""
    state_file = latest_checkpoint(runs_dir() / "crafted") / "trainer_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), **change}))
    with pytest.raises(InputError, match=f"not a readable checkpoint \\(ValueError: trainer_state.json {problem}"):
        train(interrupted_run)
