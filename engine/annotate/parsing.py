"""Turning generator outputs into queries, counting everything that is dropped.

Nothing here raises on bad model output: every problem is a count in a `Tally`
that ends up in generation.json and on the console.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

QUERY_KEYS = tuple(f"query{i}" for i in range(1, 6))

# What each skip reason counts; the unit is part of the meaning.
SKIP_REASONS = {
    "not_json": "answers with no JSON object holding query1..query5 (all their queries lost)",
    "missing_query": "query keys absent, or not a string, in an answer",
    "empty": "queries empty after trimming",
    "duplicate": "queries repeating an earlier one for the same passage",
    "single_sentence": "human pairs whose passage has one sentence (ICT: nothing left once it is removed)",
    "shortfall": "human pairs left without a query (fewer distinct queries than pairs for that passage)",
}
NOTES = {
    "code_fence": "answers whose JSON sat inside a ``` code fence (parsed)",
    "fewer_than_five": "answers with fewer than five usable query keys (the others used)",
}

# An opening fence with an optional language tag, up to a closing fence or the end.
_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)(?:```|$)", re.S)
_SPACES = re.compile(r"\s+")


@dataclass
class Tally:
    """What a generation produced and what it dropped, by reason (see SKIP_REASONS)."""

    outputs: int = 0                                     # generator answers read
    queries: int = 0                                     # candidate queries found in them
    skipped: Counter = field(default_factory=Counter)    # reason -> count
    notes: Counter = field(default_factory=Counter)      # recovered oddities -> count

    def as_dict(self) -> dict:
        return {"outputs": self.outputs, "queries": self.queries,
                "skipped": dict(+self.skipped), "notes": dict(+self.notes),   # unary +: zero counts dropped
                "legend": {k: v for k, v in {**SKIP_REASONS, **NOTES}.items()
                           if self.skipped[k] or self.notes[k]}}

    def describe(self) -> str:
        parts = [f"{self.outputs} outputs, {self.queries} candidate queries"]
        parts += [f"skipped {n} {reason}" for reason, n in sorted((+self.skipped).items())]
        parts += [f"{n} {note}" for note, n in sorted((+self.notes).items())]
        return "; ".join(parts)


def normalise(query: str) -> str:
    """Whitespace collapsed, ends trimmed: the query as it is written out."""
    return _SPACES.sub(" ", query).strip()


def clean_queries(candidates: list[str], tally: Tally) -> list[tuple[int, str]]:
    """(position, query) of the non-empty candidates that are not case-insensitive
    repeats of an earlier one; drops are counted as `empty` and `duplicate`."""
    kept, seen = [], set()
    for position, raw in enumerate(candidates):
        tally.queries += 1
        query = normalise(raw)
        if not query:
            tally.skipped["empty"] += 1
        elif query.casefold() in seen:
            tally.skipped["duplicate"] += 1
        else:
            seen.add(query.casefold())
            kept.append((position, query))
    return kept


def parse_llm_answer(answer: str, tally: Tally) -> list[tuple[int, str]]:
    """(key index 0..4, query) of the usable queries in one answer to the paper's
    prompt: a JSON object with keys query1..query5, possibly inside a code fence or
    after some prose. Anything else is counted and yields no queries."""
    tally.outputs += 1
    fenced = _FENCE.search(answer)
    if fenced:
        tally.notes["code_fence"] += 1
    obj = _first_json_object(fenced.group(1) if fenced else answer)
    if obj is None or not any(key in obj for key in QUERY_KEYS):
        tally.skipped["not_json"] += 1
        return []
    values = [obj.get(key) for key in QUERY_KEYS]
    strings = [v if isinstance(v, str) else None for v in values]
    missing = sum(v is None for v in strings)
    if missing:
        tally.skipped["missing_query"] += missing
        tally.notes["fewer_than_five"] += 1
    kept = clean_queries([v for v in strings if v is not None], tally)
    present = [i for i, v in enumerate(strings) if v is not None]
    return [(present[position], query) for position, query in kept]


def _first_json_object(text: str, max_starts: int = 50) -> dict | None:
    """The first `{...}` in `text` that decodes to a JSON object, else None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    for _ in range(max_starts):
        if start < 0:
            return None
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None
