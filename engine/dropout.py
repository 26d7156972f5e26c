"""Dropout with cheap masks, for CPU training.

On a CPU, torch's dropout draws one float per element (`bernoulli_`); a profile of an
L2/H128 training step put a fifth of its time there, most of it on the attention
probabilities, which also keep attention off the fused SDPA kernel. Here a mask
element costs 16 random bits: int64 words from torch's generator, read as int16 and
compared with a threshold. Keep probability and scaling are those of `nn.Dropout`
up to the 16-bit grid (p = 0.1 becomes 6554 / 65536 = 0.100006), and draws follow
torch's seed, so a seeded run is reproducible. Evaluation (no dropout) takes the
fused SDPA kernel.

`use_fast_dropout(encoder)` swaps every `nn.Dropout` of a Hugging Face encoder and
its attention function; the method (dropout on hidden states and attention
probabilities, at the config's rates) is unchanged.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

ATTENTION_NAME = "fast_dropout"
_INT16_VALUES = 1 << 16


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool tensor of `shape`, each element False with probability p (to 1/65536)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)  # 64 random bits each
    draws = words.view(torch.int16)[:n].view(shape)  # uniform on [-32768, 32767]
    return draws >= round(p * _INT16_VALUES) - _INT16_VALUES // 2


def _kept_fraction(p: float) -> float:
    return 1.0 - round(p * _INT16_VALUES) / _INT16_VALUES


def apply_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    return x * (keep_mask(x.shape, p, x.device).to(x.dtype) / _kept_fraction(p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` with the cheap mask; keeps `.p`, which attention layers read."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_dropout(x, self.p, self.training)


def attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs):
    """The Hugging Face attention-function signature. query/key/value: (batch, heads,
    len, head_dim); attention_mask: bool (batch, 1, len, len), True = attend, or None.
    Without dropout (evaluation) this is the fused SDPA kernel."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=0.0, **kwargs)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = (query @ key.transpose(2, 3)) * scaling  # (batch, heads, len, len)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    weights = apply_dropout(scores.softmax(dim=-1), dropout, True)  # (batch, heads, len, len)
    return (weights @ value).transpose(1, 2).contiguous(), weights  # (batch, len, heads, head_dim)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


def use_fast_dropout(encoder: nn.Module) -> nn.Module:
    """Swap, in place, every nn.Dropout for FastDropout and the attention function for
    `attention` above. Returns the encoder."""
    _register()
    for parent in list(encoder.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
    encoder.config._attn_implementation = ATTENTION_NAME
    return encoder


def seed_dropout(seed: int, process_index: int) -> int:
    """Seed torch's generator, which draws every dropout mask (these and `nn.Dropout`'s),
    per process: each process of a multi-process run masks its own micro-batch with its
    own draws (the same seed everywhere would give every process the same masks, as
    nanoGPT's per-rank seed offset avoids). Called once the model is initialised, so the
    initialisation still depends on `seed` alone. Returns the seed used."""
    dropout_seed = int(np.random.SeedSequence([seed, 5, process_index]).generate_state(1)[0])
    torch.manual_seed(dropout_seed)
    return dropout_seed
