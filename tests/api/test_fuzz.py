"""Fuzzing every POST/PUT route and the frame decoder, with the promises themselves as the property.

For any input: no 5xx and no exception escapes; an error is a 4xx with a JSON
``{"error": ...}`` body; a refused input changes nothing stored; every
counter stays JSON-encodable and ``/stats`` adds up per kind
(``received == applied + dropped + pending``); whatever was stored renders.
Bounded: a few dozen examples per route, seconds in all.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgpack
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from live_api import HTTP_EXAMPLES, LiveApi, hello_body, quote, register, stats_body

from servertrack.api.node_views import node_detail, node_section
from servertrack.api.views import server_loads
from servertrack.common.errors import InvalidSample
from servertrack.common.node_messages import NodeHello, NodeSnapshot, decode_message
from servertrack.common.protocol import NameCache
from servertrack.common.stats import COUNTED_KINDS
from tests.conftest import EPOCH

# JSON values of every shape, with the awkward numbers and strings an attacker would send.
EDGES = st.sampled_from([
    0, -1, 100, 100.000001, 1e17, 2**64 - 1, 2**64, 2**63, 2**32, 253_402_300_800, 1e308, -0.0, 0.01, 3600.1,
    "\x1b[2J", "a\nb", "\x00", "\u202e", "10.0.0.5", ".", "web-01.", "x" * 300, "é" * 40, "", [], {},
])
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40), EDGES,
)
JSON = st.recursive(_scalars, lambda inner: st.one_of(
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


def _valid_sample() -> dict[str, Any]:
    return {"cpu": 12.5, "ram": 40.0}


def _bodies(valid: Any) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(valid).map(lambda body: json.dumps(body).encode()),
        JSON.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"[1,", b'{"cpu": NaN, "ram": 1}', b"\xff\xfe", b'{"a": 1, "a": 2}']),
    )


def check_promises(api: LiveApi, method: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    """Send one request and check every promise; return the status."""
    before = api.state()
    reply = api.request(method, path, body, headers=headers)
    assert reply.status < 500, (method, path, body, reply.status, reply.raw)
    if reply.status >= 400:
        assert reply.content_type == "application/json"
        error = reply.json
        assert set(error) == {"error"} and isinstance(error["error"], str) and error["error"], error
        assert api.state() == before, (method, path, body, reply.raw)
    counters = api.counters()
    orjson.dumps(counters)
    for kind in COUNTED_KINDS:
        counts = counters["kinds"][kind]
        assert counts["received"] == counts["applied"] + sum(counts["dropped"].values()) + counts["pending"], kind
    for node, state in api.nodes.nodes():  # whatever is stored renders
        orjson.dumps(node_detail(node, state))
        stats = node.stats()
        if stats is not None:
            for section in ("cpu", "memory", "disks", "network", "processes"):
                orjson.dumps(node_section(node, stats, section))
    return reply.status


@HTTP_EXAMPLES
@given(segment=SEGMENTS, body=_bodies(_valid_sample()))
def test_post_one_sample(api: LiveApi, segment: str, body: bytes) -> None:
    check_promises(api, "POST", f"/servers/{quote(segment)}/loads", body)
    api.apply()
    for name, _ in api.aggregator.servers():
        orjson.dumps(server_loads(api.aggregator.windows(name)))  # type: ignore[arg-type]


@HTTP_EXAMPLES
@given(body=_bodies([{"server": "web-01", "cpu": 1, "ram": 2}, {"server": "db-01", "cpu": 3, "ram": 4}]))
def test_post_a_batch(api: LiveApi, body: bytes) -> None:
    check_promises(api, "POST", "/loads", body)


@HTTP_EXAMPLES
@given(segment=SEGMENTS, body=_bodies(_valid_sample()))
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


@NODE_EXAMPLES
@given(body=_bodies(hello_body("node-fuzz", ["10.0.0.5", "fd00::1"])))
def test_post_a_node(api: LiveApi, body: bytes) -> None:
    check_promises(api, "POST", "/nodes", body)


@NODE_EXAMPLES
@given(segment=st.one_of(st.just("node-known"), SEGMENTS), body=_bodies(stats_body()))
def test_put_a_snapshot(api: LiveApi, segment: str, body: bytes) -> None:
    if "node-known" not in api.nodes:
        register(api, "node-known", ["10.0.0.9"])
    check_promises(api, "PUT", f"/nodes/{quote(segment)}", body)


# -- the frame decoder ---------------------------------------------------------------------------

_VALID_FRAMES = [
    {"v": 1, "fqdn": "node01", "ts": EPOCH, "ip": ["10.0.0.5"], "cpu": 12.5, "ram": 40.0, "seq": 3},
    {"v": 2, "kind": "hello", "fqdn": "node01", "ts": EPOCH, "seq": 0, "ip": ["10.0.0.5"],
     **{key: value for key, value in hello_body("x").items() if key != "name"}},
    {"v": 2, "kind": "bye", "fqdn": "node01", "ts": EPOCH, "seq": 9},
    {"v": 2, "kind": "snapshot", "fqdn": "node01", "ts": EPOCH, "seq": 4, "stats": stats_body()},
]
_KNOWN_REASONS = {"not_msgpack", "not_a_map", "missing_field", "bad_version", "bad_name", "bad_type",
                  "out_of_range", "bad_timestamp", "bad_ip", "too_large", "bad_field", "unknown_kind"}
_msgpack_values = st.recursive(
    st.one_of(_scalars, st.binary(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=16)


def _packed(value: Any) -> bytes:
    try:
        return msgpack.packb(value)
    except (OverflowError, ValueError):
        return msgpack.packb(None)  # an integer msgpack cannot carry: the sender could not send it


FRAMES = st.one_of(
    st.sampled_from(_VALID_FRAMES).flatmap(mutated).map(_packed),
    _msgpack_values.map(_packed),
    st.binary(max_size=200),
)


@settings(max_examples=400, deadline=None, database=None)
@given(frame=FRAMES)
def test_any_frame_decodes_or_is_refused_with_a_known_reason(frame: bytes) -> None:
    try:
        message = decode_message(frame, EPOCH, NameCache())
    except InvalidSample as invalid:
        assert invalid.reason in _KNOWN_REASONS, invalid.reason
        assert invalid.kind in (None, *COUNTED_KINDS)
        assert invalid.message and invalid.message.isprintable() is not None
        return
    if isinstance(message, NodeHello):
        from servertrack.common.buckets import iso_utc

        iso_utc(message.info["boot_time"])  # every accepted time renders
    if isinstance(message, NodeSnapshot):
        for entry in message.stats["processes"]["top_cpu"] + message.stats["processes"]["top_memory"]:
            assert entry["pid"] <= 2**32 - 1
