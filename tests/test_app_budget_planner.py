"""The Budget planner as a new user finds it: a reset clears a scenario from the URL, prices
and utilisation cannot be zero, no internal field name reaches the page, a small corpus can be planned for."""
from __future__ import annotations

import re

import pytest

from tests.helpers import N_LABEL, assert_clean, metric, open_page

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out

PLANNER = "pages/3_Budget_planner.py"


def test_reset_clears_a_scenario_that_came_from_the_url():
    at = open_page(PLANNER, query={"price_per_pair": "2.0", "utilisation": "0.5", "budget": "1M"})
    assert at.slider(key="price_per_pair").value == pytest.approx(2.0)
    at.button(key="reset_costs").click().run()
    at.run()                                     # a later rerun must not reload the URL's values
    assert_clean(at)
    assert at.slider(key="price_per_pair").value == pytest.approx(0.6)
    assert at.slider(key="utilisation").value == pytest.approx(0.25)
    assert "price_per_pair" not in at.query_params and "utilisation" not in at.query_params
    assert at.select_slider(key="budget").value == 1_000_000, "reset touches the costs only"


@pytest.mark.parametrize("key", ["price_per_pair", "gpu_price_per_hour", "utilisation", "peak_flops_scaled"])
def test_prices_and_utilisation_cannot_be_zero(key):
    at = open_page(PLANNER)
    assert at.slider(key=key).min > 0


def test_no_internal_field_name_reaches_the_user():
    at = open_page(PLANNER, query={"price_per_pair": "0.0", "steps": "0"})
    assert not at.exception
    shown = " ".join(e.value for e in [*at.error, *at.warning, *at.caption, *at.markdown, *at.info])
    internal = [name for name in ("price_per_pair", "gpu_price_per_hour", "utilisation", "peak_flops",
                                  "batch_size", "_scaled") if name in shown]
    internal += re.findall(r"(?<!Training )\bsteps\b", shown)   # "Training steps" is the control's label
    assert not internal, shown


def test_a_small_corpus_can_be_planned_for():
    at = open_page(PLANNER, query={"inference": "true"})
    corpus, paper = at.number_input(key="corpus_pages_scaled"), metric(at, N_LABEL)
    assert 0 < corpus.min <= 0.0088, "MS MARCO's 8.8M passages must be enterable"
    corpus.set_value(0.0088).run()
    assert_clean(at)
    assert metric(at, N_LABEL) != paper        # a corpus 3.4 million times smaller: inference is cheap
