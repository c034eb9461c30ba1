"""Fuzzing every write route (POST, PUT, DELETE), with the promises themselves as the property.

For any input: no 5xx and no exception escapes; an error is a 4xx with a JSON
``{"error": ...}`` body; a refused input changes nothing stored; every
counter stays JSON-encodable and ``/stats`` adds up per kind
(``received == applied + dropped + pending``); whatever was stored renders.
Bounded: a few dozen examples per route, seconds in all.

The write routes are walked from ``make_app`` (``request_fuzz.app_routes``):
a write route without a fuzz test here fails ``test_every_write_route_has_a_fuzz_test``.
The read routes are fuzzed in ``test_fuzz_reads``, the frame and control
decoders in ``tests/common/test_frame_fuzz``.

Not here yet: schemathesis against an OpenAPI document. The service has none
so far (the operators'-surfaces issue adds it); once it does, a schemathesis
run over it belongs beside these tests.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live_api import HELLO, HTTP_EXAMPLES, LiveApi, hello_body, put_stats, quote, register, stats_body
from request_fuzz import (
    QUERIES,
    SEGMENTS,
    WRITE_METHODS,
    app_routes,
    bodies,
    check_promises,
    fuzzes,
    route_paths,
)

from servertrack.api.views import server_loads


def _valid_sample() -> dict[str, Any]:
    return {"cpu": 12.5, "ram": 40.0}


@fuzzes("POST", "/servers/([^/]+)/loads")
@HTTP_EXAMPLES
@given(segment=SEGMENTS, body=bodies(_valid_sample()))
def test_post_one_sample(api: LiveApi, segment: str, body: bytes) -> None:
    check_promises(api, "POST", f"/servers/{quote(segment)}/loads", body)
    api.apply()
    for name, _ in api.aggregator.servers():
        orjson.dumps(server_loads(api.aggregator.windows(name)))  # type: ignore[arg-type]


@fuzzes("POST", "/loads")
@HTTP_EXAMPLES
@given(body=bodies([{"server": "web-01", "cpu": 1, "ram": 2}, {"server": "db-01", "cpu": 3, "ram": 4}]))
def test_post_a_batch(api: LiveApi, body: bytes) -> None:
    check_promises(api, "POST", "/loads", body)


@fuzzes("POST", "/server/([^/]+)/?")
@HTTP_EXAMPLES
@given(segment=SEGMENTS, body=bodies(_valid_sample()))
def test_post_to_the_server_api(api: LiveApi, segment: str, body: bytes) -> None:
    check_promises(api, "POST", f"/server/{quote(segment)}", body)


_FORM_PARTS = st.one_of(
    st.sampled_from(["cpuload", "memload", "cpuload=", "memload=", "=", "&", "%", "%zz", "%00", "%FF", "+", "1e5",
                     "cpuload=50", "memload=50", "100", "100.0001", "-0", "nan", "1_0", "\xff"]),
    st.text(max_size=12),
)
FORMS = st.one_of(
    st.lists(_FORM_PARTS, max_size=8).map(lambda parts: "&".join(parts).encode("utf-8", "replace")),
    st.binary(max_size=64),
)


@fuzzes("POST", "/perf/([^/]+)/?")
@HTTP_EXAMPLES
@given(segment=st.one_of(st.just("web-01"), SEGMENTS), body=FORMS)
def test_post_a_perf_form(api: LiveApi, segment: str, body: bytes) -> None:
    status = check_promises(api, "POST", f"/perf/{quote(segment)}/", body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    api.apply()
    if status < 300:
        for mode in ("last_minute", "last_hour", "last_day"):
            assert api.get(f"/perf/{quote(segment.lower().rstrip('.'))}/{mode}").status == 200


NODE_EXAMPLES = settings(HTTP_EXAMPLES, max_examples=150)


@fuzzes("POST", "/nodes")
@NODE_EXAMPLES
@given(body=bodies(hello_body("node-fuzz", ["10.0.0.5", "fd00::1"])))
def test_post_a_node(api: LiveApi, body: bytes) -> None:
    check_promises(api, "POST", "/nodes", body)


@fuzzes("PUT", "/nodes/([^/]+)")
@NODE_EXAMPLES
@given(segment=st.one_of(st.just("node-known"), SEGMENTS), body=bodies(stats_body()))
def test_put_a_snapshot(api: LiveApi, segment: str, body: bytes) -> None:
    if "node-known" not in api.nodes:
        register(api, "node-known", ["10.0.0.9"])
    check_promises(api, "PUT", f"/nodes/{quote(segment)}", body)


# -- deregistering, pausing, the /cluster API ---------------------------------------------------

# What the node routes are sent: a known node by each of its spellings, an address two nodes share.
KNOWN_NODES = st.sampled_from(["node-known", "NODE-KNOWN.", "10.0.0.9", "fd00::9", "10.0.0.8", "node-gone"])
KNOWN_ADDRESSES = st.sampled_from(["10.0.0.9", "fd00::9", "fd00:0::9", "10.0.0.8", "10.0.0.10", "node-known"])
# Optional bodies (a DELETE or a control request needs none), under any Content-Type.
MAYBE_BODIES = st.one_of(st.none(), bodies({}))
CONTENT_TYPES = st.sampled_from([{}, {"Content-Type": "text/plain"}, {"Content-Type": "application/json; charset=x"},
                                 {"Content-Type": "application/x-www-form-urlencoded"}])


def known_nodes(api: LiveApi) -> None:
    """``node-known`` (10.0.0.9, fd00::9, with a snapshot) and ``node-twin``, which shares 10.0.0.8 with it,
    registered again if an example deleted them."""
    if "node-known" not in api.nodes:
        register(api, "node-known", ["10.0.0.9", "fd00::9", "10.0.0.8"])
        put_stats(api, "node-known")
    if "node-twin" not in api.nodes:
        register(api, "node-twin", ["10.0.0.8"])


@fuzzes("DELETE", "/nodes/([^/]+)")
@fuzzes("DELETE", "/cluster/nodes/([^/]+)")
@pytest.mark.parametrize("pattern, known", [("/nodes/([^/]+)", KNOWN_NODES),
                                            ("/cluster/nodes/([^/]+)", KNOWN_ADDRESSES)], ids=["native", "cluster"])
@HTTP_EXAMPLES
@given(data=st.data(), body=MAYBE_BODIES, headers=CONTENT_TYPES)
def test_delete_a_node(api: LiveApi, pattern: str, known: st.SearchStrategy[str], data: st.DataObject,
                       body: bytes | None, headers: dict[str, str]) -> None:
    known_nodes(api)
    path = data.draw(route_paths(pattern, known), "path")
    if check_promises(api, "DELETE", path, body, headers) < 300:
        assert api.get(path).status == 404


@fuzzes("POST", "/nodes/([^/]+)/(pause|resume)")
@HTTP_EXAMPLES
@given(path=route_paths("/nodes/([^/]+)/(pause|resume)", KNOWN_NODES), body=MAYBE_BODIES, headers=CONTENT_TYPES)
def test_pause_or_resume_a_node(api: LiveApi, path: str, body: bytes | None, headers: dict[str, str]) -> None:
    known_nodes(api)
    check_promises(api, "POST", path, body if body is not None else b"", headers)


@fuzzes("POST", "/(start|stop)")
@HTTP_EXAMPLES
@given(path=route_paths("/(start|stop)", st.nothing()), query=st.one_of(
    QUERIES, st.lists(KNOWN_NODES.map(lambda node: f"node={quote(node)}"), max_size=2).map(
        lambda parts: "?" + "&".join(parts))), body=MAYBE_BODIES, headers=CONTENT_TYPES)
def test_start_or_stop_the_fleet(api: LiveApi, path: str, query: str, body: bytes | None,
                                 headers: dict[str, str]) -> None:
    known_nodes(api)
    check_promises(api, "POST", path + query, body if body is not None else b"", headers)


def _transcript_hello() -> dict[str, Any]:
    return {"ip": ["10.0.0.7", "fd00::7"], "hostname": "node-transcript", "boottime": HELLO["boot_time"],
            **{key: value for key, value in HELLO.items() if key not in ("hostname", "boot_time")}}


@fuzzes("POST", "/cluster/nodes")
@NODE_EXAMPLES
@given(body=st.one_of(bodies(_transcript_hello()), bodies({"ip": "10.0.0.7", "name": "node-t", "boot_time": 1.0})))
def test_post_a_cluster_node(api: LiveApi, body: bytes) -> None:
    check_promises(api, "POST", "/cluster/nodes", body)


@fuzzes("PUT", "/cluster/nodes/([^/]+)")
@NODE_EXAMPLES
@given(path=route_paths("/cluster/nodes/([^/]+)", KNOWN_ADDRESSES), body=bodies(stats_body()))
def test_put_a_cluster_snapshot(api: LiveApi, path: str, body: bytes) -> None:
    known_nodes(api)
    check_promises(api, "PUT", path, body)


# -- every write route is fuzzed ------------------------------------------------------------------


def test_every_write_route_has_a_fuzz_test() -> None:
    routes = {(method, pattern) for pattern, methods in app_routes().items()
              for method in methods if method in WRITE_METHODS}
    fuzzed = {route for test in globals().values() for route in getattr(test, "fuzzed_routes", ())}
    assert routes - fuzzed == set(), "write routes without a fuzz test"
    assert fuzzed - routes == set(), "fuzz tests of routes the application does not have"
