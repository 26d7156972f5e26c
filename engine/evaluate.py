"""Measuring a bi-encoder: contrastive entropy (Eq. 5) and ranking metrics.

Contrastive entropy: for each test pair (q, p+), -log of the softmax probability of
p+ against k = 256 negatives, the negatives drawn per pair from a fixed pool of
passages relevant to no test query; averaged over pairs and over a few seeded draws.
The pool and the draws depend on the data and the seed only, never on the model, so
every model is measured against the same negatives.

Calibrated contrastive entropy (beside the raw one, which stays the paper's number):
Eq. 5 on the scores divided by a temperature tau fitted at each evaluation. Raw entropy
punishes score scale as well as ranking: on squad-dev (scratch-L1-H128, 2,000 pairs,
300 steps) lr 3e-3 ranked 2.4x better than 5e-4 (MRR@10 0.068 against 0.028) but its
dot products grew (score std 5.1 against 1.6), and its final raw entropy, 7.28, was
worse than a random scorer's log 257 = 5.55, while at its best scale it read 4.72
against 5.06 (issue 15). Tau is fitted without optimism, cross-fitted: the test pairs
are split into two halves by a permutation seeded with the evaluation's seed; tau is
fitted on one half (the mean entropy minimised over log tau in TEMPERATURE_BOUNDS) and
the entropy measured on the other, and the reverse. The calibrated entropy is the mean
over all pairs of these held-out entropies; the reported tau is the geometric mean of
the two fits. Multiplying every score by c > 0 multiplies the fitted tau by c and
leaves the calibrated entropy unchanged (within the bounds); a scorer whose scores all
tie gives log(1 + k) at any tau, like the raw one.

Ranking metrics (the paper's Figure 2): exact search over a sub-corpus made of the
test positives plus a seeded sample of the other passages (the paper: 100,000 in
all), scored with ir-measures: MRR@10, nDCG@10 (graded where the qrels are), MAP@10
(AP@10) and Recall@1000. The sampled others are the contrastive-entropy pool too, so
each passage is encoded once per evaluation.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.config import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH, EvalConfig  # noqa: F401 (re-exported)
from engine.data import RetrievalData, held_out_passages
from engine.errors import InputError
from engine.tokenize_cache import TokenizedTexts

log = logging.getLogger(__name__)

RANKING_DEPTH = 1000
SCORE_BLOCK = 2**25  # scores held at once when scoring against the sub-corpus
TEMPERATURE_BOUNDS = (1e-4, 1e4)  # where the calibrated entropy's tau is searched (log-spaced)


@dataclass
class EvalSet:
    """Everything an evaluation needs that does not depend on the model."""

    query_ids: list[str]  # test queries, aligned with query_rows
    query_rows: np.ndarray  # (n_queries,) rows of the query tokens
    passage_ids: list[str]  # sub-corpus, aligned with passage_rows
    passage_rows: np.ndarray  # (n_subcorpus,) rows of the passage tokens: positives first, then the pool
    pair_query: np.ndarray  # (n_pairs,) index into query_rows
    pair_passage: np.ndarray  # (n_pairs,) index into passage_rows
    negatives: np.ndarray | None  # (repeats, n_pairs, k) index into passage_rows; None: pool smaller than k
    halves: np.ndarray  # (n_pairs,) 0 or 1: the cross-fitting half of each pair (calibrated entropy)
    qrels: dict[str, dict[str, int]]  # judgments of the test queries, all grades
    relevance_threshold: int
    query_tokens: TokenizedTexts
    passage_tokens: TokenizedTexts
    negative_pool: str  # "held-out" (kept out of training) or "unjudged" (relevant to no test query)
    pool_size: int  # passages the negatives are drawn from
    pool_training_positives: int  # of them, passages some training pair has as its positive


def build_eval_set(
    data: RetrievalData, query_tokens: TokenizedTexts, passage_tokens: TokenizedTexts, config: EvalConfig,
    *, held_out: np.ndarray | None = None, training_rows: np.ndarray | None = None,
) -> EvalSet:
    """The evaluation of `data`'s test split under `config`. The negatives' pool is the
    held-out articles (`config.held_out_negatives` > 0; `held_out` gives their rows
    where the caller has them) or a sample of the passages relevant to no test query.
    `training_rows` (corpus rows some training pair has as its positive; default: the
    train split's) are counted in the pool, and a pool that holds any is warned of."""
    split = data.test_split
    pairs = data.pairs(split)  # (n_pairs, 2) query row, passage row
    if len(pairs) == 0:
        raise InputError(f"{data.path}: the {split} split has no positive judgments to evaluate on")
    if config.max_test_pairs and config.max_test_pairs < len(pairs):
        keep = np.random.default_rng([config.seed, 7]).choice(len(pairs), config.max_test_pairs, replace=False)
        pairs = pairs[np.sort(keep)]
    positives = np.unique(data.pairs(split)[:, 1])  # relevant to some test query: never a negative
    if config.held_out_negatives:
        pool = held_out if held_out is not None else held_out_passages(data, config.held_out_negatives, config.seed)
    else:
        pool = _sample_pool(len(data.passages), positives, config)
    trained = _pool_training_positives(data, pool, training_rows, held_out=config.held_out_negatives > 0)
    passage_rows = np.concatenate([positives, pool])
    query_rows, pair_query = np.unique(pairs[:, 0], return_inverse=True)
    position = {row: i for i, row in enumerate(passage_rows)}
    pair_passage = np.array([position[row] for row in pairs[:, 1]], dtype=np.int64)
    query_ids = [data.query_ids[row] for row in query_rows]
    return EvalSet(
        query_ids=query_ids,
        query_rows=query_rows,
        passage_ids=[data.passage_ids[row] for row in passage_rows],
        passage_rows=passage_rows,
        pair_query=pair_query,
        pair_passage=pair_passage,
        negatives=_draw_negatives(len(pairs), len(positives), len(pool), config),
        halves=split_halves(len(pairs), config.seed),
        qrels={qid: data.qrels[split][qid] for qid in query_ids},
        relevance_threshold=data.relevance_threshold,
        query_tokens=query_tokens,
        passage_tokens=passage_tokens,
        negative_pool="held-out" if config.held_out_negatives else "unjudged",
        pool_size=len(pool),
        pool_training_positives=trained,
    )


def _pool_training_positives(data: RetrievalData, pool: np.ndarray, training_rows: np.ndarray | None,
                             held_out: bool) -> int:
    """How many of the `pool` rows are training positives (`training_rows`, default the
    train split's, less a held-out pool, whose pairs training leaves out); warned of."""
    if training_rows is None:
        training_rows = data.pairs("train")[:, 1] if "train" in data.qrels else np.zeros(0, dtype=np.int64)
        training_rows = np.setdiff1d(training_rows, pool) if held_out else training_rows
    trained = int(np.isin(pool, training_rows).sum())
    if trained:
        log.warning(
            "%d of the %d passages the evaluation negatives are drawn from (%.0f%%) are training positives: a "
            "trained model is scored against passages it was trained on, which rewards memorising them; "
            "--eval-held-out-negatives N keeps a pool of whole articles out of training", trained, len(pool),
            100 * trained / max(len(pool), 1))
    return trained


def _sample_pool(n_passages: int, positives: np.ndarray, config: EvalConfig) -> np.ndarray:
    """Seeded sample of passages relevant to no test query, filling the sub-corpus."""
    others = np.setdiff1d(np.arange(n_passages), positives)
    size = min(max(config.subcorpus_size - len(positives), 0), len(others))
    chosen = np.random.default_rng([config.seed, 1]).choice(len(others), size, replace=False)
    return others[np.sort(chosen)]


def _draw_negatives(n_pairs: int, pool_start: int, pool_size: int, config: EvalConfig) -> np.ndarray | None:
    """(repeats, n_pairs, k) distinct pool positions per pair and repeat, seeded."""
    k = config.negatives
    if pool_size < k:
        log.warning(
            "only %d passages are relevant to no test query (need k = %d): contrastive entropy is not "
            "computed; lower --eval-negatives or use a larger corpus", pool_size, k,
        )
        return None
    negatives = np.empty((config.repeats, n_pairs, k), dtype=np.int32)
    for repeat in range(config.repeats):
        rng = np.random.default_rng([config.seed, 2, repeat])
        for pair in range(n_pairs):
            negatives[repeat, pair] = rng.choice(pool_size, k, replace=False)
    return negatives + pool_start


def split_halves(n_pairs: int, seed: int) -> np.ndarray:
    """(n_pairs,) 0 or 1, half the pairs each, by a permutation seeded with `seed`."""
    order = np.random.default_rng([seed, 3]).permutation(n_pairs)
    halves = np.zeros(n_pairs, dtype=np.int8)
    halves[order[n_pairs // 2:]] = 1
    return halves


# ---------------------------------------------------------------- encoding


@torch.inference_mode()
def encode_rows(model, tokens: TokenizedTexts, rows: np.ndarray, *, batch_size: int, device,
                progress=None) -> torch.Tensor:
    """(len(rows), dim) vectors of `rows`, in length-sorted batches so padding is
    small; float32 on `device`, computed in fp32 on every path (no autocast: a run's
    training-time evaluation and `engine evaluate` give one value for one checkpoint).
    `progress.advance(k)` after each batch of k, if given."""
    order = np.argsort(tokens.lengths(rows), kind="stable")
    out = None
    was_training = model.training
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, attention_mask = tokens.batch(rows[chunk])  # (b, len)
        reps = model.encode(input_ids.to(device), attention_mask.to(device)).float()  # (b, dim)
        if out is None:
            out = torch.empty(len(rows), reps.shape[1], device=device)
        out[torch.as_tensor(chunk, device=device)] = reps
        if progress is not None:
            progress.advance(len(chunk))
    model.train(was_training)
    return out


# ---------------------------------------------------------------- metrics


def contrastive_entropy(
    q_reps: torch.Tensor, p_reps: torch.Tensor, pair_query: np.ndarray, pair_passage: np.ndarray,
    negatives: np.ndarray,
) -> float:
    """Eq. 5 averaged over pairs and repeats. q_reps (n_queries, dim), p_reps
    (n_passages, dim); negatives (repeats, n_pairs, k) index p_reps."""
    return pair_entropies(score_margins(q_reps, p_reps, pair_query, pair_passage, negatives)).mean().item()


def score_margins(
    q_reps: torch.Tensor, p_reps: torch.Tensor, pair_query: np.ndarray, pair_passage: np.ndarray,
    negatives: np.ndarray,
) -> torch.Tensor:
    """(n_pairs, repeats, k) float64: each drawn negative's score minus its pair's
    positive score, all that Eq. 5 needs at any temperature."""
    return scorer_margins(dense_scorer(q_reps, p_reps), len(p_reps), pair_query, pair_passage, negatives)


def dense_scorer(q_reps: torch.Tensor, p_reps: torch.Tensor):
    """The scorer of a bi-encoder's vectors: query rows -> (b, n_passages) inner products (Eq. 4)."""
    return lambda queries: q_reps[torch.as_tensor(queries, device=q_reps.device)] @ p_reps.T


def scorer_margins(scorer, n_passages: int, pair_query: np.ndarray, pair_passage: np.ndarray,
                   negatives: np.ndarray) -> torch.Tensor:
    """`score_margins` of any `scorer` (query indices (b,) -> scores (b, n_passages)):
    a bi-encoder's (`dense_scorer`) or a lexical one's (engine.lexical)."""
    margins = None
    block = max(1, SCORE_BLOCK // max(n_passages, 1))
    for start in range(0, len(pair_query), block):
        pairs = slice(start, start + block)
        scores = scorer(pair_query[pairs]).double()  # (b, n_passages)
        device = scores.device
        if margins is None:
            margins = torch.empty(len(pair_query), len(negatives), negatives.shape[2], dtype=torch.float64,
                                  device=device)
        own = torch.as_tensor(pair_passage[pairs], device=device)
        positive = scores.gather(1, own[:, None])  # (b, 1)
        for repeat, draw in enumerate(negatives[:, pairs]):
            negative = scores.gather(1, torch.as_tensor(draw, device=device, dtype=torch.int64))  # (b, k)
            margins[pairs, repeat] = negative - positive
    return margins


def pair_entropies(margins: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(n_pairs,) Eq. 5 of each pair on scores divided by `temperature`, averaged over
    its repeats: log(1 + sum_j exp(margin_j / tau)) for margins (n_pairs, repeats, k)."""
    zero = torch.zeros((), dtype=margins.dtype, device=margins.device)
    return torch.logaddexp(zero, torch.logsumexp(margins / temperature, dim=2)).mean(dim=1)  # (n_pairs,)


@dataclass(frozen=True)
class CalibratedEntropy:
    entropy: float  # Eq. 5 at a cross-fitted temperature, mean over all pairs
    temperature: float  # geometric mean of the two halves' fitted tau


def calibrated_contrastive_entropy(margins: torch.Tensor, halves: np.ndarray) -> CalibratedEntropy | None:
    """Cross-fitted calibrated entropy (module docstring) of margins (n_pairs, repeats, k)
    split into `halves` (n_pairs,) 0/1; None when a half is empty (fewer than 2 pairs)."""
    halves = torch.as_tensor(halves, device=margins.device)
    parts = [margins[halves == 0], margins[halves == 1]]  # (n_half, repeats, k) each
    if min(len(part) for part in parts) == 0:
        return None
    total, log_taus = 0.0, []
    for fit_on, measure_on in ((parts[0], parts[1]), (parts[1], parts[0])):
        tau = fit_temperature(fit_on)
        total += pair_entropies(measure_on, tau).sum().item()
        log_taus.append(math.log(tau))
    return CalibratedEntropy(entropy=total / len(margins), temperature=math.exp(sum(log_taus) / 2))


def fit_temperature(margins: torch.Tensor) -> float:
    """The tau in TEMPERATURE_BOUNDS minimising the mean Eq. 5 of margins (n, repeats, k).
    Eq. 5 is convex in 1/tau, so unimodal in log tau: a bounded 1-D search finds it."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_tau: pair_entropies(margins, math.exp(log_tau)).mean().item(),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-10})
    return math.exp(result.x)


def ranking_metrics(q_reps: torch.Tensor, p_reps: torch.Tensor, eval_set: EvalSet) -> dict[str, float]:
    """MRR@10, nDCG@10, MAP@10 and Recall@1000 of exact search over the sub-corpus."""
    return scorer_ranking_metrics(dense_scorer(q_reps, p_reps), len(p_reps), eval_set)


def scorer_ranking_metrics(scorer, n_passages: int, eval_set: EvalSet) -> dict[str, float]:
    """`ranking_metrics` of any `scorer` (query indices -> scores (b, n_passages))."""
    import ir_measures
    from ir_measures import AP, R, RR, nDCG

    rel = eval_set.relevance_threshold
    measures = {"mrr@10": RR(rel=rel) @ 10, "ndcg@10": nDCG @ 10, "map@10": AP(rel=rel) @ 10,
                "recall@1000": R(rel=rel) @ RANKING_DEPTH}
    # A sub-corpus of at most 1,000 passages is retrieved whole: Recall@1000 is 1 and the
    # @10 measures read the top 10 only, so the run handed to ir-measures holds 10 per query
    # (on squad-dev's 771 passages, 2.2M scored pairs fewer and 1.5-3.5 s less per evaluation).
    whole = n_passages <= RANKING_DEPTH
    depth = 10 if whole else RANKING_DEPTH
    asked = [measure for name, measure in measures.items() if not (whole and name == "recall@1000")]
    results = ir_measures.calc_aggregate(asked, eval_set.qrels, _run(scorer, n_passages, eval_set, depth))
    return {name: 1.0 if measure not in asked else float(results[measure]) for name, measure in measures.items()}


def _run(scorer, n_passages: int, eval_set: EvalSet, depth: int) -> dict[str, dict[str, float]]:
    depth = min(depth, n_passages)
    run: dict[str, dict[str, float]] = {}
    block = max(1, SCORE_BLOCK // max(n_passages, 1))
    for start in range(0, len(eval_set.query_ids), block):
        top = torch.topk(scorer(np.arange(start, min(start + block, len(eval_set.query_ids)))), depth, dim=1)
        for qid, scores, columns in zip(eval_set.query_ids[start : start + block], top.values.tolist(),
                                        top.indices.tolist()):
            run[qid] = {eval_set.passage_ids[c]: s for c, s in zip(columns, scores)}
    return run


def scorer_metrics(scorer, n_passages: int, eval_set: EvalSet, ranking: bool) -> dict[str, float]:
    """Raw and calibrated contrastive entropy (Eq. 5) of any `scorer`, and its ranking
    metrics when `ranking`: the one measurement of a bi-encoder and of a lexical reference."""
    metrics: dict[str, float] = {}
    if eval_set.negatives is not None:
        margins = scorer_margins(scorer, n_passages, eval_set.pair_query, eval_set.pair_passage,
                                 eval_set.negatives)  # (n_pairs, repeats, k)
        metrics["contrastive_entropy"] = pair_entropies(margins).mean().item()
        calibrated = calibrated_contrastive_entropy(margins, eval_set.halves)
        if calibrated is not None:
            metrics["calibrated_entropy"], metrics["temperature"] = calibrated.entropy, calibrated.temperature
    if ranking:
        metrics.update(scorer_ranking_metrics(scorer, n_passages, eval_set))
    return metrics


def evaluate(model, eval_set: EvalSet, *, device="cpu", batch_size: int = 128, ranking: bool = True,
             progress=None) -> dict[str, float]:
    """Measure `model` (anything with `encode(input_ids, attention_mask)`): contrastive
    entropy raw (`contrastive_entropy`) and calibrated (`calibrated_entropy`, with its
    `temperature`), and the ranking metrics when `ranking`; `progress` counts encoded texts."""
    started = time.perf_counter()
    q_reps = encode_rows(model, eval_set.query_tokens, eval_set.query_rows, batch_size=batch_size,
                         device=device, progress=progress)  # (n_queries, dim)
    p_reps = encode_rows(model, eval_set.passage_tokens, eval_set.passage_rows, batch_size=batch_size,
                         device=device, progress=progress)  # (n_subcorpus, dim)
    metrics = scorer_metrics(dense_scorer(q_reps, p_reps), len(p_reps), eval_set, ranking)
    metrics["eval_seconds"] = time.perf_counter() - started
    return metrics


def evaluate_checkpoint(checkpoint: str, dataset: str, config: EvalConfig, *,
                        max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
                        max_passage_length: int = DEFAULT_MAX_PASSAGE_LENGTH, pooling: str = "mean",
                        device: str = "cpu", strict: bool = True,
                        batch_size: int = 128) -> tuple[dict[str, float], object]:
    """(metrics, model) of a saved bi-encoder (`runs/<id>/model`) or a plain pretrained
    encoder (folder or hub name, used without projection) on `dataset`'s test split."""
    from engine.data import load_retrieval_data
    from engine.model import BiEncoder
    from engine.command_progress import CommandProgress
    from engine.tokenize_cache import tokenize_cached

    check_lengths(checkpoint, max_query_length, max_passage_length)
    data = load_retrieval_data(dataset, strict=strict, test_split=config.test_split)
    log.info("%s: evaluating on its %s split", data.name, data.test_split)  # several, none named: InputError now
    try:
        model, tokenizer = BiEncoder.load(checkpoint, pooling=pooling)
    except InputError:
        raise
    except (ValueError, KeyError, OSError) as err:  # transformers' words for "this folder is no model"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"--checkpoint {checkpoint}: not a model that can be loaded ({reason}); "
                         f"{_MODEL_HINT.format(flag='--checkpoint')}") from None
    model.to(device)
    eval_set = build_eval_set(
        data, tokenize_cached(data.queries, tokenizer, max_query_length),
        tokenize_cached(data.passages, tokenizer, max_passage_length), config,
    )
    texts = len(eval_set.query_rows) + len(eval_set.passage_rows)
    with CommandProgress("evaluate", texts, "text", desc="encoding") as progress:
        metrics = evaluate(model, eval_set, device=device, batch_size=batch_size,
                           ranking=config.ranking != "never", progress=progress)
    return metrics, model


_MODEL_HINT = "point {flag} at a run's model/ folder (runs/<id>/model), an encoder folder or a hub name"


def check_lengths(model: str, max_query_length: int, max_passage_length: int, flag: str = "--checkpoint") -> None:
    """InputError when a max length exceeds the positions of `model` (a ladder name,
    a run's model/ folder, an encoder folder or a hub name), read from its config alone,
    before any data is read or tokenised; also when a folder holds no model at all."""
    for name, length in (("--max-query-length", max_query_length), ("--max-passage-length", max_passage_length)):
        if length < 1:
            raise InputError(f"{name} must be at least 1 token, got {length}")
    positions = _max_positions(model, flag)
    for name, length in (("--max-query-length", max_query_length), ("--max-passage-length", max_passage_length)):
        if positions is not None and length > positions:
            raise InputError(f"{name} {length} is more than model {model!r} has positions ({positions}); "
                             f"use at most {positions}")


def _max_positions(model: str, flag: str) -> int | None:
    """`max_position_embeddings` of `model`; None where the config does not say (or
    cannot be read yet: loading the model then reports why)."""
    from engine.ladder import ladder_model
    from engine.model import CONFIG_FILE

    rung = ladder_model(model)
    if rung is not None:
        return rung.max_position
    hint = _MODEL_HINT.format(flag=flag)
    folder = Path(model).expanduser()
    if folder.is_file():
        raise InputError(f"{flag} {model} is a file; {hint}")
    if folder.is_dir():
        config_file = folder / ("encoder/config.json" if (folder / CONFIG_FILE).is_file() else "config.json")
        if not config_file.is_file():
            raise InputError(f"{flag} {folder} holds no model (no {CONFIG_FILE} or config.json); {hint}")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{config_file}: not a readable model config ({err}); {hint}") from None
        except RecursionError:
            raise InputError(f"{config_file}: not a readable model config (nested too deeply to read); {hint}") from None
        positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
        return positions if isinstance(positions, int) else None
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None
