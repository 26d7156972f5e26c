"""The model ladder: the paper's 24 Google BERT checkpoints (English), the ERNIE 3.0
series (Chinese) and small from-scratch configurations that train on a 2-core CPU in
minutes, each with its size N computed from the config alone.

How N is counted (`non_embedding_params`): as the paper (following Kaplan et al.) and
its released code do, every parameter whose name does not contain "embedding" (word,
position, token-type and task-type embeddings and the embedding LayerNorm are out), the
unused pooler in, plus the projection to 768 of Eq. 2. That gives BERT-Tiny
512,128 = 0.49 x 2^20 and BERT-Base 86,235,648 = 82.2 x 2^20, the paper's "0.5M" and
"82M". `strict_non_embedding_params` leaves out the pooler, which the bi-encoder never
uses (BERT-Base 81.7 x 2^20).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

PROJECTION_DIM = 768  # Eq. 2: every model projects to 768 "for consistent comparisons"
MEBI = 2**20  # the paper's "million" for N

BERT_LAYERS = (2, 4, 6, 8, 10, 12)
BERT_HIDDEN = (128, 256, 512, 768)
SCRATCH_SHAPES = ((1, 32), (2, 32), (1, 64), (2, 64), (1, 128), (2, 128), (4, 128), (2, 256), (4, 256))


@dataclass(frozen=True)
class LadderModel:
    """One rung: a named transformer shape, where its weights come from, and the
    learning rate it trains well with."""

    name: str
    family: str  # bert | ernie | scratch
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int
    max_position: int
    scratch: bool  # no pretrained weights: initialised from the config
    language: str  # en | zh | any
    lr: float  # default learning rate for this rung
    model_type: str = "bert"
    similarity: str = "dot"  # the score it trains with by default (engine.model.SIMILARITIES)
    extra: dict = field(default_factory=dict)  # further config keys (ERNIE's task ids)

    def config(self, vocab_size: int | None = None):
        """The transformers config of this shape; `vocab_size` overrides for a
        scratch model whose tokenizer was trained on the corpus."""
        from transformers import AutoConfig

        return AutoConfig.for_model(
            self.model_type,
            vocab_size=vocab_size or self.vocab_size,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=self.max_position,
            **self.extra,
        )

    def describe(self) -> dict:
        """The JSON row `python -m engine models --json` prints."""
        row = {k: v for k, v in asdict(self).items() if k != "extra"}
        config = self.config()
        row["n_params"] = non_embedding_params(config)
        row["n_params_strict"] = strict_non_embedding_params(config)
        row["n_params_mebi"] = round(row["n_params"] / MEBI, 3)
        return row


def _bert(layers: int, hidden: int) -> LadderModel:
    return LadderModel(
        name=f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}", family="bert",
        layers=layers, hidden=hidden, heads=hidden // 64, intermediate=4 * hidden, vocab_size=30522,
        max_position=512, scratch=False, language="en", lr=5e-6,
    )


# nghuyong's transformers ports of ERNIE 3.0 (config.json of each hub repo).
_ERNIE_EXTRA = {"type_vocab_size": 4, "task_type_vocab_size": 16, "use_task_id": True, "layer_norm_eps": 1e-5}
_ERNIE_SHAPES = {  # name: (layers, hidden, heads, intermediate)
    "nghuyong/ernie-3.0-nano-zh": (4, 312, 12, 1248),
    "nghuyong/ernie-3.0-micro-zh": (4, 384, 12, 1536),
    "nghuyong/ernie-3.0-mini-zh": (6, 384, 12, 1536),
    "nghuyong/ernie-3.0-medium-zh": (6, 768, 12, 3072),
    "nghuyong/ernie-3.0-base-zh": (12, 768, 12, 3072),
    "nghuyong/ernie-3.0-xbase-zh": (20, 1024, 16, 4096),
}


def _ernie(name: str) -> LadderModel:
    layers, hidden, heads, intermediate = _ERNIE_SHAPES[name]
    return LadderModel(
        name=name, family="ernie", layers=layers, hidden=hidden, heads=heads, intermediate=intermediate,
        vocab_size=40000, max_position=2048, scratch=False, language="zh", lr=5e-6, model_type="ernie",
        extra=dict(_ERNIE_EXTRA),
    )


# Peak learning rate of the from-scratch rungs with their default score, cosine times a
# learned scale (issue 22, bench/RESULTS.md "Training recipes"): on squad-dev's 6,286 pairs,
# 3e-4 beat 1e-3 and 1e-4 on scratch-L1-H32 (calibrated entropy 4.87 at 400 steps against
# 4.89 and 4.92), 1e-3 and 3e-3 on scratch-L1-H128, and scratch-L2-H256 learned at it from
# the first steps (4.07 untrained, 2.81 at step 141). The dot-product rates of issue 15
# (1e-2 to 1e-3) destroyed the untrained model's word-overlap ranking first.
TUNED_SCRATCH_LR = {shape: 3e-4 for shape in SCRATCH_SHAPES}


def _scratch(layers: int, hidden: int) -> LadderModel:
    # heads of width 32 so the narrowest rungs still have one; vocab is the tokenizer's
    return LadderModel(
        name=f"scratch-L{layers}-H{hidden}", family="scratch", layers=layers, hidden=hidden,
        heads=max(1, hidden // 32), intermediate=4 * hidden, vocab_size=8192, max_position=512,
        scratch=True, language="any", lr=TUNED_SCRATCH_LR[layers, hidden], similarity="cosine",
    )


def _first_default_lr(rung: LadderModel) -> float:
    """The rung's default rate when sweeps first hashed run ids (before issue 15's tuning)."""
    if not rung.scratch:
        return rung.lr
    return 1e-3 if rung.hidden < 128 else 5e-4


def hashed_lr(model: str) -> float | None:
    """The rate a sweep writes into the Measurement of a run that names none: None (the
    rung's default) where that default is the one it had when run ids were first hashed,
    so those ids stay; else the default itself, so runs trained at an earlier default are
    not taken for runs at the new one."""
    rung = ladder_model(model)
    if rung is None or rung.lr == _first_default_lr(rung):
        return None
    return rung.lr


def hashed_similarity(model: str) -> str | None:
    """The score a sweep writes into the Measurement of a run that names none: None
    where the rung's default is the inner product every run had before the option, so
    those ids stay; else the default itself (cosine for scratch rungs, issue 22), so
    runs trained with dot products are not taken for runs with cosine."""
    rung = ladder_model(model)
    return rung.similarity if rung is not None and rung.similarity != "dot" else None


LADDER: dict[str, LadderModel] = {
    m.name: m
    for m in (
        [_bert(layers, hidden) for layers in BERT_LAYERS for hidden in BERT_HIDDEN]
        + [_ernie(name) for name in _ERNIE_SHAPES]
        + [_scratch(layers, hidden) for layers, hidden in SCRATCH_SHAPES]
    )
}


def ladder_model(name: str) -> LadderModel | None:
    """The rung called `name` (also accepts the Google names without `google/`)."""
    return LADDER.get(name) or LADDER.get(f"google/{name}")


def _named_parameter_sizes(config) -> list[tuple[str, int]]:
    """(name, size) of every parameter of `AutoModel.from_config(config)`, built on
    the meta device: no memory, no weights."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return [(name, p.numel()) for name, p in model.named_parameters()]


def non_embedding_params(config, projection_dim: int | None = PROJECTION_DIM) -> int:
    """The paper's N: parameters not named "embedding", pooler and projection included."""
    return _count(config, projection_dim, include_pooler=True)


def rung_size(rung: LadderModel) -> int:
    """N of a rung from its shape alone (the closed form below, no
    transformers import)."""
    shape = SimpleNamespace(model_type=rung.model_type, hidden_size=rung.hidden, num_hidden_layers=rung.layers,
                            intermediate_size=rung.intermediate)
    return non_embedding_params(shape)


def strict_non_embedding_params(config, projection_dim: int | None = PROJECTION_DIM) -> int:
    """N without the pooler the bi-encoder never uses."""
    return _count(config, projection_dim, include_pooler=False)


def _count(config, projection_dim: int | None, include_pooler: bool) -> int:
    if config.model_type in BERT_LIKE:
        n = _bert_like_count(config, include_pooler)
    else:
        sizes = _named_parameter_sizes(config)
        n = sum(size for name, size in sizes if "embedding" not in name and (include_pooler or "pooler" not in name))
    if projection_dim:
        n += config.hidden_size * projection_dim + projection_dim
    return n


BERT_LIKE = ("bert", "ernie")


def _bert_like_count(config, include_pooler: bool) -> int:
    """Closed form for BERT-shaped encoders, equal to counting the built model (the
    tests check it against `_named_parameter_sizes`): per layer, Q/K/V/output
    projections 4(H^2 + H), feed-forward 2HI + I + H, two LayerNorms 4H."""
    h, i = config.hidden_size, config.intermediate_size
    per_layer = 4 * (h * h + h) + (2 * h * i + i + h) + 4 * h
    pooler = h * h + h if include_pooler else 0
    return config.num_hidden_layers * per_layer + pooler
