"""The Fit laws page's settings in a form: nothing is fitted until **Fit** is pressed, the
bootstrap reports its progress to the page, and the last fit stays when a new one fails."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.laws import FitConfig, fit_law, preset
from tests.helpers import assert_clean, open_page, table_with

FIT_PAGE = "pages/2_Fit_laws.py"


def law_points(kind: str = "joint") -> pd.DataFrame:
    n = np.repeat([1e5, 1e6, 1e7, 1e8], 3)
    d = np.tile([1e4, 1e5, 1e6], 4)
    return pd.DataFrame({"n": n, "d": d, "loss": preset("paper-joint").predict(n, d)})


def test_fit_law_reports_bootstrap_progress():
    calls = []
    fit_law(law_points(), "joint", FitConfig(bootstrap=20), progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 20) and calls[-1] == (20, 20)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def parameters(at) -> list[str]:
    return list(table_with(at, "parameter")["parameter"])


@pytest.fixture
def counted_fits(monkeypatch):
    """Every fit_law call the page makes, with the progress reports it received."""
    import engine.laws

    real, calls = engine.laws.fit_law, []

    def fit_law(points, kind, config=engine.laws.FitConfig(), progress=None):
        reports = []
        calls.append({"kind": kind, "bootstrap": config.bootstrap, "reports": reports})
        return real(points, kind, config, progress=lambda done, total: (reports.append((done, total)),
                                                                         progress and progress(done, total)))

    monkeypatch.setattr(engine.laws, "fit_law", fit_law)
    return calls


@pytest.mark.slow
def test_a_settings_change_fits_nothing_until_fit_is_pressed(seeded_store, counted_fits):
    at = open_page(FIT_PAGE)
    assert_clean(at)
    assert len(counted_fits) == 1 and parameters(at) == ["A", "alpha", "delta"]   # the first visit fits once
    at.radio(key="fit_kind").set_value("joint").run()
    at.selectbox(key="fit_annotation").set_value("human").run()
    assert len(counted_fits) == 1, "changing settings must not refit"
    assert parameters(at) == ["A", "alpha", "delta"], "the last fit stays on screen"
    assert any("earlier settings" in i.value for i in at.info)
    at.button(key="fit_submit").click().run()
    assert_clean(at)
    assert len(counted_fits) == 2 and parameters(at) == ["A", "B", "alpha", "beta", "delta"]
    assert not any("earlier settings" in i.value for i in at.info)
    at.radio(key="fit_axis").set_value("d").run()                 # a chart setting: no refit
    assert len(counted_fits) == 2


@pytest.mark.slow
def test_the_bootstrap_reports_progress_to_the_page(seeded_store, counted_fits):
    at = open_page(FIT_PAGE)
    assert_clean(at)
    [call] = counted_fits
    assert call["reports"][-1] == (call["bootstrap"], call["bootstrap"]) and call["bootstrap"] > 0


@pytest.mark.slow
def test_the_last_fit_stays_when_a_new_one_fails(seeded_store, monkeypatch):
    import engine.laws
    from engine.errors import InputError

    at = open_page(FIT_PAGE)
    before = table_with(at, "parameter")

    def failing(*args, **kwargs):
        raise InputError("the new fit failed")

    monkeypatch.setattr(engine.laws, "fit_law", failing)
    at.radio(key="fit_kind").set_value("data").run()
    at.button(key="fit_submit").click().run()
    assert not at.exception
    assert "the new fit failed" in at.error[0].value
    pd.testing.assert_frame_equal(table_with(at, "parameter"), before)
    notices = [i.value for i in at.info if i.value.startswith("The result below is for earlier settings")]
    assert notices == ["The result below is for earlier settings: the new fit failed (see above)."]  # no fit to wait for
