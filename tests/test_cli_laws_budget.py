"""The machine-readable contracts of `laws fit` and `budget`, as a user runs them (in
this process: tests/in_process.py)."""
import json

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.fit_files import fit_from_dict
from engine.laws import LawFit, preset
from tests.in_process import run_main


def run_cli(*args):
    return run_main(main, *args)


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
    second_largest = np.geomspace(5e5, 9e7, 6)[-2]         # the largest model is held out
    assert fit["support"]["n"] == [pytest.approx(5e5), pytest.approx(second_largest)]
    assert fit["identifiability"]["sentence"].startswith("These points determine the curve for N in [500k, ")
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
    assert answer["n_opt_interval"][0] <= answer["n_opt"] <= answer["n_opt_interval"][1]
    assert answer["d_opt_interval"][0] <= answer["d_opt"] <= answer["d_opt_interval"][1]
    assert answer["n_opt_interval"][0] <= answer["n_robust"] <= answer["n_opt_interval"][1]
    assert answer["regret"] >= 0
    reach = answer["extrapolation"]
    assert reach["n_support"] == [pytest.approx(5e5), pytest.approx(9e7)]
    assert reach["n"] == pytest.approx(max(answer["n_opt"] / 9e7, 5e5 / answer["n_opt"], 1.0))


def test_budget_default_law_json():
    answer = json.loads(run_cli("budget", "--budget", "20000", "--json").stdout)
    assert answer["z_train"] == pytest.approx(3.22e-8, rel=0.01)
    assert 1e9 < answer["n_opt"] < 2e10
    assert answer["n_opt_interval"] is None and answer["extrapolation"] is None   # a preset has neither


def test_budget_warns_far_beyond_the_fitted_points(tmp_path):
    """A saved fit of models up to 9e7 parameters asked about $20,000 (N* = 6.8e9): 75x beyond."""
    law = preset("paper-joint")
    boot = np.array([[law.params[k] for k in ("A", "B", "alpha", "beta", "delta")]] * 50)
    boot *= np.exp(np.random.default_rng(0).normal(0, 0.03, boot.shape))
    fit = LawFit(law, 0.99, {}, boot, np.zeros(2),
                 pd.DataFrame({"n": [5e5, 9e7], "d": [1e3, 5e5], "loss": [1.0, 0.5], "role": "fit"}))
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit.to_dict()))
    text = run_cli("budget", "--budget", "2e4", "--law", str(path))
    assert text.returncode == 0, text.stderr
    assert "Warning: this is a projection" in text.stdout and "75.3x beyond" in text.stdout
    assert "robust choice" in text.stdout and "expected regret" in text.stdout
    answer = json.loads(run_cli("budget", "--budget", "2e4", "--law", str(path), "--json").stdout)
    assert answer["extrapolation"]["n"] == pytest.approx(answer["n_opt"] / 9e7)
    assert "projection" in answer["extrapolation"]["warning"]


def fit_json(tmp_path, edit) -> str:
    """A valid saved joint fit, changed by `edit(dict)`, written to a file."""
    law = preset("paper-joint")
    data = LawFit(law, 0.99, {}, np.array([list(law.params.values())] * 3), np.zeros(2),
                  pd.DataFrame({"n": [5e5, 9e7], "d": [1e3, 5e5], "loss": [1.0, 0.5], "role": "fit"})).to_dict()
    edit(data)
    path = tmp_path / "bad-fit.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["params"].update(A="big"), "parameter A must be a finite number"),
    (lambda f: f["params"].update(beta=0), "parameter beta must be > 0"),
    (lambda f: f["params"].update(alpha=float("nan")), "parameter alpha must be a finite number"),
    (lambda f: f["params"].pop("delta"), "exactly A, B, alpha, beta, delta"),
    (lambda f: f.update(params=[1, 2]), "field 'params'"),
    (lambda f: f.update(law=3), "field 'law'"),
    (lambda f: f.update(bootstrap=[[1.0, 2.0]]), "field 'bootstrap' must be a list of rows of 5 numbers"),
    (lambda f: f.update(bootstrap=[[1.0, 2.0, 3.0, 4.0, float("nan")]]), "field 'bootstrap' contains NaN"),
    (lambda f: f.update(bootstrap="abc"), "field 'bootstrap'"),
    (lambda f: f.update(r2="high"), "field 'r2' must be a number"),
    (lambda f: f.update(points=5), "field 'points' must be a list of objects"),
    (lambda f: f["points"][0].update(n="big"), "every n must be a positive number"),
    (lambda f: f["config"].update(level=2), "confidence level"),
    (lambda f: f["config"].update(bootstrap=-5), "bootstrap must be a whole number"),
])
def test_bad_fit_json_is_one_clear_line(tmp_path, edit, message):
    result = run_cli("budget", "--budget", "2e4", "--law", fit_json(tmp_path, edit))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "bad-fit.json" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


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
    *[(["budget", "--budget", "2e4", flag, value], f"{flag[2:].replace('-', '_')} must be a positive number")
      for flag in ("--n-min", "--band-tolerance") for value in ("0", "-1", "nan")],
    *[(["budget", "--budget", "2e4", "--level", value], "confidence level") for value in ("0", "1", "1.5", "nan")],
])
def test_errors_are_one_clear_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--bootstrap", "-5"], "bootstrap must be a whole number >= 0"),
    (["--holdout-largest", "-3"], "holdout_largest must be a whole number >= 0"),
    (["--level", "0"], "confidence level"), (["--level", "1.2"], "confidence level"),
    (["--level", "nan"], "confidence level"),
    (["--huber-scale", "0"], "huber_scale must be a positive number"),
    (["--huber-scale", "nan"], "huber_scale must be a positive number"),
])
def test_bad_fit_settings_are_refused_before_fitting(joint_csv, tmp_path, flags, message):
    out = tmp_path / "fit.json"
    result = run_cli("laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--out", str(out), *flags)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_too_few_points_on_the_command_line(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("n,loss\n1e6,0.5\n2e6,0.4\n")
    result = run_cli("laws", "fit", "--csv", str(path), "--law", "model")
    assert result.returncode == 2 and "needs at least 4 points" in result.stderr


def test_laws_compare_json_contract(joint_csv):
    result = run_cli("laws", "compare", "--csv", str(joint_csv), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["points"] == 24
    forms = {f["law"]: f for f in report["forms"]}
    assert set(forms) == {"joint", "additive"}
    for form in forms.values():
        assert set(form) >= {"params", "r2", "aic", "bic", "log_rmse", "leave_largest_out", "equation"}
        assert set(form["leave_largest_out"]) == {"n", "d"}
        assert form["leave_largest_out"]["n"]["points"] == 4      # the largest of 6 model sizes, at 4 data sizes
    assert forms["joint"]["aic"] < forms["additive"]["aic"]       # the points came from Eq. 8
    text = run_cli("laws", "compare", "--csv", str(joint_csv))
    assert text.returncode == 0 and "additive" in text.stdout and "AIC" in text.stdout


def test_laws_fit_additive_then_plan_with_it(joint_csv, tmp_path):
    out = tmp_path / "additive.json"
    fitted = run_cli("laws", "fit", "--csv", str(joint_csv), "--law", "additive", "--bootstrap", "40",
                     "--huber-scale", "1e-3", "--out", str(out), "--json")
    assert fitted.returncode == 0, fitted.stderr
    assert set(json.loads(fitted.stdout)["params"]) == {"A", "B", "alpha", "beta", "E"}
    answer = json.loads(run_cli("budget", "--budget", "1e6", "--with-inference", "--law", str(out), "--json").stdout)
    assert answer["n_opt_interval"][0] <= answer["n_opt"] <= answer["n_opt_interval"][1]


def strict_json(text: str):
    """`text` parsed as strict JSON: NaN, Infinity and -Infinity are refused."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


# cmrc2018's five model sizes as the first demo study measured them (commit 73ff8e8): a
# model-size fit whose bootstrap refits run A to infinity
DIVERGING_MODEL_SIZES = "n,d,loss\n39104,3469,4.017087\n104064,3469,3.26249\n154048,3469,3.54084\n" \
                        "313856,3469,3.338796\n512128,3469,3.214184\n"


def test_a_fit_with_diverging_refits_is_strict_json_and_reloads(tmp_path):
    """A model-size fit with refits whose A runs to infinity: the intervals come from
    the finite ones (and say how many), the file is strict JSON, nothing warns on
    stderr, and the file loads back."""
    csv, out = tmp_path / "cmrc.csv", tmp_path / "m.json"
    csv.write_text(DIVERGING_MODEL_SIZES)
    result = run_cli("laws", "fit", "--csv", str(csv), "--law", "model", "--bootstrap", "50", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "nan" not in result.stdout
    saved = strict_json(out.read_text())
    assert "inf" in {value for row in saved["bootstrap"] for value in row}, "the case needs a diverged refit"
    assert 0 < saved["bootstrap_kept"] < 50
    assert f"{saved['bootstrap_kept']} of 50 bootstrap refits" in result.stdout
    assert all(np.isfinite(bound) for pair in saved["intervals"].values() for bound in pair)
    again = fit_from_dict(saved)
    assert again.bootstrap_params.shape == (len(saved["bootstrap"]), 3) and np.isinf(again.bootstrap_params).any()
    assert again.intervals == {k: tuple(v) for k, v in saved["intervals"].items()}


def test_an_old_fit_file_with_infinity_and_nan_still_loads(joint_csv, tmp_path):
    out = tmp_path / "fit.json"
    assert run_cli("laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--bootstrap", "10",
                   "--out", str(out)).returncode == 0
    old = json.loads(out.read_text())
    old["bootstrap"][0][0], old["intervals"]["A"][1] = float("inf"), float("nan")   # as files before strict JSON
    old.pop("bootstrap_kept")
    fit = fit_from_dict(json.loads(json.dumps(old)))
    assert np.isinf(fit.bootstrap_params[0, 0]) and np.isnan(fit.intervals["A"][1])
    assert strict_json(json.dumps(fit.to_dict(), allow_nan=False))["intervals"]["A"][1] is None


def test_laws_fit_of_a_folder_says_it_is_a_folder(tmp_path):
    result = run_cli("laws", "fit", "--csv", str(tmp_path), "--law", "model")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path} is a folder, not a CSV file; give the path of a CSV file"


def test_laws_fit_out_is_written_whole_or_not_at_all(joint_csv, tmp_path, monkeypatch, capsys):
    """A write killed before it ends leaves the old fit, not a truncated one."""
    import engine.paths
    from engine.cli import main

    out = tmp_path / "fit.json"
    out.write_text('{"old": "fit"}')

    def killed(source, target):
        raise KeyboardInterrupt   # the command is stopped between writing and renaming

    monkeypatch.setattr(engine.paths.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        main(["laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--bootstrap", "0", "--out", str(out)])
    assert out.read_text() == '{"old": "fit"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json", "runs.csv"]


def test_budget_warning_writes_a_huge_factor_as_a_count(joint_csv, tmp_path):
    """A budget of 1e300 puts N* and D* some 1e290 times beyond the fit: the warning says
    so in powers of ten, not as 300-digit integers."""
    from engine.budget import format_factor

    out = tmp_path / "fit.json"
    assert run_cli("laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--bootstrap", "10",
                   "--out", str(out)).returncode == 0
    result = run_cli("budget", "--budget", "1e300", "--law", str(out), "--json")
    assert result.returncode == 0, result.stderr
    warning = json.loads(result.stdout)["extrapolation"]["warning"]
    assert warning.startswith("Warning:") and max(len(word) for word in warning.split()) < 20, warning
    assert "e+" in warning
    assert [format_factor(f) for f in (2.114, 11661.4, 3.4e6, 1.68e296)] == ["2.11x", "11,661x", "3.4Mx", "1.68e+296x"]


def test_laws_predict_puts_a_measured_run_against_the_prediction_interval(joint_csv, tmp_path, capsys):
    """In process: a fit of the paper's law predicts a run it never saw; a measured value
    near the law is inside the prediction interval, one 30% off is outside."""
    from engine.cli import main

    out = tmp_path / "fit.json"
    assert main(["laws", "fit", "--csv", str(joint_csv), "--law", "joint", "--bootstrap", "200", "--out", str(out),
                 "--json"]) == 0
    capsys.readouterr()
    truth = float(preset("paper-joint").predict(3e7, 2e4))
    for measured, inside in ((truth, True), (truth * 1.3, False)):
        assert main(["laws", "predict", "--law", str(out), "--n", "3e7", "--d", "2e4", "--measured", str(measured),
                     "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        lo, hi = result["prediction_interval"]
        assert lo < result["predicted"] < hi and result["inside_prediction_interval"] is inside
        assert result["error"] == pytest.approx((result["predicted"] - measured) / measured)
        assert result["extrapolation"]["n"] == pytest.approx(1.0)  # 3e7 lies among the fitted sizes
    assert main(["laws", "predict", "--law", str(out), "--n", "-1", "--d", "2e4"]) == 2
    assert "must be positive" in capsys.readouterr().err
