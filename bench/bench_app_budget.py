"""Benchmark: server time of the Budget planner re-rendering after a cost slider
moves (target <= 300 ms), measured as Streamlit's AppTest rerun of the page: the
whole script (optimisation, band, curves for every budget, Altair specs) plus
serialising what it draws. Two laws: the paper's preset, and a saved joint fit
with 1,000 bootstrap refits (the loss interval at the optimum needs all of them, and
the decision panel solves the budget problem under each: N* interval, robust N,
regret, the N* spread drawn on the chart). The two pages' moves are interleaved, so
a busy machine slows both alike.

    .venv/bin/python bench/bench_app_budget.py [--moves 30]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from bench.bench_laws import machine  # noqa: E402
from engine.charts import fit_record  # noqa: E402
from engine.laws import FitConfig, fit_law, preset  # noqa: E402
from store import Store  # noqa: E402

PRICES = (0.6, 0.9, 1.2, 0.45)   # $ per annotated pair: the slider positions visited in turn
TARGET_MS = 300


def saved_joint_fit(store: Store) -> str:
    """A joint law fitted to 50 points with 1,000 bootstrap refits, saved as the app saves it."""
    rng = np.random.default_rng(0)
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(5e5, 9e7, 10), np.geomspace(1e3, 5e5, 5)))
    loss = preset("paper-joint").predict(n, d) * np.exp(rng.normal(0, 0.01, n.size))
    fit = fit_law(pd.DataFrame({"n": n, "d": d, "loss": loss}), "joint", FitConfig(bootstrap=1000))
    return store.save_fit(**fit_record(fit, "bench joint fit", {"source": "bench"}))


def planner(law: str) -> AppTest:
    """The Budget planner on `law`, caches warm."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/3_Budget_planner.py").run()
    at.selectbox(key="law").set_value(law).run()
    at.slider(key="price_per_pair").set_value(PRICES[1]).run()
    return at


def slider_moves(pages: dict[str, AppTest], moves: int) -> dict[str, list[float]]:
    """Milliseconds of each rerun after the price slider moves, page by page in turn."""
    times = {label: [] for label in pages}
    for move in range(moves):
        for label, at in pages.items():
            at.slider(key="price_per_pair").set_value(PRICES[move % len(PRICES)])
            start = time.perf_counter()
            at.run()
            times[label].append(1000 * (time.perf_counter() - start))
            assert not at.exception and not at.error, "the page failed while benchmarking"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=30, help="slider moves timed per law")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["WORKBENCH_STORE"] = str(Path(folder) / "bench.duckdb")
        fit_id = saved_joint_fit(Store())
        print(machine())
        pages = {"paper-joint (preset)": planner("paper-joint"), "saved fit, 1,000 bootstraps": planner(fit_id)}
        assert any(m.label.startswith("N* ") and "interval" in m.label for m in pages["saved fit, 1,000 bootstraps"].metric), \
            "the saved fit's page shows no N* interval"
        print(f"{'law':<28}{'median ms':>10}{'p90 ms':>8}{'max ms':>8}   target <= {TARGET_MS} ms")
        for label, times in slider_moves(pages, args.moves).items():
            p90 = statistics.quantiles(times, n=10)[-1]
            verdict = "ok" if p90 <= TARGET_MS else "SLOW"
            print(f"{label:<28}{statistics.median(times):>10.0f}{p90:>8.0f}{max(times):>8.0f}   {verdict}")


if __name__ == "__main__":
    main()
