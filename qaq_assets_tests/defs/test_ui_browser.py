"""The Dagster UI in a real headless Chromium: the four assets and their lineage show, and a
click on Materialize runs curated_subset to success. Screenshots go to artifacts/ui/."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from qaq_assets.lib.reports.explain import TOKENS_ON_DEMAND
from qaq_assets.lib.store.tables import ALL_TABLES
from qaq_assets_tests.helpers import CODE_PAIRS, REPO, TINY, graphql

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "artifacts" / "ui"
# What curated_subset is computed from, as its upstream lineage view shows it.
UPSTREAM = ("raw_samples", "sample_features", "token_logprobs", "qaq_scores", "curated_subset")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def ui(tmp_path, make_shard):
    """A dagster dev server on a free loopback port over a lake the CLI has already filled."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "QAQ_LAKE": str(tmp_path / "lake"),
        "QAQ_MODELS": TINY,
        "QAQ_LANDING_DIR": str(tmp_path / "incoming"),
    }
    curate = subprocess.run(
        [
            sys.executable,
            "-m",
            "qaq_assets.cli",
            "curate",
            str(make_shard("ui", CODE_PAIRS)),
            "--lake",
            str(tmp_path / "lake"),
            "--model",
            TINY,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert curate.returncode == 0, curate.stderr[-2000:]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "qaq_assets.cli", "ui", "--", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
            120,
            "the Dagster webserver",
        )
        tables = len(ALL_TABLES)  # every table of the lake is an asset
        wait_for(lambda: len(graphql(port, "{ assetNodes { id } }")["assetNodes"]) == tables, 120, "the code location")
        yield port
    finally:
        # qaq ui stops the whole of dagster dev (webserver, daemon, code servers) on SIGTERM.
        stopped = time.monotonic()
        server.send_signal(15)
        server.wait(timeout=60)
        wait_for(lambda: not _processes_of(home), 50 - (time.monotonic() - stopped), "the UI's processes to end")


def _processes_of(home: Path) -> list[str]:
    """Processes whose command line names ``home`` (dagster dev's children carry its instance)."""
    found = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if int(pid) != os.getpid()]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def click_button(browser, text: str, timeout: float = 60) -> bool:
    """Click the button labelled ``text`` once it is there; React may replace it while we look."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt():
        try:
            for button in browser.find_elements(By.TAG_NAME, "button"):
                if button.text.strip() == text:
                    button.click()
                    return True
        except StaleElementReferenceException:
            return False
        return False

    return wait_for(attempt, timeout, f"the {text!r} button", interval=0.5)


def community_dialog_shown(browser) -> bool:
    """Dagster's first-visit "Join the community" dialog (the instance's ``nux`` setting)."""
    from selenium.webdriver.common.by import By

    body = browser.find_element(By.TAG_NAME, "body").text
    return "community" in body.lower() and any(
        b.text.strip() == "Skip" for b in browser.find_elements(By.TAG_NAME, "button")
    )


def test_ui_shows_the_graph_and_materializes_from_a_click(ui, browser):
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = ui
    browser.get(f"http://127.0.0.1:{port}/assets/curated_subset?view=lineage&lineageScope=upstream&lineageDepth=5")
    wait_for(lambda: all(name in browser.page_source for name in UPSTREAM), 60, "the upstream assets in the lineage")
    time.sleep(3)  # the dialog, where enabled, opens once the page has rendered
    assert not community_dialog_shown(browser), "deploy/dagster.yaml turns Dagster's first-visit dialog off"
    browser.save_screenshot(str(ARTIFACTS / "lineage.png"))
    lineage = graphql(port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
    parents = {n["assetKey"]["path"][0]: {d["path"][0] for d in n["dependencyKeys"]} for n in lineage}
    assert parents["token_logprobs"] == {"raw_samples"} and parents["qaq_scores"] == {"token_logprobs"}
    assert parents["curated_subset"] == {"qaq_scores", "raw_samples", "sample_features"}
    assert parents["sample_features"] == parents["quarantine"] == set()

    runs_query = "{ runsOrError { ... on Runs { results { runId status jobName } } } }"
    runs_before = len(graphql(port, runs_query)["runsOrError"]["results"])
    browser.get(f"http://127.0.0.1:{port}/assets/curated_subset")
    click_button(browser, "Materialize")
    # One step writes the version and its lineage row: Dagster says so before it runs.
    wait_for(lambda: "Additional assets will be materialized" in browser.page_source, 60, "the multi-asset dialog")
    assert "curation_runs" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(ARTIFACTS / "materialize_dialog.png"))
    click_button(browser, "Confirm")

    def newest_finished_run():
        results = graphql(port, runs_query)["runsOrError"]["results"]
        return results[0] if len(results) > runs_before and results[0]["status"] in ("SUCCESS", "FAILURE") else None

    run = wait_for(newest_finished_run, 240, "the launched run to finish", interval=2)
    browser.get(f"http://127.0.0.1:{port}/runs/{run['runId']}")
    wait_for(lambda: "curated_subset" in browser.page_source, 60, "the run page")
    time.sleep(2)
    browser.save_screenshot(str(ARTIFACTS / "run.png"))
    assert run["status"] == "SUCCESS", run

    # The materialization's picture: RMI and NLL(Q) histograms with the kept band, decisions by reason.
    browser.get(f"http://127.0.0.1:{port}/assets/curated_subset?view=overview")
    show = wait_for(lambda: browser.find_elements(By.XPATH, "//*[contains(text(), 'Show Markdown')]"), 60, "metadata")
    browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click()", show[0])
    images = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']"), 30, "the picture")
    assert images[0].size["width"] > 300
    browser.save_screenshot(str(ARTIFACTS / "curated_subset_picture.png"))

    # The why: the explained examples render as Markdown (the decision and the query tokens that
    # drove it), and the changes since the previous version (the CLI's curation) are shown.
    metadata_query = (
        '{ assetOrError(assetKey: {path: ["curated_subset"]}) { ... on Asset { assetMaterializations(limit: 1) '
        "{ metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } } } } }"
    )
    entries = graphql(port, metadata_query)["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    markdown = {entry["label"]: entry.get("mdStr") for entry in entries}
    # Scored with the default, each span's sum only: the examples say how to see the query's tokens.
    on_demand = TOKENS_ON_DEMAND.split(";")[0]
    assert on_demand in markdown["explained_examples"]
    # One example per reason that occurred, each with its text.
    codes = set(re.findall(r"^#### drop · \S+ · (\w+)$", markdown["explained_examples"], re.M))
    assert len(codes) >= 2 and "> **Q** `" in markdown["explained_examples"]
    assert markdown["changes"].startswith("- curated version 1 -> 2: kept")
    for label, text in (
        ("explained_examples", on_demand),
        ("changes", "curated version 1 -> 2"),
    ):
        browser.get(f"http://127.0.0.1:{port}/assets/curated_subset?view=overview")
        row = f"//tr[.//*[text()='{label}']]"
        found = wait_for(lambda row=row: browser.find_elements(By.XPATH, row), 60, f"the {label} row")
        links = found[0].find_elements(By.XPATH, ".//*[contains(text(), 'Show Markdown')]")
        if links:  # a long value opens in a dialog; a short one is rendered in the row
            browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click()", links[0])
        else:
            browser.execute_script("arguments[0].scrollIntoView()", found[0])
        wait_for(lambda text=text: text in browser.find_element(By.TAG_NAME, "body").text, 30, f"{label} rendered")
        browser.save_screenshot(str(ARTIFACTS / f"curated_subset_{label}.png"))
