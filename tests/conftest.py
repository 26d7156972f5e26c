"""Shared test set-up: the project root on sys.path and a private store per test."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def private_workbench_dirs(tmp_path, monkeypatch):
    """No test touches the user's store, runs or cache folders."""
    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "store" / "workbench.duckdb"))
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def no_demo_study(tmp_path, monkeypatch):
    """The app loads no demo study unless a test gives it one (store.demo.DEMO_FILE)."""
    import store.demo

    monkeypatch.setattr(store.demo, "DEMO_FILE", tmp_path / "no-demo.json")


@pytest.fixture()
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine
    two spinning threads per process slow everything down many times over."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def demo_store():
    """The private store with the committed demo study loaded (skipped where it is absent)."""
    from store import Store
    from store.demo import PROJECT_ROOT, load_demo

    path = PROJECT_ROOT / "demo" / "cpu-study.json"
    if not path.exists():
        pytest.skip(f"no demo study at {path}")
    store = Store()
    load_demo(store, path)
    return store


@pytest.fixture
def seeded_store():
    """The private store with `tests.helpers.seeded_rows` loaded."""
    from store import Store
    from tests.helpers import seeded_rows
    store = Store()
    store.load_rows(seeded_rows(), source="test")
    return store


@pytest.fixture()
def synthetic(tmp_path):
    """The synthetic set tokenized word by word: (data, tokenizer, queries, passages)."""
    from engine.data import load_retrieval_data
    from engine.tokenize_cache import tokenize_cached
    from tests.helpers import word_tokenizer, write_synthetic

    data = load_retrieval_data(write_synthetic(tmp_path / "syn"))
    tokenizer = word_tokenizer(data.passages + data.queries)
    queries = tokenize_cached(data.queries, tokenizer, 16)
    passages = tokenize_cached(data.passages, tokenizer, 32)
    return data, tokenizer, queries, passages


@pytest.fixture()
def stub_figures(monkeypatch):
    """Reports written with placeholder figures: for tests of what a report's files are and
    where they go, not of how charts render (vl-convert: about 0.8 s a figure here)."""
    import engine.report

    monkeypatch.setattr(engine.report, "chart_svg", lambda chart: "<svg></svg>")
    monkeypatch.setattr(engine.report, "chart_png", lambda chart, scale=engine.report.PNG_SCALE: b"\x89PNG")
