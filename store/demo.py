"""The demo study: results of a real scaling study on CPU (demo/cpu-study.json), loaded
into a fresh store on its first launch so the app opens on real fitted laws, labelled
as a demo (data sets, hardware, date, command), and removable in one action. A
removed demo stays removed; `load_demo` brings it back.

The file holds numbers only (one row per run: N, D, best raw and calibrated contrastive
entropy, ranking metrics, the evaluation protocol as eval_* columns), never the data sets. `write_demo` makes it from the store the study's sweeps
wrote to:

    python -m store demo write --store STUDY.duckdb --meta META.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from engine.errors import InputError
from engine.paths import PROJECT_ROOT
from store.results_store import Store
from engine.eval_protocol import COLUMN_PREFIX, PROTOCOL_COLUMNS, check_fingerprint, trained_calibrated
from store.table_import import (CALIBRATED_LOSS_COLUMN, METRIC_COLUMNS, METRICS_CALIBRATED_COLUMN, METRICS_LOSS_COLUMN,
                           STEP_COLUMNS, TRAINED_CALIBRATED_COLUMN)
from store.json_values import utc_now

DEMO_FILE = PROJECT_ROOT / "demo" / "cpu-study.json"
SETTING = "demo"  # {"state": "loaded" | "removed", "at": ISO time}
ROW_COLUMNS = ("run_id", "model", "n", "d", "loss", CALIBRATED_LOSS_COLUMN, "dataset", "annotation", *METRIC_COLUMNS,
               TRAINED_CALIBRATED_COLUMN, METRICS_LOSS_COLUMN, METRICS_CALIBRATED_COLUMN, *STEP_COLUMNS, "wall_time_s", *PROTOCOL_COLUMNS)


def read_demo(path: Path | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """(what the study was: data sets, hardware, date, commands; its rows), the file's
    shape checked (the rows' values are checked when they are loaded)."""
    path = path or DEMO_FILE
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: nested 100k deep
        raise InputError(f"{path}: not a readable demo study file ({err})") from err
    problem = _shape_problem(content)
    if problem:
        raise InputError(f"{path}: not a demo study file: {problem}")
    return content["study"], pd.DataFrame(content["runs"])


def read_demo_references(path: Path | None = None) -> list[dict[str, Any]]:
    """The demo's lexical references (engine/lexical.py), each {dataset, method,
    eval_fingerprint, metrics}; none in a file written before they were kept."""
    references = json.loads(Path(path or DEMO_FILE).read_text(encoding="utf-8")).get("references", [])
    if not isinstance(references, list) or not all(
            isinstance(r, dict) and {"dataset", "method", "eval_fingerprint", "metrics"} <= r.keys()
            for r in references):
        raise InputError(f"{path or DEMO_FILE}: \"references\" must be a list of objects with dataset, method, "
                         "eval_fingerprint and metrics")
    for reference in references:
        check_fingerprint(reference["eval_fingerprint"])
    return references


def _shape_problem(content: Any) -> str | None:
    """What keeps `content` from being {"study": {"title": ...}, "runs": [{"run_id": ...}, ...]}."""
    if not isinstance(content, dict) or not {"study", "runs"} <= content.keys():
        return 'expected a JSON object with "study" and "runs"'
    if not isinstance(content["study"], dict) or not isinstance(content["study"].get("title"), str):
        return '"study" must be an object with a "title" text'
    runs = content["runs"]
    if not isinstance(runs, list) or not runs or not all(isinstance(run, dict) for run in runs):
        return '"runs" must be a non-empty list of objects'
    without_id = [number for number, run in enumerate(runs, 1) if not isinstance(run.get("run_id"), str)]
    if without_id:
        return f"run(s) {', '.join(map(str, without_id[:5]))} lack a \"run_id\" text"
    return None


def demo_label(study: dict[str, Any]) -> str:
    return f"demo: {study['title']}"


def load_demo(store: Store, path: Path | None = None) -> int:
    """Replace any demo rows in `store` by the file's; return how many were loaded. The
    whole file is checked first: a bad one leaves the loaded demo as it was."""
    study, rows = read_demo(path)
    references = read_demo_references(path)
    labelled = rows.assign(label=demo_label(study) + " / " + rows["run_id"])
    try:
        loaded = store.replace_rows(labelled, source="demo", origin={"demo_study": study})
    except InputError as err:
        raise InputError(f"{path or DEMO_FILE}: {err}; the loaded demo is unchanged") from err
    for reference in references:
        store.add_reference(**{key: reference[key] for key in ("dataset", "method", "eval_fingerprint", "metrics")},
                            source="demo")
    store.set_setting(SETTING, {"state": "loaded", "at": utc_now().isoformat(), "rows": loaded})
    return loaded


def ensure_demo(store: Store, path: Path | None = None) -> int:
    """On a store's first launch, load the demo; afterwards (loaded or removed) do
    nothing. Returns the rows loaded now."""
    if store.setting(SETTING) is not None or not Path(path or DEMO_FILE).exists():
        return 0
    return load_demo(store, path)


def remove_demo(store: Store) -> int:
    """Delete the demo's rows and remember that it was removed."""
    removed = store.remove_demo()
    store.set_setting(SETTING, {"state": "removed", "at": utc_now().isoformat(), "rows": removed})
    return removed


def demo_state(store: Store) -> str:
    """'loaded', 'removed' or 'never' (a store that has not been launched by the app)."""
    return (store.setting(SETTING) or {}).get("state", "never")


def demo_rows(store: Store) -> pd.DataFrame:
    """One row per completed engine run of `store`: what the demo file keeps."""
    runs = store.runs(status="completed")
    runs = runs[runs["source"] == "engine"]
    if runs.empty:
        raise InputError(f"{store.path}: no completed runs to write as a study")
    metrics = pd.DataFrame([m or {} for m in runs["metrics"]], index=runs.index)
    rows = pd.DataFrame({
        "run_id": runs["run_id"], "model": runs["model_name"], "n": runs["n_params"], "d": runs["train_pairs"],
        "loss": runs["best_contrastive_entropy"], "dataset": runs["dataset"], "annotation": runs["annotation"],
        "wall_time_s": runs["wall_time_s"],
    })
    for column in METRIC_COLUMNS:
        rows[column] = metrics[column] if column in metrics else None
    last_evaluation = _last_evaluated_entropy(store)
    rows[METRICS_LOSS_COLUMN] = [(m or {}).get("contrastive_entropy", last_evaluation.get(run_id))
                                 for run_id, m in zip(runs["run_id"], runs["metrics"])]
    rows[CALIBRATED_LOSS_COLUMN] = runs["best_calibrated_entropy"]
    points = store.points()
    for column, step in zip(STEP_COLUMNS, _best_steps(points)):
        rows[column] = [step.get(run_id) for run_id in runs["run_id"]]
    trained = trained_calibrated(points)
    rows[TRAINED_CALIBRATED_COLUMN] = [trained.get(run_id) for run_id in runs["run_id"]]
    rows[METRICS_CALIBRATED_COLUMN] = [(m or {}).get("calibrated_entropy") for m in runs["metrics"]]
    for column in PROTOCOL_COLUMNS:  # the run's evaluation fingerprint, as an import's columns
        name = column.removeprefix(COLUMN_PREFIX)
        rows[column] = [(f or {}).get(name) if isinstance(f, dict) else None for f in runs["eval_fingerprint"]]
    return rows[list(ROW_COLUMNS)].sort_values(["dataset", "annotation", "n", "d"]).reset_index(drop=True)


def _last_evaluated_entropy(store: Store) -> dict[str, float]:
    """run id -> entropy of its last evaluation point: that of its ranking metrics for
    runs recorded before the engine kept the entropy with them."""
    points = store.points().dropna(subset=["contrastive_entropy"]).sort_values("step")
    return points.groupby("run_id")["contrastive_entropy"].last().to_dict()


def _best_steps(points: pd.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """run id -> the step of its lowest raw, and of its lowest calibrated, entropy (the
    first such step; 0 is the untrained model)."""
    steps = []
    for column in ("contrastive_entropy", "calibrated_entropy"):
        measured = points.dropna(subset=[column]) if column in points else points.iloc[:0]
        lowest = measured.sort_values(["run_id", column, "step"]).groupby("run_id").first()
        steps.append({run_id: int(step) for run_id, step in lowest["step"].items()})
    return steps[0], steps[1]


def write_demo(store: Store, study: dict[str, Any], out: Path | None = None) -> Path:
    """Write the completed runs of `store` with `study` (title, data sets, hardware,
    date, commands) as a demo file."""
    if "title" not in study:
        raise InputError("the study description needs a 'title'")
    rows = demo_rows(store)
    out = Path(out or DEMO_FILE)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(rows.to_json(orient="records", double_precision=6))
    stored = store.references()
    references = [{"dataset": r["dataset"], "method": r["method"], "eval_fingerprint": r["eval_fingerprint"],
                   "metrics": {k: round(v, 6) for k, v in r["metrics"].items()}}
                  for r in stored[stored["source"] == "engine"].to_dict("records")]
    out.write_text(json.dumps({"study": study, "runs": records, "references": references}, indent=1) + "\n",
                   encoding="utf-8")
    return out
