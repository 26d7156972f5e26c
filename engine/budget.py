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

from engine.checks import check_level, is_positive_number
from engine.errors import InputError
from engine.laws import (EXTRAPOLATION_WARNING, JOINT_KINDS, LawFit, ScalingLaw, extrapolation_factor,
                         predict_params)

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


@dataclass(frozen=True)
class MeasuredHardware:
    """A user's own device, priced from its measured training runs: the FLOP/s it
    achieved in the paper's accounting (6 N FLOPs per token, Eq. 13), step time
    included (evaluation and data loading too: what an hour of it buys), and the step
    shape of those runs."""

    flops_per_s: float                    # achieved, 6 N x tokens per second
    steps: int                            # median steps a run took
    batch_size: int
    query_tokens: int
    passage_tokens: int
    passages_per_query: int               # positives and the batch's shared negatives, per query
    runs: int                             # runs measured
    n: float                              # their model size

    def costs(self, price_per_hour: float, **others) -> CostAssumptions:
        """The cost model on this device at `price_per_hour` ($ per device hour; 1 prices
        in device hours), `others` (price_per_pair, corpus_pages, ...) as given."""
        return CostAssumptions(gpu_price_per_hour=price_per_hour, peak_flops=self.flops_per_s, utilisation=1.0,
                               steps=self.steps, batch_size=self.batch_size, query_tokens=self.query_tokens,
                               passage_tokens=self.passage_tokens, passages_per_query=self.passages_per_query,
                               **others)


NO_MEASURED_RUN = "no completed run with a wall time to measure this device's throughput from"
TRAIN_HERE = "train a run on this device first (engine sweep, or the Runs page), then price compute on it"


def measured_hardware(runs: pd.DataFrame, steps_taken: dict[str, int]) -> MeasuredHardware:
    """The throughput of the largest model's completed runs (`Store.runs()` rows with
    their config, N and wall time; `steps_taken`: run id -> its last step)."""
    runs = runs[runs["run_id"].isin(list(steps_taken)) & (runs["wall_time_s"] > 0)]
    runs = runs[runs["n_params"] == runs["n_params"].max()] if len(runs) else runs
    if runs.empty:
        raise InputError(f"{NO_MEASURED_RUN}: {TRAIN_HERE}")
    configs = list(runs["config"])
    tokens = [c["batch_size"] * c["max_query_length"] + (c["batch_size"] + c["negatives"]) * c["max_passage_length"]
              for c in configs]  # per step: queries, their positives and the shared negatives
    steps = [steps_taken[run_id] for run_id in runs["run_id"]]
    flops = sum(6 * n * t * s for n, t, s in zip(runs["n_params"], tokens, steps))
    first = configs[0]
    return MeasuredHardware(
        flops_per_s=float(flops / runs["wall_time_s"].sum()), steps=int(np.median(steps)),
        batch_size=first["batch_size"], query_tokens=first["max_query_length"],
        passage_tokens=first["max_passage_length"],
        passages_per_query=round((first["batch_size"] + first["negatives"]) / first["batch_size"]),
        runs=len(runs), n=float(runs["n_params"].iloc[0]))


def store_hardware(store) -> MeasuredHardware:
    """`measured_hardware` of a store's completed engine runs (their last evaluated step);
    runs from elsewhere (the demo study, imports) carry no step time of this device."""
    runs = store.runs(status="completed")
    trained_here = runs[runs["source"] == "engine"]
    if trained_here.empty and len(runs):
        sources = ", ".join(f"{count} {source}" for source, count in runs["source"].value_counts().items())
        raise InputError(f"{NO_MEASURED_RUN}: the store's {len(runs)} completed run(s) were not trained here "
                         f"(by source: {sources}) and carry no step time; {TRAIN_HERE}")
    points = store.points()
    steps = points.groupby("run_id")["step"].max().to_dict() if len(points) else {}
    return measured_hardware(trained_here, steps)


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

    def __post_init__(self):
        for name in ("n_min", "band_tolerance"):
            value = getattr(self, name)
            if not is_positive_number(value):
                raise InputError(f"{name} must be a positive number, got {value!r}")


@dataclass
class BudgetAnswer:
    n_opt: float
    d_opt: float
    loss: float
    band: tuple[float, float]             # N range within band_tolerance of the optimal loss
    loss_interval: tuple[float, float] | None
    spend: dict[str, float]               # $ on annotation / training / inference
    question: BudgetQuestion

    @property
    def device_hours(self) -> dict[str, float]:
        """Training and inference spend in hours of the priced device ($ / $ per hour)."""
        price = self.question.costs.gpu_price_per_hour
        return {part: self.spend[part] / price for part in ("training", "inference")}

    def to_dict(self) -> dict:
        costs = self.question.costs
        return {
            "budget": self.question.budget, "with_inference": self.question.with_inference,
            "n_opt": self.n_opt, "d_opt": self.d_opt, "loss": self.loss,
            "loss_interval": list(self.loss_interval) if self.loss_interval else None,
            "band": list(self.band), "band_tolerance": self.question.band_tolerance,
            "z_data": costs.z_data, "z_train": costs.z_train, "z_infer": costs.z_infer,
            "spend": self.spend, "device_hours": self.device_hours, "assumptions": asdict(costs),
        }


def _joint(law: ScalingLaw | LawFit) -> ScalingLaw:
    base = law.law if isinstance(law, LawFit) else law
    if base.kind not in JOINT_KINDS:
        raise InputError(f"budget planning trades model size against data size and needs the joint "
                         f"law L(N, D) (Eq. 8, or the additive form); a {base.kind}-size law has no "
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


# --- how sure is the decision: the budget problem under every bootstrap law -----------

COARSE_POINTS = 256     # log-spaced model sizes over [n_min, n_max] for every law at once
FINE_POINTS = 65        # then this many between the coarse neighbours of each law's minimum


@dataclass
class Extrapolation:
    """How far a chosen N and D lie beyond the sizes a law was fitted to (factor 1: inside).
    `what` names those sizes: "fitted" (a fit's points) or "paper's" (a published law's);
    a support starting at 0 has no known smallest size."""

    n: float
    d: float
    n_support: tuple[float, float]
    d_support: tuple[float, float]
    what: str = "fitted"

    @property
    def beyond_warning(self) -> bool:
        return max(self.n, self.d) > EXTRAPOLATION_WARNING

    def describe(self) -> str:
        """One sentence; a plain warning beyond EXTRAPOLATION_WARNING times the support."""
        from engine.formatting import format_count

        parts = []
        for axis, factor, (lo, hi), what in (("N", self.n, self.n_support, "parameters"),
                                            ("D", self.d, self.d_support, "pairs")):
            where = "inside" if factor <= 1 else f"{format_factor(factor)} beyond"
            span = f"{format_count(lo)} to {format_count(hi)} {what}" if lo > 0 else \
                f"range (up to {format_count(hi)} {what})"
            parts.append(f"{axis}* {where} the {self.what} {span}")
        sentence = "; ".join(parts) + "."
        if self.beyond_warning:
            points = "fitted points" if self.what == "fitted" else f"{self.what} sizes"
            sentence = (f"Warning: this is a projection more than {EXTRAPOLATION_WARNING:g}x beyond the "
                        f"{points}, not a prediction: " + sentence)
        return sentence

    def to_dict(self) -> dict:
        return {"n": self.n, "d": self.d, "n_support": list(self.n_support), "d_support": list(self.d_support),
                "support_of": self.what, "warning": self.describe() if self.beyond_warning else None}


FACTOR_DIGITS_LIMIT = 1e6   # from a million times on, a factor is written as a count: 3.4Mx, 1.68e+296x


def format_factor(factor: float) -> str:
    """2.11 -> '2.11x', 75.34 -> '75.3x', 11661.4 -> '11,661x', 3.4e6 -> '3.4Mx', 1.7e296 -> '1.7e+296x'."""
    from engine.formatting import format_count

    if factor >= FACTOR_DIGITS_LIMIT:
        return f"{format_count(factor)}x"
    return f"{factor:,.0f}x" if factor >= 100 else f"{factor:.3g}x"


def extrapolation(fit: LawFit, n: float, d: float) -> Extrapolation | None:
    """Extrapolation factors of (n, d) against the fit's support; None when the fit
    kept no points (a preset, or an old file)."""
    support = fit.support
    if "n" not in support or "d" not in support:
        return None
    return Extrapolation(extrapolation_factor(n, support["n"]), extrapolation_factor(d, support["d"]),
                         support["n"], support["d"])


IDENTITY_FIELDS = ("source", "file", "dataset", "annotation", "metric", "protocol", "fitted_at")   # Fit page's


def law_identity(label: str, law: ScalingLaw | LawFit, origin: dict | None = None,
                 support: dict | None = None) -> dict:
    """A law as a plan names it: its label, kind and parameters, where its points came
    from (`origin`: the Fit page's data set, annotation, metric, protocol and date, or a
    preset's source) and the N and D it was fitted to (`support`, default the fit's)."""
    from engine.laws import json_numbers

    base = law.law if isinstance(law, LawFit) else law
    out = {"label": label, "law": base.kind, "params": dict(base.params)}
    out.update({k: v for k, v in (origin or {}).items() if v is not None and k in (*IDENTITY_FIELDS, "saved_at",
                                                                                   "fit_id", "name")})
    support = support if support is not None else (law.support if isinstance(law, LawFit) else {})
    out["support"] = {axis: list(bounds) for axis, bounds in support.items()}
    if isinstance(law, LawFit):
        out.update(r2=json_numbers(law.r2), bootstrap_kept=law.bootstrap_kept)
    return out


def plan_record(identity: dict, answer: BudgetAnswer, decision: DecisionUncertainty | None = None,
                reach: Extrapolation | None = None) -> dict:
    """The budget plan as JSON: the law (`law_identity`), the answer, how sure it is and how
    far it reaches beyond the law's sizes."""
    reach = decision.extrapolation if decision is not None and reach is None else reach
    return {"law": identity, **answer.to_dict(), **(decision.to_dict() if decision else {}),
            **({"extrapolation": reach.to_dict()} if reach else {})}


PAPER_LADDER = ("google/bert_uncased_L-2_H-128_A-2", "google/bert_uncased_L-12_H-768_A-12")  # BERT-Tiny .. Base
MSMARCO_TRAIN_PAIRS = 5e5   # "0.5M training queries, each coupled with a positive passage" (Section 3.2)
MSMARCO_PRESETS = ("paper-joint", "paper-msmarco-model", "paper-msmarco-data")


def preset_support(name: str) -> dict[str, tuple[float, float]]:
    """The sizes a published MS MARCO law was fitted to: N from BERT-Tiny to BERT-Base
    (engine/ladder.py counts them as the paper does: 0.5M and 82M), D up to all of
    MS MARCO's training pairs (the paper states no smallest D, so from 0); {} for a
    preset whose sizes the paper does not give."""
    from engine.ladder import LADDER, rung_size

    if name not in MSMARCO_PRESETS:
        return {}
    return {"n": tuple(float(rung_size(LADDER[rung])) for rung in PAPER_LADDER), "d": (0.0, MSMARCO_TRAIN_PAIRS)}


def preset_extrapolation(name: str, n: float, d: float) -> Extrapolation | None:
    """`extrapolation` for a published law, against the paper's sizes (`preset_support`)."""
    support = preset_support(name)
    if not support:
        return None
    return Extrapolation(extrapolation_factor(n, support["n"]), extrapolation_factor(d, support["d"]),
                         support["n"], support["d"], what="paper's")


@dataclass
class DecisionUncertainty:
    """The budget question answered under each of a fit's bootstrap laws.

    n_opt / d_opt are the point answer (the fitted law's optimum); the intervals are
    percentiles of every bootstrap law's own optimum; n_robust minimises the mean of
    the bootstrap laws' predicted loss along the budget line; regret is the expected
    excess loss (nats) of building the point N* when a bootstrap law is the truth,
    E_b[L_b(N*) - min_N L_b(N)], and regret_robust the same for n_robust."""

    level: float
    n_opt: float
    d_opt: float
    n_opt_interval: tuple[float, float]
    d_opt_interval: tuple[float, float]
    n_robust: float
    d_robust: float
    regret: float
    regret_relative: float                  # regret / E_b[min_N L_b]
    regret_robust: float
    n_opt_samples: np.ndarray               # (laws,) each bootstrap law's N*
    extrapolation: Extrapolation | None
    kept: np.ndarray | None = None          # (n_boot,) bool: which rows of fit.bootstrap_params are the laws
    at_bound: float = 0.0                   # share of laws whose optimum is an end of the search (all money on
                                            # the model, D* = 1 pair, or N* = n_min): left out of the intervals

    @property
    def laws(self) -> int:
        return len(self.n_opt_samples)

    def bound_note(self) -> str | None:
        """What the intervals leave out, when some laws' optimum is an end of the search."""
        if not self.at_bound:
            return None
        from engine.formatting import format_percent

        return (f"{format_percent(self.at_bound)} of the bootstrap laws put the optimum at an end of the search "
                "(the whole budget on the model, leaving 1 pair, or the smallest model): a law that keeps "
                "improving past any budget, not an answer; the intervals are over the other laws.")

    def to_dict(self) -> dict:
        return {"level": self.level, "laws": self.laws, "laws_at_search_bound": self.at_bound,
                "n_opt_interval": list(self.n_opt_interval), "d_opt_interval": list(self.d_opt_interval),
                "n_robust": self.n_robust, "d_robust": self.d_robust, "regret": self.regret,
                "regret_relative": self.regret_relative, "regret_robust": self.regret_robust,
                "extrapolation": self.extrapolation.to_dict() if self.extrapolation else None}


def decision_uncertainty(fit: LawFit, question: BudgetQuestion, level: float = 0.95) -> DecisionUncertainty:
    """Solve the budget problem under every bootstrap law of `fit` at once.

    All laws are evaluated on one log grid of N over [n_min, n_max] ((laws, 256)
    losses), then on a fine grid between each law's coarse neighbours ((laws, 65)),
    then a parabola through the best fine point and its neighbours: N* per law to
    about 0.01 % in N, with no per-law Python loop. Laws whose loss is not finite on
    the whole grid (a degenerate refit) are left out; InputError if none remain."""
    level = check_level(level)
    point = optimise(fit, question)
    kind = _joint(fit).kind
    params = np.asarray(fit.bootstrap_params, dtype=float)
    if len(params) == 0:
        raise InputError("this fit has no bootstrap laws: refit it with bootstrap refits (e.g. --bootstrap 1000)")
    log_lo, log_hi = np.log(question.n_min), np.log(n_max(question))
    coarse = np.linspace(log_lo, log_hi, COARSE_POINTS)                          # (G,)
    losses = _losses(kind, params, question, coarse)                             # (B, G)
    keep = np.isfinite(losses).all(axis=1)
    if not keep.any():
        raise InputError("no bootstrap law of this fit gives a finite loss along the budget line")
    params, losses = params[keep], losses[keep]
    log_opt, best = _per_law_minimum(kind, params, question, coarse, losses)    # (B,), (B,)
    mean_curve = lambda log_n: float(_losses(kind, params, question, np.atleast_1d(log_n)).mean())  # noqa: E731
    i = int(np.argmin(losses.mean(axis=0)))
    robust = minimize_scalar(mean_curve, bounds=(coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)]),
                             method="bounded", options={"xatol": 1e-9}).x
    at_point = _losses(kind, params, question, np.array([np.log(point.n_opt)]))[:, 0]
    at_robust = _losses(kind, params, question, np.array([robust]))[:, 0]
    tail = 100 * (1 - level) / 2
    step = coarse[1] - coarse[0]
    edge = (log_opt > log_hi - step / 2) | (log_opt < log_lo + step / 2)    # a corner of the search, no optimum
    inner = log_opt[~edge] if (~edge).any() else log_opt
    n_lo, n_hi = np.exp(np.percentile(inner, [tail, 100 - tail]))
    n_robust = float(np.exp(robust))
    return DecisionUncertainty(
        level=level, n_opt=point.n_opt, d_opt=point.d_opt,
        n_opt_interval=(float(n_lo), float(n_hi)),
        d_opt_interval=(float(data_for(n_hi, question)), float(data_for(n_lo, question))),  # D falls as N grows
        n_robust=n_robust, d_robust=float(data_for(n_robust, question)),
        regret=float(np.mean(at_point - best)), regret_relative=float(np.mean(at_point - best) / np.mean(best)),
        regret_robust=float(np.mean(at_robust - best)),
        n_opt_samples=np.exp(log_opt), extrapolation=extrapolation(fit, point.n_opt, point.d_opt), kept=keep,
        at_bound=float(edge.mean()) if (~edge).any() else 0.0)


def _losses(kind: str, params: np.ndarray, question: BudgetQuestion, log_n: np.ndarray) -> np.ndarray:
    """Each law's loss along the budget line at log model sizes (G,) or (B, G) -> (B, G)."""
    n = np.exp(log_n)
    d = data_for(n, question)
    with np.errstate(invalid="ignore", divide="ignore"):
        losses = predict_params(kind, params, n, np.maximum(d, 1e-300))
    return np.where(d > 0, losses, np.inf)


def _per_law_minimum(kind, params, question, coarse, losses) -> tuple[np.ndarray, np.ndarray]:
    """log N* and min loss of each law, refined from its coarse grid minimum."""
    rows = np.arange(len(params))
    i = np.clip(np.argmin(losses, axis=1), 1, len(coarse) - 2)                   # (B,)
    fine = np.linspace(coarse[i - 1], coarse[i + 1], FINE_POINTS, axis=1)       # (B, F)
    fine_losses = _losses(kind, params, question, fine)                          # (B, F)
    j = np.clip(np.argmin(fine_losses, axis=1), 1, FINE_POINTS - 2)
    left, mid, right = (fine_losses[rows, j + k] for k in (-1, 0, 1))
    step = fine[:, 1] - fine[:, 0]
    curvature = left - 2 * mid + right
    shift = np.where(curvature > 0, 0.5 * (left - right) / np.where(curvature > 0, curvature, 1), 0.0)
    log_opt = fine[rows, j] + np.clip(shift, -1, 1) * step
    refined = _losses(kind, params, question, log_opt[:, None])[:, 0]
    best = np.minimum(refined, fine_losses.min(axis=1))
    return np.where(refined <= fine_losses.min(axis=1), log_opt, fine[rows, np.argmin(fine_losses, axis=1)]), best
