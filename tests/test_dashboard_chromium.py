"""The web dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real ``serve``.

One service with read and write tokens, a real agent (a node with snapshots, paused and resumed from
the page), HTTP-only servers with an hour of history and a gap, and a hello-only node whose hostname
is an HTML payload. The test walks what an operator does: opens the page, gives the token, reads the
fleet, filters, sorts, opens a server's charts and range, pauses and resumes a node, and sees the
service go unreachable. Screenshots land in the test's temp dir; no console error is allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_end_to_end import Service, running_service, spawned, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WRITE_TOKEN = "c5" * 32
READ_TOKEN = "d6" * 32
# As the machine's closed network wants it: no background connections, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
WAIT_MS = 10_000
HOSTILE_HOST = '<img src=x onerror="window.__pwned=1">'

if not os.path.exists(CHROMIUM):  # CI installs it (.ci/run): there a missing browser fails the test
    if os.environ.get("CI"):
        raise RuntimeError(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright  # noqa: E402

# Waits go through Playwright's expect (no page-side eval: the dashboard's CSP forbids it, and stays on).
expect.set_options(timeout=WAIT_MS)


def call(url: str, method: str, path: str, body: Any = None) -> Any:
    """One API request with the write token; the JSON answer."""
    request = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {WRITE_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def seed(url: str) -> None:
    """web-01 with 48 of the last 58 minutes (a 10-minute gap) and the current one: 49 minutes with data
    whichever minute the checks run in; web-02 and db-01 with a few minutes."""
    now = time.time()
    samples = [{"server": "web-01", "cpu": 20.0 + minute % 30, "ram": 40.0, "ts": now - minute * 60}
               for minute in range(58, 0, -1) if not 20 <= minute < 30]
    samples += [{"server": name, "cpu": cpu, "ram": 30.0, "ts": now - minute * 60}
                for name, cpu in (("web-02", 85.0), ("db-01", 55.0)) for minute in range(5, 0, -1)]
    samples += [{"server": name, "cpu": cpu, "ram": 30.0} for name, cpu in (("web-01", 25.0), ("web-02", 85.0),
                                                                            ("db-01", 55.0))]
    call(url, "POST", "/loads", samples)
    call(url, "POST", "/nodes", {"name": "odd-node", "ip": ["10.9.9.9"], "hostname": HOSTILE_HOST,
                                 "boot_time": now - 3600, "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2,
                                 "memory_total": 2**30, "agent_version": "0.2.0", "interval": 60.0})


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    """A service with tokens, an agent and the seeded fleet; yields it and the agent's node name."""
    (tmp_path / "write.token").write_text(WRITE_TOKEN)
    (tmp_path / "read.token").write_text(READ_TOKEN)
    with running_service("--store", "memory", "--write-token", str(tmp_path / "write.token"),
                         "--read-token", str(tmp_path / "read.token")) as service:
        node = "dash-node.local"
        with spawned("agent", "--collector", service.ingest, "--control", service.control, "--name", node,
                     "--interval", "0.5", "--stats-every", "1", "--process-interval", "0.5"):
            seed(service.url)
            def snapshot_arrived() -> bool:
                try:
                    return call(service.url, "GET", f"/nodes/{node}").get("stats_at") is not None
                except urllib.error.HTTPError:  # 404 until the agent's hello
                    return False
            wait_for(snapshot_arrived, 10, "the agent's first snapshot")
            yield service, node


def rows(page: Page) -> list[str]:
    return page.eval_on_selector_all("#fleet-rows tr", "rows => rows.map(row => row.dataset.name)")


def test_an_operator_walks_the_dashboard(dashboard: tuple[Service, str], tmp_path: Path) -> None:
    service, node = dashboard
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(message.text)
            page.on("console", console)
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))

            # The reads need a token: the page says so, then takes it.
            page.goto(service.url + "/")
            page.wait_for_selector("#token-panel:not([hidden])", timeout=WAIT_MS)
            assert page.get_attribute("#status", "data-state") == "unauthorized"
            assert rows(page) == []
            errors.clear()  # the browser logs the 401 it was answered, as it should
            page.fill("#token-input", WRITE_TOKEN)
            page.click("#token-panel button[type=submit]")

            # The fleet: every server and node, with states, loads and sparklines.
            expect(page.locator("#fleet-rows tr")).to_have_count(5)
            listed = rows(page)  # by cpu, highest first (the default); no load last
            assert set(listed) == {"web-02", "db-01", "web-01", node, "odd-node"} and listed[-1] == "odd-node"
            assert [name for name in listed if name.startswith(("web", "db"))] == ["web-02", "db-01", "web-01"]
            assert page.get_attribute(f'#fleet-rows tr[data-name="{node}"]', "data-state") == "online"
            assert page.get_attribute('#fleet-rows tr[data-name="odd-node"]', "class") == "node"
            assert page.text_content('#fleet-rows tr[data-name="web-02"] td.cpu') == "85.0"
            points = int(page.get_attribute('#fleet-rows tr[data-name="web-01"] canvas.spark', "data-points") or 0)
            assert points == 49  # the gap is no line
            assert page.get_attribute("#status", "data-state") == "live"
            # live: with nothing reloaded, the HTTP servers turn stale as they fall silent
            expect(page.locator('#fleet-rows tr[data-name="db-01"]')).to_have_attribute("data-state", "stale")
            page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)

            # Filter and sort, both done by the server.
            page.fill("#filter-name", "web")
            expect(page.locator("#fleet-rows tr")).to_have_count(2)
            assert rows(page) == ["web-02", "web-01"]
            assert "2 of 2 matching (5 in all)" in (page.text_content("#page-info") or "")
            page.click("#fleet th[data-sort=name]")
            expect(page.locator("#fleet-rows tr").first).to_have_attribute("data-name", "web-01")
            page.fill("#filter-name", "")
            page.select_option("#filter-state", "online")
            # the HTTP-only servers are stale by now
            expect(page.locator("#fleet-rows tr").first).to_have_attribute("data-name", node)
            expect(page.locator("#fleet-rows tr")).to_have_count(2)
            assert rows(page) == [node, "odd-node"]
            page.select_option("#filter-state", "")

            # A server: the 60-minute and 24-hour charts, gaps drawn as gaps, and the range picker.
            page.wait_for_selector('#fleet-rows tr[data-name="web-01"] a', timeout=WAIT_MS)
            page.click('#fleet-rows tr[data-name="web-01"] a')
            page.wait_for_selector("#chart-minutes canvas", timeout=WAIT_MS)
            assert page.text_content("#server-name") == "web-01"
            assert page.get_attribute("#chart-minutes", "data-buckets") == "60"
            assert page.get_attribute("#chart-minutes", "data-points") == "49"  # the gap stays a gap
            assert int(page.get_attribute("#chart-hours", "data-points") or 0) >= 1
            page.wait_for_selector("#chart-range canvas", timeout=WAIT_MS)  # the last 6 h, by default
            expect(page.locator("#range-note")).to_contain_text("one bucket per minute")
            six_hours = page.text_content("#range-note") or ""
            page.click("#range-form button[data-range='86400']")
            expect(page.locator("#range-note")).not_to_have_text(six_hours)
            assert "one bucket per minute" in (page.text_content("#range-note") or "")
            assert int(page.get_attribute("#chart-range", "data-points") or 0) >= 49
            assert page.is_hidden("#node-section")  # HTTP only: no node
            page.screenshot(path=str(tmp_path / "server.png"), full_page=True)

            # A node: its latest snapshot, paused and resumed from the page.
            page.goto(f"{service.url}/#/server/{node}")
            page.wait_for_selector("#node-section:not([hidden]) #node-cpu .meter", timeout=WAIT_MS)
            assert page.locator("#node-cpu .meter").count() >= 2  # all, then each CPU
            assert page.locator("#node-memory .meter").count() == 2  # memory and swap
            assert page.locator("#node-processes tbody tr").count() >= 1
            assert page.locator("#node-disks tbody tr").count() >= 1
            page.click("#node-pause")
            page.wait_for_selector("#server-state[data-state=paused]", timeout=WAIT_MS)  # the agent said so
            page.screenshot(path=str(tmp_path / "node.png"), full_page=True)
            page.click("#node-resume")
            page.wait_for_selector("#server-state[data-state=online]", timeout=WAIT_MS)

            # Hostile text from the wire is shown as text.
            page.goto(f"{service.url}/#/server/odd-node")
            expect(page.locator("#node-host")).to_contain_text(HOSTILE_HOST)
            assert page.evaluate("window.__pwned") is None
            assert page.locator("#node-host img").count() == 0
            assert errors == []

            # The service goes away: the page says so, and keeps the last data on screen.
            page.goto(service.url + "/")
            expect(page.locator("#fleet-rows tr")).to_have_count(5)
            service.process.kill()
            service.process.wait()
            page.wait_for_selector("#status[data-state=unreachable]", timeout=WAIT_MS)
            assert len(rows(page)) == 5
            page.screenshot(path=str(tmp_path / "unreachable.png"))
            assert all("ERR_CONNECTION_REFUSED" in error for error in errors), errors
        finally:
            browser.close()
    for name in ("fleet.png", "server.png", "node.png", "unreachable.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
