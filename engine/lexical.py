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

import numpy as np
import torch

from engine.data import RetrievalData
from engine.evaluate import EvalSet, scorer_metrics

METHOD = "bm25"  # the reference's name in the store
_CJK = re.compile(r"[\u3400-\u9fff]|[^\W\d_]+|\d+")


def lexical_tokens(texts: list[str], language: str) -> list[list[str]]:
    """Words of each text (en: bm25s's tokenizer; zh: every CJK character alone)."""
    if language == "zh":
        return [_CJK.findall(text.lower()) for text in texts]
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def bm25_scorer(data: RetrievalData, eval_set: EvalSet):
    """query indices (b,) -> (b, sub-corpus) float32 BM25 scores, for `scorer_metrics`."""
    import bm25s

    language = data.language()
    retriever = bm25s.BM25()
    retriever.index(lexical_tokens([data.passages[row] for row in eval_set.passage_rows], language),
                    show_progress=False)
    queries = lexical_tokens([data.queries[row] for row in eval_set.query_rows], language)
    return lambda rows: torch.from_numpy(np.stack([retriever.get_scores(queries[i]) for i in rows])
                                         .astype(np.float32))


def bm25_reference(data: RetrievalData, eval_set: EvalSet) -> dict[str, float]:
    """BM25's raw and calibrated contrastive entropy and ranking metrics on `eval_set`."""
    return scorer_metrics(bm25_scorer(data, eval_set), len(eval_set.passage_rows), eval_set, ranking=True)
