"""ICT generation (engine/annotate/ict.py) on a synthetic corpus and on squad-dev,
the BEIR folder it writes, and the `annotate ict` command."""
import json
import subprocess
import sys
import time
from collections import Counter

import pytest

from engine.annotate.ict import ICTConfig, generate_ict, sentence_spans, without_span
from engine.data import load_retrieval_data
from engine.errors import InputError
from engine.paths import SHARED_DATA
from tests.conftest import ROOT

SQUAD = SHARED_DATA / "squad-dev"


def write_beir(folder, passages: dict[str, str], train: list[tuple[str, str]], test=()):
    """A BEIR data set: passages id -> text, (query id, passage id) pairs per split;
    every query's text is its id."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": pid, "title": "", "text": text}) + "\n" for pid, text in passages.items()))
    qids = dict.fromkeys(q for q, _ in [*train, *test])
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": q}) + "\n" for q in qids))
    for split, pairs in (("train", train), ("test", test)):
        if pairs:
            (folder / "qrels" / f"{split}.tsv").write_text(
                "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{p}\t1\n" for q, p in pairs))
    return folder


PASSAGES = {
    "p0": "Alpha one starts here. Alpha two follows it! Does alpha three ask? Alpha four ends.",
    "p1": "Beta one stands alone with no full stop",
    "p2": "Gamma one. Gamma two.",
    "p3": "Delta one is first. Delta two is second. Delta three is third.",
    "p4": "Unused passage. Never a positive.",
}
# p0: 2 human pairs, p1: 1 (single sentence), p2: 3 (one more than its sentences), p3: 1
TRAIN = [("q0", "p0"), ("q1", "p0"), ("q2", "p1"), ("q3", "p2"), ("q4", "p2"), ("q5", "p2"), ("q6", "p3")]


@pytest.fixture
def synthetic(tmp_path):
    return write_beir(tmp_path / "synthetic", PASSAGES, TRAIN, test=[("t0", "p4")])


def read_set(out):
    """queries id -> text, corpus id -> row, qrels [(qid, pid)] of a written set."""
    queries = {r["_id"]: r["text"] for r in map(json.loads, (out / "queries.jsonl").read_text().splitlines())}
    corpus = {r["_id"]: r for r in map(json.loads, (out / "corpus.jsonl").read_text().splitlines())}
    lines = (out / "qrels" / "train.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    qrels = [tuple(line.split("\t")[:2]) for line in lines[1:]]
    assert all(line.endswith("\t1") for line in lines[1:])
    return queries, corpus, qrels


def test_sentence_spans_cover_english_and_chinese():
    text = 'He said "stop." Then he left! Why? 中文第一句。第二句！'
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        'He said "stop."', "Then he left!", "Why?", "中文第一句。", "第二句！"]
    assert without_span(text, sentence_spans(text)[1]) == 'He said "stop." Why? 中文第一句。第二句！'


def test_ict_on_synthetic_corpus(synthetic, tmp_path):
    out = tmp_path / "ict"
    result = generate_ict(ICTConfig(str(synthetic), str(out), seed=3))
    queries, corpus, qrels = read_set(out)
    per_source = Counter(corpus[pid].get("source_id", pid) for _, pid in qrels)
    assert per_source == {"p0": 2, "p2": 2, "p3": 1}          # p1 has one sentence; p2 only two
    for qid, pid in qrels:
        row = corpus[pid]
        source = PASSAGES[row["source_id"]]
        assert pid.startswith(row["source_id"] + "#ict")
        assert queries[qid] in source and queries[qid] not in row["text"]
        assert row["text"] == without_span(source, (source.index(queries[qid]),
                                                    source.index(queries[qid]) + len(queries[qid])))
    assert len({queries[q] for q, p in qrels if corpus[p]["source_id"] == "p0"}) == 2   # distinct sentences
    counts = result["counts"]
    assert counts["skipped"] == {"single_sentence": 1, "shortfall": 1}
    assert counts["pairs"] == result["n_pairs"] == len(qrels) == len(TRAIN) - 2
    assert result["annotation"] == "ict" and result["settings"]["seed"] == 3
    assert json.loads((out / "generation.json").read_text()) == result
    data = load_retrieval_data(out)                            # a valid BEIR folder
    assert len(data.pairs("train")) == len(qrels)


def test_ict_is_seeded(synthetic, tmp_path):
    def sentences(seed, name):
        generate_ict(ICTConfig(str(synthetic), str(tmp_path / name), seed=seed))
        return (tmp_path / name / "queries.jsonl").read_text()

    first = sentences(0, "a")
    assert sentences(0, "b") == first
    assert any(sentences(seed, f"s{seed}") != first for seed in range(1, 6))


def test_ict_can_keep_the_sentence(synthetic, tmp_path):
    out = tmp_path / "keep"
    result = generate_ict(ICTConfig(str(synthetic), str(out), keep_sentence_prob=1.0))
    queries, corpus, qrels = read_set(out)
    assert all(pid in PASSAGES and corpus[pid]["text"] == PASSAGES[pid] for _, pid in qrels)
    assert all(queries[q] in PASSAGES[p] for q, p in qrels)
    assert "single_sentence" not in result["counts"]["skipped"]   # p1 is usable now
    assert Counter(p for _, p in qrels)["p1"] == 1


def test_the_training_engine_reads_the_set(synthetic, tmp_path):
    from engine.data import training_pairs

    out = tmp_path / "ict"
    generate_ict(ICTConfig(str(synthetic), str(out)))
    source = load_retrieval_data(synthetic)
    pairs = training_pairs(source, out)
    assert len(pairs.pairs) == pairs.n_available == len(TRAIN) - 2
    passages = source.passages + pairs.extra_passages
    queries, corpus, qrels = read_set(out)
    assert sorted(passages[p] for _, p in pairs.pairs) == sorted(corpus[p]["text"] for _, p in qrels)


def test_ict_refuses_bad_input(synthetic, tmp_path):
    with pytest.raises(InputError, match="keep_sentence_prob"):
        ICTConfig(str(synthetic), str(tmp_path / "x"), keep_sentence_prob=1.5)
    with pytest.raises(InputError, match="source data set"):
        generate_ict(ICTConfig(str(synthetic), str(synthetic)))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="non-empty folder"):
        generate_ict(ICTConfig(str(synthetic), str(tmp_path / "busy")))
    with pytest.raises(InputError, match="no 'dev' qrels"):
        generate_ict(ICTConfig(str(synthetic), str(tmp_path / "y"), split="dev"))


def test_ict_overwrites_an_earlier_generation(synthetic, tmp_path):
    out = tmp_path / "again"
    generate_ict(ICTConfig(str(synthetic), str(out), seed=0))
    again = generate_ict(ICTConfig(str(synthetic), str(out), keep_sentence_prob=1.0))
    assert again["settings"]["keep_sentence_prob"] == 1.0
    assert not list(out.rglob("*.partial"))


@pytest.mark.skipif(not SQUAD.is_dir(), reason="../shared/data/squad-dev is absent")
def test_ict_on_squad_dev(tmp_path):
    out = tmp_path / "squad-ict"
    started = time.perf_counter()
    result = generate_ict(ICTConfig(str(SQUAD), str(out)))
    seconds = time.perf_counter() - started
    queries, corpus, qrels = read_set(out)
    human = len(load_retrieval_data(SQUAD).pairs("train"))
    skipped = result["counts"]["skipped"]
    assert human == 7719
    assert len(qrels) + skipped.get("shortfall", 0) + skipped.get("single_sentence", 0) == human
    assert len(qrels) > 0.7 * human                       # most paragraphs have enough sentences
    data = load_retrieval_data(SQUAD)
    for qid, pid in qrels:
        original = data.passages[data.passage_row[corpus[pid]["source_id"]]]
        assert queries[qid] in " ".join(original.split())        # queries have their spaces collapsed
        assert len(corpus[pid]["text"]) < len(original)
    assert seconds < 20
    print(f"ICT on squad-dev: {len(qrels)} pairs of {human} human in {seconds:.2f} s")


@pytest.mark.slow
def test_annotate_ict_cli_registers_in_the_store(synthetic, tmp_path):
    store_path = tmp_path / "store.duckdb"
    out = tmp_path / "cli-ict"
    result = subprocess.run([sys.executable, "-m", "engine", "annotate", "ict", "--dataset", str(synthetic),
                             "--out", str(out), "--seed", "1", "--store", str(store_path), "--json"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["registered_as"] == "cli-ict" and printed["n_pairs"] == 5
    from store import Store

    row = Store(store_path).datasets().set_index("name").loc["cli-ict"]
    assert row["annotation"] == "ict" and row["n_train_pairs"] == 5 and row["format"] == "beir"
    assert row["generator"]["generator"] == "ict"

    bad = subprocess.run([sys.executable, "-m", "engine", "annotate", "ict", "--dataset", str(tmp_path / "none"),
                          "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
