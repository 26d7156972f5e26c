"""Issue 12, items 14-16 and 18-20: the app as a new user finds it (AppTest), the
chart tables and specs behind it, CSV upload through the store, and one way of
writing counts. tests/conftest.py gives every test a fresh store."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.laws import FitConfig, fit_law, preset


def law_points(kind: str = "joint") -> pd.DataFrame:
    n = np.repeat([1e5, 1e6, 1e7, 1e8], 3)
    d = np.tile([1e4, 1e5, 1e6], 4)
    return pd.DataFrame({"n": n, "d": d, "loss": preset("paper-joint").predict(n, d)})


# --- item 15: progress of the bootstrap -------------------------------------------------

def test_fit_law_reports_bootstrap_progress():
    calls = []
    fit_law(law_points(), "joint", FitConfig(bootstrap=20), progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 20) and calls[-1] == (20, 20)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
