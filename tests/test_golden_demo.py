"""The one test that holds the demo study's numbers: a fresh computation from
demo/cpu-study.json against tests/golden/demo_summary.json. After a rerun of the demo
study, `.venv/bin/python tests/golden/regenerate.py` rewrites the golden file; no other
test reads the demo's numbers."""
import json

import pytest

from tests.demo_study import DEMO
from tests.golden.regenerate import GOLDEN, demo_summary


@pytest.mark.skipif(not DEMO.exists(), reason="no demo study committed")
def test_the_demo_study_gives_the_numbers_the_golden_file_holds():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert demo_summary(DEMO) == pytest.approx(golden, rel=1e-4), \
        "the demo study changed: run `.venv/bin/python tests/golden/regenerate.py` and commit the golden file with it"
