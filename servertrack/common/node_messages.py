"""Node messages of protocol v2: ``hello``, ``bye`` and stats ``snapshot`` frames.

Envelope (msgpack map): ``{"v": 2, "kind": ..., "fqdn": str, "ts": float, "seq": int, ...}``;
``seq`` counts every message of an agent run, whatever its kind.

- ``hello``: the envelope plus ``HELLO_FIELDS`` (hostname, IPs, boot time,
  OS, platform, CPU count, total memory, agent version, sample interval),
  and ``paused``: an optional boolean, true while the agent is paused by the
  control channel (see ``control_messages``); absent from agents without one
  (older ones), which are never paused.
- ``bye``: the envelope alone; the agent is stopping cleanly.
- ``snapshot``: the envelope plus ``"stats"``, matching ``STATS`` (``node_schema``).
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
a bound, so whatever is stored can be shown. The bounds, the schema and the
typed records live in ``node_schema``.

``decode_message`` is the one entry point for a frame of any kind. A plain
valid hello, bye or snapshot is decoded and checked in C (``node_frames``);
anything else, valid or not, goes to the general decoder (``decode_general``),
which decides and names the reason of a refusal.

A v1 frame (no ``kind``), or a v2 frame of kind ``sample``, is a load sample
(see ``protocol``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from .errors import InvalidSample
from .node_frames import node_message
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
    MAX_FRAME_BYTES,
    MAX_IPS,
    NODE_PROTOCOL_VERSION,
    NameCache,
    check_ips,
    check_seq,
    check_clock,
    check_timestamp,
    sample_from_map,
    unpack_frame,
)


def check_paused(value: object) -> bool | None:
    """The ``paused`` field of a hello: a boolean, or None when absent or null (an agent that cannot be
    paused: it is not)."""
    if value is None:
        return None
    if type(value) is not bool:
        raise InvalidSample("bad_field", "paused: must be a boolean", "paused")
    return value



def decode_message(
    frame: bytes,
    now: float,
    names: NameCache,
    known_ips: Callable[[str], list[str] | None] | None = None,
) -> Message:
    """Decode one frame of any kind received at ``now``; raise ``InvalidSample`` if it is bad.

    The whole message is validated before anything is returned, and the
    error carries the message's ``kind`` once it is known (None when the
    frame is not even a map, or names no known kind). ``known_ips(name)``
    may return the IP list last accepted for a server (see ``decode_sample``).
    """
    message = node_message(frame, now, names, known_ips)
    if message is not None:
        return message
    return decode_general(frame, now, names, known_ips)


def decode_general(
    frame: bytes,
    now: float,
    names: NameCache,
    known_ips: Callable[[str], list[str] | None] | None = None,
) -> Message:
    """``decode_message`` without the fast path: every frame unpacked and validated in Python."""
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
    # a hello or bye is taken from an agent whose clock is off (its skew shows); a snapshot is placed at its ts
    ts = check_timestamp(message["ts"], now) if kind == "snapshot" else check_clock(message["ts"], now)
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
