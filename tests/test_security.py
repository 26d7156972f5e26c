"""Security regressions of issue 12: names that would escape their folders, credentials
that would follow a redirect, and the app's listening address."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.paths import validate_name
from engine.sweep import load_sweep
from tests.conftest import ROOT
from tests.helpers import write_synthetic


def _files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


def _engine(*args: object, runs: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_RUNS": str(runs)}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- 1. names as path components

@pytest.mark.parametrize("value", ["../x", "/abs/path", "a/b", ".hidden", "..", "", "a b", "x\0y", "é" * 3,
                                   "a" * 201])
def test_validate_name_refuses_what_is_no_single_safe_component(value):
    with pytest.raises(InputError, match="run id .* is not a safe name: use letters, digits"):
        validate_name("run id", value)


def test_validate_name_keeps_ordinary_ids():
    for value in ("squad-scratch-L1-H32-D500-human-s0-1a2b3c4d", "run_1.final", "a" * 200):
        assert validate_name("run id", value) == value


@pytest.fixture()
def synthetic(tmp_path):
    return write_synthetic(tmp_path / "syn", n_passages=60, n_train=40, n_test=10)


@pytest.mark.slow
@pytest.mark.parametrize("run_id", ["../x", "ABSOLUTE"])
def test_cli_train_refuses_run_ids_outside_the_runs_folder(tmp_path, synthetic, run_id):
    """Before: `--run-id ../x` trained into runs/../x and `--run-id /abs/path` into
    /abs/path (runs_dir() / "/abs" is "/abs")."""
    runs = tmp_path / "work" / "runs"
    if run_id == "ABSOLUTE":
        run_id = str(tmp_path / "elsewhere")
    before = _files_under(tmp_path)
    done = _engine("train", "--dataset", synthetic, "--model", "scratch-L1-H32", "--steps", "1",
                   "--batch-size", "4", "--negatives", "4", "--eval-every", "1", "--eval-repeats", "1",
                   "--tokenizer-vocab-size", "200", "--run-id", run_id, "--no-store", runs=runs)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: run id {run_id!r} is not a safe name")
    assert _files_under(tmp_path) - before == set()  # not even the runs folder was made


def _sweep_file(folder: Path, dataset: Path, name: str, annotation: str = "human") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(f'name = "{name}"\n[grid]\nmodels = ["scratch-L1-H32"]\ntrain_pairs = [20]\n'
                    f'annotations = ["{annotation}"]\n[annotation_data]\n"{annotation}" = "{dataset}"\n'
                    f'[train]\ndataset = "{dataset}"\nsteps = 1\n')
    return path


@pytest.mark.slow
def test_sweep_name_that_climbs_out_is_refused(tmp_path, synthetic):
    """Before: the runs of `name = "../../escaped"` got ids "../../escaped-..." and their
    folders (config, log, checkpoints) were made two levels above runs/."""
    path = _sweep_file(tmp_path / "sweeps", synthetic, "../../escaped")
    with pytest.raises(InputError, match="sweep name '../../escaped' is not a safe name"):
        load_sweep(path)
    runs = tmp_path / "work" / "deep" / "runs"
    before = _files_under(tmp_path)
    done = _engine("sweep", path, "--store", tmp_path / "s.duckdb", runs=runs, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "sweep name '../../escaped' is not a safe name" in done.stderr
    assert _files_under(tmp_path) - before == set()


@pytest.mark.slow
def test_sweep_annotation_type_that_climbs_out_is_refused(tmp_path, synthetic):
    """A generated annotation type is part of every run id of the sweep (the Runs page
    writes its TYPE = FOLDER lines into the sweep file)."""
    path = _sweep_file(tmp_path / "sweeps", synthetic, "ok", annotation="a/../../../../x")
    with pytest.raises(InputError, match="run id 'ok-scratch-L1-H32-D20-a/../../../../x-s0-.*' is not a safe name"):
        load_sweep(path)


@pytest.mark.slow
def test_runs_page_refuses_an_annotation_type_that_is_no_safe_name(tmp_path, synthetic):
    """Before: the line `a/../../../../x = FOLDER` was accepted, written into the sweep
    file and launched; its runs' folders were made at /."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["run_launcher"] = pytest.fail  # launching anything fails the test
    at.run()
    at.switch_page("pages/1_Runs.py").run()
    at.text_input(key="run_dataset_path").input(str(synthetic))
    at.text_area(key="run_generated").input(f"a/../../../../x = {synthetic}")
    next(b for b in at.form_submit_button if b.label == "Launch").click().run()
    assert not at.exception
    assert "generated annotations, line 1: type 'a/../../../../x' is not a safe name" in at.error[0].value
    assert not (tmp_path / "runs" / "sweeps").exists()  # no sweep file written


# ---------------------------------------------------------------- 4. credentials and redirects

class _Recorder:
    """A local HTTP server that records every request; answers with `reply(handler)`."""

    def __init__(self, reply):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.received.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, body = reply(self)
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _completion(handler):
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": '{"query1": "stolen?"}'}}]}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture
def redirect_to_elsewhere():
    elsewhere = _Recorder(_completion)                      # another host, with a perfectly good answer
    base = _Recorder(lambda handler: (base.status, {"Location": f"{elsewhere.url}/v1/chat/completions"}, b""))
    base.status = 302
    yield base, elsewhere
    base.close()
    elsewhere.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_api_key_never_follows_a_redirect(redirect_to_elsewhere, monkeypatch, status):
    """Before: urllib followed the 302 to the other host with `Authorization: Bearer ...`,
    as a GET, and its answer came back as the completion (and was cached)."""
    from engine.annotate.endpoint import ChatEndpoint, EndpointConfig, EndpointError

    base, elsewhere = redirect_to_elsewhere
    base.status = status
    monkeypatch.setenv("SECRET_KEY_FOR_TEST", "sk-do-not-leak")
    endpoint = ChatEndpoint(EndpointConfig(f"{base.url}/v1", "m", "SECRET_KEY_FOR_TEST", 2.0, 3, 0.01), {})
    with pytest.raises(EndpointError, match=rf"redirects to {elsewhere.url}/v1/chat/completions"):
        endpoint.complete("hello", seed=0)
    assert elsewhere.received == []                          # no request at all, so no key, no GET
    assert base.received == [("POST", "/v1/chat/completions", "Bearer sk-do-not-leak")]  # tried once


def test_a_redirected_generation_caches_nothing(redirect_to_elsewhere, tmp_path, monkeypatch):
    from engine.annotate.endpoint import EndpointError
    from engine.annotate.llm import LLMConfig, generate_llm
    from tests.test_annotate_ict import write_beir

    base, elsewhere = redirect_to_elsewhere
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    dataset = write_beir(tmp_path / "data", {"p0": "A passage. Two sentences."}, [("q0", "p0")])
    config = LLMConfig(str(dataset), str(tmp_path / "out"), "m", base_url=f"{base.url}/v1", batch_size=1,
                       timeout_s=2.0, max_tries=2, backoff_s=0.01)
    with pytest.raises(EndpointError, match="redirects to"):
        generate_llm(config)
    assert elsewhere.received == []
    cached = [line for path in (tmp_path / "cache").rglob("*.jsonl") for line in path.read_text().splitlines()]
    assert cached == []


# ---------------------------------------------------------------- 5. where the app listens

def test_the_app_listens_on_loopback_only_by_default():
    """Before: no server.address, so Streamlit bound every interface."""
    import ipaddress

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert ipaddress.ip_address(config["server"]["address"]).is_loopback


@pytest.mark.slow
def test_streamlit_reads_the_address_from_the_project_config(tmp_path):
    """The key is one the installed Streamlit knows, and it takes it from the file."""
    done = subprocess.run([sys.executable, "-c", "from streamlit import config; config.get_config_options(); "
                           "print(config.get_option('server.address'))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "127.0.0.1"
