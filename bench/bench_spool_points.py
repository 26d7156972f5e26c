"""Writing a tracker import's points to the store: one `add_point` (one fsync) per point
against one `add_points` (one fsync) for all, side by side in one run, then both ingested
and compared. The tracker importer (store/trackers.py) uses `add_points`.

    .venv/bin/python bench/bench_spool_points.py --points 2000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store import Store  # noqa: E402


def points(n: int) -> list[dict]:
    return [{"step": step, "contrastive_entropy": 5.5 - step / (2 * n), "metrics": {"mrr@10": step / (10 * n)}}
            for step in range(n)]


def timed_import(store: Store, run_id: str, rows: list[dict], batched: bool) -> float:
    store.start_run(config={}, model_name="m", n_params=1, n_params_strict=1, train_pairs=1, annotation="human",
                    dataset="bench", seed=0, device="cpu", code_version="bench", run_id=run_id)
    start = time.perf_counter()
    if batched:
        store.add_points(run_id, rows)
    else:
        for row in rows:
            store.add_point(run_id, wall_time_s=None, **row)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2000)
    args = parser.parse_args()
    rows = points(args.points)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.duckdb")
        one_by_one = timed_import(store, "one-by-one", rows, batched=False)
        batched = timed_import(store, "batched", rows, batched=True)
        stored = store.points()
        same = (stored[stored.run_id == "one-by-one"]["contrastive_entropy"].to_numpy()
                == stored[stored.run_id == "batched"]["contrastive_entropy"].to_numpy()).all()
    print(f"{args.points:,} points: add_point each {one_by_one:.2f} s, add_points once {batched:.3f} s "
          f"({one_by_one / batched:.0f}x); same points stored: {bool(same)}")


if __name__ == "__main__":
    main()
