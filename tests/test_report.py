"""Reports out (engine/report.py): Markdown with SVG/PNG figures, a standalone HTML
file that cannot be injected into through names, a zip for downloads, and a fit's
report with its parameters, intervals and held-out points."""
import io
import zipfile

import altair as alt
import numpy as np
import pandas as pd

from engine.formatting import format_percent, format_r2
from engine.laws import FitConfig, fit_law, joint_law
from engine.report import ReportDocument, chart_png, chart_svg, fit_charts, fit_document

POINTS = pd.DataFrame({"x": [1, 2, 3], "y": [3.0, 2.0, 1.5]})


def chart():
    return alt.Chart(POINTS).mark_line().encode(x="x", y="y")


def test_chart_as_svg_and_png():
    assert chart_svg(chart()).startswith("<svg")
    png = chart_png(chart())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")                         # IHDR: twice the 1x render
    assert width > 1.5 * int.from_bytes(chart_png(chart(), scale=1)[16:20], "big")


def test_html_is_standalone_and_escapes_names(tmp_path):
    body = "Runs on <script>alert(1)</script> data.\n\n| run | loss |\n|---|---|\n| <b>x</b> | 4.5 |\n"
    document = ReportDocument("Study of <img src=x onerror=alert(1)>", body, {"curve": chart()})
    page = document.html()
    assert "<script>" not in page and "<img" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;" in page and "<table>" in page and "<td>4.5</td>" in page
    assert page.count("<svg") == 1
    written = document.write(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "report.md", "report.html", "figures/curve.svg", "figures/curve.png"}
    assert "![curve](figures/curve.svg)" in (tmp_path / "report.md").read_text()
    archive = zipfile.ZipFile(io.BytesIO(document.zip_bytes()))
    assert sorted(archive.namelist()) == ["figures/curve.png", "figures/curve.svg", "report.md"]


def test_fit_report_names_parameters_intervals_and_held_out_points():
    rng = np.random.default_rng(0)
    n, d = np.meshgrid([1e5, 3e5, 1e6, 3e6], [1e3, 3e3, 1e4])
    points = pd.DataFrame({"n": n.ravel(), "d": d.ravel()})
    truth = joint_law(points["n"], points["d"], A=2e3, B=5e2, alpha=0.5, beta=0.4, delta=1.5)
    points["loss"] = truth * np.exp(rng.normal(0, 0.003, len(points)))
    fit = fit_law(points, "joint", FitConfig(bootstrap=30, holdout_largest=1, holdout_axis="n"))
    charts = fit_charts(fit, "n")
    assert set(charts) == {"law", "residuals"}
    document = fit_document(fit, "Joint fit of squad-dev", charts, equation="L = (A/N)^alpha + ...")
    text = document.markdown()
    assert text.startswith("# Joint fit of squad-dev")
    for name in ("A", "B", "alpha", "beta", "delta"):
        assert f"| {name} |" in text
    assert f"R² = {format_r2(fit.r2)}" in text and f"{fit.bootstrap_kept} of 30 bootstrap refits kept" in text
    assert "Held-out points" in text and text.count("| 3M |") == 3               # the held-out model size
    assert "These points determine the curve for N in [100k, 1M]" in text        # the held-out 3M is not fitted
    held = fit.heldout["rel_error"].abs().mean()
    assert f"mean |error| {format_percent(held)}" in text and f"{held:.4g}" not in text
    page = document.html()
    assert "<table>" in page and page.count("<svg") == 2
    assert all(name in page for name in ("D = 1k", "D = 3k", "D = 10k"))     # one curve per data size


def test_additive_fit_charts_draw_one_curve_per_data_size():
    n, d = np.meshgrid([1e5, 3e5, 1e6, 3e6], [1e3, 3e3, 1e4])
    points = pd.DataFrame({"n": n.ravel(), "d": d.ravel()})
    points["loss"] = joint_law(points["n"], points["d"], A=2e3, B=5e2, alpha=0.5, beta=0.4, delta=1.5)
    fit = fit_law(points, "additive", FitConfig(bootstrap=10))
    svg = chart_svg(fit_charts(fit, "n")["law"])
    assert all(name in svg for name in ("D = 1k", "D = 3k", "D = 10k"))
    assert "| E |" in fit_document(fit, "additive", {}).markdown()
