"""The evaluation's negatives kept out of training (issue 27): whole articles relevant
to no test query, seeded, whose training pairs are left out, so Eq. 5 never scores a
test pair against passages the model was trained on."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.config import EvalConfig, TrainConfig
from engine.data import (
    held_out_passages,
    load_retrieval_data,
    passage_articles,
    training_pairs,
)
from engine.errors import InputError
from engine.eval_protocol import describe
from engine.evaluate import build_eval_set
from tests.helpers import write_beir

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev"
ARTICLES, PER_ARTICLE, TEST_ARTICLES = 20, 10, 6


def write_articles(folder: Path) -> Path:
    """20 articles of 10 passages (one title each); every passage of the first 14 has a
    train query, every passage of the last 6 a test query: as squad-dev, split by
    article, every passage is a training or a test positive."""
    rng = np.random.default_rng(0)
    corpus, queries, train, test = [], [], [], []
    for article in range(ARTICLES):
        for paragraph in range(PER_ARTICLE):
            pid = f"a{article}p{paragraph}"
            words = " ".join(f"w{i}" for i in rng.choice(200, 8, replace=False))
            corpus.append({"_id": pid, "title": f"Article {article}", "text": words})
            qid = f"q{pid}"
            queries.append({"_id": qid, "text": words.split()[0]})
            (test if article >= ARTICLES - TEST_ARTICLES else train).append(f"{qid}\t{pid}\t1\n")
    header = "query-id\tcorpus-id\tscore\n"
    return write_beir(folder, corpus, queries, {"train": header + "".join(train), "test": header + "".join(test)})


@pytest.fixture()
def articles(tmp_path):
    return load_retrieval_data(write_articles(tmp_path / "articles"))


def test_passages_sharing_a_title_are_one_article(articles):
    groups = passage_articles(articles)  # (n_passages,)
    assert len(np.unique(groups)) == ARTICLES
    assert all(len(np.unique(groups[a * PER_ARTICLE:(a + 1) * PER_ARTICLE])) == 1 for a in range(ARTICLES))


def test_the_held_out_pool_is_whole_articles_relevant_to_no_test_query(articles):
    held_out = held_out_passages(articles, 25, seed=0)
    assert len(held_out) == 30  # three whole articles: the third passes 25
    test_rows = set(articles.pairs("test")[:, 1].tolist())
    assert not test_rows & set(held_out.tolist())
    groups = passage_articles(articles)
    for article in np.unique(groups[held_out]):
        assert set(np.flatnonzero(groups == article)) <= set(held_out.tolist())  # all of it
    assert np.array_equal(held_out, held_out_passages(articles, 25, seed=0))  # seeded
    assert not np.array_equal(held_out, held_out_passages(articles, 25, seed=1))
    assert len(held_out_passages(articles, 0, seed=0)) == 0


def test_more_held_out_passages_than_the_untested_articles_hold_is_refused(articles):
    with pytest.raises(InputError, match="only 140 passages lie in articles relevant to no test query"):
        held_out_passages(articles, 141, seed=0)


def test_the_held_out_articles_training_pairs_are_left_out(articles):
    held_out = held_out_passages(articles, 25, seed=0)
    pairs = training_pairs(articles, held_out=held_out)
    assert pairs.n_available == 140 - 30 and len(pairs.pairs) == 110
    assert not np.isin(pairs.pairs[:, 1], held_out).any()
    assert pairs.n_available == len(training_pairs(articles, size=None, held_out=held_out).pairs)


def test_an_eval_set_on_the_held_out_pool_counts_no_training_positive(articles, caplog):
    queries = passages = object()  # build_eval_set only keeps the tokens
    clean = build_eval_set(articles, queries, passages, EvalConfig(negatives=20, repeats=1, held_out_negatives=25))
    assert clean.negative_pool == "held-out" and clean.pool_size == 30 and clean.pool_training_positives == 0
    drawn = clean.passage_rows[clean.negatives.reshape(-1)]  # (repeats * pairs * k,) corpus rows
    held_out = held_out_passages(articles, 25, seed=0)
    assert set(drawn.tolist()) == set(held_out.tolist())
    assert not np.isin(drawn, training_pairs(articles, held_out=held_out).pairs[:, 1]).any()
    # the paper's pool on this corpus: every passage it can draw is a training positive, and it says so
    paper = build_eval_set(articles, queries, passages, EvalConfig(negatives=20, repeats=1))
    assert paper.negative_pool == "unjudged" and paper.pool_training_positives == paper.pool_size == 140
    assert "140 of the 140 passages the evaluation negatives are drawn from (100%) are training positives" \
        in caplog.text


def test_the_protocol_names_the_pool_and_its_training_positives():
    assert describe({"negatives": 256, "pool": 300, "negative_pool": "held-out", "pool_training_positives": 0}) \
        == "k=256, held-out pool 300 (0 training positives)"


def test_a_held_out_pool_changes_the_measurement_digest_the_default_does_not():
    base = TrainConfig(dataset="x")
    assert base.measurement_digest() == replace(base, eval=EvalConfig(held_out_negatives=0)).measurement_digest()
    assert base.measurement_digest() != replace(base, eval=EvalConfig(held_out_negatives=300)).measurement_digest()
    with pytest.raises(InputError, match="held_out_negatives must be at least 0"):
        EvalConfig(held_out_negatives=-1)


@pytest.mark.slow
@pytest.mark.skipif(not SQUAD.is_dir(), reason="../shared/data/squad-dev is absent")
def test_a_squad_dev_run_reports_a_pool_with_no_training_positive(tmp_path, one_torch_thread):
    from engine.train import train
    from store import Store

    store = Store(tmp_path / "store.duckdb")
    cfg = TrainConfig(dataset=str(SQUAD), model="scratch-L1-H32", tokenizer_vocab_size=500, steps=2, batch_size=8,
                      negatives=16, negatives_from="corpus", max_query_length=16, max_passage_length=32,
                      eval_every=2, checkpoint_every=0, run_id="clean-pool",
                      eval=EvalConfig(repeats=1, max_test_pairs=50, ranking="never", held_out_negatives=300))
    result = train(cfg, store=store)
    fingerprint = store.runs().set_index("run_id").loc["clean-pool", "eval_fingerprint"]
    fingerprint = fingerprint if isinstance(fingerprint, dict) else __import__("json").loads(fingerprint)
    assert fingerprint["negative_pool"] == "held-out" and fingerprint["pool_training_positives"] == 0
    data = load_retrieval_data(SQUAD)
    held_out = held_out_passages(data, 300, seed=0)
    assert result.train_pairs == len(training_pairs(data, held_out=held_out).pairs) < len(data.pairs("train"))
