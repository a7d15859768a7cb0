"""The real dashboard server (`evolve dashboard --headless`) loaded in headless Chromium:
the trajectory chart and the lineage tree are drawn, a node click opens its candidate and the
browser's Back returns to the overview, a screenshot is saved to test-artifacts/dashboard.png,
and a live run's new candidate appears without a reload; over a run whose highest single score
lost its rematch the champion is shown as best, and a run whose DB says `running` with no
live process is shown interrupted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlite_utils

from browser_cdp import Browser, find_chromium
from dashboard_fixture import (free_port, hold_lock, make_synthetic_run, private_runs_dir, start, stop,
                               wait_healthy)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = find_chromium()

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                 "(apt-get install -y chromium; .ci/run installs it)")]

CHART_DRAWN = ("document.querySelectorAll('.st-key-{key} .vega-embed canvas, "
               ".st-key-{key} .vega-embed svg').length > 0")
NOT_RUNNING = "!document.querySelector('[data-test-script-state=running]')"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    runs = private_runs_dir(tmp_path_factory.mktemp("browser-runs"))
    hold_lock(make_synthetic_run(runs, name="zz-live", status="running", n=5), os.getpid())
    make_synthetic_run(runs, name="lost-rematch", flex=True)
    make_synthetic_run(runs, name="dead", status="running")  # no run.lock: its loop is gone
    return runs


@pytest.fixture(scope="module")
def server(runs_dir):
    port = free_port()
    with open(runs_dir / "server.log", "w") as log:
        proc = start(["--runs", str(runs_dir), "--port", str(port), "--headless"], runs_dir, out=log)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, 90.0)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)


@pytest.fixture()
def browser():
    b = Browser(CHROMIUM, width=1400, height=1000)
    try:
        yield b
    finally:
        b.close()


def test_overview_draws_trajectory_and_lineage_tree(server, runs_dir, browser):
    run = "fixture-gqa"
    browser.goto(f"{server}/?run={run}&view=overview")
    browser.wait_for(" && ".join([CHART_DRAWN.format(key="trajectory"), CHART_DRAWN.format(key="lineage"),
                                  NOT_RUNNING]), timeout=120)
    dom = browser.dom()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.html").write_text(dom)
    browser.screenshot(ARTIFACTS / "dashboard.png")
    assert 'class="stHeading' in dom or "stHeading" in dom
    for heading in ("Trajectory", "Lineage tree", run):
        assert f">{heading}<" in dom or f">{heading}</" in dom, heading
    assert "st-key-trajectory" in dom and "st-key-lineage" in dom
    assert dom.count("vega-embed") >= 2
    assert "Traceback" not in dom
    png = (ARTIFACTS / "dashboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    # clicking a node of the lineage tree opens that candidate
    nodes = ".st-key-lineage path[aria-roledescription=point]"
    assert browser.evaluate(f"document.querySelectorAll('{nodes}').length") >= 2
    node1 = browser.evaluate(f"Array.from(document.querySelectorAll('{nodes}'))"
                             ".findIndex(e => (e.getAttribute('aria-label') || '').includes('candidate id: 1;'))")
    assert node1 >= 0
    browser.click(nodes, index=node1)
    browser.wait_for("Array.from(document.querySelectorAll('h3')).some(h => h.innerText.trim() == 'Candidate 1')",
                     timeout=60)
    assert "view=candidate" in browser.evaluate("location.search")
    browser.evaluate("history.back()")  # the browser's Back button
    browser.wait_for(CHART_DRAWN.format(key="lineage") + " && " + NOT_RUNNING, timeout=60)
    assert "view=overview" in browser.evaluate("location.search")
    assert not browser.evaluate("Array.from(document.querySelectorAll('h3')).some(h => h.innerText.startsWith('Candidate'))")


METRIC = ("Array.from(document.querySelectorAll('[data-testid=stMetric]')).map(m => m.innerText.replace(/\\s+/g, ' '))"
          ".join(' | ')")


def test_champion_is_best_not_the_highest_single_score(server, browser):
    browser.goto(f"{server}/?run=lost-rematch&view=overview")
    browser.wait_for(f"{METRIC}.includes('best: champion #3 0.0633') && " + CHART_DRAWN.format(key="trajectory"),
                     timeout=120)
    metrics = browser.evaluate(METRIC)
    assert "#7" not in metrics and "0.0701" not in metrics
    assert "highest single score: #7 0.0701 (lost its rematch)" in browser.evaluate("document.body.innerText")


def test_running_db_without_a_live_process_is_interrupted(server, browser):
    browser.goto(f"{server}/?run=dead&view=overview")
    browser.wait_for(f"{METRIC}.includes('status interrupted')", timeout=120)
    text = browser.evaluate("document.body.innerText")
    assert "no live process holds run.lock" in text and "● live" not in text


def test_live_run_refreshes_by_itself(server, runs_dir, browser):
    browser.goto(f"{server}/?run=zz-live&view=overview")
    count = ("Array.from(document.querySelectorAll('[data-testid=stMetric]')).some(m => "
             "m.innerText.startsWith('candidates') && m.innerText.includes('\\n{n}'))")
    browser.wait_for(count.format(n=5) + " && " + CHART_DRAWN.format(key="lineage"), timeout=120)
    db = sqlite_utils.Database(runs_dir / "zz-live" / "lineage.db")
    db["candidates"].insert({"id": 5, "parent_id": 3, "operator": "agent", "status": "rejected",
                             "failure_class": "timeout", "failure_message": "killed after 600 s",
                             "hypothesis": "inserted by the browser test", "depth": 3,
                             "created_at": "2026-11-26T04:00:00+00:00", "commit_sha": "",
                             "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0})
    db.conn.close()
    browser.wait_for(count.format(n=6), timeout=60)  # no reload: the poll fragment reran the app
