"""The newer entry points used as a hostile user would (issue 24): names the store cannot
hold, outputs that follow links or land on inputs, fits the points cannot determine,
killed and failing processes, values read wrong without a word, and writers on full or
read-only disks. Each case ends in one line `error: ...` with exit code 2 and nothing
half-written, or in a result that is correct; never a traceback, never a poisoned store.

Sections, by feature: the store and its spool; import-tracker; outputs (study --out,
export-model, annotate, emit slurm, plan-runs, laws fit); fits; processes."""
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from store import Store
from tests.conftest import ROOT

NOT_UTF8 = "caf\udce9"  # what Python makes of the command-line bytes b"caf\xe9" (Latin-1 é)


def store_main(argv):
    from store.__main__ import main

    return main([str(a) for a in argv])


def engine_main(argv):
    from engine.cli import main

    return main([str(a) for a in argv])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def assert_store_reads(store: Store) -> None:
    """Every reader still works and nothing was set aside: the store is not poisoned."""
    store.runs(), store.points(), store.datasets(), store.law_points()
    assert store.info()["spool_records_quarantined"] == 0


# ---------------------------------------------------------------- the store and its spool

@pytest.mark.parametrize("write", ["label", "dataset name", "model name", "config text", "metric name", "device"])
def test_the_store_refuses_text_utf8_cannot_hold(tmp_path, write):
    """Before: accepted into the spool, then every read failed (surrogate '\\udce9')."""
    from engine.errors import InputError

    store = Store(tmp_path / "s.duckdb")
    run = dict(config={}, model_name="m", n_params=10, n_params_strict=10, train_pairs=10, annotation="human",
               dataset="d", seed=0, device="cpu", code_version="x", run_id="r1")
    calls = {
        "label": lambda: store.start_run(**run, label=NOT_UTF8),
        "dataset name": lambda: store.register_dataset(NOT_UTF8, language="en", format="beir", path="/d",
                                                       n_passages=1, n_queries=1, n_train_pairs=1, n_test_pairs=1),
        "model name": lambda: store.start_run(**{**run, "model_name": NOT_UTF8}),
        "config text": lambda: store.start_run(**{**run, "config": {"dataset": f"/data/{NOT_UTF8}"}}),
        "metric name": lambda: store.add_point("r1", step=1, contrastive_entropy=1.0, metrics={NOT_UTF8: 0.5},
                                               wall_time_s=1.0),
        "device": lambda: store.start_run(**{**run, "device": NOT_UTF8}),
    }
    with pytest.raises(InputError, match="not valid UTF-8"):
        calls[write]()
    assert_store_reads(store)


def test_a_step_past_bigint_is_refused_when_written_not_at_every_read(tmp_path):
    from engine.errors import InputError

    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(InputError, match="too large"):
        store.add_point("r1", step=2**63, contrastive_entropy=1.0, wall_time_s=1.0)


def test_store_import_refuses_a_label_not_in_utf8(tmp_path, capsys):
    table = tmp_path / "rows.csv"
    table.write_text("n,d,loss\n1000,100,3.0\n")
    for flag in ("--label", "--dataset", "--annotation"):
        assert store_main(["import", table, flag, NOT_UTF8]) == 2
        assert "not valid UTF-8" in one_error_line(capsys)
    assert_store_reads(Store())
    assert len(Store().runs()) == 0


def test_annotate_refuses_a_name_not_in_utf8_before_generating(tmp_path, capsys):
    from tests.helpers import write_synthetic
    data, out = write_synthetic(tmp_path / "syn"), tmp_path / "ict"
    assert engine_main(["annotate", "ict", "--dataset", data, "--out", out, "--store", Store().path,
                        "--name", NOT_UTF8]) == 2
    assert "--name 'caf\\udce9' is not valid UTF-8" in one_error_line(capsys)
    assert not out.exists()
    assert_store_reads(Store())


def test_train_refuses_a_label_not_in_utf8_before_training(tmp_path, capsys):
    from tests.helpers import write_synthetic
    data = write_synthetic(tmp_path / "syn")
    assert engine_main(["train", "--dataset", data, "--model", "scratch-L1-H32", "--steps", "1",
                        "--label", NOT_UTF8]) == 2
    assert "--label 'caf\\udce9' is not valid UTF-8" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert_store_reads(Store())


# ---------------------------------------------------------------- import-tracker

def write_wandb_runs(root, histories: dict[str, str | pd.DataFrame], config=None):
    """W&B run folders: name -> history (CSV text, or a table written as CSV), one config."""
    for name, history in histories.items():
        folder = root / name
        folder.mkdir(parents=True)
        if isinstance(history, str):
            (folder / "history.csv").write_text(history)
        else:
            history.to_csv(folder / "history.csv", index=False)
        (folder / "config.json").write_text(json.dumps(config or {"n": {"value": 1000}, "d": {"value": 500}}))
    return root


GOOD_HISTORY = "_step,loss\n100,3.0\n200,2.5\n"
TRACKER_FLAGS = ["--loss", "loss", "--n", "n", "--d", "d"]


@pytest.mark.parametrize("flag", ["--label", "--dataset", "--annotation", "--model", "--loss"])
def test_import_tracker_refuses_names_not_in_utf8(tmp_path, capsys, flag):
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
    flags = [*TRACKER_FLAGS[:1], NOT_UTF8, *TRACKER_FLAGS[2:]] if flag == "--loss" else [*TRACKER_FLAGS, flag, NOT_UTF8]
    assert store_main(["import-tracker", source, *flags]) == 2
    assert "not valid UTF-8" in one_error_line(capsys)
    assert_store_reads(Store())


def test_import_tracker_refuses_a_latin1_label_from_the_real_command_line(tmp_path):
    """The bytes as a shell passes them (--label $'caf\\xe9'), not a Python string."""
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
    done = subprocess.run([sys.executable.encode(), b"-m", b"store", b"import-tracker", bytes(source),
                           *(flag.encode() for flag in TRACKER_FLAGS), b"--label", b"caf\xe9"],
                          cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 2 and b"Traceback" not in done.stderr and b"not valid UTF-8" in done.stderr
    assert_store_reads(Store())


def import_tracker(capsys, source, *flags):
    """(exit code, stdout, stderr) of `store import-tracker SOURCE --loss loss --n n --d d FLAGS`."""
    code = store_main(["import-tracker", source, *TRACKER_FLAGS, *flags])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def assert_nothing_imported(store: Store) -> None:
    assert len(store.runs()) == 0 and len(store.points()) == 0
    assert_store_reads(store)


@pytest.mark.parametrize("history, message", [
    ("_step,loss\n1.7,3.0\n1.2,2.5\n", "step 1.7 is not a whole number"),      # before: both became step 1
    ("_step,loss\n1,3.0\n,2.5\n", "step nan is not a whole number"),            # before: ValueError
    ("_step,loss\n1,3.0\nlater,2.5\n", "step 'later' is not a whole number"),   # before: ValueError
    ("_step,loss\n1,3.0\n9223372036854775808,2.5\n", "from 0 to 2^63 - 1"),     # before: spool ValueError
    ("_step,loss,loss\n1,3.0,9.0\n", "'loss' appear more than once"),          # before: the first, silently
    ('_step,loss,note\n1,3.0,"open\n2,2.5,x\n3,2.0,y"\n', "runs over several lines"),  # before: rows 2-3 lost
])
def test_import_tracker_wandb_history_read_wrong_is_refused(tmp_path, capsys, history, message):
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY, "b": history})
    code, _, err = import_tracker(capsys, source)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert_nothing_imported(Store())


def test_import_tracker_is_all_or_nothing_when_the_store_refuses_one_run(tmp_path, monkeypatch):
    """Before: the first run stayed imported and the second was a "running" stub."""
    from engine.errors import InputError
    from store.trackers import TrackerMapping, import_runs

    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY, "b": GOOD_HISTORY})
    store, real = Store(), Store.finish_run
    calls = []

    def refuse_the_second(self, run_id, **kwargs):
        calls.append(run_id)
        if len(calls) == 2:
            raise InputError("simulated refusal")
        real(self, run_id, **kwargs)

    monkeypatch.setattr(Store, "finish_run", refuse_the_second)
    with pytest.raises(InputError, match="simulated"):
        import_runs(store, source, TrackerMapping(loss="loss", n="n", d="d"))
    assert len(calls) == 2
    assert_nothing_imported(store)


@pytest.mark.parametrize("config, problem", [
    ({"n": {"value": 1e30}, "d": {"value": 500}}, "not a whole number from 1 to 2^63 - 1"),
    ({"n": {"value": 1000}, "d": {"value": 500}, "seed": {"value": "inf"}}, "parameter seed is 'inf'"),
    ({"n": {"value": 1000}, "d": {"value": 500}, "seed": {"value": 1e30}}, "parameter seed is '1e+30'"),
])
def test_import_tracker_sizes_and_seeds_no_store_can_hold_skip_the_run(tmp_path, capsys, config, problem):
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY}, config=config)
    code, _, err = import_tracker(capsys, source)
    assert code == 2 and problem in err, err
    assert_nothing_imported(Store())


def test_import_tracker_n_given_as_a_number_past_bigint(tmp_path, capsys):
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
    code = store_main(["import-tracker", source, "--loss", "loss", "--n", "1e30", "--d", "d"])
    assert code == 2 and "not a whole number from 1 to 2^63 - 1" in one_error_line(capsys)


def test_import_tracker_latin1_run_folder_is_imported_under_a_readable_name(tmp_path, capsys):
    import os

    root = tmp_path / "w"
    write_wandb_runs(root, {"plain": GOOD_HISTORY})
    os.rename(root / "plain", os.path.join(bytes(root), b"caf\xe9"))  # a folder name in Latin-1
    code, out, _ = import_tracker(capsys, root)
    assert code == 0 and "caf\ufffd" in out
    (run,) = Store().runs().to_dict("records")
    assert run["label"] == "caf\ufffd" and run["best_contrastive_entropy"] == 2.5
    again, _, _ = import_tracker(capsys, root, "--json")  # the same folder is the same run
    assert again == 0 and len(Store().runs()) == 1
    assert_store_reads(Store())


def test_import_tracker_mlflow_files_not_in_utf8(tmp_path, capsys):
    from tests.test_trackers import write_mlruns

    mlruns = write_mlruns(tmp_path / "m")
    first = sorted(p for p in mlruns.glob("1/*") if p.is_dir())[0]
    (first / "params" / "note").write_bytes(b"caf\xe9")                    # a parameter: read, é as U+FFFD
    code, _, _ = import_tracker(capsys, mlruns, "--loss", "val/ce")
    assert code == 0 and len(Store().runs()) == 2
    (first / "metrics" / "val" / "ce").write_bytes(b"1700000000000 caf\xe9 100\n")  # a metric: no number
    code, _, err = import_tracker(capsys, mlruns, "--loss", "val/ce")
    assert code == 2 and "expected 'timestamp value step'" in err and err.count("\n") == 1
    (first / "metrics" / "val" / "ce").write_text(f"1700000000000 3.0 {2**63}\n")
    code, _, err = import_tracker(capsys, mlruns, "--loss", "val/ce")
    assert code == 2 and "from 0 to 2^63 - 1" in err
    assert_store_reads(Store())


@pytest.mark.parametrize("column, value", [("value", None), ("value", "abc"), ("step", None), ("step", "ten")])
def test_import_tracker_mlflow_sqlite_cells_of_the_wrong_kind(tmp_path, capsys, column, value):
    import sqlite3

    from tests.test_trackers import write_mlflow_sqlite

    database = write_mlflow_sqlite(tmp_path / "mlflow.db")
    with sqlite3.connect(database) as con:
        con.execute(f"UPDATE metrics SET {column} = ? WHERE step = 100", (value,))
    code, _, err = import_tracker(capsys, database, "--loss", "val/ce")
    assert code == 2 and "is not a" in err and err.count("\n") == 1, err
    assert_nothing_imported(Store())


def test_import_tracker_dry_run_makes_no_store(tmp_path, capsys):
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
    code, out, _ = import_tracker(capsys, source, "--dry-run")
    assert code == 0 and "would import 1 of 1" in out
    assert not Store().path.exists() and not Store().spool_dir.exists()


# ---------------------------------------------------------------- outputs: links, inputs, the store

def demo_runs_in_store() -> Store:
    """The study test's 6 x 5 runs as demo rows of the private store."""
    from tests.test_study import study_runs

    rows = study_runs().rename(columns={"n_params": "n", "train_pairs": "d", "best_contrastive_entropy": "loss",
                                        "model_name": "model"})
    store = Store()
    store.load_rows(rows, source="demo")
    return store


def test_study_out_replaces_links_and_never_writes_through_them(tmp_path, capsys, stub_figures):
    """Before: report.html and figures/*.svg were written through the links (the
    DuckDB file and another file overwritten)."""
    store = demo_runs_in_store()
    store.ingest()
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "report.html").symlink_to(victim)
    (out / "figures" / "data-law.png").symlink_to(victim)
    assert engine_main(["study", "--bootstrap", "20", "--out", out]) == 0
    capsys.readouterr()
    assert victim.read_text() == "someone else's file"
    for written in (out / "report.html", out / "figures" / "data-law.png"):
        assert written.is_file() and not written.is_symlink()
    assert not list(out.rglob("*.tmp"))


def test_study_out_link_to_the_store_is_refused(tmp_path, capsys, monkeypatch):
    """Refused before the laws are fitted (before: after a fit and every figure, 13 s)."""
    import engine.study

    monkeypatch.setattr(engine.study, "build_report", lambda *a, **k: pytest.fail("fitted before refusing"))
    store = demo_runs_in_store()
    store.ingest()
    before = store.path.read_bytes()
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "data-law.svg").symlink_to(store.path)
    assert engine_main(["study", "--bootstrap", "20", "--out", out]) == 2
    assert "would overwrite the store" in one_error_line(capsys)
    assert store.path.read_bytes() == before and not (out / "report.md").exists()


def fake_model(folder, *, pooling="mean", projection_dim=8, hidden=4, weight=(8, 4), length=16):
    """A run's model folder as BiEncoder.save writes it, with tiny tensors."""
    import torch
    from safetensors.torch import save_file

    (folder / "encoder").mkdir(parents=True)
    (folder / "encoder" / "config.json").write_text(json.dumps({"hidden_size": hidden}))
    save_file({"embeddings.weight": torch.zeros(3, hidden)}, str(folder / "encoder" / "model.safetensors"))
    (folder / "encoder" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    if weight is not None:
        save_file({"weight": torch.zeros(*weight), "bias": torch.zeros(weight[0])},
                  str(folder / "projection.safetensors"))
    (folder / "bi_encoder.json").write_text(json.dumps({"pooling": pooling, "projection_dim": projection_dim}))
    (folder / "train_config.json").write_text(json.dumps({"max_passage_length": length}))
    return folder


def test_export_model_of_a_consistent_folder_is_written(tmp_path, capsys):
    model = fake_model(tmp_path / "model")
    assert engine_main(["export-model", model, "--out", tmp_path / "st", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dimension"] == 8
    assert json.loads((tmp_path / "st" / "2_Dense" / "config.json").read_text())["out_features"] == 8


@pytest.mark.parametrize("settings, message", [
    ({"pooling": "max"}, "pooling is 'max'"),
    ({"projection_dim": "abc"}, "projection_dim is 'abc'"),
    ({"projection_dim": -5}, "projection_dim is -5"),
    ({"projection_dim": 512}, "not the [512, 4] projection"),
    ({"projection_dim": None}, "says no projection, but projection.safetensors is there"),
    ({"length": -3}, "maximum sequence length is -3"),
    ({"hidden": True}, "hidden_size is True"),
])
def test_export_model_refuses_settings_that_contradict_the_weights(tmp_path, capsys, settings, message):
    """Before: each wrote a sentence-transformers folder that loads and computes wrong."""
    model = fake_model(tmp_path / "model", **settings)
    assert engine_main(["export-model", model, "--out", tmp_path / "st"]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("link", ["encoder/secret.txt", "encoder", "projection.safetensors"])
def test_export_model_never_copies_what_a_link_points_to(tmp_path, capsys, link):
    """Before: a link in encoder/ was copied as the file it points to (a key let out)."""
    import shutil

    model = fake_model(tmp_path / "model")
    secret = tmp_path / "elsewhere"
    if link == "encoder":
        shutil.move(model / "encoder", secret)
    elif link == "projection.safetensors":
        shutil.move(model / link, secret)
    else:
        secret.write_text("private key")
    (model / link).symlink_to(secret)
    assert engine_main(["export-model", model, "--out", tmp_path / "st"]) == 2
    assert "symbolic link" in one_error_line(capsys)
    assert not (tmp_path / "st").exists()


def test_export_model_on_a_full_disk_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno
    import shutil

    model = fake_model(tmp_path / "model")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    assert engine_main(["export-model", model, "--out", tmp_path / "st"]) == 2
    assert "No space left" in one_error_line(capsys)
    assert not (tmp_path / "st").exists() and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_annotate_out_into_the_store_spool_or_the_data_set_is_refused(tmp_path, capsys):
    """Before: ICT wrote corpus.jsonl and queries.jsonl into the (empty) spool folder,
    where the store read them as spool files."""
    from tests.helpers import write_synthetic
    data = write_synthetic(tmp_path / "syn")
    store = Store()
    store.register_dataset("x", language="en", format="beir", path="/d", n_passages=1, n_queries=1,
                           n_train_pairs=1, n_test_pairs=1)
    store.ingest()  # the spool folder is now there and empty
    assert store.spool_dir.is_dir() and not any(store.spool_dir.iterdir())
    for out in (store.spool_dir, store.spool_dir / "ict", data / "ict"):
        assert engine_main(["annotate", "ict", "--dataset", data, "--out", out]) == 2
        assert "would overwrite" in one_error_line(capsys)
    assert not any(store.spool_dir.iterdir()) and not (data / "ict").exists()
    assert_store_reads(store)


def test_emit_slurm_never_overwrites_the_sweeps_data_set(tmp_path, capsys):
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    data = write_synthetic(tmp_path / "syn")
    sweep = write_sweep(tmp_path, data)
    corpus = data / "corpus.jsonl"
    before = corpus.read_bytes()
    assert engine_main(["sweep", sweep, "--emit", "slurm", "--shared-dir", tmp_path / "shared",
                        "--out", corpus]) == 2
    assert "would overwrite the sweep's dataset input" in one_error_line(capsys)
    assert corpus.read_bytes() == before


def test_sweep_dry_run_refuses_a_sweep_whose_tokenizer_is_missing(tmp_path, capsys):
    """Before: the dry run listed the runs, and every one of them then failed."""
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    sweep = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"), extra="")
    sweep.write_text(sweep.read_text().replace("[train]\n", '[train]\ntokenizer = "no-such-vocab.txt"\n'))
    assert engine_main(["sweep", sweep, "--dry-run"]) == 2
    assert "2 run(s) of the sweep would fail: tokenizer" in one_error_line(capsys)


@pytest.mark.parametrize("number, problem", [(28, "the disk is full"), (30, "read-only"), (13, "permission")])
def test_write_output_on_a_refusing_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, number, problem):
    import os

    from engine.errors import InputError
    from engine.paths import write_output

    out = tmp_path / "plan.toml"
    out.write_text("old")
    real = os.fsync

    def refuse(fd):
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(InputError, match=problem):
        write_output(out, "new")
    monkeypatch.setattr(os, "fsync", real)
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["plan.toml"]


def test_write_output_never_follows_a_planted_temporary_link(tmp_path, monkeypatch):
    """The temporary name is new each time and opened with O_EXCL | O_NOFOLLOW."""
    import uuid

    from engine.errors import InputError
    from engine.paths import write_output

    victim = tmp_path / "victim"
    victim.write_text("keep")
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=0))
    (tmp_path / f".out.{'0' * 12}.tmp").symlink_to(victim)
    with pytest.raises(InputError):
        write_output(tmp_path / "out", "new")
    assert victim.read_text() == "keep"


# ---------------------------------------------------------------- fits the points cannot determine

def laws_fit(tmp_path, capsys, frame: pd.DataFrame, law: str, *flags):
    table = tmp_path / "points.csv"
    frame.to_csv(table, index=False)
    code = engine_main(["laws", "fit", "--csv", table, "--law", law, "--bootstrap", "50", *flags])
    return code, capsys.readouterr()


@pytest.mark.parametrize("frame, law, message", [
    # before: 0 of the refits kept, and "These points determine the curve"
    (pd.DataFrame({"n": [1e6, 1e6, 1e7, 1e7], "loss": [3.0, 3.1, 2.5, 2.6]}), "model",
     "needs at least 3 distinct model sizes (n); the points have 2"),
    (pd.DataFrame({"d": [1e3, 1e3, 1e4, 1e4], "loss": [3.0, 3.1, 2.5, 2.6]}), "data",
     "needs at least 3 distinct data sizes (d); the points have 2"),
    (pd.DataFrame({"n": [1e6, 1e6, 1e7, 1e7] * 2, "d": [1e3, 1e4] * 4, "loss": [3.0, 2.9, 2.5, 2.4] * 2}), "joint",
     "needs at least 5 distinct (n, d) configurations; the points have 4"),
    # before: A = 5e-114, R² nan, "determined"
    (pd.DataFrame({"n": [1e6, 2e6, 4e6, 8e6, 1.6e7], "loss": [3.0] * 5}), "model", "every point has the loss 3"),
    # before: overflow, and "determined" (or a raw ValueError)
    (pd.DataFrame({"n": [1e6, 2e6, 4e6, 8e6, 1.6e7], "loss": [9e299, 8e299, 7e299, 6.5e299, 6.2e299]}), "model",
     "a fit of losses outside"),
    (pd.DataFrame({"n": [1e6, 2e6, 4e6, 8e6, 1.6e7], "loss": [9e-299, 8e-299, 7e-299, 6.5e-299, 6.2e-299]}), "model",
     "a fit of losses outside"),
])
def test_a_fit_the_points_cannot_determine_is_refused(tmp_path, capsys, frame, law, message):
    code, captured = laws_fit(tmp_path, capsys, frame, law)
    assert code == 2 and "Traceback" not in captured.err and message in captured.err, captured.err
    assert not (tmp_path / f"points.{law}-fit.json").exists()


def test_identifiability_says_not_determined_when_the_bootstrap_kept_too_few(tmp_path):
    """Three distinct sizes for three parameters: a resample holds all three only 6 times
    in 27, so most refits cannot be made; the sentence must not claim the curve."""
    from engine.identifiability import identifiability
    from engine.laws import FitConfig, fit_law

    n = np.array([1e6, 1e6, 4e6, 4e6, 1.6e7, 1.6e7])
    fit = fit_law(pd.DataFrame({"n": n, "loss": (2e5 / n) ** 0.5 + 1.0 + np.tile([0.0, 0.01], 3)}), "model",
                  FitConfig(bootstrap=200))
    facts = identifiability(fit)
    assert fit.bootstrap_kept < 100 and facts.too_few_refits
    assert facts.determined == [] and facts.undetermined == ["A", "alpha", "delta"]
    assert facts.sentence().startswith("These points do not determine the curve for N in [1M, 16M]: only ")
    assert facts.to_dict()["bootstrap_asked"] == 200


def test_identifiability_of_a_fit_without_a_bootstrap_claims_nothing(tmp_path):
    from engine.identifiability import identifiability
    from engine.laws import FitConfig, fit_law

    n = np.geomspace(1e6, 1e8, 6)
    fit = fit_law(pd.DataFrame({"n": n, "loss": (2e5 / n) ** 0.5 + 1.0}), "model", FitConfig(bootstrap=0))
    assert "do not determine" in identifiability(fit).sentence()


def test_a_study_whose_second_annotation_has_two_data_sizes_still_reports():
    """Eq. 7 per annotation needs 3 data sizes: a type with 2 is left out of that
    comparison (before: fitted, and called determined), the study is still made."""
    from engine.study import StudyConfig, build_report
    from tests.test_study import study_runs

    runs = study_runs()
    ict = runs["annotation"] == "ict"
    runs = runs[~ict | runs["train_pairs"].isin([500, 1000])]
    report = build_report(runs, StudyConfig(bootstrap=20))
    assert report.annotation_laws == {} and report.joint_law.bootstrap_kept > 0


# ---------------------------------------------------------------- processes

def test_a_sweep_killed_with_9_leaves_its_run_locked_by_the_still_running_trainer(tmp_path):
    """Before: the lock died with the sweep while its trainer went on, and a rerun of
    the sweep started a second trainer of the same run in the same folder."""
    import os
    import signal

    from engine.sweep import _run_lock, load_sweep, run_sweep
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    sweep = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"))
    run = load_sweep(sweep).runs[0]
    pid_file = tmp_path / "trainer.pid"
    trainer = (f"import os, time; open({str(pid_file) + '.tmp'!r}, 'w').write(str(os.getpid())); "
               f"os.replace({str(pid_file) + '.tmp'!r}, {str(pid_file)!r}); time.sleep(300)")
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "import engine.sweep as sweep\nfrom store import Store\n"
              f"sweep.train_command = lambda config, store, launcher: [sys.executable, '-c', {trainer!r}]\n"
              f"sweep.run_sweep(list(sweep.load_sweep({str(sweep)!r}).runs[:1]), Store())\n")
    sweeper = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until the trainer has started (at most a minute)
            if pid_file.exists() or sweeper.poll() is not None:
                break
            time.sleep(0.1)
        assert pid_file.exists(), "the sweep never started its trainer"
        os.kill(sweeper.pid, signal.SIGKILL)
        sweeper.wait()
        trainer_pid = int(pid_file.read_text())
        os.kill(trainer_pid, 0)  # still running, as an orphan
        assert _run_lock(run.run_id) is None
        lines = []
        assert run_sweep([run], Store(), log=lines.append)["busy"] == 1
        assert "another sweep is training it now" in lines[-1]
    finally:
        sweeper.kill()
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# ---------------------------------------------------------------- values read wrong without a word

@pytest.fixture()
def joint_fit_file(tmp_path):
    from engine.laws import FitConfig, fit_law
    from tests.test_laws import joint_points

    fit = fit_law(joint_points(np.random.default_rng(8)), "joint", FitConfig(bootstrap=60))
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit.to_dict()))
    return path


@pytest.mark.parametrize("flags, message", [
    (["--d-min", "0"], "--d-min is the smallest data size planned, from 1 to the 300"),       # before: ignored
    (["--d-min", "100000000"], "got 100,000,000"),                                            # before: clamped
])
def test_plan_runs_d_min_outside_the_data_is_refused(tmp_path, capsys, joint_fit_file, flags, message):
    from tests.helpers import write_synthetic
    data, out = write_synthetic(tmp_path / "syn"), tmp_path / "plan.toml"
    assert engine_main(["plan-runs", "--law", joint_fit_file, "--dataset", data, "--out", out, *flags]) == 2
    assert message in one_error_line(capsys) and not out.exists()


def test_plan_runs_refuses_more_candidates_than_it_can_hold():
    """Before: --d-points 100000 on a large data set tried to allocate 194 GiB."""
    from engine.errors import InputError
    from engine.plan_runs import (
        Hardware,
        RunSettings,
        candidates,
        data_sizes,
        ladder_rungs,
    )

    rungs = ladder_rungs("scratch", None)
    sizes = data_sizes(10_000_000, 500, 100_000)
    with pytest.raises(InputError, match="candidate runs, more than the planner compares"):
        candidates(rungs, sizes, RunSettings(10, 8, 8, 16, 32), Hardware(1e12, 0.3, 1.0, "gpu-hours"))


@pytest.mark.parametrize("flag, value, message", [
    ("--temperature", "nan", "need temperature >= 0"),    # before: NaN in the request body, invalid JSON
    ("--backoff", "nan", "--backoff is the first retry wait"),  # before: every retry waited 60 s
    ("--timeout", "-1", "--timeout is the seconds a request may take"),  # before: a raw ValueError
    ("--timeout", "nan", "--timeout is the seconds a request may take"),
])
def test_annotate_llm_numbers_that_are_no_setting(tmp_path, capsys, flag, value, message):
    from tests.helpers import write_synthetic
    data = write_synthetic(tmp_path / "syn")
    assert engine_main(["annotate", "llm", "--dataset", data, "--out", tmp_path / "llm", "--model", "m",
                        "--base-url", "http://127.0.0.1:9/v1", flag, value]) == 2
    assert message in one_error_line(capsys) and not (tmp_path / "llm").exists()


def test_train_json_is_strict_json_when_an_entropy_is_nan(tmp_path, capsys, monkeypatch):
    """Before: `NaN` in stdout, which no strict JSON reader accepts."""
    import engine.train
    from engine.train import TrainResult
    from tests.helpers import write_synthetic
    result = TrainResult("r", str(tmp_path), "completed", 10, 10, 10, 1, None, float("nan"), 0, {"ndcg@10": float("inf")},
                         1.0)
    monkeypatch.setattr(engine.train, "train", lambda cfg, store=None: result)
    assert engine_main(["train", "--dataset", write_synthetic(tmp_path / "syn"), "--no-store", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert printed["best_contrastive_entropy"] is None and printed["final_metrics"] == {"ndcg@10": None}


@pytest.mark.parametrize("text, message", [
    ("n,loss,loss\n1e6,3.0,9.0\n2e6,2.8,9.0\n4e6,2.6,9.0\n8e6,2.5,9.0\n", "'loss' appear more than once"),
    ('n,loss,note\n1e6,3.0,"open\n2e6,2.8,x\n4e6,2.6,y"\n8e6,2.5,z\n', "runs over several lines"),
])
def test_laws_fit_csv_read_wrong_is_refused(tmp_path, capsys, text, message):
    """Before: the first loss column was fitted (store import refuses the same file), or
    the rows inside an open quote vanished."""
    table = tmp_path / "points.csv"
    table.write_text(text)
    assert engine_main(["laws", "fit", "--csv", table, "--law", "model", "--bootstrap", "0"]) == 2
    assert message in one_error_line(capsys)


def test_store_import_names_the_rows_an_open_quote_swallowed(tmp_path, capsys):
    """Before: lines 2-4 were one rejected row, and lines 3 and 4 were lost unreported."""
    table = tmp_path / "rows.csv"
    table.write_text('n,d,loss,label\n1000,100,3.0,"open\n2000,100,2.5,x\n3000,100,2.0,y"\n4000,100,1.9,z\n')
    assert store_main(["import", table]) == 0
    out = capsys.readouterr().out
    assert "imported 1 row(s)" in out and "rejected line 2: a quote opened on line 2 closes only on line 4" in out


# ---------------------------------------------------------------- writers and readers that raised

def test_a_commit_the_disk_refuses_is_one_line(tmp_path, capsys, monkeypatch):
    """Before: DuckDB's TransactionException at COMMIT came out as a traceback."""
    import contextlib

    import duckdb

    import store.results_store

    @contextlib.contextmanager
    def full_at_commit(con):
        con.execute("BEGIN TRANSACTION")
        yield con
        con.execute("ROLLBACK")
        raise duckdb.TransactionException("TransactionContext Error: Failed to commit: IO Error: Could not write "
                                          "file \"workbench.duckdb.wal\": No space left on device")

    table, demo = tmp_path / "rows.csv", tmp_path / "demo.json"
    table.write_text("n,d,loss\n1000,100,3.0\n")
    demo.write_text(json.dumps({"study": {"title": "t"}, "runs": [{"run_id": "r", "n": 1000, "d": 10, "loss": 2.0}]}))
    Store().ingest()
    monkeypatch.setattr(store.results_store, "transaction", full_at_commit)
    for argv in (["import", table], ["demo", "load", "--file", demo]):
        assert store_main(argv) == 2
        assert "the disk ran full while working on the store" in one_error_line(capsys)
    assert len(Store().runs()) == 0


@pytest.mark.parametrize("writer", ["laws fit --out", "plan-runs", "study --out", "emit slurm", "annotate ict"])
def test_every_writer_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch, writer,
                                                                    joint_fit_file, stub_figures):
    """Before: OSError (ENOSPC) tracebacks, and half-written files under the final name."""
    import errno
    import os

    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    data = write_synthetic(tmp_path / "syn")
    points = tmp_path / "points.csv"
    points.write_text("n,loss\n1e6,3.0\n2e6,2.8\n4e6,2.6\n8e6,2.5\n1.6e7,2.45\n")
    out = tmp_path / "out"
    argv = {"laws fit --out": ["laws", "fit", "--csv", points, "--law", "model", "--bootstrap", "10", "--out",
                               out / "fit.json"],
            "plan-runs": ["plan-runs", "--law", joint_fit_file, "--dataset", data, "--out", out / "plan.toml"],
            "study --out": ["study", "--bootstrap", "10", "--out", out],
            "emit slurm": ["sweep", write_sweep(tmp_path, data), "--emit", "slurm", "--shared-dir", tmp_path / "shared",
                           "--out", out / "t.sbatch"],
            "annotate ict": ["annotate", "ict", "--dataset", data, "--out", out]}[writer]
    if writer == "study --out":
        demo_runs_in_store().ingest()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert engine_main(argv) == 2
    assert "the disk is full" in one_error_line(capsys)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.parametrize("damage", ["truncated to half", "overwritten in the middle"])
def test_a_damaged_store_file_is_one_line(tmp_path, capsys, damage):
    import os

    rows = pd.DataFrame({"n": range(1000, 2_000_000, 1000), "d": 100, "loss": 3.0})
    store = Store()
    store.load_rows(rows, source="import")
    store.ingest()
    size = store.path.stat().st_size
    with open(store.path, "r+b") as handle:
        if damage == "truncated to half":
            handle.truncate(size // 2)
        else:
            handle.seek(3 * 4096 + 100)
            handle.write(os.urandom(2000))
    assert store_main(["export", "--what", "runs", "--format", "csv", "--out", tmp_path / "runs.csv"]) == 2
    assert "is truncated or damaged" in one_error_line(capsys)


DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("command", ["laws", "plan-runs", "train-config", "demo", "demo-meta", "wandb-config",
                                     "sweep-toml", "mlflow-meta", "model-config", "csv-fingerprint"])
def test_files_nested_100k_deep_are_one_line(tmp_path, capsys, command):
    """Before: RecursionError from json, tomllib or yaml."""
    from tests.helpers import write_synthetic
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP_JSON)
    data = write_synthetic(tmp_path / "syn") if command in ("plan-runs", "train-config", "model-config") else None
    if command == "model-config":  # a model folder's config.json, read for its max_position_embeddings
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text(DEEP_JSON)
        argv = ["evaluate", "--dataset", data, "--checkpoint", tmp_path / "model"]
    elif command == "csv-fingerprint":
        pd.DataFrame({"n": [1e5, 2e5, 4e5], "d": [1e3, 1e3, 2e3], "loss": [2.5, 2.4, 2.2],
                      "eval_fingerprint": [DEEP_JSON] * 3}).to_csv(tmp_path / "points.csv", index=False)
        argv = ["laws", "fit", "--law", "joint", "--csv", tmp_path / "points.csv", "--out", tmp_path / "fit.json"]
    elif command == "laws":
        argv = ["budget", "--law", deep, "--budget", "1000"]
    elif command == "plan-runs":
        argv = ["plan-runs", "--law", deep, "--dataset", data, "--out", tmp_path / "p.toml"]
    elif command == "train-config":
        argv = ["train", "--config", deep, "--dataset", data]
    elif command == "sweep-toml":
        sweep = tmp_path / "deep.toml"
        sweep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
        argv = ["sweep", sweep, "--dry-run"]
    if command in ("laws", "plan-runs", "train-config", "sweep-toml", "model-config", "csv-fingerprint"):
        assert engine_main(argv) == 2
    elif command == "demo":
        assert store_main(["demo", "load", "--file", deep]) == 2
    elif command == "demo-meta":
        assert store_main(["demo", "write", "--meta", deep, "--file", tmp_path / "demo.json"]) == 2
    elif command == "wandb-config":
        source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
        (source / "a" / "config.json").write_text(DEEP_JSON)
        assert store_main(["import-tracker", source, *TRACKER_FLAGS]) == 2
    else:
        from tests.test_trackers import write_mlruns

        mlruns = write_mlruns(tmp_path / "m")
        run = sorted(p for p in mlruns.glob("1/*") if p.is_dir())[0]
        (run / "meta.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
        assert store_main(["import-tracker", mlruns, "--loss", "val/ce", "--n", "n", "--d", "d"]) == 2
    one_error_line(capsys)


def test_tune_lr_on_runs_with_only_step_0_is_one_line(tmp_path, capsys):
    """Before: IndexError in choosing a rate among rates that all lack an entropy after step 0."""
    from engine.sweep import load_sweep
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    sweep = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"), pairs="[100]", extra="lr = [1e-3, 3e-3]\n")
    sweep.write_text(sweep.read_text().replace("lr = 0.003\n", ""))
    store = Store()
    for run in load_sweep(sweep).runs:
        c = run.config
        store.start_run(config={"lr": c.lr}, model_name=c.model, n_params=1000, n_params_strict=1000, train_pairs=100,
                        annotation="human", dataset="syn", seed=0, device="cpu", code_version="x", run_id=run.run_id)
        store.add_point(run.run_id, step=0, contrastive_entropy=4.0, calibrated_entropy=3.9, wall_time_s=1.0)
        store.finish_run(run.run_id, status="completed", best_contrastive_entropy=4.0, best_calibrated_entropy=3.9)
    assert engine_main(["tune-lr", sweep]) == 2
    assert "no run has an evaluation after step 0" in one_error_line(capsys)


@pytest.mark.parametrize("flags, message", [
    (["--device", "cuda:999"], "--device cuda:999"),
    (["--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["--device", "meta"], "the workbench runs on cpu, cuda or mps"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
])
def test_evaluate_settings_this_machine_cannot_run(tmp_path, capsys, flags, message):
    from tests.helpers import write_synthetic
    data = write_synthetic(tmp_path / "syn")
    assert engine_main(["evaluate", "--dataset", data, "--checkpoint", tmp_path / "none", *flags]) == 2
    assert message in one_error_line(capsys)


def test_a_pickled_pytorch_model_bin_is_refused_in_one_line(tmp_path, capsys):
    """Before: torch's UnpicklingError, many lines of advice to unpickle it anyway."""
    import torch
    from transformers import BertConfig

    from tests.helpers import write_synthetic
    class Payload:
        def __reduce__(self):
            return print, ("code ran",)

    folder = tmp_path / "encoder"
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(folder)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nw1\n")
    torch.save({"weights": Payload()}, folder / "pytorch_model.bin")
    data = write_synthetic(tmp_path / "syn")
    assert engine_main(["evaluate", "--dataset", data, "--checkpoint", folder, "--eval-repeats", "1"]) == 2
    err = one_error_line(capsys)
    assert "its weights are a pickle (pytorch_model.bin) that torch refused to load" in err


@pytest.mark.parametrize("command", ["train", "evaluate", "annotate", "plan-runs", "sweep"])
def test_a_data_set_that_is_a_symlink_loop_is_one_line(tmp_path, capsys, command):
    """Before: RuntimeError("Symlink loop from ...") from Path.resolve."""
    from tests.test_sweep import write_sweep

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    argv = {"train": ["train", "--dataset", loop, "--no-store"],
            "evaluate": ["evaluate", "--dataset", loop, "--checkpoint", tmp_path / "none"],
            "annotate": ["annotate", "ict", "--dataset", loop, "--out", tmp_path / "ict"],
            "plan-runs": ["plan-runs", "--law", "paper-joint", "--dataset", loop, "--out", tmp_path / "p.toml"],
            "sweep": ["sweep", write_sweep(tmp_path, loop), "--dry-run"]}[command]
    assert engine_main(argv) == 2
    assert "its symbolic links cannot be followed" in one_error_line(capsys)


# ---------------------------------------------------------------- found in attacking the changes above

def test_export_model_out_under_a_file_is_one_line(tmp_path, capsys):
    """Before: FileExistsError from making the parent folder."""
    (tmp_path / "f").write_text("x")
    assert engine_main(["export-model", fake_model(tmp_path / "m"), "--out", tmp_path / "f" / "st"]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)


def test_import_tracker_model_parameter_a_run_lacks_skips_it(tmp_path, capsys):
    """Before: the run's name was taken as its model without a word."""
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
    code, _, err = import_tracker(capsys, source, "--model", "architecture")
    assert code == 2 and "no parameter 'architecture' for the model" in err
    assert_nothing_imported(Store())


def test_a_store_path_not_in_utf8_is_one_line(tmp_path, capsys):
    """Before: the import wrote its spool and exited 0, and the next read died in DuckDB
    (RuntimeError: std::bad_cast)."""
    source = write_wandb_runs(tmp_path / "w", {"a": GOOD_HISTORY})
    assert store_main(["import-tracker", source, *TRACKER_FLAGS, "--store", str(tmp_path / NOT_UTF8)]) == 2
    assert "is not valid UTF-8" in one_error_line(capsys)
    assert not (tmp_path / f"{NOT_UTF8}.spool").exists()


def test_a_path_not_in_utf8_is_printed_under_a_strict_utf8_stdout(tmp_path):
    """Before: UnicodeEncodeError printing 'saved to .../caf\\udce9.model-fit.json'."""
    import os

    table = os.path.join(bytes(tmp_path), b"caf\xe9.csv")
    with open(table, "w") as handle:
        handle.write("n,loss\n1e6,3.0\n2e6,2.8\n4e6,2.6\n8e6,2.5\n1.6e7,2.45\n")
    done = subprocess.run([sys.executable.encode(), b"-m", b"engine", b"laws", b"fit", b"--csv", table, b"--law",
                           b"model", b"--bootstrap", b"10"], cwd=ROOT, capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr[-500:]
    assert b"caf\xe9.model-fit.json" in done.stdout


def test_emit_slurm_shared_dir_inside_the_store_spool_is_refused(tmp_path, capsys):
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    sweep = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"))
    spool = Store().spool_dir
    assert engine_main(["sweep", sweep, "--emit", "slurm", "--shared-dir", spool, "--out", tmp_path / "t.sbatch"]) == 2
    assert "would overwrite the store's spool folder" in one_error_line(capsys)
    assert not spool.exists()


def test_sweep_seeds_numpy_cannot_take_are_refused_by_the_dry_run(tmp_path, capsys):
    """Before: listed by the dry run; every run then failed in set_seed (numpy: seed < 2^32)."""
    from tests.helpers import write_synthetic
    from tests.test_sweep import write_sweep

    sweep = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"), extra=f"seeds = [0, {2**32}]\n")
    assert engine_main(["sweep", sweep, "--dry-run"]) == 2
    assert f"[grid] seeds holds {2**32}" in one_error_line(capsys)


def test_annotate_an_empty_name_is_refused(tmp_path, capsys):
    """Before: --name '' registered the set under the --out folder's name without a word."""
    from tests.helpers import write_synthetic
    assert engine_main(["annotate", "ict", "--dataset", write_synthetic(tmp_path / "syn"), "--out", tmp_path / "ict",
                        "--name", " "]) == 2
    assert "--name must not be empty" in one_error_line(capsys)


def test_evaluate_record_refuses_a_label_not_in_utf8_before_evaluating(tmp_path, capsys, monkeypatch):
    import engine.evaluate
    from tests.helpers import write_synthetic
    monkeypatch.setattr(engine.evaluate, "evaluate_checkpoint", lambda *a, **k: pytest.fail("evaluated"))
    assert engine_main(["evaluate", "--dataset", write_synthetic(tmp_path / "syn"), "--checkpoint", tmp_path / "m",
                        "--record", "--label", NOT_UTF8]) == 2
    assert "--label 'caf\\udce9' is not valid UTF-8" in one_error_line(capsys)
