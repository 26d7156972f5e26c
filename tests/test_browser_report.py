"""The Fit page's report downloads in a real browser (deferred: rendered on click): the
standalone HTML report, the Markdown report with its figures in a zip, a chart as PNG."""
from __future__ import annotations

import io
import zipfile

import pytest

from test_browser_app import app_url, browser, open_page, page  # noqa: F401 (fixtures; skips without Chromium)

pytestmark = pytest.mark.slow  # starts processes or a browser: `pytest -m "not slow"` leaves it out


def download(page, label: str, target):
    with page.expect_download(timeout=60_000) as pending:
        page.get_by_role("button", name=label).click()
    pending.value.save_as(target)
    return target


def test_fit_report_and_charts_download(page, app_url, tmp_path):
    open_page(page, app_url, "Fit_laws")
    report = download(page, "Report (HTML)", tmp_path / "fit.html").read_text()
    assert report.startswith("<!doctype html>") and "| A |" not in report and "<table>" in report
    assert report.count("<svg") == 2 and "alpha" in report
    archive = zipfile.ZipFile(io.BytesIO(download(page, "Report (Markdown + figures, zip)", tmp_path / "r.zip")
                                         .read_bytes()))
    assert {"report.md", "figures/law.svg", "figures/law.png", "figures/residuals.svg"} <= set(archive.namelist())
    png = download(page, "Law chart (PNG)", tmp_path / "law.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert download(page, "Residuals chart (SVG)", tmp_path / "r.svg").read_text().startswith("<svg")
