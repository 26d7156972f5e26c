"""Raw generator outputs cached per (generator, model, passage), so an interrupted
generation resumes where it stopped and a rerun with new parsing costs nothing.

One JSONL file per generator, model and generation settings under
`cache_dir()/annotate/`; one line per passage, appended and flushed as soon as the
passage is done. A line is keyed by passage id and a hash of the passage text, so an
edited passage is generated again. A torn last line (a killed process) is ignored.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from engine.paths import cache_dir
from engine.command_progress import CommandProgress

# A generator takes a batch of (passage id, passage text) and yields
# (passage id, raw outputs) for each passage it finished, in any order; it may
# raise after yielding some, and those are kept.
Generate = Callable[[list[tuple[str, str]]], Iterator[tuple[str, list[str]]]]


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def cache_file(generator: str, model: str, settings: dict) -> Path:
    """The cache of one generator, model and set of generation settings. A local model
    folder also contributes its files' names, sizes and times, so a model saved
    again under the same path does not reuse the old model's outputs."""
    folder = Path(model).expanduser()
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir()
                   if f.is_file()) if folder.is_dir() else []
    fingerprint = text_hash(json.dumps({"model": model, "files": files, **settings}, sort_keys=True))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.rstrip("/").split("/")[-1])[:60]
    return cache_dir() / "annotate" / f"{generator}-{slug}-{fingerprint}.jsonl"


class OutputCache:
    """Passage id -> raw outputs, backed by an append-only JSONL file."""

    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, tuple[str, list[str]]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._entries[row["passage_id"]] = (row["text_hash"], list(row["outputs"]))
                except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
                    continue  # torn line of an interrupted run: that passage is redone

    def get(self, passage_id: str, text: str) -> list[str] | None:
        entry = self._entries.get(passage_id)
        return entry[1] if entry and entry[0] == text_hash(text) else None

    def put(self, handle, passage_id: str, text: str, outputs: list[str]) -> None:
        self._entries[passage_id] = (text_hash(text), outputs)
        row = {"passage_id": passage_id, "text_hash": text_hash(text), "outputs": outputs}
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()


def cached_outputs(passages: Iterable[tuple[str, str]], generate: Generate, cache: OutputCache,
                   batch_size: int, desc: str) -> dict[str, list[str]]:
    """Raw outputs of every (passage id, text), generating only the uncached ones,
    `batch_size` at a time, each written to the cache the moment it arrives."""
    passages = list(passages)
    todo = [(pid, text) for pid, text in passages if cache.get(pid, text) is None]
    texts = dict(todo)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    with cache.path.open("a", encoding="utf-8") as handle, \
            CommandProgress("annotate", len(passages), "passage", initial=len(passages) - len(todo),
                            desc=desc) as progress:
        if handle.tell() and not _ends_with_newline(cache.path):
            handle.write("\n")  # close a torn line so the next record starts clean
        for start in range(0, len(todo), batch_size):
            for pid, outputs in generate(todo[start:start + batch_size]):
                cache.put(handle, pid, texts[pid], outputs)
                progress.advance()
    return {pid: cache.get(pid, text) for pid, text in passages}


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as raw:
        raw.seek(-1, 2)
        return raw.read(1) == b"\n"
