"""engine/study.py states what a study's points determine and how far its budget
answers lie beyond them (issue 16, items 2-3)."""
from __future__ import annotations

from engine.study import StudyConfig, build_report, report_markdown
from tests.test_study import study_runs


def test_report_states_identifiability_decision_uncertainty_and_extrapolation():
    report = build_report(study_runs(), StudyConfig(bootstrap=60))
    text = report_markdown(report)
    assert "What these points determine (Eq. 8): These points determine the curve for N in [39.1k, 1.84M]" in text
    assert "95% interval of N*" in text and "robust N" in text and "regret of N*" in text
    # the figure's budgets ($1,000-10,000 with inference over 1e8 pages) ask for models beyond 1.84M
    assert "N* beyond the fitted N" in text
    assert "Warning:" in text and "projections" in text


def test_budget_figure_shades_beyond_the_fitted_sizes_and_draws_the_n_star_spread():
    from engine.study import figures

    spec = figures(build_report(study_runs(), StudyConfig(bootstrap=30)))["budget"].to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks[0] == "rect" and "tick" in marks
    assert "grey: beyond the fitted model sizes" in str(spec["title"])
