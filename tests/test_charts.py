"""The Altair charts behind the pages: held-out points drawn whole and coloured by their
curve, the residual chart on the law chart's range, and Figure 5's loss axis following the points."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.laws import FitConfig, fit_law, preset


def law_points(kind: str = "joint") -> pd.DataFrame:
    n = np.repeat([1e5, 1e6, 1e7, 1e8], 3)
    d = np.tile([1e4, 1e5, 1e6], 4)
    return pd.DataFrame({"n": n, "d": d, "loss": preset("paper-joint").predict(n, d)})


def heldout_fit():
    noisy = law_points().assign(loss=lambda p: p["loss"] * np.exp(np.random.default_rng(1).normal(0, 0.02, len(p))))
    return fit_law(noisy, "joint", FitConfig(bootstrap=30, holdout_largest=1))


def chart_layers(chart) -> list[dict]:
    return chart.to_dict()["layer"]


def scale_domain(layer: dict, channel: str) -> list[float]:
    return layer["encoding"][channel]["scale"]["domain"]


def triangle_layer(chart) -> dict:
    return next(layer for layer in chart_layers(chart)
                if isinstance(layer["mark"], dict) and layer["mark"].get("shape") == "triangle-up")


def test_held_out_points_and_intervals_lie_inside_the_law_chart():
    from engine.charts import law_chart, law_curves, padded_range

    fit = heldout_fit()
    x_range = padded_range(fit.points["n"])
    chart = law_chart(fit.points.assign(series=lambda p: [f"D = {d:g}" for d in p["d"]]),
                      law_curves(fit, "n", x_range, sorted(fit.points["d"].unique())), "n")
    triangles = triangle_layer(chart)
    low, high = scale_domain(triangles, "y")
    heldout = fit.heldout
    for column in ("loss", "pi_lo", "pi_hi"):
        assert low < heldout[column].min() and heldout[column].max() < high, column
    assert scale_domain(triangles, "x") == pytest.approx(list(x_range))
    assert low < fit.points["loss"].min() / 1.02, "a margin, so the lowest marker is not cut in half"


def test_the_residual_chart_spans_the_law_charts_range_and_holds_the_held_out_point():
    from engine.charts import law_chart, law_curves, padded_range, residual_chart

    fit = heldout_fit()
    x_range = padded_range(fit.points["n"])
    main = law_chart(fit.points, law_curves(fit, "n", x_range, [1e4]), "n")
    residuals = chart_layers(residual_chart(fit.points, "n", x_range))[1]
    assert scale_domain(residuals, "x") == scale_domain(triangle_layer(main), "x")
    low, high = scale_domain(residuals, "y")
    errors = 100 * fit.points["rel_error"]
    assert low < errors.min() and errors.max() < high
    assert scale_domain(residuals, "x")[1] > fit.heldout["n"].max()


def test_joint_held_out_triangles_take_the_colour_of_their_d():
    from engine.charts import law_chart, law_curves, padded_range

    fit = heldout_fit()
    points = fit.points.assign(series=lambda p: [f"D = {d:g}" for d in p["d"]])
    chart = law_chart(points, law_curves(fit, "n", padded_range(points["n"]), sorted(points["d"].unique())), "n")
    color = triangle_layer(chart)["encoding"]["color"]
    assert color.get("field") == "series", color


def test_figure_5_loss_axis_follows_the_points_not_an_exploding_band():
    from engine.charts import annotation_chart

    curves = pd.DataFrame({"d": [1e2, 1e3, 1e4], "annotation": "human", "loss": [6.0, 5.0, 4.8],
                           "ci_lo": [4.0, 4.9, 4.7], "ci_hi": [100.0, 5.1, 4.9]})
    points = pd.DataFrame({"d": [1e3, 1e4], "annotation": "human", "loss": [5.02, 4.79]})
    low, high = chart_layers(annotation_chart(points, curves))[0]["encoding"]["y"]["scale"]["domain"]
    assert low < 4.79 and 6.0 < high < 10
