"""Control messages (pause / resume, and the collector's alive heartbeat): the two-frame shape, validation
by reason, and a decoder that never raises anything but InvalidSample."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servertrack.common.control_messages import (
    MAX_CONTROL_BYTES,
    ControlMessage,
    control_topic,
    decode_control,
    encode_alive,
    encode_control,
)
from servertrack.common.errors import InvalidSample

NOW = 1_800_000_000.5


def payload(**fields: object) -> bytes:
    message: dict[str, object] = {"v": 1, "kind": "pause", "node": "web-01", "ts": NOW}
    message.update(fields)
    return msgpack.packb({key: value for key, value in message.items() if value is not ...})


def reason_of(frames: list[bytes]) -> str:
    with pytest.raises(InvalidSample) as raised:
        decode_control(frames)
    return raised.value.reason


def test_a_pause_for_one_node_is_its_nul_terminated_topic_and_a_versioned_map() -> None:
    frames = encode_control(True, "web-01", NOW)
    assert frames[0] == b"web-01\0"
    assert msgpack.unpackb(frames[1]) == {"v": 1, "kind": "pause", "node": "web-01", "ts": NOW}
    assert decode_control(frames) == ControlMessage("pause", "web-01", NOW)
    assert decode_control(frames).paused


def test_a_resume_for_every_node_is_addressed_to_star() -> None:
    frames = encode_control(False, "*", NOW)
    assert frames[0] == b"*\0"
    message = decode_control(frames)
    assert message == ControlMessage("resume", "*", NOW) and not message.paused


def test_a_heartbeat_is_alive_for_every_node_and_no_command() -> None:
    frames = encode_alive(NOW)
    assert frames[0] == b"*\0"
    assert msgpack.unpackb(frames[1]) == {"v": 1, "kind": "alive", "node": "*", "ts": NOW}
    message = decode_control(frames)
    assert message == ControlMessage("alive", "*", NOW)
    assert not message.command and not message.paused
    assert decode_control(encode_control(True, "web-01", NOW)).command
    assert decode_control(encode_control(False, "*", NOW)).command


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"web-01\0", payload(kind="alive")], "bad_topic"),  # a heartbeat is for every node
        ([b"*\0", payload(kind="alive")], "bad_topic"),  # payload addressed to one node
        ([b"*\0", payload(kind="Alive", node="*")], "unknown_kind"),
        ([b"*\0", payload(kind="alive", node="*", v=2)], "bad_version"),
        ([b"*\0", payload(kind="alive", node="*", ts=...)], "missing_field"),
        ([b"*\0", payload(kind="alive", node="*", ts="soon")], "bad_type"),
        ([b"*\0", payload(kind="alive", node="*", ts=-0.5)], "out_of_range"),
        ([b"*\0", payload(kind="alive", node="*", pad="x" * MAX_CONTROL_BYTES)], "too_large"),
        ([b"*\0", payload(kind="alive", node="*")[:-1]], "not_msgpack"),  # cut short
        ([b"*\0"], "bad_frame"),
    ],
)
def test_bad_heartbeats_are_refused_by_reason(frames: list[bytes], reason: str) -> None:
    assert reason_of(frames) == reason


def test_no_topic_is_a_prefix_of_another_nodes_topic() -> None:
    # ZeroMQ SUB matches by prefix: "web" must not receive what is meant for "web-01".
    assert not control_topic("web-01").startswith(control_topic("web"))
    assert not control_topic("web").startswith(control_topic("*"))


def test_unknown_keys_are_ignored() -> None:
    assert decode_control([b"web-01\0", payload(extra=[1, 2, 3])]).node == "web-01"


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([payload()], "bad_frame"),
        ([b"web-01\0", payload(), b"more"], "bad_frame"),
        ([], "bad_frame"),
        ([b"web-01\0", b"\xc1"], "not_msgpack"),
        ([b"web-01\0", b""], "not_msgpack"),
        ([b"web-01\0", payload() + b"\x00"], "not_msgpack"),  # trailing bytes
        ([b"web-01\0", msgpack.packb([1, 2])], "not_a_map"),
        ([b"web-01\0", payload(v=...)], "missing_field"),
        ([b"web-01\0", payload(kind=...)], "missing_field"),
        ([b"web-01\0", payload(node=...)], "missing_field"),
        ([b"web-01\0", payload(ts=...)], "missing_field"),
        ([b"web-01\0", payload(v=2)], "bad_version"),
        ([b"web-01\0", payload(v=True)], "bad_version"),
        ([b"web-01\0", payload(v="1")], "bad_version"),
        ([b"web-01\0", payload(kind="reboot")], "unknown_kind"),
        ([b"web-01\0", payload(kind=b"pause")], "unknown_kind"),
        ([b"web-01\0", payload(node="Web-01")], "bad_name"),  # not canonical
        ([b"web-01.\0", payload(node="web-01.")], "bad_name"),
        ([b"10.0.0.1\0", payload(node="10.0.0.1")], "bad_name"),
        ([b"\0", payload(node="")], "bad_name"),
        ([b"x\0", payload(node=7)], "bad_name"),
        ([b"web-02\0", payload()], "bad_topic"),  # payload re-addressed
        ([b"web-01", payload()], "bad_topic"),  # no terminator
        ([b"*\0", payload()], "bad_topic"),
        ([b"web-01\0", payload(ts="now")], "bad_type"),
        ([b"web-01\0", payload(ts=True)], "bad_type"),
        ([b"web-01\0", payload(ts=-1.0)], "out_of_range"),
        ([b"web-01\0", payload(ts=float("nan"))], "out_of_range"),
        ([b"web-01\0", payload(ts=float("inf"))], "out_of_range"),
        ([b"web-01\0", payload(ts=2**63)], "out_of_range"),
        ([b"web-01\0", payload(pad="x" * MAX_CONTROL_BYTES)], "too_large"),
        ([b"a" * 300, payload()], "too_large"),
        ([b"web-01\0", msgpack.packb({str(i): i for i in range(17)})], "too_large"),
    ],
)
def test_bad_messages_are_refused_by_reason(frames: list[bytes], reason: str) -> None:
    assert reason_of(frames) == reason


def test_a_message_at_the_size_limit_is_taken() -> None:
    base = len(payload(pad=""))
    frame = payload(pad="x" * (MAX_CONTROL_BYTES - base - 2))  # str8 header grows by one byte past 31
    assert len(frame) <= MAX_CONTROL_BYTES
    assert decode_control([b"web-01\0", frame]).kind == "pause"


_names = st.from_regex(r"[a-z][a-z0-9_-]{0,40}", fullmatch=True)


@given(paused=st.booleans(), node=st.one_of(_names, st.just("*")), ts=st.floats(0, 2e10))
def test_encode_then_decode_round_trips(paused: bool, node: str, ts: float) -> None:
    message = decode_control(encode_control(paused, node, ts))
    assert message == ControlMessage("pause" if paused else "resume", node, ts)
    assert decode_control(encode_alive(ts)) == ControlMessage("alive", "*", ts)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_maps = st.fixed_dictionaries(
    {},
    optional={"v": st.one_of(st.just(1), _values), "kind": st.one_of(st.sampled_from(["pause", "resume", "alive"]), _values),
              "node": st.one_of(_names, st.just("*"), _values), "ts": st.one_of(st.floats(), _values)},
)


@given(frames=st.lists(st.binary(max_size=2048), max_size=4))
def test_any_bytes_decode_or_raise_invalid_sample_only(frames: list[bytes]) -> None:
    try:
        message = decode_control(frames)
    except InvalidSample as invalid:
        assert invalid.reason and invalid.message
    else:
        assert message.kind in ("pause", "resume", "alive")


@given(topic=st.one_of(_names.map(lambda name: name.encode() + b"\0"), st.binary(max_size=64)), message=_maps,
       extra=st.dictionaries(st.text(max_size=5), _values, max_size=3))
def test_any_map_decodes_to_a_valid_message_or_raises_invalid_sample_only(
    topic: bytes, message: dict[str, object], extra: dict[str, object]
) -> None:
    try:
        decoded = decode_control([topic, msgpack.packb({**extra, **message})])
    except InvalidSample as invalid:
        assert invalid.reason and invalid.message
    else:
        # whatever is taken is exactly what the specification allows
        assert decoded.kind in ("pause", "resume", "alive") and message["kind"] == decoded.kind
        assert decoded.kind != "alive" or decoded.node == "*"
        assert topic == decoded.node.encode() + b"\0"
        assert type(message["v"]) is int and message["v"] == 1
        assert 0 <= decoded.ts <= 253_402_300_799
