"""Training a dense retriever as the paper does (Section 3.4) and measuring it along
the way (Section 3.5): a fixed number of steps of the contrastive loss of Eq. 3 with k
random negatives shared by the batch (plus in-batch negatives unless turned off), the
test contrastive entropy at step 0, at s/64, s/32, ..., s/2 and every `eval_every` steps
(`evaluation_steps`), and the best value kept with its weights (Section 4.1 reports the
best test loss over training, no early stopping).

Built on accelerate, so the same code runs on a CPU, one GPU, or under `accelerate
launch` on several GPUs or nodes (query and passage vectors gathered across
processes: every query sees every process's negatives, and the gradient is that of
one process holding the global batch). Several CPU processes: `torchrun
--nproc_per_node P -m engine train --cpu ...`. Resumable: a checkpoint every
`checkpoint_every` steps (engine/checkpoints.py: weights, optimizer, scheduler, RNG
states, step, best value and curve, in safetensors and JSON; nothing is unpickled),
and a run started again with the same `run_id` continues from the latest one. The batches of step s are a pure function of
(seed, s), so a resumed run sees exactly what an uninterrupted one would have.

Files per run, in `runs_dir()/<run_id>/`: `progress.json` (rewritten atomically:
step, loss, latest evaluation, best, ETA, status), `checkpoints/step-*/`, and at the
end `model/` (`BiEncoder.load` reads it); `best/` holds the weights of the best
evaluation so far, in the same form, and best.json its step. Results go to the store from the main process.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from engine.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from engine.data import (RetrievalData, TrainingPairs, held_out_passages, load_retrieval_data, split_identity,
                         training_pairs)
from engine.dropout import seed_dropout, use_fast_dropout
from engine.errors import InputError
from engine.config import COMPILE_CHOICES, DROPOUT_MASKS, PRECISIONS, EvalConfig, TrainConfig  # noqa: F401 (re-exported)
from engine.evaluate import EvalSet, build_eval_set, check_lengths, evaluate
from engine.flops import device_peak, mfu, train_step_flops
from engine.jobs import PROGRESS_INTERVAL_S, ProgressFile, read_progress  # noqa: F401 (read_progress re-exported)
from engine.ladder import ladder_model, non_embedding_params, strict_non_embedding_params
from engine.model import PADDING_IDENTITY, BiEncoder, ContrastiveLoss, pretrained_encoder, scratch_encoder
from engine.paths import PROJECT_ROOT, runs_dir, validate_name
from engine.protocol import eval_set_pairs, evaluation_fingerprint
from engine.schedule import early_end, evaluation_steps, learning_rate_factor, planned_steps
from engine.tokenize_cache import TokenizedTexts, load_tokenizer, tokenize_cached, trained_wordpiece

log = logging.getLogger(__name__)
POINT_COLUMNS = ("contrastive_entropy", "calibrated_entropy", "temperature")  # a point's own columns, not its metrics

COMPILE_MIN_STEPS = 500  # below this, compiling (about a minute on a CPU) costs more than it saves
BEST_DIR = "best"  # runs/<id>/best/: the weights of the best evaluation (BiEncoder.save) and best.json


@dataclass
class TrainResult:
    run_id: str
    run_dir: str
    status: str
    n_params: int
    n_params_strict: int
    train_pairs: int
    steps: int
    resumed_from_step: int | None
    best_contrastive_entropy: float | None
    best_step: int | None
    final_metrics: dict
    wall_time_s: float
    already_complete: bool = False  # the run id had completed before: nothing was trained
    test_split: dict | None = None  # the qrels evaluated on: name, file, sha256 (engine.data.split_identity)
    best_calibrated_entropy: float | None = None  # best over training on its own (engine.evaluate)
    best_calibrated_step: int | None = None
    planned_steps: int | None = None  # the steps the run planned (engine.schedule.planned_steps)
    stopped_early_at: int | None = None  # the evaluation whose patience ran out: the decay began there


@dataclass
class TrainerState:
    """What a checkpoint adds to accelerate's state: where the run stands."""

    step: int = 0
    best_contrastive_entropy: float | None = None
    best_step: int | None = None
    curve: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    best_calibrated_entropy: float | None = None  # the best of each metric is kept on its own
    best_calibrated_step: int | None = None
    end_step: int = 0  # the last step: the planned one, or where an early stop's decay ends
    stopped_early_at: int | None = None
    evaluations_since_best: int = 0  # evaluations in a row without a new best calibrated (else raw) entropy

    def record(self, step: int, metrics: dict) -> None:
        self.curve = [p for p in self.curve if p["step"] != step] + [{"step": step, **metrics}]
        ce = metrics.get("contrastive_entropy")
        if ce is not None and (self.best_contrastive_entropy is None or ce < self.best_contrastive_entropy):
            self.best_contrastive_entropy, self.best_step = ce, step
        calibrated, best = metrics.get("calibrated_entropy"), self.best_calibrated_entropy
        if calibrated is not None and (best is None or calibrated < best):
            self.best_calibrated_entropy, self.best_calibrated_step = calibrated, step
        watched = self.best_calibrated_step if calibrated is not None else self.best_step
        self.evaluations_since_best = 0 if watched == step else self.evaluations_since_best + 1


# ---------------------------------------------------------------- configuration


def resolve(cfg: TrainConfig) -> TrainConfig:
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


def code_version() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# ---------------------------------------------------------------- model and data


@dataclass
class Prepared:
    """Model, tokens and evaluation set of a run, ready for the loop."""

    model: BiEncoder
    tokenizer: object
    n_params: int
    n_params_strict: int
    data: RetrievalData
    pairs: TrainingPairs
    query_tokens: TokenizedTexts  # training queries
    passage_tokens: TokenizedTexts  # corpus, then the training set's own passages
    eval_set: EvalSet
    negative_pool: np.ndarray  # (pool,) corpus rows the k random training negatives are drawn from


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


def prepare(cfg: TrainConfig) -> Prepared:
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
    return Prepared(model, tokenizer, n_params, n_params_strict, data, pairs, query_tokens, passage_tokens, eval_set,
                    pool)


def training_passages(pairs: TrainingPairs, n_corpus: int) -> np.ndarray:
    """(m,) the corpus rows some pair of the training set has as its positive (all
    pairs, not only the D drawn: the same for every D)."""
    rows = np.unique(np.concatenate(list(pairs.positives.values())))
    return rows[rows < n_corpus]  # a pseudo-annotated set's own passages are never negatives


def negative_pool(pairs: TrainingPairs, n_corpus: int, negatives_from: str, held_out: np.ndarray) -> np.ndarray:
    """(pool,) the corpus rows random negatives are drawn from: every row but the
    held-out evaluation negatives, or the training set's passages (`training_passages`)."""
    if negatives_from == "corpus":
        return np.setdiff1d(np.arange(n_corpus), held_out)
    return training_passages(pairs, n_corpus)


def negatives_per_process(negatives: int, processes: int) -> int:
    """Negative rows each process's batch holds: ceil(k / P), a short share padded."""
    return math.ceil(negatives / processes)


class TrainingBatches:
    """The batch of micro-step m on process r, a pure function of (seed, m, r): pairs
    are read in seeded epoch permutations, each process taking its slice of the global
    batch, and the global batch's k negatives are drawn once from the corpus (seeded by
    (seed, m): every process draws the same k) and dealt out, k // P to each process
    and one more to the first k % P. The processes' vectors are gathered, so every
    block holds `negatives_per_process` rows: a short one is padded with copies of its
    first positive of identity PADDING_IDENTITY, which no query's softmax sees. One
    process with the global batch draws the same k negatives as P processes together.

    Negatives exclude only the global batch's own positives (every positive of its
    queries), as the released code does, so training reads no test label; a drawn
    passage that is still some query's positive is masked by identity in ContrastiveLoss.
    On a small corpus whose test passages are no training positive (squad-dev: a fifth
    of the corpus), those are then only ever negatives and training pushes them away
    from every query; `negatives_from = "training"` draws from the training set's
    passages instead (`negative_pool`), which reads no test label either."""

    def __init__(self, prepared: Prepared, cfg: TrainConfig, process_index: int, num_processes: int):
        self.pairs = prepared.pairs
        self.query_tokens = prepared.query_tokens
        self.passage_tokens = prepared.passage_tokens
        self.pool = prepared.negative_pool  # (pool,) corpus rows, the first rows of passage_tokens
        self.n_corpus = len(prepared.data.passages)
        self.batch_size = cfg.batch_size
        self.negatives = cfg.negatives  # k in total, over all processes
        self.block = negatives_per_process(cfg.negatives, num_processes)
        self.seed = cfg.seed
        self.process_index = process_index
        self.num_processes = num_processes
        self._permutations: dict[int, np.ndarray] = {}
        fixed = cfg.compile == "yes"
        self.query_pad_to = cfg.max_query_length if fixed else None
        self.passage_pad_to = cfg.max_passage_length if fixed else None

    def _pair_rows(self, micro_step: int, process_index: int) -> np.ndarray:
        n = len(self.pairs.pairs)
        start = (micro_step * self.num_processes + process_index) * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        rows = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(positions // n):
            if epoch not in self._permutations:
                self._permutations = {epoch: np.random.default_rng([self.seed, 3, epoch]).permutation(n)}
            here = positions // n == epoch
            rows[here] = self._permutations[epoch][positions[here] % n]
        return rows

    def global_negatives(self, micro_step: int) -> np.ndarray:
        """(k,) distinct corpus rows, none a positive of the global batch's queries."""
        queries = [int(q) for r in range(self.num_processes) for q in self.pairs.pairs[self._pair_rows(micro_step, r), 0]]
        excluded = np.unique(np.concatenate([self.pairs.positives[q] for q in queries]))
        excluded = excluded[excluded < self.n_corpus]  # (n_excluded,) corpus rows
        rng = np.random.default_rng([self.seed, 4, micro_step])
        drawn = rng.choice(len(self.pool), min(len(self.pool), self.negatives + len(excluded)), replace=False)
        candidates = self.pool[drawn]  # (drawn,) corpus rows
        negatives = candidates[~np.isin(candidates, excluded)][: self.negatives]
        if len(negatives) < self.negatives:
            raise InputError(f"negatives = {self.negatives} but step {micro_step}'s batch leaves only "
                             f"{len(negatives)} passages that are none of its positives; lower --negatives")
        return negatives

    def _own_share(self, negatives: np.ndarray) -> np.ndarray:
        base, extra = divmod(len(negatives), self.num_processes)
        start = self.process_index * base + min(self.process_index, extra)
        return negatives[start : start + base + (self.process_index < extra)]

    def __call__(self, micro_step: int) -> dict[str, torch.Tensor]:
        chosen = self.pairs.pairs[self._pair_rows(micro_step, self.process_index)]  # (batch, 2) query row, passage row
        negatives = self._own_share(self.global_negatives(micro_step))  # (share,) share <= block
        padding = self.block - len(negatives)
        passages = np.concatenate([chosen[:, 1], negatives, np.repeat(chosen[:1, 1], padding)])  # (batch + block,)
        identity = self.pairs.identity[passages].copy()
        identity[len(passages) - padding :] = PADDING_IDENTITY
        query_input_ids, query_attention_mask = self.query_tokens.batch(chosen[:, 0], self.query_pad_to)
        passage_input_ids, passage_attention_mask = self.passage_tokens.batch(passages, self.passage_pad_to)
        return {
            "query_input_ids": query_input_ids,  # (batch, q_len)
            "query_attention_mask": query_attention_mask,
            "passage_input_ids": passage_input_ids,  # (batch + block, p_len) positives first
            "passage_attention_mask": passage_attention_mask,
            "passage_identity": torch.from_numpy(identity),  # (batch + block,)
            "query_positives": _padded([self.pairs.positives[q] for q in chosen[:, 0]]),  # (batch, max_pos)
        }


def _padded(rows: list[np.ndarray]) -> torch.Tensor:
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


# ---------------------------------------------------------------- progress and checkpoints


def _fresh_accelerator_state() -> None:
    """accelerate keeps one state per process and refuses a second Accelerator of another
    precision, so a process that trains runs one after another (tests, a notebook) starts
    each from a clean one, as accelerate's own tests do. A launched process (torchrun,
    accelerate launch) trains one run and keeps its distributed state."""
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()


# ---------------------------------------------------------------- a run id's configuration

CONFIG_FILE = "train_config.json"  # a run's resolved config, written when it starts


def completed_result(run_dir: Path, cfg: TrainConfig) -> TrainResult | None:
    """The result of `run_dir`'s run if it completed; None if it has yet to. A run id's
    Measurement is fixed: one used with a different one is an InputError naming the
    settings that differ (run options, such as the checkpoint interval, may change)."""
    stored = stored_config(run_dir)
    if stored is not None:
        old, new = _flat(asdict(stored)), _flat(asdict(cfg))
        differ = [f"{name} {old[name]!r} -> {new[name]!r}" for name in stored.measurement_differences(cfg)]
        if differ:
            raise InputError(f"run id '{cfg.run_id}' already holds a run with other settings ({'; '.join(differ)}); "
                             "choose a new --run-id, or the run's own settings to resume or rerun it")
    result = run_dir / "model" / "result.json"
    if not result.is_file():
        return None
    return replace(TrainResult(**json.loads(result.read_text())), already_complete=True)


def stored_config(run_dir: Path) -> TrainConfig | None:
    """The config a run was started with: written at its start, or (runs of earlier
    versions) beside its final model or its newest checkpoint."""
    checkpoint = latest_checkpoint(run_dir)
    candidates = [run_dir / CONFIG_FILE, run_dir / "model" / CONFIG_FILE]
    for path in candidates + ([checkpoint / CONFIG_FILE] if checkpoint else []):
        if path.is_file():
            return TrainConfig.from_dict(json.loads(path.read_text()))
    return None


def _flat(values: dict) -> dict:
    return {**{k: v for k, v in values.items() if k != "eval"}, **{f"eval.{k}": v for k, v in values["eval"].items()}}


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


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

    cfg = resolve(cfg)
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
        _write_atomically(run_dir / CONFIG_FILE, json.dumps(asdict(cfg), indent=1))
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
        for name, value in load_checkpoint(accelerator, checkpoint, model, optimizer, scheduler).items():
            setattr(state, name, value)
        resumed_from = state.step
        log.info("%s: resuming from step %d (%s)", cfg.run_id, state.step, checkpoint)
    run = _RunRecorder(cfg, prepared, accelerator, store, run_dir, resumed_from, state.end_step)
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
        (run_dir / "model" / "result.json").write_text(json.dumps(asdict(result), indent=1))
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


class _RunRecorder:
    """Where a run reports: progress file, log, and store (main process only)."""

    def __init__(self, cfg, prepared: Prepared, accelerator, store, run_dir: Path, resumed_from, end_step: int):
        self.cfg, self.prepared, self.accelerator, self.store, self.run_dir = cfg, prepared, accelerator, store, run_dir
        self.main = accelerator.is_main_process
        self._logged = time.monotonic()  # the first progress write comes a progress interval in
        self.progress_file = ProgressFile(
            run_dir / "progress.json", run_id=cfg.run_id, total_steps=end_step, pid=os.getpid(),
            resumed_from_step=resumed_from, n_params=prepared.n_params, train_pairs=len(prepared.pairs.pairs),
        )
        config = prepared.model.encoder.config
        # nominal FLOPs of a step (sequences at their max lengths, this process), as nanoGPT logs them:
        # its queries, its positives and its block of the k negatives (TrainingBatches)
        passages = cfg.batch_size + negatives_per_process(cfg.negatives, accelerator.num_processes)
        self.step_flops = train_step_flops(
            prepared.n_params, config.num_hidden_layers, config.hidden_size,
            [(cfg.batch_size, cfg.max_query_length), (passages, cfg.max_passage_length)],
        ) * cfg.grad_accum
        if not self.main:
            return
        self.progress_file.update(force=True, status="running", step=resumed_from or 0)
        if store is not None:
            self._start_in_store()

    def _start_in_store(self) -> None:
        cfg, data, pairs = self.cfg, self.prepared.data, self.prepared.pairs
        self.store.register_dataset(
            data.name, language=data.language(), format=data.format, path=str(data.path),
            n_passages=len(data.passages), n_queries=len(data.queries),
            n_train_pairs=len(data.pairs("train")) if "train" in data.qrels else 0,
            n_test_pairs=len(data.pairs(data.test_split)),
        )
        if cfg.train_data is not None:
            self.store.register_dataset(
                pairs.source.name, language=data.language(), format="beir", path=str(pairs.source),
                n_passages=len(pairs.extra_passages), n_queries=len(pairs.query_texts),
                n_train_pairs=pairs.n_available, n_test_pairs=0, annotation=cfg.annotation,
            )
        self.store.start_run(
            config=asdict(cfg), model_name=cfg.model, n_params=self.prepared.n_params,
            n_params_strict=self.prepared.n_params_strict, train_pairs=len(pairs.pairs),
            annotation=cfg.annotation, dataset=data.name, seed=cfg.seed, device=_device_name(self.accelerator),
            code_version=code_version(), run_id=cfg.run_id, source="engine", label=cfg.label,
            eval_fingerprint=evaluation_fingerprint(
                cfg, split=data.test_split, pairs=eval_set_pairs(self.prepared.eval_set),
                pool_training_positives=self.prepared.eval_set.pool_training_positives),
        )

    def logging_due(self) -> bool:
        """True on the main process once a progress interval has passed since the last write."""
        return self.main and time.monotonic() - self._logged >= PROGRESS_INTERVAL_S

    def progress(self, state: TrainerState, loss: float, seconds_per_step: float) -> None:
        if self.main:
            self._logged = time.monotonic()
            peak = device_peak(str(self.accelerator.device), self.cfg.precision)
            self.progress_file.update(
                force=True, step=state.step, loss=loss, seconds_per_step=seconds_per_step,
                flops_per_s=self.step_flops / seconds_per_step, peak_flops=peak,
                mfu=mfu(self.step_flops, seconds_per_step, peak),
                eta_s=seconds_per_step * (state.end_step - state.step), wall_time_s=state.wall_time_s,
                best_contrastive_entropy=state.best_contrastive_entropy, best_step=state.best_step,
            )

    def stopped_early(self, state: TrainerState) -> None:
        if self.main:
            self.progress_file.update(force=True, total_steps=state.end_step, stopped_early_at=state.stopped_early_at)

    def evaluate(self, model, state: TrainerState, final: bool) -> None:
        """Evaluate on the main process while the others wait."""
        if self.main:
            ranking = self.cfg.eval.ranking == "every" or (final and self.cfg.eval.ranking == "final")
            metrics = evaluate(
                self.accelerator.unwrap_model(model), self.prepared.eval_set, device=self.accelerator.device,
                batch_size=self.cfg.eval_batch_size, ranking=ranking,
            )  # in fp32 whatever the run's precision, as engine evaluate does
            state.record(state.step, metrics)
            if state.best_step == state.step:
                self._save_best(model, state)
            log.info("%s step %d: %s", self.cfg.run_id, state.step,
                     {k: round(v, 4) for k, v in metrics.items()})
            self.progress_file.update(force=True, latest_eval={"step": state.step, **metrics},
                                      best_contrastive_entropy=state.best_contrastive_entropy,
                                      best_step=state.best_step)
            if self.store is not None:
                self.store.add_point(
                    self.cfg.run_id, step=state.step, contrastive_entropy=metrics["contrastive_entropy"],
                    calibrated_entropy=metrics.get("calibrated_entropy"), temperature=metrics.get("temperature"),
                    metrics={k: v for k, v in metrics.items() if k not in POINT_COLUMNS},
                    wall_time_s=state.wall_time_s,
                )
        self.accelerator.wait_for_everyone()

    def _save_best(self, model, state: TrainerState) -> None:
        """The weights of the best evaluation so far, in `run_dir/best` (safetensors, as
        `model/`), with best.json naming its step; written beside, then swapped in."""
        best, partial = self.run_dir / BEST_DIR, self.run_dir / f"{BEST_DIR}.{os.getpid()}.tmp"
        shutil.rmtree(partial, ignore_errors=True)
        self.accelerator.unwrap_model(model).save(partial, self.prepared.tokenizer)
        (partial / "best.json").write_text(json.dumps(
            {"step": state.best_step, "contrastive_entropy": state.best_contrastive_entropy}, indent=1))
        shutil.rmtree(best, ignore_errors=True)
        os.replace(partial, best)

    def finish(self, state: TrainerState, status: str, error: str | None = None) -> None:
        if not self.main:
            return
        self.progress_file.update(force=True, status=status, step=state.step, error=error,
                                  best_contrastive_entropy=state.best_contrastive_entropy)
        if self.store is not None:
            final = state.curve[-1] if state.curve else {}
            self.store.finish_run(
                self.cfg.run_id, status=status, best_contrastive_entropy=state.best_contrastive_entropy,
                best_calibrated_entropy=state.best_calibrated_entropy,
                metrics={k: v for k, v in final.items() if k != "step"} or None,  # with the entropy they go with
                wall_time_s=state.wall_time_s,
            )


def _device_name(accelerator) -> str:
    device = accelerator.device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{accelerator.num_processes}"
    return f"{device.type} x{accelerator.num_processes} ({os.cpu_count()} cores)"
