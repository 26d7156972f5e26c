"""The Fit page draws BM25 beside the runs of its protocol and says how many beat it."""
import json

import pytest

from store import Store
from tests.helpers import TIMEOUT_S, assert_clean, open_page, press_fit, seeded_rows

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out


@pytest.fixture
def store_with_a_reference():
    rows = seeded_rows().assign(eval_negatives=256, eval_repeats=3, eval_pool=300, eval_pool_seed=0,
                                eval_negative_pool="held-out")
    store = Store()
    store.load_rows(rows, source="test")
    fingerprint = store.runs()["eval_fingerprint"].iloc[0]
    human = rows[rows["annotation"] == "human"]["loss"]
    level = float(human.quantile(0.25))
    store.add_reference(dataset="msmarco", eval_fingerprint=fingerprint, method="bm25",
                        metrics={"contrastive_entropy": level, "calibrated_entropy": level / 2, "mrr@10": 0.81})
    return level, int((human < level).sum()), len(human)


def test_the_fit_page_draws_bm25_and_counts_the_runs_below_it(store_with_a_reference):
    level, below, total = store_with_a_reference
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_annotation").set_value("human")
    at.radio(key="fit_kind").set_value("joint").run(timeout=TIMEOUT_S)
    press_fit(at)
    assert_clean(at)
    words = " ".join(c.value for c in at.caption)
    assert f"{below} of {total} runs here are below it" in words and "MRR@10 0.81" in words
    chart = json.dumps([c.proto.spec for c in at.get("arrow_vega_lite_chart")] or
                       [str(e.proto) for e in at.get("vega_lite_chart")])
    assert "BM25" in chart


def test_without_a_reference_the_page_says_how_to_measure_one():
    rows = seeded_rows().assign(eval_negatives=256, eval_repeats=3)
    Store().load_rows(rows, source="test")
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_annotation").set_value("human")
    at.radio(key="fit_kind").set_value("joint").run(timeout=TIMEOUT_S)
    press_fit(at)
    assert_clean(at)
    assert any("python -m engine references" in c.value for c in at.caption)


def test_the_bm25_caption_sits_under_the_law_chart_it_explains(store_with_a_reference):
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_annotation").set_value("human")
    at.radio(key="fit_kind").set_value("joint").run(timeout=TIMEOUT_S)
    press_fit(at)
    nodes = list(at.main)
    law_chart = next(i for i, node in enumerate(nodes) if node.type in ("arrow_vega_lite_chart", "vega_lite_chart"))
    caption = next(i for i, node in enumerate(nodes)
                   if node.type == "caption" and "runs here are below it" in node.value)
    assert law_chart < caption
