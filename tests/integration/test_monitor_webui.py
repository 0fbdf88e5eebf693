"""scaler_ui end to end: a cluster, the web server, and the page in a real headless Chromium."""

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from scaler_core import Client
from scaler_core.monitor.stream import StatusSubscriber
from scaler_core.monitor.webui import StatusHub
from scaler_core.transport import free_tcp_port
from tests.conftest import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The README's picture is refreshed only on request: a test run must not change tracked files.
DOCS_SCREENSHOT = pathlib.Path(__file__).resolve().parents[2] / "docs" / "webui.png"
UPDATE_DOCS_VARIABLE = "SCALER_UPDATE_DOCS_SCREENSHOT"
TASKS = 400


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


@pytest.fixture(scope="module")
def web_ui(combo):
    """scaler_ui serving the combo's monitor stream; yields its base URL."""
    port = free_tcp_port()
    process = subprocess.Popen([sys.executable, "-m", "scaler_core.monitor.webui", combo.monitor_address,
                                "--web-port", str(port), "--logging-level", "WARNING"])
    url = f"http://127.0.0.1:{port}"

    def serving_status():
        assert process.poll() is None, f"scaler_ui exited with {process.returncode}"
        try:
            return get_json(url + "/api/status")
        except (urllib.error.URLError, ConnectionError):
            return None

    try:
        wait_until(serving_status, 20, message="scaler_ui to serve a status")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_status_hub_keeps_history_and_wakes_waiters():
    hub = StatusHub("tcp://127.0.0.1:1", history_length=3)
    assert hub.latest() is None and hub.wait_newer(0, 0.01) == (0, None)
    for number in range(5):
        hub.publish({"timestamp": number, "sent": {"x": 1}, "received": {}})
    assert hub.latest()["sent"] == {"x": 1}
    assert [status["timestamp"] for status in hub.history()] == [2, 3, 4]
    assert "sent" not in hub.history()[0]
    assert hub.wait_newer(0, 0.01) == (5, hub.latest())
    hub.close()
    assert hub.wait_newer(5, 1.0) == (5, None)


def test_json_endpoints(web_ui, combo):
    status = get_json(web_ui + "/api/status")
    assert set(status["tasks"]) == {"pending", "running", "succeeded", "failed", "cancelled"}
    wait_until(lambda: len(get_json(web_ui + "/api/status")["workers"]) == 2, 20, message="two workers")
    worker = get_json(web_ui + "/api/status")["workers"][0]
    assert {"id", "cpu_percent", "rss_bytes", "running", "queued", "sent", "free", "blocked"} <= set(worker)
    assert get_json(web_ui + "/api/history")["monitor_address"] == combo.monitor_address
    with urllib.request.urlopen(web_ui + "/api/stream", timeout=5) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        line = stream.readline()
        assert line.startswith(b"data: ") and "tasks" in json.loads(line[len(b"data: "):])
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(web_ui + "/nothing-here", timeout=5)
    assert missing.value.code == 404


@pytest.fixture
def browser_page():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def number_on(page, element_id):
    text = page.text_content("#" + element_id) or ""
    return int(text.replace(",", "")) if text.replace(",", "").isdigit() else None


def scheduler_succeeded(monitor_address):
    with StatusSubscriber(monitor_address) as subscriber:
        status = subscriber.wait_for_status(10)
    assert status is not None, "no status from the scheduler"
    return status.succeeded


def test_page_follows_the_cluster_live(web_ui, combo, browser_page, tmp_path):
    page = browser_page
    requested_hosts = set()
    page.on("request", lambda request: requested_hosts.add(request.url.split("/")[2]))
    page.goto(web_ui + "/")
    wait_until(lambda: number_on(page, "count-succeeded") is not None, 20, message="numbers on the page")
    wait_until(lambda: page.locator("#workers tbody tr.worker-row").count() == 2, 20, message="two worker rows")
    assert number_on(page, "worker-count") == 2
    before = number_on(page, "count-succeeded")
    assert before == scheduler_succeeded(combo.monitor_address)

    results = []
    with Client(combo.address, timeout_seconds=60) as client:
        work = threading.Thread(target=lambda: results.append(client.map(time.sleep, [0.02] * TASKS)))
        work.start()
        seen = set()
        try:
            # while the tasks run, the page keeps showing new, growing counts
            wait_until(lambda: seen.add(number_on(page, "count-succeeded")) or len(seen - {before}) >= 3, 30,
                       message="the succeeded count on the page to change several times")
            wait_until(lambda: page.locator("#throughput-chart").get_attribute("data-peak") not in (None, "0.000"),
                       20, message="a throughput above zero")
        finally:
            work.join(90)
    assert results and len(results[0]) == TASKS
    assert None not in seen and all(before <= value <= before + TASKS for value in seen)

    # once idle the page agrees with the scheduler, and with what the client ran
    wait_until(lambda: number_on(page, "count-succeeded") == before + TASKS, 20,
               message=f"{before + TASKS} succeeded tasks on the page")
    assert scheduler_succeeded(combo.monitor_address) == before + TASKS
    wait_until(lambda: number_on(page, "count-running") == 0 and number_on(page, "count-pending") == 0, 20,
               message="no running or pending tasks on the page")
    assert number_on(page, "count-failed") == 0
    rows = page.locator("#workers tbody tr.worker-row")
    assert rows.count() == 2
    sent_total = sum(int(rows.nth(index).locator("td.worker-sent").text_content().replace(",", ""))
                     for index in range(2))
    assert sent_total >= TASKS  # a task moved between workers by balancing counts for both
    assert all(rows.nth(index).locator("td.worker-limit").text_content() not in ("", "-") for index in range(2)), \
        "each worker's automatic memory limit"
    timeline = page.locator("#timeline-chart")
    assert timeline.get_attribute("data-workers") == "2"
    assert timeline.get_attribute("data-busy-workers") in ("1", "2")
    assert page.text_content("#connection") == "live"
    assert requested_hosts == {web_ui.split("/")[2]}, f"the page loaded from elsewhere: {requested_hosts}"

    screenshot = DOCS_SCREENSHOT if os.environ.get(UPDATE_DOCS_VARIABLE) else tmp_path / "webui.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_page_and_json_show_worker_managers(web_ui, combo, browser_page):
    manager = subprocess.Popen(["scaler_worker_manager", "baremetal_native", combo.address, "--worker-manager-id",
                                "wm-ui", "--max-task-concurrency", "1", "--logging-level", "WARNING"])
    try:
        wait_until(lambda: [m["id"] for m in get_json(web_ui + "/api/status").get("managers", [])] == ["wm-ui"], 20,
                   message="the manager in the status")
        page = browser_page
        page.goto(web_ui + "/")
        rows = page.locator("#managers tbody tr.manager-row")
        wait_until(lambda: rows.count() >= 1, 20, message="a worker manager row")
        assert page.locator("#managers-panel").is_visible()
        assert "wm-ui" in rows.first.text_content() and "baremetal_native" in rows.first.text_content()
    finally:
        manager.terminate()
        manager.wait(20)
