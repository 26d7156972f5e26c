"""The configuration of a training run, in two parts (no torch here: the CLI and the
sweep read it without loading a deep-learning stack).

- `Measurement`: what defines the measurement, the hyperparameters that change the
  numbers a run produces (data, model, D, steps, batch, negatives, learning rate,
  seeds, precision, dropout masks, evaluation protocol). Two runs with the same
  Measurement measure the same thing; a sweep's run id hashes this part only.
- `RunOptions`: how it is run (checkpoint interval and how many are kept, evaluation
  batch size, compile, gradient checkpointing, device flags, run id, label). Changing
  them changes how long a run takes or what it leaves on disk, not its results.

`TrainConfig` is both at once (every field of either, flat, as the CLI flags, a sweep
file's [train] table and a stored config dict spell them); `config.measurement` and
`config.run_options` give the parts.
"""
from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass

from engine.errors import InputError

PRECISIONS = ("auto", "no", "bf16", "fp16")
DROPOUT_MASKS = ("auto", "fast", "torch")
INITS = ("auto", "pretrained", "scratch")
COMPILE_CHOICES = ("auto", "yes", "no")
NEGATIVE_POOLS = ("corpus", "training")
LR_SCHEDULES = ("linear", "wsd")
SIMILARITIES = ("auto", "dot", "cosine")
DEFAULT_MAX_QUERY_LENGTH = 32  # the paper's released code
DEFAULT_MAX_PASSAGE_LENGTH = 180
# a trained WordPiece vocabulary holds the 5 special tokens and every character of the
# corpus before any word piece: below this a requested size is silently exceeded
MIN_TRAINED_VOCAB = 100


@dataclass
class EvalConfig:
    """How a model is measured (the protocol); the same settings give the same negatives."""

    negatives: int = field(default=256, metadata={"help": "k negatives per test pair (Eq. 5; paper 256)"})
    repeats: int = field(default=10, metadata={"help": "seeded draws of negatives, averaged"})
    subcorpus_size: int = field(
        default=100_000, metadata={"help": "ranking sub-corpus: test positives + sampled others (paper 100,000)"}
    )
    max_test_pairs: int | None = field(default=None, metadata={"help": "seeded cap on test pairs (None: all)"})
    ranking: str = field(
        default="final", metadata={"help": "ranking metrics at every evaluation, the final one, or never",
                                   "choices": ("every", "final", "never")}
    )
    seed: int = field(default=0, metadata={"help": "seed of the sub-corpus, pool and negatives"})
    held_out_negatives: int = field(default=0, metadata={
        "help": "passages kept out of training as the pool of the k negatives and the ranking sub-corpus's "
                "others: whole articles (passages sharing a title) relevant to no test query, seeded, until this "
                "many; their training pairs are left out. 0: the paper's pool, passages relevant to no test query, "
                "which on a small corpus are training positives the model has memorised (issue 27)"})
    test_split: str | None = field(default=None, metadata={
        "help": "qrels split evaluated on (default: the data set's one split other than train; a data set with "
                "several, e.g. dev and test, must name one)", "flag": "--test-split"})

    def __post_init__(self) -> None:
        check_fields(self, _EVAL_LOWEST, prefix="eval.")


@dataclass(kw_only=True)
class Measurement:
    """What a run measures; stored with the run, hashed into a sweep's run ids."""

    # what is trained, on what
    dataset: str = field(metadata={"help": "data set folder (BEIR, MS MARCO or T2Ranking layout); its test split "
                                           "is the evaluation"})
    model: str = field(default="scratch-L2-H64", metadata={"help": "ladder name (python -m engine models), local "
                                                                    "folder or hub name"})
    init: str = field(default="auto", metadata={"help": "pretrained weights or a random init from the config "
                                                         "(auto: scratch for scratch-* rungs)", "choices": INITS})
    tokenizer: str | None = field(default=None, metadata={"help": "scratch only: vocab.txt, folder or hub name "
                                                                  "(default: WordPiece trained on the corpus)"})
    tokenizer_vocab_size: int = field(default=8192, metadata={"help": "vocabulary of a tokenizer trained on the corpus"})
    scratch_embedding_std: float = field(default=1.0, metadata={"help": "scratch only: std of the word-embedding "
                                                                        "init (T5's 1; BERT's 0.02 hides token identity)"})
    pooling: str = field(default="mean", metadata={"help": "mean over the attention mask, or the [CLS] vector",
                                                   "choices": ("mean", "cls")})
    similarity: str = field(default="auto", metadata={
        "help": "score: the inner product of Eq. 1, or cosine times a learned scale (started at 20); auto: the "
                "rung's (cosine for scratch-* rungs, engine/ladder.py), else dot", "choices": SIMILARITIES})
    train_data: str | None = field(default=None, metadata={"help": "BEIR folder of (pseudo-)annotated training "
                                                                   "pairs instead of the data set's train split"})
    annotation: str | None = field(default=None, metadata={"help": "annotation label stored with the run "
                                                                   "(default: human, or pseudo with --train-data)"})
    train_pairs: int | None = field(default=None, metadata={"help": "D: training pairs, a seeded nested subset "
                                                                    "(default: all)"})
    data_seed: int = field(default=0, metadata={"help": "seed of the D-pair subset (same seed: nested subsets)"})
    lenient_qrels: bool = field(default=False, metadata={"help": "drop judgments with unknown ids (counted) "
                                                                 "instead of failing"})
    # optimisation (defaults: the paper and its released code)
    steps: int = field(default=10_000, metadata={"help": "optimizer steps (paper: 10,000)"})
    batch_size: int = field(default=128, metadata={"help": "queries per step, per process"})
    negatives: int = field(default=256, metadata={"help": "k random negatives per step shared by the batch "
                                                          "(paper: 256), split over processes"})
    in_batch_negatives: bool = field(default=True, metadata={"help": "other queries' positives are negatives too"})
    negatives_from: str = field(default="corpus", metadata={
        "help": "pool of the k random negatives: the whole corpus (the released code) or the passages of the "
                "training set (every training pair's positive, not only the D drawn): on a small corpus the test "
                "passages are then never negatives, as they almost never are in MS MARCO's 8.8M; reads no test label",
        "choices": NEGATIVE_POOLS})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default: the rung's, 5e-6 "
                                                              "for pretrained BERT)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps, then the schedule's decay"})
    lr_schedule: str = field(default="linear", metadata={
        "help": "after the warm-up: linear decay to 0 at the planned last step, or wsd (warm-up, stable, decay): "
                "constant, then linear decay to 0 over the last decay_share of the run's real end, which an early "
                "stop (patience) moves", "choices": LR_SCHEDULES})
    decay_share: float = field(default=0.2, metadata={"help": "wsd: share of the run spent decaying to 0"})
    embedding_lr_scale: float = field(default=1.0, metadata={
        "help": "the word embeddings' learning rate as a multiple of lr (below 1 keeps a scratch model's "
                "word-overlap start longer)"})
    epochs: float | None = field(default=None, metadata={
        "help": "passes over the D pairs: the run takes epochs x D / global batch steps, at least min_steps and at "
                "most steps (None: exactly steps)"})
    min_steps: int = field(default=0, metadata={"help": "with epochs: the fewest steps a run takes"})
    patience: int = field(default=0, metadata={
        "help": "wsd: evaluations after min_steps without a new best calibrated entropy before the decay begins "
                "(an early stop; 0: never)"})
    evals_per_doubling: int = field(default=0, metadata={
        "help": "evaluate geometrically: at eval_every, then this many times per doubling of the step, and at the "
                "end (0: s/64, ..., s/2 and every eval_every steps)"})
    weight_decay: float = field(default=0.001, metadata={"help": "AdamW weight decay (not on biases, LayerNorm)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0: off)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step (each its own "
                                                          "softmax over its batch: it changes the measurement)"})
    max_query_length: int = field(default=DEFAULT_MAX_QUERY_LENGTH, metadata={"help": "query tokens kept"})
    max_passage_length: int = field(default=DEFAULT_MAX_PASSAGE_LENGTH, metadata={"help": "passage tokens kept"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation, batches and negatives"})
    # numerics that change the results
    precision: str = field(default="auto", metadata={
        "help": "mixed precision (auto: bf16 on a GPU or CPU that computes it natively, e.g. AVX512-BF16 or AMX; "
                "2.2x the fp32 matmul rate on the development CPU, bench/RESULTS.md)", "choices": PRECISIONS})
    dropout_masks: str = field(default="auto", metadata={
        "help": "how dropout masks are drawn: fast (16-bit masks, engine/dropout.py), torch (bernoulli); "
                "auto: fast on a CPU, where torch's masks took a fifth of a small model's step", "choices": DROPOUT_MASKS})
    # evaluation
    eval_every: int = field(default=1000, metadata={"help": "steps between evaluations (besides step 0, s/64, ..., "
                                                            "s/2 and the end); with evals_per_doubling the first "
                                                            "evaluation after step 0"})
    eval_at_start: bool = field(default=False, metadata={
        "help": "kept so stored configs and sweep ids stay as they were: step 0 is now always evaluated "
                "(engine.schedule.evaluation_steps)"})
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass(kw_only=True)
class RunOptions:
    """How a run is carried out; none of it changes the numbers it produces."""

    eval_batch_size: int = field(default=128, metadata={"help": "texts per encoding batch in evaluation"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations: less memory"})
    compile: str = field(default="no", metadata={
        "help": "torch.compile the training forward; batches are then padded to the max lengths so shapes never "
                "change (auto: runs of >= 500 steps). On a 2-core CPU it was no faster (bench/RESULTS.md)",
        "choices": COMPILE_CHOICES})
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between resumable checkpoints (0: none)"})
    keep_checkpoints: int = field(default=1, metadata={"help": "newest checkpoints kept"})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even where a GPU is present (and for "
                                                        "several CPU processes under torchrun)"})
    run_id: str | None = field(default=None, metadata={"help": "run id; an existing run's id resumes it"})
    label: str | None = field(default=None, metadata={"help": "free label stored with the run"})


MEASUREMENT_FIELDS = tuple(f.name for f in fields(Measurement))
RUN_OPTION_FIELDS = tuple(f.name for f in fields(RunOptions))


@dataclass(kw_only=True)
class TrainConfig(RunOptions, Measurement):
    """One training run: its Measurement and its RunOptions, stored with the run, its
    checkpoints and its model (as `asdict`, one flat dict). Every value is checked on
    construction (type, range, choice), so a bad one is refused before any work."""

    def __post_init__(self) -> None:
        check_fields(self, _TRAIN_LOWEST)
        for name in ("lr", "scratch_embedding_std", "embedding_lr_scale", "epochs"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)!r} ({_flag(name)})")
        if not 0 < self.decay_share < 1:
            raise InputError(f"decay_share must lie between 0 and 1, got {self.decay_share!r} (--decay-share)")
        if self.min_steps > self.steps:
            raise InputError(f"min_steps {self.min_steps} exceeds steps {self.steps}, the most a run takes "
                             "(--min-steps, --steps)")
        if self.patience and self.lr_schedule != "wsd":
            raise InputError("patience stops a run early by starting its decay: it needs --lr-schedule wsd")

    @property
    def measurement(self) -> Measurement:
        return Measurement(**{name: getattr(self, name) for name in MEASUREMENT_FIELDS})

    @property
    def run_options(self) -> RunOptions:
        return RunOptions(**{name: getattr(self, name) for name in RUN_OPTION_FIELDS})

    def measurement_digest(self) -> str:
        """8 hex digits of the Measurement: equal for runs that measure the same thing."""
        text = json.dumps(without_later_defaults(asdict(self.measurement)), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def measurement_differences(self, other: "TrainConfig") -> list[str]:
        """Names of the Measurement fields (eval.* for the protocol's) where `other` differs."""
        mine, theirs = asdict(self.measurement), asdict(other.measurement)
        changed = [name for name in MEASUREMENT_FIELDS if name != "eval" and mine[name] != theirs[name]]
        return changed + [f"eval.{name}" for name in mine["eval"] if mine["eval"][name] != theirs["eval"][name]]

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """From `asdict` output (a stored config, a sweep file's values). Configs stored
        before the split kept the evaluation batch size as `eval.batch_size`."""
        if not isinstance(values, dict) or not isinstance(values.get("eval") or {}, dict):
            raise InputError(f"a TrainConfig is a JSON object of settings (with \"eval\" an object too), got {values!r}")
        values, evaluation = dict(values), dict(values.get("eval") or {})
        if "batch_size" in evaluation:
            legacy = evaluation.pop("batch_size")
            values.setdefault("eval_batch_size", legacy)
        for kind, given in ((cls, values), (EvalConfig, evaluation)):
            unknown = set(given) - {f.name for f in fields(kind)}
            if unknown:
                raise InputError(f"unknown {kind.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**{**values, "eval": EvalConfig(**evaluation)})


# settings added after sweeps hashed their run ids: left out of a digest while at their
# default, so the runs of an unchanged sweep file keep their ids
_ADDED_LATER = {"negatives_from": "corpus", "similarity": "auto", "lr_schedule": "linear", "decay_share": 0.2,
                "embedding_lr_scale": 1.0, "epochs": None, "min_steps": 0, "patience": 0, "evals_per_doubling": 0}
_EVAL_ADDED_LATER = {"test_split": None, "held_out_negatives": 0}


def without_later_defaults(values: dict) -> dict:
    """An `asdict` config without the settings of `_ADDED_LATER` and `_EVAL_ADDED_LATER`
    that hold their default."""
    kept = {name: value for name, value in values.items()
            if name not in _ADDED_LATER or value != _ADDED_LATER[name]}
    evaluation = {name: value for name, value in values["eval"].items()
                  if name not in _EVAL_ADDED_LATER or value != _EVAL_ADDED_LATER[name]}
    return {**kept, "eval": evaluation}


# ---------------------------------------------------------------- checks

MAX_SEED = 2**32  # numpy's seed (accelerate's set_seed seeds it too) lies below it: a larger one fails every run
# the value each number field must stay below
_BELOW = {"seed": MAX_SEED, "data_seed": MAX_SEED}
# the lowest value of each number field (a field not named here may take any value of its type)
_EVAL_LOWEST = {"negatives": 1, "repeats": 1, "subcorpus_size": 1, "max_test_pairs": 1, "seed": 0,
               "held_out_negatives": 0}
_TRAIN_LOWEST = {
    "tokenizer_vocab_size": MIN_TRAINED_VOCAB, "train_pairs": 1, "data_seed": 0, "steps": 1, "batch_size": 1,
    "negatives": 1, "warmup_steps": 0, "weight_decay": 0, "max_grad_norm": 0, "grad_accum": 1,
    "max_query_length": 1, "max_passage_length": 1, "seed": 0, "eval_every": 1, "eval_batch_size": 1,
    "checkpoint_every": 0, "keep_checkpoints": 1, "min_steps": 0, "patience": 0, "evals_per_doubling": 0,
}  # lr, scratch_embedding_std, embedding_lr_scale, epochs: positive; decay_share in (0, 1) (TrainConfig.__post_init__)
_KIND_WORDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _flag(name: str) -> str:
    return "--" + name.replace(".", "-").replace("_", "-")


def check_fields(config, lowest: dict[str, float], prefix: str = "") -> None:
    """InputError unless every field of the dataclass `config` holds a value of its
    declared type (a config file's "steps": "abc" fails here, not deep in training),
    finite, at least its `lowest` value, below its `_BELOW` value, and one of its `choices`."""
    hints = typing.get_type_hints(type(config))
    for item in fields(config):
        name, value = prefix + item.name, getattr(config, item.name)
        options = typing.get_args(hints[item.name]) if isinstance(hints[item.name], types.UnionType) \
            else (hints[item.name],)
        if value is None and type(None) in options:
            continue
        kind = next(option for option in options if option is not type(None))
        if is_dataclass(kind):
            if not isinstance(value, kind):
                raise InputError(f"{name} must be an object of {kind.__name__} settings, got {value!r}")
            continue
        accepted = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, accepted):
            optional = " or null" if type(None) in options else ""
            raise InputError(f"{name} must be {_KIND_WORDS[kind]}{optional}, got {value!r} ({_flag(name)})")
        if kind is float and not math.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value!r} ({_flag(name)})")
        least = lowest.get(item.name)
        if least is not None and value < least:
            bound = "positive" if least == 1 and kind is int else f"at least {least}"
            raise InputError(f"{name} must be {bound}, got {value!r} ({_flag(name)})")
        ceiling = _BELOW.get(item.name)
        if ceiling is not None and value >= ceiling:
            raise InputError(f"{name} must be below {ceiling} (2**32, numpy's seed limit), got {value!r} "
                             f"({_flag(name)})")
        choices = item.metadata.get("choices")
        if choices and value not in choices:
            raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r} ({_flag(name)})")
