#!/usr/bin/env bash
# The CPU demo study of issue 8, end to end, in one command:
#   bash sweeps/run-cpu-study.sh [STUDY_DIR]
# ICT pairs for squad-dev, the three sweeps (squad-dev human 6 x 5, squad-dev ICT
# 3 x 5, cmrc2018 5 sizes) into a fresh store in STUDY_DIR (default: study/), then the
# demo file (demo/cpu-study.json) and, from it, the report and figures (docs/study/).
# Runs already complete in STUDY_DIR's store are skipped, so a rerun resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
study_dir=$(realpath -m "${1:-study}")
export WORKBENCH_STORE="$study_dir/workbench.duckdb" WORKBENCH_RUNS="$study_dir/runs"
python=${PYTHON:-.venv/bin/python}
start=$(date +%s)
$python -m engine annotate ict --dataset ../shared/data/squad-dev --out annotations/squad-ict
for sweep in squad-scratch-study squad-ict-study cmrc-scratch-study; do
  $python -m engine sweep "sweeps/$sweep.toml"
done
minutes=$(( ($(date +%s) - start) / 60 ))
$python - "$minutes" > "$study_dir/study.json" <<'PY'
import json, os, platform, subprocess, sys, time
import torch
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(json.dumps({
    "title": "from-scratch retrievers on squad-dev and cmrc2018, 2-core CPU",
    "summary": "Six from-scratch models (39k to 1.8M non-embedding parameters) trained on 500 to 7,719 "
               "squad-dev pairs with human annotations, three of them on ICT pairs, and five sizes on "
               "cmrc2018; 400 steps each, bf16 autocast.",
    "datasets": ["squad-dev", "cmrc2018"],
    "hardware": f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}",
    "date": time.strftime("%Y-%m-%d"),
    "commands": ["bash sweeps/run-cpu-study.sh"],
    "sweep_files": ["sweeps/squad-scratch-study.toml", "sweeps/squad-ict-study.toml", "sweeps/cmrc-scratch-study.toml"],
    "wall_time_min": int(sys.argv[1]),
    "code_version": subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip(),
}, indent=1))
PY
$python -m store demo write --store "$WORKBENCH_STORE" --meta "$study_dir/study.json"
# the report and figures come from the demo file as a fresh store loads it: the same numbers the app shows
rm -f "$study_dir/demo.duckdb"
$python -m store demo load --store "$study_dir/demo.duckdb"
$python -m engine study --store "$study_dir/demo.duckdb" --source demo --out docs/study
