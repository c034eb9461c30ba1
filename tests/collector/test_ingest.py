"""The collector's SUB reader and batch applier, over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import msgpack
import zmq
import zmq.asyncio

from servertrack.collector.applier import APPLY_CHUNK, BatchApplier
from servertrack.collector.ingest import IngestReader, open_ingest_socket
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.node_messages import encode_bye, encode_hello, encode_snapshot
from servertrack.common.nodes import OFFLINE, ONLINE, NodeRegistry
from servertrack.common.protocol import MAX_FRAME_BYTES, Sample, encode_sample
from servertrack.common.stats import IngestStats
from tests.conftest import FakeClock

WAIT_SECONDS = 5.0


@dataclass
class Ingest:
    """A reader on a bound SUB socket, a PUB socket connected to it, and the shared state."""

    publisher: zmq.Socket
    batch: PendingBatch
    inventory: AgentInventory
    stats: IngestStats
    clock: FakeClock
    nodes: NodeRegistry
    probes: int = 0
    reader: IngestReader | None = None
    task: asyncio.Task[None] | None = None
    endpoint: str = ""

    def send(self, *frames: bytes) -> None:
        for frame in frames:
            self.publisher.send(frame)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not condition():
            assert loop.time() < deadline, "timed out waiting for the reader"
            await asyncio.sleep(0.005)

    async def received(self, count: int) -> None:
        """Wait until ``count`` frames (after the probes) have been read."""
        await self.wait_until(lambda: self.stats.total_received() - self.probes >= count)


@contextlib.asynccontextmanager
async def running_ingest(clock: FakeClock, batch: PendingBatch | None = None, max_nodes: int = 1000,
                         **reader_options: float) -> AsyncIterator[Ingest]:
    """A reader task on a bound SUB socket and a connected PUB socket, the subscription settled;
    ``reader_options`` go to ``IngestReader``."""
    context = zmq.asyncio.Context()
    publisher_context = zmq.Context()
    socket = open_ingest_socket(context, "tcp://127.0.0.1:*")
    publisher = publisher_context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.connect(socket.getsockopt_string(zmq.LAST_ENDPOINT))
    ingest = Ingest(publisher, batch if batch is not None else PendingBatch(), AgentInventory(1000), IngestStats(), clock,
                    NodeRegistry(max_nodes, clock))
    reader = IngestReader(socket, ingest.batch, ingest.inventory, ingest.stats, clock, nodes=ingest.nodes,
                          **reader_options)
    task = asyncio.create_task(reader.run())
    ingest.reader, ingest.task = reader, task
    ingest.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        # PUB drops until the subscription has travelled: probe until one arrives.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while ingest.stats.total_received() == 0:
            assert loop.time() < deadline, "subscription never completed"
            ingest.send(encode_sample(Sample("probe", clock.now, 0.0, 0.0, ingest.probes, [])))
            ingest.probes += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        ingest.probes = ingest.stats.total_received()
        ingest.batch.take()
        yield ingest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        publisher.close(linger=0)
        socket.close(linger=0)
        publisher_context.term()
        context.term()


def sample(clock: FakeClock, name: str = "node-1", seq: int = 0, cpu: float = 10.0, **changes: object) -> bytes:
    message = {"v": 1, "fqdn": name, "ts": clock.now, "ip": ["10.1.2.3"], "cpu": cpu, "ram": 20.0, "seq": seq}
    message.update(changes)
    return msgpack.packb(message)


def test_valid_frames_are_queued_in_order(clock: FakeClock) -> None:
    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(*(sample(clock, "Node-1", seq, cpu=float(seq)) for seq in range(5)))
            await ingest.received(5)
            names, ts, cpu, ram = ingest.batch.take()
            assert names == ["node-1"] * 5
            assert cpu.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
            assert ts.tolist() == [clock.now] * 5 and ram.tolist() == [20.0] * 5
            assert ingest.inventory.ips_of("node-1") == ["10.1.2.3"]
            assert ingest.stats.total_dropped() == {}

    asyncio.run(scenario())


def test_garbage_is_dropped_counted_by_reason_and_reading_goes_on(clock: FakeClock) -> None:
    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(
                b"\xff\x00garbage",
                msgpack.packb([1, 2]),
                sample(clock, cpu=101.0),
                sample(clock, cpu="high"),
                sample(clock, name="bad name"),
                sample(clock, ts=clock.now - 90_000),
                sample(clock, ts=clock.now + 61),
                sample(clock, ip=["999.1.1.1"]),
                sample(clock, v=9),
                b"\x00" * (MAX_FRAME_BYTES + 1),
                sample(clock, seq=1),
            )
            await ingest.received(11)
            assert dict(ingest.stats.total_dropped()) == {
                "not_msgpack": 1, "not_a_map": 1, "out_of_range": 1, "bad_type": 1, "bad_name": 1,
                "bad_timestamp": 2, "bad_ip": 1, "bad_version": 1, "too_large": 1,
            }
            names, _, cpu, _ = ingest.batch.take()
            assert names == ["node-1"] and cpu.tolist() == [10.0]

    asyncio.run(scenario())


def test_sequence_gaps_count_as_lost_but_a_restart_does_not(clock: FakeClock) -> None:
    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            for seq in (0, 1, 2, 5, 6, 0, 1, 4):  # 3 and 4 lost; restart at 0; 2 and 3 lost
                ingest.send(sample(clock, seq=seq))
            ingest.send(sample(clock, "other", seq=100))  # first sight of an agent: nothing lost
            await ingest.received(9)
            assert ingest.inventory.lost == 4
            assert ingest.inventory.last_seq("node-1") == 4
            assert ingest.inventory.last_seq("other") == 100

    asyncio.run(scenario())


def test_a_full_batch_drops_and_counts_instead_of_growing(clock: FakeClock) -> None:
    async def scenario() -> None:
        async with running_ingest(clock, PendingBatch(limit=3)) as ingest:
            ingest.send(*(sample(clock, seq=seq) for seq in range(5)))
            await ingest.received(5)
            assert len(ingest.batch) == 3
            assert ingest.stats.total_dropped()["queue_full"] == 2

    asyncio.run(scenario())


def test_binding_a_busy_endpoint_fails_cleanly() -> None:
    context = zmq.asyncio.Context()
    first = open_ingest_socket(context, "tcp://127.0.0.1:*")
    try:
        endpoint = first.getsockopt_string(zmq.LAST_ENDPOINT)
        try:
            open_ingest_socket(context, endpoint)
        except zmq.ZMQError as error:
            assert error.errno == zmq.EADDRINUSE
        else:
            raise AssertionError("second bind should fail")
    finally:
        first.close(linger=0)
        context.term()


def make_applier(clock: FakeClock, max_servers: int = 100) -> tuple[BatchApplier, PendingBatch, Aggregator, IngestStats, AgentInventory]:
    batch, aggregator, stats, inventory = PendingBatch(), Aggregator(max_servers, clock=clock), IngestStats(), AgentInventory(max_servers)
    return BatchApplier(batch, aggregator, inventory, stats, clock), batch, aggregator, stats, inventory


def test_apply_moves_the_whole_batch_into_the_aggregator(clock: FakeClock) -> None:
    applier, batch, aggregator, stats, _ = make_applier(clock, max_servers=APPLY_CHUNK + 10)
    count = APPLY_CHUNK + 5  # more than one chunk
    batch.extend([f"s{i}" for i in range(count)], [clock.now] * count, [1.0] * count, [2.0] * count)
    assert asyncio.run(applier.apply_pending(yield_between_chunks=True)) == count
    assert len(batch) == 0 and len(aggregator) == count
    assert stats.total_applied() == count and stats.last_batch_size == count and stats.last_batch_seconds > 0


def test_apply_counts_servers_refused_by_the_cap(clock: FakeClock) -> None:
    applier, batch, aggregator, stats, _ = make_applier(clock, max_servers=2)
    batch.extend(["a", "b", "c", "c"], [clock.now] * 4, [1.0] * 4, [1.0] * 4)
    assert asyncio.run(applier.apply_pending()) == 2
    assert stats.total_dropped()["server_limit"] == 2 and len(aggregator) == 2


def test_silent_servers_are_evicted_from_aggregator_and_inventory(clock: FakeClock) -> None:
    applier, batch, aggregator, _, inventory = make_applier(clock)
    inventory.observe("quiet", 0, ["10.0.0.1"])
    batch.add("quiet", clock.now, 1.0, 1.0)
    asyncio.run(applier.apply_pending())
    clock.advance(24 * 3600 + 61)
    asyncio.run(applier.apply_pending())
    assert "quiet" not in aggregator and inventory.ips_of("quiet") is None


def test_the_periodic_task_applies_within_about_a_second(clock: FakeClock) -> None:
    async def scenario() -> None:
        applier, batch, aggregator, _, _ = make_applier(clock)
        task = asyncio.create_task(applier.run())
        try:
            batch.add("web", clock.now, 5.0, 5.0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            while "web" not in aggregator:
                assert loop.time() - started < 1.5, "not applied within ~1 s"
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_node_messages_register_update_and_say_bye(clock: FakeClock) -> None:
    from tests.node_fixtures import HELLO_INFO
    from tests.node_fixtures import stats_body as stats

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ingest.send(
                encode_hello("Node-1", clock.now, 0, ["10.1.2.3"], HELLO_INFO),
                sample(clock, "node-1", seq=1),
                encode_snapshot("node-1", clock.now, 2, stats()),
                encode_snapshot("node-1", clock.now, 3, stats(cpu="busy")),
            )
            await ingest.received(4)
            node = ingest.nodes.get("node-1")
            assert node is not None and node.info["hostname"] == "node01" and node.ips == ["10.1.2.3"]
            assert ingest.nodes.state(node) == ONLINE
            assert node.stats() == stats()  # the bad snapshot changed nothing
            assert ingest.stats.total_dropped() == {"bad_field": 1}
            assert len(ingest.batch) == 1  # the sample still feeds the aggregator
            ingest.send(encode_bye("node-1", clock.now, 4))
            await ingest.received(5)
            assert ingest.nodes.state(node) == OFFLINE
            # seq runs across every kind of message: only the refused snapshot (seq 3) left a gap
            assert ingest.inventory.lost == 1

    asyncio.run(scenario())


def test_seq_is_accounted_in_arrival_order_across_kinds_within_one_turn(clock: FakeClock) -> None:
    """Samples are queued in runs; a node message between them must not be accounted out of order
    (hellos first would read sample 1 as a restart and sample 3 as one lost)."""
    from tests.node_fixtures import HELLO_INFO

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            frames = []
            for agent in range(50):
                name = f"node-{agent}"
                frames += [encode_hello(name, clock.now, 0, ["10.1.2.3"], HELLO_INFO), sample(clock, name, seq=1),
                           encode_hello(name, clock.now, 2, ["10.1.2.3"], HELLO_INFO), sample(clock, name, seq=3),
                           sample(clock, name, seq=4)]
            ingest.send(*frames)
            await ingest.received(len(frames))
            assert ingest.inventory.lost == 0 and ingest.stats.total_dropped() == {}
            assert ingest.inventory.last_seq("node-7") == 4 and len(ingest.batch) == 150
            ingest.send(sample(clock, "node-7", seq=9), encode_bye("node-7", clock.now, 11))
            await ingest.received(len(frames) + 2)
            assert ingest.inventory.lost == 5  # 5..8 and 10
            ingest.send(sample(clock, "node-7", seq=0))  # a restart loses nothing
            await ingest.received(len(frames) + 3)
            assert ingest.inventory.lost == 5 and ingest.inventory.last_seq("node-7") == 0

    asyncio.run(scenario())


def test_a_run_with_one_bad_frame_keeps_every_good_one_and_names_the_bad(clock: FakeClock) -> None:
    """A run of sample frames checked together: one that fails a check (here a timestamp out of the
    window, an unpaired version, a bad address) sends the run frame by frame, and only it is refused."""

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            good = [sample(clock, f"node-{i}", seq=0, cpu=float(i % 100)) for i in range(300)]
            for position, bad in ((5, sample(clock, "node-5", seq=0, ts=clock.now + 3600)),
                                  (150, sample(clock, "node-150", seq=0, v=2)),
                                  (299, sample(clock, "node-299", seq=0, ip=["10.0.0.300"]))):
                good[position] = bad
            ingest.send(*good)
            await ingest.received(300)
            names, _, cpu, _ = ingest.batch.take()
            assert len(names) == 297 and "node-5" not in names and "node-299" not in names
            assert cpu.tolist() == [float(i % 100) for i in range(300) if i not in (5, 150, 299)]
            dropped = ingest.stats.total_dropped()
            assert dropped == {"bad_timestamp": 1, "bad_ip": 1, "bad_version": 1}
            assert ingest.inventory.ips_of("node-299") is None
            # again, every name known now (the run's common case), one frame too far ahead and one IP
            # list changed to a valid one: kept, and the agent's addresses follow
            again = [sample(clock, f"node-{i}", seq=1, cpu=1.0) for i in range(300)]
            again[7] = sample(clock, "node-7", seq=1, ts=clock.now + 61)
            again[8] = sample(clock, "node-8", seq=1, ip=["10.9.9.9"])
            ingest.send(*again)
            await ingest.received(600)
            names, _, _, _ = ingest.batch.take()
            assert len(names) == 299 and "node-7" not in names
            assert ingest.stats.total_dropped()["bad_timestamp"] == 2
            assert ingest.inventory.ips_of("node-8") == ["10.9.9.9"] and ingest.inventory.last_seq("node-7") == 0
            assert ingest.inventory.lost == 0

    asyncio.run(scenario())



def test_a_sample_map_of_repeated_keys_past_the_decoder_limit_is_dropped_as_too_large(clock: FakeClock) -> None:
    import struct

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            fields = {"v": 1, "fqdn": "node-r", "ts": clock.now, "ip": [], "cpu": 1.0, "ram": 2.0, "seq": 0}
            body = b"".join(msgpack.packb(key) + msgpack.packb(value) for key, value in fields.items())
            ingest.send(b"\xde" + struct.pack(">H", 67) + body + (msgpack.packb("v") + msgpack.packb(1)) * 60,
                        sample(clock, "node-s"))
            await ingest.received(2)
            names, _, _, _ = ingest.batch.take()
            assert names == ["node-s"] and ingest.stats.total_dropped() == {"too_large": 1}
            assert ingest.inventory.last_seq("node-r") is None

    asyncio.run(scenario())


class ChunkRecordingAggregator(Aggregator):
    """An aggregator that records how many samples each ``apply`` call (one chunk) got."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.chunks: list[int] = []

    def apply(self, names, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.chunks.append(len(names))
        return super().apply(names, *args, **kwargs)


def chunks_of_one_apply(clock: FakeClock, http_waiting: Callable[[], bool], count: int) -> list[int]:
    """The chunk sizes of one apply of ``count`` samples, each chunk taking no measurable work time."""
    from servertrack.collector.applier import QUIET_APPLY_CHUNK
    aggregator = ChunkRecordingAggregator(max(count, QUIET_APPLY_CHUNK), clock=clock)
    batch = PendingBatch()
    applier = BatchApplier(batch, aggregator, AgentInventory(10), IngestStats(), clock,
                           http_waiting=http_waiting, work_timer=lambda: 0.0)
    batch.extend([f"s{i}" for i in range(count)], [clock.now] * count, [1.0] * count, [2.0] * count)
    assert asyncio.run(applier.apply_pending(yield_between_chunks=True)) == count
    return aggregator.chunks


def test_chunks_stay_small_while_requests_wait_and_grow_once_http_is_quiet(clock: FakeClock) -> None:
    from servertrack.collector.applier import QUIET_APPLY_CHUNK
    count = 3 * QUIET_APPLY_CHUNK
    pressed = chunks_of_one_apply(clock, lambda: True, count)
    assert sum(pressed) == count and max(pressed) == APPLY_CHUNK
    quiet = chunks_of_one_apply(clock, lambda: False, count)
    assert sum(quiet) == count and max(quiet) == QUIET_APPLY_CHUNK


def test_a_request_seen_during_a_quiet_apply_shrinks_the_chunks_at_once(clock: FakeClock) -> None:
    from servertrack.collector.applier import QUIET_APPLY_CHUNK
    calls = [0]

    def waiting_from_the_sixth_look() -> bool:
        calls[0] += 1
        return calls[0] > 6

    chunks = chunks_of_one_apply(clock, waiting_from_the_sixth_look, 4 * QUIET_APPLY_CHUNK)
    grown = chunks.index(max(chunks))
    assert max(chunks) > APPLY_CHUNK and max(chunks[grown + 1:]) <= APPLY_CHUNK


def test_an_agent_with_a_skewed_clock_is_shown_and_its_samples_follow_the_one_window_policy(clock: FakeClock) -> None:
    """Policy: a sample is taken on its own time inside the accepted window (24 h back, 60 s ahead) and
    dropped as ``bad_timestamp`` outside it; hellos are taken from a clock up to a day off, so the node
    shows its skew (``clock_skew_seconds``) even when its samples are dropped."""
    from servertrack.api.node_views import node_detail
    from servertrack.common.protocol import MAX_CLOCK_SKEW_SECONDS
    from tests.node_fixtures import HELLO_INFO

    async def scenario() -> None:
        async with running_ingest(clock) as ingest:
            ahead, behind = clock.now + 300.0, clock.now - 600.0
            ingest.send(encode_hello("ahead.example", ahead, 0, ["10.1.2.3"], HELLO_INFO),
                        sample(clock, "ahead.example", seq=1, ts=ahead),
                        encode_hello("behind.example", behind, 0, ["10.1.2.4"], HELLO_INFO),
                        sample(clock, "behind.example", seq=1, ts=behind, ip=["10.1.2.4"]),
                        encode_hello("broken.example", clock.now + MAX_CLOCK_SKEW_SECONDS + 1, 0, ["10.1.2.5"],
                                     HELLO_INFO))
            await ingest.received(5)
            ahead_node, behind_node = ingest.nodes.get("ahead.example"), ingest.nodes.get("behind.example")
            assert ahead_node is not None and behind_node is not None and "broken.example" not in ingest.nodes
            assert node_detail(ahead_node, "online")["clock_skew_seconds"] == 300.0
            assert node_detail(behind_node, "online")["clock_skew_seconds"] == -600.0
            assert ingest.stats.dropped["sample"] == {"bad_timestamp": 1}  # 5 minutes ahead: outside the window
            assert ingest.stats.dropped["hello"] == {"bad_timestamp": 1}  # a day and a second off
            names, ts, _, _ = ingest.batch.take()
            assert names == ["behind.example"] and list(ts) == [behind]  # in the bucket of its own time
    asyncio.run(scenario())
