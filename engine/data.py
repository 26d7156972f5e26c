"""Retrieval data sets: readers for the formats users have, and the pairs the paper
trains and tests on (Section 3.1: each query-positive-passage pair is one data point).

Formats (`detect_format` picks one from the files in the folder):
- `beir`: `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`),
  `qrels/<split>.tsv` with header `query-id  corpus-id  score`.
- `msmarco`: `collection.tsv` (pid, text), `queries*.tsv` (qid, text), qrels files
  `qrels*.tsv|txt` in TREC form `qid 0 pid grade` (tab or space separated, `Q0` too)
  or two columns `qid pid` (grade 1). A qrels file whose name says `train`, `dev` or
  `test` is that split; any other is named after its file (`qrels.dl19-passage.txt`:
  split `dl19-passage`), never taken for the test split by guess.
- `t2ranking`: the MS MARCO layout with header lines (`pid  para`, `qid  text`);
  `qrels.retrieval.<split>.tsv` (qid, pid) are preferred over the graded
  `qrels.<split>.tsv` (qid, -, pid, rel), whose relevant grades are 2 and 3.

The test split (`RetrievalData.test_split`) is the split named by `--test-split`,
else the one split that is not `train`; a folder with several (BEIR MS MARCO's `dev`
and `test`, an MS MARCO folder that also holds TREC DL qrels) must name one.
`split_identity` says which file that is and hashes its content.

Malformed input raises `InputError` naming file, line and problem. Rows that are
skipped (blank lines, duplicate judgments, unknown ids when `strict=False`) are
counted and logged, never dropped silently.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.paths import resolved

log = logging.getLogger(__name__)

FORMATS = ("beir", "msmarco", "t2ranking")
HEADER_WORDS = {"pid", "qid", "id", "_id", "docid", "doc_id", "query-id", "query_id", "corpus-id"}


@dataclass
class RetrievalData:
    """A corpus, its queries and graded judgments per split, rows in file order."""

    name: str
    path: Path
    format: str
    passage_ids: list[str]
    passages: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> passage id -> grade
    relevance_threshold: int = 1  # grades >= this are positives
    requested_test_split: str | None = None  # --test-split; None: the one split that is not train
    passage_row: dict[str, int] = field(init=False, repr=False)
    query_row: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.passage_row = {pid: i for i, pid in enumerate(self.passage_ids)}
        self.query_row = {qid: i for i, qid in enumerate(self.query_ids)}

    @property
    def test_split(self) -> str:
        """The split evaluated: the requested one, else the only split that is not
        `train`; several candidates are an InputError naming them and the flag."""
        if self.requested_test_split is not None:
            return self.requested_test_split
        candidates = candidate_test_splits(self.qrels)
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise InputError(f"{self.path}: no test split (qrels splits found: {sorted(self.qrels) or 'none'}); "
                             "add qrels for the split to evaluate on")
        raise InputError(f"{self.path}: {len(candidates)} qrels splits could be the test split "
                         f"({', '.join(candidates)}); choose one with --test-split NAME "
                         "(in a sweep file: test_split under [train.eval])")

    def pairs(self, split: str) -> np.ndarray:
        """(query row, passage row) of every positive judgment in `split`, file order."""
        if split not in self.qrels:
            raise InputError(f"{self.path}: no '{split}' qrels (splits found: {sorted(self.qrels)})")
        rows = [
            (self.query_row[qid], self.passage_row[pid])
            for qid, judged in self.qrels[split].items()
            for pid, grade in judged.items()
            if grade >= self.relevance_threshold
        ]
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def language(self) -> str:
        """`zh` when the corpus is mostly CJK characters, else `en`."""
        sample = "".join(self.passages[:200])
        cjk = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
        return "zh" if sample and cjk / len(sample) > 0.2 else "en"


def candidate_test_splits(qrels: dict) -> list[str]:
    """The splits that may be evaluated on: every one but `train`, sorted."""
    return sorted(split for split in qrels if split != "train")


def _check_test_split(data: RetrievalData, name: str) -> None:
    if name not in candidate_test_splits(data.qrels):
        raise InputError(f"--test-split {name}: {data.path} has no such test split; its candidates are "
                         f"{', '.join(candidate_test_splits(data.qrels)) or 'none'}"
                         + (" (train is the training split)" if name == "train" else ""))


def split_identity(dataset_dir: str | Path, split: str) -> dict[str, str]:
    """Which qrels a data set's `split` is: its name, its file (relative to the data
    set folder) and the SHA-256 of that file's bytes, so two folders' `test` splits,
    or one file edited between runs, are told apart."""
    path = resolved(dataset_dir, "data set")
    files = qrels_files(path)
    if split not in files:
        raise InputError(f"{path}: no '{split}' qrels (splits found: {sorted(files)})")
    digest = hashlib.sha256()
    with files[split].open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": split, "file": files[split].relative_to(path).as_posix(), "sha256": digest.hexdigest()}


def qrels_files(path: Path, format: str = "auto") -> dict[str, Path]:
    """split -> the qrels file read for it, in a data set folder of any of `FORMATS`."""
    format = detect_format(path) if format == "auto" else format
    if format == "beir":
        files = sorted((path / "qrels").glob("*.tsv"))
        if not files:
            raise InputError(f"{path / 'qrels'}: no <split>.tsv qrels files")
        return {qrel_file.stem: qrel_file for qrel_file in files}
    return _qrel_files_by_split(path)


def nested_subset(n_total: int, size: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded subset of `size` items; for one seed a smaller subset is
    always a prefix of a larger one, so the D = 500 pairs are inside the D = 1,000."""
    if size is None:
        size = n_total
    if not 0 < size <= n_total:
        raise InputError(f"asked for {size} training pairs but the data set has {n_total}")
    return np.random.default_rng(seed).permutation(n_total)[:size]


# ---------------------------------------------------------------- line readers


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of non-blank lines, decoded as UTF-8 line by line so a bad
    byte is reported with its line."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    blank = 0
    any_line = False
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(
                    f"{path}:{number}: not valid UTF-8 (byte {err.start}); re-encode the file as UTF-8"
                ) from None
            if number == 1:
                text = text.lstrip("\ufeff")
            text = text.rstrip("\r\n")
            if not text.strip():
                blank += 1
                continue
            any_line = True
            yield number, text
    if not any_line:
        raise InputError(f"{path}: file is empty")
    if blank:
        log.info("%s: skipped %d blank lines", path, blank)


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    for number, text in _lines(path):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: not a JSON object ({err.msg})") from None
        except RecursionError:
            raise InputError(f"{path}:{number}: not a JSON object (nested too deeply to read); "
                             "a row is one flat object of fields") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        for key in required:
            if key not in row or row[key] is None:
                raise InputError(f"{path}:{number}: missing field '{key}'")
        yield number, row


def _split_fields(text: str, tabs_only: bool) -> list[str]:
    return text.split("\t") if tabs_only or "\t" in text else text.split()


def _is_header(fields: list[str]) -> bool:
    return fields[0].strip().lower() in HEADER_WORDS


def _read_texts(path: Path, kind: str, jsonl: bool) -> tuple[list[str], list[str]]:
    """Ids and texts of a corpus or query file; duplicate ids are an error."""
    ids: list[str] = []
    texts: list[str] = []
    first_line: dict[str, int] = {}
    empty = 0
    for number, row_id, text in _text_rows(path, jsonl):
        if row_id in first_line:
            raise InputError(
                f"{path}:{number}: duplicate {kind} id '{row_id}' (first on line {first_line[row_id]})"
            )
        first_line[row_id] = number
        empty += not text.strip()
        ids.append(row_id)
        texts.append(text)
    if empty:
        log.warning("%s: %d %s(s) with empty text kept (they encode as [CLS] [SEP])", path, empty, kind)
    return ids, texts


def _scalar_text(path: Path, number: int, row: dict, key: str) -> str:
    """A JSON field that must be text: a string, or a number written as one. An
    object, list or boolean would otherwise be encoded as its Python repr."""
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{path}:{number}: field '{key}' must be a string, got a JSON "
                         f"{type(value).__name__} ({json.dumps(value)[:60]}); write the text itself")
    return str(value)


def _text_rows(path: Path, jsonl: bool) -> Iterator[tuple[int, str, str]]:
    if jsonl:
        for number, row in _jsonl(path, ("_id", "text")):
            title = _scalar_text(path, number, row, "title").strip()
            text = _scalar_text(path, number, row, "text")
            yield number, _scalar_text(path, number, row, "_id"), f"{title} {text}" if title else text
        return
    for number, text in _lines(path):
        fields = text.split("\t", 1)
        if number == 1 and _is_header(fields):
            continue
        if len(fields) < 2:
            raise InputError(f"{path}:{number}: expected 2 tab-separated columns (id, text), found 1")
        yield number, fields[0].strip(), fields[1]


# ---------------------------------------------------------------- qrels


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR (`query-id corpus-id score`), TREC (`qid 0 pid grade`) or pair (`qid pid`)
    qrels; the layout is read from the column count."""
    judged: dict[str, dict[str, int]] = {}
    duplicates = 0
    first = True
    for number, text in _lines(path):
        fields = _split_fields(text, tabs_only=False)
        is_first, first = first, False
        if is_first and _is_header(fields):
            continue
        if len(fields) not in (2, 3, 4):
            raise InputError(
                f"{path}:{number}: expected 2 (qid pid), 3 (qid pid grade) or 4 (qid 0 pid grade) "
                f"columns, found {len(fields)}"
            )
        qid, pid, grade_text = _qrel_fields(fields)
        try:
            grade = _grade(grade_text)
        except ValueError:
            if is_first:
                continue  # a header with other column names
            raise InputError(f"{path}:{number}: relevance grade '{grade_text}' is not a number") from None
        if grade is None:
            raise InputError(f"{path}:{number}: relevance grade '{grade_text}' is not a whole number; grades are "
                             "integers (0: not relevant, 1 or more: relevant): round or threshold them first")
        if pid in judged.get(qid, {}):
            duplicates += 1
            grade = max(grade, judged[qid][pid])
        judged.setdefault(qid, {})[pid] = grade
    if duplicates:
        log.warning("%s: %d duplicate judgments merged (highest grade kept)", path, duplicates)
    return judged


def _grade(text: str) -> int | None:
    """The integer grade in `text` ('2', '2.0'); None for a fraction, inf or nan,
    which int() would truncate or reject with a traceback. ValueError: no number."""
    value = float(text)
    return int(value) if math.isfinite(value) and value == int(value) else None


def _qrel_fields(fields: list[str]) -> tuple[str, str, str]:
    if len(fields) == 2:
        return fields[0], fields[1], "1"
    if len(fields) == 3:
        return fields[0], fields[1], fields[2]
    return fields[0], fields[2], fields[3]


def _check_qrels(
    path: Path, judged: dict[str, dict[str, int]], query_row: dict, passage_row: dict, strict: bool
) -> dict[str, dict[str, int]]:
    """Unknown query or passage ids: an error naming the line, or (not strict) dropped
    with a count. Grade-0 judgments of passages missing from the corpus change no
    metric (TREC DL qrels judge passages a small corpus leaves out): dropped, counted."""
    kept: dict[str, dict[str, int]] = {}
    dropped = missing_irrelevant = 0
    for qid, passages in judged.items():
        for pid, grade in passages.items():
            if qid in query_row and pid not in passage_row and grade <= 0:
                missing_irrelevant += 1
                continue
            problem = (
                f"query id '{qid}' is not in the queries file" if qid not in query_row
                else f"passage id '{pid}' is not in the corpus" if pid not in passage_row
                else None
            )
            if problem is None:
                kept.setdefault(qid, {})[pid] = grade
            elif strict:
                raise InputError(f"{path}:{_line_of(path, qid, pid)}: {problem} (pass strict=False / "
                                 "--lenient-qrels to drop such judgments with a count)")
            else:
                dropped += 1
    if missing_irrelevant:
        log.info("%s: dropped %d grade-0 judgments of passages not in the corpus", path, missing_irrelevant)
    if dropped:
        log.warning("%s: dropped %d judgments that point to unknown query or passage ids", path, dropped)
    return kept


def _line_of(path: Path, qid: str, pid: str) -> int:
    """Line of the first judgment of (qid, pid), for error messages only."""
    for number, text in _lines(path):
        fields = _split_fields(text, tabs_only=False)
        if len(fields) in (2, 3, 4):
            q, p, _ = _qrel_fields(fields)
            if (q, p) == (qid, pid):
                return number
    return 0


# ---------------------------------------------------------------- formats


def detect_format(path: Path) -> str:
    """`beir` with corpus.jsonl; `t2ranking` with collection.tsv whose first line is a
    header or with qrels.retrieval.* files; `msmarco` with a headerless collection.tsv."""
    if (path / "corpus.jsonl").is_file():
        return "beir"
    collection = path / "collection.tsv"
    if collection.is_file():
        first = next(_lines(collection))[1].split("\t", 1)
        if _is_header(first) or any(path.glob("qrels.retrieval.*")):
            return "t2ranking"
        return "msmarco"
    raise InputError(
        f"{path}: no corpus.jsonl (BEIR) or collection.tsv (MS MARCO / T2Ranking) found; "
        "point --dataset at a data set folder"
    )


def load_retrieval_data(
    path: str | Path, format: str = "auto", strict: bool = True, test_split: str | None = None
) -> RetrievalData:
    """Read a data set folder in any of `FORMATS`; `strict=False` drops judgments that
    point to unknown ids (counted in the log) instead of raising. `test_split` names
    the split to evaluate on (checked here); None leaves the choice to
    `RetrievalData.test_split`."""
    path = resolved(path, "data set")
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; --dataset takes a data set folder")
    format = detect_format(path) if format == "auto" else format
    if format not in FORMATS:
        raise InputError(f"unknown data set format '{format}'; choose one of {', '.join(FORMATS)}")
    if format == "beir":
        data = _load_beir(path, strict)
    else:
        data = _load_tsv(path, format, strict)
    if test_split is not None:
        _check_test_split(data, test_split)
        data.requested_test_split = test_split
    log.info(
        "%s (%s): %d passages, %d queries, positives per split: %s",
        data.name, format, len(data.passages), len(data.queries),
        {split: len(data.pairs(split)) for split in data.qrels},
    )
    return data


def _load_beir(path: Path, strict: bool) -> RetrievalData:
    passage_ids, passages = _read_texts(path / "corpus.jsonl", "passage", jsonl=True)
    query_ids, queries = _read_texts(path / "queries.jsonl", "query", jsonl=True)
    data = RetrievalData(path.name, path, "beir", passage_ids, passages, query_ids, queries, {})
    for split, qrel_file in qrels_files(path, "beir").items():
        judged = _read_qrels(qrel_file)
        data.qrels[split] = _check_qrels(qrel_file, judged, data.query_row, data.passage_row, strict)
    return data


def _load_tsv(path: Path, format: str, strict: bool) -> RetrievalData:
    passage_ids, passages = _read_texts(path / "collection.tsv", "passage", jsonl=False)
    query_ids, queries = _read_tsv_queries(path)
    data = RetrievalData(path.name, path, format, passage_ids, passages, query_ids, queries, {})
    graded_t2ranking = False
    for split, qrel_file in _qrel_files_by_split(path).items():
        judged = _read_qrels(qrel_file)
        data.qrels[split] = _check_qrels(qrel_file, judged, data.query_row, data.passage_row, strict)
        graded_t2ranking |= format == "t2ranking" and "retrieval" not in qrel_file.name
    if graded_t2ranking:
        data.relevance_threshold = 2  # T2Ranking's fine-grained grades: 2 and 3 are relevant
    return data


def _read_tsv_queries(path: Path) -> tuple[list[str], list[str]]:
    """All `queries*.tsv` files; an id in two files must carry the same text."""
    files = sorted(path.glob("queries*.tsv"))
    if not files:
        raise InputError(f"{path}: no queries*.tsv file")
    texts: dict[str, str] = {}
    for query_file in files:
        ids, file_texts = _read_texts(query_file, "query", jsonl=False)
        for qid, text in zip(ids, file_texts):
            if texts.get(qid, text) != text:
                raise InputError(f"{query_file}: query id '{qid}' also appears in another queries file "
                                 "with a different text")
            texts[qid] = text
    return list(texts), list(texts.values())


def _qrel_files_by_split(path: Path) -> dict[str, Path]:
    """One qrels file per split; where several name the same split, prefer
    `retrieval` (T2Ranking) then `small` (MS MARCO dev.small) then the shortest name."""
    candidates: dict[str, list[Path]] = {}
    for qrel_file in sorted(set(path.glob("qrels*")) | set(path.glob("*.qrels"))):
        if qrel_file.is_file():
            candidates.setdefault(_split_of(qrel_file.name), []).append(qrel_file)
    if not candidates:
        raise InputError(f"{path}: no qrels* file")
    chosen = {}
    for split, files in candidates.items():
        files.sort(key=lambda f: ("retrieval" not in f.name, "small" not in f.name, len(f.name)))
        chosen[split] = files[0]
        if len(files) > 1:
            log.info("%s split: using %s, ignoring %s", split, files[0].name, [f.name for f in files[1:]])
    return chosen


def _split_of(file_name: str) -> str:
    """`train`, `dev` or `test` where the name says so; else the name without its
    extension and the word qrels (`qrels.dl19-passage.txt`: `dl19-passage`); a bare
    `qrels.tsv` is `test`."""
    words = set(re.split(r"[._\-]", file_name.lower()))
    for split in ("train", "dev", "test"):
        if split in words:
            return split
    stem = re.sub(r"\.(tsv|txt|qrels)$", "", file_name, flags=re.IGNORECASE)
    return re.sub(r"^qrels[._\-]?", "", stem, flags=re.IGNORECASE) or "test"


# ---------------------------------------------------------------- training pairs


@dataclass
class TrainingPairs:
    """What training draws from. Passage rows index the main corpus, then
    `extra_passages` (a pseudo-annotated set's own passages); negatives are drawn from
    the main corpus only."""

    query_texts: list[str]
    extra_passages: list[str]
    pairs: np.ndarray  # (n, 2) query row, passage row: the seeded nested subset
    identity: np.ndarray  # (n_corpus + n_extra,) the corpus row each passage row stands for
    positives: dict[int, np.ndarray]  # query row -> identity rows of all its positives
    n_available: int  # pairs before taking the subset
    source: Path  # the folder the pairs came from


def training_pairs(
    data: RetrievalData, train_data: str | Path | None = None, size: int | None = None, seed: int = 0,
    strict: bool = True, held_out: np.ndarray | None = None,
) -> TrainingPairs:
    """The train split of `data`, or a pseudo-annotated BEIR folder `train_data`
    (queries.jsonl + qrels/train.tsv, passage ids from `data`'s corpus or from its own
    corpus.jsonl), cut to a seeded nested subset of `size` pairs. Pairs whose positive
    stands for one of the corpus rows `held_out` (`held_out_passages`) are left out
    before the subset is taken: those passages are never trained on."""
    if train_data is None:
        query_texts, extra, pairs, identity, source = data.queries, [], data.pairs("train"), None, data.path
    else:
        query_texts, extra, pairs, identity, source = _pseudo_pairs(data, Path(train_data).expanduser(), strict)
    if identity is None:
        identity = np.arange(len(data.passages) + len(extra))
    if held_out is not None and len(held_out):
        kept = ~np.isin(identity[pairs[:, 1]], held_out)
        log.info("%s: %d of %d training pairs left out: their positive is a held-out evaluation negative",
                 source, int((~kept).sum()), len(pairs))
        pairs = pairs[kept]
    positives: dict[int, set[int]] = {}
    for q, p in pairs:
        positives.setdefault(int(q), set()).add(int(identity[p]))
    subset = pairs[nested_subset(len(pairs), size, seed)]
    return TrainingPairs(
        query_texts=query_texts, extra_passages=extra, pairs=subset, identity=identity,
        positives={q: np.fromiter(rows, dtype=np.int64) for q, rows in positives.items()},
        n_available=len(pairs), source=source,
    )


def passage_articles(data: RetrievalData) -> np.ndarray:
    """(n_passages,) an article number per corpus row: BEIR passages that share a
    title are one article (squad-dev's paragraphs of one Wikipedia page); a passage
    without a title, and every passage of a TSV collection, is an article of its own."""
    titles: list[str] = [""] * len(data.passages)
    if data.format == "beir":
        corpus = data.path / "corpus.jsonl"
        for number, row in _jsonl(corpus, ("_id",)):
            row_id = str(row["_id"])
            if row_id in data.passage_row:
                titles[data.passage_row[row_id]] = _scalar_text(corpus, number, row, "title").strip()
    keys = [title or f"\0{row}" for row, title in enumerate(titles)]  # no title: its own article
    return np.unique(np.array(keys, dtype=object), return_inverse=True)[1].astype(np.int64)


def held_out_passages(data: RetrievalData, size: int, seed: int) -> np.ndarray:
    """(m,) sorted corpus rows, m >= `size`, kept out of training as the evaluation's
    negatives (Eq. 5): whole articles relevant to no test query, in an order seeded by
    `seed`, until `size` passages are held out. On a small corpus whose passages are all
    training or test positives (squad-dev, cmrc2018) the paper's pool would be passages
    the model was trained on; these never are. Empty for `size` 0."""
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    articles = passage_articles(data)  # (n_passages,)
    tested = np.unique(articles[data.pairs(data.test_split)[:, 1]])
    candidates = np.setdiff1d(np.unique(articles), tested)
    order = np.random.default_rng([seed, 4]).permutation(candidates)
    sizes = np.bincount(articles, minlength=int(articles.max()) + 1)[order]  # passages per article, in order
    reached = np.flatnonzero(np.cumsum(sizes) >= size)
    if len(reached) == 0:
        raise InputError(f"{data.path}: only {int(sizes.sum())} passages lie in articles relevant to no test query, "
                         f"fewer than the {size} held-out evaluation negatives asked for; lower "
                         "--eval-held-out-negatives (it must be at least --eval-negatives)")
    return np.flatnonzero(np.isin(articles, order[: reached[0] + 1]))


def _source_ids(corpus_file: Path) -> list[str]:
    """Per passage of a generated set's own corpus, the corpus passage it stands for:
    `source_id` where the generator changed the text (ICT without its sentence), else
    its own id. Two ICT variants of one paragraph are then never each other's negatives."""
    return [str(row.get("source_id") or row["_id"]) for _, row in _jsonl(corpus_file, ("_id",))]


def _pseudo_pairs(data: RetrievalData, folder: Path, strict: bool):
    if not (folder / "queries.jsonl").is_file():
        raise InputError(f"{folder}: --train-data needs a BEIR folder with queries.jsonl and qrels/train.tsv")
    query_ids, query_texts = _read_texts(folder / "queries.jsonl", "query", jsonl=True)
    qrel_file = folder / "qrels" / "train.tsv"
    judged = _read_qrels(qrel_file)
    query_row = {qid: i for i, qid in enumerate(query_ids)}
    own_ids: list[str] = []
    extra: list[str] = []
    if (folder / "corpus.jsonl").is_file():
        own_ids, extra = _read_texts(folder / "corpus.jsonl", "passage", jsonl=True)
    # a passage of the set's own corpus gets a row after the main corpus
    passage_row = dict(data.passage_row) | {pid: len(data.passages) + i for i, pid in enumerate(own_ids)}
    judged = _check_qrels(qrel_file, judged, query_row, passage_row, strict)
    pairs = np.array(
        [(query_row[q], passage_row[p]) for q, ps in judged.items() for p, grade in ps.items() if grade > 0],
        dtype=np.int64,
    ).reshape(-1, 2)
    identity = np.arange(len(data.passages) + len(extra))
    own_sources = _source_ids(folder / "corpus.jsonl") if own_ids else []
    for i, source in enumerate(own_sources):  # an own passage made from a corpus passage stands for it
        identity[len(data.passages) + i] = data.passage_row.get(source, len(data.passages) + i)
    log.info("%s: %d pseudo-annotated pairs, %d own passages", folder, len(pairs), len(extra))
    return query_texts, extra, pairs, identity, folder
