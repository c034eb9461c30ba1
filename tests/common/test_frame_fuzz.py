"""Fuzzing the decoders of what arrives over ZeroMQ: ingest frames (the collector) and control messages
(the agents), with arbitrary bytes and arbitrary msgpack.

The msgpack is of every kind the format has: nested maps and lists, integers of every width (and written
8 bytes wide), float32 and float64 with NaN and infinities, str, bin, ext (timestamps included), maps
with repeated keys or non-string keys, and valid v1, v2 and node messages with one value replaced,
deleted or added.

A frame goes the collector's way (``collector.ingest``): a small one starting with a fixmap header
through the sample fast path (``decode_sample_frame``, then ``checked_sample``), anything else, or
what the fast path leaves, through ``decode_message`` (the node fast path ``node_frames.node_message``,
then ``decode_general``). Properties, for every frame:

- no exception escapes but ``InvalidSample`` (and the fast paths' own refusals, which the collector
  catches), and a refusal carries one of the reasons the counters are named by, and a known kind;
- every fast path accepts only what the general decoder accepts, with the same values;
  ``decode_message`` and ``decode_general`` give the same outcome (message, or reason and field).

Bounded: a few hundred examples per property, a few seconds in all.
"""

from __future__ import annotations

import copy
import math
import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.buckets import iso_utc
from servertrack.common.control_messages import ControlMessage, control_topic, decode_control
from servertrack.common.errors import InvalidSample
from servertrack.common.node_messages import NodeHello, NodeSnapshot, decode_general
from servertrack.common.node_schema import MESSAGE_KINDS
from servertrack.common.protocol import NameCache, Sample
from servertrack.common.sample_frames import FRAME_REFUSED, checked_sample, decode_sample_frame, takes_fast_path
from tests.common.test_node_frames import NOW, Pairs, bye_map, check, hello_map, pack, same, snapshot_map

# The reasons a frame is refused for: the names of the ``dropped`` counters of ``/stats``.
FRAME_REASONS = {"not_msgpack", "not_a_map", "missing_field", "bad_version", "bad_name", "bad_type",
                 "out_of_range", "bad_timestamp", "bad_ip", "too_large", "bad_field", "unknown_kind"}
# A control message adds two of its own (``control_messages``), counted by the agent's ``dropped``.
CONTROL_REASONS = FRAME_REASONS - {"bad_timestamp", "bad_ip", "bad_field"} | {"bad_frame", "bad_topic"}
KNOWN_IPS = {"node01": ["10.0.0.5"], "node01.example": ["10.0.0.5", "fe80::1"]}


class Ext(NamedTuple):
    """An ext value of any type code (-1 is a timestamp), which ``packed`` writes as ext 8."""

    code: int
    data: bytes


_WIDTHS = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1,
           2**63, 2**64 - 1, -1, -32, -33, -128, -129, -(2**15), -(2**15) - 1, -(2**31), -(2**31) - 1, -(2**63)]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.sampled_from(_WIDTHS),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, -math.inf, -0.0, 1e308, 5e-324]),
    st.text(max_size=12), st.sampled_from(["\x00", "a\x7f", "\u202e", "é" * 3, "x" * 300, "10.0.0.5", "hello"]),
    st.binary(max_size=12),
    st.builds(Ext, st.integers(-128, 127), st.binary(max_size=12)),
    st.builds(Ext, st.just(-1), st.sampled_from([4, 8, 12, 3]).flatmap(lambda size: st.binary(min_size=size,
                                                                                             max_size=size))),
)
_KEYS = st.one_of(st.text(max_size=6), st.sampled_from(["v", "kind", "fqdn", "ts", "seq", "ip", "cpu", "stats"]),
                  st.integers(-2, 2), st.binary(max_size=3))
VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(max_size=6), inner, max_size=4),
    st.lists(st.tuples(_KEYS, inner), max_size=5).map(Pairs),  # repeated and non-string keys
), max_leaves=12)
# Values at and just past the bounds of the fields (``NOW`` is the clock of the decoders).
EDGE_VALUES: list[Any] = [
    NOW, NOW + 60, NOW + 60.001, (NOW // 3600 - 23) * 3600, (NOW // 3600 - 23) * 3600 - 0.001, 0, 100, 100.0001,
    -0.0, -1, 1, 2, 1.0, 2.0, True, False, None, 2**32 - 1, 2**32, 2**64 - 1, math.nan, math.inf, "sample",
    "hello", "bye", "snapshot", "pause", "*", "Node01.", "node01.", "10.0.0.5", "x" * 254, "a\x7f", "\x1b[2J", "é",
    "\u202e", ["10.0.0.5"], ["nope"], [], {}, ["10.0.0.5"] * 33, b"node01", Ext(-1, b"\0" * 8),
]
FIELD_EDGES = st.sampled_from(EDGE_VALUES)
FORMS = st.fixed_dictionaries({"f32": st.booleans(), "wide": st.booleans(), "big_headers": st.booleans()})


def packed(value: Any, forms: dict[str, bool]) -> bytes:
    """``value`` in msgpack, in the written ``forms`` of ``test_node_frames.pack``, ext values included."""
    if isinstance(value, Ext):
        return b"\xc7" + struct.pack(">Bb", len(value.data), value.code) + value.data
    if isinstance(value, (dict, Pairs)):
        items = list(value.items()) if isinstance(value, dict) else list(value)
        return _header(0x80, b"\xde", len(items), forms) + b"".join(
            packed(key, forms) + packed(item, forms) for key, item in items)
    if isinstance(value, list):
        return _header(0x90, b"\xdc", len(value), forms) + b"".join(packed(item, forms) for item in value)
    try:
        return pack(value, **forms)
    except OverflowError:  # a float beyond float32
        return pack(value)


def _header(fixed: int, sized: bytes, count: int, forms: dict[str, bool]) -> bytes:
    if count <= 15 and not forms["big_headers"]:
        return bytes([fixed | count])
    return sized + struct.pack(">H", count)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list) and not isinstance(value, Pairs):
        for index, child in enumerate(value[:3]):
            found += _paths(child, (*path, index))
    return found


@st.composite
def one_changed(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """``valid`` with one value anywhere inside it replaced, deleted, or a key added beside it."""
    message = copy.deepcopy(valid)
    path = draw(st.one_of(st.sampled_from([(key,) for key in message]), st.sampled_from(_paths(message)[1:])))
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    value = draw(st.one_of(FIELD_EDGES, VALUES))
    if action == "replace" or isinstance(parent, list):
        parent[path[-1]] = value
    elif action == "delete":
        del parent[path[-1]]
    else:
        parent[draw(st.one_of(st.text(max_size=6), st.sampled_from(list(parent))))] = value
    return message


V1_SAMPLE = {"v": 1, "fqdn": "node01", "ts": NOW - 1.5, "ip": ["10.0.0.5"], "cpu": 12.5, "ram": 40.0, "seq": 3}
V2_SAMPLE = {**V1_SAMPLE, "v": 2, "kind": "sample"}
VALID_MESSAGES = [V1_SAMPLE, V2_SAMPLE, hello_map(), bye_map(), snapshot_map()]
_CHANGED = st.tuples(st.sampled_from(VALID_MESSAGES).flatmap(one_changed), FORMS).map(lambda args: packed(*args))
FRAMES = st.one_of(
    _CHANGED, _CHANGED, _CHANGED,
    st.tuples(VALUES, FORMS).map(lambda args: packed(*args)),
    st.binary(max_size=200),
    st.binary(max_size=40).map(lambda tail: msgpack.packb(V1_SAMPLE)[:-len(tail) or None] + tail),  # torn ends
)
FRAME_EXAMPLES = settings(max_examples=500, deadline=None, database=None)


def assert_known_refusal(invalid: InvalidSample, reasons: set[str]) -> None:
    assert invalid.reason in reasons, invalid.reason
    assert invalid.kind in (None, *MESSAGE_KINDS), invalid.kind
    assert isinstance(invalid.message, str) and invalid.message


def assert_decoded_alike(frame: bytes, known_ips: Callable[[str], list[str] | None] | None) -> None:
    """Decode ``frame`` every way the collector may; assert they agree, and any refusal is a known one."""
    try:
        expected = decode_general(frame, NOW, NameCache(), known_ips)
    except InvalidSample as invalid:
        assert_known_refusal(invalid, FRAME_REASONS)
        expected = None
    check(frame, known_ips)  # decode_message and the node fast path agree with decode_general
    if isinstance(expected, NodeHello):
        iso_utc(expected.info["boot_time"])  # every accepted time renders
    if isinstance(expected, NodeSnapshot):
        for entry in expected.stats["processes"]["top_cpu"] + expected.stats["processes"]["top_memory"]:
            assert entry["pid"] <= 2**32 - 1
    # the sample fast path, as the collector takes it
    if not takes_fast_path(frame):
        return
    try:
        record = decode_sample_frame(frame)
    except FRAME_REFUSED:
        return  # the general decoder decides
    sample = checked_sample(record, NOW, NameCache(), known_ips)
    if sample is not None:  # the same values; the loads and ts as floats (the batch holds float64)
        assert type(expected) is Sample, (frame, expected)
        same(_as_floats(sample), _as_floats(expected), "sample")


def _as_floats(sample: Sample) -> Sample:
    return sample._replace(ts=float(sample.ts), cpu=float(sample.cpu), ram=float(sample.ram))


@FRAME_EXAMPLES
@given(frame=FRAMES, known=st.booleans())
def test_any_frame_is_decoded_alike_by_every_path_or_refused_with_a_known_reason(frame: bytes, known: bool) -> None:
    assert_decoded_alike(frame, KNOWN_IPS.get if known else None)


def one_field_changed(valid: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``valid`` with each of its keys left out, or set to each of ``EDGE_VALUES`` in turn."""
    for key in valid:
        yield {name: value for name, value in valid.items() if name != key}
        for value in EDGE_VALUES:
            yield {**valid, key: value}


@pytest.mark.parametrize("valid", VALID_MESSAGES, ids=["v1", "v2", "hello", "bye", "snapshot"])
def test_every_field_of_a_valid_frame_left_out_or_at_each_edge(valid: dict[str, Any]) -> None:
    for message in one_field_changed(valid):
        for forms in ({"f32": False, "wide": False, "big_headers": False}, {"f32": True, "wide": True,
                                                                            "big_headers": True}):
            assert_decoded_alike(packed(message, forms), KNOWN_IPS.get)


# -- control messages (what an agent decodes) ------------------------------------------------------

CONTROL_MESSAGE = {"v": 1, "kind": "pause", "node": "web-01", "ts": 1_800_000_000.0}
TOPICS = st.one_of(st.sampled_from([b"web-01\0", b"*\0", b"web-01", b"WEB-01\0", b"web\0", b"", b"\0"]),
                   st.binary(max_size=300))
PAYLOADS = st.one_of(
    st.tuples(st.sampled_from([CONTROL_MESSAGE, {**CONTROL_MESSAGE, "node": "*"}]).flatmap(one_changed),
              FORMS).map(lambda args: packed(*args)),
    st.tuples(VALUES, FORMS).map(lambda args: packed(*args)),
    st.binary(max_size=100),
    st.integers(1000, 1100).map(lambda size: msgpack.packb({**CONTROL_MESSAGE, "pad": "x" * size})),
)


def assert_control_as_specified(frames: list[bytes]) -> None:
    """``frames`` decode to what the specification allows, or are refused with a known reason."""
    try:
        message = decode_control(frames)
    except InvalidSample as invalid:
        assert_known_refusal(invalid, CONTROL_REASONS)
        return
    assert type(message) is ControlMessage
    topic, payload = frames
    sent = msgpack.unpackb(payload, strict_map_key=False)
    assert message.kind in ("pause", "resume") and sent["kind"] == message.kind
    assert message.node == sent["node"] and topic == control_topic(message.node)
    assert type(sent["v"]) is int and sent["v"] == 1
    assert type(sent["ts"]) in (int, float) and type(message.ts) is float and 0 <= message.ts <= 253_402_300_799


@FRAME_EXAMPLES
@given(frames=st.one_of(st.tuples(TOPICS, PAYLOADS).map(list), st.lists(st.one_of(TOPICS, PAYLOADS), max_size=4)))
def test_any_control_message_is_decoded_as_specified_or_refused_with_a_known_reason(frames: list[bytes]) -> None:
    assert_control_as_specified(frames)


def test_every_field_of_a_control_message_left_out_or_at_each_edge() -> None:
    for valid in (CONTROL_MESSAGE, {**CONTROL_MESSAGE, "node": "*"}):
        for message in one_field_changed(valid):
            for topic in (b"web-01\0", b"*\0"):
                assert_control_as_specified([topic, packed(message, {"f32": False, "wide": True,
                                                                     "big_headers": True})])
