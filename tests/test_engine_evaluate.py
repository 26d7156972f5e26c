"""Contrastive entropy (Eq. 5) and the ranking metrics, on encoders whose answer is
known: all scores equal, untrained, and perfect."""
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from engine.data import load_retrieval_data
from engine.evaluate import (
    EvalConfig,
    build_eval_set,
    contrastive_entropy,
    evaluate,
    ranking_metrics,
)
from engine.ladder import LADDER
from engine.model import BiEncoder, scratch_encoder
from engine.tokenize_cache import tokenize_cached
from tests.helpers import word_tokenizer, write_beir

LOG_257 = math.log(257)


class ConstantEncoder(nn.Module):
    """Every text gets the same vector: every score is equal."""

    def encode(self, input_ids, attention_mask):
        return torch.ones(len(input_ids), 8)


class PerfectEncoder(nn.Module):
    """A query and its positive passage share a one-hot direction; nothing else does."""

    def __init__(self, data, queries, passages, scale=30.0):
        super().__init__()
        self.scale = scale
        self.key_of = {}
        for q, p in data.pairs(data.test_split):
            self.key_of[self._key(queries, q)] = p
            self.key_of[self._key(passages, p)] = p
        self.dim = len(data.passages) + 1
        self.calls = 0

    @staticmethod
    def _key(tokens, row):
        return tuple(tokens.ids[tokens.offsets[row]: tokens.offsets[row + 1]].tolist())

    def encode(self, input_ids, attention_mask):
        self.calls += len(input_ids)
        out = torch.zeros(len(input_ids), self.dim)
        for i, (ids, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
            key = tuple(t for t, m in zip(ids, mask) if m)
            out[i, self.key_of.get(key, self.dim - 1)] = self.scale
        out[:, -1] *= 0  # passages relevant to no test query: the zero vector
        return out


def test_equal_scores_give_exactly_log_257(synthetic):
    data, _, queries, passages = synthetic
    eval_set = build_eval_set(data, queries, passages, EvalConfig(repeats=2))
    assert evaluate(ConstantEncoder(), eval_set, ranking=False)["contrastive_entropy"] == pytest.approx(LOG_257, abs=1e-12)
    reps = torch.full((5, 3), 0.7)
    negatives = np.random.default_rng(0).integers(0, 5, size=(3, 4, 256))
    assert contrastive_entropy(reps, reps, np.arange(4) % 5, np.arange(4), negatives) == pytest.approx(LOG_257, abs=1e-12)


def test_untrained_encoder_is_near_log_257(synthetic):
    data, tokenizer, queries, passages = synthetic
    model = BiEncoder(scratch_encoder(LADDER["scratch-L1-H64"].config(vocab_size=len(tokenizer)), seed=0))
    metrics = evaluate(model, build_eval_set(data, queries, passages, EvalConfig(repeats=2)), ranking=False)
    # 5.28 here: a random encoder still matches some of the 4 words a query shares with its passage
    assert abs(metrics["contrastive_entropy"] - LOG_257) < 0.5


def test_perfect_encoder_is_near_zero_and_ranks_perfectly(synthetic):
    data, _, queries, passages = synthetic
    eval_set = build_eval_set(data, queries, passages, EvalConfig(repeats=3))
    encoder = PerfectEncoder(data, queries, passages)
    metrics = evaluate(encoder, eval_set)
    assert metrics["contrastive_entropy"] < 1e-6
    for name in ("mrr@10", "ndcg@10", "map@10", "recall@1000"):
        assert metrics[name] == pytest.approx(1.0), name
    # each passage of the sub-corpus and each test query encoded exactly once
    assert encoder.calls == len(eval_set.passage_rows) + len(eval_set.query_rows)


def test_pool_is_fixed_and_holds_no_test_positive(synthetic):
    data, _, queries, passages = synthetic
    config = EvalConfig(repeats=2, subcorpus_size=380)
    first = build_eval_set(data, queries, passages, config)
    again = build_eval_set(data, queries, passages, config)
    assert np.array_equal(first.negatives, again.negatives) and np.array_equal(first.passage_rows, again.passage_rows)
    test_positives = set(data.pairs("test")[:, 1])
    assert len(first.passage_rows) == 380 and test_positives <= set(first.passage_rows)
    pool = {int(first.passage_rows[i]) for i in first.negatives.ravel()}
    assert not pool & test_positives
    for draw in first.negatives.reshape(-1, 256):
        assert len(set(draw)) == 256  # distinct negatives per pair
    other_seed = build_eval_set(data, queries, passages, EvalConfig(repeats=2, subcorpus_size=380, seed=1))
    assert not np.array_equal(first.negatives, other_seed.negatives)


def test_small_pool_skips_contrastive_entropy(synthetic, caplog):
    data, _, queries, passages = synthetic
    with caplog.at_level(logging.WARNING):
        eval_set = build_eval_set(data, queries, passages, EvalConfig(subcorpus_size=100))
    assert eval_set.negatives is None and "contrastive entropy is not computed" in caplog.text
    metrics = evaluate(PerfectEncoder(data, queries, passages), eval_set)
    assert "contrastive_entropy" not in metrics and metrics["mrr@10"] == pytest.approx(1.0)


def test_max_test_pairs_is_a_seeded_subset(synthetic):
    data, _, queries, passages = synthetic
    eval_set = build_eval_set(data, queries, passages, EvalConfig(repeats=1, max_test_pairs=10))
    assert len(eval_set.pair_query) == 10 and eval_set.negatives.shape == (1, 10, 256)


def test_ndcg_uses_grades(tmp_path):
    """One query judged p1 (grade 2) and p2 (grade 1): ranking p2 first loses nDCG but
    not MRR, which counts any relevant passage."""
    corpus = [{"_id": f"p{i}", "text": f"text {i}"} for i in range(1, 5)]
    folder = write_beir(tmp_path / "graded", corpus, [{"_id": "q", "text": "q"}],
                        {"test": "query-id\tcorpus-id\tscore\nq\tp1\t2\nq\tp2\t1\n"})
    data = load_retrieval_data(folder)
    tokenizer = word_tokenizer(data.passages + data.queries)
    eval_set = build_eval_set(data, tokenize_cached(data.queries, tokenizer, 8),
                              tokenize_cached(data.passages, tokenizer, 8), EvalConfig(negatives=1))
    q = torch.tensor([[1.0]])
    order = {pid: i for i, pid in enumerate(eval_set.passage_ids)}
    p = torch.zeros(len(eval_set.passage_ids), 1)
    p[order["p1"]], p[order["p2"]] = 1.0, 2.0  # the grade-1 passage ranked first
    metrics = ranking_metrics(q, p, eval_set)
    assert metrics["mrr@10"] == pytest.approx(1.0)
    ideal = 3 + 1 / math.log2(3)  # gains 2^2 - 1 = 3 and 2^1 - 1 = 1, trec_eval's nDCG uses the grade as gain
    assert metrics["ndcg@10"] < 1.0
    p[order["p1"]], p[order["p2"]] = 2.0, 1.0
    assert ranking_metrics(q, p, eval_set)["ndcg@10"] == pytest.approx(1.0)
    assert ideal > 0


def test_ranking_over_a_small_sub_corpus_reads_the_top_10_and_matches_the_full_run():
    """At most 1,000 passages: the run handed to ir-measures holds the top 10 per query,
    and every measure equals the one computed from the whole ranking."""
    from types import SimpleNamespace

    import ir_measures
    from ir_measures import AP, RR, R, nDCG

    from engine.evaluate import _run, dense_scorer

    generator = torch.Generator().manual_seed(0)
    q_reps, p_reps = torch.randn(40, 8, generator=generator), torch.randn(300, 8, generator=generator)
    qrels = {f"q{i}": {f"p{(7 * i + j) % 300}": 1 + j % 2 for j in range(3)} for i in range(40)}
    eval_set = SimpleNamespace(query_ids=[f"q{i}" for i in range(40)], passage_ids=[f"p{i}" for i in range(300)],
                               qrels=qrels, relevance_threshold=1)
    fast = ranking_metrics(q_reps, p_reps, eval_set)
    full = ir_measures.calc_aggregate([RR @ 10, nDCG @ 10, AP @ 10, R @ 1000], qrels,
                                      _run(dense_scorer(q_reps, p_reps), 300, eval_set, 1000))
    assert fast == pytest.approx({"mrr@10": full[RR @ 10], "ndcg@10": full[nDCG @ 10], "map@10": full[AP @ 10],
                                  "recall@1000": full[R @ 1000]})
    assert 0 < fast["mrr@10"] < 1 and fast["recall@1000"] == 1.0
