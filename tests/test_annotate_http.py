"""The LLM generator's HTTP path against a stub OpenAI-compatible server on
127.0.0.1: retries with backoff on 500/429/timeouts/malformed bodies, clear
failures, and nothing lost (the cache keeps what succeeded; a rerun resumes)."""
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.annotate.endpoint import ChatEndpoint, EndpointConfig, EndpointError
from engine.annotate.llm import LLMConfig, generate_llm
from tests.conftest import ROOT
from tests.test_annotate_ict import read_set, write_beir

MAX_REQUESTS = 200   # the stub refuses more, so a retry loop cannot run away


def five(marker):
    return {f"query{i}": f"{marker.lower()} question {i} about the passage" for i in range(1, 6)}


class Stub:
    """What the server answers for a passage, chosen by a marker word in it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = defaultdict(list)      # marker -> request times
        self.headers = []
        self.broken = {"DOWN"}                 # markers that always get 503
        self.total = 0

    def reply(self, handler, marker, payload):
        with self.lock:
            self.total += 1
            self.requests[marker].append(time.monotonic())
            self.headers.append(handler.headers.get("Authorization"))
            attempt, total = len(self.requests[marker]), self.total
        if total > MAX_REQUESTS:
            return 410, {}, b"too many requests in one test"
        if marker in self.broken:
            return 503, {}, b"down"
        if marker == "FLAKY" and attempt <= 2:
            return 500, {}, b"internal error"
        if marker == "RATE" and attempt == 1:
            return 429, {"Retry-After": "0"}, b"slow down"
        if marker == "SLOW" and attempt == 1:
            time.sleep(0.8)                    # past the client's timeout
        if marker == "BADBODY" and attempt == 1:
            return 200, {}, b"<html>upstream busy</html>"
        if marker == "KEY":
            return 401, {}, b'{"error": "invalid api key"}'
        content = {
            "NOTJSON": "I am sorry, I can only answer in prose.",
            "FENCE": "```json\n" + json.dumps(five(marker)) + "\n```",
            "FEW": json.dumps({"query1": "only one question here", "query2": "and a second question"}),
            "DUPS": json.dumps({"query1": "the same", "query2": "The  same", "query3": "",
                                "query4": "fourth", "query5": "fifth"}),
        }.get(marker, json.dumps(five(marker)))
        body = {"id": "x", "object": "chat.completion", "model": payload["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture
def stub():
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/v1/chat/completions"
            passage = payload["messages"][0]["content"].rsplit("Passage: ", 1)[1]
            status, headers, body = state.reply(self, passage.split()[0], payload)
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass                           # the client gave up (timeout test)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


MARKERS = ["OK", "FLAKY", "RATE", "SLOW", "BADBODY", "NOTJSON", "FENCE", "FEW", "DUPS", "MANY"]


@pytest.fixture
def dataset(tmp_path):
    passages = {f"p{i}": f"{m} passage number {i}. It has two sentences." for i, m in enumerate(MARKERS)}
    train = [(f"q{i}", f"p{i}") for i in range(len(MARKERS))]
    train += [(f"q9-{j}", "p9") for j in range(5)]           # MANY: 6 human pairs, only 5 queries
    return write_beir(tmp_path / "data", passages, train)


def config(dataset, out, url, **kw):
    return LLMConfig(str(dataset), str(out), "stub-model", base_url=url, batch_size=4, timeout_s=0.3,
                     max_tries=3, backoff_s=0.05, **kw)


def test_http_generation_retries_parses_and_counts(stub, dataset, tmp_path):
    out = tmp_path / "llm"
    result = generate_llm(config(dataset, out, stub.url))
    attempts = {m: len(times) for m, times in stub.requests.items()}
    assert attempts == {"OK": 1, "FLAKY": 3, "RATE": 2, "SLOW": 2, "BADBODY": 2, "NOTJSON": 1, "FENCE": 1,
                        "FEW": 1, "DUPS": 1, "MANY": 1}
    first, second, third = stub.requests["FLAKY"]
    assert second - first >= 0.05 and third - second >= 0.1          # backoff doubles
    counts = result["counts"]
    assert counts["outputs"] == len(MARKERS)
    assert counts["skipped"] == {"not_json": 1, "missing_query": 3, "empty": 1, "duplicate": 1,
                                 "shortfall": 2}                     # NOTJSON's pair, MANY's sixth
    assert counts["notes"] == {"code_fence": 1, "fewer_than_five": 1}
    queries, corpus, qrels = read_set(out)
    assert len(qrels) == 15 - 2 and len(set(queries.values())) == len(queries)
    assert sum(p == "p9" for _, p in qrels) == 5
    assert all(corpus[p]["text"].split()[0] in MARKERS for _, p in qrels)
    assert result["generator"] == "llm-http" and result["prompt"].startswith("Please generate 5")


def test_one_query_per_pair_is_seeded_and_keep_all_takes_five(stub, dataset, tmp_path):
    a = generate_llm(config(dataset, tmp_path / "a", stub.url, seed=1))
    before = stub.total
    b = generate_llm(config(dataset, tmp_path / "b", stub.url, seed=1))
    assert stub.total == before                                       # all from the cache
    assert (tmp_path / "a" / "queries.jsonl").read_text() == (tmp_path / "b" / "queries.jsonl").read_text()
    assert a["counts"] == b["counts"]
    generate_llm(config(dataset, tmp_path / "c", stub.url, seed=2))
    assert (tmp_path / "c" / "queries.jsonl").read_text() != (tmp_path / "a" / "queries.jsonl").read_text()
    generate_llm(config(dataset, tmp_path / "all", stub.url, seed=1, keep_all=True))
    _, _, qrels = read_set(tmp_path / "all")
    assert sum(p == "p0" for _, p in qrels) == 5


def test_a_dead_passage_fails_clearly_and_a_rerun_resumes(stub, dataset, tmp_path):
    dead = tmp_path / "dead"
    (dead / "qrels").mkdir(parents=True)
    (dead / "corpus.jsonl").write_text((dataset / "corpus.jsonl").read_text()
                                       + json.dumps({"_id": "pd", "title": "", "text": "DOWN here."}) + "\n")
    (dead / "queries.jsonl").write_text((dataset / "queries.jsonl").read_text() + '{"_id": "qd", "text": "d"}\n')
    (dead / "qrels" / "train.tsv").write_text((dataset / "qrels" / "train.tsv").read_text() + "qd\tpd\t1\n")
    out = tmp_path / "out"
    with pytest.raises(EndpointError, match=r"no answer after 3 tries \(last: HTTP 503\)"):
        generate_llm(config(dataset=dead, out=out, url=stub.url))
    assert len(stub.requests["DOWN"]) == 3
    assert not (out / "generation.json").exists()
    cache = next((tmp_path / "cache" / "annotate").glob("llm-*.jsonl"))
    cached = [json.loads(line)["passage_id"] for line in cache.read_text().splitlines()]
    assert len(cached) == len(set(cached)) == len(MARKERS)             # everything else was kept

    stub.broken.clear()
    done = {m: len(t) for m, t in stub.requests.items()}
    result = generate_llm(config(dataset=dead, out=out, url=stub.url))
    asked_again = {m for m, t in stub.requests.items() if len(t) != done.get(m, 0)}
    assert asked_again == {"DOWN"}
    assert result["counts"]["outputs"] == len(MARKERS) + 1


def test_errors_that_retrying_cannot_fix_fail_at_once(stub):
    endpoint = ChatEndpoint(EndpointConfig(stub.url, "m", "NO_SUCH_KEY_VARIABLE", 0.3, 5, 0.01), {})
    with pytest.raises(EndpointError, match=r"HTTP 401.*invalid api key.*\$NO_SUCH_KEY_VARIABLE"):
        endpoint.complete(build_request("KEY"), seed=0)
    assert len(stub.requests["KEY"]) == 1


def test_an_unreachable_endpoint_fails_after_max_tries():
    import socket

    with socket.socket() as s:                                          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = ChatEndpoint(EndpointConfig(f"http://127.0.0.1:{port}/v1", "m", max_tries=3, backoff_s=0.01,
                                           timeout_s=0.3), {})
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"no answer after 3 tries \(last: URLError"):
        endpoint.complete("hello", seed=0)
    assert time.monotonic() - started >= 0.01 + 0.02


def test_a_base_url_without_http_is_refused(dataset, tmp_path):
    from engine.errors import InputError

    with pytest.raises(InputError, match="http:// or https://"):
        config(dataset, tmp_path / "x", "127.0.0.1:8000/v1")


def build_request(marker):
    return f"Passage: {marker} text"


@pytest.mark.slow
def test_annotate_llm_cli_sends_the_key_from_the_named_variable(stub, dataset, tmp_path):
    import os

    env = {**os.environ, "STUB_KEY": "sekrit"}
    result = subprocess.run(
        [sys.executable, "-m", "engine", "annotate", "llm", "--dataset", str(dataset), "--out", str(tmp_path / "c"),
         "--model", "stub-model", "--base-url", stub.url, "--api-key-env", "STUB_KEY", "--timeout", "0.3",
         "--backoff", "0.05", "--max-tries", "3", "--json"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["annotation"] == "llm" and printed["n_pairs"] == 13
    assert set(stub.headers) == {"Bearer sekrit"}
