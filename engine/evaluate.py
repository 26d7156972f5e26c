"""Measuring a bi-encoder: contrastive entropy (Eq. 5) and ranking metrics.

Contrastive entropy: for each test pair (q, p+), -log of the softmax probability of
p+ against k = 256 negatives, the negatives drawn per pair from a fixed pool of
passages relevant to no test query; averaged over pairs and over a few seeded draws.
The pool and the draws depend on the data and the seed only, never on the model, so
every model is measured against the same negatives.

Ranking metrics (the paper's Figure 2): exact search over a sub-corpus made of the
test positives plus a seeded sample of the other passages (the paper: 100,000 in
all), scored with ir-measures: MRR@10, nDCG@10 (graded where the qrels are), MAP@10
(AP@10) and Recall@1000. The sampled others are the contrastive-entropy pool too, so
each passage is encoded once per evaluation.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.config import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH, EvalConfig  # noqa: F401 (re-exported)
from engine.data import RetrievalData
from engine.errors import InputError
from engine.tokenize_cache import TokenizedTexts

log = logging.getLogger(__name__)

RANKING_DEPTH = 1000
SCORE_BLOCK = 2**25  # scores held at once when scoring against the sub-corpus


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
    qrels: dict[str, dict[str, int]]  # judgments of the test queries, all grades
    relevance_threshold: int
    query_tokens: TokenizedTexts
    passage_tokens: TokenizedTexts


def build_eval_set(
    data: RetrievalData, query_tokens: TokenizedTexts, passage_tokens: TokenizedTexts, config: EvalConfig
) -> EvalSet:
    split = data.test_split
    pairs = data.pairs(split)  # (n_pairs, 2) query row, passage row
    if len(pairs) == 0:
        raise InputError(f"{data.path}: the {split} split has no positive judgments to evaluate on")
    if config.max_test_pairs and config.max_test_pairs < len(pairs):
        keep = np.random.default_rng([config.seed, 7]).choice(len(pairs), config.max_test_pairs, replace=False)
        pairs = pairs[np.sort(keep)]
    positives = np.unique(data.pairs(split)[:, 1])  # relevant to some test query: never a negative
    pool = _sample_pool(len(data.passages), positives, config)
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
        qrels={qid: data.qrels[split][qid] for qid in query_ids},
        relevance_threshold=data.relevance_threshold,
        query_tokens=query_tokens,
        passage_tokens=passage_tokens,
    )


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


# ---------------------------------------------------------------- encoding


@torch.inference_mode()
def encode_rows(model, tokens: TokenizedTexts, rows: np.ndarray, *, batch_size: int, device,
                autocast_dtype: torch.dtype | None = None, progress=None) -> torch.Tensor:
    """(len(rows), dim) vectors of `rows`, in length-sorted batches so padding is
    small; float32 on `device`. `progress.advance(k)` after each batch of k, if given."""
    order = np.argsort(tokens.lengths(rows), kind="stable")
    out = None
    was_training = model.training
    model.eval()
    autocast = torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    for start in range(0, len(rows), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, attention_mask = tokens.batch(rows[chunk])  # (b, len)
        with autocast:
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
    device = q_reps.device
    total = 0.0
    block = max(1, SCORE_BLOCK // max(len(p_reps), 1))
    for start in range(0, len(pair_query), block):
        pairs = slice(start, start + block)
        q = q_reps[torch.as_tensor(pair_query[pairs], device=device)]  # (b, dim)
        scores = (q @ p_reps.T).double()  # (b, n_passages)
        own = torch.as_tensor(pair_passage[pairs], device=device)
        positive = scores.gather(1, own[:, None])  # (b, 1)
        for draw in negatives[:, pairs]:
            negative = scores.gather(1, torch.as_tensor(draw, device=device, dtype=torch.int64))  # (b, k)
            logits = torch.cat([positive, negative], dim=1)  # (b, 1 + k)
            total += (torch.logsumexp(logits, dim=1) - positive[:, 0]).sum().item()
    return total / (len(pair_query) * len(negatives))


def ranking_metrics(q_reps: torch.Tensor, p_reps: torch.Tensor, eval_set: EvalSet) -> dict[str, float]:
    """MRR@10, nDCG@10, MAP@10 and Recall@1000 of exact search over the sub-corpus."""
    import ir_measures
    from ir_measures import AP, R, RR, nDCG

    rel = eval_set.relevance_threshold
    measures = {"mrr@10": RR(rel=rel) @ 10, "ndcg@10": nDCG @ 10, "map@10": AP(rel=rel) @ 10,
                "recall@1000": R(rel=rel) @ RANKING_DEPTH}
    results = ir_measures.calc_aggregate(list(measures.values()), eval_set.qrels, _run(q_reps, p_reps, eval_set))
    return {name: float(results[measure]) for name, measure in measures.items()}


def _run(q_reps: torch.Tensor, p_reps: torch.Tensor, eval_set: EvalSet) -> dict[str, dict[str, float]]:
    depth = min(RANKING_DEPTH, len(p_reps))
    run: dict[str, dict[str, float]] = {}
    block = max(1, SCORE_BLOCK // max(len(p_reps), 1))
    for start in range(0, len(q_reps), block):
        top = torch.topk(q_reps[start : start + block] @ p_reps.T, depth, dim=1)  # (b, depth)
        for qid, scores, columns in zip(eval_set.query_ids[start : start + block], top.values.tolist(),
                                        top.indices.tolist()):
            run[qid] = {eval_set.passage_ids[c]: s for c, s in zip(columns, scores)}
    return run


def evaluate(model, eval_set: EvalSet, *, device="cpu", batch_size: int = 128, ranking: bool = True,
             autocast_dtype: torch.dtype | None = None, progress=None) -> dict[str, float]:
    """Measure `model` (anything with `encode(input_ids, attention_mask)`): contrastive
    entropy, and the ranking metrics when `ranking`; `progress` counts encoded texts."""
    started = time.perf_counter()
    q_reps = encode_rows(model, eval_set.query_tokens, eval_set.query_rows, batch_size=batch_size,
                         device=device, autocast_dtype=autocast_dtype, progress=progress)  # (n_queries, dim)
    p_reps = encode_rows(model, eval_set.passage_tokens, eval_set.passage_rows, batch_size=batch_size,
                         device=device, autocast_dtype=autocast_dtype, progress=progress)  # (n_subcorpus, dim)
    metrics: dict[str, float] = {}
    if eval_set.negatives is not None:
        metrics["contrastive_entropy"] = contrastive_entropy(
            q_reps, p_reps, eval_set.pair_query, eval_set.pair_passage, eval_set.negatives)
    if ranking:
        metrics.update(ranking_metrics(q_reps, p_reps, eval_set))
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
    from engine.progress import CommandProgress
    from engine.tokenize_cache import tokenize_cached

    check_lengths(checkpoint, max_query_length, max_passage_length)
    data = load_retrieval_data(dataset, strict=strict)
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
        positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
        return positions if isinstance(positions, int) else None
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None
