"""The C path of node frames (``node_frames``) against the general decoder (``decode_general``): whatever
frame it takes, it gives exactly the general decoder's message (values, types, key order, float bits);
everything else it leaves to the general decoder, so refusals keep their reason, message and field."""

from __future__ import annotations

import copy
import math
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common import node_frames
from servertrack.common.errors import InvalidSample
from servertrack.common.node_frames import node_message, printable_ascii
from servertrack.common.node_messages import (
    HELLO_FIELDS,
    STATS,
    NodeHello,
    NodeSnapshot,
    decode_general,
    decode_message,
    encode_bye,
    encode_hello,
    encode_snapshot,
)
from servertrack.common.node_schema import MAX_CPUS, MAX_TOP_PROCESSES
from servertrack.common.protocol import MAX_DECODED_KEYS, NameCache
from servertrack.common.schema import ListOf, Number, Record, Spec, Text
from tests.conftest import EPOCH
from tests.node_fixtures import HELLO_INFO
from tests.node_fixtures import process_entry as process
from tests.node_fixtures import stats_body as stats

NOW = EPOCH
INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------- comparing outcomes


def same(fast: Any, general: Any, where: str = "") -> None:
    """``fast`` is ``general`` exactly: types, dict key order, float bits (-0.0 is not 0.0)."""
    assert type(fast) is type(general), f"{where}: {type(fast).__name__} != {type(general).__name__}"
    if isinstance(general, dict):
        assert list(fast) == list(general), f"{where}: keys {list(fast)} != {list(general)}"
        for key in general:
            same(fast[key], general[key], f"{where}.{key}")
    elif isinstance(general, (list, tuple)):
        assert len(fast) == len(general), f"{where}: {len(fast)} items != {len(general)}"
        for index, (left, right) in enumerate(zip(fast, general)):
            same(left, right, f"{where}[{index}]")
    elif isinstance(general, float):
        assert struct.pack(">d", fast) == struct.pack(">d", general), f"{where}: {fast!r} != {general!r}"
    else:
        assert fast == general, f"{where}: {fast!r} != {general!r}"


@dataclass(frozen=True)
class Refused:
    reason: str
    message: str
    field: str | None
    kind: str | None


def outcome(decode: Any, frame: bytes, known_ips: Any = None) -> Any:
    try:
        return decode(frame, NOW, NameCache(), known_ips)
    except InvalidSample as invalid:
        return Refused(invalid.reason, invalid.message, invalid.field, invalid.kind)


def check(frame: bytes, known_ips: Any = None) -> tuple[Any, Any]:
    """Decode ``frame`` both ways; assert the outcomes agree; return (fast path's message or None, outcome)."""
    expected = outcome(decode_general, frame, known_ips)
    got = outcome(decode_message, frame, known_ips)
    same(got, expected, "message")
    fast = node_message(frame, NOW, NameCache(), known_ips)
    if fast is not None:
        same(fast, expected, "fast")
    return fast, expected


def snapshot_map(body: Any = None, **envelope: Any) -> dict[str, Any]:
    return {"v": 2, "kind": "snapshot", "fqdn": "node01.example", "ts": NOW - 0.5, "seq": 7,
            "stats": stats() if body is None else body, **envelope}


def hello_map(**changes: Any) -> dict[str, Any]:
    return {"v": 2, "kind": "hello", "fqdn": "Node01.Example", "ts": NOW, "seq": 0, "ip": ["10.0.0.5", "fe80::1"],
            **HELLO_INFO, "paused": False, **changes}


def bye_map(**changes: Any) -> dict[str, Any]:
    return {"v": 2, "kind": "bye", "fqdn": "node01", "ts": NOW, "seq": 9, **changes}


# ---------------------------------------------------------------------- msgpack in every form


class Pairs(list):  # type: ignore[type-arg]
    """A msgpack map written as these (key, value) pairs, repeated keys included."""


def pack(value: Any, *, f32: bool = False, wide: bool = False, big_headers: bool = False) -> bytes:
    """``value`` in msgpack, in forms ``msgpack.packb`` never writes: floats as float32 where exact
    (``f32``), every int as 8 bytes (``wide``), str8/array16/map16 headers for short ones (``big_headers``)."""
    if value is None:
        return b"\xc0"
    if value is True or value is False:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        if wide:
            return b"\xcf" + struct.pack(">Q", value) if value >= 0 else b"\xd3" + struct.pack(">q", value)
        return msgpack.packb(value)
    if isinstance(value, float):
        if f32 and (math.isnan(value) or struct.unpack(">f", struct.pack(">f", value))[0] == value):
            return b"\xca" + struct.pack(">f", value)
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode()
        if big_headers and len(data) < 256:
            return b"\xd9" + bytes([len(data)]) + data
        return msgpack.packb(value)
    if isinstance(value, bytes):
        return msgpack.packb(value, use_bin_type=True)
    options = {"f32": f32, "wide": wide, "big_headers": big_headers}
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        head = (b"\xde" + struct.pack(">H", len(value)) if big_headers or len(value) > 15
                else bytes([0x80 | len(value)]))
        return head + b"".join(pack(k, **options) + pack(v, **options) for k, v in value)
    if isinstance(value, list):
        head = (b"\xdc" + struct.pack(">H", len(value)) if big_headers or len(value) > 15
                else bytes([0x90 | len(value)]))
        return head + b"".join(pack(item, **options) for item in value)
    raise TypeError(type(value))


def test_pack_writes_what_msgpack_reads_back() -> None:
    message = snapshot_map()
    for options in ({}, {"wide": True}, {"big_headers": True}):
        assert msgpack.unpackb(pack(message, **options)) == message
    assert pack(message) == msgpack.packb(message)
    assert len(pack(message, f32=True)) < len(pack(message)) and pack([0.5], f32=True) == b"\x91\xca?\x00\x00\x00"


# ---------------------------------------------------------------------- the Structs are the schema


def test_the_structs_hold_the_schemas_constraints() -> None:
    """Every record, number, text and list of ``STATS`` and ``HELLO_FIELDS`` has its exact constraints in
    the Struct types; only an integer bound beyond int64 (msgspec's limit) is lowered to int64."""

    def same_rules(spec: Spec, info: Any, where: str) -> None:
        members = list(info.types) if isinstance(info, msgspec.inspect.UnionType) else [info]
        is_none = [isinstance(member, msgspec.inspect.NoneType) for member in members]
        assert any(is_none) == spec.optional, where
        members = [member for member, none in zip(members, is_none) if not none]
        if isinstance(spec, Record):
            (record,) = members
            assert isinstance(record, msgspec.inspect.StructType) and record.forbid_unknown_fields, where
            assert [field.name for field in record.fields] == list(spec.fields), where
            for field, (key, child) in zip(record.fields, spec.fields.items()):
                assert field.required == (not child.optional), f"{where}.{key}"
                assert field.required or field.default is None, f"{where}.{key}"
                same_rules(child, field.type, f"{where}.{key}")
        elif isinstance(spec, Number):
            assert spec.low is not None and spec.high is not None, where  # every number of the schema is bounded
            whole = members[0]
            assert isinstance(whole, msgspec.inspect.IntType), where
            assert whole.ge == math.ceil(spec.low), where
            high = math.floor(spec.high)
            assert whole.le == (None if high >= 2**64 - 1 else min(high, INT64_MAX)), where
            if spec.integer:
                assert len(members) == 1, where
            else:
                (real,) = members[1:]
                assert isinstance(real, msgspec.inspect.FloatType), where
                assert (real.ge, real.le) == (spec.low, spec.high), where
        elif isinstance(spec, Text):
            (text,) = members
            assert isinstance(text, msgspec.inspect.StrType) and text.max_length == spec.max_length, where
        else:
            assert isinstance(spec, ListOf)
            (items,) = members
            assert isinstance(items, msgspec.inspect.ListType), where
            assert items.max_length == spec.max_items, where
            assert items.min_length == (spec.exactly or 0), where
            same_rules(spec.item, items.item_type, f"{where}[]")

    same_rules(STATS, msgspec.inspect.type_info(node_frames.Stats), "stats")
    hello = msgspec.inspect.type_info(node_frames.HelloFrame)
    fields = {field.name: field for field in hello.fields}
    for key, spec in HELLO_FIELDS.fields.items():
        same_rules(spec, fields[key].type, key)


def schema_paths(spec: Spec, path: str = "") -> list[tuple[str, Spec]]:
    found = [(path, spec)]
    if isinstance(spec, Record):
        for key, child in spec.fields.items():
            found += schema_paths(child, f"{path}.{key}" if path else key)
    elif isinstance(spec, ListOf):
        found += schema_paths(spec.item, f"{path}[]")
    return found


def test_the_snapshot_checks_name_every_text_and_optional_entry_of_the_schema() -> None:
    """``node_frames.snapshot_stats`` reads these texts and counts these optional entries by name: a
    schema that gains one must gain it there too (then update this list)."""
    texts = {path for path, spec in schema_paths(STATS) if isinstance(spec, Text)}
    optional = {path for path, spec in schema_paths(STATS) if spec.optional}
    process = {"name", "user", "status", "cmdline"}
    assert texts == {"disks[].device", "disks[].mountpoint", "disks[].fstype", "network[].interface",
                     *(f"processes.{top}[].{key}" for top in ("top_cpu", "top_memory") for key in process)}
    assert optional == {"cpu.freq_mhz", "cpu.times_seconds", "memory.free", "disk_io",
                        *(f"disk_io.{key}" for key in ("read_count", "write_count", "read_bytes", "write_bytes")),
                        "processes.top_cpu[].user", "processes.top_memory[].user"}
    hello_texts = [key for key, spec in HELLO_FIELDS.fields.items() if isinstance(spec, Text)]
    assert len(hello_texts) > 1 and not any(spec.optional for spec in HELLO_FIELDS.fields.values())


def test_printable_ascii_is_isascii_and_isprintable() -> None:
    for code in range(0x110000):
        text = chr(code)
        assert printable_ascii(text) == (text.isascii() and text.isprintable()), hex(code)
    assert printable_ascii("") and printable_ascii("python3 -m x --flag=1 ~/a b") and not printable_ascii("a\tb")


@given(st.text(max_size=40))
def test_printable_ascii_on_any_text(text: str) -> None:
    assert printable_ascii(text) == (text.isascii() and text.isprintable())


# ---------------------------------------------------------------------- every bound of the schema


def spec_paths(spec: Spec, value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Spec]]:
    """Every (path, spec) of ``spec`` reached in the valid ``value``: records, lists, their first items."""
    found = [(path, spec)]
    if isinstance(spec, Record) and isinstance(value, dict):
        for key, child in spec.fields.items():
            found += spec_paths(child, value.get(key), (*path, key))
    elif isinstance(spec, ListOf) and isinstance(value, list) and value:
        found += spec_paths(spec.item, value[0], (*path, 0))
        if len(value) > 1:
            found += spec_paths(spec.item, value[-1], (*path, len(value) - 1))
    return found


def around(spec: Spec, valid: Any) -> list[Any]:
    """Values at and around every bound of ``spec``, and values of other types; ``valid`` is one it takes."""
    others: list[Any] = [None, True, False, "1", b"1", [], {}, 1.5, 0, -1, float("nan"), float("inf")]
    if isinstance(spec, Number):
        assert spec.low is not None and spec.high is not None
        low, high = spec.low, spec.high
        values = [low, high, float(low), float(high), math.nextafter(float(low), -math.inf),
                  math.nextafter(float(high), math.inf), -0.0, (low + high) / 2, float("-inf"),
                  math.ceil(low), math.floor(high), math.ceil(low) - 1, math.floor(high) + 1,
                  INT64_MAX, INT64_MAX + 1, 2**64 - 1, -(2**63), 10**19, 10**19 + 1]
        return values + others
    if isinstance(spec, Text):
        most = spec.max_length
        return ["", " ", "~", "a" * most, "a" * (most + 1), "é" * (most // 2), "é" * (most // 2) + "a",
                "a\x7f", "a\x1fb", "\n", "a\x00", "\u200b", "\u00a0", "Zoë", "tab\tbed", "quote\"back\\slash"] + others
    if isinstance(spec, ListOf):
        item = valid[0] if valid else None
        lengths = {0, spec.max_items, spec.max_items + 1} | ({spec.exactly - 1, spec.exactly + 1} if spec.exactly
                                                            else set())
        return [[copy.deepcopy(item)] * n for n in sorted(lengths) if item is not None and n >= 0] + [
            valid + [None], valid + ["x"], tuple(valid) if valid else None] + others
    assert isinstance(spec, Record)
    return [{}, {**valid, "unknown": 1}, {**valid, "unknown": {1: 2}}, [valid], None] + [
        {key: value for key, value in valid.items() if key != dropped} for dropped in valid] + others


def replaced(message: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    changed = copy.deepcopy(message)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


def leaves_to_general(value: Any) -> bool:
    """What the fast path may leave to the general decoder even when it is valid: non-ASCII text, unknown
    keys, integers beyond int64 (only where the schema's bound is beyond it too, e.g. a rate)."""
    if isinstance(value, str):
        return not value.isascii()
    if isinstance(value, int) and not isinstance(value, bool):
        return value > INT64_MAX
    if isinstance(value, dict):
        return "unknown" in value or any(leaves_to_general(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(leaves_to_general(item) for item in value)
    return False


@pytest.mark.parametrize("kind", ["snapshot", "hello"])
def test_at_and_around_every_bound_both_paths_agree_and_the_fast_path_takes_every_plain_valid_frame(
        kind: str) -> None:
    if kind == "snapshot":
        base = snapshot_map()
        paths = [(("stats", *path), spec) for path, spec in spec_paths(STATS, base["stats"])][1:]
    else:
        base = hello_map()
        paths = [((key,), spec) for key, spec in HELLO_FIELDS.fields.items()]
    taken = refused = 0
    for path, spec in paths:
        valid = copy.deepcopy(base)
        for key in path:
            valid = valid[key]
        cases = [(value, False) for value in around(spec, valid)] + [(None, True)]  # True: the key left out
        for value, delete in cases:
            try:
                frame = msgpack.packb(replaced(base, path, value, delete))
            except OverflowError:
                continue  # an integer beyond what msgpack holds (2**64 and above)
            fast, expected = check(frame)
            if isinstance(expected, Refused):
                refused += 1
                assert fast is None
            elif fast is not None:
                taken += 1
            else:
                assert leaves_to_general(value), f"{path} = {value!r}: valid and plain, yet not taken"
    fewest_taken, fewest_refused = {"snapshot": (700, 2000), "hello": (50, 150)}[kind]
    assert taken >= fewest_taken and refused >= fewest_refused


def test_a_snapshot_at_every_bound_is_taken() -> None:
    name, text = "n" * 64, "t" * 256
    top = [process(2**32 - 1 - i, name=name, user=name, status=name, cmdline=text) for i in range(MAX_TOP_PROCESSES)]
    biggest = stats(cpu={**stats()["cpu"], "per_cpu": [99.99999] * MAX_CPUS},
                    processes={"count": 2**64 - 1, "top_cpu": top, "top_memory": top})
    fast, _ = check(encode_snapshot("n" * 253, NOW, 2**64 - 1, biggest))
    assert isinstance(fast, NodeSnapshot)


# ---------------------------------------------------------------------- frames only other encoders write


def test_older_agents_and_agents_of_another_encoder_take_the_fast_path() -> None:
    older = stats()
    del older["cpu"]["times_seconds"], older["cpu"]["freq_mhz"], older["memory"]["free"], older["disk_io"]
    for entry in older["processes"]["top_cpu"] + older["processes"]["top_memory"]:
        del entry["user"]
    for message in [snapshot_map(), snapshot_map(older), hello_map(), bye_map()]:
        for options in ({}, {"wide": True}, {"big_headers": True}, {"f32": True}):
            fast, _ = check(pack(message, **options))
            assert fast is not None, (message["kind"], options)
    fast, _ = check(pack(snapshot_map(older)))
    assert isinstance(fast, NodeSnapshot)
    assert fast.stats["disk_io"] is None and fast.stats["cpu"]["freq_mhz"] is None
    assert fast.stats["processes"]["top_cpu"][0]["user"] is None


def test_keys_sent_in_another_order_give_the_same_values_in_the_schemas_order() -> None:
    """The one difference by design: the general decoder keeps an agent's own key order when it has
    nothing to drop or fill in; the fast path gives the schema's."""
    body = stats()
    shuffled = {key: body[key] for key in reversed(body)}
    shuffled["processes"]["top_cpu"] = [dict(reversed(entry.items())) for entry in body["processes"]["top_cpu"]]
    frame = msgpack.packb(snapshot_map(shuffled))
    fast = decode_message(frame, NOW, NameCache())
    general = decode_general(frame, NOW, NameCache())
    assert isinstance(fast, NodeSnapshot) and isinstance(general, NodeSnapshot)
    assert fast == general
    assert list(fast.stats) == list(STATS.fields) and list(general.stats) == list(shuffled)
    assert list(fast.stats["processes"]["top_cpu"][0]) == list(process(1))


def test_repeated_keys_beyond_the_decoders_map_limit_are_refused_as_too_large() -> None:
    """msgspec keeps the last of repeated keys; the general decoder refuses a map of more than
    ``MAX_DECODED_KEYS`` entries: so must the fast path, at the top and inside, whatever else the frame
    does to look small (float32 numbers, optional entries left out)."""
    many_floats = stats(cpu={**stats()["cpu"], "per_cpu": [0.5] * MAX_CPUS})
    older = stats()  # without the optional entries outside lists
    del older["cpu"]["times_seconds"], older["cpu"]["freq_mhz"], older["memory"]["free"], older["disk_io"]
    oldest = copy.deepcopy(older)
    for entry in oldest["processes"]["top_cpu"] + oldest["processes"]["top_memory"]:
        del entry["user"]
    totals_left_out = stats()
    for key in ("read_count", "write_count", "read_bytes", "write_bytes"):
        del totals_left_out["disk_io"][key]
    without_paused = {key: value for key, value in hello_map().items() if key != "paused"}
    for message in [snapshot_map(), snapshot_map(many_floats), snapshot_map(older), snapshot_map(oldest),
                    snapshot_map(totals_left_out), hello_map(), without_paused, bye_map()]:
        entries = list(message.items())
        for count in (MAX_DECODED_KEYS, MAX_DECODED_KEYS + 1):
            repeated = Pairs([("v", 2)] * (count - len(entries)) + entries)
            for options in ({}, {"f32": True}):
                fast, expected = check(pack(repeated, **options))
                if count > MAX_DECODED_KEYS:
                    assert expected.reason == "too_large" and fast is None
                else:
                    assert not isinstance(expected, Refused)
    body = stats()
    entry = body["processes"]["top_cpu"][0]
    body["processes"]["top_cpu"][0] = Pairs([("pid", 5)] * (MAX_DECODED_KEYS + 1 - len(entry)) + list(entry.items()))
    fast, expected = check(pack(snapshot_map(body), f32=True))
    assert expected.reason == "too_large" and fast is None


def test_repeated_keys_within_the_limit_keep_the_last_value_as_the_general_decoder_does() -> None:
    entries = list(bye_map().items())
    fast, expected = check(pack(Pairs([("seq", 1), *entries, ("seq", 3)])))
    assert fast is not None and fast.seq == 3
    long_name = "n" * 253  # a bye within the map limit but over its frame limit (1 KiB)
    fast, expected = check(pack(Pairs([*entries, *[("fqdn", long_name)] * 10])))
    assert expected.reason == "too_large" and fast is None


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"\x90", msgpack.packb(bye_map()) + b"\x00", msgpack.packb(bye_map())[:-1],
    msgpack.packb({**bye_map(), "fqdn": b"node01"}, use_bin_type=True),
    msgpack.packb({**bye_map(), "kind": b"bye"}, use_bin_type=True),
    msgpack.packb({b"v": 2, "kind": "bye", "fqdn": "n", "ts": NOW, "seq": 1}, use_bin_type=True),
    msgpack.packb(bye_map(seq=msgpack.ExtType(1, b"x"))),
    pack(Pairs([*bye_map().items(), (1, 2)])),
    pack(snapshot_map(stats(swap={"total": 1, "used": 0, "percent": 0.0, 7: 1}))),
    b"\x85\xa1v\x02\xa4kind\xa3bye\xa4fqdn\xa2\xff\xfe\xa2ts\xcb" + struct.pack(">d", NOW) + b"\xa3seq\x01",
    b"\x85\xa1v\x02\xa4kind\xa3bye\xa4fqdn\xa3\xed\xa0\x80\xa2ts\xcb" + struct.pack(">d", NOW) + b"\xa3seq\x01",
    msgpack.packb(bye_map(ts=int(NOW))), msgpack.packb(bye_map(ts=2**64 - 1)), msgpack.packb(bye_map(v=2.0)),
    msgpack.packb(bye_map(kind="sample")), msgpack.packb({**bye_map(), "kind": None}),
    msgpack.packb(hello_map(paused=None)), msgpack.packb(hello_map(paused=1)),
    msgpack.packb({key: value for key, value in hello_map().items() if key != "paused"}),
    msgpack.packb(hello_map(ip=["10.0.0.5"] * 33)), msgpack.packb(hello_map(ip=["nope"])),
    msgpack.packb(hello_map(ip=("10.0.0.5",))), msgpack.packb(hello_map(ip=[b"10.0.0.5"]), use_bin_type=True),
])
def test_hostile_and_odd_frames(frame: bytes) -> None:
    check(frame)


def test_a_hellos_known_addresses_are_not_parsed_again() -> None:
    frame = msgpack.packb(hello_map())
    known = {"node01.example": ["10.0.0.5", "fe80::1"]}
    fast, expected = check(frame, known.get)
    assert isinstance(fast, NodeHello) and fast.ips == ["10.0.0.5", "fe80::1"]
    fast, expected = check(msgpack.packb(hello_map(ip=["nope"])), known.get)
    assert fast is None and expected.reason == "bad_ip"


# ---------------------------------------------------------------------- random mutations


def paths_of(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):
            found += paths_of(child, (*path, index))
    return found


ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.binary(max_size=4),
    st.sampled_from([0, 100, 100.0, 101, -0.0, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 1e19, 1e15, 3600.0, 0.01,
                     0.009, 1024, 1025, NOW, NOW + 61, "a" * 64, "a" * 65, "é" * 32, "a\x7f", "10.0.0.1", []]),
    st.lists(st.floats(0, 100), max_size=4), st.dictionaries(st.sampled_from(["user", "x", "pid"]),
                                                             st.integers(0, 3), max_size=2),
)
MUTATION = st.tuples(st.sampled_from(["replace", "delete", "add"]), st.floats(0, 1), ANY_VALUE)
FORMS = st.fixed_dictionaries({"f32": st.booleans(), "wide": st.booleans(), "big_headers": st.booleans()})


@settings(max_examples=600, deadline=None)
@given(kind=st.sampled_from(["snapshot", "hello", "bye"]), mutations=st.lists(MUTATION, max_size=3),
       forms=FORMS, repeats=st.integers(0, 70))
def test_random_mutations_give_the_same_outcome_both_ways(kind: str, mutations: list[tuple[str, float, Any]],
                                                          forms: dict[str, bool], repeats: int) -> None:
    message: Any = {"snapshot": snapshot_map, "hello": hello_map, "bye": bye_map}[kind]()
    for action, where, value in mutations:
        paths = paths_of(message)[1:]
        path = paths[int(where * (len(paths) - 1))]
        parent = message
        for key in path[:-1]:
            parent = parent[key]
        if action == "replace" or isinstance(parent, list):
            parent[path[-1]] = value
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent["extra"] = value
    frame_map: Any = message
    if repeats and isinstance(message, dict):
        frame_map = Pairs([*[("seq", message.get("seq", 0))] * repeats, *message.items()])
    try:
        frame = pack(frame_map, **forms)
    except (TypeError, struct.error, OverflowError):
        return  # a value this writer cannot put in msgpack
    check(frame)


def test_agent_frames_take_the_fast_path() -> None:
    for frame in (encode_hello("node01", NOW, 1, ["10.0.0.5"], HELLO_INFO, paused=True), encode_bye("node01", NOW, 2),
                  encode_snapshot("node01", NOW, 3, stats())):
        fast, _ = check(frame)
        assert fast is not None
