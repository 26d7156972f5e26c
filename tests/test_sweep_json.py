"""`engine sweep --json`: stdout carries exactly one JSON object, for the dry run and
for a real sweep; progress lines go to stderr."""
import json
import subprocess
import sys

import pytest

from engine.sweep import load_sweep
from store import Store
from tests.conftest import ROOT
from tests.helpers import write_synthetic
from tests.test_sweep import write_sweep

pytestmark = pytest.mark.slow  # starts processes or a browser: `pytest -m "not slow"` leaves it out


def sweep_json(*argv):
    result = subprocess.run([sys.executable, "-m", "engine", "sweep", *map(str, argv), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    return result, json.loads(result.stdout)         # fails unless stdout is one JSON document


def test_dry_run_prints_one_json_object_with_every_run(tmp_path):
    path = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"), pairs="[100, 200, 300]")
    result, report = sweep_json(path, "--dry-run", "--shard", "1/2")
    assert result.returncode == 0, result.stderr
    expected = [run.run_id for run in load_sweep(path).runs][1::2]
    assert [row["run_id"] for row in report["runs"]] == expected
    assert report["sweep"] == "t" and report["dry_run"] is True
    assert all(row["flops"] > 0 and row["seconds"] > 0 for row in report["runs"])
    assert report["total_seconds"] == sum(row["seconds"] for row in report["runs"])
    assert all(peak > 0 for peak in report["matmul_peak_flops"].values())
    assert "matmul peak" in result.stderr             # the log line moved to stderr


def test_sweep_prints_its_outcome_as_one_json_object(tmp_path):
    path = write_sweep(tmp_path, write_synthetic(tmp_path / "syn"), pairs="[100]")
    path.write_text(path.read_text().replace("steps = 40", "steps = 4").replace("eval_every = 20", "eval_every = 4"))
    store_path = tmp_path / "s.duckdb"
    result, report = sweep_json(path, "--store", store_path)
    assert result.returncode == 0, result.stderr
    assert report == {"sweep": "t", "runs": 1, "completed": 1, "failed": 0}
    assert "started t-scratch-L1-H32-D100" in result.stderr
    assert list(Store(store_path).runs()["status"]) == ["completed"]
    (progress_file,) = (tmp_path / "runs" / ".commands").glob("sweep-*.json")   # conftest's WORKBENCH_RUNS
    progress = json.loads(progress_file.read_text())
    assert (progress["done"], progress["total"], progress["status"]) == (1, 1, "completed")
