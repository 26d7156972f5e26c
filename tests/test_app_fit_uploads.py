"""The Fit laws page with uploaded files: the same file gives the same fit however many
other files were uploaded in the session, and a European Excel file (';' and decimal
commas) is read."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from engine.eval_protocol import random_scorer_loss
from tests.helpers import assert_clean, metric, open_page

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


@pytest.mark.slow
def test_a_files_default_left_out_points_survive_another_upload():
    at = open_page(FIT)
    at.radio(key="fit_source").set_value("Upload a CSV")
    at.radio(key="fit_kind").set_value("joint").run()
    first, second = study_csv(0, 3), study_csv(1, 2)
    assert len(upload(at, "first.csv", first)) == 3
    assert len(upload(at, "second.csv", second)) == 2       # before: the first file's choice, filtered to none
    assert len(upload(at, "first.csv", first)) == 3


@pytest.mark.slow
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


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256))


GOOD_ROWS = [(1e5, 1000, 2.0), (1e6, 1000, 1.5), (1e7, 1000, 1.2), (1e8, 1000, 1.1), (1e9, 1000, 1.05)]


def csv_bytes(rows, delimiter: str = ",", bad_line: str | None = None) -> bytes:
    lines = [delimiter.join(("n", "d", "loss", "label"))]
    lines += [delimiter.join((f"{n:.0f}", str(d), str(loss), f"run{i}")) for i, (n, d, loss) in enumerate(rows)]
    if bad_line is not None:
        lines.insert(3, bad_line)                  # becomes line 4 of the file (header = line 1)
    return ("\n".join(lines) + "\n").encode()


def test_the_store_names_a_binary_file_and_a_wrong_encoding_in_words(tmp_path):
    from engine.errors import InputError
    from store import Store

    (tmp_path / "plot.csv").write_bytes(PNG)
    with pytest.raises(InputError, match=r"plot.csv is not a text file \(it looks like a PNG image\)") as err:
        Store().import_file(tmp_path / "plot.csv")
    assert "codec" not in str(err.value)
    (tmp_path / "latin.csv").write_bytes("n,d,loss,label\n1,2,3,ok\n4,5,6,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8 text \(line 3 has the byte 0xe9") as err:
        Store().import_file(tmp_path / "latin.csv")
    assert "codec" not in str(err.value)


def test_the_store_imports_a_semicolon_file_and_reports_bad_lines_by_file_line(tmp_path):
    from store import Store

    path = tmp_path / "semi.csv"
    path.write_bytes(csv_bytes(GOOD_ROWS, ";", bad_line="abc;-4;x;bad"))
    report = Store().import_file(path)
    assert report.imported == len(GOOD_ROWS)
    [(line, reason)] = report.rejected
    assert line == 4
    assert all(column in reason for column in ("n: 'abc'", "d must be greater than 0", "loss: 'x'")), reason


def upload_csv(at, name: str, data: bytes):
    """Choose the upload and give it a file; the page after it (errors included)."""
    at.radio(key="fit_source").set_value("Upload a CSV").run()
    at.file_uploader(key="fit_upload").set_value((name, data, "text/csv")).run()
    return at


@pytest.mark.slow
def test_an_upload_fits_its_good_rows_and_lists_the_bad_ones_by_line():
    at = upload_csv(open_page(FIT), "mixed.csv", csv_bytes(GOOD_ROWS, bad_line="abc,-4,x,bad"))
    at.button(key="fit_submit").click().run()
    assert not at.exception
    [warning] = at.warning
    assert "line 4:" in warning.value and "line 1 is the header" in warning.value
    assert all(column in warning.value for column in ("n: 'abc'", "d must be greater than 0", "loss: 'x'"))
    assert metric(at, "Points fitted") == str(len(GOOD_ROWS))


@pytest.mark.slow
def test_a_semicolon_upload_is_read_and_said_so():
    at = upload_csv(open_page(FIT), "excel.csv", csv_bytes(GOOD_ROWS, ";"))
    at.button(key="fit_submit").click().run()
    assert_clean(at)
    assert any("read as semicolon-separated" in c.value for c in at.caption)
    assert metric(at, "Points fitted") == str(len(GOOD_ROWS))


@pytest.mark.slow
def test_a_png_renamed_csv_gets_a_clear_message():
    at = upload_csv(open_page(FIT), "figure.csv", PNG)
    assert not at.exception
    assert "figure.csv is not a text file (it looks like a PNG image)" in at.error[0].value
    assert "codec" not in at.error[0].value
