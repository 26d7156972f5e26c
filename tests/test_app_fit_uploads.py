"""The Fit laws page with uploaded files: the same file gives the same fit however many
other files were uploaded in the session, and a European Excel file (';' and decimal
commas) is read."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from engine.eval_protocol import random_scorer_loss
from tests.test_app import assert_clean, open_page

FIT = "pages/2_Fit_laws.py"
RANDOM = random_scorer_loss(None)     # log(1 + 256): no better than a random scorer


def study_csv(seed: int, random_rows: int) -> bytes:
    """A joint study of 12 runs whose last `random_rows` are no better than random."""
    rng = np.random.default_rng(seed)
    n, d = np.repeat([1e5, 1e6, 1e7], 4), np.tile([1e3, 3e3, 1e4, 3e4], 3)
    loss = ((3e4 / n) ** (0.5 / 1.2) + 700 / d) ** 1.2 * 0.5 + 0.5 + rng.normal(0, 0.01, n.size)
    loss[-random_rows:] = RANDOM + 0.05
    return pd.DataFrame({"n": n.astype(int), "d": d.astype(int), "loss": loss}).to_csv(index=False).encode()


def upload(at, name: str, data: bytes):
    at.file_uploader(key="fit_upload").set_value((name, data, "text/csv")).run()
    assert_clean(at)
    return next(m for m in at.multiselect if m.label == "Leave points out of the fit").value


def test_a_files_default_left_out_points_survive_another_upload():
    at = open_page(FIT)
    at.radio(key="fit_source").set_value("Upload a CSV")
    at.radio(key="fit_kind").set_value("joint").run()
    first, second = study_csv(0, 3), study_csv(1, 2)
    assert len(upload(at, "first.csv", first)) == 3
    assert len(upload(at, "second.csv", second)) == 2       # before: the first file's choice, filtered to none
    assert len(upload(at, "first.csv", first)) == 3


def test_a_european_excel_upload_is_read_and_the_page_says_how():
    """n;d;loss rows with decimal commas (100000;1000;2,5). Before: every row rejected as not a number."""
    at = open_page(FIT)
    at.radio(key="fit_source").set_value("Upload a CSV")
    at.radio(key="fit_kind").set_value("joint").run()
    rows = pd.read_csv(io.BytesIO(study_csv(0, 1)))
    text = "n;d;loss\n" + "".join(f"{n};{d};{loss:.4f}".replace(".", ",") + "\n" for n, d, loss in rows.values)
    upload(at, "excel.csv", text.encode())
    assert any("read as semicolon-separated, its decimal commas as decimal points" in c.value for c in at.caption)
    assert not at.error and not any("rejected" in w.value or "not a number" in w.value for w in at.warning)
