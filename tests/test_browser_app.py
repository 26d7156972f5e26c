"""The app in a real browser: `streamlit run app.py` on a free port, driven through
Debian's Chromium by Playwright. Every page loads without an error box, a budget
slider moved in the browser moves the optimum, and the JSON export downloads and
parses. Screenshots of every page go to the test's folder and to test-output/.

Skips when /usr/bin/chromium or Playwright is missing (`.ci/run` installs Chromium).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from store import Store
from store.demo import DEMO_FILE, read_demo, remove_demo
from tests.helpers import seeded_rows

pytestmark = pytest.mark.slow  # starts processes or a browser: `pytest -m "not slow"` leaves it out

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_COPIES = ROOT / "test-output"
PAGES = {"overview": "", "runs": "Runs", "fit-laws": "Fit_laws", "budget-planner": "Budget_planner",
         "analysis": "Analysis", "plan-runs": "Plan_runs"}
START_TIMEOUT_S = 60
SCREENSHOT_HEIGHT = 2600

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer within {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> str:
    """A server on a seeded store of its own."""
    folder = tmp_path_factory.mktemp("browser-app")
    env = {**os.environ, "WORKBENCH_STORE": str(folder / "store" / "workbench.duckdb"),
           "WORKBENCH_RUNS": str(folder / "runs"), "WORKBENCH_CACHE": str(folder / "cache")}
    store = Store(env["WORKBENCH_STORE"])
    store.load_rows(seeded_rows(), source="test")
    remove_demo(store)  # a store whose user removed the demo: the pages show the seeded runs only
    port, log = free_port(), folder / "streamlit.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, log)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield context.new_page()
    context.close()


def wait_for_app_run(page, timeout_ms: int = 60_000) -> None:
    """As Streamlit's e2e conftest: connected, and the script not running."""
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']",
                           state="attached", timeout=timeout_ms)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']",
                           state="attached", timeout=timeout_ms)
    page.wait_for_timeout(300)      # let charts and late elements settle


def open_page(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    wait_for_app_run(page)


def metric_value(page, label: str) -> str:
    metric = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return metric.locator("[data-testid='stMetricValue']").inner_text()


def test_every_page_loads_without_an_error_box(page, app_url, tmp_path):
    SCREENSHOT_COPIES.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": SCREENSHOT_HEIGHT})   # the app scrolls inside itself
    for name, path in PAGES.items():
        open_page(page, app_url, path)
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, SCREENSHOT_COPIES / shot.name)
        assert page.locator("[data-testid='stException']").count() == 0, name
        assert page.locator("[data-testid='stAlertContentError']").count() == 0, name
        assert page.locator("[data-testid='stMainBlockContainer'] h1").count() == 1, name


def test_budget_slider_moves_the_optimum(page, app_url):
    open_page(page, app_url, "Budget_planner")
    before = metric_value(page, "N* (optimal model size)")
    budget = page.locator("[data-testid='stSlider']").filter(has_text="Budget ($)")
    budget.get_by_role("slider").press("ArrowRight")       # $20k -> $50k
    sync_api.expect(page.locator("[data-testid='stMetric']").filter(has_text="N* (optimal model size)")
                    .locator("[data-testid='stMetricValue']")).not_to_have_text(before, timeout=20_000)
    wait_for_app_run(page)
    assert "budget=50k" in page.url


def test_json_export_downloads_and_parses(page, app_url, tmp_path):
    open_page(page, app_url, "Fit_laws")
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Export JSON").click()
    target = tmp_path / "fit.json"
    download.value.save_as(target)
    fit = json.loads(target.read_text())
    assert fit["law"] == "model"
    assert set(fit["params"]) == {"A", "alpha", "delta"}
    assert set(fit["intervals"]) == {"A", "alpha", "delta"}
    assert 0.9 < fit["r2"] <= 1


def test_the_budget_plan_download_names_its_law_its_sizes_and_the_warning(page, app_url, tmp_path):
    open_page(page, app_url, "Budget_planner")
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download this plan (JSON)").click()
    target = tmp_path / "budget-plan.json"
    download.value.save_as(target)
    plan = json.loads(target.read_text())
    assert plan["law"]["label"] == "paper-joint" and set(plan["law"]["params"]) == {"A", "B", "alpha", "beta", "delta"}
    assert plan["law"]["source"] and plan["law"]["support"]["n"]
    assert "projection" in plan["extrapolation"]["warning"]          # 6.77B is beyond the paper's BERT-Base


def test_a_shared_link_to_a_law_this_store_lacks_says_so(page, app_url):
    open_page(page, app_url, "Budget_planner?law=their+fit+%5B1a2b3c%5D&budget=50k")
    sync_api.expect(page.get_by_text("This link asks for the law = their fit [1a2b3c]", exact=False)).to_be_visible()
    assert "budget=50k" in page.url


@pytest.mark.skipif(not DEMO_FILE.exists(), reason="no demo study committed")
def test_the_demo_study_loads_beside_the_users_runs_and_removes_again(page, app_url):
    open_page(page, app_url, "")
    assert int(metric_value(page, "Runs")) == len(seeded_rows())
    page.get_by_role("button", name="Load the demo study", exact=False).click()
    sync_api.expect(page.get_by_text("Demo study loaded", exact=False)).to_be_visible(timeout=30_000)
    wait_for_app_run(page)
    assert int(metric_value(page, "Runs")) == len(seeded_rows()) + len(read_demo(DEMO_FILE)[1])
    page.get_by_text("Yes, remove the demo's", exact=False).click()     # the button waits for this
    wait_for_app_run(page)
    page.get_by_role("button", name="Remove the demo study").click()
    sync_api.expect(page.get_by_role("button", name="Load the demo study", exact=False)).to_be_visible(
        timeout=30_000)
    wait_for_app_run(page)
    assert int(metric_value(page, "Runs")) == len(seeded_rows())


# --- the Fit page's report downloads (deferred: rendered on click) -----------------

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
