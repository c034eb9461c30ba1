"""The SQLite file of the embedded store: minute and hour blocks, node records, snapshot history.

Tables (all ``WITHOUT ROWID``: rows live in their primary key's b-tree)::

    meta(key PRIMARY KEY, value)                 schema_version, created_at
    minute_blocks(server, period, part, cells)   PRIMARY KEY(period, server, part); period = UTC hour
    hour_blocks(server, period, part, cells)     the same; period = UTC day
    servers(name PRIMARY KEY, minute_last, hour_last)   the newest period stored per width
    nodes(name PRIMARY KEY, record)
    snapshots(node, ts, sections)                PRIMARY KEY(node, ts), and an index on ts

A block's ``cells`` are packed by ``history_codec`` (about 470 bytes for a
full hour of minutes at 0.01 % resolution). Blocks are keyed period first:
the blocks a period closes are written together and land at the end of the
table, a few rows a page, so a write touches about as many pages as it adds
(keyed server first, every write would dirty one page per server: 8 times
the bytes written, growing with the file). Retention deletes from the front,
``min(period)`` is the first row, and a server's range is one primary-key
lookup per period. ``servers`` answers whether a server has any history.

The file runs in WAL mode with ``synchronous=NORMAL``: a commit is durable
against a crash of the process at once and against a power cut from the next
checkpoint on; readers never block the writer and see only committed
transactions. ``auto_vacuum=INCREMENTAL``: pages that retention frees are
reused by later writes, so under a steady retention the file stops growing;
it only shrinks when ``compact`` hands free pages back, in steps.

Threads: ``SqliteStore`` is the writer, one connection used by one thread at
a time (the store's worker thread; it may be created on another). Every
reading thread opens its own ``SqliteReader`` (``reader()``), a read-only
connection; the two may be created on one thread and used on another.

Failures: every method lets ``sqlite3.Error`` and ``OSError`` through (the
caller counts, logs and retries). A failed write is rolled back whole, and
the object stays usable once the cause (a full disk, a read-only file, a
lock held elsewhere) is gone. A stored block that does not decode raises
``CorruptBlock`` naming it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..common.errors import StoreVersionError
from .history_codec import empty_cells, encode_blocks, fields_of, merged_periods
from .records import (
    BUCKETS_PER_PERIOD,
    HOUR_WIDTH,
    MAX_READ_BUCKETS,
    MINUTE_WIDTH,
    HistoryBlocks,
    SnapshotRecord,
    StoredCells,
)

SCHEMA_VERSION = 1
PAGE_SIZE = 8192  # a block packed at 1e-5 % resolution (~1 KB) or kept plain (~2 KB) fits a page: no overflow pages
BUSY_TIMEOUT_SECONDS = 5.0
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # the -wal file is cut back to this after a checkpoint
WRITER_CACHE_KIB = 64 * 1024
TABLES = {MINUTE_WIDTH: "minute_blocks", HOUR_WIDTH: "hour_blocks"}

LAST_COLUMNS = {MINUTE_WIDTH: "minute_last", HOUR_WIDTH: "hour_last"}

_SCHEMA = [
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    *(f"CREATE TABLE {table}(server TEXT NOT NULL, period INTEGER NOT NULL, part INTEGER NOT NULL, "
      f"cells BLOB NOT NULL, PRIMARY KEY(period, server, part)) WITHOUT ROWID" for table in TABLES.values()),
    # delta parts are few: a restart finds those of chunks its log lost (``drop_parts_after``) at once
    *(f"CREATE INDEX {table}_deltas ON {table}(part) WHERE part > 0" for table in TABLES.values()),
    "CREATE TABLE servers(name TEXT PRIMARY KEY, minute_last INTEGER, hour_last INTEGER) WITHOUT ROWID",
    "CREATE TABLE nodes(name TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID",
    ("CREATE TABLE snapshots(node TEXT NOT NULL, ts INTEGER NOT NULL, sections BLOB NOT NULL, "
     "PRIMARY KEY(node, ts)) WITHOUT ROWID"),
    "CREATE INDEX snapshots_ts ON snapshots(ts)",
]


def _table(width: int) -> str:
    try:
        return TABLES[width]
    except KeyError:
        raise ValueError(f"no history of {width}-second buckets (60 or 3600)") from None


class _Reads:
    """The reads both connections answer (the writer's own, and every reader's)."""

    _connection: sqlite3.Connection

    def read_cells(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells:
        """Buckets ``first_bucket .. first_bucket + count - 1`` of ``width`` seconds of ``server``: every
        stored part of every block they touch, merged; zeros where nothing is stored."""
        table, per_period = _table(width), BUCKETS_PER_PERIOD[width]
        if count > MAX_READ_BUCKETS:
            raise ValueError(f"at most {MAX_READ_BUCKETS} buckets a read, not {count}")
        count = max(0, count)
        if count == 0:
            return StoredCells._make([first_bucket, width, *empty_cells(0)])
        first_period, last_period = first_bucket // per_period, (first_bucket + count - 1) // per_period
        rows = self._connection.execute(
            "WITH RECURSIVE wanted(period) AS (SELECT ?1 UNION ALL SELECT period + 1 FROM wanted WHERE period < ?2) "
            f"SELECT b.period, b.part, b.cells FROM wanted JOIN {table} AS b ON b.period = wanted.period "
            "AND b.server = ?3 ORDER BY b.period, b.part",
            (first_period, last_period, server),
        ).fetchall()
        spans = last_period - first_period + 1
        if rows:
            cells = merged_periods(rows, per_period, first_period, spans, f"{table} of {server!r}")
        else:
            cells = empty_cells((spans, per_period))
        offset = first_bucket - first_period * per_period
        return StoredCells._make([first_bucket, width, *(field.reshape(-1)[offset:offset + count] for field in fields_of(cells))])

    def read_range(self, server: str, width: int, first_bucket: int, count: int) -> StoredCells | None:
        """``read_cells``, or None when ``has_server`` says no block of ``server`` is stored."""
        return self.read_cells(server, width, first_bucket, count) if self.has_server(server) else None

    def has_server(self, server: str) -> bool:
        """Whether any minute or hour block of ``server`` is stored."""
        return self._connection.execute("SELECT 1 FROM servers WHERE name = ?", (server,)).fetchone() is not None

    def kept_from(self, width: int) -> int | None:
        """The oldest period of ``width``-second buckets still stored (hour or day number), or None."""
        row = self._connection.execute(f"SELECT min(period) FROM {_table(width)}").fetchone()
        return None if row[0] is None else int(row[0])

    def load_nodes(self) -> list[tuple[str, bytes]]:
        """Every stored node record, by name."""
        return [(name, bytes(record)) for name, record in
                self._connection.execute("SELECT name, record FROM nodes ORDER BY name")]

    def read_snapshots(self, node: str, from_ts: int, to_ts: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` snapshot records of ``node`` taken in seconds ``from_ts .. to_ts`` (both
        included), oldest first, as ``(ts, sections)``."""
        if limit <= 0:
            return []
        return [(int(ts), bytes(sections)) for ts, sections in self._connection.execute(
            "SELECT ts, sections FROM snapshots WHERE node = ? AND ts BETWEEN ? AND ? ORDER BY ts LIMIT ?",
            (node, from_ts, to_ts, limit))]


class SqliteReader(_Reads):
    """A read-only connection to the store's file for one reading thread (see the module's docstring)."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None,
                                           check_same_thread=False)

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


class SqliteStore(_Reads):
    """The store's SQLite file, opened (created if missing) for writing; see the module's docstring.

    Raises ``StoreVersionError`` for a file of a newer schema version (left
    untouched), ``sqlite3.Error`` for a file that is not a database.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time,
                 busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._servers_purged: dict[int, int] = {}  # width -> the cut servers were last purged by
        self._connection = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                           check_same_thread=False)
        try:
            self.schema_version = self._prepare(clock)
        except BaseException:
            self._connection.close()
            raise

    def _prepare(self, clock: Callable[[], float]) -> int:
        connection = self._connection
        if connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0:
            # a new file (these apply only while it is empty; on a used one they would rewrite its header)
            connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        with self._transaction():
            has_meta = connection.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'").fetchone()
            if has_meta:
                row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row is not None else 0
                if version > SCHEMA_VERSION:
                    raise StoreVersionError(
                        f"{self.path} was written by a newer ServerTrack (schema version {version}; "
                        f"this one knows up to {SCHEMA_VERSION})")
            else:
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                                       [("schema_version", SCHEMA_VERSION), ("created_at", int(clock()))])
                version = SCHEMA_VERSION
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        return version

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back whole (the error propagates)."""
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise

    def reader(self) -> SqliteReader:
        """A new read-only connection (one per reading thread)."""
        return SqliteReader(self.path, self._busy_timeout)

    # ---------------------------------------------------------------- history

    def write_blocks(self, blocks: HistoryBlocks) -> None:
        """Store ``blocks`` in one transaction, in their order: a base part replaces its block (every
        part of it goes, then part 0 is written); a delta part is written or replaced."""
        table = _table(blocks.width)
        encoded = encode_blocks(blocks)
        names, periods, last_base = encoded.names, encoded.periods, encoded.last_base
        if not names:
            return
        # what is left once every base has deleted the parts written before it
        rows = [(name, period, part, blob)
                for index, (name, period, part, blob) in enumerate(zip(names, periods, encoded.parts, encoded.blobs))
                if encoded.kept(index)]
        rows.sort(key=_block_key)  # key order: each page of the table is touched once
        newest: dict[str, int] = {}
        for name, period in zip(names, periods):
            if newest.get(name, period - 1) < period:
                newest[name] = period
        last = LAST_COLUMNS[blocks.width]
        with self._transaction() as connection:
            if last_base:
                connection.executemany(f"DELETE FROM {table} WHERE period = ? AND server = ?",
                                       sorted((period, name) for name, period in last_base))
            connection.executemany(f"INSERT OR REPLACE INTO {table}(server, period, part, cells) VALUES (?, ?, ?, ?)",
                                   rows)
            connection.executemany(
                f"INSERT INTO servers(name, {last}) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                f"{last} = max(coalesce({last}, excluded.{last}), excluded.{last})", sorted(newest.items()))

    def drop_parts_after(self, chunk_id: int) -> int:
        """Delete the delta parts numbered after ``chunk_id``: those of chunks a crash kept out of the log,
        which a restart does not apply again (their samples are not in the windows either). Returns how
        many went."""
        with self._transaction() as connection:
            # "part > 0" lets SQLite use the partial index of deltas
            return sum(connection.execute(f"DELETE FROM {table} WHERE part > 0 AND part > ?", (chunk_id,)).rowcount
                       for table in TABLES.values())

    def purge(self, width: int, before_period: int, limit: int = 10_000) -> int:
        """Delete at most ``limit`` blocks (parts) of periods before ``before_period``, oldest first;
        return how many went. Call again while it returns ``limit``. Once none are left, servers
        without any history left are forgotten too (``has_server``)."""
        table, last = _table(width), LAST_COLUMNS[width]
        with self._transaction() as connection:
            keys = connection.execute(
                f"SELECT period, server, part FROM {table} WHERE period < ? ORDER BY period, server, part LIMIT ?",
                (before_period, max(0, limit))).fetchall()
            connection.executemany(f"DELETE FROM {table} WHERE period = ? AND server = ? AND part = ?", keys)
            forget = len(keys) < limit and self._servers_purged.get(width, before_period - 1) < before_period
            if forget:
                connection.execute(f"UPDATE servers SET {last} = NULL WHERE {last} < ?", (before_period,))
                connection.execute("DELETE FROM servers WHERE minute_last IS NULL AND hour_last IS NULL")
        if forget:
            self._servers_purged[width] = before_period
        return len(keys)

    # ---------------------------------------------------------------- nodes and snapshots

    def save_nodes(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Write node records in one transaction, in order: bytes replace a node's record, None deletes it."""
        final = dict(records)
        if not final:
            return
        with self._transaction() as connection:
            connection.executemany("DELETE FROM nodes WHERE name = ?",
                                   [(name,) for name, record in final.items() if record is None])
            connection.executemany("INSERT OR REPLACE INTO nodes(name, record) VALUES (?, ?)",
                                   [(name, record) for name, record in final.items() if record is not None])

    def write_snapshots(self, records: Sequence[SnapshotRecord]) -> None:
        """Store snapshot records in one transaction (one of a node at the same second is replaced)."""
        if not records:
            return
        with self._transaction() as connection:
            connection.executemany("INSERT OR REPLACE INTO snapshots(node, ts, sections) VALUES (?, ?, ?)",
                                   [(record.node, record.ts, record.sections) for record in records])

    def purge_snapshots(self, before_ts: int, limit: int = 10_000) -> int:
        """Delete at most ``limit`` snapshots taken before second ``before_ts``, oldest first; return how many."""
        with self._transaction() as connection:
            keys = connection.execute("SELECT node, ts FROM snapshots WHERE ts < ? ORDER BY ts LIMIT ?",
                                      (before_ts, max(0, limit))).fetchall()
            connection.executemany("DELETE FROM snapshots WHERE node = ? AND ts = ?", keys)
        return len(keys)

    # ---------------------------------------------------------------- the file

    def free_pages(self) -> int:
        """Pages freed by deletes and not reused yet (``compact`` returns them to the file system)."""
        return int(self._connection.execute("PRAGMA freelist_count").fetchone()[0])

    def compact(self, max_pages: int = 2048) -> int:
        """Give at most ``max_pages`` free pages back (the file shrinks); return how many went."""
        before = self.free_pages()
        if before and max_pages > 0:
            self._connection.execute(f"PRAGMA incremental_vacuum({int(max_pages)})").fetchall()
        return before - self.free_pages()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and empty it."""
        self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(path).st_size
        return total

    def close(self) -> None:
        """Close the writer's connection (readers close their own)."""
        self._connection.close()


def _block_key(row: tuple[str, int, int, bytes]) -> tuple[int, str, int]:
    return row[1], row[0], row[2]
