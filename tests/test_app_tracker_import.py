"""The Runs page (AppTest): the tracker import form (Preview lists what would be imported
and writes nothing, Import adds the runs, importing again updates them, a bad path is
one message) and the progress of commands running now."""
from __future__ import annotations

import pytest

import time

from store import Store
from tests.helpers import assert_clean, open_page
from tests.test_trackers import write_wandb

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out

PAGE = "pages/1_Runs.py"


def fill(at, path) -> None:
    at.text_input(key="tracker_path").input(str(path))
    at.text_input(key="tracker_loss").input("eval/ce")
    at.text_input(key="tracker_n").input("model_params")
    at.text_input(key="tracker_d").input("train_pairs")
    at.text_input(key="tracker_mrr").input("eval/mrr")


def click(at, label: str) -> None:
    next(b for b in at.form_submit_button if b.label == label).click().run()


def shown(at) -> list[str]:
    return list(at.dataframe[-1].value["action"])


def test_preview_then_import_then_again(tmp_path):
    source = write_wandb(tmp_path / "w")
    at = open_page(PAGE)
    fill(at, source)
    click(at, "Preview")
    assert_clean(at)
    assert shown(at) == ["new", "new"] and len(Store().runs()) == 0
    click(at, "Import")
    assert_clean(at)
    assert "Imported 2 of 2 run(s)" in at.success[-1].value
    assert sorted(Store().law_points(source="tracker")["n"]) == [1000, 8000]
    click(at, "Preview")
    assert shown(at) == ["update", "update"] and len(Store().runs()) == 2


def test_a_bad_path_is_one_message(tmp_path):
    at = open_page(PAGE)
    fill(at, tmp_path / "nothing-here")
    click(at, "Preview")
    assert not at.exception and "no such file or folder" in at.error[-1].value


def test_commands_running_now_show_their_progress(tmp_path):
    from engine.command_progress import CommandProgress

    with CommandProgress("import", total=4, unit="run") as progress:
        time.sleep(1.05)                                   # the file is rewritten at most once a second
        progress.advance(detail="small")
        at = open_page(PAGE)
        assert_clean(at)
        bars = [bar for bar in at.get("progress") if bar.text.startswith("import (pid")]
        assert len(bars) == 1 and bars[0].value == 25 and "1 of 4 run · small" in bars[0].text
    assert not [bar for bar in open_page(PAGE).get("progress") if bar.text.startswith("import (pid")]
