"""The fast path of sample frames accepts only what the general decoder accepts, with the same values;
everything else it leaves to the general decoder (which names the reason)."""

from __future__ import annotations

import math
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.errors import InvalidSample
from servertrack.common.node_messages import decode_message
from servertrack.common.protocol import NameCache, Sample
from servertrack.common.sample_frames import fast_sample

NOW = 1_800_000_000.0
GOOD = {"v": 1, "fqdn": "Web-01.example.", "ts": NOW - 1.5, "ip": ["10.0.0.1", "fe80::1"], "cpu": 12.5,
        "ram": 40, "seq": 7}

values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=8), st.lists(st.text(max_size=70), max_size=40),
    st.lists(st.integers(-2**63, 2**64 - 1), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(-2**63, 2**64 - 1), max_size=3),
    st.sampled_from(["10.0.0.1", "::1", "web-02", "sample", "hello", "1.2.3.4", "x" * 300]),
    st.sampled_from([NOW, NOW + 60, NOW + 60.001, NOW - 23 * 3600, NOW - 86_400, 0, 100, 100.0001, -0.0, 1, 2]),
)
changes = st.dictionaries(st.sampled_from(["v", "fqdn", "ts", "ip", "cpu", "ram", "seq", "kind", "extra"]),
                          values, max_size=4)
removed = st.sets(st.sampled_from(list(GOOD)), max_size=2)


def general(frame: bytes, names: NameCache) -> Any:
    try:
        return decode_message(frame, NOW, names)
    except InvalidSample as invalid:
        return ("refused", invalid.reason)


@settings(max_examples=750, deadline=None)
@given(changes=changes, removed=removed, known=st.booleans())
def test_the_fast_path_never_disagrees_with_the_general_decoder(changes: dict[str, Any], removed: set[str],
                                                                known: bool) -> None:
    message = {key: value for key, value in {**GOOD, **changes}.items() if key not in removed}
    frame = msgpack.packb(message)
    names = NameCache()
    known_ips = (lambda name: ["10.0.0.1", "fe80::1"]) if known else None
    fast = fast_sample(frame, NOW, names, known_ips)
    expected = general(frame, NameCache())
    if fast is None:
        return  # the general decoder decides
    assert type(expected) is Sample, (message, expected)
    assert fast.fqdn == expected.fqdn and fast.seq == expected.seq and fast.ips == expected.ips
    for field in ("ts", "cpu", "ram"):
        assert float(getattr(fast, field)) == float(getattr(expected, field)), field
        assert not math.isnan(getattr(fast, field))


def test_a_plain_agent_frame_takes_the_fast_path_with_the_canonical_name() -> None:
    sample = fast_sample(msgpack.packb(GOOD), NOW, NameCache())
    assert sample == Sample("web-01.example", NOW - 1.5, 12.5, 40.0, 7, ["10.0.0.1", "fe80::1"])
    v2 = fast_sample(msgpack.packb({**GOOD, "v": 2, "kind": "sample"}), NOW, NameCache())
    assert v2 is not None and v2.fqdn == "web-01.example"


def test_what_the_fast_path_leaves_to_the_general_decoder() -> None:
    names = NameCache()
    for message in [{**GOOD, "extra": 1},  # unknown keys: valid, but only the general decoder reads them
                    {**GOOD, "kind": "hello"}, {**GOOD, "v": 2}, {**GOOD, "cpu": 100.5}, {**GOOD, "cpu": True},
                    {**GOOD, "ts": NOW + 61}, {**GOOD, "fqdn": "10.0.0.1"}, {**GOOD, "ip": ["nope"]},
                    {**GOOD, "ip": ["10.0.0.1"] * 33}, {k: v for k, v in GOOD.items() if k != "seq"}]:
        assert fast_sample(msgpack.packb(message), NOW, names) is None, message
    assert fast_sample(b"\xc1", NOW, names) is None
    assert fast_sample(msgpack.packb({**GOOD, "fqdn": "w" * 200, "ip": ["10.0.0.1"] * 32}) + b"\0" * 4096,
                       NOW, names) is None


def test_a_map_of_repeated_keys_past_the_decoder_limit_is_refused_as_the_general_decoder_refuses_it() -> None:
    """msgspec keeps the last of repeated keys; the general decoder refuses a map over 64 entries as
    ``too_large``. Only a fixmap (at most 15 entries) is taken by the fast path."""
    import struct

    import msgpack
    import pytest

    from servertrack.common.errors import InvalidSample
    from servertrack.common.node_messages import decode_message
    from servertrack.common.protocol import NameCache
    from servertrack.common.sample_frames import fast_sample, takes_fast_path

    now = 1_700_000_000.0
    fields = {"v": 1, "fqdn": "web-1", "ts": now, "ip": [], "cpu": 1.0, "ram": 2.0, "seq": 0}
    body = b"".join(msgpack.packb(key) + msgpack.packb(value) for key, value in fields.items())
    repeated = body + (msgpack.packb("v") + msgpack.packb(1)) * 60
    frame = b"\xde" + struct.pack(">H", 67) + repeated  # a map16 of 67 entries
    with pytest.raises(InvalidSample) as refused:
        decode_message(frame, now, NameCache())
    assert refused.value.reason == "too_large"
    assert not takes_fast_path(frame) and fast_sample(frame, now, NameCache()) is None
    wide = b"\xde" + struct.pack(">H", 7) + body  # the same sample in a map16 header: the general decoder decides
    assert not takes_fast_path(wide) and decode_message(wide, now, NameCache()).fqdn == "web-1"
    assert takes_fast_path(msgpack.packb(fields)) and fast_sample(msgpack.packb(fields), now, NameCache()) is not None
    assert not takes_fast_path(b"")
