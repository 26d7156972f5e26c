"""Evaluation protocols (engine/eval_protocol.py, issue 14 items 1 and 2): every run carries
the fingerprint of how it was evaluated; the store keeps it (old stores, old spool
records, imports without protocol columns and the demo study form a group of their
own); a fit over more than one protocol is refused naming the fields that differ, on
every path (fit_law, the Fit page, `laws fit --store`, the study); the random-scorer
level is log(1 + k) of each run's own k."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine import eval_protocol as protocol
from engine.cli import main as engine_cli
from engine.config import EvalConfig, TrainConfig
from engine.errors import InputError
from engine.laws import FitConfig, fit_law, preset
from engine.paths import PROJECT_ROOT, spool_dir
from engine.study import StudyConfig, build_report, report_markdown
from store import Store
from store.demo import load_demo
from store.schema import migrate
from store.spool import RECORD_FIELDS
from tests.in_process import run_main
from tests.test_study import study_runs

K64 = {"negatives": 64, "repeats": 10, "pool": 100_000, "pool_seed": 0, "test_pairs": 500,
       "max_query_length": 32, "max_passage_length": 180, "precision": "fp32", "test_split": "test:abc",
       "metric": "raw"}  # fmt: skip
K256 = {**K64, "negatives": 256}


def protocol_box(at):
    """The Fit laws page's protocol choice (its key follows the protocols it offers)."""
    return next(box for box in at.selectbox if box.label == "Evaluation protocol")


def grid_rows(**columns) -> pd.DataFrame:
    """4 model sizes x 4 data sizes from the paper's joint law (no noise; losses below 1.1)."""
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(5e5, 5e7, 4), np.geomspace(1e4, 1e6, 4)))
    loss = preset("paper-joint").predict(n, d)
    return pd.DataFrame({"n": n.astype(int), "d": d.astype(int), "loss": loss, "dataset": "msmarco",
                         "annotation": "human", **columns})


def start(store: Store, run_id: str, fingerprint: dict | None, loss: float = 3.0, n: int = 1_000_000) -> None:
    store.start_run(config={}, model_name="m", n_params=n, n_params_strict=n, train_pairs=1000,
                    annotation="human", dataset="toy", seed=0, device="cpu", code_version="t", run_id=run_id,
                    eval_fingerprint=fingerprint)
    store.finish_run(run_id, status="completed", best_contrastive_entropy=loss)


# --- the fingerprint -----------------------------------------------------------------

def test_the_fingerprint_comes_from_the_config_and_the_pairs_evaluated():
    cfg = TrainConfig(dataset="x", precision="bf16", max_query_length=16, max_passage_length=64,
                      eval=EvalConfig(negatives=64, repeats=3, subcorpus_size=500, seed=2, max_test_pairs=2))
    pairs = [("q2", "p9"), ("q1", "p3")]
    fingerprint = protocol.evaluation_fingerprint(cfg, split="test", pairs=pairs, pool_training_positives=7)
    assert {k: v for k, v in fingerprint.items() if k != "test_split"} == {
        "negatives": 64, "repeats": 3, "pool": 500, "pool_seed": 2, "test_pairs": 2, "max_query_length": 16,
        "max_passage_length": 64, "precision": "fp32", "metric": "raw", "negative_pool": "unjudged",
        "pool_training_positives": 7}  # a bf16 run evaluates in fp32
    assert fingerprint["test_split"] == protocol.test_split_identity("test", pairs[::-1]) \
        != protocol.test_split_identity("test", [("q1", "p3")])  # order-free, but names the pairs
    assert protocol.protocol_id(fingerprint) == protocol.protocol_id(dict(reversed(fingerprint.items())))
    fp32 = protocol.evaluation_fingerprint(replace(cfg, precision="no"), split="test", pairs=pairs,
                                           pool_training_positives=7)
    assert fp32 == fingerprint  # the run's precision is not the evaluation's
    more = protocol.evaluation_fingerprint(replace(cfg, eval=replace(cfg.eval, negatives=256)), split="test",
                                           pairs=pairs, pool_training_positives=7)
    assert protocol.protocol_id(more) != protocol.protocol_id(fingerprint)


@pytest.mark.slow
def test_training_records_its_fingerprint_in_the_store(tmp_path):
    from engine.train import train
    from tests.helpers import write_synthetic

    store = Store(tmp_path / "results.duckdb")
    cfg = TrainConfig(dataset=str(write_synthetic(tmp_path / "syn")), model="scratch-L1-H32",
                      tokenizer_vocab_size=400, steps=4, batch_size=8, negatives=8, lr=3e-3, max_query_length=16,
                      max_passage_length=32, eval_every=4, checkpoint_every=0, precision="no", run_id="fp",
                      eval=EvalConfig(negatives=16, repeats=2, ranking="never", max_test_pairs=20))
    train(cfg, store=store)
    points = store.law_points()
    fingerprint = points.at[0, "eval_fingerprint"]
    assert fingerprint["negatives"] == 16 and fingerprint["repeats"] == 2 and fingerprint["test_pairs"] == 20
    assert fingerprint["precision"] == "fp32" and fingerprint["max_passage_length"] == 32
    assert fingerprint["test_split"].startswith("test:") and fingerprint["metric"] == "raw"
    assert points.at[0, "eval_protocol"] == protocol.protocol_id(fingerprint)
    assert store.run("fp")["eval_fingerprint"] == fingerprint


# --- the store --------------------------------------------------------------------------

def test_the_store_keeps_the_fingerprint_and_runs_without_one_read_none(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    start(store, "with", K64)
    start(store, "without", None)
    points = store.law_points().set_index("run_id")
    assert points.at["with", "eval_fingerprint"] == K64
    assert points.at["with", "eval_protocol"] == protocol.protocol_id(K64)
    assert points.at["without", "eval_fingerprint"] is None and pd.isna(points.at["without", "eval_protocol"])
    assert store.runs().set_index("run_id").at["with", "eval_protocol"] == protocol.protocol_id(K64)
    with pytest.raises(InputError, match="unknown evaluation fingerprint field 'k'"):
        start(store, "bad", {"k": 64})


def test_a_spool_record_from_an_older_writer_still_ingests(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    old_fields = {name for name in RECORD_FIELDS["start_run"] if not name.startswith("eval_")}
    args = {"run_id": "old", "config": "{}", "model_name": "m", "n_params": 5, "n_params_strict": 5,
            "train_pairs": 7, "annotation": "human", "dataset": "toy", "seed": 0, "device": "cpu",
            "code_version": "t", "source": "engine", "label": None}
    assert set(args) == old_fields
    folder = spool_dir(store.path)
    folder.mkdir(parents=True)
    (folder / "1-old.jsonl").write_text(json.dumps({"op": "start_run", "ts": 1.0, "args": args}) + "\n")
    assert store.ingest() == 1 and store.info()["spool_records_quarantined"] == 0
    assert store.run("old")["eval_fingerprint"] is None


def test_a_store_from_before_the_fingerprint_upgrades_and_keeps_its_runs(tmp_path):
    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, upto=4)
    con.execute("INSERT INTO runs (run_id, status, n_params, train_pairs, best_contrastive_entropy) "
                "VALUES ('old-run', 'completed', 1000, 100, 3.0)")
    con.close()
    store = Store(path)
    points = store.law_points()
    assert list(points["run_id"]) == ["old-run"] and pd.isna(points.at[0, "eval_protocol"])
    assert protocol.protocol_labels(points) == [protocol.UNRECORDED]


def test_the_demo_study_loads_as_one_protocol_group_and_fits(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    assert load_demo(store, PROJECT_ROOT / "demo" / "cpu-study.json") > 0
    points = store.law_points(dataset="squad-dev", annotation="human")
    assert len(set(protocol.protocol_labels(points))) == 1  # the demo file carries each run's eval_* columns
    fit_law(points, "joint", FitConfig(bootstrap=0))


def test_laws_fit_store_leaves_out_runs_no_better_than_random_and_names_them(tmp_path, capsys):
    """As the study and the Fit page do: a run at or above log(1 + k) of its evaluation's k
    (6.6 >= log 257) is left out of `laws fit --store`, said on stderr, and the fit is that
    of the other runs."""
    store_path = tmp_path / "s.duckdb"
    grid = grid_rows(eval_negatives=256)
    diverged = grid.iloc[:1].assign(loss=6.6)
    Store(store_path).load_rows(pd.concat([grid, diverged], ignore_index=True), source="import")
    out = tmp_path / "fit.json"
    assert engine_cli(["laws", "fit", "--store", str(store_path), "--dataset", "msmarco", "--annotation", "human",
                       "--law", "joint", "--bootstrap", "0", "--out", str(out), "--json"]) == 0
    assert "left out 1 run(s) no better than a random scorer" in capsys.readouterr().err
    fitted = json.loads(out.read_text())
    alone = fit_law(grid[["n", "d", "loss"]], "joint", FitConfig(bootstrap=0))
    assert len(fitted["points"]) == len(grid) and fitted["r2"] == pytest.approx(alone.r2, abs=1e-6)


# --- one protocol per fit --------------------------------------------------------------

def test_a_fit_over_two_protocols_is_refused_naming_the_fields(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.load_rows(grid_rows(eval_negatives=64, eval_repeats=10), source="import")
    store.load_rows(grid_rows(eval_negatives=256, eval_repeats=10, dataset="other"), source="import")
    points = store.law_points()
    with pytest.raises(InputError, match=r"2 evaluation protocols .* differ in negatives \(negatives 256 vs 64\)"):
        fit_law(points, "joint", FitConfig(bootstrap=0))
    fit = fit_law(store.law_points(dataset="msmarco"), "joint", FitConfig(bootstrap=0))
    assert fit.r2 > 0.999


def test_rows_without_protocol_columns_are_a_group_of_their_own(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.load_rows(grid_rows(eval_negatives=256), source="import")
    store.load_rows(grid_rows(), source="import")
    with pytest.raises(InputError, match="differ in negatives"):
        fit_law(store.law_points(), "joint", FitConfig(bootstrap=0))
    assert sorted(set(protocol.protocol_labels(store.law_points()))) == sorted(
        [protocol.protocol_id({"negatives": 256}), protocol.UNRECORDED])


def test_a_csv_import_carries_eval_negatives_and_rejects_a_bad_one(tmp_path):
    csv = tmp_path / "runs.csv"
    csv.write_text("n,d,loss,eval_negatives,eval_precision\n1000,10,3.0,64,bf16\n2000,10,2.9,,\n3000,10,2.8,six,\n")
    store = Store(tmp_path / "s.duckdb")
    report = store.import_file(csv)
    assert report.imported == 2 and not report.ignored_columns
    assert report.rejected == [(4, "eval_negatives must be a whole number > 0 (got 'six')")]
    points = store.law_points().sort_values("n")
    assert list(points["eval_fingerprint"]) == [{"negatives": 64, "precision": "bf16"}, None]



@pytest.mark.parametrize("cell, problem", [("{bad", "Expecting property name"),
                                           ("[" * 100_000 + "]" * 100_000, "nested too deeply to read")])
def test_an_eval_fingerprint_cell_that_is_not_json_names_its_row(cell, problem):
    """Before: json's JSONDecodeError or RecursionError out of fingerprints_of."""
    points = pd.DataFrame({"n": [1e5, 2e5], "eval_fingerprint": ['{"negatives": 64}', cell]})
    with pytest.raises(InputError, match=f"row 2: eval_fingerprint is not a readable JSON object \\({problem}"):
        protocol.fingerprints_of(points)


def run_cli(*args):
    return run_main(engine_cli, *args)


def test_laws_fit_store_fits_the_stores_runs_one_protocol_at_a_time(tmp_path):
    path = tmp_path / "s.duckdb"
    store = Store(path)
    store.load_rows(grid_rows(eval_negatives=64), source="import")
    store.load_rows(grid_rows(eval_negatives=256, annotation="ict"), source="import")
    mixed = run_cli("laws", "fit", "--store", str(path), "--law", "joint", "--bootstrap", "0")
    assert mixed.returncode == 2 and "differ in negatives" in mixed.stderr and "Traceback" not in mixed.stderr
    out = tmp_path / "fit.json"
    one = run_cli("laws", "fit", "--store", str(path), "--annotation", "human", "--law", "joint",
                  "--bootstrap", "0", "--json", "--out", str(out))
    assert one.returncode == 0, one.stderr
    fit = json.loads(one.stdout)
    assert fit["params"]["alpha"] == pytest.approx(preset("paper-joint").params["alpha"], rel=1e-3)
    assert len(fit["points"]) == 16 and out.is_file()
    none = run_cli("laws", "fit", "--store", str(path), "--dataset", "nowhere", "--law", "joint")
    assert none.returncode == 2 and "no completed runs of dataset nowhere" in none.stderr
    onto = run_cli("laws", "fit", "--store", str(path), "--law", "joint", "--out", str(path))
    assert onto.returncode == 2 and "would overwrite the --store input" in onto.stderr


def test_the_study_refuses_a_main_study_of_two_protocols():
    runs = study_runs().assign(eval_fingerprint=None)
    runs["eval_fingerprint"] = [K256] * len(runs)
    runs.at[3, "eval_fingerprint"] = {**K256, "repeats": 3}
    with pytest.raises(InputError, match="differ in repeats"):
        build_report(runs, StudyConfig(bootstrap=0))


# --- the random-scorer level, log(1 + k) ------------------------------------------------

def test_a_k64_run_above_log_65_is_left_out_of_the_study_as_random():
    runs = study_runs()
    runs["eval_fingerprint"] = [K256] * len(runs)
    runs.at[0, "eval_fingerprint"] = K64
    runs.at[0, "best_contrastive_entropy"] = 4.3  # > log 65 = 4.174, < log 257 = 5.549
    assert math.log(65) < 4.3 < math.log(257)
    report = build_report(runs, StudyConfig(bootstrap=20))
    assert list(report.diverged["loss"]) == [4.3] and len(report.points) == 29
    assert report.diverged.at[0, "random_level"] == pytest.approx(math.log(65))
    assert "4.300 >= 4.174" in report_markdown(report)


def test_unknown_k_counts_as_256():
    assert protocol.random_scorer_levels(pd.DataFrame({"loss": [1.0, 2.0], "eval_fingerprint": [None, K64]})) \
        == pytest.approx([math.log(257), math.log(65)])


def test_the_study_out_folder_may_not_be_the_stores_spool(tmp_path, capsys):
    store = Store()
    store.load_rows(grid_rows(), source="demo")
    target = spool_dir(store.path) / "report"
    assert engine_cli(["study", "--out", str(target)]) == 2
    assert "would overwrite the store's spool folder" in capsys.readouterr().err
    assert not target.exists()


def leave_out_choice(at):
    """The Fit page's left-out points (a choice per set of points: its key names their digest)."""
    return next(box for box in at.multiselect if box.key.startswith("fit_leave_out_joint_"))


@pytest.mark.slow
def test_the_fit_page_offers_one_protocol_and_leaves_out_a_k64_run_above_log_65():
    from tests.helpers import assert_clean, open_page, press_fit
    store = Store()
    k64 = grid_rows(eval_negatives=64)
    k64.loc[0, "loss"] = 4.3  # no better than random at k = 64
    store.load_rows(k64, source="import")
    store.load_rows(grid_rows().head(12), source="import")  # protocol not recorded
    at = open_page("pages/2_Fit_laws.py")
    at.radio(key="fit_kind").set_value("joint").run()
    protocols = protocol_box(at)
    assert protocols.options[0].startswith(f"{protocol.protocol_id({'negatives': 64})} (16 runs): k=64")
    assert at.selectbox(key="fit_annotation").value == "human"
    assert protocols.options[1].startswith(f"{protocol.UNRECORDED} (12 runs)")
    left_out = leave_out_choice(at).value
    assert len(left_out) == 1 and "N=500k" in left_out[0] and "D=10k" in left_out[0]
    press_fit(at)
    assert_clean(at)
    assert next(m.value for m in at.metric if m.label == "Points fitted") == "15"
    protocol_box(at).set_value(protocol.UNRECORDED).run()
    assert leave_out_choice(at).value == []
    press_fit(at)
    assert_clean(at)
    assert next(m.value for m in at.metric if m.label == "Points fitted") == "12"


def test_laws_fit_csv_refuses_rows_of_two_protocols(tmp_path):
    csv = tmp_path / "runs.csv"
    pd.concat([grid_rows(eval_negatives=64), grid_rows(eval_negatives=256)]).to_csv(csv, index=False)
    result = run_cli("laws", "fit", "--csv", str(csv), "--law", "joint", "--bootstrap", "0")
    assert result.returncode == 2 and "differ in negatives (negatives 256 vs 64)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_uploaded_csv_is_fitted_one_protocol_at_a_time():
    from tests.helpers import assert_clean, open_page, press_fit
    data = pd.concat([grid_rows(eval_negatives=64), grid_rows().head(5)]).to_csv(index=False).encode()
    at = open_page("pages/2_Fit_laws.py")
    at.radio(key="fit_source").set_value("Upload a CSV").run()
    at.radio(key="fit_kind").set_value("joint").run()
    at.file_uploader(key="fit_upload").set_value(("mixed.csv", data, "text/csv")).run()
    assert protocol_box(at).value == protocol.protocol_id({"negatives": 64})
    press_fit(at)
    assert_clean(at)
    assert next(m.value for m in at.metric if m.label == "Points fitted") == "16"


@pytest.mark.slow
def test_the_runs_page_shows_each_runs_protocol():
    from tests.helpers import assert_clean, open_page, table_with
    store = Store()
    start(store, "measured", K64)
    start(store, "older", None)
    at = open_page("pages/1_Runs.py")
    assert_clean(at)
    table = table_with(at, "eval_protocol").set_index("run_id")
    assert table.at["measured", "eval_protocol"] == protocol.protocol_id(K64)
    assert table.at["older", "eval_protocol"] == "—"             # not recorded, as the page's caption says
    assert any(f"{protocol.protocol_id(K64)}: k=64, 10 repeats, pool 100,000 (seed 0)" in c.value for c in at.caption)


@pytest.mark.slow
@pytest.mark.parametrize("page", [None, "pages/1_Runs.py", "pages/2_Fit_laws.py", "pages/3_Budget_planner.py",
                                  "pages/4_Analysis.py", "pages/5_Plan_runs.py"])
def test_every_page_works_with_runs_that_carry_fingerprints(page):
    from tests.helpers import assert_clean, open_page
    store = Store()
    store.load_rows(grid_rows(eval_negatives=64, eval_precision="bf16"), source="import")
    store.load_rows(grid_rows(annotation="ict"), source="import")
    start(store, "measured", K64)
    assert_clean(open_page(page))
