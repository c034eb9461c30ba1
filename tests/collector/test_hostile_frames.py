"""Regression tests of the outside attack on the ZeroMQ ingest: each one failed on the main it was found on.

Over real sockets on 127.0.0.1: a bad frame is dropped and counted under its
kind and reason, stores nothing, and a flood cannot hold the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time

import msgpack
import orjson
import pytest
import zmq

from servertrack.collector import ingest as ingest_module
from servertrack.collector.applier import BatchApplier
from servertrack.collector.ingest import LARGE_FRAME_TURN_SECONDS, MAX_BACKLOG_SECONDS, SMALL_FRAME_BYTES, WorkBudget
from servertrack.common.aggregator import Aggregator
from servertrack.common.node_messages import encode_bye, encode_hello, encode_snapshot
from servertrack.common.stats import COUNTED_KINDS
from tests.collector.test_ingest import Ingest, running_ingest, sample
from tests.conftest import FakeClock
from tests.node_fixtures import HELLO_INFO, process_entry, stats_body


def test_seq_jumps_across_the_whole_range_are_restarts_and_stats_stay_encodable(clock: FakeClock) -> None:
    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(*(sample(clock, "edge", seq=seq) for seq in (0, 2**64 - 1, 0, 2**64 - 1)))
            await ingest.received(4)
            assert ingest.inventory.lost == 0
            orjson.dumps(ingest.stats.snapshot(lost=ingest.inventory.lost, servers=0, pending=len(ingest.batch)))
            ingest.send(sample(clock, "edge", seq=5), sample(clock, "edge", seq=9))  # a real gap still counts
            await ingest.received(6)
            assert ingest.inventory.lost == 3

    asyncio.run(scenario())


def _snapshot_with_repeated_key(clock: FakeClock, junk_bytes: int) -> bytes:
    """A snapshot frame whose stats map names ``processes`` twice: first with junk, then the real
    value (msgpack allows it; the last value wins when decoded)."""
    clean = stats_body()
    entries = [("cpu", clean["cpu"]), ("processes", "j" * junk_bytes)] + list(clean.items())[1:]
    stats = b"\xde" + len(entries).to_bytes(2, "big") + b"".join(
        msgpack.packb(key) + msgpack.packb(value) for key, value in entries)
    head = {"v": 2, "kind": "snapshot", "fqdn": "node-dup", "ts": clock.now, "seq": 0}
    return b"\x86" + msgpack.packb(head)[1:] + msgpack.packb("stats") + stats


def test_a_snapshot_that_repeats_a_key_is_stored_as_validated_not_as_sent(clock: FakeClock) -> None:
    frame = _snapshot_with_repeated_key(clock, 45_000)
    assert len(frame) > 45_000

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(frame)
            await ingest.received(1)
            node = ingest.nodes.get("node-dup")
            assert node is not None and node.stats() == stats_body()
            assert node.snapshot is not None and node.snapshot.size == len(msgpack.packb(stats_body())) < 2_000
            assert ingest.nodes.budget.used == node.snapshot.size

    asyncio.run(scenario())


def test_snapshots_over_the_budget_are_dropped_by_reason_and_the_node_keeps_its_last(clock: FakeClock) -> None:
    rng = random.Random(7)

    def noise(length: int) -> str:  # incompressible printable text
        return "".join(chr(rng.randrange(33, 127)) for _ in range(length))

    top = [process_entry(k, name=noise(64), cmdline=noise(256)) for k in range(20)]
    wide = stats_body(disks=[{"device": noise(64), "mountpoint": noise(256), "fstype": noise(64), "total": 1,
                              "used": 1, "free": 0, "percent": 100.0} for _ in range(64)],
                      processes={"count": 40, "top_cpu": top, "top_memory": top})

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(encode_snapshot("node-big", clock.now, 0, stats_body()),
                        encode_snapshot("node-big", clock.now, 1, wide))
            await ingest.received(2)
            node = ingest.nodes.get("node-big")
            assert node is not None and node.stats() == stats_body()
            assert ingest.stats.dropped["snapshot"] == {"over_node_budget": 1}

    asyncio.run(scenario())


def test_frame_limits_are_per_kind_and_decoder_limits_are_too_large(clock: FakeClock) -> None:
    padded_sample = sample(clock, "node-pad", padding="p" * 4_100)
    padded_bye = msgpack.packb({"v": 2, "kind": "bye", "fqdn": "node-pad", "ts": clock.now, "seq": 0,
                                "padding": "p" * 1_100})
    many_cpus = encode_snapshot("node-pad", clock.now, 0, stats_body(cpu={**stats_body()["cpu"],
                                                                        "per_cpu": [1.0] * 1025}))
    many_ips = sample(clock, "node-pad", ip=["10.0.0.1"] * 5000)
    ints_as_ips = sample(clock, "node-pad", ip=[1, 2, 3])

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(padded_sample, padded_bye, many_cpus, many_ips, ints_as_ips)
            await ingest.received(5)
            dropped = {kind: dict(reasons) for kind, reasons in ingest.stats.dropped.items() if reasons}
            assert dropped == {"sample": {"too_large": 1, "bad_ip": 1}, "bye": {"too_large": 1},
                               "unknown": {"too_large": 2}}
            assert len(ingest.batch) == 0 and len(ingest.nodes) == 0

    asyncio.run(scenario())


def test_a_mixed_run_adds_up_per_kind(clock: FakeClock) -> None:
    """Every received message ends applied, dropped by reason, or pending, under its own kind."""
    bad_stats = copy.deepcopy(stats_body())
    bad_stats["processes"]["top_cpu"] = [process_entry(1, name="x\x1b[2J")]

    async def scenario() -> None:
        async with running_ingest(clock, max_nodes=2) as ingest:
            before = ingest.stats.snapshot(lost=0, servers=0, pending=0)
            ingest.send(
                encode_hello("node-a", clock.now, 0, ["10.0.0.1"], HELLO_INFO),
                encode_hello("node-b", clock.now, 0, ["10.0.0.2"], {**HELLO_INFO, "boot_time": 1e17}),
                encode_hello("node-c", clock.now, 0, ["10.0.0.3"], HELLO_INFO),
                encode_hello("node-d", clock.now, 0, ["10.0.0.4"], HELLO_INFO),  # the registry holds 2
                sample(clock, "node-a", seq=1), sample(clock, "node-a", seq=2, cpu=-1.0),
                sample(clock, "node-a", seq=3, ts=clock.now - 86_400 + 1),
                encode_snapshot("node-a", clock.now, 4, stats_body()),
                encode_snapshot("node-a", clock.now, 5, bad_stats),
                encode_bye("node-a", clock.now, 6), encode_bye("node-x", clock.now, 0),
                msgpack.packb({"v": 2, "kind": "reboot", "fqdn": "node-a", "ts": clock.now, "seq": 7}),
                b"\xc1 not msgpack", msgpack.packb([1, 2, 3]),
            )
            await ingest.received(14)
            aggregator = Aggregator(10, clock)
            await BatchApplier(ingest.batch, aggregator, ingest.inventory, ingest.stats, clock).apply_pending()
            after = ingest.stats.snapshot(lost=0, servers=0, pending=len(ingest.batch))
            kinds = {kind: {"received": after["kinds"][kind]["received"] - before["kinds"][kind]["received"],
                            "applied": after["kinds"][kind]["applied"] - before["kinds"][kind]["applied"],
                            "dropped": after["kinds"][kind]["dropped"]} for kind in COUNTED_KINDS}
            assert kinds == {
                "sample": {"received": 3, "applied": 1, "dropped": {"out_of_range": 1, "bad_timestamp": 1}},
                "hello": {"received": 4, "applied": 2, "dropped": {"bad_field": 1, "node_refused": 1}},
                "bye": {"received": 2, "applied": 1, "dropped": {"node_refused": 1}},
                "snapshot": {"received": 2, "applied": 1, "dropped": {"bad_field": 1}},
                "unknown": {"received": 3, "applied": 0, "dropped": {"unknown_kind": 1, "not_msgpack": 1,
                                                                     "not_a_map": 1}},
            }
            for kind, counts in after["kinds"].items():
                dropped = sum(counts["dropped"].values())
                # the probes that settled the subscription were taken out of the batch unapplied
                probes = before["kinds"][kind]["received"]
                assert counts["received"] - probes == counts["applied"] + dropped + counts["pending"], kind
            assert "node-d" not in ingest.nodes and ingest.inventory.last_seq("node-d") is None

    asyncio.run(scenario())


def test_a_refused_message_changes_no_seq_ip_or_liveness(clock: FakeClock) -> None:
    from servertrack.common.batch import PendingBatch

    async def scenario() -> None:
        async with running_ingest(clock, batch=PendingBatch(limit=1)) as ingest:
            ingest.send(sample(clock, "node-q", seq=0, ip=["10.0.0.1"]))
            await ingest.received(1)
            clock.advance(30)
            ingest.send(sample(clock, "node-q", seq=1, ip=["10.9.9.9"]))  # the batch is full: refused
            await ingest.received(2)
            assert ingest.inventory.ips_of("node-q") == ["10.0.0.1"] and ingest.inventory.last_seq("node-q") == 0
            assert ingest.stats.dropped["sample"] == {"queue_full": 1}

    asyncio.run(scenario())


def _max_snapshot(clock: FakeClock, index: int) -> bytes:
    text = "".join(chr(33 + (index * 31 + k * 17) % 94) for k in range(256))
    disks = [{"device": text[:64], "mountpoint": text, "fstype": text[:64], "total": 1, "used": 1, "free": 0,
              "percent": 1.0}] * 64
    top = [process_entry(k, name=text[:64], cmdline=text) for k in range(20)]
    stats = stats_body(disks=disks, processes={"count": 40, "top_cpu": top, "top_memory": top},
                       cpu={**stats_body()["cpu"], "per_cpu": [12.3456789] * 1024})
    return encode_snapshot(f"flood-{index % 50}", clock.now, index, stats)


class StepTimer:
    """A monotonic timer that moves ``step`` seconds each time it is read: as if every frame took
    that long to handle."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def drain_by_hand(ingest: Ingest, expected: int) -> list[int]:
    """Call the reader's drain until ``expected`` frames were handled; the frames handled per turn."""
    turns: list[int] = []
    deadline = time.monotonic() + 30
    while sum(turns) < expected:
        assert time.monotonic() < deadline, turns
        before = ingest.stats.total_received()
        empty = ingest.reader.drain(500)  # type: ignore[union-attr]
        turns.append(ingest.stats.total_received() - before)
        if empty:
            await asyncio.sleep(0.01)
    return [count for count in turns if count]


def test_a_flood_of_large_frames_is_shed_unread_once_decoding_falls_behind(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [_max_snapshot(clock, index) for index in range(300)]
    assert min(map(len, frames)) > 50_000
    backlog_bytes = 20 * min(map(len, frames))  # behind after 20 frames (the default: 16 MB)
    monkeypatch.setattr(ingest_module, "MAX_BACKLOG_BYTES", backlog_bytes)

    async def scenario() -> None:
        # an unlimited budget, and each read of the timer 10 ms later: a turn decodes one frame
        # (five reads: 50 ms), so after MAX_BACKLOG_SECONDS of a socket never empty the rest is shed
        step = StepTimer(0.01)
        async with running_ingest(clock, large_frame_share=1e6, timer=step, work_timer=step) as ingest:
            ingest.task.cancel()  # drive the drain by hand  # type: ignore[union-attr]
            await asyncio.sleep(0)
            ingest.send(*frames)
            await asyncio.sleep(0.3)  # let libzmq move them into the receive queue
            await drain_by_hand(ingest, len(frames))
            shed = ingest.stats.dropped["unknown"]
            decoded = ingest.stats.applied["snapshot"] + sum(ingest.stats.dropped["snapshot"].values())
            assert set(shed) == {"backlog"} and shed["backlog"] + decoded == len(frames)
            # behind once both MAX_BACKLOG_SECONDS (five turns of 50 ms) and the bytes have passed
            assert 0 < decoded <= max(round(MAX_BACKLOG_SECONDS / 0.05), 20) + 2, (decoded, shed)

    asyncio.run(scenario())


def test_large_frames_beyond_their_share_of_a_core_are_shed_even_when_the_reader_keeps_up(clock: FakeClock) -> None:
    frames = [_max_snapshot(clock, index) for index in range(100)]

    async def scenario() -> None:
        # a tenth of a core (0.05 s of burst); each decode is charged 10 ms of the stepping timer
        step = StepTimer(0.01)
        async with running_ingest(clock, large_frame_share=0.1, timer=step, work_timer=step) as ingest:
            ingest.task.cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0)
            for frame in frames:  # one at a time: the socket is empty after each, never behind
                before = ingest.stats.total_received()
                ingest.send(frame)
                deadline = time.monotonic() + 5
                while ingest.stats.total_received() == before:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.002)
                    ingest.reader.drain(500)  # type: ignore[union-attr]
            overload = ingest.stats.dropped["unknown"]["overload"]
            decoded = ingest.stats.applied["snapshot"] + sum(ingest.stats.dropped["snapshot"].values())
            assert overload + decoded == len(frames)
            # the burst, then about one in four: 0.1 of each cycle's 20-40 ms against 10 ms a decode
            assert 0.1 * len(frames) < decoded < 0.6 * len(frames), (decoded, overload)

    asyncio.run(scenario())


def test_the_work_budget_refills_at_its_share_and_may_go_below_zero() -> None:
    budget = WorkBudget(share=0.5, burst=0.1, now=0.0)
    assert budget.allows(0.0)
    budget.spend(0.3)  # one costly frame
    assert not budget.allows(0.1)  # -0.2 + 0.05
    assert not budget.allows(0.39)  # -0.2 + 0.195
    assert budget.allows(0.41)
    assert budget.allows(100.0)
    budget.spend(0.1)
    assert not budget.allows(100.0)  # the burst caps the refill at 0.1


def test_decoding_large_frames_yields_to_the_loop_once_a_turn_has_used_its_time(clock: FakeClock) -> None:
    frames = [_max_snapshot(clock, index) for index in range(60)]

    async def scenario() -> None:
        # each read of the timer is 1 ms later: a turn (LARGE_FRAME_TURN_SECONDS) has room for a few snapshots
        step = StepTimer(0.001)
        async with running_ingest(clock, large_frame_share=1e6, timer=step, work_timer=step) as ingest:
            ingest.task.cancel()  # type: ignore[union-attr]
            await asyncio.sleep(0)
            ingest.send(*frames)
            await asyncio.sleep(0.3)
            turns = await drain_by_hand(ingest, len(frames))
            assert ingest.stats.applied["snapshot"] == len(frames)
            # a turn ends at the first frame past its time, not after 60 decodes
            assert max(turns) <= round(LARGE_FRAME_TURN_SECONDS / 0.001) + 1, turns
            assert len(turns) >= len(frames) // round(LARGE_FRAME_TURN_SECONDS / 0.001)

    asyncio.run(scenario())


def test_samples_and_hellos_are_never_charged_to_the_large_frame_budget(clock: FakeClock) -> None:
    ips = [f"fd00:1234:5678:9abc:def0:1234:5678:{k:04x}" for k in range(32)]
    widest = {**HELLO_INFO, "hostname": "h" * 256, "os": "o" * 256, "platform": "p" * 256, "agent_version": "a" * 64}
    hello = encode_hello("node-wide", clock.now, 0, ips, widest)
    assert SMALL_FRAME_BYTES >= len(hello) > 2_000  # a hello at every bound

    async def scenario() -> None:
        async with running_ingest(clock, large_frame_share=0.0) as ingest:  # no budget at all
            ingest.send(hello, *(sample(clock, f"node-{i}", seq=0) for i in range(200)))
            await ingest.received(201)
            assert ingest.stats.total_dropped() == {}
            assert "node-wide" in ingest.nodes

    asyncio.run(scenario())


def test_a_frame_over_the_message_limit_drops_its_sender_not_the_collector(clock: FakeClock) -> None:
    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(b"\x00" * (2 * 1024 * 1024))
            await asyncio.sleep(0.2)
            # the collector is still reading other publishers
            other = ingest.publisher.context.socket(zmq.PUB)
            try:
                other.connect(ingest.endpoint)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 5
                while "node-late" not in ingest.batch.names:
                    assert loop.time() < deadline, "the collector stopped reading"
                    other.send(sample(clock, "node-late"))
                    await asyncio.sleep(0.05)
            finally:
                other.close(linger=0)

    asyncio.run(scenario())



class _Tripwire:
    """Unpickling this creates ``path``: proof that a frame was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_seed_style_pickle_frames_are_dropped_and_counted_never_unpickled(clock: FakeClock, tmp_path) -> None:
    """The seed monitors sent ``gzip(pickle(...))``; unpickling network bytes runs the sender's code."""
    import gzip
    import pickle

    marker = tmp_path / "unpickled"
    payload = {"fqdn": "pickled", "cpu": 1.0, "ram": 2.0, "hook": _Tripwire(str(marker))}
    frames = [gzip.compress(pickle.dumps(payload)), pickle.dumps(payload), pickle.dumps(payload, protocol=0)]

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(*frames)
            await ingest.received(len(frames))
            assert ingest.stats.dropped["unknown"]["not_msgpack"] == len(frames)
            assert len(ingest.batch) == 0 and ingest.inventory.last_seq("pickled") is None

    asyncio.run(scenario())
    assert not marker.exists()
