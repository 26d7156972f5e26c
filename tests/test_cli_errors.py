"""Expected failures over the CLIs (`python -m engine ...`, `python -m store ...`): one
`error: ...` line that names the input and what to do, exit status 2, and no work done
before the check. Subprocesses where the entry point itself is the point; the same
`main()` in-process where many cases share it (each subprocess costs seconds of imports)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from engine.errors import InputError
from engine.paths import PROJECT_ROOT
from store import Store
from store.connection import connection, store_error
from tests.helpers import write_beir, write_synthetic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """One tiny BEIR set shared by the module's tests (none of them trains on it)."""
    return write_synthetic(tmp_path_factory.mktemp("cli-errors") / "syn", n_passages=60, n_train=30, n_test=10)


def run_cli(package: str, *args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", package, *map(str, args)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(result, *fragments: str) -> str:
    """Status 2, nothing but one `error:` line on stderr holding every fragment."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def in_process(main, capsys, *args: object):
    """`main(args)` of a CLI module, as a CompletedProcess-like result."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


# ---------------------------------------------------------------- store files


def _broken_store(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.duckdb"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("run_id,loss\na,1.0\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "sqlite":  # DuckDB itself would try to download its SQLite extension for this one
        path.write_bytes(b"SQLite format 3\x00" + bytes(8192))
    elif kind in ("truncated", "newer-schema"):
        Store(path).info()
        if kind == "newer-schema":
            with duckdb.connect(str(path)) as con:
                con.execute("INSERT INTO schema_version VALUES (99, now())")
        else:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    return path


STORE_FAULTS = {
    "folder": "is a folder", "text": "not a DuckDB database", "empty": "an empty file",
    "sqlite": "not a DuckDB database", "truncated": "truncated or damaged", "newer-schema": "schema version 99",
}


@pytest.mark.parametrize("kind", sorted(STORE_FAULTS))
def test_store_cli_names_a_broken_store_in_one_line(tmp_path, capsys, kind):
    from store.__main__ import main

    path = _broken_store(tmp_path, kind)
    assert_one_error_line(in_process(main, capsys, "info", "--store", path), str(path), STORE_FAULTS[kind])


@pytest.mark.slow
def test_store_cli_subprocess_on_a_text_file(tmp_path):
    path = _broken_store(tmp_path, "text")
    assert_one_error_line(run_cli("store", "info", "--store", path), str(path), "not a DuckDB database", "--store")


def test_store_in_a_folder_that_is_a_file(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        Store(blocker / "results.duckdb").info()


@pytest.mark.parametrize("message, meaning", [
    ('IO Error: Cannot open file "{path}": Permission denied', "read-only"),
    ('IO Error: Cannot open file "{path}": Read-only file system', "read-only"),
    ('IO Error: Could not write file "{path}.wal": No space left on device', "disk ran full"),
])
def test_open_failures_of_the_file_system_are_input_errors(tmp_path, monkeypatch, message, meaning):
    """Read-only and full disks cannot be made here (tests run as root, no tiny file
    system): DuckDB's own messages for them must map to a clear InputError."""
    path = tmp_path / "s.duckdb"
    Store(path).info()

    def refuse(*args, **kwargs):
        raise duckdb.IOException(message.format(path=path))

    monkeypatch.setattr(duckdb, "connect", refuse)
    with pytest.raises(InputError, match=meaning) as caught:
        Store(path).info()
    assert str(path) in str(caught.value) and "--store" in str(caught.value)


def test_disk_full_inside_a_transaction_is_an_input_error(tmp_path):
    path = tmp_path / "s.duckdb"
    with pytest.raises(InputError, match="disk ran full"):
        with connection(path, timeout_s=5):
            raise duckdb.IOException('IO Error: Could not write to file "x.parquet": No space left on device')
    with pytest.raises(OSError, match="unrelated"):  # not the store's fault: surfaces unchanged
        with connection(path, timeout_s=5):
            raise OSError(13, "Permission denied: unrelated")
    assert store_error(path, OSError(13, "Permission denied", "/elsewhere"), opening=False) is None


def test_training_into_a_file_that_is_no_store_fails_before_training(tmp_path, dataset, capsys):
    from engine.cli import main

    path = _broken_store(tmp_path, "text")
    result = in_process(main, capsys, "train", "--dataset", dataset, "--model", "scratch-L1-H32", "--steps", "2",
                        "--store", path, "--run-id", "never")
    assert_one_error_line(result, str(path), "not a DuckDB database")
    assert not (tmp_path / "runs" / "never").exists()


# ---------------------------------------------------------------- data set files


@pytest.mark.parametrize("grade", ["0.7", "inf", "nan", "-Infinity"])
def test_a_grade_that_is_no_whole_number_is_refused(tmp_path, grade):
    """0.7 was truncated to 0 (a relevant judgment silently lost); inf was a traceback."""
    from engine.data import load_retrieval_data

    folder = write_beir(tmp_path / "graded", qrels={"test": f"query-id\tcorpus-id\tscore\nq3\tp3\t{grade}\n"})
    with pytest.raises(InputError, match=rf"test.tsv:2: relevance grade '{grade}' is not a whole number"):
        load_retrieval_data(folder)


def test_evaluate_cli_names_a_qrels_grade_of_inf(tmp_path, capsys):
    from engine.cli import main

    folder = write_beir(tmp_path / "graded", qrels={"test": "q3\tp3\tinf\n"})
    result = in_process(main, capsys, "evaluate", "--dataset", folder, "--checkpoint", "scratch-L1-H32")
    assert_one_error_line(result, "test.tsv:1", "'inf' is not a whole number")


@pytest.mark.parametrize("field, value", [("text", {"en": "apples"}), ("text", ["a", "b"]), ("title", {"x": 1}),
                                          ("text", True), ("_id", {"id": 1})])
def test_a_text_field_that_is_no_string_is_refused(tmp_path, field, value):
    """`"text": {...}` was read as the string "{'en': 'apples'}" and trained on."""
    from engine.data import load_retrieval_data

    corpus = [{"_id": "p1", "text": "apples are red"}, {"_id": "p2", "text": "bananas"}, {"_id": "p3", "text": "x"}]
    corpus[1][field] = value
    with pytest.raises(InputError, match=rf"corpus.jsonl:2: field '{field}' must be a string"):
        load_retrieval_data(write_beir(tmp_path / "objects", corpus=corpus))


def test_numbers_as_ids_and_texts_still_read(tmp_path):
    from engine.data import load_retrieval_data

    corpus = [{"_id": 1, "text": "apples are red"}, {"_id": "p2", "text": 1999}, {"_id": "p3", "text": "x"}]
    data = load_retrieval_data(write_beir(tmp_path / "numbers", corpus=corpus,
                                          qrels={"test": "q3\tp3\t2.0\n", "train": "q1\t1\t1\n"}))
    assert data.passage_ids[0] == "1" and data.passages[1] == "1999" and data.qrels["test"] == {"q3": {"p3": 2}}


# ---------------------------------------------------------------- one huge passage


class _RecordingTokenizer:
    """A tokenizer that notes the longest text it was handed."""

    def __init__(self, tokenizer):
        self._tokenizer, self.longest = tokenizer, 0

    def __call__(self, texts, **kwargs):
        self.longest = max([self.longest, *map(len, texts)])
        return self._tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def test_a_huge_passage_is_cut_before_tokenising(caplog):
    """A 4 MB line: the tokenizer sees at most 16 characters per kept token, the first
    tokens are those of the uncut text, and the log says how many texts were cut."""
    import logging
    import time

    from engine.tokenize_cache import CHARS_PER_TOKEN, _train_wordpiece, tokenize_cached

    words = " ".join(f"w{i % 50}" for i in range(100))  # 100 tokens in 390 characters
    tokenizer = _RecordingTokenizer(_train_wordpiece([words], vocab_size=120))
    huge = words + " " + "apple " * 700_000  # about 4.2 MB
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="engine.tokenize_cache"):
        tokens = tokenize_cached([words, huge, "short"], tokenizer, max_length=32)
    seconds = time.perf_counter() - started
    assert tokenizer.longest <= CHARS_PER_TOKEN * 32
    assert list(tokens.lengths()) == [32, 32, 3]
    assert (tokens.ids[:32] == tokens.ids[32:64]).all()  # the same first tokens as without the cut
    assert seconds < 5, seconds
    cut = [r.getMessage() for r in caplog.records if "cut to" in r.getMessage()]
    assert len(cut) == 1 and cut[0].startswith("1 of 3 texts are longer than 512 characters"), cut


# ---------------------------------------------------------------- sweep files


def _sweep_file(folder: Path, dataset: Path, grid: str) -> Path:
    path = folder / "sweep.toml"
    path.write_text(f'name = "t"\n{grid}\n[train]\ndataset = "{dataset}"\nsteps = 2\n')
    return path


@pytest.mark.parametrize("grid, message", [
    ('grid = "x"', "grid must be a table"),
    ('[grid]\nmodels = "scratch-L1-H32"', "models must be a list, e.g. models = [\"scratch-L2-H64\"]"),
    ("[grid]\nmodels = []", "models is empty, so the sweep has no runs"),
    ('[grid]\nmodels = ["scratch-L1-H32"]\nseeds = []', "seeds is empty"),
    ('[grid]\nmodels = ["scratch-L1-H32"]\ntrain_pairs = []', "train_pairs is empty"),
    ('[grid]\nmodels = ["scratch-L1-H32"]\nannotations = []', "annotations is empty"),
    ('[grid]\nmodels = ["scratch-L1-H32"]\nseeds = [0, true]', "seeds holds True"),
    ('[grid]\nmodels = [["scratch-L1-H32"]]', "models holds ['scratch-L1-H32']"),
    ('[grid]\nmodels = ["scratch-L1-H32", "scratch-L1-H32"]', "lists an entry twice"),
    ('[grid]\nseeds = [0]', "[grid] needs ['models']"),
])
def test_a_sweep_grid_that_gives_wrong_runs_is_refused(tmp_path, dataset, grid, message):
    from engine.sweep import load_sweep

    with pytest.raises(InputError, match=re.escape(message)) as caught:
        load_sweep(_sweep_file(tmp_path, dataset, grid))
    assert str(tmp_path / "sweep.toml") in str(caught.value)


def test_sweep_cli_refuses_a_string_of_models_and_an_assumed_mfu_of_0(tmp_path, dataset, capsys):
    from engine.cli import main

    one_string = _sweep_file(tmp_path, dataset, '[grid]\nmodels = "scratch-L1-H32"')
    assert_one_error_line(run_cli("engine", "sweep", one_string, "--dry-run"), "models must be a list")
    good = _sweep_file(tmp_path, dataset, '[grid]\nmodels = ["scratch-L1-H32"]')
    for mfu in ("0", "-0.2", "nan", "1.5"):
        assert_one_error_line(in_process(main, capsys, "sweep", good, "--dry-run", "--assumed-mfu", mfu),
                              "--assumed-mfu", "(0, 1]")


# ---------------------------------------------------------------- models and lengths


def test_evaluate_on_a_folder_that_is_no_model(tmp_path, dataset, capsys):
    from engine.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    result = in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", empty)
    assert_one_error_line(result, f"--checkpoint {empty} holds no model", "runs/<id>/model")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text('{"model_type": "no-such-architecture"}')
    result = in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", unknown)
    assert_one_error_line(result, f"--checkpoint {unknown}: not a model that can be loaded")
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"\0")
    assert_one_error_line(in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", a_file),
                          "is a file")


def test_a_max_length_beyond_the_model_positions_is_refused_before_any_work(tmp_path, dataset, capsys, monkeypatch):
    """Checked from the config alone: no data set is read (a missing one would fail
    after), no tokenizer trained, no step taken."""
    from engine.cli import main

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was read before the lengths were checked")

    import engine.train

    monkeypatch.setattr("engine.data.load_retrieval_data", no_data)  # evaluate imports it when called
    monkeypatch.setattr(engine.train, "load_retrieval_data", no_data)
    result = in_process(main, capsys, "train", "--dataset", dataset, "--model", "scratch-L1-H32",
                        "--max-passage-length", "600", "--no-store")
    assert_one_error_line(result, "--max-passage-length 600", "positions (512)", "at most 512")
    model = tmp_path / "encoder"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert", "max_position_embeddings": 64}')
    result = in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", model,
                        "--max-query-length", "65")
    assert_one_error_line(result, "--max-query-length 65", "positions (64)")


# ---------------------------------------------------------------- training settings


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "lr must be a finite number, got nan (--lr)"),
    (["--lr", "-0.001"], "lr must be positive, got -0.001 (--lr)"),
    (["--tokenizer-vocab-size", "0"], "tokenizer_vocab_size must be at least 100, got 0"),
    (["--steps", "0"], "steps must be positive, got 0 (--steps)"),
    (["--eval-repeats", "0"], "eval.repeats must be positive, got 0 (--eval-repeats)"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number"),
    (["--seed", str(2**32)], f"seed must be below {2**32} (2**32, numpy's seed limit), got {2**32} (--seed)"),
    (["--data-seed", str(2**40)], f"data_seed must be below {2**32} (2**32, numpy's seed limit), got {2**40} "
                                  "(--data-seed)"),
    (["--eval-seed", str(2**32)], f"eval.seed must be below {2**32} (2**32, numpy's seed limit), got {2**32} "
                                  "(--eval-seed)"),
])
def test_bad_training_flags_are_refused_before_training(dataset, capsys, flags, message):
    from engine.cli import main

    result = in_process(main, capsys, "train", "--dataset", dataset, "--model", "scratch-L1-H32", "--no-store", *flags)
    assert_one_error_line(result, message)
    assert not (Path(os.environ["WORKBENCH_RUNS"])).exists()  # no run folder: nothing started


@pytest.mark.parametrize("content, message", [
    ('{{"dataset": "{dataset}", "steps": "abc"}}', "steps must be a whole number, got 'abc' (--steps)"),
    ('{{"dataset": "{dataset}", "steps": 1e4}}', "steps must be a whole number, got 10000.0"),
    ('{{"dataset": "{dataset}", "eval": {{"ranking": "none"}}}}', "eval.ranking must be one of every, final, never"),
    ('{{"dataset": "{dataset}", "eval": 3}}', "one JSON object of TrainConfig settings"),
    ('["{dataset}"]', "one JSON object of TrainConfig settings"),
])
def test_a_config_file_with_wrong_types_is_refused(tmp_path, dataset, capsys, content, message):
    from engine.cli import main

    config = tmp_path / "config.json"
    config.write_text(content.format(dataset=dataset))
    assert_one_error_line(in_process(main, capsys, "train", "--config", config, "--no-store"), message)


@pytest.mark.slow
def test_train_cli_subprocess_on_steps_abc(tmp_path, dataset):
    config = tmp_path / "config.json"
    config.write_text(f'{{"dataset": "{dataset}", "steps": "abc"}}')
    assert_one_error_line(run_cli("engine", "train", "--config", config, "--no-store"), "steps must be a whole number")


def test_a_sweep_with_a_bad_setting_names_its_file(tmp_path, dataset):
    from engine.sweep import load_sweep

    path = _sweep_file(tmp_path, dataset, '[grid]\nmodels = ["scratch-L1-H32"]')
    path.write_text(path.read_text() + 'lr = "fast"\n')
    with pytest.raises(InputError, match=re.escape(f"{path}: lr must be a number or null, got 'fast'")):
        load_sweep(path)


# ---------------------------------------------------------------- --out and --store, checked before the work


def _never(what: str):
    def called(*args, **kwargs):
        raise AssertionError(f"{what} ran before the output was checked")
    return called


@pytest.fixture()
def a_file(tmp_path) -> Path:
    """A plain file, where an output path needs a folder."""
    path = tmp_path / "plain-file"
    path.write_text("x")
    return path


def test_laws_fit_out_in_a_missing_folder_is_made_and_a_blocked_one_refused_first(tmp_path, capsys, monkeypatch,
                                                                                a_file):
    from engine.cli import main

    csv = tmp_path / "points.csv"
    csv.write_text("n,d,loss\n" + "".join(f"{n},{d},{1 + (n / 1e6) ** -0.3 + (d / 1e3) ** -0.2:.4f}\n"
                                          for n in (1e6, 2e6, 4e6, 8e6) for d in (1e3, 4e3, 1.6e4)))
    out = tmp_path / "new" / "folder" / "fit.json"
    result = in_process(main, capsys, "laws", "fit", "--law", "joint", "--bootstrap", "5", "--csv", csv, "--out", out)
    assert result.returncode == 0 and out.is_file(), result.stderr
    monkeypatch.setattr("engine.laws.fit_law", _never("the fit"))
    result = in_process(main, capsys, "laws", "fit", "--law", "joint", "--csv", csv, "--out", a_file / "fit.json")
    assert_one_error_line(result, f"{a_file} is a file, not a folder")
    result = in_process(main, capsys, "laws", "fit", "--law", "joint", "--csv", csv, "--out", tmp_path)
    assert_one_error_line(result, f"output {tmp_path} is a folder; give the path of a file")


def test_study_and_store_export_outs_are_checked_first(tmp_path, capsys, a_file):
    from engine.cli import main
    from store.__main__ import main as store_main

    # the store is empty: a check after reading it would say "holds no completed runs" instead
    assert_one_error_line(in_process(main, capsys, "study", "--out", a_file / "report"),
                          f"{a_file} is a file, not a folder")
    result = in_process(store_main, capsys, "export", "--what", "runs", "--format", "csv", "--out", a_file / "r.csv")
    assert_one_error_line(result, f"{a_file} is a file, not a folder")


def test_annotate_checks_out_and_store_before_generating(tmp_path, dataset, capsys, monkeypatch, a_file):
    from engine.cli import main

    monkeypatch.setattr("engine.annotate.ict.generate_ict", _never("generation"))
    result = in_process(main, capsys, "annotate", "ict", "--dataset", dataset, "--out", a_file / "sub" / "ict")
    assert_one_error_line(result, f"{a_file} is a file, not a folder")
    broken = _broken_store(tmp_path, "text")
    result = in_process(main, capsys, "annotate", "ict", "--dataset", dataset, "--out", tmp_path / "ict",
                        "--store", broken)
    assert_one_error_line(result, str(broken), "not a DuckDB database")


def test_evaluate_record_checks_the_store_before_evaluating(tmp_path, dataset, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.setattr("engine.evaluate.evaluate_checkpoint", _never("the evaluation"))
    broken = _broken_store(tmp_path, "folder")
    result = in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", "scratch-L1-H32",
                        "--record", "--store", broken)
    assert_one_error_line(result, str(broken), "is a folder")


def test_store_demo_load_of_a_file_without_run_ids(tmp_path, capsys):
    """The check itself is store/demo.py's (H1's rework); here: one line, status 2, and
    the store's rows untouched."""
    import json

    from store.__main__ import main

    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps({"study": {"title": "t"}, "runs": [{"model": "m", "n": 1000, "d": 10, "loss": 2.0}]}))
    store = tmp_path / "s.duckdb"
    result = in_process(main, capsys, "demo", "load", "--file", demo, "--store", store)
    assert_one_error_line(result, str(demo), 'lack a "run_id"')
    assert Store(store).info()["counts"]["runs"] == 0


def test_evaluate_refuses_a_zero_length_and_an_unknown_device_before_reading_data(dataset, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.setattr("engine.data.load_retrieval_data", _never("reading the data set"))
    result = in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", "scratch-L1-H32",
                        "--max-passage-length", "0")
    assert_one_error_line(result, "--max-passage-length must be at least 1 token, got 0")
    result = in_process(main, capsys, "evaluate", "--dataset", dataset, "--checkpoint", "scratch-L1-H32",
                        "--device", "bogus")
    assert_one_error_line(result, "--device 'bogus' is not a torch device")


def test_a_busy_store_is_an_input_error_every_cli_prints_in_one_line(tmp_path):
    from store import StoreBusyError

    path = tmp_path / "busy.duckdb"
    Store(path).info()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(30)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match="stayed locked by another process") as caught:
            Store(path, timeout_s=0.3).info()
        assert isinstance(caught.value, InputError)
    finally:
        holder.kill()
        holder.wait()
