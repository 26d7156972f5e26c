"""What the generators need from a human-annotated data set (read by engine.data)."""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from engine.data import RetrievalData, load_retrieval_data


def load_source(path: str | Path) -> RetrievalData:
    return load_retrieval_data(path)


def positive_demand(data: RetrievalData, split: str) -> dict[str, int]:
    """Passage id -> number of human-annotated positive pairs in `split`, in order of
    first appearance: the paper generates one query per such pair (Section 4.3)."""
    return dict(Counter(data.passage_ids[p] for _, p in data.pairs(split)))


def passage_text(data: RetrievalData, passage_id: str) -> str:
    return data.passages[data.passage_row[passage_id]]


def stable_seed(seed: int, key: str) -> int:
    """A 63-bit seed from (seed, key) that does not depend on Python's hash salt or
    on the order passages are visited in, so resumed runs draw the same numbers."""
    digest = hashlib.sha1(f"{seed}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1
