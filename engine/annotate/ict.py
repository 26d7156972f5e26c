"""Inverse Cloze Task (Lee et al. 2019), the paper's weakest annotation (Section 4.3).

For every human-annotated positive pair of the train split one sentence of the
positive passage becomes the query; the positive is the passage without that
sentence (with probability `keep_sentence_prob` it keeps it; Lee et al. keep it 10%
of the time). A passage with k human pairs gives k different sentences, chosen by a
generator seeded with (seed, passage id), so the output does not depend on order.
ICT needs no model, so it has no output cache: a rerun takes seconds.
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

from engine.annotate.output import TrainingSet, check_out_dir, manifest, write_training_set
from engine.annotate.parsing import Tally, clean_queries
from engine.annotate.source import load_source, passage_text, positive_demand, stable_seed
from engine.errors import InputError

# A sentence ends at . ! ? (followed by space) or at a CJK full stop, ! or ?.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+|[。！？][”」』）]*\s*")


@dataclass(frozen=True)
class ICTConfig:
    dataset: str                     # source data set folder (human annotations)
    out: str                         # folder of the generated training set
    split: str = "train"             # whose positive pairs get a query each
    keep_sentence_prob: float = 0.0  # chance the positive keeps the query sentence
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.keep_sentence_prob <= 1.0:
            raise InputError(f"keep_sentence_prob must be in [0, 1]; got {self.keep_sentence_prob}")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, trailing space excluded."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, a + len(text[a:b].rstrip())) for a, b in spans if text[a:b].strip()]


def without_span(text: str, span: tuple[int, int]) -> str:
    return (text[:span[0]].rstrip() + " " + text[span[1]:].lstrip()).strip()


def ict_pairs(passage_id: str, text: str, k: int, config: ICTConfig, tally: Tally, out: TrainingSet) -> None:
    """Add up to k (sentence, passage) pairs of one passage to `out`."""
    tally.outputs += 1
    spans = sentence_spans(text)
    kept = clean_queries([text[a:b] for a, b in spans], tally)
    if config.keep_sentence_prob < 1.0 and len(spans) < 2:
        tally.skipped["single_sentence"] += k
        return
    rng = random.Random(stable_seed(config.seed, passage_id))
    chosen = rng.sample(kept, min(k, len(kept)))
    tally.skipped["shortfall"] += k - len(chosen)
    for index, sentence in chosen:
        query_id = f"ict-{passage_id}-{index}"
        if rng.random() < config.keep_sentence_prob:
            out.add(query_id, sentence, passage_id, text)
        else:
            out.add(query_id, sentence, f"{passage_id}#ict{index}", without_span(text, spans[index]),
                    source_id=passage_id)


def generate_ict(config: ICTConfig) -> dict:
    """Write the ICT training set of `config.dataset` to `config.out`; return its manifest."""
    started = time.time()
    out = check_out_dir(config.out, config.dataset)
    data = load_source(config.dataset)
    tally, pairs = Tally(), TrainingSet()
    for passage_id, k in positive_demand(data, config.split).items():
        ict_pairs(passage_id, passage_text(data, passage_id), k, config, tally, pairs)
    return write_training_set(out, pairs, manifest("ict", "ict", None, config, data, tally, started))
