"""The app through Streamlit's AppTest: every page with an empty and a seeded store,
the budget planner's controls, fitting and saving, bad input, and launching runs
through an injected launcher. tests/conftest.py points the store, runs and cache
folders at a fresh tmp path for every test."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.charts import fit_record, law_snippet
from engine.laws import FitConfig, fit_law, preset
from store import Store
from tests.helpers import (
    N_LABEL,
    assert_clean,
    metric,
    open_page,
    press_fit,
    seeded_rows,
    table_with,
)

pytestmark = pytest.mark.slow  # runs pages through AppTest: `pytest -m "not slow"` leaves it out

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("pages/1_Runs.py", "pages/2_Fit_laws.py", "pages/3_Budget_planner.py", "pages/4_Analysis.py")


# --- every page ---------------------------------------------------------------------

@pytest.mark.parametrize("page", [None, *PAGES])
def test_page_works_with_an_empty_store(page):
    at = open_page(page)
    assert_clean(at)
    if page not in (None, "pages/3_Budget_planner.py"):
        assert at.info, "an empty store must point to how to get data"


@pytest.mark.parametrize("page", [None, *PAGES])
def test_page_works_with_a_seeded_store(seeded_store, page):
    at = open_page(page)
    assert_clean(at)


def test_overview_shows_the_store_and_the_paper_answer(seeded_store):
    at = open_page()
    assert metric(at, "Runs") == str(len(seeded_rows()))
    assert [m.value for m in at.metric if m.label == "N*"] == ["6.77B", "24.5k"]


# --- budget planner -----------------------------------------------------------------

def test_moving_a_cost_slider_changes_n_star():
    at = open_page("pages/3_Budget_planner.py")
    paper = metric(at, N_LABEL)
    assert paper == "6.77B"
    at.slider(key="price_per_pair").set_value(2.0).run()
    assert_clean(at)
    assert metric(at, N_LABEL) != paper
    at.slider(key="gpu_price_per_hour").set_value(10.0).run()
    assert metric(at, N_LABEL) not in (paper, "")


def test_reset_restores_the_papers_costs():
    at = open_page("pages/3_Budget_planner.py")
    at.slider(key="price_per_pair").set_value(2.0).run()
    at.button(key="reset_costs").click().run()
    assert at.slider(key="price_per_pair").value == pytest.approx(0.6)
    assert metric(at, N_LABEL) == "6.77B"


def test_the_scenario_comes_from_the_url():
    at = open_page("pages/3_Budget_planner.py", query={"budget": "1M", "inference": "true"})
    assert_clean(at)
    assert at.select_slider(key="budget").value == 1_000_000
    assert at.toggle(key="inference").value is True
    assert metric(at, N_LABEL) == "1.85M"          # the README's "million-scale" check


def test_an_impossible_budget_shows_a_message():
    at = open_page("pages/3_Budget_planner.py")
    at.toggle(key="inference").set_value(True)
    at.select_slider(key="budget").set_value(100).run()
    assert not at.exception
    assert "cannot pay for the smallest model" in at.error[0].value


def test_a_saved_joint_fit_plans_with_an_interval(seeded_store):
    points = Store().law_points(annotation="human")
    fit = fit_law(points, "joint", FitConfig(bootstrap=50))
    fit_id = seeded_store.save_fit(**fit_record(fit, "seeded joint", {"source": "test"}))
    at = open_page("pages/3_Budget_planner.py")
    at.selectbox(key="law").set_value(fit_id).run()
    assert_clean(at)
    assert any("Prediction interval" in c.value for c in at.caption)


# --- fit laws -----------------------------------------------------------------------

def test_a_fit_on_seeded_runs_shows_parameters(seeded_store):
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_annotation").set_value("human")
    at.radio(key="fit_kind").set_value("joint").run()
    press_fit(at)
    assert_clean(at)
    params = table_with(at, "parameter")
    assert list(params["parameter"]) == ["A", "B", "alpha", "beta", "delta"]
    assert float(params.set_index("parameter").at["alpha", "value"]) == pytest.approx(0.56, abs=0.05)
    assert float(metric(at, "R² (fitted points)")) > 0.99
    assert {b.label for b in at.download_button} == {
        "Export JSON", "Export CSV", "Export Python", "Report (HTML)", "Report (Markdown + figures, zip)",
        "Law chart (SVG)", "Law chart (PNG)", "Residuals chart (SVG)", "Residuals chart (PNG)"}


def test_holding_out_the_largest_model_reports_its_error(seeded_store):
    at = open_page("pages/2_Fit_laws.py")
    at.selectbox(key="fit_annotation").set_value("human")
    at.radio(key="fit_kind").set_value("joint").run()
    at.number_input(key="fit_holdout_joint").set_value(1)
    press_fit(at)
    assert_clean(at)
    assert float(metric(at, "Held-out mean |error|").rstrip("%")) < 10
    assert metric(at, "Points fitted") == "24"  # 5 models x 6 data sizes, the largest model's 6 held out
    at.radio(key="fit_holdout_axis").set_value("d")  # now the largest data size: 5 held out
    press_fit(at)
    assert_clean(at)
    assert metric(at, "Points fitted") == "25"
    assert float(metric(at, "Held-out mean |error|").rstrip("%")) < 10


def test_saving_a_fit_puts_it_in_the_store(seeded_store):
    at = open_page("pages/2_Fit_laws.py")
    at.text_input(key="fit_save_name").input("model law, human")
    next(b for b in at.button if b.label == "Save the fit to the store").click().run()
    assert_clean(at)
    fits = seeded_store.fits()
    assert list(fits["name"]) == ["model law, human"]
    assert fits["config"][0]["bootstrap"], "the bootstrap travels with the fit"


BAD_UPLOADS = {
    "empty": (b"", "is empty"),
    "no loss column": (b"n;d;los\n1;2;3\n", "missing the required column(s) loss"),
    "binary": (b"\x00\xff\xfe\x00garbage", "is not a text file"),
    "too few points": (b"n,d,loss\n100000,1000,2.0\n1000000,1000,1.5\n", "needs at least 4 points"),
    "all rows bad": (b"n,d,loss\n1e5,1,-2\n1e6,1,-1\n", "none of its rows is usable"),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload_shows_a_message_not_a_traceback(name):
    data, message = BAD_UPLOADS[name]
    at = open_page("pages/2_Fit_laws.py")
    at.radio(key="fit_source").set_value("Upload a CSV").run()
    at.file_uploader(key="fit_upload").set_value((f"{name}.csv", data, "text/csv")).run()
    assert not at.exception
    assert message in at.error[0].value


def test_an_uploaded_csv_is_fitted():
    rows = seeded_rows()
    data = rows[rows["annotation"] == "human"][["n", "d", "loss"]].to_csv(index=False).encode()
    at = open_page("pages/2_Fit_laws.py")
    at.radio(key="fit_source").set_value("Upload a CSV")
    at.radio(key="fit_kind").set_value("data").run()
    at.file_uploader(key="fit_upload").set_value(("study.csv", data, "text/csv")).run()
    press_fit(at)
    assert_clean(at)
    assert list(table_with(at, "parameter")["parameter"]) == ["B", "beta", "delta"]


def test_an_uploaded_csv_can_be_imported_into_the_store():
    data = b"n,d,loss,label\n100000,1000,2.0,a\n1000000,1000,1.5,b\n10000000,1000,1.2,c\n100000000,1000,1.1,d\n"
    at = open_page("pages/2_Fit_laws.py")
    at.radio(key="fit_source").set_value("Upload a CSV").run()
    at.file_uploader(key="fit_upload").set_value(("mine.csv", data, "text/csv")).run()
    at.button(key="fit_import").click().run()
    assert_clean(at)
    assert "Imported 4 row(s)" in at.success[0].value
    assert sorted(Store().runs()["label"]) == ["a", "b", "c", "d"]


def test_presets_need_no_data():
    at = open_page("pages/2_Fit_laws.py")
    at.radio(key="fit_source").set_value("Paper presets").run()
    at.selectbox(key="fit_preset").set_value("paper-joint").run()
    assert_clean(at)


@pytest.mark.slow
def test_the_python_export_evaluates_the_law():
    law = preset("paper-joint")
    printed = subprocess.run([sys.executable, "-c", law_snippet(law)], capture_output=True, text=True, check=True)
    assert float(printed.stdout) == pytest.approx(float(law.predict(1e8, 1e5)))


# --- runs: tests/test_app_runs.py ----------------------------------------------------


# --- analysis -----------------------------------------------------------------------

def test_analysis_correlates_metrics_and_compares_annotation_types(seeded_store):
    at = open_page("pages/4_Analysis.py")
    assert_clean(at)
    correlations = table_with(at, "pearson").set_index("metric")
    assert correlations.at["ndcg@10", "spearman"] < -0.9
    laws = table_with(at, "beta")
    assert set(laws["annotation"]) == {"human", "ict", "doct5query"}
    at.number_input(key="analysis_reference_pairs").set_value(100_000).run()
    rates = table_with(at, "type").set_index("type")
    assert rates["per reference pair"].astype(float).to_dict() == pytest.approx({"doct5query": 2, "ict": 5}, rel=0.25)


# --- the demo study -----------------------------------------------------------------

def test_first_launch_loads_the_demo_and_one_click_removes_it(tmp_path, monkeypatch):
    import store.demo
    from tests.test_store_demo import STUDY, _study_store

    monkeypatch.setattr(store.demo, "DEMO_FILE", store.demo.write_demo(_study_store(tmp_path), STUDY,
                                                                       tmp_path / "demo.json"))
    at = open_page()
    assert_clean(at)
    assert metric(at, "Runs") == "4"
    assert any("Demo study loaded: toy study" in m.value for m in at.markdown)
    remove = next(b for b in at.button if b.label == "Remove the demo study")
    assert remove.disabled                                  # not before the user confirms
    at.checkbox(key="demo_remove_sure").check().run()
    next(b for b in at.button if b.label == "Remove the demo study").click().run()
    assert metric(at, "Runs") == "0"
    assert any(b.label.startswith("Load the demo study") for b in at.button)
    assert metric(open_page(), "Runs") == "0"  # a later launch leaves it removed


def test_the_overview_shows_the_plan_checked_by_a_run(tmp_path, monkeypatch):
    import json

    import store.demo
    from tests.test_store_demo import STUDY, _study_store

    check = {"question": "What $1 buys.", "n_star": 3.41e6, "n_star_interval": [1.32e6, 4.89e6], "d_star": 713,
             "model": "scratch-L4-H256", "n": 3422208, "d": 713, "predicted": 3.171,
             "prediction_interval": [2.871, 3.495], "measured": 3.40, "error": -0.0674,
             "extrapolation": "N 1.86x beyond the fitted sizes"}
    path = store.demo.write_demo(_study_store(tmp_path), {**STUDY, "plan_check": check}, tmp_path / "demo.json")
    monkeypatch.setattr(store.demo, "DEMO_FILE", path)
    at = open_page()
    assert_clean(at)
    assert any("The plan, checked." in m.value for m in at.markdown)
    assert metric(at, "Measured") == "3.400" and metric(at, "Predicted at scratch-L4-H256") == "3.171"
    measured = next(m for m in at.metric if m.label == "Measured")
    assert measured.proto.direction == measured.proto.MetricDirection.NONE  # no up arrow beside a minus sign
    assert any("lies inside the 95% prediction interval" in c.value for c in at.caption)
    content = json.loads(path.read_text())
    content["study"]["plan_check"]["measured"] = 3.6
    path.write_text(json.dumps(content))
    assert any("lies outside the 95% prediction interval" in c.value for c in open_page().caption)
