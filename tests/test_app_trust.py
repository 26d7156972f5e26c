"""What keeps a number on the page honest: published laws carry the paper's sizes and
the projection warning, a shared link says what it dropped, charts hold their points."""
from __future__ import annotations

import pytest

from engine.budget import BudgetQuestion, optimise, preset_support
from engine.laws import preset
from engine.numbers import format_count
from tests.test_app import N_LABEL, assert_clean, metric, open_page

PLANNER = "pages/3_Budget_planner.py"


@pytest.mark.parametrize("query", [{}, {"inference": "true", "budget": "10k"}])
def test_the_paper_preset_warns_when_n_star_lies_beyond_its_ladder(query):
    at = open_page(PLANNER, query=query)
    assert_clean(at)
    answer = optimise(preset("paper-joint"), BudgetQuestion(float(at.select_slider(key="budget").value),
                                                            bool(at.toggle(key="inference").value)))
    assert metric(at, N_LABEL) == format_count(answer.n_opt)
    lo, hi = preset_support("paper-joint")["n"]
    assert not lo <= answer.n_opt <= hi                  # 6.77B above BERT-Base; 10.9k below BERT-Tiny
    warning = " ".join(w.value for w in at.warning)
    assert "projection" in warning and f"the paper's {format_count(lo)} to {format_count(hi)} parameters" in warning


def test_the_overviews_paper_answer_carries_the_same_warning():
    at = open_page()
    assert_clean(at)
    assert sum("projection" in w.value and "the paper's" in w.value for w in at.warning) == 2
