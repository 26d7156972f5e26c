"""The machine-readable contracts of `laws fit` and `budget`, run as a user would."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from engine.laws import preset
from tests.conftest import ROOT


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture
def joint_csv(tmp_path):
    rng = np.random.default_rng(0)
    n, d = np.meshgrid(np.geomspace(5e5, 9e7, 6), np.geomspace(1e3, 5e5, 4))
    n, d = n.ravel(), d.ravel()
    loss = preset("paper-joint").predict(n, d) * np.exp(rng.normal(0, 0.01, n.size))
    path = tmp_path / "runs.csv"
    pd.DataFrame({"n": n, "d": d, "loss": loss, "label": [f"r{i}" for i in range(n.size)]}).to_csv(path, index=False)
    return path


def test_laws_fit_json_contract(joint_csv, tmp_path):
    out = tmp_path / "fit.json"
    result = run_cli("laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--bootstrap", "50",
                     "--holdout-largest", "1", "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    fit = json.loads(result.stdout)                       # one object, nothing else
    assert fit["law"] == "joint"
    assert set(fit["params"]) == {"A", "B", "alpha", "beta", "delta"}
    assert set(fit["intervals"]) == set(fit["params"])
    assert 0.9 < fit["r2"] <= 1
    assert fit["params"]["alpha"] == pytest.approx(0.56, abs=0.05)
    assert sum(p["role"] == "heldout" for p in fit["points"]) == 4
    assert json.loads(out.read_text())["params"] == fit["params"]


def test_budget_reads_a_saved_fit(joint_csv, tmp_path):
    out = tmp_path / "fit.json"
    assert run_cli("laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--bootstrap", "30",
                   "--out", str(out)).returncode == 0
    result = run_cli("budget", "--budget", "1e6", "--with-inference", "--law", str(out), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    for key in ("n_opt", "d_opt", "loss", "band", "z_data", "z_train", "z_infer"):
        assert key in answer
    assert answer["band"][0] <= answer["n_opt"] <= answer["band"][1]
    assert answer["loss_interval"][0] < answer["loss"] < answer["loss_interval"][1]


def test_budget_default_law_json():
    answer = json.loads(run_cli("budget", "--budget", "20000", "--json").stdout)
    assert answer["z_train"] == pytest.approx(3.22e-8, rel=0.01)
    assert 1e9 < answer["n_opt"] < 2e10


def test_cost_flags_change_the_answer():
    base = json.loads(run_cli("budget", "--budget", "1e6", "--with-inference", "--json").stdout)
    cheap_gpu = json.loads(run_cli("budget", "--budget", "1e6", "--with-inference", "--json",
                                   "--gpu-price-per-hour", "0.5").stdout)
    assert cheap_gpu["n_opt"] > base["n_opt"]


@pytest.mark.parametrize("args, message", [
    (["budget", "--budget", "10", "--with-inference"], "cannot pay for the smallest model"),
    (["budget", "--budget", "1e4", "--price-per-pair", "0"], "price_per_pair must be positive"),
    (["budget", "--budget", "1e4", "--law", "paper-msmarco-model"], "needs the joint law"),
    (["budget", "--budget", "1e4", "--law", "nonexistent.json"], "neither a preset"),
    (["laws", "fit", "--csv", "missing.csv", "--law", "model"], "no such file"),
])
def test_errors_are_one_clear_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_too_few_points_on_the_command_line(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("n,loss\n1e6,0.5\n2e6,0.4\n")
    result = run_cli("laws", "fit", "--csv", str(path), "--law", "model")
    assert result.returncode == 2 and "needs at least 4 points" in result.stderr
