"""The Budget planner priced on the user's own device: the store's runs give the
throughput, every compute spend is shown in device hours too (issue 23 item 3)."""

import pytest

from store import Store
from tests.helpers import assert_clean, open_page, tiny_config, write_synthetic

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out


@pytest.mark.slow
def test_the_planner_prices_compute_on_the_device_of_the_stores_runs(tmp_path, one_torch_thread):
    from engine.budget import store_hardware
    from engine.train import train

    store = Store()
    train(tiny_config(write_synthetic(tmp_path / "syn"), run_id="tiny", steps=6, eval_every=6), store=store)
    hardware = store_hardware(store)
    at = open_page("pages/3_Budget_planner.py")
    at.sidebar.toggle(key="own_device").set_value(True).run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert f"{hardware.flops_per_s:.3g} FLOP/s" in captions and "1 run(s)" in captions
    assert any("device hours" in c.value for c in at.caption)
    paper = open_page("pages/3_Budget_planner.py")
    n_star = lambda page: next(m.value for m in page.metric if m.label.startswith("N*"))  # noqa: E731
    assert n_star(at) != n_star(paper)  # a CPU's FLOP/s, not an A100's at 25%


def test_without_runs_the_device_toggle_says_why():
    at = open_page("pages/3_Budget_planner.py")
    at.sidebar.toggle(key="own_device").set_value(True).run()
    assert not at.exception
    assert any("no completed run with a wall time" in e.value for e in at.error)


def test_on_the_demo_the_device_toggle_says_its_runs_were_not_trained_here_and_what_to_do(demo_store):
    completed = len(demo_store.runs(status="completed"))
    at = open_page("pages/3_Budget_planner.py")
    at.sidebar.toggle(key="own_device").set_value(True).run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert f"{completed} completed run(s) were not trained here (by source: {completed} demo)" in message
    assert "train a run on this device first (engine sweep, or the Runs page)" in message
    assert "turn off 'Price compute on the device of this store's runs'" in message
