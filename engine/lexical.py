"""A lexical reference beside every study: BM25 (bm25s, Lucene's variant, k1 = 1.5,
b = 0.75) measured with the dense runs' own protocol, so a reader sees at a glance
whether a trained bi-encoder beats word overlap.

BM25 indexes the evaluation's sub-corpus (test positives and the negatives' pool,
`engine.evaluate.EvalSet`) and scores every test query against it; its scores then go
through the very code a bi-encoder's inner products go through
(`engine.evaluate.scorer_metrics`): raw contrastive entropy (Eq. 5) on BM25 scores as
logits, the calibrated one (a cross-fitted temperature, which BM25's arbitrary scale
needs), and MRR@10, nDCG@10, MAP@10, Recall@1000. IDF is the sub-corpus's.

Text is cut into words for English (lower-cased, scikit-learn's token pattern, English
stop words left out) and into single characters for Chinese, which has no spaces.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from engine.config import EvalConfig
from engine.data import RetrievalData

if TYPE_CHECKING:  # engine.evaluate imports torch: only the measuring functions need it
    from engine.evaluate import EvalSet

METHOD = "bm25"  # the reference's name in the store
_CJK = re.compile(r"[\u3400-\u9fff]|[^\W\d_]+|\d+")


def lexical_tokens(texts: list[str], language: str) -> list[list[str]]:
    """Words of each text (en: bm25s's tokenizer; zh: every CJK character alone)."""
    if language == "zh":
        return [_CJK.findall(text.lower()) for text in texts]
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def bm25_scorer(data: RetrievalData, eval_set: "EvalSet"):
    """query indices (b,) -> (b, sub-corpus) float32 BM25 scores, for `scorer_metrics`."""
    import bm25s
    import torch

    language = data.language()
    retriever = bm25s.BM25()
    retriever.index(lexical_tokens([data.passages[row] for row in eval_set.passage_rows], language),
                    show_progress=False)
    queries = lexical_tokens([data.queries[row] for row in eval_set.query_rows], language)
    return lambda rows: torch.from_numpy(np.stack([retriever.get_scores(queries[i]) for i in rows])
                                         .astype(np.float32))


def bm25_reference(data: RetrievalData, eval_set: "EvalSet") -> dict[str, float]:
    """BM25's raw and calibrated contrastive entropy and ranking metrics on `eval_set`."""
    from engine.evaluate import scorer_metrics

    return scorer_metrics(bm25_scorer(data, eval_set), len(eval_set.passage_rows), eval_set, ranking=True)


def eval_config_of(fingerprint: dict) -> EvalConfig:
    """The evaluation settings a recorded fingerprint (engine.eval_protocol) was measured with."""
    held_out = fingerprint.get("negative_pool") == "held-out"
    split = str(fingerprint.get("test_split", "")).rpartition(":")[0] or None
    return EvalConfig(negatives=fingerprint["negatives"], repeats=fingerprint["repeats"],
                      subcorpus_size=EvalConfig().subcorpus_size if held_out else fingerprint["pool"],
                      held_out_negatives=fingerprint["pool"] if held_out else 0, seed=fingerprint["pool_seed"],
                      max_test_pairs=fingerprint.get("test_pairs"), ranking="final", test_split=split)


def missing_references(store) -> list[tuple[str, str, dict]]:
    """(data set name, data set folder, fingerprint) of each data set and protocol the
    store's completed engine runs were measured under that has no BM25 reference yet."""
    from engine.eval_protocol import reference_protocol

    runs = store.runs(status="completed")
    runs = runs[(runs["source"] == "engine") & runs["eval_fingerprint"].notna()]
    have = {(r["dataset"], r["eval_protocol"]) for r in store.references().to_dict("records")
            if r["method"] == METHOD}
    folders = dict(zip(store.datasets()["name"], store.datasets()["path"]))
    wanted: dict[tuple[str, str], dict] = {}
    for dataset, fingerprint in zip(runs["dataset"], runs["eval_fingerprint"]):
        key = (dataset, reference_protocol(fingerprint))
        if key not in have and dataset in folders:
            wanted.setdefault(key, fingerprint)
    return [(dataset, folders[dataset], fingerprint) for (dataset, _), fingerprint in wanted.items()]


def measure_references(store) -> list[dict]:
    """Measure and store the BM25 reference of every data set and protocol that lacks
    one (`missing_references`); returns what was added. A folder whose test pairs no
    longer hash to the fingerprint's is refused: it is no longer the data measured."""
    from engine.data import load_retrieval_data
    from engine.errors import InputError
    from engine.evaluate import build_eval_set
    from engine.eval_protocol import eval_set_pairs, test_split_identity

    added = []
    for dataset, folder, fingerprint in missing_references(store):
        config = eval_config_of(fingerprint)
        data = load_retrieval_data(folder, strict=False, test_split=config.test_split)
        eval_set = build_eval_set(data, None, None, config)
        if test_split_identity(data.test_split, eval_set_pairs(eval_set)) != fingerprint.get("test_split"):
            raise InputError(f"{folder}: its test pairs are not those the runs of {dataset} were measured on "
                             f"({fingerprint.get('test_split')}); measure the reference where the data is unchanged")
        metrics = bm25_reference(data, eval_set)
        reference = {"dataset": dataset, "method": METHOD, "metrics": metrics,
                     "eval_fingerprint": {**fingerprint, "metric": "raw"}}
        store.add_reference(**reference)
        added.append(reference)
    return added


def reference_for(references, dataset: str, fingerprint: dict | None) -> dict[str, float] | None:
    """The BM25 metrics of `dataset` under the protocol of `fingerprint` from
    `Store.references()` rows; None where none was measured (or no protocol is known)."""
    from engine.eval_protocol import reference_protocol

    if fingerprint is None or references is None or len(references) == 0:
        return None
    wanted = references[(references["dataset"] == dataset) & (references["method"] == METHOD)
                        & (references["eval_protocol"] == reference_protocol(fingerprint))]
    return None if wanted.empty else dict(wanted.iloc[0]["metrics"])


def metric_column(metric: str) -> str:
    """The metrics key of a study's metric: raw or calibrated contrastive entropy."""
    return "calibrated_entropy" if metric == "calibrated" else "contrastive_entropy"


def reference_of_points(references, points, metric: str) -> tuple[str, float, dict] | None:
    """("BM25", its entropy in `metric`, all its metrics) for the points of one fit: one
    data set and one protocol (a fit's `points` with dataset and eval_fingerprint), or None."""
    from engine.eval_protocol import fingerprints_of

    if "dataset" not in points or points["dataset"].nunique() != 1:
        return None
    fingerprint = fingerprints_of(points)[0]
    reference = reference_for(references, points["dataset"].iloc[0], fingerprint)
    value = None if reference is None else reference.get(metric_column(metric))
    return None if value is None else ("BM25", float(value), reference)
