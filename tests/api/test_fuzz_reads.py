"""Fuzzing every read route (GET): arbitrary path segments and query strings, the promises as the property.

Every GET route of ``make_app`` is walked from its table (``request_fuzz.app_routes``), so a new one
is fuzzed without a line here. Its segments are known names, addresses, pids, modes and sections (so
that requests reach the code behind the lookups) or any text; its query strings hold any keys, keys
repeated, controls, broken and hostile percent-encodings, values past every length limit, and the
edge values of ``from``/``to``/``step``, ``limit``, ``after``, ``state``, ``window`` and ``node``.

For any request: no 5xx and no exception escapes; a 2xx answers JSON, an error is a 4xx with a JSON
``{"error": ...}`` body; a read changes nothing stored and counts nothing (but ``GET /stop`` and
``/start`` of the old clients, which pause and resume nodes when they succeed); ``/stats`` adds up.
The range queries are answered from the rings (``LoadHistory`` without a store, as ``--store memory``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson
from prometheus_client.parser import text_string_to_metric_families
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live_api import DAY, HTTP_EXAMPLES, START, LiveApi, put_stats, quote, register
from request_fuzz import QUERIES, SEGMENTS, app_routes, check_answer, check_counters, queries, route_paths, stored

_DASHBOARD_TYPES = {"text/html", "text/css", "application/javascript", "text/javascript", "image/svg+xml",
                    "application/json", "text/markdown", "text/plain"}
READ_ROUTES = sorted(pattern for pattern, methods in app_routes().items() if "GET" in methods)
# The reads of the old clients that pause and resume nodes (see control_handlers).
_CONTROL_READS = re.compile(r"/(start|stop)")
# What the segments of a path are, besides any text: the servers, nodes and addresses of ``read_api``
# (the first segment of a route), its pids, and the names of modes (the second).
NAMES = st.sampled_from(["web-01", "WEB-01.", "web-02", "node-a", "Node-A.", "node-b", "10.0.0.5", "fd00::10",
                         "fd00:0:0::10", "10.0.0.6", "127.0.0.1"])
DETAILS = st.sampled_from(["101", "202", "0101", "0", "4294967295", "4294967296", "last_minute", "last_hour",
                           "last_day", "LAST_DAY"])
READ_EXAMPLES = settings(HTTP_EXAMPLES, max_examples=40)


@pytest.fixture
def read_api(make_api: Callable[..., LiveApi]) -> LiveApi:
    """The app with range queries and something to read: servers ``web-01`` (samples over the last day,
    applied) and ``web-02`` (one pending); nodes ``node-a`` (10.0.0.5, fd00::10, with a snapshot),
    ``node-b`` and ``web-01`` (both at 10.0.0.6, without one)."""
    api: LiveApi = make_api(with_history=True)
    for age in (0.0, 30.0, 3600.0, DAY - 3600.0):
        api.record("web-01", cpu=10.0, ram=20.0, ts=START - age)
    api.apply()
    api.record("web-02", cpu=30.0, ram=40.0)
    register(api, "node-a", ["10.0.0.5", "fd00::10"])
    put_stats(api, "node-a")
    register(api, "node-b", ["10.0.0.6"])
    register(api, "web-01", ["10.0.0.6"])
    return api


def check_read(api: LiveApi, url: str) -> None:
    """GET ``url``; check every promise of a read."""
    before, counted = stored(api), api.counters()
    reply = api.get(url)
    check_answer(reply, url)
    if reply.status < 300 and url.partition("?")[0] == "/metrics":  # Prometheus' text format, not JSON
        assert reply.content_type == "text/plain", (url, reply.headers.get("Content-Type"))
        assert list(text_string_to_metric_families(reply.raw.decode()))
    elif reply.status < 300 and (url.partition("?")[0] == "/" or url.startswith("/ui/")):  # the dashboard's files
        assert reply.content_type in _DASHBOARD_TYPES, (url, reply.headers.get("Content-Type"))
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    elif reply.status < 300:
        assert reply.content_type == "application/json", (url, reply.headers.get("Content-Type"))
        orjson.loads(reply.raw)
    if reply.status >= 300 or not _CONTROL_READS.fullmatch(url.partition("?")[0]):
        assert stored(api) == before, (url, reply.status, reply.raw)
        assert api.counters() == counted, (url, reply.status, reply.raw)
    check_counters(api)


@pytest.mark.parametrize("pattern", READ_ROUTES)
@READ_EXAMPLES
@given(data=st.data())
def test_any_path_and_query_of_a_read_route(read_api: LiveApi, pattern: str, data: st.DataObject) -> None:
    check_read(read_api, data.draw(route_paths(pattern, NAMES, DETAILS), "path") + data.draw(queries(NAMES), "query"))


@READ_EXAMPLES
@given(segments=st.lists(st.one_of(NAMES, DETAILS, SEGMENTS, st.sampled_from(["nodes", "servers", "cluster"])),
                         min_size=1, max_size=5), query=QUERIES)
def test_any_path_at_all(read_api: LiveApi, segments: list[str], query: str) -> None:
    check_read(read_api, "/" + "/".join(map(quote, segments)) + query)


def test_every_read_route_is_walked() -> None:
    # the walk finds the routes of each family (a broken walk would fuzz nothing, and pass)
    for route in ("/servers", "/stats", "/nodes/([^/]+)/summary", "/cluster/([^/]+)/(cpu|memory)", "/get_stats",
                  "/(start|stop)", "/perf/([^/]+)/([^/]+)", r"/openapi\.json"):
        assert route in READ_ROUTES
    assert len(READ_ROUTES) >= 20
