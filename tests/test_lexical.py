"""The BM25 reference (issue 22 item 3): measured with the dense runs' own protocol."""
from pathlib import Path

import numpy as np
import pytest

from engine.config import EvalConfig
from engine.data import load_retrieval_data
from engine.evaluate import build_eval_set
from engine.lexical import bm25_reference, lexical_tokens
from tests.helpers import write_synthetic

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev"


def test_words_for_english_characters_for_chinese():
    assert lexical_tokens(["The red Apples, 42 of them."], "en") == [["red", "apples", "42", "them"]]
    assert lexical_tokens(["北京大学 in 2024"], "zh") == [["北", "京", "大", "学", "in", "2024"]]


def test_bm25_on_word_overlap_queries_ranks_their_passage_first(tmp_path):
    """The synthetic set's test queries are 4 words of their passage: BM25 finds them."""
    data = load_retrieval_data(write_synthetic(tmp_path / "syn"))
    eval_set = build_eval_set(data, None, None, EvalConfig(negatives=32, repeats=2))
    metrics = bm25_reference(data, eval_set)
    assert metrics["mrr@10"] > 0.9 and metrics["calibrated_entropy"] < 0.5
    assert set(metrics) >= {"contrastive_entropy", "calibrated_entropy", "temperature", "ndcg@10", "recall@1000"}


def test_bm25_of_unrelated_queries_is_a_random_scorer(tmp_path):
    """Queries that share no word with any passage score 0 everywhere: log(1 + k)."""
    data = load_retrieval_data(write_synthetic(tmp_path / "syn"))
    data.queries = [f"zzz{i}" for i in range(len(data.queries))]
    eval_set = build_eval_set(data, None, None, EvalConfig(negatives=32, repeats=1))
    metrics = bm25_reference(data, eval_set)
    assert metrics["contrastive_entropy"] == pytest.approx(np.log(33)) == pytest.approx(metrics["calibrated_entropy"])


@pytest.mark.skipif(not SQUAD.is_dir(), reason="../shared/data/squad-dev is absent")
def test_bm25_is_a_strong_reference_on_squad_dev():
    data = load_retrieval_data(SQUAD)
    eval_set = build_eval_set(data, None, None, EvalConfig(repeats=1, held_out_negatives=300))
    metrics = bm25_reference(data, eval_set)
    assert metrics["mrr@10"] > 0.6 and metrics["calibrated_entropy"] < 1.0  # questions copy their paragraph's words


def test_the_store_keeps_one_reference_per_data_set_protocol_and_method(tmp_path):
    from store import Store

    store = Store(tmp_path / "s.duckdb")
    fingerprint = {"negatives": 32, "repeats": 1, "pool": 100, "pool_seed": 0, "metric": "raw"}
    store.add_reference(dataset="syn", eval_fingerprint=fingerprint, method="bm25", metrics={"mrr@10": 0.5})
    store.add_reference(dataset="syn", eval_fingerprint=fingerprint, method="bm25", metrics={"mrr@10": 0.7})
    store.add_reference(dataset="syn", eval_fingerprint={**fingerprint, "negatives": 64}, method="bm25",
                        metrics={"mrr@10": 0.6})
    table = store.references("syn")
    assert sorted(table["mrr@10"]) == [0.6, 0.7] and set(table["source"]) == {"engine"}
    with pytest.raises(Exception, match="fingerprint"):
        store.add_reference(dataset="syn", eval_fingerprint=None, method="bm25", metrics={})


@pytest.mark.slow
def test_references_are_measured_once_per_protocol_of_the_stores_runs_and_travel_with_the_demo(
        tmp_path, one_torch_thread):
    from engine.eval_protocol import reference_protocol
    from engine.lexical import measure_references
    from engine.train import train
    from store import Store
    from store.demo import load_demo, write_demo
    from tests.helpers import tiny_config

    store = Store(tmp_path / "s.duckdb")
    dataset = write_synthetic(tmp_path / "syn")
    train(tiny_config(dataset, run_id="a", steps=4, eval_every=4), store=store)
    train(tiny_config(dataset, run_id="b", steps=4, eval_every=4, train_pairs=100), store=store)  # same protocol
    added = measure_references(store)
    assert len(added) == 1 and added[0]["metrics"]["mrr@10"] > 0.9
    assert measure_references(store) == []  # stored once
    run = store.run("a")
    assert store.references()["eval_protocol"].tolist() == [reference_protocol(run["eval_fingerprint"])]
    demo = write_demo(store, {"title": "t"}, tmp_path / "demo.json")
    other = Store(tmp_path / "other.duckdb")
    load_demo(other, demo)
    loaded = other.references()
    assert loaded["source"].tolist() == ["demo"] and loaded["mrr@10"].tolist() == pytest.approx(
        [added[0]["metrics"]["mrr@10"]], abs=1e-6)
    other.remove_demo()
    assert other.references().empty
