"""The generated training set: a BEIR folder plus `generation.json`.

    out/corpus.jsonl      the passages the qrels point to: `_id` is the source corpus
                          id, or for a passage the generator changed (ICT without the
                          sentence) `<source id>#ict<k>` with `source_id` naming it
    out/queries.jsonl     generated queries (`_id`, `text`)
    out/qrels/train.tsv   `query-id  corpus-id  score` (score 1)
    out/generation.json   annotation type, generator, model, settings, counts, source

Files are written next to their final name and renamed, so a folder never holds a
half-written file, and generation.json comes last.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.annotate.parsing import Tally
from engine.errors import InputError
from engine.paths import make_output_folder, write_output

MANIFEST = "generation.json"


@dataclass
class TrainingSet:
    """Generated pairs; each query has exactly one positive passage."""

    queries: dict[str, str] = field(default_factory=dict)      # query id -> text
    qrels: list[tuple[str, str]] = field(default_factory=list)  # (query id, corpus id)
    corpus: dict[str, dict] = field(default_factory=dict)      # corpus id -> {"text", ["source_id"]}

    def add(self, query_id: str, query: str, corpus_id: str, passage: str, source_id: str | None = None):
        self.queries[query_id] = query
        self.qrels.append((query_id, corpus_id))
        self.corpus[corpus_id] = {"text": passage} if source_id is None else {"text": passage,
                                                                              "source_id": source_id}


def check_out_dir(out: Path, dataset: Path) -> Path:
    """`out` resolved; refuse the source folder itself and any non-empty folder that
    does not hold an earlier generation (which is replaced)."""
    out = Path(out).expanduser().resolve()
    if out == Path(dataset).expanduser().resolve():
        raise InputError(f"--out {out} is the source data set; choose a new folder")
    if out.is_file():
        raise InputError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"--out {out} is a non-empty folder without {MANIFEST}; "
                         "choose a new or empty folder")
    return out


def manifest(annotation: str, generator: str, model: str | None, config, source, tally: Tally,
             started: float, **extra) -> dict:
    """The description saved as generation.json; `source` is the RetrievalData read."""
    return {"annotation": annotation, "generator": generator, "model": model,
            "settings": asdict(config), **extra,
            "source": {"path": str(source.path), "name": source.name, "format": source.format,
                       "language": source.language()},
            "counts": tally.as_dict(), "seconds": round(time.time() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_training_set(out: Path, data: TrainingSet, description: dict) -> dict:
    """Write the folder; return `description` completed with the set's sizes."""
    make_output_folder(out / "qrels")
    _write_lines(out / "corpus.jsonl", (json.dumps({"_id": pid, "title": "", **row}, ensure_ascii=False)
                                        for pid, row in data.corpus.items()))
    _write_lines(out / "queries.jsonl", (json.dumps({"_id": qid, "text": text}, ensure_ascii=False)
                                         for qid, text in data.queries.items()))
    _write_lines(out / "qrels" / "train.tsv",
                 ["query-id\tcorpus-id\tscore", *(f"{qid}\t{pid}\t1" for qid, pid in data.qrels)])
    description = {**description, "n_passages": len(data.corpus), "n_queries": len(data.queries),
                   "n_pairs": len(data.qrels)}
    description["counts"]["pairs"] = len(data.qrels)
    _write_lines(out / MANIFEST, [json.dumps(description, indent=1, ensure_ascii=False)])
    return description


def _write_lines(path: Path, lines) -> None:
    write_output(path, (line + "\n" for line in lines))
