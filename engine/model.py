"""The bi-encoder of Eq. 2 and the contrastive loss of Eq. 3.

One transformer is shared by queries and passages; its last layer is mean-pooled over
the attention mask (or the [CLS] vector is taken) and projected to 768 dimensions,
v = Transformer(x) W + b. The score of a query and a passage is the inner product of
their vectors (Eq. 1, 4).
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import InputError
from engine.ladder import PROJECTION_DIM


POOLING = ("mean", "cls")
CONFIG_FILE = "bi_encoder.json"
PROJECTION_FILE = "projection.safetensors"


@dataclass
class BiEncoderOutput:
    q_reps: torch.Tensor  # (n_queries, dim)
    p_reps: torch.Tensor  # (n_passages, dim)


class BiEncoder(nn.Module):
    """A shared encoder, pooling, and a projection to `projection_dim` (None: no
    projection, for an off-the-shelf encoder evaluated as it is)."""

    def __init__(self, encoder: nn.Module, pooling: str = "mean", projection_dim: int | None = PROJECTION_DIM):
        super().__init__()
        if pooling not in POOLING:
            raise InputError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLING)}")
        self.encoder = encoder
        self.pooling = pooling
        self.projection_dim = projection_dim
        hidden = encoder.config.hidden_size
        self.projection = nn.Linear(hidden, projection_dim) if projection_dim else nn.Identity()
        if projection_dim:
            # the transformer's own initialisation: scores start near zero, so an
            # untrained model's contrastive entropy starts near log(1 + k)
            nn.init.normal_(self.projection.weight, std=encoder.config.initializer_range)
            nn.init.zeros_(self.projection.bias)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, len, h)
        if self.pooling == "cls":
            pooled = hidden[:, 0]  # (b, h)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (b, len, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (b, h)
        return self.projection(pooled)  # (b, dim)

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        passage_input_ids: torch.Tensor,
        passage_attention_mask: torch.Tensor,
    ) -> BiEncoderOutput:
        """Both sides in one call, so DistributedDataParallel sees one forward."""
        return BiEncoderOutput(
            q_reps=self.encode(query_input_ids, query_attention_mask),  # (n_queries, dim)
            p_reps=self.encode(passage_input_ids, passage_attention_mask),  # (n_passages, dim)
        )

    def save(self, folder: Path, tokenizer) -> None:
        """Encoder and tokenizer in `folder/encoder` (loadable by `AutoModel`), the
        projection and pooling beside them."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(str(folder / "encoder"))
        tokenizer.save_pretrained(str(folder / "encoder"))
        if self.projection_dim:
            save_file({k: v.contiguous() for k, v in self.projection.state_dict().items()}, str(folder / PROJECTION_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps({"pooling": self.pooling, "projection_dim": self.projection_dim}))

    @classmethod
    def load(cls, checkpoint: str | Path, pooling: str = "mean"):
        """(bi-encoder, tokenizer) from a folder written by `save`, or from a plain
        pretrained encoder (folder or hub name), used without projection."""
        folder = Path(checkpoint).expanduser()
        if (folder / CONFIG_FILE).is_file():
            settings = json.loads((folder / CONFIG_FILE).read_text())
            encoder, tokenizer = pretrained_encoder(str(folder / "encoder"))
            model = cls(encoder, settings["pooling"], settings["projection_dim"])
            if settings["projection_dim"]:
                from safetensors.torch import load_file

                model.projection.load_state_dict(load_file(str(folder / PROJECTION_FILE)))
            return model, tokenizer
        encoder, tokenizer = pretrained_encoder(str(checkpoint))
        return cls(encoder, pooling, projection_dim=None), tokenizer


def pretrained_encoder(name_or_path: str):
    """(encoder, tokenizer) via `from_pretrained`; nothing is downloaded when the hub
    is unreachable, so a missing model is a clear error."""
    from transformers import AutoModel, AutoTokenizer

    try:
        model_class = AutoModel._model_mapping[_config(name_or_path).__class__]
        kwargs = {"add_pooling_layer": False} if _accepts(model_class, "add_pooling_layer") else {}
        encoder = AutoModel.from_pretrained(name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as err:
        raise InputError(
            f"model '{name_or_path}' not found locally and the hub is unreachable ({err.__class__.__name__}); "
            "download it (huggingface-cli download) or pass a local folder"
        ) from None
    return encoder, tokenizer


def scratch_encoder(config, seed: int, embedding_std: float | None = None):
    """A randomly initialised encoder of `config`, seeded; no pooler (never used).

    `embedding_std` re-draws the word embeddings with that standard deviation (T5
    draws its embeddings with std 1). With BERT's 0.02 for every embedding, a token's
    identity is a third of what enters the embedding LayerNorm and an untrained
    bi-encoder barely matches words; with std 1 it matches them from the start, the
    head start that pretraining gives a pretrained model."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    model_class = AutoModel._model_mapping[config.__class__]
    kwargs = {"add_pooling_layer": False} if _accepts(model_class, "add_pooling_layer") else {}
    model = model_class(config, **kwargs)
    if embedding_std is not None:
        words = model.get_input_embeddings()
        with torch.no_grad():
            words.weight.normal_(0.0, embedding_std)
            if words.padding_idx is not None:
                words.weight[words.padding_idx] = 0.0
    return model


def _config(name_or_path: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name_or_path)


def _accepts(model_class, argument: str) -> bool:
    return argument in inspect.signature(model_class.__init__).parameters


def contrastive_loss(scores: torch.Tensor, labels: torch.Tensor, false_negatives: torch.Tensor) -> torch.Tensor:
    """Eq. 3: mean over queries of -log softmax(score of its positive) against every
    candidate passage. `scores` (queries, candidates) are inner products (Eq. 4);
    `labels` (queries,) the column of each query's positive; `false_negatives`
    (queries, candidates) marks columns that are not negatives for that query (its
    other positives, e.g. the same paragraph given twice in one batch): they are left
    out of the softmax instead of being pushed down."""
    scores = scores.float().masked_fill(false_negatives, float("-inf"))  # (queries, candidates)
    return F.cross_entropy(scores, labels)


def false_negative_mask(
    candidate_identity: torch.Tensor, query_positives: torch.Tensor, labels: torch.Tensor,
    positive_columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """(queries, candidates) True where the candidate is one of the query's own
    positives (other than its label column) or, when `positive_columns` is given
    (in-batch negatives off), another query's positive.

    candidate_identity (candidates,): passage row each candidate stands for.
    query_positives (queries, max_positives): positive passage rows per query, -1 pad.
    """
    mask = (candidate_identity[None, :, None] == query_positives[:, None, :]).any(-1)  # (queries, candidates)
    if positive_columns is not None:
        mask[:, positive_columns] = True
    mask[torch.arange(len(labels), device=labels.device), labels] = False
    return mask
