"""The test split is chosen, never guessed (issue 14 item 5): `--test-split NAME` on
`engine train` and `engine evaluate`, `test_split` under a sweep's [train.eval], part
of the Measurement; a data set with several candidate splits and none named is
refused with the list; the split a run evaluated on is recorded with it."""
from dataclasses import replace

import pytest

from engine.cli import build_parser, main
from engine.cli.train import train_config_from_args
from engine.config import EvalConfig, TrainConfig
from engine.data import split_identity
from engine.errors import InputError
from engine.sweep import check_data, load_sweep
from engine.train import train
from tests.helpers import write_synthetic

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture()
def dev_and_test(tmp_path):
    """The synthetic set with a dev split beside its test split (the first 30 test pairs)."""
    folder = write_synthetic(tmp_path / "two-splits")
    test_lines = (folder / "qrels" / "test.tsv").read_text().splitlines()
    (folder / "qrels" / "dev.tsv").write_text("\n".join(test_lines[:31]) + "\n")
    return folder


def test_the_flag_reaches_the_evaluation_protocol_and_the_measurement():
    for flag in ("--test-split", "--eval-test-split"):
        args = build_parser(["train"]).parse_args(["train", "--dataset", "d", flag, "dev"])
        assert train_config_from_args(args).eval.test_split == "dev"
    args = build_parser(["evaluate"]).parse_args(["evaluate", "--dataset", "d", "--checkpoint", "c", "--test-split", "dev"])
    assert args.eval_test_split == "dev"
    plain, dev = TrainConfig(dataset="d"), TrainConfig(dataset="d", eval=EvalConfig(test_split="dev"))
    assert plain.measurement_differences(dev) == ["eval.test_split"]
    assert plain.measurement_digest() != dev.measurement_digest()
    # unnamed, the digest is the one it was before the setting existed: sweeps keep their run ids
    assert plain.measurement_digest() == "95be5cf4"


@pytest.mark.slow
def test_training_refuses_two_candidates_and_records_the_split_it_used(dev_and_test):
    config = TrainConfig(
        dataset=str(dev_and_test), model="scratch-L1-H32", tokenizer_vocab_size=400, steps=4, batch_size=8,
        negatives=8, lr=3e-3, max_query_length=16, max_passage_length=32, eval_every=4, checkpoint_every=0,
        eval=EvalConfig(repeats=1, ranking="never", negatives=16), run_id="dev-split",
    )
    with pytest.raises(InputError, match=r"2 qrels splits could be the test split \(dev, test\); "
                                         r"choose one with --test-split NAME"):
        train(config, store=None)
    result = train(replace(config, run_id="dev-split-named", eval=replace(config.eval, test_split="dev")), store=None)
    assert result.test_split == split_identity(dev_and_test, "dev")
    assert result.test_split["name"] == "dev" and result.test_split["file"] == "qrels/dev.tsv"


def test_evaluate_cli_ambiguity_is_one_error_line_with_the_candidates(dev_and_test, tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "bert", "max_position_embeddings": 64}')
    code = main(["evaluate", "--dataset", str(dev_and_test), "--checkpoint", str(tmp_path / "model"),
                 "--max-passage-length", "32", "--max-query-length", "16"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "(dev, test); choose one with --test-split NAME" in err
    code = main(["evaluate", "--dataset", str(dev_and_test), "--checkpoint", str(tmp_path / "model"),
                 "--max-passage-length", "32", "--max-query-length", "16", "--test-split", "eval"])
    assert code == 2 and "--test-split eval:" in capsys.readouterr().err


def test_sweep_names_the_split_under_train_eval(dev_and_test, tmp_path):
    path = tmp_path / "sweep.toml"
    text = (f'name = "t"\n[grid]\nmodels = ["scratch-L1-H32"]\ntrain_pairs = [100]\n'
            f'[train]\ndataset = "{dev_and_test}"\nsteps = 4\n[train.eval]\nrepeats = 1\n')
    path.write_text(text)
    with pytest.raises(InputError, match=r"\(dev, test\); choose one with --test-split NAME \(in a sweep file: "
                                         r"test_split under \[train.eval\]\)"):
        check_data(list(load_sweep(path).runs))
    path.write_text(text + 'test_split = "dev"\n')
    runs = list(load_sweep(path).runs)
    check_data(runs)
    assert runs[0].config.eval.test_split == "dev"
