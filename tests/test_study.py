"""engine/study.py: the study report on rows drawn from a known joint law. The fits
must recover the law, the extrapolations must predict what they left out, the
correlation must come out negative, and every figure must render."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.cli import main as engine_cli
from engine.errors import InputError
from engine.laws import ScalingLaw
from engine.study import StudyConfig, build_report, report_markdown, study_document

TRUE = ScalingLaw("joint", {"A": 2e4, "B": 300.0, "alpha": 0.5, "beta": 0.6, "delta": 3.5})
NOISE = 0.003


def study_runs(seed: int = 0) -> pd.DataFrame:
    """The shape of the CPU study: 6 N x 5 D human runs, ICT (worth half a human
    pair) on 3 models, 5 sizes on a second data set; MRR falls as the entropy rises."""
    rng = np.random.default_rng(seed)
    sizes = [39_104, 104_064, 154_048, 313_856, 512_128, 1_842_688]
    data = [500, 1000, 2000, 4000, 7719]
    frames = []
    for n in sizes:
        for d in data:
            frames.append({"n_params": n, "train_pairs": d, "annotation": "human", "dataset": "squad-dev",
                           "best_contrastive_entropy": TRUE.predict(n, d)})
    for n in sizes[:5:2]:
        for d in data[:4] + [6501]:
            frames.append({"n_params": n, "train_pairs": d, "annotation": "ict", "dataset": "squad-dev",
                           "best_contrastive_entropy": TRUE.predict(n, d / 2)})
    for n in sizes[:5]:
        frames.append({"n_params": n, "train_pairs": 10_000, "annotation": "human", "dataset": "cmrc2018",
                       "best_contrastive_entropy": TRUE.predict(n, 10_000) + 0.1})
    runs = pd.DataFrame(frames)
    runs["best_contrastive_entropy"] *= np.exp(rng.normal(0, NOISE, len(runs)))
    runs["model_name"] = [f"m{n}" for n in runs["n_params"]]
    runs["mrr@10"] = np.exp(-(runs["best_contrastive_entropy"] - 3.5)) / 10 + rng.normal(0, 0.002, len(runs))
    runs["recall@1000"] = 0.9 - 0.05 * runs["best_contrastive_entropy"]
    return runs


@pytest.fixture(scope="module")
def report():
    return build_report(study_runs(), StudyConfig(bootstrap=100))


def test_fits_recover_the_law_and_extrapolate(report):
    assert report.joint_law.r2 > 0.95
    for name in ("alpha", "beta", "delta"):
        lo, hi = report.joint_law.intervals[name]
        assert lo <= TRUE.params[name] <= hi, name
    assert set(report.extrapolations) == {"model", "data", "joint-n", "joint-d"}
    for key, extrapolation in report.extrapolations.items():
        summary = extrapolation.summary()
        assert summary["mean |error| %"] < 2.0, (key, summary)  # noise is 0.3 %
    assert set(report.extrapolations["joint-d"].heldout["d"]) == {7719}
    assert set(report.extrapolations["joint-n"].heldout["n"]) == {1_842_688}


def test_annotations_other_data_sets_and_correlations(report):
    assert set(report.annotation_laws) == {"human", "ict"} and report.annotation_model == "m512128"
    assert set(report.other_model_laws) == {"cmrc2018"}
    corr = report.correlations.set_index(["dataset", "annotation", "runs", "metric"])
    assert corr.loc[("squad-dev", "human", "all", "mrr@10"), "spearman"] < -0.8
    text = report_markdown(report)
    for needle in ("Eq. 6", "Eq. 7", "Eq. 8", "largest n = 1,842,688", "ict needs", "cmrc2018", "recall@1000"):
        assert needle in text, needle


@pytest.mark.slow
def test_every_figure_renders_to_svg_and_png(report, tmp_path):
    written = study_document(report).write(tmp_path)
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    names = {"model-law", "data-law", "holdout-largest-n", "holdout-largest-d", "annotations", "budget",
             "entropy-vs-mrr"}
    assert figures == {f"{n}.svg" for n in names} | {f"{n}.png" for n in names}
    assert set(written) == {tmp_path / "report.md", tmp_path / "report.html"} | {
        tmp_path / "figures" / f for f in figures}
    for name in names:
        assert (tmp_path / "figures" / f"{name}.svg").read_text().startswith("<svg")
        assert (tmp_path / "figures" / f"{name}.svg").stat().st_size > 5_000
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"](figures/{name}.svg)" in markdown for name in names) and "largest n = 1,842,688" in markdown
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == len(names) and "largest n = 1,842,688" in page
    rules = sum(line.startswith("|---") for line in markdown.splitlines())
    assert page.count("<table>") == rules >= 5                      # every table renders, "mean |error| %" too
    assert "src=" not in page and "href=" not in page.replace('xlink:href="#', "")    # nothing outside the file


def test_a_run_no_better_than_random_is_left_out_and_named():
    runs = study_runs()
    runs.loc[0, "best_contrastive_entropy"] = 6.6  # overfit before its first evaluation
    report = build_report(runs, StudyConfig(bootstrap=20))
    assert len(report.diverged) == 1 and len(report.points) == 29
    assert report.joint_law.r2 > 0.95
    assert "no better than a random scorer" in report_markdown(report) and "6.600" in report_markdown(report)


def test_too_small_a_study_is_refused():
    runs = study_runs()
    with pytest.raises(InputError, match="needs >= 3 model sizes"):
        build_report(runs[runs["n_params"] <= 104_064])
    with pytest.raises(InputError, match="missing"):
        build_report(runs.drop(columns="dataset"))


@pytest.mark.slow
def test_cli_reads_the_store_and_writes_report_and_figures(tmp_path, capsys):
    from store import Store

    runs = study_runs()
    rows = runs.rename(columns={"n_params": "n", "train_pairs": "d", "best_contrastive_entropy": "loss",
                                "model_name": "model"})
    Store().load_rows(rows, source="demo")
    assert engine_cli(["study", "--source", "demo", "--bootstrap", "50", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").read_text().startswith("# Scaling study: squad-dev\n\n### squad-dev")
    assert (tmp_path / "out" / "figures" / "model-law.svg").exists()
    assert (tmp_path / "out" / "figures" / "model-law.png").exists()
    assert "Eq. 8" in (tmp_path / "out" / "report.html").read_text()
    assert "Eq. 8" in capsys.readouterr().out
    assert engine_cli(["study", "--source", "engine", "--out", str(tmp_path / "x")]) == 2  # no such runs


def test_cli_json_is_one_object(tmp_path, capsys, stub_figures):
    from store import Store

    rows = study_runs().rename(columns={"n_params": "n", "train_pairs": "d", "best_contrastive_entropy": "loss",
                                        "model_name": "model"})
    Store().load_rows(rows, source="demo")
    assert engine_cli(["study", "--source", "demo", "--bootstrap", "20", "--json", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out)                # stdout is the one object, no Markdown
    assert summary["dataset"] == "squad-dev" and summary["runs_fitted"] == 30
    assert set(summary["laws"]) == {"model", "data", "joint"} and summary["laws"]["joint"]["r2"] > 0.95
    assert {e["law"] for e in summary["extrapolations"]} >= {"Eq. 8, L(N, D)"}
    assert str(tmp_path / "o" / "report.html") in summary["written"]


def test_raw_and_calibrated_side_by_side():
    """Calibrated entropy from a law with steeper exponents, a second seed at the largest N:
    the comparison puts the two studies' numbers in one table."""
    runs = study_runs()
    steeper = ScalingLaw("joint", {"A": 2e4, "B": 300.0, "alpha": 0.7, "beta": 0.8, "delta": 3.0})
    runs["best_calibrated_entropy"] = [steeper.predict(n, d) for n, d in zip(runs["n_params"], runs["train_pairs"])]
    runs["calibrated_entropy"] = runs["best_calibrated_entropy"] + 0.01
    runs["best_step"], runs["calibrated_best_step"] = 400, np.where(runs["train_pairs"] == 500, 0, 400)
    runs["trained_calibrated_entropy"] = runs["best_calibrated_entropy"] + np.where(runs["train_pairs"] == 500, 0.05, 0)
    second = runs[(runs["n_params"] == runs["n_params"].max()) & (runs["annotation"] == "human")].copy()
    second["best_contrastive_entropy"] += 0.02
    runs = pd.concat([runs, second], ignore_index=True)
    from engine.study import with_metric_comparison

    report = with_metric_comparison(build_report(runs, StudyConfig(bootstrap=60)), runs)
    table = report.comparison.set_index("quantity")
    assert list(table.columns) == ["raw", "calibrated", "calibrated, best after step 0"]
    assert table.loc["runs fitted (main study)", "raw"] == "35"
    assert table.loc["runs left out as no better than random (all data sets)"].tolist() == ["0", "0", "0"]
    assert table.loc["seed spread: mean |difference| at one N, D", "raw"] == "0.020 (5 configurations)"
    assert table.loc["seed spread: mean |difference| at one N, D", "calibrated"] == "0.000 (5 configurations)"
    alpha_raw, alpha_calibrated, _ = table.loc["alpha, Eq. 8: 95% interval (high / low)"]
    assert alpha_calibrated.startswith("0.7") and "x)" in alpha_calibrated and alpha_raw != alpha_calibrated
    assert table.loc["Pearson r with MRR@10, all runs of the main study", "raw"].startswith("-0.9")
    untrained = table.loc["runs whose best is the untrained model (step 0)"]
    assert untrained.tolist() == ["0 of 35", "7 of 35", ""]  # 6 sizes at D = 500, the largest twice
    assert table.loc["best entropy range", "calibrated, best after step 0"] != table.loc["best entropy range", "calibrated"]
    assert "raw and on calibrated" in report_markdown(report)
    # without calibrated entropy (an import, the old demo) there is nothing to compare
    plain = study_runs()
    assert with_metric_comparison(build_report(plain, StudyConfig(bootstrap=20)), plain).comparison is None


def test_the_bm25_reference_stands_beside_the_runs_of_its_protocol():
    """With a BM25 reference under the runs' protocol the report counts the runs below it
    and its law charts draw it; one under another protocol is not used."""
    from engine.eval_protocol import reference_protocol
    from engine.study import with_references

    fingerprint = {"negatives": 256, "repeats": 3, "pool": 300, "pool_seed": 0, "metric": "raw",
                   "negative_pool": "held-out"}
    runs = study_runs().assign(eval_fingerprint=[fingerprint] * len(study_runs()))
    base = build_report(runs, StudyConfig(bootstrap=20))
    squad = base.all_rows[base.all_rows["dataset"] == "squad-dev"]["loss"]
    level = float(squad.median())
    references = pd.DataFrame([
        {"dataset": "squad-dev", "method": "bm25", "eval_protocol": reference_protocol(fingerprint),
         "metrics": {"contrastive_entropy": level, "calibrated_entropy": 0.3, "mrr@10": 0.8}},
        {"dataset": "cmrc2018", "method": "bm25", "eval_protocol": reference_protocol({**fingerprint, "pool": 9}),
         "metrics": {"contrastive_entropy": 0.1, "mrr@10": 0.9}}])
    report = with_references(base, references)
    assert set(report.lexical) == {"squad-dev"}
    text = report_markdown(report)
    assert "Against word overlap" in text
    below = int((squad < level).sum())
    assert f"| {len(squad)} | {below} |" in text
    layers = json.dumps(study_document(report).charts["model-law"].to_dict())
    assert "BM25" in layers and "rule" in layers
    assert "Against word overlap" not in report_markdown(base)


def test_an_annotation_type_whose_losses_are_all_equal_is_left_out_of_eq_7_not_the_report():
    """Every ICT run best untrained (the same loss at every D) has no data law; the report
    is still built (a law refuses all-equal losses)."""
    runs = study_runs()
    ict = runs["annotation"] == "ict"
    runs.loc[ict, "best_contrastive_entropy"] = 4.5111
    report = build_report(runs, StudyConfig(bootstrap=20))
    assert "ict" not in report.annotation_laws


def test_the_report_names_the_negatives_pool_and_leaves_constant_metrics_out_of_correlations():
    fingerprint = {"negatives": 256, "repeats": 3, "pool": 300, "pool_seed": 0, "metric": "raw",
                   "negative_pool": "held-out", "pool_training_positives": 0}
    runs = study_runs()
    runs = runs.assign(eval_fingerprint=[fingerprint] * len(runs), **{"recall@1000": 1.0})
    report = build_report(runs, StudyConfig(bootstrap=20))
    text = report_markdown(report)
    assert "held-out pool 300 (0 training positives)" in text
    assert "Negatives drawn from whole articles kept out of training" in text
    assert "recall@1000" not in set(report.correlations["metric"])
