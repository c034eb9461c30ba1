"""What one collector tells the others about its fleet (pure: no I/O): its directory and its live cells.

A collector of a fleet (several ``serve`` on one Redis store) shares, every
``--share-every`` seconds:

- its *directory*: every server and node it holds, as the fleet view's
  columns (name, node or not, state, last seen, current cpu and ram), one
  msgpack map of packed arrays, so that any collector lists the whole fleet;
- the *live cells* of the servers that changed: the open buckets its rings
  hold (the current minute, and any other bucket of an open period a sample
  touched; the current hour only once it is over, and once a minute as a
  provisional copy, see ``fleet_cells``), and the seconds. They are written
  into the same block hashes the closed periods are kept in, under fields
  named by the collector, so a read merges every collector's part
  (``redis_store``).

Collector ids are short, lower case and free of ``/`` (the field separator).
Decoding is validation: a directory another collector wrote that does not
decode is ``ValueError`` (the reader counts it and goes on without it).
"""

from __future__ import annotations

import itertools
import re
import struct
from typing import Any, NamedTuple

import msgpack
import numpy as np
import numpy.typing as npt

from ..common.fleet import FleetTable
from ..common.nodes import NODE_STATES
from ..common.snapshots import StoredSnapshot

DIRECTORY_VERSION = 1
MAX_DIRECTORY_BYTES = 256 * 1024 * 1024  # 10M names of 25 bytes
COLLECTOR_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
# A live cell of a minute or an hour: samples, cpu and ram sums (percent), min and max fixed-point.
LIVE_CELL = struct.Struct("<IddIIII")
LIVE_DTYPE = np.dtype([("samples", "<u4"), ("cpu_sum", "<f8"), ("ram_sum", "<f8"), ("cpu_min", "<u4"),
                       ("cpu_max", "<u4"), ("ram_min", "<u4"), ("ram_max", "<u4")])  # LIVE_CELL, as an array's
# A live second: its epoch second, samples, average cpu and ram (hundredths of a percent).
LIVE_SECOND = struct.Struct("<qBHH")
LIVE_SECOND_DTYPE = np.dtype([("second", "<i8"), ("samples", "u1"), ("cpu", "<u2"), ("ram", "<u2")])  # as an array's
SECOND_FIELDS = 64  # a server's seconds hash keeps the last 64 seconds of each collector (field second % 64)
_COLUMNS = (("is_node", np.bool_), ("states", np.int8), ("last_seen", np.float64), ("cpu", np.float64),
            ("ram", np.float64), ("served", np.bool_))


def check_collector_id(text: str) -> str:
    """``text`` if it can name a collector (1 to 32 of ``a-z 0-9 -``, not starting with ``-``); ``ValueError``."""
    if COLLECTOR_ID.match(text) is None:
        raise ValueError(f"a collector id is 1 to 32 lower-case letters, digits and '-' (not first), not {text!r}")
    return text


class Directory(NamedTuple):
    """A decoded directory: whose, when, its fleet table, and per entry (nodes; empty for a server) its IP
    addresses and when its node record last changed (0: never)."""

    collector: str
    ts: float
    table: FleetTable
    ips: list[list[str]]
    record_at: npt.NDArray[np.float64]


def encode_directory(table: FleetTable, collector: str, now: float, ips: list[list[str]] | None = None,
                     record_at: npt.NDArray[np.float64] | None = None) -> bytes:
    """The directory of ``collector`` as of ``now``: its fleet table's columns, and its nodes' addresses
    and record times (``Directory``), packed."""
    count = len(table.names)
    body: dict[str, Any] = {"v": DIRECTORY_VERSION, "collector": collector, "ts": float(now),
                            "names": "\n".join(table.names),
                            "ips": "\n".join(",".join(addresses) for addresses in ips) if ips else "\n" * (count - 1),
                            "record_at": np.ascontiguousarray(record_at if record_at is not None else np.zeros(count),
                                                              dtype=np.float64).tobytes()}
    for name, dtype in _COLUMNS:
        values = getattr(table, name)
        if values is None:  # served: all
            values = np.ones(len(table.names), dtype=dtype)
        body[name] = np.ascontiguousarray(values, dtype=dtype).tobytes()
    return msgpack.packb(body, use_bin_type=True)


# The names and addresses of the last directory decoded of each collector, as text and as lists: a
# collector's servers and their addresses rarely change from one share to the next, and splitting and
# checking 50,000 of them took ~20-40 ms of the reader's thread every --share-every (its interpreter lock
# time is the loop's wait). The lists are shared by the directories decoded from the same text: read only.
MAX_REMEMBERED_DIRECTORIES = 64
_last_texts: dict[str, tuple[str, str, list[str], list[list[str]]]] = {}


def decode_directory(blob: bytes) -> Directory:
    """The ``Directory`` of ``blob``; ``ValueError`` for anything that is not one."""
    if len(blob) > MAX_DIRECTORY_BYTES:
        raise ValueError(f"a directory of {len(blob)} bytes is over {MAX_DIRECTORY_BYTES}")
    try:
        body = msgpack.unpackb(blob, raw=False, max_bin_len=MAX_DIRECTORY_BYTES, max_str_len=MAX_DIRECTORY_BYTES,
                               max_map_len=32, max_array_len=0)
    except (ValueError, msgpack.UnpackException, TypeError) as error:
        raise ValueError(f"not a directory: {error}") from None
    if type(body) is not dict or body.get("v") != DIRECTORY_VERSION:
        raise ValueError("not a directory of version 1")
    collector, ts, names_text = body.get("collector"), body.get("ts"), body.get("names")
    if type(collector) is not str or type(ts) is not float or type(names_text) is not str:
        raise ValueError("a directory needs collector, ts and names")
    collector = check_collector_id(collector)
    memo = _last_texts.get(collector)
    if memo is not None and memo[0] == names_text:  # the same servers as the last share: checked then
        names = memo[2]
    else:
        names = names_text.split("\n") if names_text else []
        memo = None
    columns: list[npt.NDArray[Any]] = []
    for name, dtype in _COLUMNS:
        data = body.get(name)
        if type(data) is not bytes or len(data) != len(names) * np.dtype(dtype).itemsize:
            raise ValueError(f"a directory's {name} does not match its {len(names)} names")
        columns.append(np.frombuffer(data, dtype=dtype).copy())
    if columns[1].size and (columns[1].min() < 0 or columns[1].max() >= len(NODE_STATES)):
        raise ValueError("a directory holds an unknown state")
    if memo is None and any(later <= earlier for earlier, later in itertools.pairwise(names)):
        raise ValueError("a directory's names are not in order")
    ips_text, record_at = body.get("ips"), body.get("record_at")
    if type(ips_text) is not str or type(record_at) is not bytes or len(record_at) != 8 * len(names):
        raise ValueError("a directory needs ips and record_at for each entry")
    if memo is not None and memo[1] == ips_text:
        ips = memo[3]
    else:
        ips = [line.split(",") if line else [] for line in ips_text.split("\n")] if names else []
        if len(ips) != len(names):
            raise ValueError(f"a directory's ips do not match its {len(names)} names")
    if len(_last_texts) >= MAX_REMEMBERED_DIRECTORIES and collector not in _last_texts:
        _last_texts.clear()
    _last_texts[collector] = (names_text, ips_text, names, ips)
    return Directory(collector, ts, FleetTable(names, *columns), ips,
                     np.frombuffer(record_at, dtype=np.float64).copy())


LATEST = struct.Struct("<d?")  # a latest snapshot's second and whether its data is compressed


def latest_snapshot(ts: float, snapshot: StoredSnapshot) -> bytes:
    """A node's newest snapshot as shared (``st:{NAME}:latest``)."""
    return LATEST.pack(ts, snapshot.compressed) + snapshot.data


def read_latest_snapshot(record: bytes) -> tuple[float, StoredSnapshot]:
    """``(ts, snapshot)`` of a ``latest_snapshot``; ``ValueError`` for anything shorter."""
    if len(record) < LATEST.size:
        raise ValueError("not a snapshot record")
    ts, compressed = LATEST.unpack_from(record)
    return ts, StoredSnapshot(bytes(record[LATEST.size:]), compressed)


def live_field(collector: str, index: int) -> str:
    """The block hash field of ``collector``'s live cell of bucket ``index`` of the period."""
    return f"{collector}/m{int(index)}"


def part_of_field(field: str) -> tuple[str, str]:
    """``(collector, rest)`` of a block hash field: ``C/0`` a base, ``C/N`` a delta, ``C/mI`` a live cell, ``C/pI``
    a provisional hour cell; a field without ``/`` is a part written by a single collector before fleets
    (collector ``""``)."""
    collector, slash, rest = field.rpartition("/")
    return (collector, rest) if slash else ("", field)
