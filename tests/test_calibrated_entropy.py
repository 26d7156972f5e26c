"""Calibrated contrastive entropy (engine/evaluate.py): Eq. 5 at a cross-fitted
temperature, on score matrices whose answer is known."""
import math

import numpy as np
import pytest
import torch

from engine.evaluate import (
    EvalConfig,
    build_eval_set,
    calibrated_contrastive_entropy,
    contrastive_entropy,
    evaluate,
    fit_temperature,
    pair_entropies,
    score_margins,
    split_halves,
)
from tests.test_engine_evaluate import ConstantEncoder


def retrieval_reps(n_queries=300, n_pool=800, dim=32, noise=1.5, seed=0):
    """Queries, their positives (the query plus noise) and a pool of unrelated passages:
    q_reps (n_queries, dim), p_reps (n_queries + n_pool, dim), positive i is passage i."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, dim))
    positives = q + noise * rng.standard_normal((n_queries, dim))
    pool = rng.standard_normal((n_pool, dim)) * math.sqrt(1 + noise**2)
    return torch.tensor(q), torch.tensor(np.concatenate([positives, pool]))


def draws(n_pairs, start, pool, k=64, repeats=3, seed=0):
    """(repeats, n_pairs, k) distinct pool indices per pair and repeat."""
    rng = np.random.default_rng(seed)
    return np.stack([[start + rng.choice(pool, k, replace=False) for _ in range(n_pairs)] for _ in range(repeats)])


@pytest.fixture(scope="module")
def matrix():
    q, p = retrieval_reps()
    pairs = np.arange(len(q))
    return q, p, pairs, pairs, draws(len(q), len(q), len(p) - len(q))


def calibrated(q, p, pair_query, pair_passage, negatives, seed=0):
    margins = score_margins(q, p, pair_query, pair_passage, negatives)
    return calibrated_contrastive_entropy(margins, split_halves(len(pair_query), seed))


@pytest.mark.parametrize("scale", [0.01, 0.2, 3.0, 40.0])
def test_scaling_every_score_leaves_calibrated_entropy_unchanged(matrix, scale):
    q, p, pair_query, pair_passage, negatives = matrix
    reference = calibrated(q, p, pair_query, pair_passage, negatives)
    scaled = calibrated(q * scale, p, pair_query, pair_passage, negatives)  # every score times `scale`
    assert scaled.entropy == pytest.approx(reference.entropy, abs=1e-6)
    assert scaled.temperature == pytest.approx(reference.temperature * scale, rel=1e-4)
    # the raw entropy is not scale-free: that is the point
    raw = contrastive_entropy(q * scale, p, pair_query, pair_passage, negatives)
    assert abs(raw - contrastive_entropy(q, p, pair_query, pair_passage, negatives)) > 0.05


@pytest.mark.parametrize("k", [1, 16, 256])
def test_equal_scores_give_log_1_plus_k_raw_and_calibrated(k):
    reps = torch.full((6, 4), 0.7, dtype=torch.float64)
    negatives = draws(40, 0, 300, k=k, repeats=2)
    p = torch.full((300, 4), 0.7, dtype=torch.float64)
    pair_query, pair_passage = np.arange(40) % 6, np.arange(40) % 300
    raw = contrastive_entropy(reps, p, pair_query, pair_passage, negatives)
    assert raw == pytest.approx(math.log(1 + k), abs=1e-12)
    result = calibrated(reps, p, pair_query, pair_passage, negatives)
    assert result.entropy == pytest.approx(math.log(1 + k), abs=1e-12)


def test_constant_encoder_reports_log_257_for_both(synthetic):
    data, _, queries, passages = synthetic
    metrics = evaluate(ConstantEncoder(), build_eval_set(data, queries, passages, EvalConfig(repeats=2)), ranking=False)
    assert metrics["contrastive_entropy"] == pytest.approx(math.log(257), abs=1e-12)
    assert metrics["calibrated_entropy"] == pytest.approx(math.log(257), abs=1e-12)
    assert metrics["temperature"] > 0


@pytest.mark.parametrize("scale", [0.3, 1.0, 8.0])
def test_calibrated_is_at_most_raw_up_to_cross_fitting_noise(matrix, scale):
    q, p, pair_query, pair_passage, negatives = matrix
    raw = contrastive_entropy(q * scale, p, pair_query, pair_passage, negatives)
    result = calibrated(q * scale, p, pair_query, pair_passage, negatives)
    assert result.entropy <= raw + 0.01
    assert result.entropy < math.log(65)  # this scorer ranks: better than random at its best scale


def test_an_overconfident_scorer_is_forgiven_its_scale_not_its_ranking(matrix):
    q, p, pair_query, pair_passage, negatives = matrix
    raw = contrastive_entropy(q * 8, p, pair_query, pair_passage, negatives)
    result = calibrated(q * 8, p, pair_query, pair_passage, negatives)
    assert raw - result.entropy > 1.0 and result.temperature > 1.0
    # a scorer that ranks worse (noisier positives) stays worse once both are calibrated
    q2, p2 = retrieval_reps(noise=3.0)
    worse = calibrated(q2, p2, pair_query, pair_passage, negatives)
    assert worse.entropy > result.entropy + 0.2


def test_cross_fitting_is_held_out_and_deterministic(matrix):
    q, p, pair_query, pair_passage, negatives = matrix
    first, again = calibrated(q, p, pair_query, pair_passage, negatives), calibrated(q, p, pair_query, pair_passage,
                                                                                     negatives)
    assert first == again
    halves = split_halves(len(pair_query), 0)
    assert np.array_equal(halves, split_halves(len(pair_query), 0)) and halves.sum() == len(pair_query) // 2
    assert not np.array_equal(halves, split_halves(len(pair_query), 1))
    # in-sample, the tau fitted on all pairs can only do better than held-out ones
    margins = score_margins(q, p, pair_query, pair_passage, negatives)
    in_sample = pair_entropies(margins, fit_temperature(margins)).mean().item()
    assert in_sample <= first.entropy
    assert in_sample <= min(pair_entropies(margins, tau).mean().item() for tau in (0.5, 1.0, 2.0, 4.0)) + 1e-9


def test_fewer_than_two_pairs_have_no_calibrated_entropy():
    reps = torch.eye(3, dtype=torch.float64)
    margins = score_margins(reps, reps, np.array([0]), np.array([0]), np.array([[[1, 2]]]))
    assert calibrated_contrastive_entropy(margins, split_halves(1, 0)) is None


def test_evaluate_reports_both_with_the_eval_seed(synthetic):
    from engine.ladder import LADDER
    from engine.model import BiEncoder, scratch_encoder

    data, tokenizer, queries, passages = synthetic
    model = BiEncoder(scratch_encoder(LADDER["scratch-L1-H64"].config(vocab_size=len(tokenizer)), seed=0))
    eval_set = build_eval_set(data, queries, passages, EvalConfig(repeats=2))
    metrics = evaluate(model, eval_set, ranking=False)
    assert {"contrastive_entropy", "calibrated_entropy", "temperature"} <= set(metrics)
    assert metrics["calibrated_entropy"] <= metrics["contrastive_entropy"] + 0.01
    assert np.array_equal(eval_set.halves, split_halves(len(eval_set.pair_query), 0))
    other = build_eval_set(data, queries, passages, EvalConfig(repeats=2, seed=4))
    assert not np.array_equal(other.halves, split_halves(len(other.pair_query), 0))
