"""The bi-encoder of Eq. 2 and the contrastive loss of Eq. 3.

One transformer is shared by queries and passages; its last layer is mean-pooled over
the attention mask (or the [CLS] vector is taken) and projected to 768 dimensions,
v = Transformer(x) W + b. The score of a query and a passage is the inner product of
their vectors (Eq. 1, 4). Given a training batch, `BiEncoder.forward` also returns the
loss (`ContrastiveLoss`), so a training step reads `loss = model(**batch).loss`.
"""
from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import InputError
from engine.ladder import PROJECTION_DIM


POOLING = ("mean", "cls")
SIMILARITIES = ("dot", "cosine")  # Eq. 1's inner product, or a scaled cosine with a learned scale
COSINE_START_SCALE = 20.0  # 1 / temperature 0.05 (sentence-transformers' MultipleNegativesRankingLoss)
CONFIG_FILE = "bi_encoder.json"
PROJECTION_FILE = "projection.safetensors"
PADDING_IDENTITY = -2  # passage_identity of a row that fills a process's short block of negatives: no candidate


@dataclass
class BiEncoderOutput:
    q_reps: torch.Tensor  # (queries, dim): this process's queries
    p_reps: torch.Tensor  # (passages, dim): this process's passages
    scores: torch.Tensor  # (all queries, all passages), Eq. 4; with a loss, every process's rows and columns
    loss: torch.Tensor | None = None  # scalar, Eq. 3; given a training batch (passage_identity, query_positives)


def _world() -> tuple[int, int]:
    """(rank, processes) of the torch.distributed group, (0, 1) outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """(processes * n, ...): every process's rows in rank order; this process's keep
    their gradient (all_gather carries none). Every process must pass the same shape."""
    rank, world = _world()
    if world == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world)]
    torch.distributed.all_gather(parts, local.detach().contiguous())
    parts[rank] = local
    return torch.cat(parts)


def _gather_padded(rows: torch.Tensor, pad: int) -> torch.Tensor:
    """(processes * n, widest): rows whose width differs between processes, padded."""
    if _world()[1] == 1:
        return rows
    widest = int(gather_with_grad(torch.tensor([rows.shape[1]], device=rows.device)).max())
    return gather_with_grad(F.pad(rows, (0, widest - rows.shape[1]), value=pad))


class ContrastiveLoss(nn.Module):
    """Eq. 3: for each query, -log softmax of its positive's score against the
    batch's other candidates, averaged over the queries of every process.

    Inputs (per process, each process the same shapes):
      q_reps (queries, dim): query vectors.
      p_reps (queries + k', dim): row i is query i's positive, then k' = ceil(k / processes)
        rows of this process's share of the k random negatives (`TrainingBatches` lays a
        batch out so; a short share is padded).
      passage_identity (queries + k',): the corpus row each passage row stands for;
        PADDING_IDENTITY for a padding row, which is no query's candidate.
      query_positives (queries, max_positives): every corpus row relevant to each
        query, -1 padding.
    Returns (scores (all queries, all passages), loss): every process's queries
    against every process's passages.

    The negatives of a query: the k random passages shared by the whole batch (the
    paper's 256), and with `in_batch_negatives` the other queries' positives (free:
    they are encoded anyway). Vectors are gathered across processes, with gradient
    through this process's own, so every query sees all k negatives and all in-batch
    positives, as one process holding the global batch would. Each process then holds
    the same global loss, with gradient through its own vectors only: multiplied by
    the number of processes before `backward`, the average that
    DistributedDataParallel takes is the exact gradient of the global loss.

    False negatives are masked by passage identity, not pushed down: a candidate that
    is one of the query's own positives (the same paragraph given to two queries, as
    squad-dev's five questions per paragraph are, or drawn again as a random negative)
    leaves the softmax. Scores are computed in float32 outside autocast: the softmax
    over a few hundred candidates is where low precision would show.
    """

    def __init__(self, in_batch_negatives: bool = True):
        super().__init__()
        self.in_batch_negatives = in_batch_negatives

    def forward(self, q_reps: torch.Tensor, p_reps: torch.Tensor, passage_identity: torch.Tensor,
                query_positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=q_reps.device.type, enabled=False):
            n_queries, per_process = q_reps.shape[0], p_reps.shape[0]
            all_q = gather_with_grad(q_reps.float())  # (processes * queries, dim)
            all_p = gather_with_grad(p_reps.float())  # (processes * per_process, dim)
            identity = gather_with_grad(passage_identity)  # (processes * per_process,)
            positives = _gather_padded(query_positives, pad=-1)  # (processes * queries, widest)
            starts = torch.arange(_world()[1], device=q_reps.device) * per_process  # positives lead each block
            labels = (starts[:, None] + torch.arange(n_queries, device=q_reps.device)).flatten()  # (all queries,)
            mask = false_negative_mask(identity, positives, labels,
                                       None if self.in_batch_negatives else labels)  # (all queries, all passages)
            scores = all_q @ all_p.T  # (all queries, all passages), Eq. 4
            return scores, self.softmax_loss(scores, labels, mask)

    @staticmethod
    def softmax_loss(scores: torch.Tensor, labels: torch.Tensor, false_negatives: torch.Tensor) -> torch.Tensor:
        """Mean over queries of -log softmax(score of its positive). `scores` (queries,
        candidates); `labels` (queries,) the column of each query's positive;
        `false_negatives` (queries, candidates) True where a column is left out of
        that query's softmax."""
        scores = scores.float().masked_fill(false_negatives, float("-inf"))  # (queries, candidates)
        return F.cross_entropy(scores, labels)


class BiEncoder(nn.Module):
    """A shared encoder, pooling, and a projection to `projection_dim` (None: no
    projection, for an off-the-shelf encoder evaluated as it is); `loss` is the
    training objective `forward` applies to a training batch."""

    def __init__(self, encoder: nn.Module, pooling: str = "mean", projection_dim: int | None = PROJECTION_DIM,
                 loss: ContrastiveLoss | None = None, similarity: str = "dot"):
        super().__init__()
        if pooling not in POOLING:
            raise InputError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLING)}")
        if similarity not in SIMILARITIES:
            raise InputError(f"unknown similarity '{similarity}'; choose one of {', '.join(SIMILARITIES)}")
        self.encoder = encoder
        self.loss = loss or ContrastiveLoss()
        self.pooling = pooling
        self.projection_dim = projection_dim
        self.similarity = similarity
        if similarity == "cosine":  # scores = exp(log_scale) x cosine: a learned temperature
            self.log_scale = nn.Parameter(torch.tensor(math.log(COSINE_START_SCALE)))
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
        vectors = self.projection(pooled)  # (b, dim)
        if self.similarity == "cosine":  # unit vectors times sqrt(scale): inner products are scale x cosine
            vectors = F.normalize(vectors.float(), dim=-1) * torch.exp(self.log_scale / 2)
        return vectors

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        passage_input_ids: torch.Tensor,
        passage_attention_mask: torch.Tensor,
        passage_identity: torch.Tensor | None = None,
        query_positives: torch.Tensor | None = None,
    ) -> BiEncoderOutput:
        """Both sides in one call, so DistributedDataParallel sees one forward. With
        `passage_identity` and `query_positives` (a training batch, laid out as
        `ContrastiveLoss` says) the output carries the loss of Eq. 3."""
        q_reps = self.encode(query_input_ids, query_attention_mask)  # (queries, dim)
        p_reps = self.encode(passage_input_ids, passage_attention_mask)  # (passages, dim)
        if passage_identity is None:
            return BiEncoderOutput(q_reps, p_reps, scores=q_reps @ p_reps.T)  # (queries, passages)
        scores, loss = self.loss(q_reps, p_reps, passage_identity, query_positives)
        return BiEncoderOutput(q_reps, p_reps, scores, loss)

    def save(self, folder: Path, tokenizer) -> None:
        """Encoder and tokenizer in `folder/encoder` (loadable by `AutoModel`), the
        projection and pooling beside them."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(str(folder / "encoder"))
        tokenizer.save_pretrained(str(folder / "encoder"))
        tensors = {k: v.contiguous() for k, v in self.projection.state_dict().items()}
        if self.similarity == "cosine":
            tensors["log_scale"] = self.log_scale.detach().reshape(1).contiguous()
        if tensors:
            save_file(tensors, str(folder / PROJECTION_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps({"pooling": self.pooling, "projection_dim": self.projection_dim,
                                                      "similarity": self.similarity}))

    @classmethod
    def load(cls, checkpoint: str | Path, pooling: str = "mean"):
        """(bi-encoder, tokenizer) from a folder written by `save`, or from a plain
        pretrained encoder (folder or hub name), used without projection."""
        folder = Path(checkpoint).expanduser()
        if (folder / CONFIG_FILE).is_file():
            settings = json.loads((folder / CONFIG_FILE).read_text())
            encoder, tokenizer = pretrained_encoder(str(folder / "encoder"))
            model = cls(encoder, settings["pooling"], settings["projection_dim"],
                        similarity=settings.get("similarity", "dot"))
            if settings["projection_dim"] or model.similarity == "cosine":
                from safetensors.torch import load_file

                tensors = load_file(str(folder / PROJECTION_FILE))
                if model.similarity == "cosine":
                    model.log_scale.data = tensors.pop("log_scale").reshape(())
                if settings["projection_dim"]:
                    model.projection.load_state_dict(tensors)
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


def false_negative_mask(
    candidate_identity: torch.Tensor, query_positives: torch.Tensor, labels: torch.Tensor,
    positive_columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """(queries, candidates) True where the candidate is one of the query's own
    positives (other than its label column) or, when `positive_columns` is given
    (in-batch negatives off), another query's positive.

    candidate_identity (candidates,): passage row each candidate stands for;
      PADDING_IDENTITY: a padding row, masked for every query.
    query_positives (queries, max_positives): positive passage rows per query, -1 pad.
    """
    mask = (candidate_identity[None, :, None] == query_positives[:, None, :]).any(-1)  # (queries, candidates)
    mask |= (candidate_identity == PADDING_IDENTITY)[None, :]
    if positive_columns is not None:
        mask[:, positive_columns] = True
    mask[torch.arange(len(labels), device=labels.device), labels] = False
    return mask
