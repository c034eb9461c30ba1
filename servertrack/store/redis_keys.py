"""Key names and expiry times of the Redis store (pure: no I/O). See ``redis_store`` for the layout.

Every key of one server carries the server's name as its hash tag
(``st:{web-01}:...``): a Redis Cluster puts them all in one slot, so a
server's range is read from one node, in one round trip. The few fleet-wide
keys (``st:nodes``, ``st:deltas``, ``st:agent-seqs``, ``st:meta``) are
small indexes.
"""

from __future__ import annotations

import math
import re

from .records import BUCKETS_PER_PERIOD, HOUR_WIDTH, MINUTE_WIDTH

PREFIX = "st"
NODES_KEY = f"{PREFIX}:nodes"  # set: names of the nodes that have a record
DELTAS_KEY = f"{PREFIX}:deltas"  # sorted set: delta parts by chunk id, "width|server|period|part"
AGENT_SEQS_KEY = f"{PREFIX}:agent-seqs"  # the agents' last seqs at a clean stop (``agent_seqs`` bytes)
META_KEY = f"{PREFIX}:meta"  # hash: schema_version
COLLECTORS_KEY = f"{PREFIX}:collectors"  # hash: collector id -> its latest share (msgpack)
CONTROLS_KEY = f"{PREFIX}:controls"  # hash: node name or "*" -> the latest pause/resume asked of it (msgpack)
WIDTH_LETTERS = {MINUTE_WIDTH: "m", HOUR_WIDTH: "h"}
_NAME = re.compile(r"[A-Za-z0-9._-]{1,253}\Z")  # what ``normalize_name`` lets through: no braces, no colon


def _tag(name: str) -> str:
    if _NAME.match(name) is None:
        raise ValueError(f"server name {name!r} cannot be a Redis hash tag")
    return f"{PREFIX}:{{{name}}}"


def server_prefix(name: str) -> str:
    """``st:{name}:``, what every key of one server starts with (``ValueError`` for a name that cannot be a
    hash tag)."""
    return _tag(name) + ":"


def block_key(name: str, width: int, period: int) -> str:
    """The hash of one server's blocks of one period: ``st:{name}:m:HOUR`` (minutes of UTC hour number
    HOUR) or ``st:{name}:h:DAY`` (hours of UTC day number DAY); its fields are the parts."""
    try:
        letter = WIDTH_LETTERS[width]
    except KeyError:
        raise ValueError(f"no history of {width}-second buckets (60 or 3600)") from None
    return f"{_tag(name)}:{letter}:{int(period)}"


def known_key(name: str) -> str:
    """``st:{name}:known``: present while any block of the server is kept (``has_server``)."""
    return f"{_tag(name)}:known"


def node_key(name: str) -> str:
    """``st:{name}:node``: the node's record (``node_records.encode_node``)."""
    return f"{_tag(name)}:node"


def snapshots_key(name: str) -> str:
    """``st:{name}:snaps``: the node's snapshot history, a sorted set scored by second."""
    return f"{_tag(name)}:snaps"


def part_field(part: int, collector: str) -> str:
    """A block hash's field for ``collector``'s ``part`` (0 the base, a chunk id a delta): ``C/PART``."""
    return f"{collector}/{int(part)}"


def seconds_key(name: str) -> str:
    """``st:{name}:s``: the seconds the collectors shared of the server (field ``C/SECOND%64``)."""
    return f"{_tag(name)}:s"


def latest_key(name: str) -> str:
    """``st:{name}:latest``: the node's newest snapshot as its collector shared it (``latest_snapshot``)."""
    return f"{_tag(name)}:latest"


def directory_key(collector: str) -> str:
    """``st:dir:C``: collector ``C``'s directory (``fleet_directory``)."""
    return f"{PREFIX}:dir:{collector}"


def deltas_key(collector: str) -> str:
    """``st:deltas:C``: collector ``C``'s delta parts by chunk id (what its crash recovery may drop)."""
    return f"{DELTAS_KEY}:{collector}"


def agent_seqs_key(collector: str) -> str:
    """``st:agent-seqs:C``: the last seqs of collector ``C``'s agents at its clean stop."""
    return f"{AGENT_SEQS_KEY}:{collector}"


def delta_member(name: str, width: int, period: int, part: int) -> str:
    """The ``st:deltas`` member of one delta part."""
    return f"{int(width)}|{name}|{int(period)}|{int(part)}"


def parse_delta_member(member: str) -> tuple[str, int, int, int]:
    """``(name, width, period, part)`` of a ``delta_member``; ``ValueError`` for anything else."""
    width, name, period, part = member.split("|")
    return name, int(width), int(period), int(part)


def slot_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first ``{`` and the next ``}``, if not empty."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def period_end(width: int, period: int) -> int:
    """The epoch second where period ``period`` of ``width``-second buckets ends (an hour of minutes,
    a day of hours)."""
    return (int(period) + 1) * width * BUCKETS_PER_PERIOD[width]


def block_ttl(width: int, period: int, keep: float, now: float) -> int:
    """Seconds a block of ``period`` is kept from ``now``: until ``keep`` seconds after its period ends
    (the same cut the SQLite store purges at); 0 or less when it is out of retention already."""
    return math.ceil(period_end(width, period) + keep - now)


def snapshot_ttl(ts: int, keep: float, now: float) -> int:
    """Seconds the snapshot history of a node whose newest snapshot is at ``ts`` is kept from ``now``."""
    return math.ceil(ts + keep - now)
