"""What node messages of protocol v2 hold: the bounds, the declared schema of a hello's fields and of
a stats snapshot (``HELLO_FIELDS``, ``STATS``), and the typed records they decode into.

The wire form (envelope, kinds, frame limits) is described in ``node_messages``, which decodes and
encodes them; ``node_frames`` decodes the same schema in C. Every list and string is bounded, so even
a snapshot at every maximum fits in ``MAX_FRAME_BYTES``; every time field has a range the API can
render as a date (``MAX_EPOCH_SECONDS``), and every number a bound, so whatever is stored can be shown.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .protocol import MAX_FRAME_BYTES, MAX_SAMPLE_FRAME_BYTES, Sample
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
