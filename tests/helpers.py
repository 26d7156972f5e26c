"""What many test files build: the tiny training run the engine's mechanics are tested
on, the data sets it reads (BEIR, MS MARCO, a synthetic set a tiny model learns), the
seeded study the app tests open, and the AppTest helpers that open and read a page."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from engine.config import EvalConfig, TrainConfig
from engine.laws import preset

ROOT = Path(__file__).resolve().parent.parent
N_LABEL = "N* (optimal model size)"
TIMEOUT_S = 60


def tiny_config(dataset, **changes) -> TrainConfig:
    """scratch-L1-H32 on a synthetic set (`write_synthetic` below): 40 steps at a
    high rate with dot-product scores, so a run visibly learns from a poor start in seconds
    (the ladder's default cosine scores start near their best on word-overlap queries)."""
    config = TrainConfig(
        dataset=str(dataset), model="scratch-L1-H32", tokenizer_vocab_size=400, steps=40, batch_size=16,
        negatives=16, lr=3e-3, similarity="dot", max_query_length=16, max_passage_length=32, eval_every=20,
        checkpoint_every=0, eval=EvalConfig(repeats=2, ranking="final"),
    )
    return replace(config, **changes)


# --- data sets -------------------------------------------------------------------

def write_beir(folder: Path, corpus=None, queries=None, qrels=None) -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "p1", "title": "Apples", "text": "apples are red"},
        {"_id": "p2", "title": "", "text": "bananas are yellow"},
        {"_id": "p3", "text": "cherries are dark"},
    ]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "red fruit"}, {"_id": "q2", "text": "yellow fruit"}, {"_id": "q3", "text": "dark"},
    ]
    qrels = qrels if qrels is not None else {
        "train": "query-id\tcorpus-id\tscore\nq1\tp1\t1\nq2\tp2\t1\n",
        "test": "query-id\tcorpus-id\tscore\nq3\tp3\t2\nq3\tp1\t0\n",
    }
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    for split, text in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text(text)
    return folder


def write_msmarco(folder: Path, qrels_name="qrels.dev.tsv", qrels="1 0 p2 1\n", header=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "collection.tsv").write_text(("pid\tpara\n" if header else "") + "p1\tfirst passage\np2\tsecond passage\n")
    (folder / "queries.train.tsv").write_text(("qid\ttext\n" if header else "") + "0\ta train query\n")
    (folder / "queries.dev.tsv").write_text(("qid\ttext\n" if header else "") + "1\ta dev query\n")
    (folder / "qrels.train.tsv").write_text("0\t0\tp1\t1\n")
    (folder / qrels_name).write_text(qrels)
    return folder


def write_synthetic(folder: Path, n_passages=400, n_train=300, n_test=60, vocab=300, seed=0) -> Path:
    """A BEIR set a tiny model learns in seconds: passages of 12 pseudo-words, one
    train query (4 of its words) for each of the first `n_train` passages and one
    test query (4 other words) for each of the first `n_test`; the rest are the pool
    of passages relevant to no test query."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    passages = [list(rng.choice(words, 12, replace=False)) for _ in range(n_passages)]
    corpus = [{"_id": f"p{i}", "text": " ".join(p)} for i, p in enumerate(passages)]
    queries, train, test = [], [], []
    for i in range(n_train):
        queries.append({"_id": f"tr{i}", "text": " ".join(passages[i][:4])})
        train.append(f"tr{i}\tp{i}\t1\n")
    for i in range(n_test):
        queries.append({"_id": f"te{i}", "text": " ".join(passages[i][6:10])})
        test.append(f"te{i}\tp{i}\t1\n")
    header = "query-id\tcorpus-id\tscore\n"
    return write_beir(folder, corpus, queries, {"train": header + "".join(train), "test": header + "".join(test)})


# --- the app -----------------------------------------------------------------------

def seeded_rows() -> pd.DataFrame:
    """A small study drawn from the paper's joint law with 1 % noise: 5 model sizes x
    6 data sizes of human pairs with ranking metrics, and at the largest model two
    generated annotation types worth 1/2 and 1/5 of a human pair."""
    rng = np.random.default_rng(0)
    law = preset("paper-joint")
    n = np.repeat([1e5, 3e5, 1e6, 3e6, 1e7], 6)
    d = np.tile(np.geomspace(1e4, 1e6, 6).round(), 5)
    frames = [pd.DataFrame({"n": n.astype(int), "d": d.astype(int), "annotation": "human",
                            "loss": law.predict(n, d) * np.exp(rng.normal(0, 0.01, n.size))})]
    for kind, worth in (("doct5query", 0.5), ("ict", 0.2)):
        frames.append(pd.DataFrame({"n": int(n.max()), "d": d[:6].astype(int), "annotation": kind,
                                    "loss": law.predict(n.max(), d[:6] * worth) * np.exp(rng.normal(0, 0.01, 6))}))
    rows = pd.concat(frames, ignore_index=True)
    for metric, top in (("ndcg@10", 0.8), ("mrr@10", 0.7)):
        rows[metric] = np.clip(top * np.exp(-2 * rows["loss"]) + rng.normal(0, 0.01, len(rows)), 0, 1)
    rows["label"] = [f"{a}-N{n:.0e}-D{d:.0e}" for a, n, d in zip(rows["annotation"], rows["n"], rows["d"])]
    return rows.assign(dataset="msmarco", model=[f"N={n:.0e}" for n in rows["n"]])


def open_page(page: str | None = None, query: dict | None = None, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT_S)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    if page:
        at.query_params.update(query or {})
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page that has `column`."""
    return next(t.value for t in at.dataframe if column in t.value.columns)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def press_fit(at: AppTest) -> AppTest:
    """Press the Fit laws page's Fit button (its settings are a form)."""
    return at.button(key="fit_submit").click().run()


# --- a tokenizer -------------------------------------------------------------------

def word_tokenizer(texts):
    """A deterministic word-level BERT tokenizer (WordPiece training breaks ties in
    hash order, so its vocabulary can differ from run to run)."""
    from transformers import BertTokenizerFast

    words = sorted({w for text in texts for w in text.lower().split()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(specials + words)})
