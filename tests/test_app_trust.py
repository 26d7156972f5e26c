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


def link_warnings(at) -> list[str]:
    return [w.value for w in at.warning if w.value.startswith("This link asks for")]


def test_a_link_naming_a_law_this_store_lacks_says_so():
    at = open_page(PLANNER, query={"law": "their joint fit [1a2b3c]", "budget": "50k"})
    assert_clean(at)
    [said] = link_warnings(at)
    assert "the law = their joint fit [1a2b3c]" in said and "does not hold" in said and "paper-joint instead" in said
    assert at.select_slider(key="budget").value == 50_000     # the rest of the link still holds


def test_every_value_a_link_loses_is_named_and_a_good_link_gives_no_warning():
    at = open_page(PLANNER, query={"tolerance": "50", "inference": "maybe", "price_per_pair": "0.60"})
    assert_clean(at)
    said = " ".join(link_warnings(at))
    assert "band tolerance = 50" in said and "with inference cost = maybe" in said
    assert "Price per annotated pair" not in said              # 0.60 is the paper's 0.6: used, not lost
    good = open_page(PLANNER, query={"budget": "1M", "inference": "true", "compare": ["5k", "50k"]})
    assert not link_warnings(good) and good.multiselect(key="compare").value == [5_000, 50_000]
