"""``--store redis://HOST:PORT[/DB]`` and ``--store redis+cluster://HOST:PORT,...``: the history on Redis.

A ``HistoryBackend`` under ``DurableStore`` (see ``history_backend``): the
same worker thread, byte-capped queue, pending blocks and recovery as the
SQLite store; only where the history is kept differs.

In Redis (key names in ``redis_keys``; every key has a TTL)::

    st:{NAME}:m:HOUR      hash  part -> block   minutes of UTC hour HOUR; TTL: the hour's end + --keep-minutes
    st:{NAME}:h:DAY       hash  part -> block   hours of UTC day DAY; TTL: the day's end + --keep-hours
    st:{NAME}:known       "1"   while any block of NAME is kept (TTL: that of its newest-expiring block)
    st:{NAME}:node        the node record (``node_records``); TTL: the longest retention, renewed every checkpoint
    st:{NAME}:snaps       sorted set by second: 8-byte second + the snapshot's sections (msgpack);
                          members older than --keep-snapshots trimmed on write, TTL: newest + --keep-snapshots
    st:nodes              set of the names that have a node record (read once, on start)
    st:deltas             sorted set by chunk id: the delta parts a crash may have to drop
    st:agent-seqs         the agents' last seqs at a clean stop (``agent_seqs`` format), taken by the next start
    st:meta               hash: schema_version

A block is one server's period (an hour of minutes, a day of hours) packed
by ``history_codec``; its part 0 is the base the ring closed, other parts
(numbered by chunk id) are late samples, merged on read as the SQLite store
does. The hash tag ``{NAME}`` puts all of a server's keys in one cluster
slot: a range is one pipeline to one node, one round trip. Writes are
pipelined (``transaction=False``; the cluster pipeline sends each node its
share): one round trip per node per job, never one per key. Every write is
idempotent (a base deletes its hash and sets part 0, a delta sets its part,
EXPIRE sets a TTL computed from the period), so the worker retrying a job
after a node failed part-way writes the same data again. TTLs are relative,
computed from the store's clock, so Redis' own clock does not matter. Redis
7 or later (``EXPIRE ... NX``/``GT``).

What stays local, in ``--data-dir``: the batch log and the checkpoints of
the live windows, with the lock. They are this process's crash recovery
(what a ``kill -9`` must not lose before the hour closes), written at once
and fsynced each second; a Redis round trip per chunk would put the network
on the ingest path. A collector restarted with its data dir comes back with
its windows exactly; one started with an empty data dir on the same Redis
comes back with the history, nodes and snapshots (not the open hour's
minutes and today's hours, which only the rings and the log held).

Several collectors (``fleet_directory``): every ``serve`` on one Redis store is
a collector of one fleet, named by its id ``C``. The fields of a block hash
are named by collector (``C/0`` its base, ``C/CHUNK`` its deltas, ``C/mI``
its live cell of bucket ``I``, ``C/pI`` a provisional copy of its current
hour: ``fleet_cells``), so a read merges every collector's part as it
merges base and deltas (``history_codec.merge``), and a base replaces only its
own collector's fields (a script on the server's one slot, ``_BASE_SCRIPT``,
instead of ``DEL``). The crash index and the agents' seqs are per collector
(``st:deltas:C``, ``st:agent-seqs:C``). A share (``write_share``) writes the
live cells in one script call per few hundred cells per cluster node
(``_SHARE_SCRIPT``), the seconds, the directory and the newest snapshots;
``read_fleet`` reads a server's windows of every collector, and of every
collector but one, in one round trip.

Faults: a command that fails (node down, timeout, cluster re-sharding) fails
the worker's job, which is retried with a growing pause while ingest goes on
from memory; ``health`` says ``failing`` and counts failures until a job
succeeds; the queue is bounded in bytes as SQLite's is (what does not fit
is refused, counted, and carried by the next checkpoint locally). Once Redis
answers again the queue drains in order.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgpack
import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..common.errors import ServerTrackError
from .agent_seqs import AgentSeqs, decode_agent_seqs, encode_agent_seqs
from .fleet_cells import provisional_hours, split_hour_cells, split_period_cells
from .fleet_directory import (
    LIVE_CELL,
    LIVE_SECOND,
    SECOND_FIELDS,
    check_collector_id,
    part_of_field,
)
from .history_backend import no_cells
from .history_codec import encode_blocks, fields_of
from .live_share import NO_NAMES, LiveEntries, LiveSeconds, name_ids, sliced_map
from .records import (
    BASE_PART,
    BUCKETS_PER_PERIOD,
    HOUR_WIDTH,
    MAX_READ_BUCKETS,
    MINUTE_WIDTH,
    HistoryBlocks,
    SnapshotRecord,
    StoredCells,
)
from .redis_keys import (
    COLLECTORS_KEY,
    CONTROLS_KEY,
    META_KEY,
    NODES_KEY,
    agent_seqs_key,
    block_key,
    block_ttl,
    delta_member,
    deltas_key,
    directory_key,
    known_key,
    latest_key,
    node_key,
    parse_delta_member,
    part_field,
    seconds_key,
    server_prefix,
    snapshot_ttl,
    snapshots_key,
)
from .store_url import RedisTarget

SCHEMA_VERSION = 2  # 2: fields named by collector (C/PART); the unprefixed fields of 1 still read
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 5.0
CLIENT_RETRIES = 2
# The readers' own client waits this long for a node, and does not retry: a healthy node answers a read in
# milliseconds (p99 ~40 ms under the fleet bench's full load), while one that stopped answering (a host gone
# silent, a frozen process) held every fleet read ~20 s with the writer's timeout and retries.
READ_SOCKET_TIMEOUT_SECONDS = 1.0
SILENT_NODE_SECONDS = 2.0  # after a node failed a read, reads of its keys fail at once this long (then one tries it)
MIN_REDIS_MAJOR = 7
_TS = struct.Struct(">q")
CONTROLS_TTL = 3600  # a pause or resume asked of a node another collector holds waits this long at most
SECONDS_KEY_TTL = 300  # a server's shared seconds outlive its last share by this long
_SHARE_CELLS_PER_CALL = 500  # one call blocks its Redis node ~1 ms: reads wait at most that long
# A base replaces this collector's fields of a block hash (its live cells, its deltas), no other collector's.
_BASE_SCRIPT = """
local prefix = ARGV[1]
local fields = redis.call('HKEYS', KEYS[1])
for i = 1, #fields do
  if string.sub(fields[i], 1, #prefix) == prefix then redis.call('HDEL', KEYS[1], fields[i]) end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
# A share's cells on one node: ARGV[1] the collector's field prefix (C/), ARGV[2] the key prefixes of the servers
# (st:{NAME}:), one a line, ARGV[3] the cells as _SHARE_RECORD records. A record names its server (1-based line),
# its hash and field (kind 0: the seconds hash, field C/N; 1: a minutes block hash, C/mN; 2: an hours block
# hash, C/mN, which replaces the provisional C/pN; 3: an hours block hash, C/pN, a provisional cell of the
# current hour; with the period), a ttl (positive: set when the key has none, a block hash's; negative: always,
# a seconds hash's) and its value. KEYS[1] only routes the call to the node holding every key it writes.
_SHARE_RECORD = np.dtype([("server", "<u4"), ("kind", "u1"), ("period", "<i4"), ("index", "<u2"), ("ttl", "<i4"),
                          ("length", "u1"), ("value", "u1", (LIVE_CELL.size,))])
_SHARE_SCRIPT_TEXT = """#!lua flags=allow-cross-slot-keys
local prefix, data = ARGV[1], ARGV[3]
local unpack, sub, call = struct.unpack, string.sub, redis.call
local servers, second_fields, cell_fields, provisional_fields, hashes = {}, {}, {}, {}, {'m:', 'h:', 'h:'}
for line in string.gmatch(ARGV[2], '[^\\n]+') do servers[#servers + 1] = line end
for index = 0, 63 do
  second_fields[index], cell_fields[index], provisional_fields[index] = prefix .. index, prefix .. 'm' .. index,
    prefix .. 'p' .. index
end
for at = 1, #data, RECORD_BYTES do
  local server, kind, period, index, ttl, length = unpack('<I4Bi4Hi4B', data, at)
  local key, field
  if kind == 0 then
    key, field = servers[server] .. 's', second_fields[index]
  elseif kind == 3 then
    key, field = servers[server] .. 'h:' .. period, provisional_fields[index]
  else
    key, field = servers[server] .. hashes[kind] .. period, cell_fields[index]
  end
  call('HSET', key, field, sub(data, at + HEADER_BYTES, at + HEADER_BYTES - 1 + length))
  if kind == 2 then call('HDEL', key, provisional_fields[index]) end
  if ttl > 0 then call('EXPIRE', key, ttl, 'NX') elseif ttl < 0 then call('EXPIRE', key, -ttl) end
end
return #data / RECORD_BYTES
"""
_SHARE_SCRIPT = _SHARE_SCRIPT_TEXT.replace("RECORD_BYTES", str(_SHARE_RECORD.itemsize)).replace(
    "HEADER_BYTES", str(_SHARE_RECORD.itemsize - LIVE_CELL.size))  # a record's header: all before its value
_SECONDS_KIND, _MINUTES_KIND, _HOURS_KIND, _PROVISIONAL_KIND = range(4)



class _ShareRecords(NamedTuple):
    """A share as ``_SHARE_RECORD`` records: per record its server's name and an id equal for equal names;
    and what the share does once written: the servers whose block hash (width, period) it gives a TTL, and
    the servers whose seconds hash's TTL it renews."""

    records: np.ndarray
    names: np.ndarray
    ids: np.ndarray
    given_ttl: dict[tuple[int, int], list[str]]
    renewed: list[str]


class NodeSilence:
    """The Redis nodes that lately did not answer a read, shared by a store's reader threads: until
    ``SILENT_NODE_SECONDS`` after a node failed one, a read of its keys fails at once instead of waiting for
    it again (a collector answering from its own rings, or a 503), and the first read after that tries it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._until: dict[str, float] = {}
        self._clock = clock

    def silent(self, node: str) -> bool:
        """Whether ``node`` (``host:port``) failed a read less than ``SILENT_NODE_SECONDS`` ago."""
        until = self._until.get(node)
        return until is not None and until > self._clock()

    def check(self, node: str) -> None:
        """A ``redis.ConnectionError`` while ``node`` is silent: the read does not wait for it."""
        if self.silent(node):
            raise RedisConnectionError(f"Redis {node} did not answer a read in the last {SILENT_NODE_SECONDS:g} s")

    def failed(self, node: str) -> None:
        """``node`` did not answer a read (a timeout, a connection refused or cut)."""
        self._until[node] = self._clock() + SILENT_NODE_SECONDS

    def answered(self, node: str) -> None:
        """``node`` answered a read."""
        if self._until:
            self._until.pop(node, None)


class RedisUnavailable(ServerTrackError):
    """The Redis store cannot be used: unreachable, refused the password, not what the URL says."""


def connect(target: RedisTarget, password: str | None = None, ca_file: str | None = None,
            socket_timeout: float = SOCKET_TIMEOUT_SECONDS, retries: int = CLIENT_RETRIES) -> Any:
    """A client for ``target`` (``redis.Redis`` or ``RedisCluster``), checked with a PING, whose commands
    wait ``socket_timeout`` for an answer and are tried again ``retries`` times; ``RedisUnavailable`` with
    one line saying why not."""
    # redis-py retries a command a little (a reconnect, a failover); the store's worker retries the job
    # after that, with its own pause, so a node down shows as "failing" within a second or two
    options: dict[str, Any] = {"username": target.username, "password": password,
                               "socket_timeout": socket_timeout, "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
                               "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries)}
    if target.tls:
        options.update(ssl=True, ssl_ca_certs=ca_file)
    try:
        if target.cluster:
            client: Any = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
                                       **options)
        else:
            host, port = target.hosts[0]
            client = redis.Redis(host=host, port=port, db=target.db, **options)
            client.ping()
            problem = version_problem(str(client.info("server").get("redis_version", "")))
            if problem is not None:
                client.close()
                raise RedisUnavailable(f"cannot use the Redis store {target.describe()}: {problem}")
            if int(client.info("cluster").get("cluster_enabled", 0)):
                client.close()
                raise RedisUnavailable(f"cannot use the Redis store {target.describe()}: it is a cluster node "
                                       f"(use redis+cluster://)")
    except (RedisError, RedisClusterException, OSError) as error:
        raise RedisUnavailable(f"cannot use the Redis store {target.describe()}: "
                               f"{_why(error, password is not None)}") from None
    return client


def version_problem(version: str) -> str | None:
    """Why a Redis of ``version`` (``INFO server``'s ``redis_version``) cannot keep the store, or None:
    it needs 7 or later (``EXPIRE ... NX``/``GT``). An unreadable version is let through."""
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) < MIN_REDIS_MAJOR:
        return f"it is Redis {version}; the store needs Redis {MIN_REDIS_MAJOR} or later (EXPIRE NX/GT)"
    return None


def _why(error: BaseException, with_password: bool) -> str:
    """What went wrong, in one line; a missing password said as such (Redis says it in several ways)."""
    text = _one_line(error)
    if not with_password and any(sign in text for sign in ("NOAUTH", "Authentication required",
                                                           "HELLO must be called", "AUTH")):
        return "it needs a password: give it with --store-password-file FILE"
    return text


class RedisHistory:
    """The history of ``DurableStore`` kept in Redis (see the module's docstring); ``client`` is a
    ``redis.Redis`` or a ``RedisCluster`` (``connect``)."""

    purges = False  # every key has a TTL

    def __init__(self, client: Any, keep: dict[int, float], keep_snapshots: float,
                 clock: Callable[[], float] = time.time, description: str = "redis", collector: str = "c",
                 read_client: Any = None) -> None:
        """``keep``: seconds of history per bucket width (60, 3600); ``collector``: this collector's id (the
        prefix of the fields it writes, see ``fleet_directory``); ``read_client``: the client of ``reader``
        (default ``client``; ``open_redis_history`` gives it one of its own, quick to give up on a node)."""
        self._client = client
        self._read_client = client if read_client is None else read_client
        self._silence = NodeSilence()  # the readers' (``reader``), shared by their threads
        self._cluster = isinstance(client, RedisCluster)  # asked once: an isinstance of it is slow (~2 µs)
        self.collector = check_collector_id(collector)
        # the node holding a server's keys, by name, as its number in ``_nodes`` (one None for a single Redis)
        self._slots: dict[str, int] = {}
        self._nodes: list[Any] = []
        self._expiring: dict[tuple[int, int], set[str]] = {}  # the servers whose block hash (width, period) has a TTL
        self._seconds_renewed: dict[str, float] = {}  # when a share last renewed a seconds hash's TTL
        self._pruned_at = -math.inf
        self._prefixes: dict[str, str] = {}  # "st:{NAME}:" by name (the tag checked once)
        self._keep = dict(keep)
        self._keep_snapshots = keep_snapshots
        self._longest = math.ceil(max(*self._keep.values(), keep_snapshots))
        self._clock = clock
        self.description = description
        self._check_schema()

    def _check_schema(self) -> None:
        version = self._client.hget(META_KEY, "schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise RedisUnavailable(f"{self.description} was written by a newer ServerTrack (schema version "
                                   f"{int(version)}; this one knows up to {SCHEMA_VERSION})")
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(META_KEY, "schema_version", SCHEMA_VERSION)
        pipe.expire(META_KEY, self._longest)
        pipe.execute()

    # ---------------------------------------------------------------- history

    def write_blocks(self, blocks: HistoryBlocks) -> None:
        """Keep ``blocks`` in one pipeline: a base deletes its hash and sets part 0, a delta sets its part
        (and is indexed in ``st:deltas``); each hash expires when its period leaves retention."""
        width = blocks.width
        encoded = encode_blocks(blocks)
        names, periods, parts, blobs = encoded.names, encoded.periods, encoded.parts, encoded.blobs
        if not names:
            return
        now, keep = self._clock(), self._keep[width]
        known: dict[str, int] = {}
        deltas: dict[str, int] = {}
        pipe = self._client.pipeline(transaction=False)
        for index, (name, period, part, blob) in enumerate(zip(names, periods, parts, blobs)):
            if not encoded.kept(index):
                continue  # a later base of the same block replaces it
            ttl = block_ttl(width, period, keep, now)
            if ttl <= 0:
                continue  # out of retention already
            key = block_key(name, width, period)
            if part == BASE_PART:  # replaces this collector's fields (its live cells, its deltas), no other's
                pipe.execute_command("EVAL", _BASE_SCRIPT, 1, key, f"{self.collector}/", part_field(part, self.collector),
                                     blob, ttl)
                continue
            deltas[delta_member(name, width, period, part)] = part
            pipe.hset(key, part_field(part, self.collector), blob)
            pipe.expire(key, ttl)
            known[name] = max(ttl, known.get(name, 0))
        for name, ttl in known.items():
            key = known_key(name)
            pipe.set(key, b"1", keepttl=True)
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
        if deltas:
            pipe.zadd(deltas_key(self.collector), deltas)
            pipe.expire(deltas_key(self.collector), self._longest)
        pipe.execute()

    def drop_parts_after(self, chunk_id: int) -> int:
        """Delete the delta parts of chunks after ``chunk_id`` (from ``st:deltas``); how many were kept."""
        index = deltas_key(self.collector)
        members = [_text(member) for member in self._client.zrangebyscore(index, f"({int(chunk_id)}", "+inf")]
        if not members:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for member in members:
            name, width, period, part = parse_delta_member(member)
            pipe.hdel(block_key(name, width, period), part_field(part, self.collector))
        pipe.zrem(index, *members)
        return int(sum(pipe.execute()[:-1]))

    def forget_parts_before(self, chunk_id: int) -> None:
        """Trim ``st:deltas`` of the parts of chunks before ``chunk_id`` (never dropped any more)."""
        self._client.zremrangebyscore(deltas_key(self.collector), "-inf", f"({int(chunk_id)}")

    def purge(self, width: int, before_period: int, limit: int = 10_000) -> int:
        """Nothing to do: every block hash expires by itself (its TTL)."""
        return 0

    def purge_snapshots(self, before_ts: int, limit: int = 10_000) -> int:
        """Nothing to do: snapshot history is trimmed as it is written, and expires (its TTL)."""
        return 0

    # ---------------------------------------------------------------- nodes, snapshots, seqs

    def save_nodes(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Replace node records (bytes) or delete them (None), in one pipeline."""
        final = dict(records)
        if not final:
            return
        pipe = self._client.pipeline(transaction=False)
        gone = [name for name, record in final.items() if record is None]
        kept = [name for name, record in final.items() if record is not None]
        for name in gone:
            pipe.delete(node_key(name))
        for name in kept:
            pipe.set(node_key(name), final[name], ex=self._longest)
        if gone:
            pipe.srem(NODES_KEY, *gone)
        if kept:
            pipe.sadd(NODES_KEY, *kept)
        pipe.expire(NODES_KEY, self._longest)
        pipe.execute()

    def load_nodes(self) -> list[tuple[str, bytes]]:
        """Every kept node record, by name (names whose record expired leave ``st:nodes``)."""
        names = sorted(_text(name) for name in self._client.smembers(NODES_KEY))
        if not names:
            return []
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.get(node_key(name))
        records = pipe.execute()
        gone = [name for name, record in zip(names, records) if record is None]
        if gone:
            self._client.srem(NODES_KEY, *gone)
        return [(name, bytes(record)) for name, record in zip(names, records) if record is not None]

    def write_snapshots(self, records: Sequence[SnapshotRecord]) -> None:
        """Keep snapshot records in one pipeline (one of a node at the same second is replaced); each node's
        history is trimmed to ``keep_snapshots`` and expires that long after its newest snapshot."""
        if not records:
            return
        now = self._clock()
        cut = math.floor(now - self._keep_snapshots)
        newest: dict[str, int] = {}
        pipe = self._client.pipeline(transaction=False)
        for record in records:
            if snapshot_ttl(record.ts, self._keep_snapshots, now) <= 0:
                continue
            key = snapshots_key(record.node)
            pipe.zremrangebyscore(key, record.ts, record.ts)
            pipe.zadd(key, {_TS.pack(record.ts) + record.sections: record.ts})
            newest[record.node] = max(record.ts, newest.get(record.node, record.ts))
        for node, ts in newest.items():
            key = snapshots_key(node)
            pipe.zremrangebyscore(key, "-inf", f"({cut}")
            pipe.expire(key, snapshot_ttl(ts, self._keep_snapshots, now), gt=True)
            pipe.expire(key, snapshot_ttl(ts, self._keep_snapshots, now), nx=True)
        pipe.execute()

    def take_agent_seqs(self) -> AgentSeqs | None:
        """The seqs the last clean stop kept (GETDEL: good for one start); ``ValueError`` if they do not decode."""
        key = agent_seqs_key(self.collector)
        data = self._client.getdel(key)
        return None if data is None else decode_agent_seqs(bytes(data), f"{self.description} {key}")

    def keep_agent_seqs(self, seqs: AgentSeqs) -> None:
        """Keep the agents' last seqs for the next start."""
        self._client.set(agent_seqs_key(self.collector), encode_agent_seqs(seqs), ex=self._longest)

    # ---------------------------------------------------------------- the fleet's live state

    def write_share(self, entries: LiveEntries, directory: bytes | None, servers: int) -> None:
        """See ``_write_share``; after a failure every hash gets its TTL again (Redis may have lost them), and a
        slot a cluster node says moved is looked up again."""
        try:
            self._write_share(entries, directory, servers)
        except BaseException as error:
            self._expiring.clear()
            self._seconds_renewed.clear()
            self._slots.clear()
            self._nodes = []
            if self._cluster and isinstance(error, MovedError):
                # its calls go to nodes' own connections, which do not learn a moved slot by themselves: told
                # here, as the cluster client does on MOVED (no I/O)
                try:
                    self._client.nodes_manager.move_slot(error)
                except (RedisError, RedisClusterException, LookupError):
                    pass  # the retry meets MOVED again; the client's own commands refresh its map
            elif self._cluster and isinstance(error, (RedisConnectionError, RedisTimeoutError)):
                # a node that does not answer may have been failed over: the slot map is asked again (the
                # client's own commands would only if one of their keys were on that node). This client is
                # the store thread's alone: the readers have their own (``read_client``).
                try:
                    self._client.nodes_manager.initialize()
                except (RedisError, RedisClusterException, OSError):
                    pass  # no node answers: the next retry asks again
            raise

    def _write_share(self, entries: LiveEntries, directory: bytes | None, servers: int) -> None:
        """Write a share (see ``fleet_directory``): the live cells into the block hashes (a field per bucket,
        ``C/mI``), the seconds into each server's seconds hash (``C/SECOND%64``), the nodes' newest snapshots,
        the directory, and this collector's line in ``st:collectors``: the cells in one script call per few
        hundred (``_SHARE_SCRIPT``), pipelined to the node that holds their keys, the rest in one pipeline.
        Built in arrays (a Python step per server, none per cell); idempotent (a retry writes the same fields
        again)."""
        now = self._clock()
        share = self._share_records(entries, now)
        if len(share.records):
            self._write_share_calls(share)
        pipe = self._client.pipeline(transaction=False)
        for node, record in entries.snapshots.items():
            pipe.set(latest_key(node), record, ex=self._longest)
        if directory is not None:
            pipe.set(directory_key(self.collector), directory, ex=self._longest)
        pipe.hset(COLLECTORS_KEY, self.collector, msgpack.packb({"ts": now, "servers": servers}))
        pipe.expire(COLLECTORS_KEY, self._longest)
        pipe.execute()
        self._shared(share, now)

    def _share_records(self, entries: LiveEntries, now: float) -> _ShareRecords:
        """The ``_SHARE_RECORD`` of every cell of ``entries`` (those out of retention left out); a key's first
        record carries its TTL when it needs one."""
        # a provisional cell before the hour's cell: the latter deletes the former when both come at once
        kinds = ((60, entries.minutes, _MINUTES_KIND), (3600, entries.provisional_hours, _PROVISIONAL_KIND),
                 (3600, entries.hours, _HOURS_KIND), (1, entries.seconds, _SECONDS_KIND))
        every_id = name_ids(np.concatenate([cells.names for _, cells, _ in kinds]))
        records: list[np.ndarray] = []
        names: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        given: dict[tuple[int, int], list[str]] = {}
        renewed: list[str] = []
        at = 0
        for width, cells, kind in kinds:
            count = len(cells.names)
            cell_ids, at = every_id[at:at + count], at + count
            if not count:
                continue
            record = np.zeros(count, dtype=_SHARE_RECORD)
            if isinstance(cells, LiveSeconds):
                record["kind"], record["index"], record["length"] = _SECONDS_KIND, cells.seconds % SECOND_FIELDS, \
                    LIVE_SECOND.size
                record["value"][:, :LIVE_SECOND.size] = cells.records.view(np.uint8).reshape(-1, LIVE_SECOND.size)
                # a seconds hash's TTL is renewed once a minute (it outlives the last share by 4 to 5 minutes)
                first = _first_of_each(cell_ids)
                renewed_at = cells.names[first].tolist()
                due = first[sliced_map(self._seconds_renewed.get, (renewed_at, [-math.inf] * len(renewed_at)),
                                       np.float64) < now - 60]
                record["ttl"][due] = -SECONDS_KEY_TTL
                renewed += cells.names[due].tolist()
                kept_names = cells.names
            else:
                periods = cells.periods
                ttls = np.zeros(count, dtype=np.int64)
                for period in np.unique(periods).tolist():
                    ttls[periods == period] = block_ttl(width, period, self._keep[width], now)
                kept = ttls > 0
                record["kind"], record["period"], record["index"] = kind, periods, cells.indices
                record["length"] = LIVE_CELL.size
                record["value"] = cells.records.view(np.uint8).reshape(-1, LIVE_CELL.size)
                # a block hash gets its TTL once: on its first record of the first share of its period
                first = _first_of_each(cell_ids * (1 << 32) + (periods - periods.min()))
                first = first[kept[first]]
                for period in np.unique(periods[first]).tolist():
                    had = self._expiring.get((width, period), set())
                    of_period = first[periods[first] == period]
                    fresh = of_period[~sliced_map(had.__contains__, (cells.names[of_period].tolist(),), bool)]
                    record["ttl"][fresh] = ttls[fresh]
                    given.setdefault((width, period), []).extend(cells.names[fresh].tolist())
                record, kept_names, cell_ids = record[kept], cells.names[kept], cell_ids[kept]
            records.append(record)
            names.append(kept_names)
            ids.append(cell_ids)
        if not records:
            return _ShareRecords(np.zeros(0, dtype=_SHARE_RECORD), NO_NAMES, np.zeros(0, dtype=np.int64), {}, [])
        return _ShareRecords(np.concatenate(records), np.concatenate(names), np.concatenate(ids), given, renewed)

    def _write_share_calls(self, share: _ShareRecords) -> None:
        """Write a share's records in script calls of ``_SHARE_CELLS_PER_CALL`` (a server's records
        together), one pipeline per node holding their servers' keys: one round trip a node. (A node's own
        connection, not the cluster pipeline: that one asks the node for the keys of every EVAL, a round trip
        each.)"""
        records, names = share.records, share.names
        _, first, servers = np.unique(share.ids, return_index=True, return_inverse=True)
        distinct = names[first].tolist()
        prefixes = self._prefixes
        for name in distinct:
            if name not in prefixes:  # the name checked once
                prefixes[name] = server_prefix(name)
        node_of_record = self._node_numbers(distinct)[servers]
        order = np.lexsort((servers, node_of_record))  # by node, then by server
        bounds = np.flatnonzero(np.diff(node_of_record[order])) + 1
        prefix = f"{self.collector}/"
        lines_of = [prefixes[name] for name in distinct]
        targets = self._nodes
        for group in np.split(order, bounds):
            node = targets[int(node_of_record[group[0]])]
            pipe = (self._client if node is None else self._client.get_redis_connection(node)).pipeline(
                transaction=False)
            for start in range(0, len(group), _SHARE_CELLS_PER_CALL):
                chunk = group[start:start + _SHARE_CELLS_PER_CALL]
                held, local = np.unique(servers[chunk], return_inverse=True)
                call = records[chunk]
                call["server"] = local + 1
                lines = "\n".join([lines_of[server] for server in held.tolist()])
                pipe.execute_command("EVAL", _SHARE_SCRIPT, 1, known_key(distinct[int(held[0])]), prefix, lines,
                                     call.tobytes())
            pipe.execute()
        if len(self._prefixes) > 4 * len(distinct) + 100_000:
            self._prefixes.clear()

    def _shared(self, share: _ShareRecords, now: float) -> None:
        """Remember what a share just wrote: the block hashes given a TTL, the seconds hashes renewed; and once
        a minute forget the periods of the hours and days gone."""
        for key, names in share.given_ttl.items():
            self._expiring.setdefault(key, set()).update(names)
        self._seconds_renewed.update(zip(share.renewed, itertools.repeat(now)))
        if now - self._pruned_at >= 60:
            self._pruned_at = now
            current = {60: int(now // 3600), 3600: int(now // 86_400)}
            self._expiring = {key: names for key, names in self._expiring.items() if key[1] >= current[key[0]] - 1}
            self._seconds_renewed = {name: at for name, at in self._seconds_renewed.items() if at >= now - 600}

    def _node_numbers(self, names: list[str]) -> np.ndarray:
        """The number in ``_nodes`` of the node holding each server's keys (None for a single Redis), looked
        up once until a share fails (a dictionary lookup per name, in slices: see ``sliced_map``)."""
        if len(self._slots) > 4 * len(names) + 100_000:
            self._slots.clear()
        numbers = sliced_map(self._slots.get, (names, [-1] * len(names)), np.int64)
        missing = np.flatnonzero(numbers < 0).tolist()
        if missing:
            number_of = {node: number for number, node in enumerate(self._nodes)}
            for at in missing:
                node = self._client.nodes_manager.get_node_from_slot(self._client.keyslot(known_key(names[at]))) \
                    if self._cluster else None
                number = number_of.get(node)
                if number is None:
                    number = number_of[node] = len(self._nodes)
                    self._nodes.append(node)
                numbers[at] = self._slots[names[at]] = number
        return numbers

    def read_directories(self) -> list[tuple[str, bytes]]:
        """See ``RedisReads.read_directories``."""
        return self.reader().read_directories()

    def ask_control(self, node: str, paused: bool) -> None:
        """Ask the collector that holds ``node`` (``*``: every collector, for all their nodes) to pause or
        resume it: the request waits in ``st:controls`` for the collectors to read (``RedisReads.read_controls``)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(CONTROLS_KEY, node, msgpack.packb({"paused": bool(paused), "ts": self._clock(),
                                                      "by": self.collector}))
        pipe.expire(CONTROLS_KEY, CONTROLS_TTL)
        pipe.execute()

    # ---------------------------------------------------------------- reading

    def reader(self) -> RedisReads:
        """A reader for one thread (the client's connection pool is shared; pipelines are per read)."""
        return RedisReads(self._read_client, self._keep_snapshots, self._clock, self.collector, self._silence)

    def read_range(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells | None:
        """See ``RedisReads.read_range``."""
        return self.reader().read_range(server, width, first_bucket, count)

    def read_cells(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells:
        """See ``RedisReads.read_cells``."""
        return self.reader().read_cells(server, width, first_bucket, count)

    def has_server(self, server: str) -> bool:
        """See ``RedisReads.has_server``."""
        return self.reader().has_server(server)

    def read_snapshots(self, node: str, from_ts: int, to_ts: int, limit: int) -> list[tuple[int, bytes]]:
        """See ``RedisReads.read_snapshots``."""
        return self.reader().read_snapshots(node, from_ts, to_ts, limit)

    def close(self) -> None:
        """Close the clients' connections."""
        self._client.close()
        if self._read_client is not self._client:
            self._read_client.close()


class RedisReads:
    """Reads of the Redis history: a range in one pipeline (one server's keys share a slot: one node)."""

    def __init__(self, client: Any, keep_snapshots: float, clock: Callable[[], float], collector: str = "c",
                 silence: NodeSilence | None = None) -> None:
        """``silence``: the nodes that lately did not answer, shared with the other readers of the store."""
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self.collector = collector
        self._keep_snapshots = keep_snapshots
        self._clock = clock
        self._silence = NodeSilence() if silence is None else silence

    def read_range(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells | None:
        """Buckets ``first_bucket .. first_bucket + count - 1`` of ``server`` (every part of every block
        they touch, every collector's, merged; zeros where nothing is kept), or None when nothing of
        ``server`` is kept: one pipeline, ``EXISTS`` and one ``HGETALL`` per period."""
        split = self.read_split(server, width, first_bucket, count, None)
        return None if split is None else split[0]

    def read_split(self, server: str, width: int, first_bucket: int, count: int, own: str | None
                   ) -> tuple[StoredCells, StoredCells] | None:
        """``read_range`` twice from one read: every collector's parts merged, and every collector's but
        ``own``'s (what a collector adds to its own rings' buckets); None when nothing of ``server`` is kept."""
        return self.read_fleet(server, [(width, first_bucket, count)], own, seconds=False)[0][0]

    def read_fleet(self, server: str, spans: list[tuple[int, int, int]], own: str | None, seconds: bool = True
                   ) -> tuple[list[tuple[StoredCells, StoredCells] | None], list[tuple[int, int, int, int]]]:
        """``read_split`` of each ``(width, first_bucket, count)`` of ``spans`` and (``seconds``) the seconds
        every collector but ``own`` shared (``(second, samples, cpu, ram)``, loads in hundredths of a percent),
        all in one pipeline: one round trip to the node holding ``server``'s slot."""
        commands: list[tuple[str, str]] = [("exists", known_key(server))]
        plans = []
        asked = 1
        minutes_at: dict[int, int] = {}  # the answer that is the minutes hash of an hour
        for width, first_bucket, count in spans:
            per_period = BUCKETS_PER_PERIOD.get(width)
            if per_period is None:
                raise ValueError(f"no history of {width}-second buckets (60 or 3600)")
            if count > MAX_READ_BUCKETS:
                raise ValueError(f"at most {MAX_READ_BUCKETS} buckets a read, not {count}")
            count = max(0, count)
            first_period = first_bucket // per_period
            last_period = (first_bucket + max(count, 1) - 1) // per_period
            periods = range(first_period, last_period + 1) if count else range(0)
            for period in periods:
                commands.append(("hgetall", block_key(server, width, period)))
                if width == MINUTE_WIDTH:
                    minutes_at[period] = asked
                asked += 1
            plans.append((width, first_bucket, count, per_period, first_period, asked - len(periods), len(periods)))
        # the current and the previous hour of an hours span are added up from their minutes too (see
        # ``fleet_cells``): their minutes hashes, read in the same round trip unless a minutes span reads them
        hour = int(self._clock() // HOUR_WIDTH)
        summed = sorted({recent for width, first_bucket, count in spans if width == HOUR_WIDTH
                         for recent in (hour - 1, hour) if first_bucket <= recent < first_bucket + count})
        for recent in summed:
            if recent not in minutes_at:
                commands.append(("hgetall", block_key(server, MINUTE_WIDTH, recent)))
                minutes_at[recent] = asked
                asked += 1
        if seconds:
            commands.append(("hgetall", seconds_key(server)))
        answers = self._one_slot(commands)
        known = bool(answers[0])
        minutes_of = {recent: [(_text(field), bytes(blob)) for field, blob in answers[minutes_at[recent]].items()]
                      for recent in summed}
        # each span's block hash fields, decoded once: (period, field, value)
        parts_of = [[(first_period + offset, _text(field), bytes(blob))
                     for offset, fields in enumerate(answers[at:at + spans_read]) for field, blob in fields.items()]
                    for _, _, _, _, first_period, at, spans_read in plans]
        # an hour a collector stopped in holds its provisional copy (up to a minute behind its last share):
        # its minutes too, in a second round trip, only for such hours (a collector gone: rare)
        stopped_in = sorted(self._stopped_hours(plans, parts_of, minutes_of))
        if stopped_in:
            extra = self._one_slot([("hgetall", block_key(server, MINUTE_WIDTH, hour_of)) for hour_of in stopped_in])
            for hour_of, fields in zip(stopped_in, extra):
                minutes_of[hour_of] = [(_text(field), bytes(blob)) for field, blob in fields.items()]
        splits: list[tuple[StoredCells, StoredCells] | None] = []
        for (width, first_bucket, count, per_period, first_period, at, spans_read), parts in zip(plans, parts_of):
            hashes: list[dict[Any, Any]] = answers[at:at + spans_read]
            of_hours = minutes_of if width == HOUR_WIDTH else {}
            if not known and not any(hashes) and not any(of_hours.values()):
                splits.append(None)
                continue
            if count == 0:
                splits.append((no_cells(first_bucket, width, 0), no_cells(first_bucket, width, 0)))
                continue
            where = f"{width}-second blocks of {server!r}"
            if width == HOUR_WIDTH:
                merged = split_hour_cells(parts, of_hours, hour, first_period, spans_read, where, own)
            else:
                merged = split_period_cells(parts, per_period, first_period, spans_read, where, own)
            offset = first_bucket - first_period * per_period
            cut = [StoredCells._make([first_bucket, width,
                                      *(np.ascontiguousarray(field.reshape(-1)[offset:offset + count])
                                        for field in fields_of(cells))]) for cells in merged]
            splits.append((cut[0], cut[1]))
        shared = _shared_seconds(answers[-1], own) if seconds else []
        return splits, shared

    @staticmethod
    def _stopped_hours(plans: list[tuple[int, int, int, int, int, int, int]],
                       parts_of: list[list[tuple[int, str, bytes]]], at_hand: dict[int, Any]) -> set[int]:
        """The hours of the hours spans of ``plans`` (their fields in ``parts_of``) that a collector stopped in
        (``fleet_cells.provisional_hours``), but those of ``at_hand``."""
        hours: set[int] = set()
        for (width, first_bucket, count, *_), parts in zip(plans, parts_of):
            if width == HOUR_WIDTH:
                hours.update(hour for hour in provisional_hours(parts, at_hand)
                             if first_bucket <= hour < first_bucket + count)
        return hours

    def _one_slot(self, commands: list[tuple[str, str]]) -> list[Any]:
        """The answers to ``commands`` (``(method, key)``, keys of one slot) in one pipeline. On a cluster, the
        pipeline goes to the connection of the node holding the slot (the cluster pipeline costs ~0.4 ms of
        Python a read to route commands that all go to one node); when that node does not answer for the
        slot (it moved, the node failed over), through the cluster pipeline, which finds the node. A node
        that did not answer at all fails the reads of its keys at once for a while (``NodeSilence``)."""
        if not self._cluster:
            self._silence.check("redis")
            try:
                answers = self._pipelined(self._client, commands)
            except (RedisConnectionError, RedisTimeoutError):
                self._silence.failed("redis")
                raise
            self._silence.answered("redis")
            return answers
        try:
            node = self._client.nodes_manager.get_node_from_slot(self._client.keyslot(commands[0][1]))
        except (RedisError, RedisClusterException):  # no node known for the slot: the cluster pipeline asks
            return self._pipelined(self._client, commands)
        self._silence.check(node.name)
        try:
            answers = self._pipelined(self._client.get_redis_connection(node), commands)
            self._silence.answered(node.name)
            return answers
        except (RedisConnectionError, RedisTimeoutError):
            # the cluster pipeline finds a replica that took over, if one did; if not, the node is silent
            try:
                return self._pipelined(self._client, commands)
            except (RedisError, RedisClusterException):
                self._silence.failed(node.name)
                raise
        except (RedisError, RedisClusterException) as error:
            if isinstance(error, MovedError):
                try:
                    self._client.nodes_manager.move_slot(error)
                except (RedisError, RedisClusterException, LookupError):
                    pass
        return self._pipelined(self._client, commands)

    @staticmethod
    def _pipelined(client: Any, commands: list[tuple[str, str]]) -> list[Any]:
        """``commands`` in one pipeline of ``client`` (a node's connection, or the cluster's)."""
        pipe = client.pipeline(transaction=False)
        for method, key in commands:
            getattr(pipe, method)(key)
        return list(pipe.execute())

    def read_cells(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells:
        """``read_range``, zeros for a server without history."""
        cells = self.read_range(server, width, first_bucket, count)
        return no_cells(first_bucket, width, count) if cells is None else cells

    def has_server(self, server: str) -> bool:
        """Whether any block of ``server`` is kept."""
        return bool(self._client.exists(known_key(server)))

    def read_directories(self) -> list[tuple[str, bytes]]:
        """Every other collector's directory, ``(collector, blob)`` (one read of ``st:collectors``, then one
        GET each)."""
        others = sorted(_text(name) for name in self._client.hkeys(COLLECTORS_KEY) if _text(name) != self.collector)
        if not others:
            return []
        pipe = self._client.pipeline(transaction=False)
        for other in others:
            pipe.get(directory_key(other))
        return [(other, bytes(blob)) for other, blob in zip(others, pipe.execute()) if blob is not None]

    def read_node_records(self, names: list[str]) -> list[tuple[str, bytes | None]]:
        """The node records of ``names`` (None where none is kept), in one pipeline."""
        if not names:
            return []
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.get(node_key(name))
        return [(name, None if record is None else bytes(record)) for name, record in zip(names, pipe.execute())]

    def read_latest_snapshot(self, node: str) -> bytes | None:
        """The newest snapshot of ``node`` its collector shared (``latest_snapshot``), or None."""
        record = self._client.get(latest_key(node))
        return None if record is None else bytes(record)

    def read_controls(self) -> list[tuple[str, bool, float, str]]:
        """The pause/resume requests waiting (``RedisHistory.ask_control``): ``(node or *, paused, ts, by)``;
        entries that do not decode are left out."""
        requests = []
        for node, value in self._client.hgetall(CONTROLS_KEY).items():
            try:
                body = msgpack.unpackb(value, max_map_len=8, max_str_len=256)
                requests.append((_text(node), bool(body["paused"]), float(body["ts"]), str(body["by"])))
            except (ValueError, TypeError, KeyError, msgpack.UnpackException):
                continue
        return requests

    def read_snapshots(self, node: str, from_ts: int, to_ts: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` snapshot records of ``node`` taken in ``from_ts .. to_ts`` and within
        ``--keep-snapshots``, oldest first, as ``(ts, sections)``."""
        if limit <= 0:
            return []
        low = max(int(from_ts), math.floor(self._clock() - self._keep_snapshots))
        if low > to_ts:
            return []
        members = self._client.zrangebyscore(snapshots_key(node), low, int(to_ts), start=0, num=int(limit))
        return [(_TS.unpack_from(member)[0], bytes(member[_TS.size:])) for member in members]


def _first_of_each(ids: np.ndarray) -> np.ndarray:
    """The position of the first entry of each distinct value of ``ids``, in order."""
    return np.sort(np.unique(ids, return_index=True)[1])


def _shared_seconds(fields: dict[Any, Any], own: str | None) -> list[tuple[int, int, int, int]]:
    """The seconds of a server's seconds hash but those of collector ``own``."""
    seconds = []
    for field, value in fields.items():
        collector, _ = part_of_field(_text(field))
        if collector != own and len(value) == LIVE_SECOND.size:
            seconds.append(LIVE_SECOND.unpack(value))
    return seconds


def open_redis_history(target: RedisTarget, password: str | None, ca_file: str | None, keep: dict[int, float],
                       keep_snapshots: float, clock: Callable[[], float], collector: str = "c") -> RedisHistory:
    """Connect to ``target`` and check what it holds; ``RedisUnavailable`` with one line if it cannot be used."""
    client = connect(target, password, ca_file)
    try:
        read_client = connect(target, password, ca_file, socket_timeout=READ_SOCKET_TIMEOUT_SECONDS, retries=0)
    except BaseException:
        client.close()
        raise
    try:
        return RedisHistory(client, keep, keep_snapshots, clock, target.describe(), collector, read_client)
    except (RedisError, RedisClusterException, OSError) as error:
        client.close()
        read_client.close()
        raise RedisUnavailable(f"cannot use the Redis store {target.describe()}: {_one_line(error)}") from None
    except BaseException:
        client.close()
        read_client.close()
        raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."

