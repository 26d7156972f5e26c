"""Training a dense retriever as the paper does (Section 3.4) and measuring it along
the way (Section 3.5), read top to bottom: `resolve_config` fills the defaults that
depend on other settings, `prepare` reads the data and builds the model and the
evaluation set, `train` starts (or resumes) the run, `_loop` steps it with the
contrastive loss of Eq. 3 (k random negatives shared by the batch plus in-batch
negatives, engine/batches.py) and evaluates it on the schedule of engine/schedule.py
(step 0, log-spaced steps, the end), and `_optimizer_step` is one step. The best test
loss over training is kept with its weights (Section 4.1; an early stop, where asked
for, only starts the decay).

Built on accelerate, so the same code runs on a CPU, one GPU, or under `accelerate
launch` on several GPUs or nodes (query and passage vectors gathered across
processes: every query sees every process's negatives, and the gradient is that of
one process holding the global batch). Several CPU processes: `torchrun
--nproc_per_node P -m engine train --cpu ...`. Resumable: a checkpoint every
`checkpoint_every` steps (engine/checkpoints.py: weights, optimizer, scheduler, RNG
states, step, best value and curve, in safetensors and JSON; nothing is unpickled),
and a run started again with the same `run_id` continues from the latest one.

Files per run, in `runs_dir()/<run_id>/` (engine/run_folder.py): `train_config.json`,
`progress.json` (engine/run_recorder.py), `checkpoints/step-*/`, `best/` (the weights of
the best evaluation so far) and at the end `model/` (`BiEncoder.load` reads it) with
`result.json`. Results go to the store from the main process.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path

import torch

from engine.batches import TrainingBatches, negative_pool, training_passages
from engine.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from engine.config import COMPILE_CHOICES, TrainConfig
from engine.data import (held_out_passages, load_retrieval_data, split_identity,
                         training_pairs)
from engine.dropout import seed_dropout, use_fast_dropout
from engine.errors import InputError
from engine.evaluate import build_eval_set, check_lengths
from engine.ladder import ladder_model, non_embedding_params, strict_non_embedding_params
from engine.model import BiEncoder, ContrastiveLoss, pretrained_encoder, scratch_encoder
from engine.paths import runs_dir, validate_name
from engine.run_folder import CONFIG_FILE, RESULT_FILE, TrainResult, completed_result, write_atomically
from engine.run_recorder import RunRecorder
from engine.run_state import PreparedRun, TrainerState
from engine.schedule import early_end, evaluation_steps, learning_rate_factor, planned_steps
from engine.tokenize_cache import TokenizedTexts, load_tokenizer, tokenize_cached, trained_wordpiece

log = logging.getLogger(__name__)

COMPILE_MIN_STEPS = 500  # below this, compiling (about a minute on a CPU) costs more than it saves


# ---------------------------------------------------------------- configuration


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the defaults that depend on other fields, check the rest."""
    rung = ladder_model(cfg.model)
    lr = cfg.lr if cfg.lr is not None else (rung.lr if rung else 5e-6)
    init = cfg.init
    if init == "auto":
        init = "scratch" if rung is not None and rung.scratch else "pretrained"
    if init == "scratch" and rung is None and not Path(cfg.model).expanduser().exists():
        raise InputError(f"--init scratch needs a ladder name or a local config folder, not '{cfg.model}'")
    annotation = cfg.annotation or ("human" if cfg.train_data is None else "pseudo")
    similarity = cfg.similarity if cfg.similarity != "auto" else (rung.similarity if rung else "dot")
    run_id = validate_name("run id", cfg.run_id or _new_run_id(cfg.model, cfg.train_pairs, cfg.seed))
    # types, ranges and choices were checked when `cfg` was made (TrainConfig.__post_init__)
    check_lengths(cfg.model, cfg.max_query_length, cfg.max_passage_length, flag="--model")  # before any data is read
    return replace(cfg, lr=lr, init=init, annotation=annotation, run_id=run_id, similarity=similarity,
                   compile=_compile(cfg),
                   precision=resolve_precision(cfg.precision, cfg.cpu), dropout_masks=_dropout_masks(cfg))


def _compile(cfg: TrainConfig) -> str:
    """'yes' or 'no'. On a CPU, torch.compile writes C++ and needs a compiler."""
    if cfg.compile not in COMPILE_CHOICES:
        raise InputError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got '{cfg.compile}'")
    if cfg.compile != "auto":
        return cfg.compile
    has_compiler = (torch.cuda.is_available() and not cfg.cpu) or shutil.which(os.environ.get("CXX", "g++"))
    return "yes" if cfg.steps >= COMPILE_MIN_STEPS and has_compiler else "no"


def _new_run_id(model: str, train_pairs: int | None, seed: int) -> str:
    short = Path(model).name.replace("bert_uncased_", "bert-")
    return f"{short}-D{train_pairs or 'all'}-s{seed}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _on_cpu(cpu: bool) -> bool:
    return cpu or not torch.cuda.is_available()


def resolve_precision(requested: str, cpu: bool) -> str:
    """The mixed precision a run uses: `requested`, or for "auto" bf16 where this device computes it."""
    if requested != "auto":
        return requested
    if _on_cpu(cpu):
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "no"


def _dropout_masks(cfg: TrainConfig) -> str:
    if cfg.dropout_masks != "auto":
        return cfg.dropout_masks
    return "fast" if _on_cpu(cfg.cpu) else "torch"


# ---------------------------------------------------------------- model and data


def build_model(cfg: TrainConfig, corpus: list[str]) -> tuple[BiEncoder, object, int, int]:
    """(bi-encoder, tokenizer, N, strict N) for a resolved config."""
    if cfg.init == "pretrained":
        encoder, tokenizer = pretrained_encoder(cfg.model)
        config = encoder.config
    else:
        tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else trained_wordpiece(corpus, cfg.tokenizer_vocab_size)
        config = _scratch_config(cfg.model, len(tokenizer))
        encoder = scratch_encoder(config, cfg.seed, cfg.scratch_embedding_std)
    if cfg.gradient_checkpointing:
        encoder.gradient_checkpointing_enable()
    if cfg.dropout_masks == "fast":
        use_fast_dropout(encoder)
    model = BiEncoder(encoder, cfg.pooling, loss=ContrastiveLoss(cfg.in_batch_negatives), similarity=cfg.similarity)
    return model, tokenizer, non_embedding_params(config), strict_non_embedding_params(config)


def _scratch_config(model: str, vocab_size: int):
    from transformers import AutoConfig

    rung = ladder_model(model)
    if rung is not None:
        return rung.config(vocab_size=vocab_size)
    config = AutoConfig.from_pretrained(model)
    config.vocab_size = vocab_size
    return config


def prepare(cfg: TrainConfig) -> PreparedRun:
    data = load_retrieval_data(cfg.dataset, strict=not cfg.lenient_qrels, test_split=cfg.eval.test_split)
    held_out = held_out_passages(data, cfg.eval.held_out_negatives, cfg.eval.seed)  # (m,) never trained on
    pairs = training_pairs(data, cfg.train_data, cfg.train_pairs, cfg.data_seed, strict=not cfg.lenient_qrels,
                           held_out=held_out)
    pool = negative_pool(pairs, len(data.passages), cfg.negatives_from, held_out)
    if cfg.negatives > len(pool) - cfg.batch_size:
        where = "the corpus holds" if cfg.negatives_from == "corpus" else "the training set's positives are"
        raise InputError(f"negatives = {cfg.negatives} but {where} only {len(pool)} passages, "
                         f"{cfg.batch_size} of them a batch's positives; lower --negatives")
    model, tokenizer, n_params, n_params_strict = build_model(cfg, data.passages)
    corpus_tokens = tokenize_cached(data.passages, tokenizer, cfg.max_passage_length)
    data_query_tokens = tokenize_cached(data.queries, tokenizer, cfg.max_query_length)
    passage_tokens = corpus_tokens
    if pairs.extra_passages:
        extra = tokenize_cached(pairs.extra_passages, tokenizer, cfg.max_passage_length)
        passage_tokens = TokenizedTexts.concat([corpus_tokens, extra])
    query_tokens = data_query_tokens
    if cfg.train_data is not None:
        query_tokens = tokenize_cached(pairs.query_texts, tokenizer, cfg.max_query_length)
    eval_set = build_eval_set(data, data_query_tokens, corpus_tokens, cfg.eval, held_out=held_out,
                              training_rows=training_passages(pairs, len(data.passages)))
    if eval_set.negatives is None:
        raise InputError(f"{data.path}: too few passages relevant to no test query for k = {cfg.eval.negatives} "
                         "evaluation negatives; lower --eval-negatives")
    return PreparedRun(model, tokenizer, n_params, n_params_strict, data, pairs, query_tokens, passage_tokens, eval_set,
                    pool)




def _fresh_accelerator_state() -> None:
    """accelerate keeps one state per process and refuses a second Accelerator of another
    precision, so a process that trains runs one after another (tests, a notebook) starts
    each from a clean one, as accelerate's own tests do. A launched process (torchrun,
    accelerate launch) trains one run and keeps its distributed state."""
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()


# ---------------------------------------------------------------- a run id's configuration

# ---------------------------------------------------------------- the loop


def _optimizer(model: BiEncoder, cfg: TrainConfig, state: "TrainerState"):
    """AdamW with decay on matrices only and the word embeddings at `embedding_lr_scale`
    x lr; the schedule reads `state.end_step`, which an early stop moves."""
    groups: dict[tuple[bool, bool], list] = {}
    words = model.encoder.get_input_embeddings().weight
    for name, parameter in model.named_parameters():
        decays = parameter.ndim >= 2 and "LayerNorm" not in name
        embedding = parameter is words and cfg.embedding_lr_scale != 1.0  # else 2 groups, as checkpoints had
        groups.setdefault((decays, embedding), []).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": params, "weight_decay": cfg.weight_decay if decays else 0.0,
          "lr": cfg.lr * (cfg.embedding_lr_scale if embedding else 1.0)}
         for (decays, embedding), params in groups.items()], lr=cfg.lr,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(cfg, step, state.end_step))
    return optimizer, schedule


def train(cfg: TrainConfig, store=None) -> TrainResult:
    """Run (or resume) one training run; results to `store` when given."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg = resolve_config(cfg)
    run_dir = runs_dir() / cfg.run_id
    done = completed_result(run_dir, cfg)
    if done is not None:
        log.info("%s: already complete (%s); nothing to train", cfg.run_id, run_dir / "model")
        return done
    _fresh_accelerator_state()
    accelerator = Accelerator(
        mixed_precision=cfg.precision, gradient_accumulation_steps=cfg.grad_accum,
        cpu=cfg.cpu, step_scheduler_with_optimizer=False,
    )
    if accelerator.is_main_process:
        write_atomically(run_dir / CONFIG_FILE, json.dumps(asdict(cfg), indent=1))
    set_seed(cfg.seed)
    prepared = prepare(cfg)
    state, resumed_from = TrainerState(end_step=planned_steps(cfg, len(prepared.pairs.pairs),
                                                              accelerator.num_processes)), None
    optimizer, scheduler = _optimizer(prepared.model, cfg, state)
    model, optimizer = accelerator.prepare(prepared.model, optimizer)
    if cfg.compile == "yes":  # in place: parameter names, and so checkpoints, stay as they are
        accelerator.unwrap_model(model).compile()
    seed_dropout(cfg.seed, accelerator.process_index)  # a resumed run's generators come from its checkpoint
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:  # in place: the schedule reads this state's end_step
        for name, value in load_checkpoint(accelerator, checkpoint, model, optimizer, scheduler, TrainerState).items():
            setattr(state, name, value)
        resumed_from = state.step
        log.info("%s: resuming from step %d (%s)", cfg.run_id, state.step, checkpoint)
    run = RunRecorder(cfg, prepared, accelerator, store, run_dir, resumed_from, state.end_step)
    try:
        _loop(cfg, prepared, accelerator, model, optimizer, scheduler, state, run, run_dir)
    except BaseException as err:
        status = "cancelled" if isinstance(err, KeyboardInterrupt) else "failed"
        run.finish(state, status, error=f"{type(err).__name__}: {err}")
        raise
    result = TrainResult(
        run_id=cfg.run_id, run_dir=str(run_dir), status="completed", n_params=prepared.n_params,
        n_params_strict=prepared.n_params_strict, train_pairs=len(prepared.pairs.pairs), steps=state.step,
        test_split=split_identity(prepared.data.path, prepared.data.test_split),
        resumed_from_step=resumed_from, best_contrastive_entropy=state.best_contrastive_entropy,
        best_step=state.best_step, final_metrics=state.curve[-1] if state.curve else {},
        wall_time_s=state.wall_time_s, best_calibrated_entropy=state.best_calibrated_entropy,
        best_calibrated_step=state.best_calibrated_step,
        planned_steps=planned_steps(cfg, len(prepared.pairs.pairs), accelerator.num_processes),
        stopped_early_at=state.stopped_early_at,
    )
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save(run_dir / "model", prepared.tokenizer)
        (run_dir / "model" / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=1))
        (run_dir / "model" / RESULT_FILE).write_text(json.dumps(asdict(result), indent=1))
    run.finish(state, "completed")
    accelerator.wait_for_everyone()  # no rank leaves the process group while another still writes or reduces
    accelerator.end_training()  # under torchrun: leave the process group before exit
    return result


def _loop(cfg, prepared, accelerator, model, optimizer, scheduler, state, run, run_dir) -> None:
    from tqdm import tqdm

    batches = TrainingBatches(prepared, cfg, accelerator.process_index, accelerator.num_processes)
    bar = tqdm(total=state.end_step, initial=state.step, desc=cfg.run_id, disable=not accelerator.is_main_process,
               mininterval=1.0, dynamic_ncols=True)
    schedule = evaluation_steps(cfg, state.end_step)
    if state.step == 0 and not state.curve:  # step 0 is always on the schedule
        run.evaluate(model, state, final=False)
    session_start, session_first_step = time.monotonic(), state.step
    wall_before = state.wall_time_s
    model.train()
    while state.step < state.end_step:
        loss = _optimizer_step(cfg, accelerator, model, optimizer, scheduler, batches, state.step)
        state.step += 1
        state.wall_time_s = wall_before + time.monotonic() - session_start
        bar.update(1)
        final = state.step == state.end_step
        evaluating = state.step in schedule
        if run.logging_due() or evaluating:
            value = loss.item()  # the one sync point of a step, only when it is logged
            bar.set_postfix(loss=f"{value:.3f}", best=state.best_contrastive_entropy, refresh=False)
            run.progress(state, value, (time.monotonic() - session_start) / (state.step - session_first_step))
        if evaluating:
            run.evaluate(model, state, final=final)
            if cfg.patience and state.stopped_early_at is None and not final:
                schedule = _maybe_stop_early(cfg, accelerator, state, run, bar) or schedule
        if cfg.checkpoint_every and (state.step % cfg.checkpoint_every == 0) and not final:
            save_checkpoint(accelerator, run_dir / "checkpoints" / f"step-{state.step:08d}", model, optimizer,
                            scheduler, config=asdict(cfg), state=asdict(state), keep=cfg.keep_checkpoints)
    bar.close()


def _maybe_stop_early(cfg, accelerator, state: TrainerState, run, bar) -> frozenset[int] | None:
    """After an evaluation: where patience has run out (judged on the main process,
    which alone evaluates, and sent to the others), the decay begins now and the run's
    end moves in; returns the evaluation steps for the new end, else None."""
    from accelerate.utils import broadcast_object_list

    decision = [early_end(cfg, state.step, state.end_step, state.evaluations_since_best)]
    if accelerator.num_processes > 1:
        broadcast_object_list(decision, from_process=0)
    if decision[0] is None:
        return None
    log.info("%s: no better calibrated entropy in %d evaluations; decaying from step %d to an early end at %d "
             "(planned %d)", cfg.run_id, cfg.patience, state.step, decision[0], state.end_step)
    state.stopped_early_at, state.end_step = state.step, decision[0]
    bar.total = state.end_step
    run.stopped_early(state)
    return evaluation_steps(cfg, state.end_step)


def _optimizer_step(cfg, accelerator, model, optimizer, scheduler, batches, step: int) -> torch.Tensor:
    """One optimizer step of `grad_accum` micro-batches; returns the mean loss as a
    0-d tensor on the device (reading it, `.item()`, waits for the step to finish)."""
    total = torch.zeros((), device=accelerator.device)
    for micro in range(cfg.grad_accum):
        batch = {k: v.to(accelerator.device) for k, v in batches(step * cfg.grad_accum + micro).items()}
        with accelerator.accumulate(model):  # prepare() wrapped forward in autocast for mixed precision
            loss = model(**batch).loss  # Eq. 3 over every process's batch
            accelerator.backward(loss * accelerator.num_processes)  # DDP averages: see ContrastiveLoss
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        total += loss.detach().float()
    scheduler.step()
    return total / cfg.grad_accum


