"""Learning rates per rung: the table of a sweep with an `lr` axis, and the rate each
model is best at.

Picked by best calibrated contrastive entropy over the evaluations after step 0 (issue
15): raw entropy also punishes the score scale a high rate grows, so it would prefer a
rate that ranks worse; step 0 is the same untrained model at every rate (one seed, one
init) and decides nothing, while on squad-dev a from-scratch model's random init already
scores word overlap well enough to beat 400 steps of training at any rate. A rung whose
best rate lies at the edge of the swept grid is flagged: the best may lie beyond it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from engine.errors import InputError
from engine.eval_protocol import trained_calibrated

TABLE_COLUMNS = ("model", "n_params", "lr", "best_raw_entropy", "best_calibrated_entropy", "trained_calibrated_entropy",
                 "mrr@10", "chosen")


@dataclass(frozen=True)
class RateChoice:
    model: str
    lr: float
    best_calibrated_entropy: float  # step 0 counted
    trained_calibrated_entropy: float  # best after step 0
    at_grid_edge: bool  # the lowest or highest rate swept: the best may lie beyond the grid


def rate_table(runs: pd.DataFrame, points: pd.DataFrame, run_ids: set[str]) -> pd.DataFrame:
    """One row per (model, rate) of the completed runs among `run_ids` (several seeds
    averaged), `chosen` marking each model's rate of lowest calibrated entropy after
    step 0 (`trained_calibrated_entropy`; `best_calibrated_entropy` counts step 0 too)."""
    mine = runs[runs["run_id"].isin(run_ids) & (runs["status"] == "completed")]
    if mine.empty:
        raise InputError("none of the sweep's runs has completed in this store; run the sweep first")
    if mine["best_calibrated_entropy"].isna().any():
        raise InputError("runs without calibrated entropy (stored before issue 15): rerun them to pick rates")
    rows = pd.DataFrame({
        "model": mine["model_name"], "n_params": mine["n_params"],
        "lr": [config["lr"] for config in mine["config"]],
        "best_raw_entropy": mine["best_contrastive_entropy"],
        "best_calibrated_entropy": mine["best_calibrated_entropy"],
        "trained_calibrated_entropy": mine["run_id"].map(trained_calibrated(points)).astype(float),
        "mrr@10": mine["mrr@10"] if "mrr@10" in mine else math.nan,
    })
    table = rows.groupby(["model", "n_params", "lr"], as_index=False).mean()
    best = table.groupby("model")["trained_calibrated_entropy"].transform("min")
    table["chosen"] = table["trained_calibrated_entropy"] == best
    return table.sort_values(["n_params", "model", "lr"]).reset_index(drop=True)[list(TABLE_COLUMNS)]


def chosen_rates(table: pd.DataFrame) -> list[RateChoice]:
    """Each model's chosen rate, by size; InputError naming the models with no chosen row
    (every rate's entropy after step 0 missing: nothing was evaluated after training began)."""
    unchosen = sorted(set(table["model"]) - set(table.loc[table["chosen"], "model"]))
    if unchosen:
        raise InputError(f"{', '.join(unchosen)}: no run has an evaluation after step 0 with calibrated entropy, so "
                         "no rate can be chosen; train the runs past their first evaluation")
    choices = []
    for model, rows in table.groupby("model", sort=False):
        row = rows[rows["chosen"]].iloc[0]
        edge = row["lr"] in (rows["lr"].min(), rows["lr"].max()) and len(rows) > 1
        choices.append(RateChoice(model, float(row["lr"]), float(row["best_calibrated_entropy"]),
                                  float(row["trained_calibrated_entropy"]), bool(edge)))
    return choices


def markdown(table: pd.DataFrame) -> str:
    """The table as README Markdown: the chosen rate of each model in bold."""
    lines = ["| model | N | learning rate | best raw entropy | best calibrated entropy | calibrated, best after "
             "step 0 | final MRR@10 |", "|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        mark = "**" if row["chosen"] else ""
        lines.append(f"| {row['model']} | {row['n_params']:,} | {mark}{row['lr']:g}{mark} | "
                     f"{row['best_raw_entropy']:.3f} | {row['best_calibrated_entropy']:.3f} | "
                     f"{mark}{row['trained_calibrated_entropy']:.3f}{mark} | {row['mrr@10']:.3f} |")
    return "\n".join(lines)
