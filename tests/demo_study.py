"""The demo study in tests. The committed file (demo/cpu-study.json) is read for its
structure only: tests that need a demo-like store with known properties build one from
known laws (`write_synthetic_demo`), so a rerun of the demo study changes no test. The
few demo numbers worth pinning live in tests/golden/demo_summary.json alone
(`python tests/golden/regenerate.py` rewrites it after a rerun)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from engine.eval_protocol import better_than_random
from engine.laws import ScalingLaw
from store.demo import PROJECT_ROOT, read_demo

DEMO = PROJECT_ROOT / "demo" / "cpu-study.json"  # tests/conftest.py hides store.demo.DEMO_FILE from the app


def main_study(rows: pd.DataFrame) -> pd.DataFrame:
    """The squad-dev runs on human pairs: the demo's main study."""
    return rows[(rows["dataset"] == "squad-dev") & (rows["annotation"] == "human")]


def demo_points(path: Path = DEMO) -> pd.DataFrame:
    """n, d, loss of the demo's main study runs that beat a random scorer (as the Fit page fits them)."""
    return better_than_random(main_study(read_demo(path)[1]))[0][["n", "d", "loss"]]


# --- a demo file from known laws ---------------------------------------------------------

SIZES = (39_104, 104_064, 154_048, 313_856, 512_128, 1_842_688)   # the scratch ladder's
DATA = (500, 1000, 2000, 4000, 8000)
ICT_SIZES = SIZES[:5:2]
HUMAN = ScalingLaw("joint", {"A": 2e3, "B": 50.0, "alpha": 0.5, "beta": 0.5, "delta": 2.0})
ICT_WORTH = 1 / 100     # an ICT pair teaches what a hundredth of a human pair does
NOISE = 0.003
PROTOCOL = {"eval_negatives": 256, "eval_repeats": 3, "eval_pool": 100_000, "eval_pool_seed": 0,
            "eval_test_pairs": 752, "eval_max_query_length": 32, "eval_max_passage_length": 96,
            "eval_precision": "fp32", "eval_test_split": "test:0123456789ab", "eval_metric": "raw"}
STUDY = {"title": "synthetic study from known laws", "datasets": ["squad-dev"], "hardware": "none",
         "date": "2026-01-01", "commands": ["tests/demo_study.py"]}


def synthetic_rows(seed: int = 0) -> pd.DataFrame:
    """Demo rows of squad-dev: human pairs on 6 sizes x 5 data sizes from HUMAN, ICT pairs on
    3 of the sizes from the same law at ICT_WORTH of their count, 0.3% noise; every run
    better than a random scorer (log 257), ranking metrics falling as the entropy rises."""
    rng = np.random.default_rng(seed)
    runs = [(n, d, "human", d) for n in SIZES for d in DATA]
    runs += [(n, d, "ict", d * ICT_WORTH) for n in ICT_SIZES for d in DATA]
    n, d, annotation, worth = (np.array(column) for column in zip(*runs))
    loss = HUMAN.predict(n, worth) * np.exp(rng.normal(0, NOISE, len(runs)))
    mrr = np.exp(-(loss - HUMAN.params["delta"])) / 2
    return pd.DataFrame({
        "run_id": [f"syn-{a}-m{size}-D{pairs}-s0" for size, pairs, a in zip(n, d, annotation)],
        "model": [f"m{size}" for size in n], "n": n, "d": d, "loss": loss, "calibrated_loss": loss - 0.1,
        "dataset": "squad-dev", "annotation": annotation, "mrr@10": mrr, "ndcg@10": mrr + 0.05,
        "map@10": mrr, "recall@1000": 0.9 - 0.05 * loss, "metrics_loss": loss, "best_step": 400,
        **PROTOCOL,
    })


def write_synthetic_demo(path: Path, rows: pd.DataFrame | None = None) -> Path:
    """A demo study file of `rows` (default: synthetic_rows()) at `path`, for store.demo.load_demo."""
    rows = synthetic_rows() if rows is None else rows
    records = json.loads(rows.to_json(orient="records"))
    path.write_text(json.dumps({"study": STUDY, "runs": records}), encoding="utf-8")
    return path
