"""The fast path of node frames (hello, bye, snapshot): decoded and checked in C by msgspec Structs
declared from the schema.

``struct_type`` turns a spec of ``schema`` (``Number``, ``Text``, ``ListOf``,
``Record``) into the msgspec type with the same constraints: a ``Record`` is
a Struct with the record's keys in its order (``forbid_unknown_fields``, an
optional key defaults to None), a ``Number`` is ``int`` (if ``integer``) or
``int | float`` (an int stays an int, as the general decoder keeps it) within
its bounds, which also refuse NaN, infinities and booleans; a ``Text`` is a
``str`` of at most ``max_length`` characters and a ``ListOf`` a ``list`` within
its lengths. ``node_message`` decodes a frame with them in one C call (a
tagged union on ``kind``), then checks in a few Python operations what msgspec
cannot say: the frame limit of its kind, ``ts`` against the clock, the name,
the IP addresses, that every text is printable ASCII (so its length in bytes is
its length in characters), and that no map can hold more entries than the
general decoder's ``MAX_DECODED_KEYS`` (``oversized_maps_excluded``).

Whatever it does not accept (a bad value, an unknown key, non-ASCII text,
another kind...) goes to the general decoder, which decides exactly as before
and names the reason: the fast path only accepts what the general decoder
accepts, and gives the same values, of the same types. Where msgspec cannot
express a bound exactly (an integer bound beyond int64), the fast path is
stricter and leaves the rest to the general decoder.

One difference is by design: the fast path gives a snapshot's maps with their
keys in the schema's order, where the general decoder keeps the order an agent
sent when it has nothing to drop or fill in. Agents send the schema's order, so
both give the same maps, key order included; values never differ.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec

from .errors import InvalidSample
from .node_schema import (
    FRAME_LIMITS,
    HELLO_FIELDS,
    STATS,
    Message,
    NodeBye,
    NodeHello,
    NodeSnapshot,
)
from .protocol import (
    MAX_DECODED_KEYS,
    MAX_FRAME_BYTES,
    MAX_CLOCK_SKEW_SECONDS,
    MAX_FUTURE_SECONDS,
    MAX_IP_LENGTH,
    MAX_IPS,
    NameCache,
    check_ips,
    oldest_accepted,
)
from .schema import ListOf, Number, Record, Spec, Text

_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1  # the largest integer msgpack holds
_FLOAT_MAX = sys.float_info.max


def struct_type(spec: Spec, name: str) -> Any:
    """The msgspec type that accepts what ``spec`` accepts (``name`` names the Structs made for records)."""
    if isinstance(spec, Number):
        kind = _number_type(spec)
    elif isinstance(spec, Text):
        kind = Annotated[str, msgspec.Meta(max_length=spec.max_length)]  # characters; bytes are checked after
    elif isinstance(spec, ListOf):
        shortest = 0 if spec.exactly is None else spec.exactly
        longest = spec.max_items if spec.exactly is None else min(spec.exactly, spec.max_items)
        kind = _constrained(list.__class_getitem__(struct_type(spec.item, name)),
                            msgspec.Meta(min_length=shortest, max_length=longest))
    elif isinstance(spec, Record):
        kind = msgspec.defstruct(name, list(record_fields(spec, name)), kw_only=True, forbid_unknown_fields=True,
                                 gc=False)
    else:
        raise TypeError(f"no msgspec type for {type(spec).__name__}")
    return kind | None if spec.optional else kind


def _constrained(kind: Any, meta: msgspec.Meta) -> Any:
    return Annotated[kind, meta]


def record_fields(record: Record, name: str) -> Iterator[tuple[str, Any] | tuple[str, Any, None]]:
    """The Struct fields of ``record``: its keys in order, each optional one defaulting to None."""
    for key, spec in record.fields.items():
        kind = struct_type(spec, f"{name}_{key}")
        yield (key, kind, None) if spec.optional else (key, kind)


def _number_type(spec: Number) -> Any:
    # Integer bounds must fit int64 in msgspec: a larger upper bound is lowered to it (stricter: the
    # general decoder decides above it), except msgpack's own ceiling, which needs no bound at all.
    ge = None if spec.low is None else math.ceil(spec.low)
    le = None if spec.high is None else math.floor(spec.high)
    if le is not None and le >= _UINT64_MAX:
        le = None
    elif le is not None and le > _INT64_MAX:
        le = _INT64_MAX
    if ge is not None and ge <= -_INT64_MAX - 1:
        ge = None
    whole = Annotated[int, msgspec.Meta(ge=ge, le=le)]
    if spec.integer:
        return whole
    # Finite bounds refuse NaN and infinities, as the general decoder does.
    real = Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX if spec.low is None else float(spec.low),
                                         le=_FLOAT_MAX if spec.high is None else float(spec.high))]
    return whole | real


class _Envelope(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True, gc=False, kw_only=True):
    """What every node frame holds; the kind is the tag that picks the Struct."""

    v: Literal[2]  # NODE_PROTOCOL_VERSION
    fqdn: str
    ts: int | float  # an int is not made a float here: the size check below counts its encoded bytes
    seq: Annotated[int, msgspec.Meta(ge=0)]  # at most 2**64 - 1: msgpack holds no larger integer


class ByeFrame(_Envelope, tag="bye"):
    """A ``bye`` frame: the envelope alone."""


_Ips = Annotated[list[Annotated[str, msgspec.Meta(max_length=MAX_IP_LENGTH)]], msgspec.Meta(max_length=MAX_IPS)]
HelloFrame: Any = msgspec.defstruct(
    "HelloFrame", [("ip", _Ips), *record_fields(HELLO_FIELDS, "hello"), ("paused", bool | None, None)],
    bases=(_Envelope,), tag="hello", kw_only=True)
Stats: Any = struct_type(STATS, "stats")
SnapshotFrame: Any = msgspec.defstruct("SnapshotFrame", [("stats", Stats)], bases=(_Envelope,), tag="snapshot",
                                       kw_only=True)

_decode = msgspec.msgpack.Decoder(HelloFrame | ByeFrame | SnapshotFrame).decode
_encode = msgspec.msgpack.Encoder().encode
FRAME_REFUSED = (msgspec.ValidationError, msgspec.DecodeError)
_LIMITS = {HelloFrame: FRAME_LIMITS["hello"], ByeFrame: FRAME_LIMITS["bye"], SnapshotFrame: FRAME_LIMITS["snapshot"]}


def entry_bytes(key: str) -> int:
    """The fewest bytes a map entry ``key: value`` takes in msgpack (a short ASCII key, a one-byte value)."""
    return 1 + len(key.encode()) + 1


def duplicate_bytes(struct: Any) -> int:
    """The fewest bytes a map decoded as ``struct`` (or any Struct inside it) needs to hold more than
    ``MAX_DECODED_KEYS`` entries: its surplus entries (repeated keys, the last of which msgspec keeps)
    at their smallest, and a 3-byte map header instead of a 1-byte one."""
    fewest = sys.maxsize
    for kind in _structs_in(msgspec.inspect.type_info(struct)):
        keys = [field.encode_name for field in kind.fields]
        if kind.tag_field is not None:
            keys.append(kind.tag_field)
        surplus = MAX_DECODED_KEYS + 1 - len(keys)
        fewest = min(fewest, surplus * min(entry_bytes(key) for key in keys) + 2)
    return fewest


def _structs_in(info: Any) -> Iterator[Any]:
    if isinstance(info, msgspec.inspect.StructType):
        yield info
        for field in info.fields:
            yield from _structs_in(field.type)
    elif isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            yield from _structs_in(member)
    elif isinstance(info, msgspec.inspect.ListType):
        yield from _structs_in(info.item_type)


_DUPLICATE_BYTES = {kind: duplicate_bytes(kind) for kind in _LIMITS}


def oversized_maps_excluded(frame: bytes, message: Any, absent: int) -> bool:
    """Whether ``frame``, decoded as ``message``, surely holds no map of more than ``MAX_DECODED_KEYS``
    entries (the general decoder refuses those as ``too_large``; msgspec keeps the last of repeated keys).

    ``absent``: the bytes the None-valued optional entries of ``message`` take encoded (whether the frame
    holds them or leaves them out). msgspec encodes ``message`` in the fewest bytes but for floats (always
    float64); the frame can only be longer, but by what a float32 saves (4 bytes, at most once per 0xca
    byte of the frame), plus every entry beyond the first of a repeated key. So when the frame is shorter
    than that encoding plus less than ``duplicate_bytes`` of room, no map can hold too many entries.
    """
    room = len(frame) - len(_encode(message)) + 4 * frame.count(b"\xca") + absent
    return room < _DUPLICATE_BYTES[type(message)]


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def printable_ascii(text: str) -> bool:
    """Whether ``text`` is ASCII and ``str.isprintable``: then its length in bytes is its length in
    characters, and every ``Text`` check but the length (which msgspec made) holds. Several times
    faster than ``isprintable`` (which looks up every character in the Unicode database)."""
    return text.isascii() and not text.encode().translate(None, _PRINTABLE_ASCII)


_HELLO_KEYS = tuple(HELLO_FIELDS.fields)
_hello_values = attrgetter(*_HELLO_KEYS)
_hello_texts = attrgetter(*[key for key, spec in HELLO_FIELDS.fields.items() if isinstance(spec, Text)])
_HELLO_OPTIONAL = [(attrgetter(key), entry_bytes(key)) for key, spec in HELLO_FIELDS.fields.items() if spec.optional]
_PAUSED_BYTES = entry_bytes("paused")


def node_message(
    frame: bytes,
    now: float,
    names: NameCache,
    known_ips: Callable[[str], list[str] | None] | None = None,
) -> Message | None:
    """The hello, bye or snapshot in ``frame`` received at ``now`` when it is a plain valid one; None when
    the general decoder must look at it (it may still be valid: unknown keys, non-ASCII text, a sample...).
    ``known_ips(name)`` may return the IP list last accepted for that node: an identical list is not
    parsed again. Never raises."""
    if len(frame) > MAX_FRAME_BYTES:
        return None
    try:
        message = _decode(frame)
    except FRAME_REFUSED:
        return None
    kind = type(message)
    ts = message.ts
    if len(frame) > _LIMITS[kind]:
        return None
    if kind is SnapshotFrame:
        if not oldest_accepted(now) <= ts <= now + MAX_FUTURE_SECONDS:
            return None
    elif not now - MAX_CLOCK_SKEW_SECONDS <= ts <= now + MAX_CLOCK_SKEW_SECONDS:  # hello, bye: see check_clock
        return None
    try:
        fqdn = names.canonical(message.fqdn)
    except InvalidSample:
        return None
    if kind is SnapshotFrame:
        stats = snapshot_stats(frame, message)
        return None if stats is None else NodeSnapshot(fqdn, float(ts), message.seq, stats)
    if kind is ByeFrame:
        return NodeBye(fqdn, float(ts), message.seq) if oversized_maps_excluded(frame, message, 0) else None
    return _hello(frame, message, fqdn, float(ts), known_ips)


def _hello(frame: bytes, message: Any, fqdn: str, ts: float,
           known_ips: Callable[[str], list[str] | None] | None) -> NodeHello | None:
    if not printable_ascii("".join(filter(None, _hello_texts(message)))):
        return None
    absent = sum(size for value_of, size in _HELLO_OPTIONAL if value_of(message) is None)
    if message.paused is None:
        absent += _PAUSED_BYTES
    if not oversized_maps_excluded(frame, message, absent):
        return None
    ips = message.ip
    if known_ips is None or known_ips(fqdn) != ips:
        try:
            check_ips(ips)
        except InvalidSample:
            return None
    return NodeHello(fqdn, ts, message.seq, ips, dict(zip(_HELLO_KEYS, _hello_values(message))), message.paused)


# The optional entries of ``STATS`` outside its lists (a test holds them to the schema), with their
# smallest encoded size; ``disk_io``'s own are counted only when it is there.
_STATS_OPTIONAL = [(attrgetter(path), entry_bytes(path.rsplit(".", 1)[-1]))
                   for path in ("cpu.freq_mhz", "cpu.times_seconds", "memory.free", "disk_io")]
_DISK_IO_OPTIONAL = [(attrgetter(key), entry_bytes(key))
                     for key in ("read_count", "write_count", "read_bytes", "write_bytes")]
_USER_BYTES = entry_bytes("user")
# The texts of a snapshot (a test holds them to the schema): of each disk, interface and listed process.
_disk_texts = attrgetter("device", "mountpoint", "fstype")
_interface_text = attrgetter("interface")
_process_texts = attrgetter("name", "status", "cmdline")
_user_of = attrgetter("user")


def snapshot_stats(frame: bytes, message: Any) -> dict[str, Any] | None:
    """The stats of a decoded snapshot frame as the general decoder gives them (maps in the schema's key
    order, an absent optional key as None), or None if it must decide."""
    stats = message.stats
    processes = stats.processes
    listed = processes.top_cpu + processes.top_memory
    users = list(map(_user_of, listed))
    texts = "".join(chain(chain.from_iterable(map(_disk_texts, stats.disks)), map(_interface_text, stats.network),
                          chain.from_iterable(map(_process_texts, listed)), filter(None, users)))
    if not printable_ascii(texts):
        return None
    absent = _USER_BYTES * users.count(None)
    for value_of, size in _STATS_OPTIONAL:
        if value_of(stats) is None:
            absent += size
    disk_io = stats.disk_io
    if disk_io is not None:
        for value_of, size in _DISK_IO_OPTIONAL:
            if value_of(disk_io) is None:
                absent += size
    if not oversized_maps_excluded(frame, message, absent):
        return None
    cleaned: dict[str, Any] = msgspec.to_builtins(stats)
    return cleaned
