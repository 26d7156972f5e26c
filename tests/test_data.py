"""Data readers: the three layouts, format detection, pairs and nested subsets,
pseudo-annotated training sets, and every malformed-input case (file, line, problem)."""
import logging

import pytest

from engine.data import (
    detect_format,
    load_retrieval_data,
    nested_subset,
    training_pairs,
)
from engine.errors import InputError
from engine.paths import SHARED_DATA
from tests.helpers import write_beir, write_msmarco, write_synthetic


def test_beir_layout(tmp_path):
    data = load_retrieval_data(write_beir(tmp_path / "set"))
    assert data.format == "beir" and data.name == "set"
    assert data.passages[0] == "Apples apples are red"  # title prepended
    assert data.passages[1] == "bananas are yellow"
    assert data.qrels["test"] == {"q3": {"p3": 2, "p1": 0}}
    assert data.test_split == "test"
    assert data.pairs("train").tolist() == [[0, 0], [1, 1]]
    assert data.pairs("test").tolist() == [[2, 2]]  # grade 0 is not a positive
    assert data.language() == "en"


def test_msmarco_layout_trec_and_pair_qrels(tmp_path):
    trec = load_retrieval_data(write_msmarco(tmp_path / "trec", qrels="1 Q0 p2 3\n"))
    assert trec.format == "msmarco" and trec.test_split == "dev"
    assert trec.qrels["dev"] == {"1": {"p2": 3}} and trec.qrels["train"] == {"0": {"p1": 1}}
    assert sorted(trec.query_ids) == ["0", "1"]
    pairs = load_retrieval_data(write_msmarco(tmp_path / "pairs", qrels="1\tp2\n"))
    assert pairs.qrels["dev"] == {"1": {"p2": 1}}


def test_t2ranking_layout_prefers_retrieval_qrels(tmp_path):
    folder = write_msmarco(tmp_path / "t2", qrels_name="qrels.dev.tsv", qrels="qid\t-\tpid\trel\n1\t0\tp2\t1\n",
                           header=True)
    (folder / "qrels.train.tsv").write_text("qid\tpid\n0\tp1\n")
    assert detect_format(folder) == "t2ranking"
    graded = load_retrieval_data(folder)
    assert graded.relevance_threshold == 2  # T2Ranking's fine grades: 2 and 3 are relevant
    assert len(graded.pairs("dev")) == 0
    (folder / "qrels.retrieval.dev.tsv").write_text("qid\tpid\n1\tp2\n")
    (folder / "qrels.retrieval.train.tsv").write_text("qid\tpid\n0\tp1\n")
    binary = load_retrieval_data(folder)
    assert binary.relevance_threshold == 1
    assert binary.pairs("dev").tolist() == [[binary.query_row["1"], binary.passage_row["p2"]]]


def test_detect_format_needs_a_corpus(tmp_path):
    with pytest.raises(InputError, match="no corpus.jsonl"):
        detect_format(tmp_path)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "p1", "text": "a"}\n{"text": "no id"}\n'),
         r"corpus.jsonl:2: missing field '_id'"),
        (lambda f: (f / "queries.jsonl").write_text('{"_id": "q1"}\n'), r"queries.jsonl:1: missing field 'text'"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "p1", "text": "a"}\nnot json\n'),
         r"corpus.jsonl:2: not a JSON object"),
        (lambda f: (f / "corpus.jsonl").write_text(""), r"corpus.jsonl: file is empty"),
        (lambda f: (f / "queries.jsonl").write_text("\n\n"), r"queries.jsonl: file is empty"),
        (lambda f: (f / "corpus.jsonl").write_bytes(b'{"_id": "p1", "text": "a"}\n{"_id": "p2", "text": "\xff"}\n'),
         r"corpus.jsonl:2: not valid UTF-8"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "p1", "text": "a"}\n{"_id": "p1", "text": "b"}\n'),
         r"corpus.jsonl:2: duplicate passage id 'p1' \(first on line 1\)"),
        (lambda f: (f / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n'),
         r"queries.jsonl:2: duplicate query id 'q1'"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tp3\t1\nq9\tp3\t1\n"),
         r"test.tsv:3: query id 'q9' is not in the queries file"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tp9\t1\n"),
         r"test.tsv:2: passage id 'p9' is not in the corpus"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("q3\tp3\t1\nq3 p3 1 0 extra\n"),
         r"test.tsv:2: expected 2 .* columns, found 5"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tp3\thigh\n"),
         r"test.tsv:2: relevance grade 'high' is not a number"),
        (lambda f: (f / "qrels" / "test.tsv").write_text(""), r"test.tsv: file is empty"),
        (lambda f: (f / "queries.jsonl").unlink(), r"queries.jsonl: file not found"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "p1", "text": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n"),
         r"corpus.jsonl:2: not a JSON object \(nested too deeply"),
    ],
)
def test_malformed_beir_input_names_file_and_line(tmp_path, change, problem):
    folder = write_beir(tmp_path / "set")
    change(folder)
    with pytest.raises(InputError, match=problem):
        load_retrieval_data(folder)


@pytest.mark.parametrize(
    "file, text, problem",
    [
        ("collection.tsv", "p1\tfine\np2 no tab here\n", r"collection.tsv:2: expected 2 tab-separated columns"),
        ("collection.tsv", "p1\ta\np1\tb\n", r"collection.tsv:2: duplicate passage id 'p1'"),
        ("queries.dev.tsv", "0\tother text for the train query id\n", r"query id '0' also appears in another"),
        ("qrels.dev.tsv", "1 0 p2\n1 0 p2 1 x\n", r"qrels.dev.tsv:2: expected 2 .* found 5"),
    ],
)
def test_malformed_tsv_input(tmp_path, file, text, problem):
    folder = write_msmarco(tmp_path / "ms")
    (folder / file).write_text(text)
    with pytest.raises(InputError, match=problem):
        load_retrieval_data(folder)


def test_lenient_qrels_drop_unknown_ids_with_a_count(tmp_path, caplog):
    folder = write_beir(tmp_path / "set")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tp3\t1\nq9\tp3\t1\nq3\tp9\t1\n")
    with caplog.at_level(logging.WARNING):
        data = load_retrieval_data(folder, strict=False)
    assert data.qrels["test"] == {"q3": {"p3": 1}}
    assert "dropped 2 judgments" in caplog.text


def test_counted_not_silent(tmp_path, caplog):
    """Blank lines, duplicate judgments and grade-0 judgments of absent passages
    (TREC DL qrels over a small corpus) are skipped with a count in the log."""
    folder = write_beir(tmp_path / "set")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tp3\t1\n\nq3\tp3\t2\nq3\tp404\t0\n")
    with caplog.at_level(logging.INFO):
        data = load_retrieval_data(folder)
    assert data.qrels["test"] == {"q3": {"p3": 2}}
    assert "skipped 1 blank lines" in caplog.text
    assert "1 duplicate judgments merged" in caplog.text
    assert "dropped 1 grade-0 judgments" in caplog.text


def test_nested_subsets():
    small, large = nested_subset(1000, 500, seed=3), nested_subset(1000, 1000, seed=3)
    assert len(set(small)) == 500 and set(small) <= set(large)
    assert list(small) == list(large[:500])
    assert list(nested_subset(1000, 500, seed=4)) != list(small)
    with pytest.raises(InputError, match="asked for 1001 training pairs"):
        nested_subset(1000, 1001, seed=0)


def test_training_pairs_from_train_split(tmp_path):
    data = load_retrieval_data(write_beir(tmp_path / "set"))
    pairs = training_pairs(data, size=1, seed=0)
    assert pairs.n_available == 2 and len(pairs.pairs) == 1
    assert {q: list(p) for q, p in pairs.positives.items()} == {0: [0], 1: [1]}
    assert pairs.extra_passages == [] and pairs.identity.tolist() == [0, 1, 2]


def test_pseudo_annotations_referring_to_the_corpus(tmp_path):
    data = load_retrieval_data(write_beir(tmp_path / "set"))
    pseudo = tmp_path / "ict"
    (pseudo / "qrels").mkdir(parents=True)
    (pseudo / "queries.jsonl").write_text('{"_id": "g1", "text": "apples"}\n{"_id": "g2", "text": "cherries"}\n')
    (pseudo / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\ng1\tp1\t1\ng2\tp3\t1\n")
    pairs = training_pairs(data, pseudo)
    assert pairs.query_texts == ["apples", "cherries"]
    assert sorted(map(tuple, pairs.pairs.tolist())) == [(0, 0), (1, 2)]
    assert pairs.source == pseudo


def test_pseudo_annotations_with_their_own_corpus(tmp_path):
    """ICT's positive is the passage without the sentence: the set's own text, but it
    stands for the corpus passage of the same id (masked as that passage)."""
    data = load_retrieval_data(write_beir(tmp_path / "set"))
    pseudo = tmp_path / "ict"
    (pseudo / "qrels").mkdir(parents=True)
    (pseudo / "queries.jsonl").write_text('{"_id": "g1", "text": "apples are red"}\n{"_id": "g2", "text": "x"}\n')
    (pseudo / "corpus.jsonl").write_text('{"_id": "p1", "text": "(sentence removed)"}\n{"_id": "new", "text": "y"}\n')
    (pseudo / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\ng1\tp1\t1\ng2\tnew\t1\n")
    pairs = training_pairs(data, pseudo)
    assert pairs.extra_passages == ["(sentence removed)", "y"]
    assert sorted(map(tuple, pairs.pairs.tolist())) == [(0, 3), (1, 4)]
    assert pairs.identity.tolist() == [0, 1, 2, 0, 4]
    (pseudo / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\ng1\tnowhere\t1\n")
    with pytest.raises(InputError, match=r"train.tsv:2: passage id 'nowhere' is not in the corpus"):
        training_pairs(data, pseudo)


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data not present")
def test_shared_data_sets_load():
    squad = load_retrieval_data(SHARED_DATA / "squad-dev")
    assert (len(squad.passages), len(squad.queries)) == (2067, 10570)
    assert (len(squad.pairs("train")), len(squad.pairs("test"))) == (7719, 2851)
    assert not set(squad.pairs("train")[:, 1]) & set(squad.pairs("test")[:, 1])  # split by article
    dl19 = load_retrieval_data(SHARED_DATA / "msmarco-dl19")
    assert dl19.format == "msmarco" and set(dl19.qrels) == {"dl19-passage"} and len(dl19.queries) == 43
    assert max(g for judged in dl19.qrels["dl19-passage"].values() for g in judged.values()) == 3
    assert load_retrieval_data(SHARED_DATA / "cmrc2018").language() == "zh"
    # every shared set has one test split, so none needs --test-split
    assert squad.test_split == "test" and dl19.test_split == "dl19-passage"
    assert load_retrieval_data(SHARED_DATA / "cranfield").test_split == "test"


# ---------------------------------------------------------------- the test split


def test_two_candidate_test_splits_are_refused_with_the_list(tmp_path):
    folder = write_beir(tmp_path / "set", qrels={"train": "q1\tp1\t1\n", "test": "q3\tp3\t1\n",
                                                 "dev": "q2\tp2\t1\n"})
    data = load_retrieval_data(folder)  # loading alone does not need a test split
    with pytest.raises(InputError, match=r"2 qrels splits could be the test split \(dev, test\); "
                                         r"choose one with --test-split NAME"):
        data.test_split
    assert load_retrieval_data(folder, test_split="dev").test_split == "dev"
    assert load_retrieval_data(folder, test_split="test").pairs("test").tolist() == [[2, 2]]
    with pytest.raises(InputError, match=r"--test-split eval: .* its candidates are dev, test"):
        load_retrieval_data(folder, test_split="eval")
    with pytest.raises(InputError, match=r"--test-split train: .*\(train is the training split\)"):
        load_retrieval_data(folder, test_split="train")


def test_msmarco_folder_with_trec_dl_qrels_is_not_evaluated_on_them_by_guess(tmp_path):
    """MS MARCO dev beside TREC DL 2019 qrels (43 queries): it used to be 'test' and
    win over dev silently."""
    folder = write_msmarco(tmp_path / "ms")
    (folder / "qrels.dl19-passage.txt").write_text("1 0 p1 2\n")
    (folder / "qrels.dl20-passage.txt").write_text("1 0 p2 2\n")
    data = load_retrieval_data(folder)
    assert sorted(data.qrels) == ["dev", "dl19-passage", "dl20-passage", "train"]  # none dropped
    with pytest.raises(InputError, match=r"3 qrels splits .*\(dev, dl19-passage, dl20-passage\).*--test-split"):
        data.test_split
    assert load_retrieval_data(folder, test_split="dev").test_split == "dev"
    assert load_retrieval_data(folder, test_split="dl20-passage").qrels["dl20-passage"] == {"1": {"p2": 2}}
    only_train = tmp_path / "train-only"
    write_msmarco(only_train, qrels_name="qrels.train.tsv", qrels="0\t0\tp1\t1\n")
    with pytest.raises(InputError, match="no test split"):
        load_retrieval_data(only_train).test_split


def test_test_split_identity_names_the_file_and_hashes_its_content(tmp_path):
    from engine.data import split_identity

    folder = write_msmarco(tmp_path / "ms")
    (folder / "qrels.dl19-passage.txt").write_text("1 0 p1 2\n")
    identity = split_identity(folder, "dl19-passage")
    assert identity["name"] == "dl19-passage" and identity["file"] == "qrels.dl19-passage.txt"
    assert len(identity["sha256"]) == 64
    assert split_identity(folder, "dev")["file"] == "qrels.dev.tsv"
    (folder / "qrels.dl19-passage.txt").write_text("1 0 p1 3\n")
    assert split_identity(folder, "dl19-passage")["sha256"] != identity["sha256"]
    beir = write_beir(tmp_path / "beir")
    assert split_identity(beir, "test")["file"] == "qrels/test.tsv"
    with pytest.raises(InputError, match="no 'dev' qrels"):
        split_identity(beir, "dev")



def test_a_data_set_path_in_a_link_loop_is_one_input_error(tmp_path):
    from engine.data import split_identity

    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    with pytest.raises(InputError, match=r"data set .*loop: its symbolic links cannot be followed"):
        load_retrieval_data(loop)
    with pytest.raises(InputError, match=r"data set .*loop: its symbolic links cannot be followed"):
        split_identity(loop, "test")


def test_synthetic_set_is_well_formed(tmp_path):
    data = load_retrieval_data(write_synthetic(tmp_path / "syn"))
    assert len(data.pairs("train")) == 300 and len(data.pairs("test")) == 60
