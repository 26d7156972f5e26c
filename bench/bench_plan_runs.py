"""Proof of the run planner (engine/plan_runs.py, issue 17).

(a) simulation: the paper's Eq. 9-10 joint law as the truth, 2% multiplicative noise
    (one fixed draw per configuration and seed), the BERT ladder x 8 data sizes from
    1e4 to 5e5. The full uniform grid gives an N* interval width; the planner starts
    from 3 small models x 3 data sizes and adds its plans in rounds of `round_share`
    of the grid's compute, refitting after each, until its width reaches the grid's.
    Reported: the compute it needed over the grid's (the ratio), and the widths at
    half the grid's compute of the planner and of random designs.
(b) retrospective on the demo study (demo/cpu-study.json via store/demo.py into a
    temporary store): start from the four cheapest model sizes at the smallest and
    largest D, reveal the remaining measured runs one at a time in the planner's
    order, in random orders and cheapest first; after each, the N* interval width and
    the error at the largest N (its runs not yet revealed are held out). SVG figure.

    .venv/bin/python bench/bench_plan_runs.py simulate --seeds 0 1 2
    .venv/bin/python bench/bench_plan_runs.py retrospective --svg docs/study/figures/plan-retrospective.svg
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.budget import BudgetQuestion, CostAssumptions  # noqa: E402
from engine.laws import FitConfig, LawFit, fit_law, preset  # noqa: E402
from engine.plan_runs import (Candidate, Hardware, PlanConfig, PlanTarget, RunSettings, build_ensemble,  # noqa: E402
                              candidates, ladder_rungs, plan_runs, rank, residual_noise, target_samples)

SIM_BUDGET = 1_000.0       # $: N* of the true law is 1.0e8, just past the largest BERT rung
SIM_NOISE = 0.02


# --- (a) simulation ---------------------------------------------------------------

@dataclass(frozen=True)
class Simulation:
    seed: int
    rungs: int = 24             # the smallest this many BERT rungs
    d_points: int = 8
    bootstrap: int = 150
    round_share: float = 0.03   # each round's experiment budget, of the grid's compute
    max_share: float = 1.0
    grid: bool = True           # plans as models x data sizes grids (what a sweep file holds)


def width(fit: LawFit, target: PlanTarget) -> float:
    """Width (log10) of the 95% N* interval over a fit's bootstrap laws, from their
    interquartile range (2 x 1.96 x IQR / 1.349): with 150 laws the 2.5 and 97.5
    percentiles rest on 4 laws each and moved by 20-30% between bootstrap seeds of
    the same points; the IQR is steadier, and every fit here uses bootstrap seed 0."""
    t = target_samples(fit, target)
    q1, q3 = np.percentile(t[np.isfinite(t)], [25, 75])
    return float(2 * 1.96 * (q3 - q1) / 1.349)


def simulate(sim: Simulation) -> dict:
    truth = preset("paper-joint")
    target = PlanTarget(BudgetQuestion(SIM_BUDGET))
    rungs = ladder_rungs("bert")[:sim.rungs]
    d_grid = sorted({int(round(v)) for v in np.geomspace(1e4, 5e5, sim.d_points)})
    cands = candidates(rungs, d_grid, RunSettings(), Hardware())
    rng = np.random.default_rng(sim.seed)
    noise = {(c.model, c.d): float(np.exp(SIM_NOISE * rng.standard_normal())) for c in cands}

    def fit(runs: list[Candidate], seed: int = 0) -> LawFit:
        points = pd.DataFrame([{"n": c.n, "d": c.d, "loss": float(truth.predict(c.n, c.d)) * noise[(c.model, c.d)]}
                               for c in runs])
        return fit_law(points, "joint", FitConfig(bootstrap=sim.bootstrap, seed=0))

    grid_cost = sum(c.cost for c in cands)
    grid_width = width(fit(cands, 0), target)
    small = {r.name for r in rungs[:3]}
    chosen = [c for c in cands if c.model in small and c.d in (d_grid[0], d_grid[len(d_grid) // 2], d_grid[-1])]
    history, reached = [], None
    for round_ in range(200):
        current = fit(chosen, round_ + 1)
        spent = sum(c.cost for c in chosen) / grid_cost
        history.append({"share": spent, "width": width(current, target), "runs": len(chosen)})
        if history[-1]["width"] <= grid_width:
            reached = spent
            break
        pool = [c for c in cands if (c.model, c.d) not in {(x.model, x.d) for x in chosen}]
        if not pool or spent >= sim.max_share:
            break
        plan = plan_runs(current, target, pool, PlanConfig(experiment_budget=sim.round_share * grid_cost,
                                                           noise=SIM_NOISE, min_step=0.0), grid=sim.grid)
        picked = {(r.model, r.d) for r in plan.runs}
        if not picked:
            break
        chosen += [c for c in pool if (c.model, c.d) in picked]
    random_half = []
    for k in range(3):  # random designs at half the grid's compute
        order, runs, spent = np.random.default_rng(100 + k).permutation(len(cands)), [], 0.0
        for i in order:
            if spent + cands[i].cost <= 0.5 * grid_cost:
                runs.append(cands[i])
                spent += cands[i].cost
        random_half.append(width(fit(runs, 0), target))
    at_half = [h["width"] for h in history if h["share"] <= 0.5]
    return {"seed": sim.seed, "grid_width": grid_width, "grid_runs": len(cands), "ratio": reached,
            "planner_width_at_half": at_half[-1] if at_half else None, "random_width_at_half": random_half,
            "history": history}


# --- (b) retrospective on the demo study --------------------------------------------

DEMO_SETTINGS = RunSettings(steps=400, batch_size=32, negatives=64, max_query_length=32, max_passage_length=96)
CPU = Hardware(peak_flops=418e9, mfu=0.4)   # the development CPU's bf16 peak (bench/RESULTS.md)
# the study report's budget question (engine/study.py StudyConfig): $1,000 with the cost of
# encoding a 1e8-page corpus; N* of the demo's fit is 2.6e7, 14x beyond its largest model
DEMO_BUDGET = BudgetQuestion(1_000.0, True, CostAssumptions(corpus_pages=1e8))


def demo_runs() -> pd.DataFrame:
    """The demo study's squad-dev human runs, read through a temporary store."""
    from engine.study import RANDOM_SCORER_LOSS
    from store import Store
    from store.demo import load_demo

    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "demo.duckdb")
        load_demo(store)
        points = store.law_points(dataset="squad-dev", annotation="human")
    return points[points["loss"] < RANDOM_SCORER_LOSS].reset_index(drop=True)


def demo_candidates(rows: pd.DataFrame) -> list[Candidate]:
    by_name = {r.name: r for r in ladder_rungs("scratch")}
    out = []
    for row in rows.itertuples():
        rung = by_name[row.model]
        out.append(candidates([rung], [int(row.d)], DEMO_SETTINGS, CPU)[0])
    return out


def start_set(rows: pd.DataFrame) -> list[int]:
    """The four cheapest model sizes at the smallest and largest D they were run at."""
    small = sorted(rows["n"].unique())[:4]
    keep = rows[rows["n"].isin(small)]
    ends = keep.groupby("n")["d"].agg(["min", "max"])
    return [i for i, row in keep.iterrows() if row["d"] in (ends.loc[row["n"], "min"], ends.loc[row["n"], "max"])]


def retrospective(order_name: str, rows: pd.DataFrame, cands: list[Candidate], bootstrap: int,
                  seed: int = 0, steps: int | None = None) -> pd.DataFrame:
    """Reveal the measured runs one at a time; after each, N* width and error at the largest N."""
    target = PlanTarget(DEMO_BUDGET)
    revealed = start_set(rows)
    pool = [i for i in range(len(rows)) if i not in revealed]
    largest = rows["n"] == rows["n"].max()
    rng = np.random.default_rng(seed)
    if order_name == "random":
        pool = list(rng.permutation(pool))
    elif order_name == "cheapest first":
        pool = sorted(pool, key=lambda i: (cands[i].cost, rows.loc[i, "d"]))
    records = []
    for step in range(len(pool) + 1):
        fit = fit_law(rows.loc[revealed, ["n", "d", "loss"]], "joint", FitConfig(bootstrap=bootstrap, seed=0))
        held = largest & ~rows.index.isin(revealed)
        at_largest = rows[held] if held.any() else rows[largest]
        error = np.abs(fit.law.predict(at_largest["n"], at_largest["d"]) / at_largest["loss"] - 1).mean()
        last = rows.loc[revealed[-1]]
        records.append({"order": order_name, "seed": seed, "revealed": len(revealed), "last_model": last["model"],
                        "last_d": int(last["d"]),
                        "compute_pflop": sum(cands[i].flops for i in revealed) / 1e15,
                        "n_opt_width": width(fit, target), "error_at_largest_n": 100 * float(error)})
        if not pool or (steps is not None and step >= steps):
            break
        if order_name == "planner":
            ens = build_ensemble(fit, target, [cands[i] for i in pool], residual_noise(fit), 0.95)
            nxt = pool[rank(ens, [cands[i] for i in pool], list(range(len(pool))))[0][0]]
        else:
            nxt = pool[0]
        pool.remove(nxt)
        revealed.append(nxt)
    return pd.DataFrame(records)


def retrospective_all(bootstrap: int, random_seeds: int, steps: int | None = None) -> pd.DataFrame:
    rows = demo_runs()
    cands = demo_candidates(rows)
    frames = [retrospective("planner", rows, cands, bootstrap, steps=steps),
              retrospective("cheapest first", rows, cands, bootstrap, steps=steps)]
    frames += [retrospective("random", rows, cands, bootstrap, seed=s, steps=steps) for s in range(random_seeds)]
    return pd.concat(frames, ignore_index=True)


def retrospective_chart(frame: pd.DataFrame):
    """N* width (log scale) and error at the largest N against compute, one line per
    order (random: the median over its seeds, at their mean compute)."""
    import altair as alt

    mean = frame.groupby(["order", "revealed"], as_index=False).agg(
        compute_pflop=("compute_pflop", "mean"), n_opt_width=("n_opt_width", "median"),
        error_at_largest_n=("error_at_largest_n", "median"))
    x = alt.X("compute_pflop:Q", title="training compute revealed (PFLOP, estimated)")
    color = alt.Color("order:N", title="order")
    base = alt.Chart(mean).mark_line(point=True).properties(width=300, height=220)
    width = base.encode(x=x, color=color, y=alt.Y("n_opt_width:Q", scale=alt.Scale(type="log"),
                                                  title="N* 95% interval width (decades)"))
    error = base.encode(x=x, color=color, y=alt.Y("error_at_largest_n:Q", title="mean |error| at the largest N (%)"))
    return alt.hconcat(width, error)


def write_chart(frame: pd.DataFrame, svg: Path) -> None:
    import vl_convert as vlc

    svg.parent.mkdir(parents=True, exist_ok=True)
    svg.write_text(vlc.vegalite_to_svg(retrospective_chart(frame).to_json()))
    print(f"wrote {svg}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sim = sub.add_parser("simulate")
    sim.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    sim.add_argument("--bootstrap", type=int, default=150)
    retro = sub.add_parser("retrospective")
    retro.add_argument("--bootstrap", type=int, default=100)
    retro.add_argument("--random-seeds", type=int, default=3)
    retro.add_argument("--svg", type=Path)
    retro.add_argument("--csv", type=Path)
    chart = sub.add_parser("chart", help="the retrospective's figure again from its --csv")
    chart.add_argument("csv", type=Path)
    chart.add_argument("--svg", type=Path, required=True)
    args = parser.parse_args()
    if args.what == "chart":
        return write_chart(pd.read_csv(args.csv), args.svg)
    start = time.perf_counter()
    if args.what == "simulate":
        for seed in args.seeds:
            result = simulate(Simulation(seed, bootstrap=args.bootstrap))
            print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
            print(json.dumps(result["history"]), flush=True)
    else:
        frame = retrospective_all(args.bootstrap, args.random_seeds)
        if args.csv:
            frame.to_csv(args.csv, index=False)
        summary = frame.groupby(["order", "revealed"]).agg(compute=("compute_pflop", "mean"),
                                                           width=("n_opt_width", "median"),
                                                           error=("error_at_largest_n", "median"))
        print(summary.round(3).to_string())
        if args.svg:
            write_chart(frame, args.svg)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
