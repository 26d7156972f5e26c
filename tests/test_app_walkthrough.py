"""A new user's walk through the app with the demo study (helper H3's walk in a
headless browser, then pinned here with AppTest): what the overview counts, how the
Runs and Plan runs tables write N and D, and what each page says on first sight.
tests/conftest.py gives every test a fresh store."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from store import Store
from store.demo import PROJECT_ROOT
from tests.helpers import assert_clean, metric, open_page


@pytest.mark.slow
def test_the_overview_counts_the_data_sets_its_runs_are_on(demo_store):
    datasets = sorted(set(demo_store.runs()["dataset"]))
    at = open_page()
    assert_clean(at)
    assert metric(at, "Data sets") == str(len(datasets)) != "0"
    assert metric(at, "Runs") == str(len(demo_store.runs()))


def test_store_info_names_registered_and_run_data_sets(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.register_dataset("msmarco", language="en", format="beir", path="x", n_passages=1,
                           n_queries=1, n_train_pairs=1, n_test_pairs=1)
    store.load_rows(pd.DataFrame({"n": [10, 20], "d": [5, 5], "loss": [1.0, 0.9],
                                 "dataset": ["squad-dev", "msmarco"]}), source="test")
    info = store.info()
    assert info["dataset_names"] == ["msmarco", "squad-dev"] and info["counts"]["datasets"] == 1


# --- N and D as engine/formatting.py writes them, on every page -----------------------------

@pytest.mark.slow
def test_the_runs_table_writes_n_and_d_as_the_other_pages_do(demo_store):
    from engine.formatting import format_count

    at = open_page("pages/1_Runs.py")
    assert_clean(at)
    table = next(t.value for t in at.dataframe if "run_id" in t.value.columns).set_index("run_id")
    runs = demo_store.runs().set_index("run_id")
    assert list(table["n_params"]) == [format_count(n) for n in runs.loc[table.index, "n_params"]]
    assert list(table["train_pairs"]) == [format_count(d) for d in runs.loc[table.index, "train_pairs"]]
    smallest = runs["n_params"].min()
    assert format_count(smallest) in set(table["n_params"]) and format_count(smallest) != f"{smallest:.0f}"  # 39.1k


@pytest.mark.slow
@pytest.mark.skipif(not (PROJECT_ROOT.parent / "shared" / "data" / "squad-dev").is_dir(),
                    reason="../shared/data/squad-dev is absent")
def test_the_plan_table_writes_n_and_d_as_the_other_pages_do(demo_store):
    at = open_page("pages/5_Plan_runs.py")
    at.number_input[0].set_value(300.0)
    next(b for b in at.button if b.label == "Plan").click().run()
    assert_clean(at)
    table = next(t.value for t in at.dataframe if "expected_gain" in t.value.columns)
    assert len(table) and all(isinstance(v, str) and v[-1] in "kMBT0123456789" for v in table["n"])
    assert all(isinstance(v, str) for v in table["d"]) and not any("e+" in v for v in table["n"])
    frame = next(t for t in at.dataframe if "expected_gain" in t.value.columns)
    config = json.loads(frame.proto.columns)
    assert config.get("name:cost", config.get("cost", {})).get("label") == "cost (GPU-hours)"  # as the metric above


# --- what the walk found ------------------------------------------------------------------

@pytest.mark.slow
def test_the_overview_points_to_every_page(demo_store):
    at = open_page()
    linked = {link.proto.page for link in at.get("page_link")}     # a page's URL name: 5_Plan_runs.py -> Plan_runs
    pages = {path.stem.split("_", 1)[1] for path in (PROJECT_ROOT / "pages").glob("*.py")}
    assert pages <= linked, pages - linked


@pytest.mark.slow
def test_every_page_is_wide_and_named_in_the_browser_tab(monkeypatch):
    import streamlit

    configs, real = [], streamlit.set_page_config
    monkeypatch.setattr(streamlit, "set_page_config", lambda **kw: (configs.append(kw), real(**kw))[1])
    for path in sorted((PROJECT_ROOT / "pages").glob("*.py")):
        configs.clear()
        at = open_page(f"pages/{path.name}")
        assert_clean(at)
        assert configs and configs[-1].get("layout") == "wide", path.name
        assert configs[-1]["page_title"].endswith("· Scaling-law workbench"), path.name


@pytest.mark.slow
def test_the_runs_table_has_worded_headers_and_a_label_column_that_leaves_room(demo_store):
    at = open_page("pages/1_Runs.py")
    frame = next(t for t in at.dataframe if "run_id" in t.value.columns)
    config = json.loads(frame.proto.columns)
    headers = [config.get(f"name:{c}", config.get(c, {})).get("label", c) for c in frame.value.columns]
    assert not [h for h in headers if "_" in h], headers
    assert config.get("name:label", config.get("label", {})).get("width") == "medium"


def _titles(spec) -> list:
    """Every axis title in a Vega-Lite spec (nested layers and encodings)."""
    if isinstance(spec, dict):
        found = [spec["title"]] if "title" in spec and isinstance(spec.get("field"), str) else []
        return found + [t for value in spec.values() for t in _titles(value)]
    return [t for value in spec for t in _titles(value)] if isinstance(spec, list) else []


@pytest.mark.slow
def test_the_residual_axis_title_fits_its_chart(demo_store):
    at = open_page("pages/2_Fit_laws.py")
    at.number_input(key="fit_bootstrap").set_value(0)
    at.button(key="fit_submit").click().run()
    assert_clean(at)
    titles = [t for chart in at.get("vega_lite_chart") for t in _titles(json.loads(chart.proto.spec))]
    residual = [t for t in titles if "observed" in "".join(t)]
    assert residual, titles
    # Vega's 11 px axis title: about 6.5 px a character; the 220-pixel chart plots ~170 px, so <= 22 a line
    assert all(isinstance(t, list) and max(map(len, t)) <= 22 for t in residual), residual


@pytest.mark.slow
def test_the_planner_counts_a_saved_fits_fitted_and_held_out_points_apart():
    from engine.charts import fit_record
    from engine.laws import FitConfig, fit_law
    from tests.demo_study import demo_points

    fit = fit_law(demo_points(), "joint", FitConfig(bootstrap=0, holdout_largest=1))
    held, fitted = len(fit.heldout), len(fit.points) - len(fit.heldout)
    assert held and fitted
    fit_id = Store().save_fit(**fit_record(fit, "demo joint", {"source": "demo"}))
    at = open_page("pages/3_Budget_planner.py")
    at.selectbox(key="law").set_value(fit_id).run()
    assert_clean(at)
    caption = next(c.value for c in at.caption if c.value.startswith("Saved fit"))
    assert f"on {fitted} fitted points ({held} held out)" in caption, caption


def test_the_residual_legend_names_its_points_in_words():
    from tests.test_charts import heldout_fit

    from engine.charts import residual_chart

    spec = residual_chart(heldout_fit().points, "n").to_dict()
    color = next(layer["encoding"]["color"] for layer in spec["layer"] if "color" in layer.get("encoding", {}))
    rows = next(rows for rows in spec["datasets"].values() if rows and color["field"] in rows[0])
    legend = set(color["scale"]["domain"])
    assert {row[color["field"]] for row in rows} == legend == {"fitted", "held out"}, legend


@pytest.mark.slow
def test_the_runs_table_writes_a_dash_for_what_a_run_did_not_record_and_says_so(demo_store):
    imported = pd.DataFrame([{"n": 1000, "d": 10, "loss": 5.0, "dataset": "squad-dev", "annotation": "human"}])
    demo_store.load_rows(imported, source="import")  # an import records neither protocol nor training time
    at = open_page("pages/1_Runs.py")
    assert_clean(at)
    table = next(t.value for t in at.dataframe if "run_id" in t.value.columns)
    runs = demo_store.runs().set_index("run_id").loc[table["run_id"]]
    assert runs["eval_protocol"].isna().any() and runs["wall_time_s"].isna().any()
    assert runs["eval_protocol"].notna().any()  # the rerun demo records its protocol
    for column in ("eval_protocol", "wall_time_s"):
        assert not table[column].isna().any() and "None" not in set(table[column]), column
        assert (table[column] == "—").tolist() == runs[column].isna().tolist(), column
    assert any(c.value.startswith("—: not recorded") and "import" in c.value for c in at.caption)


@pytest.mark.parametrize("stop_reason", [None, "extrapolation"])
def test_the_plan_message_writes_n_and_d_as_counts_and_says_gpu_hours(stop_reason):
    from engine.budget import BudgetQuestion
    from engine.formatting import format_count
    from engine.plan_runs import Plan, PlanTarget

    probe = {"n": 34_200_000.0, "d": 4_465, "factor": 8.0, "gain": 0.4, "cost": 2.5}
    target = PlanTarget(n=34_200_000.0, d=4_465.0) if stop_reason is None else PlanTarget(BudgetQuestion(1e6))
    plan = Plan(target, "gpu-hours", 1.0, 0.5, 0.9, [], 10.0, 0.01, 40, 0.05,
                probe if stop_reason else None, stop_reason)
    text = plan.message()
    assert f"N = {format_count(34_200_000)}" in text and f"D = {format_count(4_465)}" in text, text
    assert "GPU-hours" in text and "gpu-hours" not in text and "e+" not in text, text
