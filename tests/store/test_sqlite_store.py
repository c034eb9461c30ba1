"""The SQLite file: blocks written and read against a naive model, replays, retention, schema versions,
failures (a full database, a read-only one, a lock held elsewhere) and recovery from them, nodes and
snapshots, and readers on other threads."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.errors import ServerTrackError, StoreVersionError
from servertrack.store.history_codec import (
    BlockCells,
    CorruptBlock,
    decode,
    empty_cells,
    encode,
    merge,
)
from servertrack.store.records import (
    BUCKETS_PER_PERIOD,
    HOUR_WIDTH,
    MINUTE_WIDTH,
    HistoryBlocks,
    SnapshotRecord,
)
from servertrack.store.sqlite_store import SCHEMA_VERSION, SqliteStore
from tests.store.test_history_codec import assert_same, walk_block

SERVERS = ["a", "web-01.example", "x'; DROP TABLE minute_blocks; --"]
Key = tuple[int, str, int]  # width, server, period


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "history.sqlite3")
    yield opened
    opened.close()


def history_blocks(width: int, rows: list[tuple[str, int, int, BlockCells]]) -> HistoryBlocks:
    """``HistoryBlocks`` of ``(server, period, part, cells)`` rows."""
    buckets = BUCKETS_PER_PERIOD[width]
    cells = [row[3] for row in rows] or [empty_cells(buckets)]
    fields = [np.stack(column)[:len(rows)] for column in zip(*cells)]
    return HistoryBlocks(width, [row[0] for row in rows], np.array([row[1] for row in rows], dtype=np.int64),
                         np.array([row[2] for row in rows], dtype=np.int64), *fields)


def steady(width: int, seed: int = 0) -> BlockCells:
    """A full period at one sample a second."""
    buckets = BUCKETS_PER_PERIOD[width]
    return walk_block(np.random.default_rng(seed), buckets, width, 1000)


class Model:
    """What the store should hold: per block, its parts (a base write drops the deltas)."""

    def __init__(self) -> None:
        self.blocks: dict[Key, dict[int, BlockCells]] = {}

    def write(self, blocks: HistoryBlocks) -> None:
        buckets = BUCKETS_PER_PERIOD[blocks.width]
        for row, name in enumerate(blocks.names):
            key = (blocks.width, name, int(blocks.periods[row]))
            cells = decode(encode(BlockCells._make(field[row] for field in blocks[4:])), buckets)
            part = int(blocks.parts[row])
            if part == 0:
                self.blocks[key] = {0: cells}
            else:
                self.blocks.setdefault(key, {})[part] = cells

    def read(self, server: str, width: int, first_bucket: int, count: int) -> BlockCells:
        buckets = BUCKETS_PER_PERIOD[width]
        out = empty_cells(count)
        for index in range(count):
            period, offset = divmod(first_bucket + index, buckets)
            parts = self.blocks.get((width, server, period), {})
            merged = reduce(merge, [parts[part] for part in sorted(parts)], empty_cells(buckets))
            for target, source in zip(out, merged):
                target[index] = source[offset]
        return out

    def servers(self) -> set[str]:
        return {server for _, server, _ in self.blocks}


def assert_reads_match(store: SqliteStore, model: Model, server: str, width: int, first_bucket: int, count: int) -> None:
    got = store.read_cells(server, width, first_bucket, count)
    assert (got.first_bucket, got.width) == (first_bucket, width)
    assert_same(BlockCells._make(got[2:]), model.read(server, width, first_bucket, count))


def seeded_block(width: int) -> st.SearchStrategy[BlockCells]:
    """Cells of one block, cheap to draw: a random walk of one sample a second (a seed), some buckets empty."""
    def make(seed: int, empty: list[bool]) -> BlockCells:
        cells = steady(width, seed)
        return cells._replace(samples=np.where(empty, 0, cells.samples).astype(np.uint32))
    buckets = BUCKETS_PER_PERIOD[width]
    return st.builds(make, st.integers(0, 2**16), st.one_of(st.just([False] * buckets),
                                                             st.lists(st.booleans(), min_size=buckets, max_size=buckets)))


@st.composite
def writes(draw: st.DrawFn) -> list[HistoryBlocks]:
    """A few ``write_blocks`` calls: bases and deltas of a few servers and periods, in any order."""
    calls = []
    for _ in range(draw(st.integers(1, 6))):
        width = draw(st.sampled_from([MINUTE_WIDTH, HOUR_WIDTH]))
        rows = draw(st.lists(st.tuples(st.sampled_from(SERVERS), st.integers(1000, 1003),
                                       st.sampled_from([0, 0, 1, 2, 7]), seeded_block(width)),
                             min_size=1, max_size=5))
        calls.append(history_blocks(width, rows))
    return calls


reads = st.lists(st.tuples(st.sampled_from(SERVERS), st.sampled_from([MINUTE_WIDTH, HOUR_WIDTH]),
                           st.integers(990, 1005), st.integers(0, 59), st.integers(0, 200)), min_size=1, max_size=6)


@given(writes(), reads)
@settings(max_examples=30)
def test_reads_merge_what_was_written_as_a_naive_model_does(calls: list[HistoryBlocks], wanted: list) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(Path(directory) / "history.sqlite3")
        try:
            model = Model()
            for call in calls:
                store.write_blocks(call)
                model.write(call)
            for server, width, period, offset, count in wanted:
                assert_reads_match(store, model, server, width, period * BUCKETS_PER_PERIOD[width] + offset, count)
            assert {server for server in SERVERS if store.has_server(server)} == model.servers()
            # a replay writes the same keys again: nothing counts twice
            for call in calls:
                store.write_blocks(call)
            for server, width, period, offset, count in wanted:
                assert_reads_match(store, model, server, width, period * BUCKETS_PER_PERIOD[width] + offset, count)
        finally:
            store.close()


def test_a_base_replaces_the_block_and_its_deltas(store: SqliteStore) -> None:
    base, late = steady(MINUTE_WIDTH, 1), steady(MINUTE_WIDTH, 2)
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("a", 500, 0, base), ("a", 500, 41, late)]))
    both = store.read_cells("a", MINUTE_WIDTH, 500 * 60, 60)
    assert int(both.samples.sum()) == 2 * 3600
    rewritten = steady(MINUTE_WIDTH, 3)
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("a", 500, 0, rewritten)]))
    assert_same(BlockCells._make(store.read_cells("a", MINUTE_WIDTH, 500 * 60, 60)[2:]), rewritten)


def test_within_one_write_the_order_of_blocks_counts(store: SqliteStore) -> None:
    first, second, late = steady(HOUR_WIDTH, 1), steady(HOUR_WIDTH, 2), steady(HOUR_WIDTH, 3)
    # a delta before a base of its block is gone with it; one after it stays; a key written twice: the last
    store.write_blocks(history_blocks(HOUR_WIDTH, [("a", 9, 5, late), ("a", 9, 0, first), ("a", 9, 0, second),
                                                   ("a", 9, 6, late), ("a", 9, 6, first)]))
    expected = merge(decode(encode(second), 24), decode(encode(first), 24))
    assert_same(BlockCells._make(store.read_cells("a", HOUR_WIDTH, 9 * 24, 24)[2:]), expected)


def test_ranges_read_zeros_where_nothing_is_stored_and_cut_periods_anywhere(store: SqliteStore) -> None:
    cells = steady(MINUTE_WIDTH)
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("a", 100, 0, cells), ("a", 102, 0, cells)]))
    got = store.read_cells("a", MINUTE_WIDTH, 100 * 60 + 30, 150)  # half of 100, all of 101, the start of 102
    np.testing.assert_array_equal(got.samples[:30], cells.samples[30:])
    assert not got.samples[30:90].any()
    np.testing.assert_array_equal(got.cpu_max[90:], cells.cpu_max[:60])
    assert store.read_cells("nobody", MINUTE_WIDTH, 6000, 60).samples.sum() == 0
    empty = store.read_cells("a", MINUTE_WIDTH, 6000, 0)
    assert empty.samples.shape == (0,) and empty.cpu_sum.dtype == np.float64


def test_bad_arguments_are_refused_before_anything_is_written(store: SqliteStore) -> None:
    with pytest.raises(ValueError):
        store.read_cells("a", 1, 0, 60)
    with pytest.raises(ValueError):
        store.read_cells("a", MINUTE_WIDTH, 0, 10**9)
    wrong_shape = history_blocks(HOUR_WIDTH, [("a", 1, 0, steady(HOUR_WIDTH))])._replace(width=MINUTE_WIDTH)
    with pytest.raises(ValueError):
        store.write_blocks(wrong_shape)
    with pytest.raises(ValueError):
        store.write_blocks(history_blocks(MINUTE_WIDTH, [("a", 1, 0, steady(MINUTE_WIDTH))])._replace(width=7))
    store.write_blocks(history_blocks(MINUTE_WIDTH, []))  # nothing to write
    assert not store.has_server("a")


def test_a_damaged_stored_block_is_named(store: SqliteStore) -> None:
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("a", 100, 0, steady(MINUTE_WIDTH)),
                                                     ("a", 101, 0, steady(MINUTE_WIDTH))]))
    # damage one block behind the store's back, through its own connection
    store._connection.execute("UPDATE minute_blocks SET cells = ? WHERE period = 101", (b"not a block",))
    with pytest.raises(CorruptBlock, match="'a', period 101 part 0"):
        store.read_cells("a", MINUTE_WIDTH, 100 * 60, 120)
    assert store.read_cells("a", MINUTE_WIDTH, 100 * 60, 60).samples.sum() == 3600


# ---------------------------------------------------------------- retention


def test_purge_deletes_the_oldest_blocks_in_limited_steps(store: SqliteStore) -> None:
    rows = [(server, period, 0, steady(MINUTE_WIDTH)) for period in range(10, 20) for server in ("a", "b", "c")]
    rows.append(("b", 12, 9, steady(MINUTE_WIDTH)))  # a delta part is a block part too
    store.write_blocks(history_blocks(MINUTE_WIDTH, rows))
    store.write_blocks(history_blocks(HOUR_WIDTH, [("a", 1, 0, steady(HOUR_WIDTH))]))
    assert store.kept_from(MINUTE_WIDTH) == 10
    steps = []
    while True:
        steps.append(store.purge(MINUTE_WIDTH, 15, limit=4))
        if steps[-1] < 4:
            break
        assert store.kept_from(MINUTE_WIDTH) is not None and store.kept_from(MINUTE_WIDTH) >= 10
    assert steps == [4, 4, 4, 4, 0] and sum(steps) == 16
    assert store.kept_from(MINUTE_WIDTH) == 15
    assert store.read_cells("b", MINUTE_WIDTH, 12 * 60, 3 * 60).samples.sum() == 0
    assert store.read_cells("b", MINUTE_WIDTH, 15 * 60, 60).samples.sum() == 3600
    assert store.kept_from(HOUR_WIDTH) == 1  # the other width is untouched
    assert store.purge(MINUTE_WIDTH, 15, limit=4) == 0


def test_servers_without_any_history_left_are_forgotten(store: SqliteStore) -> None:
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("gone", 10, 0, steady(MINUTE_WIDTH)),
                                                     ("both", 10, 0, steady(MINUTE_WIDTH)),
                                                     ("stays", 30, 0, steady(MINUTE_WIDTH))]))
    store.write_blocks(history_blocks(HOUR_WIDTH, [("both", 5, 0, steady(HOUR_WIDTH))]))
    assert store.purge(MINUTE_WIDTH, 20) == 2
    assert not store.has_server("gone")
    assert store.has_server("both") and store.has_server("stays")  # "both" still has an hour block
    assert store.purge(HOUR_WIDTH, 6) == 1
    assert not store.has_server("both") and store.has_server("stays")
    assert store.kept_from(HOUR_WIDTH) is None
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("gone", 40, 0, steady(MINUTE_WIDTH))]))
    assert store.has_server("gone")


def test_under_retention_freed_pages_are_reused_and_compact_shrinks_the_file(store: SqliteStore) -> None:
    servers = [f"srv-{index:04d}" for index in range(300)]

    def hour(period: int) -> None:
        store.write_blocks(history_blocks(MINUTE_WIDTH, [(name, period, 0, steady(MINUTE_WIDTH, period))
                                                         for name in servers]))

    for period in range(8):
        hour(period)
    store.checkpoint()
    full = store.size_bytes()
    for period in range(8, 24):  # keep 8 hours: purge one, write one
        while store.purge(MINUTE_WIDTH, period - 7, limit=100) == 100:
            pass
        hour(period)
        store.checkpoint()
        assert store.size_bytes() <= full * 1.1
    while store.purge(MINUTE_WIDTH, 20, limit=1000) == 1000:
        pass
    store.checkpoint()
    assert store.free_pages() > 0
    before = store.size_bytes()
    released = 0
    while (step := store.compact(max_pages=64)) > 0:
        assert step <= 64
        released += step
    store.checkpoint()
    assert store.free_pages() == 0 and released > 0
    assert store.size_bytes() < before * 0.7


# ---------------------------------------------------------------- the file


def test_a_new_file_records_its_schema_version_and_creation(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.sqlite3", clock=FakeClock(1_800_000_123.75))
    store.close()
    with sqlite3.connect(tmp_path / "h.sqlite3") as raw:
        meta = dict(raw.execute("SELECT key, value FROM meta"))
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert meta == {"schema_version": SCHEMA_VERSION, "created_at": 1_800_000_123}
    reopened = SqliteStore(tmp_path / "h.sqlite3", clock=FakeClock(0.0))
    assert reopened.schema_version == SCHEMA_VERSION
    reopened.close()
    with sqlite3.connect(tmp_path / "h.sqlite3") as raw:
        assert dict(raw.execute("SELECT key, value FROM meta"))["created_at"] == 1_800_000_123


def test_a_file_of_a_newer_schema_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = SqliteStore(path)
    store.write_blocks(history_blocks(MINUTE_WIDTH, [("a", 1, 0, steady(MINUTE_WIDTH))]))
    store.close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreVersionError, match=f"schema version {SCHEMA_VERSION + 1}") as refused:
        SqliteStore(path)
    assert isinstance(refused.value, ServerTrackError)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"servertrack was here\n" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SqliteStore(path)


def test_what_was_written_outlives_the_object(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = SqliteStore(path)
    cells = steady(HOUR_WIDTH)
    store.write_blocks(history_blocks(HOUR_WIDTH, [("a", 20_000, 0, cells)]))
    store.save_nodes([("n1", b"\x00record")])
    store.write_snapshots([SnapshotRecord("n1", 5, b"sections")])
    assert store.size_bytes() > 0
    store.close()
    again = SqliteStore(path)
    try:
        assert_same(BlockCells._make(again.read_cells("a", HOUR_WIDTH, 20_000 * 24, 24)[2:]), cells)
        assert again.load_nodes() == [("n1", b"\x00record")]
        assert again.read_snapshots("n1", 0, 10, 10) == [(5, b"sections")]
    finally:
        again.close()


def test_size_counts_the_write_ahead_log(store: SqliteStore) -> None:
    store.write_blocks(history_blocks(MINUTE_WIDTH, [(f"s{index}", 1, 0, steady(MINUTE_WIDTH)) for index in range(200)]))
    wal = store.path.with_name(store.path.name + "-wal")
    assert wal.stat().st_size > 0
    assert store.size_bytes() == store.path.stat().st_size + wal.stat().st_size
    store.checkpoint()
    assert wal.stat().st_size == 0 and store.size_bytes() == store.path.stat().st_size


# ---------------------------------------------------------------- failures and recovery


def one_hour(server: str = "a", period: int = 7) -> HistoryBlocks:
    return history_blocks(MINUTE_WIDTH, [(server, period, 0, steady(MINUTE_WIDTH, period))])


def test_a_full_database_fails_whole_writes_and_recovers_once_there_is_room(store: SqliteStore) -> None:
    store.write_blocks(one_hour("a", 1))
    # the fault is injected on the store's own connection: SQLite's page limit makes the file full for real
    connection = store._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    big = history_blocks(MINUTE_WIDTH, [(f"s{index:03d}", 2, 0, steady(MINUTE_WIDTH, index)) for index in range(300)])
    for attempt in (lambda: store.write_blocks(big),
                    lambda: store.save_nodes([(f"n{index}", bytes(3000)) for index in range(20)]),
                    lambda: store.write_snapshots([SnapshotRecord("n", ts, bytes(3000)) for ts in range(20)])):
        with pytest.raises(sqlite3.OperationalError, match="full"):
            attempt()
    assert not store.has_server("s000") and store.load_nodes() == [] and store.read_snapshots("n", 0, 99, 99) == []
    assert store.read_cells("a", MINUTE_WIDTH, 60, 60).samples.sum() == 3600  # what was there still is
    connection.execute("PRAGMA max_page_count = 1073741823")
    store.write_blocks(big)
    store.save_nodes([("n1", b"x")])
    assert store.has_server("s299") and store.load_nodes() == [("n1", b"x")]


def test_a_read_only_database_fails_writes_and_recovers_when_writable_again(store: SqliteStore) -> None:
    # As root, chmod does not stop writes: the same refusal comes from SQLite's query_only at the boundary.
    connection = store._connection
    connection.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.write_blocks(one_hour())
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.purge(MINUTE_WIDTH, 100)
    assert not store.has_server("a")
    connection.execute("PRAGMA query_only = OFF")
    store.write_blocks(one_hour())
    assert store.has_server("a")


def test_readers_cannot_write(store: SqliteStore) -> None:
    store.write_blocks(one_hour())
    reader = store.reader()
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._connection.execute("DELETE FROM minute_blocks")
        assert reader.has_server("a")
    finally:
        reader.close()


def test_a_lock_held_elsewhere_fails_writes_without_blocking_readers_and_then_clears(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = SqliteStore(path, busy_timeout=0.05)
    reader = store.reader()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        store.write_blocks(one_hour("a", 1))
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.write_blocks(one_hour("b", 2))
        assert reader.read_cells("a", MINUTE_WIDTH, 60, 60).samples.sum() == 3600
        other.execute("ROLLBACK")
        store.write_blocks(one_hour("b", 2))
        assert reader.has_server("b")
    finally:
        other.close()
        reader.close()
        store.close()


def test_readers_see_only_committed_data_and_never_block_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = SqliteStore(path, busy_timeout=0.05)
    reader = store.reader()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO minute_blocks(server, period, part, cells) VALUES ('a', 3, 0, ?)",
                      (encode(steady(MINUTE_WIDTH)),))
        assert reader.read_cells("a", MINUTE_WIDTH, 180, 60).samples.sum() == 0  # not committed yet
        other.execute("COMMIT")
        assert reader.read_cells("a", MINUTE_WIDTH, 180, 60).samples.sum() == 3600
        # a reader in the middle of a read transaction: the writer still commits at once
        reader._connection.execute("BEGIN")
        assert reader.read_cells("a", MINUTE_WIDTH, 240, 60).samples.sum() == 0
        store.write_blocks(one_hour("a", 4))
        assert reader.read_cells("a", MINUTE_WIDTH, 240, 60).samples.sum() == 0  # its snapshot
        reader._connection.execute("COMMIT")
        assert reader.read_cells("a", MINUTE_WIDTH, 240, 60).samples.sum() == 3600
    finally:
        other.close()
        reader.close()
        store.close()


def test_a_reader_made_on_one_thread_reads_on_another(store: SqliteStore) -> None:
    store.write_blocks(one_hour())
    reader = store.reader()
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(int(reader.read_cells("a", MINUTE_WIDTH, 7 * 60, 60).samples.sum())))
    worker.start()
    worker.join(10)
    reader.close()
    assert seen == [3600]


# ---------------------------------------------------------------- nodes and snapshots


@given(st.lists(st.tuples(st.sampled_from(["n1", "n2", "N1", "node.example", ""]),
                          st.one_of(st.none(), st.binary(max_size=300))), max_size=20))
@settings(max_examples=40)
def test_node_records_are_saved_in_order_and_none_deletes(records: list[tuple[str, bytes | None]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(Path(directory) / "h.sqlite3")
        try:
            expected: dict[str, bytes] = {}
            half = len(records) // 2
            for batch in (records[:half], records[half:]):
                store.save_nodes(batch)
                for name, record in batch:
                    if record is None:
                        expected.pop(name, None)
                    else:
                        expected[name] = record
                assert store.load_nodes() == sorted(expected.items())
        finally:
            store.close()


def test_snapshots_are_read_by_node_and_time_and_purged_oldest_first(store: SqliteStore) -> None:
    store.write_snapshots([SnapshotRecord(node, ts, f"{node}@{ts}".encode()) for node in ("n1", "n2")
                           for ts in range(100, 160, 10)])
    store.write_snapshots([SnapshotRecord("n1", 120, b"again")])  # the same second: replaced
    assert store.read_snapshots("n1", 110, 130, 10) == [(110, b"n1@110"), (120, b"again"), (130, b"n1@130")]
    assert store.read_snapshots("n1", 0, 1000, 2) == [(100, b"n1@100"), (110, b"n1@110")]
    assert store.read_snapshots("n1", 131, 139, 10) == [] and store.read_snapshots("n1", 0, 1000, 0) == []
    assert store.read_snapshots("nobody", 0, 1000, 10) == []
    assert store.purge_snapshots(125, limit=3) == 3
    assert store.purge_snapshots(125, limit=3) == 3
    assert store.purge_snapshots(125, limit=3) == 0
    assert [ts for ts, _ in store.read_snapshots("n2", 0, 1000, 10)] == [130, 140, 150]
    store.write_snapshots([])
    reader = store.reader()
    try:
        assert reader.read_snapshots("n1", 0, 1000, 10)[0] == (130, b"n1@130")
    finally:
        reader.close()
