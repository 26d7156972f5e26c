"""Progress of long commands (engine/command_progress.py): a progress file with done/total and
the outcome, found by `active_commands` while the command runs; a tqdm bar on a
terminal only; annotate and the tracker import report through it."""
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from engine.annotate.cache import OutputCache, cached_outputs
from engine.command_progress import (
    CommandProgress,
    active_commands,
    commands_dir,
    read_command_progress,
)
from tests.conftest import ROOT


def test_progress_file_counts_and_records_the_outcome(tmp_path):
    with CommandProgress("demo", total=3, unit="run") as progress:
        assert [c["command"] for c in active_commands()] == ["demo"]       # found while running
        for name in ("a", "b", "c"):
            progress.advance(detail=name)
    state = read_command_progress(progress.path)
    assert progress.path.parent == commands_dir() and progress.path.name == f"demo-{os.getpid()}.json"
    assert (state["done"], state["total"], state["status"], state["detail"]) == (3, 3, "completed", "c")
    assert state["eta_s"] == 0.0 and state["pid"] == os.getpid()
    assert active_commands() == []

    with pytest.raises(RuntimeError):
        with CommandProgress("demo", total=5, path=tmp_path / "mine.json") as failing:
            failing.advance()
            raise RuntimeError("boom")
    assert read_command_progress(tmp_path / "mine.json")["status"] == "failed"


def test_progress_file_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PROGRESS_FILE", str(tmp_path / "watched.json"))
    with CommandProgress("sweep", total=2) as progress:
        progress.advance(2)
    assert read_command_progress(tmp_path / "watched.json")["done"] == 2


SHOW = "from engine.command_progress import CommandProgress\nwith CommandProgress('x', total=4, unit='run') as p:\n" \
       "    [p.advance() for _ in range(4)]\n"


@pytest.mark.slow
def test_bar_on_a_terminal_only():
    piped = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == ""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a terminal has a size
    process = subprocess.Popen([sys.executable, "-c", SHOW], cwd=ROOT, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=60) == 0
    assert b"4/4" in seen and b"run" in seen


def test_annotate_reports_passages_done(tmp_path):
    cache = OutputCache(tmp_path / "cache.jsonl")
    passages = [(f"p{i}", f"text {i}") for i in range(5)]

    def generate(batch):
        for pid, text in batch:
            yield pid, [text.upper()]

    cached_outputs(passages[:2], generate, cache, batch_size=2, desc="t")
    cached_outputs(passages, generate, OutputCache(tmp_path / "cache.jsonl"), batch_size=2, desc="t")
    (path,) = commands_dir().glob("annotate-*.json")
    state = json.loads(path.read_text())
    assert (state["done"], state["total"], state["status"], state["unit"]) == (5, 5, "completed", "passage")


def test_tracker_import_reports_runs_done(tmp_path):
    from store import Store
    from store.trackers import TrackerMapping, import_runs
    from tests.test_trackers import write_wandb

    import_runs(Store(tmp_path / "s.duckdb"), write_wandb(tmp_path / "w"),
                TrackerMapping(loss="eval/ce", n="model_params", d="train_pairs"))
    (path,) = commands_dir().glob("import-*.json")
    state = json.loads(path.read_text())
    assert (state["done"], state["total"], state["status"], state["detail"]) == (2, 2, "completed", "small")


@pytest.mark.slow
def test_evaluate_reports_texts_encoded(tmp_path):
    from engine.config import EvalConfig
    from engine.evaluate import evaluate_checkpoint
    from engine.paths import runs_dir
    from engine.train import TrainConfig, train
    from tests.helpers import write_synthetic
    dataset = write_synthetic(tmp_path / "syn")
    config = TrainConfig(dataset=str(dataset), model="scratch-L1-H32", run_id="tiny", tokenizer_vocab_size=400,
                         steps=2, batch_size=16, negatives=16, max_query_length=16, max_passage_length=32,
                         eval_every=2, checkpoint_every=0, eval=EvalConfig(repeats=1, ranking="never"))
    train(config)
    metrics, _ = evaluate_checkpoint(str(runs_dir() / "tiny" / "model"), str(dataset), EvalConfig(repeats=1),
                                     max_query_length=16, max_passage_length=32)
    (path,) = commands_dir().glob("evaluate-*.json")
    state = json.loads(path.read_text())
    assert state["status"] == "completed" and state["unit"] == "text"
    assert state["done"] == state["total"] == 60 + 400        # the test queries and every passage
    assert metrics["contrastive_entropy"] > 0
