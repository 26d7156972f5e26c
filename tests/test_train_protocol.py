"""Issue 14: one evaluation precision on every path (item 3), training batches that
never read test labels and draw exactly k negatives across processes (item 6)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from engine import eval_protocol as protocol
from engine.evaluate import EvalConfig, evaluate_checkpoint
from engine.paths import runs_dir
from engine.train import TrainConfig, train
from tests.helpers import tiny_config, write_synthetic
from tests.test_engine_train import two_process_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def protocol_config(dataset, **changes) -> TrainConfig:
    return tiny_config(dataset, **{
        "steps": 12, "eval_every": 12, "eval": EvalConfig(repeats=2, ranking="never", negatives=32), **changes})


@pytest.mark.slow
@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU computes no bf16")
def test_a_bf16_run_evaluates_as_engine_evaluate_does(tmp_path):
    """A bf16 run's training-time evaluation and `engine evaluate` of its saved weights
    agree to 1e-4: both score in fp32 (Eq. 5), and the fingerprint says fp32."""
    dataset = write_synthetic(tmp_path / "syn")
    cfg = protocol_config(dataset, run_id="bf16", precision="bf16", cpu=True)
    result = train(cfg)
    metrics, _ = evaluate_checkpoint(str(runs_dir() / "bf16" / "model"), str(dataset), cfg.eval,
                                     max_query_length=cfg.max_query_length,
                                     max_passage_length=cfg.max_passage_length, pooling=cfg.pooling)
    for name in ("contrastive_entropy", "calibrated_entropy"):
        assert result.final_metrics[name] == pytest.approx(metrics[name], abs=1e-4)
    fingerprint = protocol.evaluation_fingerprint(cfg, split="test", pairs=[("q", "p")], pool_training_positives=0)
    assert fingerprint["precision"] == "fp32"


def test_fingerprints_recorded_with_bf16_evaluation_still_load():
    old = {"negatives": 256, "repeats": 5, "pool": 100000, "pool_seed": 0, "test_pairs": 10, "max_query_length": 32,
           "max_passage_length": 180, "precision": "bf16", "test_split": "test:abc", "metric": "raw"}
    assert protocol.check_fingerprint(old) == old
    assert protocol.differing_fields([old, {**old, "precision": "fp32"}]) == ["precision"]  # a protocol of its own


# --- item 6: negatives without test labels, exactly k across processes -------------------------

def _batches(dataset, cfg, processes=1, rank=0):
    from engine.batches import TrainingBatches
    from engine.train import prepare, resolve_config

    cfg = resolve_config(cfg)
    return cfg, TrainingBatches(prepare(cfg), cfg, process_index=rank, num_processes=processes)


@pytest.mark.slow
def test_training_batches_do_not_depend_on_the_test_labels(tmp_path):
    """Two copies of a data set, their test qrels different: the training batches are
    the same (negatives exclude the batch's own positives, never test positives)."""
    same = write_synthetic(tmp_path / "a")
    other = write_synthetic(tmp_path / "b")
    header = "query-id\tcorpus-id\tscore\n"
    (other / "qrels" / "test.tsv").write_text(header + "".join(f"te{i}\tp{i + 300}\t1\n" for i in range(60)))
    _, first = _batches(same, protocol_config(same, negatives=64))
    _, second = _batches(other, protocol_config(other, negatives=64))
    for step in range(6):
        one, two = first(step), second(step)
        assert all(torch.equal(one[k], two[k]) for k in one), f"step {step}"


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_processes_draw_exactly_k_negatives_together(tmp_path, processes):
    """k = 16 over P processes: each holds ceil(k / P) rows, padding masked; together
    exactly the 16 negatives one process holding the global batch draws."""
    from engine.model import PADDING_IDENTITY

    dataset = write_synthetic(tmp_path / "syn")
    cfg, whole = _batches(dataset, protocol_config(dataset, batch_size=4 * processes, negatives=16))
    for step in range(3):
        expected = whole(step)["passage_identity"][cfg.batch_size:]  # (16,)
        parts = []
        for rank in range(processes):
            part_cfg, part = _batches(dataset, protocol_config(dataset, batch_size=4, negatives=16), processes, rank)
            identity = part(step)["passage_identity"]  # (4 + ceil(16 / P),)
            assert len(identity) == 4 + -(-16 // processes)
            parts.append(identity[4:][identity[4:] != PADDING_IDENTITY])
        assert torch.equal(torch.cat(parts), expected) and len(set(expected.tolist())) == 16


def test_padding_rows_are_no_candidate():
    from engine.model import PADDING_IDENTITY, false_negative_mask

    identity = torch.tensor([0, 1, 5, PADDING_IDENTITY])
    mask = false_negative_mask(identity, torch.tensor([[0, -1], [1, -1]]), torch.tensor([0, 1]))
    assert mask.tolist() == [[False, False, False, True], [False, False, False, True]]


@pytest.mark.slow
def test_step_flops_count_this_process_share_of_the_negatives(tmp_path):
    from types import SimpleNamespace

    from engine.flops import train_step_flops
    from engine.run_recorder import RunRecorder
    from engine.train import prepare, resolve_config

    dataset = write_synthetic(tmp_path / "syn")
    cfg = resolve_config(protocol_config(dataset, negatives=15, grad_accum=2))
    prepared = prepare(cfg)
    config = prepared.model.encoder.config
    for processes, share in ((1, 15), (4, 4)):
        accelerator = SimpleNamespace(is_main_process=False, num_processes=processes, process_index=processes - 1)
        recorder = RunRecorder(cfg, prepared, accelerator, None, tmp_path / "run", None, cfg.steps)
        assert recorder.step_flops == 2 * train_step_flops(
            prepared.n_params, config.num_hidden_layers, config.hidden_size, [(16, 16), (16 + share, 32)])


@pytest.mark.slow
def test_two_processes_train_with_an_odd_k(tmp_path):
    """torchrun, 2 CPU processes, k = 15: blocks of 8 rows, one padded, gathered and trained."""
    out = two_process_train(write_synthetic(tmp_path / "syn"), "odd", steps=2, negatives=15, checkpoint_every=0)
    assert out.returncode == 0, out.stderr[-3000:]
    assert math.isfinite(json.loads(out.stdout)["best_contrastive_entropy"])


def test_the_paper_sweep_states_its_negatives_and_offers_the_other():
    """paper-msmarco-bert.toml says in_batch_negatives (the paper's text: random +
    in-batch); its commented variant (the released code: random only) loads too."""
    import re
    import tomllib

    from engine.paths import PROJECT_ROOT
    from engine.sweep import sweep_from_spec

    path = PROJECT_ROOT / "sweeps" / "paper-msmarco-bert.toml"
    text = path.read_text()
    spec = tomllib.loads(text)
    assert spec["train"]["in_batch_negatives"] is True
    commented = tomllib.loads("\n".join(re.findall(r"^#   ((?:name|in_batch_negatives) = \S+)", text, flags=re.M)))
    assert commented["in_batch_negatives"] is False
    variant = {**spec, "name": commented["name"], "train": {**spec["train"], **commented}}
    del variant["train"]["name"]
    assert all(not run.config.in_batch_negatives for run in sweep_from_spec(variant, path).runs)
    assert all(run.config.in_batch_negatives for run in sweep_from_spec(spec, path).runs)


# --- item 4: best over training observed, and kept ----------------------------------------------

def test_the_schedule_is_step_0_log_spaced_and_every_eval_every():
    from engine.schedule import evaluation_steps

    assert sorted(evaluation_steps(TrainConfig(dataset="x", eval_every=100), 400)) == \
        [0, 6, 12, 25, 50, 100, 200, 300, 400]
    assert sorted(evaluation_steps(TrainConfig(dataset="x", eval_every=1000), 10)) == [0, 1, 2, 5, 10]


@pytest.mark.slow
def test_the_best_evaluation_keeps_its_weights(tmp_path, monkeypatch):
    """An early overfitter: the learning rate so high the model is best early. The
    weights of the best evaluation are in runs/<id>/best (safetensors), best.json names
    its step, and evaluating them gives the best value again."""
    from engine import run_recorder
    from engine.model import BiEncoder

    dataset = write_synthetic(tmp_path / "syn")
    cfg = protocol_config(dataset, run_id="early", steps=16, eval_every=1000, precision="no", cpu=True)
    entropies = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7])  # steps 0, 1, 2, 4, 8, 16: best at step 2
    real_evaluate = run_recorder.evaluate  # the run's evaluations (engine/run_recorder.py)

    def scripted(*args, **kwargs):
        return {**real_evaluate(*args, **kwargs), "contrastive_entropy": next(entropies)}

    saved = []
    real_save = BiEncoder.save
    monkeypatch.setattr(run_recorder, "evaluate", scripted)
    monkeypatch.setattr(BiEncoder, "save", lambda self, folder, tok: saved.append(
        (folder.name, {k: v.clone() for k, v in self.state_dict().items()})) or real_save(self, folder, tok))
    result = train(cfg)
    assert result.best_step == 2 and result.best_contrastive_entropy == 3.0
    best = runs_dir() / "early" / "best"
    assert json.loads((best / "best.json").read_text()) == {"step": 2, "contrastive_entropy": 3.0}
    assert sorted(p.name for p in best.rglob("*.safetensors")) == ["model.safetensors", "projection.safetensors"]
    assert [name.split(".")[0] for name, _ in saved] == ["best", "best", "best", "model"]  # steps 0, 1, 2; final
    loaded, _ = BiEncoder.load(best)
    step_2 = saved[2][1]
    assert all(torch.equal(loaded.state_dict()[k], step_2[k]) for k in step_2)
    assert not all(torch.equal(saved[3][1][k], step_2[k]) for k in step_2)  # the final weights differ
