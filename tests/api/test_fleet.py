"""``GET /fleet`` (the dashboard's fleet view) and the dashboard's files, over HTTP on a live app."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_api import LiveApi, assert_json_error, register

from servertrack.api.ui_handlers import UI_ROOT
from servertrack.common.fleet import MAX_LIMIT


def seed(api: LiveApi) -> None:
    """Three HTTP-only servers with loads, one node with loads, one node known only from a hello."""
    for name, cpu, ram in (("web-01", 10.0, 70.0), ("web-02", 90.0, 20.0), ("db-01", 50.0, 50.0)):
        api.record(name, cpu=cpu, ram=ram)
    api.record("agent-01", cpu=30.0, ram=40.0)
    api.apply()
    register(api, "agent-01", ["10.0.0.1"])
    register(api, "hello-only", ["10.0.0.2"])


def names(body: dict) -> list[str]:
    return [row["name"] for row in body["rows"]]


def test_the_fleet_lists_servers_and_nodes_with_their_state_load_and_sparkline(api: LiveApi) -> None:
    seed(api)
    reply = api.get("/fleet")
    assert reply.status == 200 and reply.content_type == "application/json"
    body = reply.json
    assert body["total"] == body["matched"] == 5
    assert body["sort"] == "name" and body["order"] == "asc" and body["offset"] == 0 and body["limit"] == 50
    assert names(body) == ["agent-01", "db-01", "hello-only", "web-01", "web-02"]
    rows = {row["name"]: row for row in body["rows"]}
    assert rows["agent-01"]["node"] and rows["hello-only"]["node"] and not rows["web-01"]["node"]
    assert rows["web-02"]["cpu"] == 90.0 and rows["web-02"]["ram"] == 20.0
    assert rows["hello-only"]["cpu"] is None and rows["hello-only"]["spark"] is None
    spark = rows["web-01"]["spark"]
    assert spark["step"] == 60 and len(spark["cpu"]) == len(spark["ram"]) == 60
    # the current minute holds the sample; every other minute is a gap, not a zero
    assert spark["cpu"][-1] == 10.0 and spark["ram"][-1] == 70.0 and set(spark["cpu"][:-1]) == {None}
    assert sum(body["states"].values()) == 5 and body["states"]["online"] == 5


def test_filters_sorts_and_pages_are_done_by_the_server(api: LiveApi) -> None:
    seed(api)
    assert names(api.get("/fleet?sort=cpu").json) == ["web-02", "db-01", "agent-01", "web-01", "hello-only"]
    assert names(api.get("/fleet?sort=cpu&order=asc").json) == ["web-01", "agent-01", "db-01", "web-02",
                                                                 "hello-only"]
    assert names(api.get("/fleet?sort=ram&limit=2").json) == ["web-01", "db-01"]
    page = api.get("/fleet?sort=ram&limit=2&offset=2").json
    assert names(page) == ["agent-01", "web-02"] and page["matched"] == 5
    filtered = api.get("/fleet?q=WEB").json  # names are lower case; so is the filter
    assert names(filtered) == ["web-01", "web-02"] and filtered["matched"] == 2 and filtered["total"] == 5
    assert names(api.get("/fleet?min_cpu=50").json) == ["db-01", "web-02"]
    assert names(api.get("/fleet?min_ram=50&min_cpu=50").json) == ["db-01"]
    assert names(api.get("/fleet?state=offline").json) == []
    assert names(api.get("/fleet?name=WEB-01").json) == ["web-01"]  # exactly this name, canonical
    assert names(api.get("/fleet?name=web-0").json) == []
    assert names(api.get("/fleet?name=web-01&state=stale").json) == []


def test_a_state_filter_follows_the_clock(api: LiveApi) -> None:
    seed(api)
    api.clock.advance(10)  # the HTTP servers sampled once: 10 s of silence is stale
    body = api.get("/fleet?state=stale").json
    assert {"web-01", "web-02", "db-01"} <= set(names(body))
    assert body["states"]["stale"] == len(body["rows"])


@pytest.mark.parametrize("query, fragment", [
    ("limit=0", "limit"), (f"limit={MAX_LIMIT + 1}", "limit"), ("limit=x", "limit"), ("limit=-1", "limit"),
    ("offset=-1", "offset"), ("offset=99999999999", "offset"), ("sort=cpu;drop", "sort"), ("sort=%20", "sort"),
    ("order=up", "order"), ("state=asleep", "state"), ("min_cpu=101", "min_cpu"), ("min_cpu=nan", "min_cpu"),
    ("min_ram=-5", "min_ram"), ("min_ram=1e3", "min_ram"), ("q=" + "a" * 254, "q"), ("q=%1b%5b31m", "q"), ("q=<script>", "q"), ("q=a%20b", "q"),
    ("name=a%20b", "name"), ("name=" + "a" * 254, "name"), ("sort=cpu&sort=ram", "once"), ("q=a&q=b", "once"), ("limit=1&limit=2", "once"),
])
def test_a_bad_parameter_is_a_400_naming_it(api: LiveApi, query: str, fragment: str) -> None:
    assert_json_error(api.get("/fleet?" + query), 400, fragment)


def test_the_bounds_themselves_are_accepted(api: LiveApi) -> None:
    seed(api)
    assert len(api.get(f"/fleet?limit={MAX_LIMIT}&offset=0").json["rows"]) == 5
    assert api.get("/fleet?limit=1&offset=10000000").json["rows"] == []
    assert names(api.get("/fleet?min_cpu=100").json) == []
    assert len(api.get("/fleet?min_cpu=0&min_ram=0.000001").json["rows"]) == 4
    assert api.get("/fleet?q=" + "a" * 253).status == 200


def test_the_page_is_served_without_a_token_with_a_strict_policy(api: LiveApi) -> None:
    reply = api.get("/")
    assert reply.status == 200 and reply.content_type == "text/html"
    assert reply.raw == (UI_ROOT / "index.html").read_bytes()
    policy = reply.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    script = api.get("/ui/app.js")
    assert script.status == 200 and "javascript" in script.content_type
    assert script.raw == (UI_ROOT / "app.js").read_bytes()
    head = api.request("HEAD", "/")
    assert head.status == 200 and head.raw == b""
    cached = api.request("GET", "/ui/app.js", headers={"If-None-Match": script.headers["Etag"]})
    assert cached.status == 304


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/../setup.cfg", "/ui/%2e%2e/%2e%2e/setup.cfg",
                                  "/ui/vendor/", "/ui//etc/passwd", "/ui/app.js%00"])
def test_a_file_outside_the_dashboard_is_a_json_error(api: LiveApi, path: str) -> None:
    reply = api.get(path)
    assert reply.status in (403, 404), (path, reply.status)
    assert_json_error(reply, reply.status)
    assert b"[metadata]" not in reply.raw and b"root:" not in reply.raw


def test_a_foreign_host_gets_no_page(api: LiveApi) -> None:
    before = api.stats.http_refused["bad_host"]
    reply = api.request("GET", "/", headers={"Host": "rebound.example"})
    assert_json_error(reply, 403, "rebound.example")
    assert api.stats.http_refused["bad_host"] == before + 1


def test_the_page_loads_nothing_from_another_host() -> None:
    for path in Path(UI_ROOT).glob("*.*"):
        text = path.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a load
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
