"""A new user's walk through the app with the demo study (helper H3's walk in a
headless browser, then pinned here with AppTest): what the overview counts, how the
Runs and Plan runs tables write N and D, and what each page says on first sight.
tests/conftest.py gives every test a fresh store."""
from __future__ import annotations

import pandas as pd
import pytest

from store import Store
from store.demo import PROJECT_ROOT, load_demo
from tests.test_app import assert_clean, metric, open_page

DEMO = PROJECT_ROOT / "demo" / "cpu-study.json"


@pytest.fixture
def demo_store() -> Store:
    if not DEMO.exists():
        pytest.skip(f"no demo study at {DEMO}")
    store = Store()
    load_demo(store, DEMO)
    return store


def test_the_overview_counts_the_data_sets_its_runs_are_on(demo_store):
    datasets = sorted(set(demo_store.runs()["dataset"]))
    at = open_page()
    assert_clean(at)
    assert metric(at, "Data sets") == str(len(datasets)) != "0"
    assert metric(at, "Runs") == str(len(demo_store.runs()))


def test_store_info_names_registered_and_run_data_sets(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.register_dataset("msmarco", language="en", format="beir", path="x", n_passages=1,
                           n_queries=1, n_train_pairs=1, n_test_pairs=1)
    store.load_rows(pd.DataFrame({"n": [10, 20], "d": [5, 5], "loss": [1.0, 0.9],
                                 "dataset": ["squad-dev", "msmarco"]}), source="test")
    info = store.info()
    assert info["dataset_names"] == ["msmarco", "squad-dev"] and info["counts"]["datasets"] == 1
