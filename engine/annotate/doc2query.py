"""docT5query-style generation (Nogueira & Lin 2019; the paper's Section 4.3).

A sequence-to-sequence query generator (a local folder or a hub name, e.g. a
doc2query T5) samples `queries_per_passage` queries for each passage of a seeded
sample of the corpus (the paper: 500,000 MS MARCO passages). Sampling is top-k /
top-p; each batch seeds torch from (seed, its first passage id). Every distinct,
non-empty sample is one training pair with that passage.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from engine.annotate.cache import OutputCache, cache_file, cached_outputs
from engine.annotate.local_model import LocalGenerator
from engine.annotate.output import TrainingSet, check_out_dir, manifest, write_training_set
from engine.annotate.parsing import Tally, clean_queries
from engine.annotate.source import load_source, stable_seed
from engine.data import nested_subset
from engine.errors import InputError


@dataclass(frozen=True)
class Doc2QueryConfig:
    dataset: str                      # source data set folder (its corpus is sampled)
    out: str                          # folder of the generated training set
    model: str                        # seq2seq generator: local folder or hub name
    n_passages: int = 500_000         # passages sampled from the corpus (paper: 500,000)
    queries_per_passage: int = 5      # samples drawn per passage
    top_k: int = 10                   # docT5query samples from the top 10 tokens
    top_p: float = 1.0
    max_input_tokens: int = 512       # passages are truncated to this many tokens
    max_new_tokens: int = 64
    batch_size: int = 16              # passages per generate() call
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    seed: int = 0

    def __post_init__(self):
        for name in ("n_passages", "queries_per_passage", "top_k", "max_input_tokens",
                     "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1; got {getattr(self, name)}")
        if not 0.0 < self.top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1]; got {self.top_p}")

    def cache_settings(self) -> dict:
        """The settings that change what the model outputs (the cache key)."""
        return {"queries_per_passage": self.queries_per_passage, "top_k": self.top_k,
                "top_p": self.top_p, "max_input_tokens": self.max_input_tokens,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed}


class Seq2SeqSampler(LocalGenerator):
    """Samples `queries_per_passage` queries per passage: yields (passage id, samples)."""

    model_class = "AutoModelForSeq2SeqLM"
    what = "seq2seq generator"

    def generate(self, batch: list[tuple[str, str]]):
        import torch

        c = self.config
        encoded = self.tokenizer([text for _, text in batch], return_tensors="pt", padding=True,
                                 truncation=True, max_length=c.max_input_tokens).to(self.device)
        torch.manual_seed(stable_seed(c.seed, batch[0][0]))
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                do_sample=True, top_k=c.top_k, top_p=c.top_p, max_new_tokens=c.max_new_tokens,
                num_return_sequences=c.queries_per_passage)      # (batch * samples, T)
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        n = c.queries_per_passage
        for i, (pid, _) in enumerate(batch):
            yield pid, texts[i * n:(i + 1) * n]


def generate_doc2query(config: Doc2QueryConfig) -> dict:
    """Write the docT5query-style training set; return its manifest."""
    started = time.time()
    out = check_out_dir(config.out, config.dataset)
    data = load_source(config.dataset)
    rows = nested_subset(len(data.passages), min(config.n_passages, len(data.passages)), config.seed)
    passages = [(data.passage_ids[r], data.passages[r]) for r in rows]
    cache = OutputCache(cache_file("doc2query", config.model, config.cache_settings()))
    outputs = cached_outputs(passages, Seq2SeqSampler(config), cache, config.batch_size,
                             desc="doc2query")
    tally, pairs = Tally(), TrainingSet()
    for pid, text in passages:
        tally.outputs += len(outputs[pid])
        for index, query in clean_queries(outputs[pid], tally):
            pairs.add(f"d2q-{pid}-{index}", query, pid, text)
    return write_training_set(out, pairs, manifest("doc2query", "doc2query", config.model, config, data,
                                                   tally, started, cache=str(cache.path)))
