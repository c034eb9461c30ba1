"""What the HTTP fuzz tests share: hostile inputs, the promises every answer keeps, and the routes to cover.

The routes are walked from ``make_app``'s own table (``app_routes``), so a
route added to the application is fuzzed (GET) or fails the coverage test
until a fuzz test names it (``fuzzes``, every other method).
"""

from __future__ import annotations

import copy
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import tornado.web
from hypothesis import strategies as st

from live_api import DAY, START, LiveApi, Response, quote

from servertrack.api import make_app
from servertrack.api.node_views import node_detail, node_section
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.nodes import NODE_STATES
from servertrack.common.stats import COUNTED_KINDS, IngestStats

# JSON values of every shape, with the awkward numbers and strings an attacker would send.
EDGES = st.sampled_from([
    0, -1, 100, 100.000001, 1e17, 2**64 - 1, 2**64, 2**63, 2**32, 253_402_300_800, 1e308, -0.0, 0.01, 3600.1,
    "\x1b[2J", "a\nb", "\x00", "\u202e", "10.0.0.5", ".", "web-01.", "x" * 300, "é" * 40, "", [], {},
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40), EDGES,
)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=20)
SEGMENTS = st.one_of(st.text(min_size=1, max_size=80), st.sampled_from(
    ["10.0.0.5", "..", ".", "-", "node-fuzz", "NODE-FUZZ.", "fd00::1", "%2e%2e", "a" * 300]))


def _paths(body: Any) -> list[list[Any]]:
    """The path of every value inside ``body`` (map keys and list indexes)."""
    found: list[list[Any]] = [[]]
    if isinstance(body, dict):
        for key, value in body.items():
            found += [[key, *rest] for rest in _paths(value)]
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found += [[index, *rest] for rest in _paths(value)]
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one value somewhere inside it replaced by any JSON value (or deleted)."""
    body = copy.deepcopy(valid)
    path = draw(st.sampled_from(_paths(body)))
    if not path:
        return draw(JSON)
    target = body
    for key in path[:-1]:
        target = target[key]
    choice = draw(st.integers(0, 3))
    if choice == 0 and isinstance(target, dict):
        del target[path[-1]]
    else:  # values at and over the bounds, half the time
        target[path[-1]] = draw(EDGES if choice >= 2 else JSON)
    return body


def bodies(valid: Any) -> st.SearchStrategy[bytes]:
    """JSON bodies near ``valid`` (one value changed), any JSON, bytes that are not JSON."""
    return st.one_of(
        mutated(valid).map(lambda body: json.dumps(body).encode()),
        JSON.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"[1,", b'{"cpu": NaN, "ram": 1}', b"\xff\xfe", b'{"a": 1, "a": 2}']),
    )


def check_answer(reply: Response, request: object) -> None:
    """``reply`` is a 2xx, or a 4xx with Content-Type application/json and a body ``{"error": "<text>"}``."""
    assert 200 <= reply.status < 300 or 400 <= reply.status < 500, (request, reply.status, reply.raw)
    if reply.status >= 400:
        assert reply.content_type == "application/json", (request, reply.headers.get("Content-Type"))
        error = reply.json
        assert set(error) == {"error"} and isinstance(error["error"], str) and error["error"], (request, error)


def stored(api: LiveApi) -> tuple[dict[str, Any], dict[str, int]]:
    """What a request may store (``LiveApi.state``) and the counts of messages applied."""
    return api.state(), dict(api.stats.applied)


def check_counters(api: LiveApi) -> None:
    """Every counter is JSON-encodable and ``/stats`` adds up per kind; whatever is stored renders."""
    counters = api.counters()
    orjson.dumps(counters)
    for kind in COUNTED_KINDS:
        counts = counters["kinds"][kind]
        assert counts["received"] == counts["applied"] + sum(counts["dropped"].values()) + counts["pending"], kind
    for node, state in api.nodes.nodes():
        orjson.dumps(node_detail(node, state))
        stats = node.stats()
        if stats is not None:
            for section in ("cpu", "memory", "disks", "network", "processes"):
                orjson.dumps(node_section(node, stats, section))


def check_promises(api: LiveApi, method: str, path: str, body: bytes | None,
                   headers: dict[str, str] | None = None) -> int:
    """Send one request and check every promise (a refusal changes nothing stored, nor the counts of
    what was applied); return the status."""
    before = stored(api)
    reply = api.request(method, path, body, headers=headers)
    check_answer(reply, (method, path, body))
    if reply.status >= 400:
        assert stored(api) == before, (method, path, body, reply.raw)
    check_counters(api)
    return reply.status


# -- the routes -------------------------------------------------------------------------------

WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")
Test = TypeVar("Test", bound=Callable[..., Any])


def app_routes() -> dict[str, list[str]]:
    """Every route of ``make_app`` (its pattern, without the final ``$``) and the methods its handler
    implements."""
    app = make_app(Aggregator(1), PendingBatch(), AgentInventory(1), IngestStats())
    routes: dict[str, list[str]] = {}
    for rule in app.wildcard_router.rules:
        handler = rule.target
        pattern = rule.matcher.regex.pattern.removesuffix("$")  # type: ignore[attr-defined]
        routes[pattern] = [method for method in handler.SUPPORTED_METHODS
                           if getattr(handler, method.lower()) is not getattr(tornado.web.RequestHandler,
                                                                              method.lower())]
    return routes


def fuzzes(method: str, pattern: str) -> Callable[[Test], Test]:
    """Mark a test as the fuzz test of ``method`` on the route ``pattern`` (as ``app_routes`` names it)."""
    def mark(test: Test) -> Test:
        test.fuzzed_routes = (*getattr(test, "fuzzed_routes", ()), (method, pattern))  # type: ignore[attr-defined]
        return test
    return mark


_GROUP = re.compile(r"\((?P<inner>[^()]*)\)")
_LITERALS = re.compile(r"[A-Za-z_|]+")


@st.composite
def route_paths(draw: st.DrawFn, pattern: str, *known: st.SearchStrategy[str]) -> str:
    """A URL path of ``pattern``: its n-th free segment one of ``known[n]`` (the last one for the rest),
    each choice of literals (``(cpu|memory)``) one of them, or (a quarter of the time) any text, quoted;
    an optional final slash, or not."""
    free = 0

    def segment(group: re.Match[str]) -> str:
        nonlocal free
        inner = group["inner"]
        if _LITERALS.fullmatch(inner):
            options = st.sampled_from(inner.split("|"))
        else:
            options = known[min(free, len(known) - 1)]
            free += 1
        return quote(draw(SEGMENTS if draw(st.integers(0, 3)) == 0 else options))
    path = _GROUP.sub(segment, pattern.replace("\\.", "."))  # an escaped dot: /openapi\.json
    if path.endswith("/?"):
        path = path[:-2] + draw(st.sampled_from(["", "/"]))
    return path



# -- query strings ------------------------------------------------------------------------------

# Times and other values at and past every edge the range parameters and the listings have (the clock
# of the tests reads live_api.START, 2027-01-15T08:00:17.5Z).
QUERY_EDGES = st.sampled_from([
    "0", "-0", "-1", "1", "253402300799", "253402300800", "99999999999999999999", "1800000017.5", "1800000077.6",
    "1799913617", "1799400000", "1e9", "nan", "inf", "0x10", "1800000000.1234567891", "2027-01-15T08:00:00Z",
    "2027-01-15t08:00:00z", "2027-01-15 08:00:00", "2027-01-15T08:00:00.123456789Z", "2027-01-15T09:00:00+01:00",
    "2027-01-15T08:00:00+23:59", "2027-01-15T08:00:00-24:00", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00",
    "0000-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2027-02-30T00:00:00Z",
    "2027-01-15T24:00:00Z", "minute", "hour", "Minute", "second", "1h", "24h", "up", "offline", "paused", "10000",
    "10001", "node-a", "10.0.0.5", "web-01", "", " ", "x" * 65,
])
QUERY_KEYS = st.one_of(st.sampled_from(["from", "to", "step", "limit", "after", "state", "window", "node"]),
                       st.text(max_size=12))
# Sent as they are: percent-encodings that are broken, or that decode to what a path or query must not hold.
RAW_FRAGMENTS = st.sampled_from(["%", "%zz", "%0", "%00", "%FF%FE", "%C0%AF", "+", "%2B", "%20", "%0A", ";", "="])
_QUERY_TEXT = st.one_of(QUERY_EDGES.map(quote), st.text(max_size=40).map(quote), RAW_FRAGMENTS,
                        st.text(min_size=64, max_size=400).map(quote))
_QUERY_PARTS = st.one_of(st.tuples(QUERY_KEYS.map(quote), _QUERY_TEXT).map("=".join),
                         QUERY_KEYS.map(quote), RAW_FRAGMENTS)
_ANY_QUERY = st.lists(_QUERY_PARTS, max_size=6).map(lambda parts: "?" + "&".join(parts) if parts else "")
# Times the range queries serve, or nearly: around the tests' clock, as epoch seconds or ISO-8601.
TIMES = st.one_of(
    QUERY_EDGES,
    st.floats(START - 2 * DAY, START + 120).map(lambda ts: f"{ts:.3f}"),
    st.integers(int(START - 2 * DAY), int(START + 120)).map(
        lambda ts: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))),
)


def queries(names: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Query strings: any parts at all, or the parameters the routes read with values near and at their
    edges (``names``: the servers and nodes ``node`` and ``after`` may name)."""
    parameters = st.fixed_dictionaries({}, optional={
        "from": TIMES, "to": TIMES, "step": st.one_of(st.sampled_from(["minute", "hour"]), QUERY_EDGES),
        "window": st.one_of(st.sampled_from(["1h", "24h"]), QUERY_EDGES), "node": names, "after": names,
        "limit": st.integers(-1, 10_001).map(str), "state": st.one_of(st.sampled_from(NODE_STATES), QUERY_EDGES),
    })
    return st.one_of(_ANY_QUERY, parameters.map(lambda query: "?" + urllib.parse.urlencode(query)))


QUERIES = queries(QUERY_EDGES)
