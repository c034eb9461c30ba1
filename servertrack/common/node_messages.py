"""Node messages of protocol v2: ``hello``, ``bye`` and stats ``snapshot`` frames.

Envelope (msgpack map): ``{"v": 2, "kind": ..., "fqdn": str, "ts": float, "seq": int, ...}``;
``seq`` counts every message of an agent run, whatever its kind.

- ``hello``: the envelope plus ``HELLO_FIELDS`` (hostname, IPs, boot time,
  OS, platform, CPU count, total memory, agent version, sample interval),
  and ``paused``: an optional boolean, true while the agent is paused by the
  control channel (see ``control_messages``); absent from agents without one
  (older ones), which are never paused.
- ``bye``: the envelope alone; the agent is stopping cleanly.
- ``snapshot``: the envelope plus ``"stats"``, matching ``STATS`` below.
  Every list and string is bounded, so even a snapshot at every maximum
  (1,024 CPUs, 64 disks, 64 interfaces, 2 x 20 processes, all names at their
  longest: ~75 KiB) fits in ``MAX_FRAME_BYTES`` (128 KiB); a typical one is
  5-10 KiB. The collector keeps the validated stats, re-encoded (see
  ``snapshots``), never the frame's own bytes. Fields added after the first
  release (``cpu.times_seconds``, ``memory.free``, the cumulative counters of
  ``disk_io``) are optional, so older agents' snapshots stay valid; a missing
  one reads as None.

Each kind has its own frame limit (``FRAME_LIMITS``). Every time field has a
range the API can render as a date (``MAX_EPOCH_SECONDS``), and every number
a bound, so whatever is stored can be shown.

A v1 frame (no ``kind``), or a v2 frame of kind ``sample``, is a load sample
(see ``protocol``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

from .errors import InvalidSample
from .protocol import (
    MAX_FRAME_BYTES,
    MAX_IPS,
    MAX_SAMPLE_FRAME_BYTES,
    NODE_PROTOCOL_VERSION,
    NameCache,
    Sample,
    check_ips,
    check_seq,
    check_timestamp,
    sample_from_map,
    unpack_frame,
)
from .schema import ListOf, Number, Record, Text

MAX_CPUS = 1024
MAX_DISKS = 64
MAX_INTERFACES = 64
MAX_TOP_PROCESSES = 20
MAX_TEXT = 256  # paths and command lines
MAX_NAME = 64  # interface, device, file system, process, user and status names
# One bound for a pid everywhere (stored and asked for in a URL): what a 32-bit pid_t / DWORD holds.
MAX_PID = 2**32 - 1
# 9999-12-31T23:59:59Z: the last second an ISO date (and Python's time.gmtime) can show.
MAX_EPOCH_SECONDS = 253_402_300_799.0
# Per second, of bytes, packets or operations. Below 2**64, so a rate sent as a whole number
# still fits a msgpack integer when the snapshot is stored.
MAX_RATE = 1e19
MAX_LOAD_AVERAGE = 1e6
MAX_FREQUENCY_MHZ = 1e6
# Cumulative counters since boot (disk operations and bytes): what a signed 64-bit integer holds, so
# any JSON reader (and any store) takes them.
MAX_TOTAL = 2**63 - 1
# CPU seconds since boot, all CPUs together: 1,024 CPUs for 30,000 years is under 1e15.
MAX_CPU_SECONDS = 1e15

# Frame limits per kind: a sample and a bye are a few fields; a hello adds a few
# strings of at most 256 bytes and 32 addresses; a snapshot is the large one.
FRAME_LIMITS = {"sample": MAX_SAMPLE_FRAME_BYTES, "hello": 8 * 1024, "bye": 1024, "snapshot": MAX_FRAME_BYTES}
MESSAGE_KINDS = tuple(FRAME_LIMITS)

_percent = Number(0.0, 100.0)
_count = Number(0, 2**64 - 1, integer=True)  # what msgpack can carry
_optional_count = Number(0, 2**64 - 1, integer=True, optional=True)
_rate = Number(0.0, MAX_RATE)
_total = Number(0, MAX_TOTAL, integer=True, optional=True)  # absent from older agents' snapshots
_cpu_seconds = Number(0.0, MAX_CPU_SECONDS)
_epoch = Number(0.0, MAX_EPOCH_SECONDS)
_text = Text(MAX_TEXT)
_name = Text(MAX_NAME)

PROCESS = Record({
    "pid": Number(0, MAX_PID, integer=True),
    "name": _name,
    "user": Text(MAX_NAME, optional=True),
    "status": _name,
    "cpu_percent": Number(0.0, 100.0 * MAX_CPUS),
    "rss": _count,
    "memory_percent": _percent,
    "create_time": _epoch,
    "cmdline": _text,
})

STATS = Record({
    "cpu": Record({
        "percent": _percent,
        "per_cpu": ListOf(_percent, MAX_CPUS),
        "load_avg": ListOf(Number(0.0, MAX_LOAD_AVERAGE), 3, exactly=3),
        "times_percent": Record({"user": _percent, "system": _percent, "idle": _percent, "iowait": _percent}),
        "freq_mhz": Number(0.0, MAX_FREQUENCY_MHZ, optional=True),
        # cumulative CPU seconds since boot (psutil.cpu_times()); absent from older agents' snapshots
        "times_seconds": Record({"user": _cpu_seconds, "system": _cpu_seconds, "idle": _cpu_seconds,
                                 "iowait": _cpu_seconds}, optional=True),
    }),
    "memory": Record({"total": _count, "available": _count, "used": _count, "percent": _percent,
                      "free": _optional_count}),  # free (psutil's, not total - used): newer agents only
    "swap": Record({"total": _count, "used": _count, "percent": _percent}),
    "disks": ListOf(Record({
        "device": _name, "mountpoint": _text, "fstype": _name,
        "total": _count, "used": _count, "free": _count, "percent": _percent,
    }), MAX_DISKS),
    "disk_io": Record({
        "read_bytes_per_s": _rate, "write_bytes_per_s": _rate, "read_ops_per_s": _rate, "write_ops_per_s": _rate,
        # the cumulative counters the rates are computed from (newer agents only)
        "read_count": _total, "write_count": _total, "read_bytes": _total, "write_bytes": _total,
    }, optional=True),
    "network": ListOf(Record({
        "interface": _name,
        "rx_bytes_per_s": _rate, "tx_bytes_per_s": _rate, "rx_packets_per_s": _rate, "tx_packets_per_s": _rate,
        "rx_errors": _count, "tx_errors": _count, "rx_drops": _count, "tx_drops": _count,
    }), MAX_INTERFACES),
    "processes": Record({
        "count": _count,
        "top_cpu": ListOf(PROCESS, MAX_TOP_PROCESSES),
        "top_memory": ListOf(PROCESS, MAX_TOP_PROCESSES),
    }),
})

HELLO_FIELDS = Record({
    "hostname": _text,
    "boot_time": _epoch,
    "os": _text,
    "platform": _text,
    "cpu_count": Number(1, MAX_CPUS, integer=True),
    "memory_total": _count,
    "agent_version": Text(64),
    "interval": Number(0.01, 3600.0),
})


class NodeHello(NamedTuple):
    """An agent announcing itself (``info`` holds the cleaned ``HELLO_FIELDS``; ``paused``: whether the
    agent says it is paused, None from an agent that does not say, one without a control channel)."""

    fqdn: str
    ts: float
    seq: int
    ips: list[str]
    info: dict[str, Any]
    paused: bool | None = None


def check_paused(value: object) -> bool | None:
    """The ``paused`` field of a hello: a boolean, or None when absent or null (an agent that cannot be
    paused: it is not)."""
    if value is None:
        return None
    if type(value) is not bool:
        raise InvalidSample("bad_field", "paused: must be a boolean", "paused")
    return value


class NodeBye(NamedTuple):
    """An agent stopping cleanly."""

    fqdn: str
    ts: float
    seq: int


class NodeSnapshot(NamedTuple):
    """An agent's latest rich statistics (``stats`` cleaned against ``STATS``)."""

    fqdn: str
    ts: float
    seq: int
    stats: dict[str, Any]


Message = Sample | NodeHello | NodeBye | NodeSnapshot


def decode_message(
    frame: bytes,
    now: float,
    names: NameCache,
    known_ips: Callable[[str], list[str] | None] | None = None,
) -> Message:
    """Decode one frame of any kind received at ``now``; raise ``InvalidSample`` if it is bad.

    The whole message is validated before anything is returned, and the
    error carries the message's ``kind`` once it is known (None when the
    frame is not even a map, or names no known kind).
    """
    message = unpack_frame(frame)
    kind = message.get("kind")
    if kind is None:
        kind = "sample"
    elif type(kind) is not str or kind not in FRAME_LIMITS:
        shown = kind if type(kind) is str and len(kind) <= 32 else type(kind).__name__
        raise InvalidSample("unknown_kind", f"unknown message kind {shown!r}", "kind")
    try:
        if len(frame) > FRAME_LIMITS[kind]:
            raise InvalidSample("too_large", f"{kind} frame of {len(frame)} bytes exceeds {FRAME_LIMITS[kind]}")
        if kind == "sample":
            return sample_from_map(message, now, names, known_ips)
        return _node_message(kind, message, now, names)
    except InvalidSample as invalid:
        invalid.kind = kind
        raise


def _node_message(kind: str, message: dict[str, Any], now: float, names: NameCache) -> Message:
    if message.get("v") != NODE_PROTOCOL_VERSION or type(message.get("v")) is not int:
        raise InvalidSample("bad_version", f"kind {kind!r} needs protocol version {NODE_PROTOCOL_VERSION}", "v")
    for key in ("fqdn", "ts", "seq"):
        if key not in message:
            raise InvalidSample("missing_field", f"frame lacks required key {key!r}", key)
    fqdn = names.canonical(message["fqdn"])
    ts = check_timestamp(message["ts"], now)
    seq = check_seq(message["seq"])
    if kind == "hello":
        if "ip" not in message:
            raise InvalidSample("missing_field", "frame lacks required key 'ip'", "ip")
        ips = check_ips(message["ip"])
        return NodeHello(fqdn, ts, seq, ips, HELLO_FIELDS.check(message, ""), check_paused(message.get("paused")))
    if kind == "bye":
        return NodeBye(fqdn, ts, seq)
    return NodeSnapshot(fqdn, ts, seq, STATS.check(message.get("stats"), "stats"))


def _envelope(kind: str, fqdn: str, ts: float, seq: int) -> dict[str, Any]:
    return {"v": NODE_PROTOCOL_VERSION, "kind": kind, "fqdn": fqdn, "ts": float(ts), "seq": int(seq)}


def encode_hello(
    fqdn: str, ts: float, seq: int, ips: list[str], info: dict[str, Any], paused: bool | None = None
) -> bytes:
    """A ``hello`` frame (``info``: the ``HELLO_FIELDS``; ``paused``: whether the agent is paused, None
    (left out) for an agent without a control channel)."""
    message = {**_envelope("hello", fqdn, ts, seq), "ip": list(ips)[:MAX_IPS], **info}
    if paused is not None:
        message["paused"] = paused
    return msgpack.packb(message)


def encode_bye(fqdn: str, ts: float, seq: int) -> bytes:
    """A ``bye`` frame."""
    return msgpack.packb(_envelope("bye", fqdn, ts, seq))


def encode_snapshot(fqdn: str, ts: float, seq: int, stats: dict[str, Any]) -> bytes:
    """A ``snapshot`` frame; raise ``ValueError`` if it would exceed ``MAX_FRAME_BYTES``."""
    frame = msgpack.packb({**_envelope("snapshot", fqdn, ts, seq), "stats": stats})
    if len(frame) > MAX_FRAME_BYTES:
        raise ValueError(f"snapshot of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    return frame
