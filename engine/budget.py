"""Budget allocation (the paper's Section 5): cost model Eq. 11-14 and the optimal
model size N* and data size D* for a budget.

    Z(N, D) = Z_data * D + Z_train * N + Z_infer * N                      (Eq. 11)
    Z_data  = price of one annotated query-passage pair                    (Eq. 12)
    Z_train = steps * (q + k p) tokens * batch * 6 * $/h / (peak * 3600 * util)   (Eq. 13)
    Z_infer = pages * tokens/page * 2 * $/h / (peak * 3600 * util)        (Eq. 14)

Every physical assumption is a field of `CostAssumptions`; its defaults are the
paper's. For a budget, all money not spent on the model goes to annotations:
D(N) = (budget - (Z_train [+ Z_infer]) N) / Z_data, and N* minimises L(N, D(N)).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize_scalar

from engine.errors import InputError
from engine.laws import LawFit, ScalingLaw

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class CostAssumptions:
    """The paper's Section 5 assumptions; units in each comment."""

    price_per_pair: float = 0.6           # $ per human-annotated query-passage pair (Eq. 12)
    gpu_price_per_hour: float = 3.93      # $ per GPU hour (A100 80G, cloud)
    peak_flops: float = 312e12            # FLOP/s of one GPU at peak (A100 bf16)
    utilisation: float = 0.25             # achieved / peak FLOP/s
    steps: int = 10_000                   # training steps
    batch_size: int = 256                 # queries per step
    query_tokens: int = 30                # tokens per query
    passage_tokens: int = 60              # tokens per passage
    passages_per_query: int = 2           # a positive and a negative passage per query
    train_flops_per_token: float = 6.0    # x N, forward + backward
    infer_flops_per_token: float = 2.0    # x N, forward only
    corpus_pages: float = 30e12           # pages encoded at inference (Google's index, 2012)
    tokens_per_page: int = 512

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value <= 0:
                raise InputError(f"cost assumption {name} must be positive, got {value}")
        if self.utilisation > 1:
            raise InputError(f"utilisation is a fraction of peak (0-1], got {self.utilisation}")

    @property
    def dollars_per_flop(self) -> float:
        return self.gpu_price_per_hour / (self.peak_flops * SECONDS_PER_HOUR * self.utilisation)

    @property
    def z_data(self) -> float:
        """$ per annotated pair (Eq. 12)."""
        return self.price_per_pair

    @property
    def z_train(self) -> float:
        """$ per model parameter for training (Eq. 13)."""
        tokens_per_example = self.query_tokens + self.passages_per_query * self.passage_tokens
        flops_per_param = self.steps * tokens_per_example * self.batch_size * self.train_flops_per_token
        return flops_per_param * self.dollars_per_flop

    @property
    def z_infer(self) -> float:
        """$ per model parameter for encoding the corpus once (Eq. 14)."""
        flops_per_param = self.corpus_pages * self.tokens_per_page * self.infer_flops_per_token
        return flops_per_param * self.dollars_per_flop


def total_cost(n, d, costs: CostAssumptions, with_inference: bool) -> np.ndarray:
    """Eq. 11 in dollars."""
    z_model = costs.z_train + (costs.z_infer if with_inference else 0.0)
    return costs.z_data * np.asarray(d, dtype=float) + z_model * np.asarray(n, dtype=float)


@dataclass(frozen=True)
class BudgetQuestion:
    budget: float                         # $
    with_inference: bool = False
    costs: CostAssumptions = field(default_factory=CostAssumptions)
    n_min: float = 1e3                    # smallest model considered (non-embedding params)
    band_tolerance: float = 0.01          # near-optimal: loss within this fraction of the optimum


@dataclass
class BudgetAnswer:
    n_opt: float
    d_opt: float
    loss: float
    band: tuple[float, float]             # N range within band_tolerance of the optimal loss
    loss_interval: tuple[float, float] | None
    spend: dict[str, float]               # $ on annotation / training / inference
    question: BudgetQuestion

    def to_dict(self) -> dict:
        costs = self.question.costs
        return {
            "budget": self.question.budget, "with_inference": self.question.with_inference,
            "n_opt": self.n_opt, "d_opt": self.d_opt, "loss": self.loss,
            "loss_interval": list(self.loss_interval) if self.loss_interval else None,
            "band": list(self.band), "band_tolerance": self.question.band_tolerance,
            "z_data": costs.z_data, "z_train": costs.z_train, "z_infer": costs.z_infer,
            "spend": self.spend, "assumptions": asdict(costs),
        }


def _joint(law: ScalingLaw | LawFit) -> ScalingLaw:
    base = law.law if isinstance(law, LawFit) else law
    if base.kind != "joint":
        raise InputError(f"budget planning trades model size against data size and needs the joint "
                         f"law L(N, D) (Eq. 8); a {base.kind}-size law has no "
                         f"{'D' if base.kind == 'model' else 'N'} term. Fit or choose a joint law.")
    return base


def data_for(n, question: BudgetQuestion) -> np.ndarray:
    """Annotated pairs the budget still buys after paying for an n-parameter model."""
    costs = question.costs
    z_model = costs.z_train + (costs.z_infer if question.with_inference else 0.0)
    return (question.budget - z_model * np.asarray(n, dtype=float)) / costs.z_data


def n_max(question: BudgetQuestion) -> float:
    """Largest model that still leaves money for one annotated pair."""
    costs = question.costs
    z_model = costs.z_train + (costs.z_infer if question.with_inference else 0.0)
    return (question.budget - costs.z_data) / z_model


def _check_affordable(question: BudgetQuestion) -> None:
    if not np.isfinite(question.budget) or question.budget <= 0:
        raise InputError(f"the budget must be a positive number of dollars, got {question.budget}")
    if n_max(question) <= question.n_min:
        cheapest = total_cost(question.n_min, 1, question.costs, question.with_inference)
        raise InputError(f"a budget of ${question.budget:,.2f} cannot pay for the smallest model "
                         f"(N = {question.n_min:.3g}) plus one annotated pair: that costs "
                         f"${float(cheapest):,.2f}")


def loss_along_budget(law: ScalingLaw, question: BudgetQuestion, n) -> np.ndarray:
    """L(N, D(N)) for models that spend the whole budget; inf where nothing is left for data."""
    d = data_for(n, question)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, law.predict(n, np.maximum(d, 1e-300)), np.inf)


def optimise(law: ScalingLaw | LawFit, question: BudgetQuestion) -> BudgetAnswer:
    """N* and D* for the budget, with the near-optimal band and, for a fitted law,
    the prediction interval of the loss there."""
    joint = _joint(law)
    _check_affordable(question)
    log_lo, log_hi = np.log(question.n_min), np.log(n_max(question))
    f = lambda log_n: float(loss_along_budget(joint, question, np.exp(log_n)))  # noqa: E731
    grid = np.linspace(log_lo, log_hi, 400)
    values = loss_along_budget(joint, question, np.exp(grid))
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    log_opt, loss = (best.x, best.fun) if best.fun <= values[i] else (grid[i], values[i])
    n_opt = float(np.exp(log_opt))
    d_opt = float(data_for(n_opt, question))
    band = _band(f, log_opt, loss * (1 + question.band_tolerance), log_lo, log_hi)
    interval = None
    if isinstance(law, LawFit) and len(law.bootstrap_params):
        pi = law.predict_interval(n_opt, d_opt)
        interval = (float(pi["pi_lo"][0]), float(pi["pi_hi"][0]))
    costs = question.costs
    spend = {"annotation": costs.z_data * d_opt, "training": costs.z_train * n_opt,
             "inference": costs.z_infer * n_opt if question.with_inference else 0.0}
    return BudgetAnswer(n_opt, d_opt, float(loss), band, interval, spend, question)


def _band(f, log_opt, threshold, log_lo, log_hi) -> tuple[float, float]:
    """Edges of {N : L(N, D(N)) <= threshold} around the optimum (the loss along a
    budget line is unimodal: it falls while data is cheap and rises once the model
    eats the budget)."""
    g = lambda log_n: f(log_n) - threshold  # noqa: E731
    left = log_lo if g(log_lo) <= 0 else brentq(g, log_lo, log_opt, xtol=1e-10)
    right = log_hi if g(log_hi) <= 0 else brentq(g, log_opt, log_hi, xtol=1e-10)
    return float(np.exp(left)), float(np.exp(right))


def budget_curves(law: ScalingLaw | LawFit, budgets, with_inference: bool,
                  costs: CostAssumptions = CostAssumptions(), n_min: float = 1e3,
                  n_range: tuple[float, float] | None = None, points: int = 200) -> pd.DataFrame:
    """Predicted loss against N for several budgets (the paper's Figures 7 and 8):
    columns budget, n, d, loss (rows where the budget buys no data are dropped)."""
    joint = _joint(law)
    frames = []
    for budget in budgets:
        question = BudgetQuestion(float(budget), with_inference, costs, n_min)
        _check_affordable(question)
        lo, hi = n_range or (n_min, n_max(question))
        n = np.geomspace(lo, min(hi, n_max(question)), points)
        frames.append(pd.DataFrame({"budget": float(budget), "n": n, "d": data_for(n, question),
                                    "loss": loss_along_budget(joint, question, n)}))
    curves = pd.concat(frames, ignore_index=True)
    return curves[np.isfinite(curves["loss"]) & (curves["d"] >= 1)]
