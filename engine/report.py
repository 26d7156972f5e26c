"""Reports out: a Markdown report with its figures as SVG (and PNG) files, the same
report as one standalone HTML file (figures inline, no external resources), and
any chart as SVG or PNG bytes for a download button.

    document = ReportDocument("Scaling study", markdown_body, {"model-law": chart, ...})
    document.write(Path("docs/study"))   # report.md, report.html, figures/<name>.svg|.png
    document.zip_bytes()                 # report.md + figures/ in one archive

Charts are Altair charts rendered by vl-convert (through Altair's `save`). The
Markdown body is escaped before it becomes HTML, so a data set or run name cannot
inject markup into the HTML report.
"""
from __future__ import annotations

import html
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FIGURES_FOLDER = "figures"
PNG_SCALE = 2  # twice the chart's size: sharp on high-density screens and in slides
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 2rem 0; }
figcaption { color: #555; font-size: 0.9rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def chart_svg(chart) -> str:
    """An Altair chart as SVG text."""
    buffer = io.StringIO()
    chart.save(buffer, format="svg")
    return buffer.getvalue()


def chart_png(chart, scale: int = PNG_SCALE) -> bytes:
    """An Altair chart as PNG bytes, `scale` times its size."""
    buffer = io.BytesIO()
    chart.save(buffer, format="png", scale_factor=scale)
    return buffer.getvalue()


@dataclass
class ReportDocument:
    title: str
    body: str                                        # Markdown
    charts: dict[str, object] = field(default_factory=dict)   # figure name -> Altair chart
    _rendered: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)

    def figures(self) -> dict[str, tuple[str, bytes]]:
        """name -> (SVG text, PNG bytes), each chart rendered once."""
        for name, chart in self.charts.items():
            if name not in self._rendered:
                self._rendered[name] = (chart_svg(chart), chart_png(chart))
        return self._rendered

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", self.body.rstrip(), ""]
        if self.charts:
            lines += ["## Figures", ""]
            for name in self.charts:
                lines += [f"![{name}]({FIGURES_FOLDER}/{name}.svg)", "",
                          f"[{name}.png]({FIGURES_FOLDER}/{name}.png)", ""]
        return "\n".join(lines)

    def html(self) -> str:
        """One file: the body as HTML and every figure's SVG inline."""
        import markdown

        body = markdown.markdown(html.escape(self.body, quote=False), extensions=["tables"])
        figures = "".join(f"<figure>{svg}<figcaption>{html.escape(name)}</figcaption></figure>"
                          for name, (svg, _) in self.figures().items())
        title = html.escape(self.title)
        return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
                f"<style>{_STYLE}</style></head>\n<body><h1>{title}</h1>\n{body}\n"
                + (f"<h2>Figures</h2>\n{figures}\n" if figures else "") + "</body></html>\n")

    def write(self, out: Path, protected: dict[str, str | Path] | None = None) -> list[Path]:
        """report.md, report.html and figures/<name>.svg and .png in `out`; the paths written.
        Every file is checked first (none resolves to a `protected` path: the store, an
        input), then written atomically, replacing a link rather than writing through it."""
        from engine.paths import check_output_path, write_output

        figures_dir = out / FIGURES_FOLDER
        files: dict[Path, str | bytes] = {out / "report.md": self.markdown(), out / "report.html": self.html()}
        for name, (svg, png) in self.figures().items():
            files |= {figures_dir / f"{name}.svg": svg, figures_dir / f"{name}.png": png}
        for path in files:
            check_output_path(path, protected=protected or {})
        for path, content in files.items():
            write_output(path, content)
        return list(files)

    def zip_bytes(self) -> bytes:
        """report.md with its figures folder, as one archive (a download)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("report.md", self.markdown())
            for name, (svg, png) in self.figures().items():
                archive.writestr(f"{FIGURES_FOLDER}/{name}.svg", svg)
                archive.writestr(f"{FIGURES_FOLDER}/{name}.png", png)
        return buffer.getvalue()


# --- a fit's report -----------------------------------------------------------------

def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table; numbers with 4 significant digits."""
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def refits_kept(fit) -> str:
    """How many bootstrap refits the intervals come from, and why fewer than asked: a
    resample that drew too few distinct sizes for the law is skipped (engine/laws.py
    draws it but cannot fit it), a refit whose scale ran to infinity is not counted."""
    asked, drawn, kept = fit.config.bootstrap, len(fit.bootstrap_params), fit.bootstrap_kept
    if asked == 0:
        return "no bootstrap refits were asked for, so there are no intervals"
    text = f"{kept:,} of {asked:,} bootstrap refits kept"
    reasons = []
    if asked > drawn:
        reasons.append(f"{asked - drawn:,} resample(s) drew too few distinct sizes to fit the law, so were skipped")
    if drawn > kept:
        reasons.append(f"{drawn - kept:,} refit(s) diverged (a scale ran to infinity)")
    return text + (f": {'; '.join(reasons)}" if reasons else "")


def fit_document(fit, title: str, charts: dict[str, object], equation: str | None = None) -> ReportDocument:
    """The report of one fitted law (engine.laws.LawFit): what was fitted and over which
    N and D, what its points determine, the parameters with their bootstrap intervals,
    R², the held-out points, the charts; numbers written as the app writes them
    (engine/formatting.py)."""
    from engine.identifiability import identifiability
    from engine.laws import PARAM_NAMES
    from engine.formatting import format_count, format_percent, format_r2, formatted_table

    kind = fit.law.kind
    fitted = fit.points[fit.points["role"] == "fit"]
    parameters = pd.DataFrame([{"parameter": name, "value": fit.law.params[name],
                                "low": fit.intervals.get(name, (np.nan, np.nan))[0],
                                "high": fit.intervals.get(name, (np.nan, np.nan))[1]}
                               for name in PARAM_NAMES[kind]])
    ranges = [f"{axis.upper()} from {format_count(lo)} to {format_count(hi)}" for axis, (lo, hi) in fit.support.items()]
    lines = [f"{kind} law" + (f": `{equation}`" if equation else ""), "",
             f"{len(fitted)} points fitted ({', '.join(ranges) or 'sizes not kept'}), R² = {format_r2(fit.r2)}; "
             f"intervals: {fit.config.level:.0%} bootstrap, resampling whole configurations ({refits_kept(fit)}).",
             ""]
    if len(fit.bootstrap_params):
        lines += [identifiability(fit).sentence(), ""]
    lines += [markdown_table(formatted_table(parameters, coefficients=("value", "low", "high"))), ""]
    if len(fit.heldout):
        held = fit.heldout
        columns = [c for c in ("n", "d", "loss", "predicted", "rel_error", "pi_lo", "pi_hi") if c in held]
        table = formatted_table(held[columns], counts=("n", "d"), percents=("rel_error",),
                                losses=("loss", "predicted", "pi_lo", "pi_hi"))
        lines += [f"Held-out points, predicted from the fit on the rest (mean |error| "
                  f"{format_percent(held['rel_error'].abs().mean())}):", "", markdown_table(table), ""]
    return ReportDocument(title, "\n".join(lines), charts)


MAX_CURVES = 6  # joint law: at most this many curves of the other size, spread over its values


def fit_charts(fit, x: str) -> dict[str, object]:
    """The fit's charts along `x` ('n' or 'd'): the law over its points (one curve per
    size of the other variable for the joint law) and the residuals."""
    from engine import charts

    points = fit.points
    fixed = None
    if fit.law.uses_n and fit.law.uses_d:  # a two-variable law: one curve per size of the other
        other = "d" if x == "n" else "n"
        values = sorted(points[other].unique())
        keep = np.unique(np.linspace(0, len(values) - 1, min(MAX_CURVES, len(values))).round().astype(int))
        fixed = [values[i] for i in keep]
        points = points[points[other].isin(fixed)].assign(series=lambda p: [charts.series_name(x, v) for v in p[other]])
    curves = charts.law_curves(fit, x, charts.padded_range(fit.points[x]), fixed)
    x_range = (float(curves["x"].min()), float(curves["x"].max()))
    return {"law": charts.law_chart(points, curves, x).properties(width=560),
            "residuals": charts.residual_chart(fit.points, x, x_range).properties(width=560)}
