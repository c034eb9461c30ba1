"""The fleet's shared state, without Redis: directories, live cells, the pending share and how parts merge."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.aggregator import Aggregator
from servertrack.common.fleet import FleetTable
from servertrack.store.fleet_cells import stored_period_cells
from servertrack.store.fleet_directory import (
    LIVE_CELL,
    check_collector_id,
    decode_directory,
    encode_directory,
    live_field,
    part_of_field,
)
from servertrack.store.history_codec import BlockCells, encode_many
from servertrack.store.live_share import LiveShare, live_cells_of

START = 1_700_000_000.0  # 22:13:20 UTC: mid-hour


def table(names: list[str]) -> FleetTable:
    count = len(names)
    return FleetTable(names, np.arange(count) % 2 == 0, (np.arange(count) % 4).astype(np.int8),
                      START - np.arange(count, dtype=np.float64), np.linspace(0, 100, count), np.full(count, np.nan),
                      np.arange(count) % 3 != 0)


def test_a_directory_decodes_to_what_was_encoded() -> None:
    names = [f"web-{index:03d}" for index in range(50)]
    directory = decode_directory(encode_directory(table(names), "c-1", START))
    collector, ts, decoded = directory.collector, directory.ts, directory.table
    assert (collector, ts, decoded.names) == ("c-1", START, names)
    assert directory.ips == [[] for _ in names] and not directory.record_at.any()
    expected = table(names)
    for got, want in zip(decoded[1:], expected[1:]):
        np.testing.assert_array_equal(got, want)
    assert decode_directory(encode_directory(table([]), "a", START)).table.names == []


@pytest.mark.parametrize("blob", [
    b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": 2}),
    msgpack.packb({"v": 1, "collector": "a", "ts": 1.0, "names": "x"}),  # no columns
    msgpack.packb({"v": 1, "collector": "A/B", "ts": 1.0, "names": "", "is_node": b"", "states": b"",
                   "last_seen": b"", "cpu": b"", "ram": b""}),  # not a collector id
    msgpack.packb({"v": 1, "collector": "a", "ts": 1.0, "names": "b\na", "is_node": b"\0\0", "states": b"\0\0",
                   "last_seen": b"\0" * 16, "cpu": b"\0" * 16, "ram": b"\0" * 16}),  # out of order
    msgpack.packb({"v": 1, "collector": "a", "ts": 1.0, "names": "a", "is_node": b"\0", "states": b"\x09",
                   "last_seen": b"\0" * 8, "cpu": b"\0" * 8, "ram": b"\0" * 8}),  # no such state
    msgpack.packb({"v": 1, "collector": "a", "ts": 1.0, "names": "a", "is_node": b"\0", "states": b"\0",
                   "last_seen": b"\0" * 7, "cpu": b"\0" * 8, "ram": b"\0" * 8}),  # short column
])
def test_what_is_not_a_directory_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError):
        decode_directory(blob)


@pytest.mark.parametrize("text", ["", "-a", "A", "a/b", "a" * 33, "a b", "a\n"])
def test_a_collector_id_is_short_lower_case_and_has_no_slash(text: str) -> None:
    with pytest.raises(ValueError):
        check_collector_id(text)
    assert check_collector_id("a" * 32) == "a" * 32 and check_collector_id("c-0f3a") == "c-0f3a"


def test_a_field_names_its_collector_and_part() -> None:
    assert part_of_field("a/0") == ("a", "0") and part_of_field(live_field("c-1", 7)) == ("c-1", "m7")
    assert part_of_field("12") == ("", "12")  # written before fleets: a single collector's


def _block(samples: list[int], cpu: float) -> BlockCells:
    count = np.array(samples, dtype=np.uint32)
    filled = count > 0
    fixed = np.where(filled, int(cpu * 100_000), 0).astype(np.uint32)
    return BlockCells(count, count * cpu, count * cpu * 0.5, fixed, fixed, (fixed // 2).astype(np.uint32),
                      (fixed // 2).astype(np.uint32))


def test_parts_of_every_collector_merge_and_one_can_be_left_out() -> None:
    period = int(START // 3600)
    base_a = _block([2] * 30 + [0] * 30, 10.0)
    base_b = _block([0] * 30 + [1] * 30, 50.0)
    parts = [(period, "a/0", encode_many(BlockCells(*(field[None, :] for field in base_a)))[0]),
             (period, "b/0", encode_many(BlockCells(*(field[None, :] for field in base_b)))[0]),
             (period, "b/m30", LIVE_CELL.pack(2, 60.0, 30.0, 1_000_000, 5_000_000, 500_000, 2_500_000)),
             (period, "b/m99", LIVE_CELL.pack(9, 1.0, 1.0, 0, 0, 0, 0)),  # no such minute: ignored
             (period, "b/mx", b"junk")]
    merged = stored_period_cells(parts, 60, period, 1, "test", None)
    assert merged.samples[0].tolist() == [2] * 30 + [3] + [1] * 29
    assert float(merged.cpu_sum[0, 30]) == pytest.approx(50.0 + 60.0)
    assert int(merged.cpu_min[0, 30]) == 1_000_000 and int(merged.cpu_max[0, 30]) == 5_000_000
    without_b = stored_period_cells(parts, 60, period, 1, "test", "b")
    assert without_b.samples[0].tolist() == [2] * 30 + [0] * 30


def test_the_shared_cells_are_what_the_rings_hold_of_open_periods() -> None:
    now = [START]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    aggregator.apply(["a", "b"], [START, START + 0.5], [10.0, 20.0], [30.0, 40.0], chunk_id=1)
    aggregator.apply(["a"], [START + 45], [50.0], [60.0], chunk_id=2)  # the next minute
    shared = aggregator.take_shared()
    assert sorted(zip(shared.minutes.names, shared.minutes.buckets.tolist())) == [
        ("a", int(START // 60)), ("a", int(START // 60) + 1), ("b", int(START // 60))]
    assert sorted(zip(shared.seconds.names, shared.seconds.buckets.tolist())) == [
        ("a", int(START)), ("a", int(START) + 45), ("b", int(START))]
    now[0] = START + 45
    windows = aggregator.windows("a")
    assert windows is not None
    at = [(name, bucket) for name, bucket in zip(shared.minutes.names, shared.minutes.buckets.tolist())].index(
        ("a", int(START // 60)))  # its first minute, the window's last but one
    assert int(shared.minutes.cells[0][at]) == int(windows.minutes.samples[-2])
    assert len(aggregator.take_shared().minutes.names) == 0  # taken: nothing new since
    # a late sample for a closed hour is the store's delta, not a live cell
    aggregator.apply(["a"], [START + 3600], [1.0], [1.0], chunk_id=3)
    aggregator.take_shared()
    aggregator.apply(["a"], [START], [1.0], [1.0], chunk_id=4)
    assert len(aggregator.take_shared().minutes.names) == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 7200), st.floats(0, 100)),
                min_size=1, max_size=40))
def test_a_buckets_shared_cell_is_its_ring_cell(samples: list[tuple[str, int, float]]) -> None:
    """Whatever the order, a shared open minute holds exactly what the minute window shows of it."""
    now = [START + 7200]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    for chunk, (name, offset, cpu) in enumerate(samples, 1):
        aggregator.apply([name], [START + offset], [cpu], [cpu], chunk_id=chunk)
    shared = aggregator.take_shared().minutes
    for name, bucket, count in zip(shared.names, shared.buckets.tolist(), shared.cells[0].tolist()):
        windows = aggregator.windows(name)
        assert windows is not None
        minutes = windows.minutes
        index = bucket - minutes.first_bucket
        if 0 <= index < len(minutes.samples):
            assert count == int(minutes.samples[index])


def test_a_closed_period_leaves_the_share_before_its_base_is_written() -> None:
    now = [START]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    share = LiveShare()
    aggregator.apply(["a"], [START], [10.0], [10.0], chunk_id=1)
    share.add(aggregator.take_shared())
    assert len(share) == 1  # queued as it came: the worker turns it into cells
    aggregator.apply(["a"], [START + 3600], [10.0], [10.0], chunk_id=2)  # the hour closes
    closed = [blocks for blocks in aggregator.take_closed() if blocks.width == 60]
    share.closed(closed[0].names, 60, closed[0].periods)
    entries = share.take()
    assert len(entries.minutes.names) == 0 and len(share) == 0
    assert entries.seconds.names.tolist() == ["a"] and entries.provisional_hours.names.tolist() == ["a"]
    assert len(entries.hours.names) == 0  # the current hour's cell is held back (provisional once a minute)
    cells = live_cells_of(aggregator.take_shared().minutes, 60)
    assert len(cells.names) == 1 and LIVE_CELL.unpack(cells.records.tobytes())[0] == 1


def test_the_mirror_finds_another_collectors_node_by_name_or_its_one_address() -> None:
    from servertrack.common.node_records import encode_node
    from servertrack.common.nodes import Node
    from servertrack.store.fleet_mirror import FleetMirror

    names = ["db-1", "web-1", "web-2"]
    listed = FleetTable(names, np.array([True, True, True]), np.zeros(3, np.int8), np.full(3, START),
                        np.zeros(3), np.zeros(3), np.ones(3, np.bool_))
    ips = [["10.0.0.1"], ["10.0.0.2", "fd00::2"], ["10.0.0.2"]]
    mirror = FleetMirror()
    mirror.take([("b", encode_directory(listed, "b", START, ips, np.array([1.0, 2.0, 3.0]))),
                 ("c", b"not a directory")])
    assert mirror.refused == 1 and mirror.records_wanted() == names
    records = [(name, encode_node(Node(name=name, ips=addresses, info={}, registered=1.0, last_seen=START - 60)))
               for name, addresses in zip(names, ips)]
    mirror.take_records(records)
    assert mirror.records_wanted() == []  # read once until a record changes
    found = mirror.node("db-1")
    assert found is not None and found.last_seen == START  # the directory's last seen is newer
    assert mirror.node("10.0.0.1") is found and mirror.node("fd00::2") is mirror.node("web-1")
    assert mirror.node("10.0.0.2") is None  # two nodes own it: not one of them
    assert [node.name for node in mirror.nodes()] == names
    mirror.take([("b", encode_directory(listed, "b", START + 1, ips, np.array([1.0, 9.0, 3.0])))])
    assert mirror.records_wanted() == ["web-1"]
    mirror.take([])
    mirror.take_records([])
    assert mirror.nodes() == [] and mirror.node("db-1") is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 59), st.integers(0, 3),
                          st.integers(0, 10_000_000), st.integers(0, 10_000_000)), max_size=30))
def test_live_cells_of_several_collectors_merge_as_blocks_merge(
        cells: list[tuple[str, int, int, int, int]]) -> None:
    """A bucket's live cells from several collectors merge like parts (counts add, min of mins, max of maxes),
    checked against a naive per-bucket model."""
    period = int(START // 3600)
    parts, model = [], {}
    seen = set()
    for collector, index, samples, low, high in cells:
        if (collector, index) in seen:
            continue  # one live cell per collector and bucket, as in a hash
        seen.add((collector, index))
        low, high = min(low, high), max(low, high)
        parts.append((period, live_field(collector, index),
                      LIVE_CELL.pack(samples, samples * 1.5, samples * 2.5, low, high, low, high)))
        if samples:
            count, cpu, least, most = model.get(index, (0, 0.0, None, 0))
            model[index] = (count + samples, cpu + samples * 1.5, low if least is None else min(least, low),
                            max(most, high))
    merged = stored_period_cells(parts, 60, period, 1, "test", None)
    for index in range(60):
        count, cpu, least, most = model.get(index, (0, 0.0, 0, 0))
        assert int(merged.samples[0, index]) == count
        assert float(merged.cpu_sum[0, index]) == pytest.approx(cpu)
        assert int(merged.cpu_min[0, index]) == (least or 0) and int(merged.cpu_max[0, index]) == most


def test_a_share_holds_one_cell_per_bucket_the_newest() -> None:
    """Applies touching one bucket twice are taken twice (the loop does not sort them out); the share keeps
    one cell per (server, bucket): across takes, the newest."""
    now = [START]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    share = LiveShare()
    aggregator.apply(["a", "b"], [START, START], [10.0, 20.0], [10.0, 20.0], chunk_id=1)
    aggregator.apply(["a"], [START + 1], [30.0], [30.0], chunk_id=2)  # the same minute, another second
    taken = aggregator.take_shared()
    assert taken.minutes.names.tolist().count("a") == 2
    share.add(taken)
    aggregator.apply(["a"], [START + 2], [50.0], [50.0], chunk_id=3)
    now[0] = START - START % 3600 + 3600  # the hour is over: the next take has its cells
    share.add(aggregator.take_shared())  # the worker was late: two takes wait
    entries = share.take()
    minutes = dict(zip(entries.minutes.names.tolist(), entries.minutes.records["samples"].tolist()))
    assert minutes == {"a": 3, "b": 1} and len(entries.minutes.names) == 2
    assert sorted(zip(entries.seconds.names.tolist(), entries.seconds.seconds.tolist())) == [
        ("a", int(START)), ("a", int(START) + 1), ("a", int(START) + 2), ("b", int(START))]
    hours = dict(zip(entries.hours.names.tolist(), entries.hours.records["cpu_sum"].tolist()))
    assert hours == pytest.approx({"a": 90.0, "b": 20.0})  # the hour's cells once it was over
    provisional = dict(zip(entries.provisional_hours.names.tolist(),
                           entries.provisional_hours.records["cpu_sum"].tolist()))
    assert provisional == pytest.approx({"a": 40.0, "b": 20.0})  # the first take of the minute, as it was then


def test_takes_waiting_for_a_store_that_is_down_stay_bounded_and_newest() -> None:
    """While shares cannot be written, the waiting takes are folded: what the share holds stays one entry
    per (server, bucket), the newest, and a period closed meanwhile is still left out."""
    from servertrack.store import live_share

    now = [START]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    share = LiveShare()
    for second in range(3 * live_share.MAX_WAITING_TAKES):  # one take a second, none written
        now[0] = START + second
        aggregator.apply(["a", "b"], [now[0], now[0]], [10.0, 20.0], [30.0, 40.0], chunk_id=second + 1)
        share.add(aggregator.take_shared())
        assert len(share) <= live_share.MAX_WAITING_TAKES + 1
    entries = share.take()
    takes = 3 * live_share.MAX_WAITING_TAKES  # 24 seconds from 22:13:20: one minute
    minute = int(START // 60)
    assert sorted(zip(entries.minutes.names.tolist(), entries.minutes.periods.tolist(),
                      entries.minutes.indices.tolist(), entries.minutes.records["samples"].tolist())) == [
        ("a", minute // 60, minute % 60, takes), ("b", minute // 60, minute % 60, takes)]  # the newest: all
    assert len(entries.hours.names) == 0  # the current hour: held back, shared once a minute as provisional
    provisional = dict(zip(entries.provisional_hours.names.tolist(),
                           entries.provisional_hours.records["cpu_sum"].tolist()))
    assert provisional == pytest.approx({"a": 10.0, "b": 20.0})  # the minute's first take
    assert len(entries.seconds.names) == 2 * 3 * live_share.MAX_WAITING_TAKES  # every second (under 64 each)


def test_name_ids_and_sliced_maps_span_their_slices() -> None:
    """Passes of ``GIL_SLICE`` items give what one pass gives: an id per name equal for equal names
    (its first position) across slices, and a map of several columns item by item."""
    from servertrack.store import live_share

    count = 2 * live_share.GIL_SLICE + 5
    names = np.array([f"srv-{index % 1000}" for index in range(count)], dtype=object)
    ids = live_share.name_ids(names)
    assert ids.tolist() == [index % 1000 for index in range(count)]
    mapped = live_share.sliced_map(lambda a, b: a * 2 + b, (list(range(count)), [1] * count), np.int64)
    assert mapped.tolist() == [2 * index + 1 for index in range(count)]


def test_a_restarted_collector_writes_the_hour_its_rows_recovered_once_it_is_over() -> None:
    """Rows applied to before sharing starts (a restart's recovery) are held like touched ones: the share
    after their hour writes its cell, with every sample the rings hold."""
    now = [START]
    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.apply(["a", "b"], [START, START], [10.0, 20.0], [10.0, 20.0], chunk_id=1)  # recovered
    aggregator.start_sharing()
    share = LiveShare()
    share.add(aggregator.take_shared())
    assert len(share.take().hours.names) == 0  # the hour is not over
    now[0] = START - START % 3600 + 3600
    share.add(aggregator.take_shared())
    entries = share.take()
    hours = dict(zip(entries.hours.names.tolist(), entries.hours.records["cpu_sum"].tolist()))
    assert hours == pytest.approx({"a": 10.0, "b": 20.0})


def test_a_directory_after_one_of_the_same_servers_is_decoded_alike_and_a_changed_one_checked_again() -> None:
    """The names and addresses of a collector's last directory are reused while their text is the same:
    the next directory decodes to the same entries with its own columns; one whose names changed is split
    and checked again (out of order: refused), and does not spoil the next good one."""
    names = [f"web-{index:03d}" for index in range(20)]
    ips = [[f"10.0.0.{index}"] if index % 2 else [] for index in range(20)]
    first = decode_directory(encode_directory(table(names), "memo-a", START, ips))
    later = table(names)._replace(cpu=np.full(20, 42.0))
    second = decode_directory(encode_directory(later, "memo-a", START + 1, ips))
    assert second.table.names == first.table.names == names and second.ips == ips and second.ts == START + 1
    assert second.table.cpu.tolist() == [42.0] * 20
    moved = [[f"10.9.9.{index}"] for index in range(20)]  # new addresses, same names
    assert decode_directory(encode_directory(later, "memo-a", START + 2, moved)).ips == moved
    body = msgpack.unpackb(encode_directory(table(names), "memo-a", START + 3, ips))
    body["names"] = "\n".join(reversed(names))
    with pytest.raises(ValueError, match="not in order"):
        decode_directory(msgpack.packb(body, use_bin_type=True))
    again = decode_directory(encode_directory(table(names), "memo-a", START + 4, ips))
    assert again.table.names == names and again.ips == ips
