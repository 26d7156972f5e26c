"""Learning rates per rung (issue 15): the sweep grid's lr axis, run ids that follow a
changed ladder default, and the choice of each rung's rate by calibrated entropy after
step 0 (engine/lr_tuning.py, `python -m engine tune-lr`)."""
import math
import subprocess
import sys

import pandas as pd
import pytest

from engine.errors import InputError
from engine.ladder import LADDER, hashed_lr
from engine.lr_tuning import chosen_rates, markdown, rate_table
from engine.paths import PROJECT_ROOT
from engine.sweep import load_sweep
from store import Store

SWEEP = """name = "rates"
[grid]
models = [{models}]
train_pairs = [100]
{grid}
[train]
dataset = "/data/syn"
steps = 40
{train}
"""


def write(tmp_path, models='"scratch-L1-H32", "scratch-L2-H64"', grid='lr = [1e-3, 3e-3]', train=""):
    path = tmp_path / "rates.toml"
    path.write_text(SWEEP.format(models=models, grid=grid, train=train))
    return path


def test_the_lr_axis_gives_one_run_per_rate_named_in_its_id(tmp_path):
    runs = load_sweep(write(tmp_path)).runs
    assert [(r.config.model, r.config.lr) for r in runs] == [
        ("scratch-L1-H32", 1e-3), ("scratch-L1-H32", 3e-3), ("scratch-L2-H64", 1e-3), ("scratch-L2-H64", 3e-3)]
    assert "-lr0.001-" in runs[0].run_id and "-lr0.003-" in runs[1].run_id
    assert len({r.run_id for r in runs}) == 4


@pytest.mark.parametrize("grid, train, message", [
    ("lr = [1e-3]", "lr = 0.01", "both a [grid] axis and a [train] setting"),
    ("lr = [0]", "", "[grid] lr holds 0"),
    ("lr = [-1e-3]", "", "[grid] lr holds -0.001"),
    ('lr = ["fast"]', "", "[grid] lr holds 'fast'"),
    ("lr = 1e-3", "", "[grid] lr must be a list"),
])
def test_bad_lr_axes_are_explained(tmp_path, grid, train, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(write(tmp_path, grid=grid, train=train))


def test_a_changed_ladder_default_is_part_of_the_run_id(tmp_path):
    rung = LADDER["scratch-L2-H64"]
    run = load_sweep(write(tmp_path, models='"scratch-L2-H64"', grid=""))
    assert hashed_lr("scratch-L2-H64") == rung.lr and run.runs[0].config.lr == rung.lr
    explicit = load_sweep(write(tmp_path, models='"scratch-L2-H64"', grid="", train=f"lr = {rung.lr}"))
    assert explicit.runs[0].run_id == run.runs[0].run_id  # the default, named or not, is one measurement
    old_default = load_sweep(write(tmp_path, models='"scratch-L2-H64"', grid="", train="lr = 0.001"))
    assert old_default.runs[0].run_id != run.runs[0].run_id  # a run at the old default is not taken for it
    # a rung whose default never changed keeps the ids it had (the rate stays the rung's, unnamed)
    assert hashed_lr("google/bert_uncased_L-2_H-128_A-2") is None and hashed_lr("my/own-model") is None


def _store_with_runs(tmp_path, runs):
    """runs: (run_id, model, n, lr, seed, [(step, calibrated entropy)], mrr)."""
    store = Store(tmp_path / "results.duckdb")
    for run_id, model, n, lr, seed, curve, mrr in runs:
        store.start_run(config={"lr": lr}, model_name=model, n_params=n, n_params_strict=n, train_pairs=2000,
                        annotation="human", dataset="syn", seed=seed, device="cpu", code_version="t",
                        run_id=run_id, source="engine")
        for step, calibrated in curve:
            store.add_point(run_id, step=step, contrastive_entropy=5.4, wall_time_s=1.0, calibrated_entropy=calibrated)
        store.finish_run(run_id, status="completed", best_contrastive_entropy=5.3, metrics={"mrr@10": mrr},
                         best_calibrated_entropy=min(c for _, c in curve))
    return store


def test_step_0_decides_nothing_and_seeds_are_averaged(tmp_path):
    untrained = (0, 4.6)  # the same init at every rate: better than any trained checkpoint
    store = _store_with_runs(tmp_path, [
        ("a-slow", "tiny", 100, 1e-3, 0, [untrained, (100, 5.1), (400, 5.0)], 0.02),
        ("a-mid", "tiny", 100, 3e-3, 0, [untrained, (100, 4.9), (400, 4.8)], 0.04),
        ("a-mid-s1", "tiny", 100, 3e-3, 1, [untrained, (100, 5.0), (400, 5.0)], 0.03),
        ("a-fast", "tiny", 100, 1e-2, 0, [untrained, (100, 5.3), (400, 5.2)], 0.01),
        ("b-slow", "big", 900, 1e-3, 0, [(0, 5.2), (400, 4.7)], 0.05),
        ("b-fast", "big", 900, 3e-3, 0, [(0, 5.2), (400, 4.9)], 0.04),
        ("other", "tiny", 100, 1e-4, 0, [(0, 1.0), (400, 1.0)], 0.9),  # not the sweep's
    ])
    ids = {"a-slow", "a-mid", "a-mid-s1", "a-fast", "b-slow", "b-fast"}
    table = rate_table(store.runs(), store.points(), ids)
    assert list(table["model"]) == ["tiny"] * 3 + ["big"] * 2
    assert table["best_calibrated_entropy"].iloc[:3].tolist() == pytest.approx([4.6] * 3)  # a tie with step 0
    assert table["trained_calibrated_entropy"].iloc[1] == pytest.approx(4.9)  # (4.8 + 5.0) / 2
    choices = {c.model: c for c in chosen_rates(table)}
    assert choices["tiny"].lr == 3e-3 and not choices["tiny"].at_grid_edge
    assert choices["big"].lr == 1e-3 and choices["big"].at_grid_edge  # the lowest rate swept
    text = markdown(table)
    assert "| tiny | 100 | **0.003** |" in text and text.count("**") == 8  # rate and entropy of each chosen row


def test_a_sweep_without_completed_runs_is_an_input_error(tmp_path):
    store = _store_with_runs(tmp_path, [("x", "tiny", 100, 1e-3, 0, [(0, 5.0)], 0.0)])
    with pytest.raises(InputError, match="none of the sweep's runs has completed"):
        rate_table(store.runs(), store.points(), {"y"})



def test_chosen_rates_names_a_model_whose_rates_have_no_trained_entropy():
    """Before: IndexError from chosen_rates (only the tune-lr CLI checked)."""
    table = pd.DataFrame({"model": ["tiny", "tiny", "big"], "lr": [1e-3, 3e-3, 1e-3],
                          "best_calibrated_entropy": [4.6, 4.6, 4.5],
                          "trained_calibrated_entropy": [4.9, 4.8, math.nan], "chosen": [False, True, False]})
    with pytest.raises(InputError, match="^big: no run has an evaluation after step 0 with calibrated entropy"):
        chosen_rates(table)


@pytest.mark.slow
def test_cli_tune_lr_refuses_a_sweep_without_an_lr_axis(tmp_path):
    path = write(tmp_path, grid="")
    out = subprocess.run([sys.executable, "-m", "engine", "tune-lr", str(path), "--store", str(tmp_path / "s.duckdb")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no lr axis" in out.stderr and len(out.stderr.strip().splitlines()) == 1
