"""The command-line features used as a hostile user would: files that are not what they
should be, odd names, bad numbers. Each case is one line `error: ...`, exit code 2, or a
result that stays correct; never a traceback."""
import json
import os
import socket

import pytest

from engine.paths import runs_dir


def store_main(argv):
    from store.__main__ import main

    return main(argv)


def engine_main(argv):
    from engine.cli import main

    return main(argv)


def running_run(run_id: str, progress_text: str) -> None:
    """A run the store calls running, with `progress_text` as its progress file."""
    from store.core import Store

    store = Store()
    store.start_run(config={}, model_name="m", n_params=10, n_params_strict=10, train_pairs=10,
                    annotation="human", dataset="d", seed=0, device="cpu", code_version="x", run_id=run_id)
    store.ingest()
    folder = runs_dir() / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "progress.json").write_text(progress_text)


@pytest.mark.parametrize("progress_text", [
    "[]", '"text"', '{"status": "running", "pid": "abc"}', '{"status": "running", "pid": -5}',
    '{"status": "running", "host": "another-host", "updated_at": "abc"}', '{"status": "runn',
    '{"status": "running", "pid": 999999999, "step": NaN, "total_steps": "x"}',
])
def test_store_info_with_a_broken_progress_file(progress_text, capsys):
    running_run("r-broken", progress_text)
    (runs_dir() / "r-broken" / "checkpoints" / "step-abc").mkdir(parents=True)
    assert store_main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)  # strict JSON: no NaN
    interrupted = {run["run_id"]: run for run in info["interrupted_runs"]}
    if progress_text.startswith("{\"status\": \"running\""):
        assert interrupted["r-broken"]["step"] is None and interrupted["r-broken"]["resumes_from_step"] == 0
    else:  # no progress object: the store's own status stands
        assert "r-broken" not in interrupted


def test_active_commands_skip_unreadable_progress_files():
    from engine.progress import active_commands, commands_dir

    commands_dir().mkdir(parents=True)
    (commands_dir() / "list.json").write_text("[]")
    (commands_dir() / "binary.json").write_bytes(b"\xff\xfe")
    (commands_dir() / "folder.json").mkdir()
    live = {"status": "running", "host": socket.gethostname(), "pid": os.getpid(), "done": 1}
    (commands_dir() / "live.json").write_text(json.dumps(live))
    assert [command["path"].rsplit("/", 1)[-1] for command in active_commands()] == ["live.json"]
