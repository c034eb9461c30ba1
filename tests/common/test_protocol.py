"""The wire protocol: what a valid frame is, and that every bad frame is refused with a reason."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.errors import InvalidSample
from servertrack.common.protocol import (
    MAX_FRAME_BYTES,
    NameCache,
    Sample,
    decode_sample,
    encode_sample,
    normalize_name,
)
from tests.conftest import EPOCH

NOW = EPOCH


def frame(**overrides: object) -> bytes:
    """A valid v1 frame with some keys replaced (a value of ... removes the key)."""
    message: dict[str, object] = {
        "v": 1, "fqdn": "node01.corp.internal", "ts": NOW - 0.75,
        "ip": ["10.0.0.5", "2001:db8::1"], "cpu": 12.5, "ram": 43.0, "seq": 1234,
    }
    for key, value in overrides.items():
        if value is ...:
            message.pop(key, None)
        else:
            message[key] = value
    return msgpack.packb(message)


def reason_of(data: bytes) -> str:
    with pytest.raises(InvalidSample) as refused:
        decode_sample(data, NOW, NameCache())
    assert refused.value.message
    return refused.value.reason


def test_valid_frame_decodes_to_its_values() -> None:
    sample = decode_sample(frame(), NOW, NameCache())
    assert sample == Sample("node01.corp.internal", NOW - 0.75, 12.5, 43.0, 1234, ["10.0.0.5", "2001:db8::1"])


def test_encode_then_decode_round_trips() -> None:
    sent = Sample("web-01", NOW, 99.9, 0.0, 7, ["192.0.2.1"])
    assert decode_sample(encode_sample(sent), NOW, NameCache()) == sent


def test_name_is_stored_lowercase() -> None:
    assert decode_sample(frame(fqdn="Node01.CORP.internal"), NOW, NameCache()).fqdn == "node01.corp.internal"


def test_unknown_keys_are_ignored() -> None:
    assert decode_sample(frame(extra={"nested": [1, 2]}, disk=3.5), NOW, NameCache()).cpu == 12.5


def test_integer_loads_and_timestamp_are_numbers_too() -> None:
    sample = decode_sample(frame(cpu=0, ram=100, ts=int(NOW)), NOW, NameCache())
    assert (sample.cpu, sample.ram, sample.ts) == (0, 100, int(NOW))


def test_empty_ip_list_is_valid() -> None:
    assert decode_sample(frame(ip=[]), NOW, NameCache()).ips == []


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "not_msgpack"),
        (b"\xc1", "not_msgpack"),  # reserved byte
        (frame()[:-3], "not_msgpack"),  # truncated
        (frame() + b"\x00", "not_msgpack"),  # trailing bytes
        (b"x" * (MAX_FRAME_BYTES + 1), "too_large"),
        (msgpack.packb([1, 2, 3]), "not_a_map"),
        (msgpack.packb(42), "not_a_map"),
        (msgpack.packb({1: 2}), "not_msgpack"),  # non-string map keys are refused by the decoder
    ],
)
def test_undecodable_frames_are_refused(data: bytes, reason: str) -> None:
    assert reason_of(data) == reason


@pytest.mark.parametrize("key", ["v", "fqdn", "ts", "ip", "cpu", "ram", "seq"])
def test_each_required_key_is_required(key: str) -> None:
    assert reason_of(frame(**{key: ...})) == "missing_field"


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"v": 2}, "bad_version"),
        ({"v": "1"}, "bad_version"),
        ({"v": True}, "bad_version"),
        ({"v": 1.0}, "bad_version"),
        ({"fqdn": ""}, "bad_name"),
        ({"fqdn": "a" * 254}, "bad_name"),
        ({"fqdn": "web 01"}, "bad_name"),
        ({"fqdn": "wéb"}, "bad_name"),
        ({"fqdn": "web/01"}, "bad_name"),
        ({"fqdn": 12}, "bad_name"),
        ({"fqdn": ["a"]}, "bad_name"),
        ({"cpu": "12"}, "bad_type"),
        ({"cpu": True}, "bad_type"),
        ({"cpu": None}, "bad_type"),
        ({"ram": [1.0]}, "bad_type"),
        ({"cpu": -0.01}, "out_of_range"),
        ({"cpu": 100.0001}, "out_of_range"),
        ({"ram": math.nan}, "out_of_range"),
        ({"ram": math.inf}, "out_of_range"),
        ({"cpu": -math.inf}, "out_of_range"),
        ({"ts": "now"}, "bad_type"),
        ({"ts": NOW - 86400.001}, "bad_timestamp"),
        ({"ts": NOW + 60.001}, "bad_timestamp"),
        ({"ts": math.nan}, "bad_timestamp"),
        ({"seq": -1}, "out_of_range"),
        ({"seq": 2**64}, "not_msgpack"),  # msgpack itself cannot carry it
        ({"seq": 1.5}, "bad_type"),
        ({"seq": False}, "bad_type"),
        ({"ip": "10.0.0.1"}, "bad_type"),
        ({"ip": [1]}, "bad_ip"),
        ({"ip": ["10.0.0.256"]}, "bad_ip"),
        ({"ip": ["not-an-ip"]}, "bad_ip"),
        ({"ip": ["10.0.0.1"] * 33}, "out_of_range"),
    ],
)
def test_bad_values_are_refused_with_their_reason(overrides: dict[str, object], reason: str) -> None:
    if reason == "not_msgpack":
        with pytest.raises((OverflowError, ValueError)):
            frame(**overrides)  # the sender cannot even encode it
        return
    assert reason_of(frame(**overrides)) == reason


@pytest.mark.parametrize("ts", [(NOW // 3600 - 23) * 3600, NOW + 60.0, NOW])
def test_timestamp_bounds_are_inclusive(ts: float) -> None:
    assert decode_sample(frame(ts=ts), NOW, NameCache()).ts == ts


@pytest.mark.parametrize("load", [0, 0.0, 100, 100.0, 0.00001])
def test_load_bounds_are_inclusive(load: float) -> None:
    assert decode_sample(frame(cpu=load, ram=load), NOW, NameCache()).cpu == load


def test_known_ip_list_is_not_parsed_again_but_a_changed_one_is() -> None:
    names = NameCache()
    known = {"node01.corp.internal": ["not-an-ip"]}
    # identical to what was accepted before: trusted without parsing
    assert decode_sample(frame(ip=["not-an-ip"]), NOW, names, known.get).ips == ["not-an-ip"]
    with pytest.raises(InvalidSample):
        decode_sample(frame(ip=["still-not-an-ip"]), NOW, names, known.get)


def test_name_cache_stays_bounded_and_correct() -> None:
    names = NameCache(limit=10)
    for index in range(100):
        assert names.canonical(f"Host-{index}") == f"host-{index}"
    assert len(names._canonical) <= 10
    with pytest.raises(InvalidSample):
        names.canonical("bad name")


@pytest.mark.parametrize("name", ["a", "A-Z.0_9", "x" * 253])
def test_normalize_name_accepts_the_documented_alphabet(name: str) -> None:
    assert normalize_name(name) == name.lower()


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_invalid_sample(data: bytes) -> None:
    try:
        decode_sample(data, NOW, NameCache())
    except InvalidSample:
        pass


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["v", "fqdn", "ts", "ip", "cpu", "ram", "seq", "x"]), _values))
def test_random_maps_are_either_valid_samples_or_refused(message: dict[str, object]) -> None:
    try:
        data = msgpack.packb(message)
    except (OverflowError, ValueError):
        return
    try:
        sample = decode_sample(data, NOW, NameCache())
    except InvalidSample:
        return
    assert 0 <= sample.cpu <= 100 and 0 <= sample.ram <= 100
    assert NOW - 86400 <= sample.ts <= NOW + 60
