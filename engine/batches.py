"""The training batches of Eq. 3: which pairs and which k random negatives each
micro-step of each process reads, a pure function of (seed, micro-step, process), so a
resumed run sees exactly what an uninterrupted one would have."""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.config import TrainConfig
from engine.data import TrainingPairs
from engine.errors import InputError
from engine.model import PADDING_IDENTITY
from engine.run_state import PreparedRun


def training_passages(pairs: TrainingPairs, n_corpus: int) -> np.ndarray:
    """(m,) the corpus rows some pair of the training set has as its positive (all
    pairs, not only the D drawn: the same for every D)."""
    rows = np.unique(np.concatenate(list(pairs.positives.values())))
    return rows[rows < n_corpus]  # a pseudo-annotated set's own passages are never negatives


def negative_pool(pairs: TrainingPairs, n_corpus: int, negatives_from: str, held_out: np.ndarray) -> np.ndarray:
    """(pool,) the corpus rows random negatives are drawn from: every row but the
    held-out evaluation negatives, or the training set's passages (`training_passages`)."""
    if negatives_from == "corpus":
        return np.setdiff1d(np.arange(n_corpus), held_out)
    return training_passages(pairs, n_corpus)


def negatives_per_process(negatives: int, processes: int) -> int:
    """Negative rows each process's batch holds: ceil(k / P), a short share padded."""
    return math.ceil(negatives / processes)


class TrainingBatches:
    """The batch of micro-step m on process r, a pure function of (seed, m, r): pairs
    are read in seeded epoch permutations, each process taking its slice of the global
    batch, and the global batch's k negatives are drawn once from the corpus (seeded by
    (seed, m): every process draws the same k) and dealt out, k // P to each process
    and one more to the first k % P. The processes' vectors are gathered, so every
    block holds `negatives_per_process` rows: a short one is padded with copies of its
    first positive of identity PADDING_IDENTITY, which no query's softmax sees. One
    process with the global batch draws the same k negatives as P processes together.

    Negatives exclude only the global batch's own positives (every positive of its
    queries), as the released code does, so training reads no test label; a drawn
    passage that is still some query's positive is masked by identity in ContrastiveLoss.
    On a small corpus whose test passages are no training positive (squad-dev: a fifth
    of the corpus), those are then only ever negatives and training pushes them away
    from every query; `negatives_from = "training"` draws from the training set's
    passages instead (`negative_pool`), which reads no test label either."""

    def __init__(self, prepared: PreparedRun, cfg: TrainConfig, process_index: int, num_processes: int):
        self.pairs = prepared.pairs
        self.query_tokens = prepared.query_tokens
        self.passage_tokens = prepared.passage_tokens
        self.pool = prepared.negative_pool  # (pool,) corpus rows, the first rows of passage_tokens
        self.n_corpus = len(prepared.data.passages)
        self.batch_size = cfg.batch_size
        self.negatives = cfg.negatives  # k in total, over all processes
        self.block = negatives_per_process(cfg.negatives, num_processes)
        self.seed = cfg.seed
        self.process_index = process_index
        self.num_processes = num_processes
        self._permutations: dict[int, np.ndarray] = {}
        fixed = cfg.compile == "yes"
        self.query_pad_to = cfg.max_query_length if fixed else None
        self.passage_pad_to = cfg.max_passage_length if fixed else None

    def _pair_rows(self, micro_step: int, process_index: int) -> np.ndarray:
        n = len(self.pairs.pairs)
        start = (micro_step * self.num_processes + process_index) * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        rows = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(positions // n):
            if epoch not in self._permutations:
                self._permutations = {epoch: np.random.default_rng([self.seed, 3, epoch]).permutation(n)}
            here = positions // n == epoch
            rows[here] = self._permutations[epoch][positions[here] % n]
        return rows

    def global_negatives(self, micro_step: int) -> np.ndarray:
        """(k,) distinct corpus rows, none a positive of the global batch's queries."""
        queries = [int(q) for r in range(self.num_processes) for q in self.pairs.pairs[self._pair_rows(micro_step, r), 0]]
        excluded = np.unique(np.concatenate([self.pairs.positives[q] for q in queries]))
        excluded = excluded[excluded < self.n_corpus]  # (n_excluded,) corpus rows
        rng = np.random.default_rng([self.seed, 4, micro_step])
        drawn = rng.choice(len(self.pool), min(len(self.pool), self.negatives + len(excluded)), replace=False)
        candidates = self.pool[drawn]  # (drawn,) corpus rows
        negatives = candidates[~np.isin(candidates, excluded)][: self.negatives]
        if len(negatives) < self.negatives:
            raise InputError(f"negatives = {self.negatives} but step {micro_step}'s batch leaves only "
                             f"{len(negatives)} passages that are none of its positives; lower --negatives")
        return negatives

    def _own_share(self, negatives: np.ndarray) -> np.ndarray:
        base, extra = divmod(len(negatives), self.num_processes)
        start = self.process_index * base + min(self.process_index, extra)
        return negatives[start : start + base + (self.process_index < extra)]

    def __call__(self, micro_step: int) -> dict[str, torch.Tensor]:
        chosen = self.pairs.pairs[self._pair_rows(micro_step, self.process_index)]  # (batch, 2) query row, passage row
        negatives = self._own_share(self.global_negatives(micro_step))  # (share,) share <= block
        padding = self.block - len(negatives)
        passages = np.concatenate([chosen[:, 1], negatives, np.repeat(chosen[:1, 1], padding)])  # (batch + block,)
        identity = self.pairs.identity[passages].copy()
        identity[len(passages) - padding :] = PADDING_IDENTITY
        query_input_ids, query_attention_mask = self.query_tokens.batch(chosen[:, 0], self.query_pad_to)
        passage_input_ids, passage_attention_mask = self.passage_tokens.batch(passages, self.passage_pad_to)
        return {
            "query_input_ids": query_input_ids,  # (batch, q_len)
            "query_attention_mask": query_attention_mask,
            "passage_input_ids": passage_input_ids,  # (batch + block, p_len) positives first
            "passage_attention_mask": passage_attention_mask,
            "passage_identity": torch.from_numpy(identity),  # (batch + block,)
            "query_positives": _padded([self.pairs.positives[q] for q in chosen[:, 0]]),  # (batch, max_pos)
        }


def _padded(rows: list[np.ndarray]) -> torch.Tensor:
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)
