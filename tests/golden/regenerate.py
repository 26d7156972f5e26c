"""The few numbers of the demo study worth pinning, computed afresh from demo/cpu-study.json
as `engine study` computes them (point fits; the report's intervals need its bootstrap).
tests/test_golden_demo.py compares them with demo_summary.json; after a rerun of the demo
study, rewrite that file and commit it with the new demo:

    .venv/bin/python tests/golden/regenerate.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("demo_summary.json")
BUDGET = 20_000.0      # the README's planner example: the demo's joint fit, $20,000, no inference


def demo_summary(demo: Path) -> dict:
    """Name -> number: run counts, the main study's support, R² of Eq. 6-8 and N* at
    BUDGET (raw entropy, as the report fits them), and the Pearson r of each entropy, as
    the Analysis page pairs it with MRR@10, over every run of the main study."""
    from engine.analysis import metric_correlations, with_entropy
    from engine.budget import BudgetQuestion, extrapolation, optimise
    from engine.study import StudyConfig, build_report
    from store import Store
    from store.demo import load_demo

    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "demo.duckdb")
        load_demo(store, demo)
        runs = store.runs(status="completed")
    report = build_report(runs, StudyConfig(bootstrap=0))
    answer = optimise(report.joint_law, BudgetQuestion(BUDGET))
    reach = extrapolation(report.joint_law, answer.n_opt, answer.d_opt)
    main_runs = runs[(runs["dataset"] == "squad-dev") & (runs["annotation"] == "human")]
    pearson = {metric: float(metric_correlations(with_entropy(main_runs, metric), ["mrr@10"])["pearson"].iloc[0])
               for metric in ("raw", "calibrated")}
    points = report.points
    counts = runs.groupby(["dataset", "annotation"]).size()
    return {
        **{f"runs {dataset}/{annotation}": int(count) for (dataset, annotation), count in counts.items()},
        "main study runs fitted": len(points),
        "main study N min": float(points["n"].min()), "main study N max": float(points["n"].max()),
        "main study D min": float(points["d"].min()), "main study D max": float(points["d"].max()),
        "R² Eq. 6 (at the largest D)": report.model_law.r2, "R² Eq. 7 (at the largest N)": report.data_law.r2,
        "R² Eq. 8": report.joint_law.r2,
        f"N* at ${BUDGET:,.0f}": answer.n_opt, f"D* at ${BUDGET:,.0f}": answer.d_opt,
        f"N* at ${BUDGET:,.0f} over the largest fitted N": reach.n,
        **{f"Pearson r, {metric} entropy with MRR@10": r for metric, r in pearson.items()},
    }


def main() -> int:
    sys.path.insert(0, str(ROOT))
    summary = demo_summary(ROOT / "demo" / "cpu-study.json")
    GOLDEN.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
