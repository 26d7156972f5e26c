"""The run planner (engine/plan_runs.py, issue 17): costs as the sweep estimates them,
a small version of the simulation from a known truth, the CLI on the demo store with
a sweep file the sweep's dry run accepts, the stop rule, and the app panel."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.budget import BudgetQuestion
from engine.cli import main
from engine.errors import InputError
from engine.paths import PROJECT_ROOT, SHARED_DATA
from engine.plan_runs import (
    Hardware,
    PlanConfig,
    PlanTarget,
    RunSettings,
    candidates,
    ladder_rungs,
    plan_runs,
    run_flops,
)
from store import Store
from store.demo import load_demo

SQUAD = SHARED_DATA / "squad-dev"
DEMO = PROJECT_ROOT / "demo" / "cpu-study.json"
DEMO_FLAGS = ["--steps", "400", "--batch-size", "32", "--negatives", "64", "--passage-tokens", "96",
              "--peak-flops", "418e9", "--mfu", "0.4", "--bootstrap", "40"]
needs_squad = pytest.mark.skipif(not SQUAD.is_dir(), reason="../shared/data/squad-dev is absent")


@pytest.fixture
def demo_store() -> Store:
    store = Store()
    load_demo(store, DEMO)
    return store


def test_run_cost_is_the_sweep_estimate():
    from engine.sweep import estimate
    from engine.train import TrainConfig

    rung = ladder_rungs("scratch")[3]
    settings = RunSettings(400, 32, 64, 32, 96)
    config = TrainConfig(dataset="x", model=rung.name, steps=400, batch_size=32, negatives=64,
                         max_query_length=32, max_passage_length=96)
    assert run_flops(rung, settings) == pytest.approx(estimate(config, 1.0, 1.0)["flops"])
    hours = Hardware(peak_flops=1e12, mfu=0.5).cost(3.6e15)
    dollars = Hardware(peak_flops=1e12, mfu=0.5, gpu_price_per_hour=2.0, unit="dollars").cost(3.6e15)
    assert (float(hours), float(dollars)) == pytest.approx((2.0, 4.0))


def test_planner_reaches_the_grid_width_with_half_its_compute_and_beats_random_designs():
    """(a), small: 10 BERT rungs x 4 data sizes, 30 bootstrap laws."""
    from bench.bench_plan_runs import Simulation, simulate

    result = simulate(Simulation(seed=0, rungs=10, d_points=4, bootstrap=30, round_share=0.1))
    assert result["ratio"] is not None and result["ratio"] <= 0.5
    random = result["random_width_at_half"]
    assert result["planner_width_at_half"] < sum(random) / len(random)


@needs_squad
def test_cli_plans_on_the_demo_store_and_the_sweep_dry_runs(demo_store, tmp_path, capsys):
    from engine.sweep import load_sweep

    out = tmp_path / "plan.toml"
    code = main(["plan-runs", "--law", "store", "--dataset", str(SQUAD), "--out", str(out), "--json",
                 "--budget", "300", *DEMO_FLAGS])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["sweep_file"] == str(out)
    assert {"runs", "stop_reason", "width_now", "width_after", "message"} <= set(result)
    assert result["width_after"] < result["width_now"]
    widths = [run["width_after"] for run in result["runs"]]
    assert widths == sorted(widths, reverse=True) and widths[-1] == pytest.approx(result["width_after"])
    assert sum(run["cost"] for run in result["runs"]) <= result["experiment_budget"]
    sweep = load_sweep(out)
    assert len(sweep.runs) == len(result["runs"])
    assert {run.config.model for run in sweep.runs} == set(result["models"])
    assert main(["sweep", str(out), "--dry-run", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == len(result["runs"])


def test_stop_rule_names_extrapolation_and_a_larger_model():
    """The paper's law measured on the scratch ladder with 3% scatter: N* at $1M lies
    decades beyond it, and no ladder run narrows its interval by much."""
    from engine.laws import FitConfig, fit_law, preset

    n, d = (a.ravel() for a in np.meshgrid([39_104, 104_064, 154_048, 313_856, 512_128, 1_842_688],
                                           [500, 1000, 2000, 4000, 7719]))
    loss = preset("paper-joint").predict(n, d) * np.exp(np.random.default_rng(0).normal(0, 0.03, len(n)))
    fit = fit_law(pd.DataFrame({"n": n, "d": d, "loss": loss}), "joint", FitConfig(bootstrap=40))
    cands = candidates(ladder_rungs("scratch"), [500, 2000, 7719], RunSettings(400, 32, 64, 32, 96),
                       Hardware(418e9, 0.4))
    far = plan_runs(fit, PlanTarget(BudgetQuestion(1e6)), cands)      # N* many decades beyond the ladder
    assert far.stop_reason == "extrapolation"
    assert far.ladder_width > PlanConfig().ladder_share * far.width_now
    assert far.larger_model["gain"] > 0 and "larger model" in far.message()
    inside = plan_runs(fit, PlanTarget(n=3e5, d=2000), cands)         # a prediction inside the ladder
    assert inside.stop_reason in (None, "converged") and inside.larger_model is None


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="target-d"):
        PlanTarget(n=1e6)
    assert main(["plan-runs", "--law", "paper-joint", "--dataset", str(tmp_path / "data"), "--out",
                 str(tmp_path / "p.toml")]) == 2
    assert "bootstrap" in capsys.readouterr().err


@pytest.mark.slow
@needs_squad
def test_app_panel_ranks_runs_and_launches_them_through_the_job_code(demo_store):
    from streamlit.testing.v1 import AppTest

    calls = []

    class Finished:
        pid = 0

        def poll(self):
            return 0

    def launcher(argv, log_path):
        calls.append(argv)
        return Finished()

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Plan_runs.py"), default_timeout=120)
    at.session_state["run_launcher"] = launcher
    at.run()
    at.number_input[0].set_value(300.0)
    next(b for b in at.button if b.label == "Plan").click().run()
    assert not at.exception, [e.message for e in at.exception]
    table = next(t.value for t in at.dataframe if "expected_gain" in t.value.columns)
    assert len(table) > 0 and table["width_after"].is_monotonic_decreasing
    next(b for b in at.button if b.label == "Launch this plan as a sweep").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert calls and calls[0][1:4] == ["-m", "engine", "sweep"]
    assert Path(calls[0][4]).is_file()


@pytest.mark.slow
def test_app_panel_on_an_empty_store_says_what_is_missing():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Plan_runs.py"), default_timeout=60)
    at.run()
    next(b for b in at.button if b.label == "Plan").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.error and "no completed human runs" in at.error[0].value


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev").is_dir(),
                    reason="../shared/data/squad-dev is absent")
def test_plans_draw_d_from_the_pairs_a_held_out_protocol_leaves():
    """A fit of runs measured on held-out negatives: their pairs are not trainable, so
    no plan may ask for more D than the rest (squad-dev: 6,286 of 7,719)."""
    from types import SimpleNamespace

    from engine.cli.plan_runs import available_pairs
    from engine.data import held_out_passages, load_retrieval_data, training_pairs

    squad = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev"
    held = {"negatives": 256, "pool": 300, "pool_seed": 0, "negative_pool": "held-out"}
    fit = SimpleNamespace(points=pd.DataFrame({"n": [1, 2], "d": [3, 4], "eval_fingerprint": [held, held]}))
    data = load_retrieval_data(squad)
    expected = training_pairs(data, held_out=held_out_passages(data, 300, 0)).n_available
    assert available_pairs(squad, fit) == expected < len(data.pairs("train"))
    paper = SimpleNamespace(points=pd.DataFrame({"n": [1], "d": [3], "eval_fingerprint": [{"negatives": 256}]}))
    assert available_pairs(squad, paper) == len(data.pairs("train"))
