"""How long a run trains, how its learning rate moves, and when it is measured (no
torch here: the numbers a run's `Measurement` implies, testable on their own).

- Length: exactly `steps`, or with `epochs` a budget that scales with the work,
  epochs x D / global batch, at least `min_steps` and at most `steps` (`planned_steps`).
- Learning rate (`learning_rate_factor`, a multiple of the peak `lr`): a linear warm-up,
  then `linear` decay to 0 at the planned end, or `wsd` (warm-up, stable, decay):
  constant, then a linear decay to 0 over the last `decay_share` of the run.
- Early stop (`wsd` with `patience`): once `patience` evaluations after `min_steps`
  bring no new best calibrated entropy, the decay begins and the run ends
  `decay_share` of its length later (`early_end`), so its schedule still decays to its
  real end and its last evaluation is of decayed weights.
- Evaluations (`evaluation_steps`): step 0 (the untrained model), the end, and either
  s/64, ..., s/2 and every `eval_every` steps, or geometric steps from `eval_every`,
  `evals_per_doubling` per doubling: log-spaced to the end, whatever the end becomes.
"""
from __future__ import annotations

import math

SCHEDULE_HALVINGS = 6  # evaluate at s/64, s/32, ..., s/2 too: an early overfitter's best is observed


def planned_steps(cfg, train_pairs: int, processes: int = 1) -> int:
    """The optimizer steps a run of TrainConfig `cfg` plans on `train_pairs` pairs."""
    if cfg.epochs is None:
        return cfg.steps
    per_step = cfg.batch_size * processes * cfg.grad_accum  # pairs an optimizer step reads
    return min(cfg.steps, max(cfg.min_steps, math.ceil(cfg.epochs * train_pairs / per_step), 1))


def learning_rate_factor(cfg, step: int, end_step: int) -> float:
    """The learning rate of optimizer step `step` (0-based) as a multiple of the peak,
    for a run that ends after `end_step` steps."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if cfg.lr_schedule == "linear":
        return max(0.0, (end_step - step) / max(1, end_step - warmup))
    decay_start = decay_start_step(cfg, end_step)
    if step < decay_start:
        return 1.0
    return max(0.0, (end_step - step) / max(1, end_step - decay_start))


def decay_start_step(cfg, end_step: int) -> int:
    """wsd: the step the decay to 0 begins, `decay_share` of the run before its end
    (never inside the warm-up)."""
    return max(cfg.warmup_steps, end_step - round(cfg.decay_share * end_step))


def early_end(cfg, step: int, end_step: int, evaluations_since_best: int) -> int | None:
    """The new last step when an evaluation at `step` is the `patience`-th in a row
    without a new best (decay starts now and takes `decay_share` of the run); None
    where the run goes on as planned."""
    if not cfg.patience or cfg.lr_schedule != "wsd" or step < cfg.min_steps:
        return None
    if evaluations_since_best < cfg.patience or step >= decay_start_step(cfg, end_step):
        return None
    return min(end_step, math.ceil(step / (1 - cfg.decay_share)))


def evaluation_steps(cfg, end_step: int) -> frozenset[int]:
    """The steps a run that ends after `end_step` steps evaluates after (module docstring)."""
    if cfg.evals_per_doubling:
        first, per_doubling = cfg.eval_every, cfg.evals_per_doubling
        count = math.floor(per_doubling * math.log2(end_step / first)) + 1 if end_step >= first else 0
        geometric = {round(first * 2 ** (i / per_doubling)) for i in range(count)}
        return frozenset({0, end_step} | {s for s in geometric if s <= end_step})
    log_spaced = {max(1, end_step >> halvings) for halvings in range(1, SCHEDULE_HALVINGS + 1)}
    return frozenset({0, end_step} | log_spaced | set(range(cfg.eval_every, end_step + 1, cfg.eval_every)))
