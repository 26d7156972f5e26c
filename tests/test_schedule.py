"""A step budget that scales with the work (issue 22 item 2): epochs over D within a
floor and a ceiling, a warm-up-stable-decay schedule that decays to the run's real end,
an early stop after `patience` evaluations without a new best, geometric evaluations."""
from dataclasses import replace

import pytest

from engine.config import EvalConfig, TrainConfig
from engine.errors import InputError
from engine.schedule import (
    decay_start_step,
    early_end,
    evaluation_steps,
    learning_rate_factor,
    planned_steps,
)


def config(**changes) -> TrainConfig:
    return replace(TrainConfig(dataset="x", batch_size=32), **changes)


def test_epochs_give_steps_within_the_floor_and_the_ceiling():
    epochs = config(epochs=10, min_steps=300, steps=2000)
    assert planned_steps(epochs, 3200) == 1000  # 10 x 3,200 / 32
    assert planned_steps(epochs, 500) == 300  # 157 below the floor
    assert planned_steps(epochs, 100_000) == 2000  # the ceiling
    assert planned_steps(epochs, 3200, processes=2) == 500  # the global batch is 64
    assert planned_steps(config(steps=777), 3200) == 777  # no epochs: exactly steps


def test_wsd_warms_up_holds_and_decays_to_zero_at_the_end():
    wsd = config(lr_schedule="wsd", warmup_steps=10, decay_share=0.2)
    factors = [learning_rate_factor(wsd, step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0
    assert decay_start_step(wsd, 100) == 80 and set(factors[10:80]) == {1.0}
    assert factors[80] == 1.0 and factors[99] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(factors[80:], factors[81:]))  # decays every step to the end
    linear = config(warmup_steps=10)
    assert learning_rate_factor(linear, 55, 100) == pytest.approx(0.5)


def test_patience_starts_the_decay_and_the_run_ends_a_decay_share_later():
    wsd = config(lr_schedule="wsd", patience=3, min_steps=100, decay_share=0.2)
    assert early_end(wsd, 400, 1000, evaluations_since_best=2) is None  # patience not yet spent
    assert early_end(wsd, 50, 1000, evaluations_since_best=5) is None  # before min_steps
    assert early_end(wsd, 400, 1000, evaluations_since_best=3) == 500  # decay over the last fifth of 500
    assert early_end(wsd, 850, 1000, evaluations_since_best=3) is None  # already decaying
    assert early_end(config(lr_schedule="wsd"), 400, 1000, 9) is None  # no patience: never


def test_geometric_evaluations_reach_the_end_whatever_it_becomes():
    geometric = config(eval_every=25, evals_per_doubling=2)
    steps = sorted(evaluation_steps(geometric, 400))
    assert steps == [0, 25, 35, 50, 71, 100, 141, 200, 283, 400]
    assert max(evaluation_steps(geometric, 333)) == 333 and 283 in evaluation_steps(geometric, 333)
    assert sorted(evaluation_steps(geometric, 10)) == [0, 10]


def test_bad_schedules_are_refused_in_words():
    with pytest.raises(InputError, match="patience .* needs --lr-schedule wsd"):
        config(patience=2)
    with pytest.raises(InputError, match="decay_share must lie between 0 and 1"):
        config(decay_share=1.0)
    with pytest.raises(InputError, match="min_steps 5000 exceeds steps 1000"):
        config(min_steps=5000, steps=1000)
    with pytest.raises(InputError, match="epochs must be positive"):
        config(epochs=0)
    with pytest.raises(InputError, match="embedding_lr_scale must be positive"):
        config(embedding_lr_scale=-1)


def test_the_recipe_is_part_of_the_measurement_and_its_defaults_keep_old_digests():
    base = config()
    assert base.measurement_digest() == replace(base, lr_schedule="linear", epochs=None).measurement_digest()
    for change in ({"lr_schedule": "wsd"}, {"epochs": 4.0}, {"embedding_lr_scale": 0.1}, {"min_steps": 10},
                   {"evals_per_doubling": 3}):
        assert replace(base, **change).measurement_digest() != base.measurement_digest(), change


@pytest.mark.slow
def test_a_run_that_stops_early_says_so_and_decays_to_its_real_end(tmp_path, one_torch_thread):
    """A learning rate so high the model is best early: patience runs out, the decay
    begins, the run ends a decay share later and says where it stopped."""
    from engine.train import train
    from store import Store
    from tests.helpers import write_synthetic

    dataset = write_synthetic(tmp_path / "syn")
    cfg = TrainConfig(dataset=str(dataset), model="scratch-L1-H32", tokenizer_vocab_size=400, steps=400,
                      batch_size=16, negatives=16, lr=0.3, max_query_length=16, max_passage_length=32,
                      lr_schedule="wsd", patience=2, decay_share=0.25, eval_every=8, evals_per_doubling=2,
                      checkpoint_every=0, run_id="early", eval=EvalConfig(repeats=1, ranking="never"))
    store = Store()
    result = train(cfg, store=store)
    assert result.stopped_early_at is not None and result.planned_steps == 400
    assert store.run("early")["stopped_early_at"] == result.stopped_early_at   # the Runs page's column
    assert result.steps == -(-result.stopped_early_at * 4 // 3) < 400  # ceil(s / (1 - 0.25))
    assert result.final_metrics["step"] == result.steps  # the real end is evaluated
