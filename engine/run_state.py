"""Where a training run stands: `PreparedRun`, what `engine.train.prepare` builds (model,
tokens, evaluation set, negative pool), and `TrainerState`, what a checkpoint adds to
accelerate's state (step, best values, curve). Apart from engine/train.py so that the
batches and the recorder it drives can name them without importing the loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.data import RetrievalData, TrainingPairs
    from engine.evaluate import EvalSet
    from engine.model import BiEncoder
    from engine.tokenize_cache import TokenizedTexts


@dataclass
class TrainerState:
    """What a checkpoint adds to accelerate's state: where the run stands."""

    step: int = 0
    best_contrastive_entropy: float | None = None
    best_step: int | None = None
    curve: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    best_calibrated_entropy: float | None = None  # the best of each metric is kept on its own
    best_calibrated_step: int | None = None
    end_step: int = 0  # the last step: the planned one, or where an early stop's decay ends
    stopped_early_at: int | None = None
    evaluations_since_best: int = 0  # evaluations in a row without a new best calibrated (else raw) entropy

    def record(self, step: int, metrics: dict) -> None:
        self.curve = [p for p in self.curve if p["step"] != step] + [{"step": step, **metrics}]
        ce = metrics.get("contrastive_entropy")
        if ce is not None and (self.best_contrastive_entropy is None or ce < self.best_contrastive_entropy):
            self.best_contrastive_entropy, self.best_step = ce, step
        calibrated, best = metrics.get("calibrated_entropy"), self.best_calibrated_entropy
        if calibrated is not None and (best is None or calibrated < best):
            self.best_calibrated_entropy, self.best_calibrated_step = calibrated, step
        watched = self.best_calibrated_step if calibrated is not None else self.best_step
        self.evaluations_since_best = 0 if watched == step else self.evaluations_since_best + 1


@dataclass
class PreparedRun:
    """Model, tokens and evaluation set of a run, ready for the loop."""

    model: BiEncoder
    tokenizer: object
    n_params: int
    n_params_strict: int
    data: RetrievalData
    pairs: TrainingPairs
    query_tokens: TokenizedTexts  # training queries
    passage_tokens: TokenizedTexts  # corpus, then the training set's own passages
    eval_set: EvalSet
    negative_pool: np.ndarray  # (pool,) corpus rows the k random training negatives are drawn from
