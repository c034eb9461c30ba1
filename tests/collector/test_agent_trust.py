"""CURVE ingest over real ZeroMQ sockets on 127.0.0.1: allowed, unknown and revoked keys, name ownership,
and one agent flooding while the others' samples all arrive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from servertrack.agent.publisher import CollectorKeys
from servertrack.collector.agent_trust import AgentTrust, TrustError
from servertrack.collector.ingest import IngestReader, open_ingest_socket
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.node_messages import encode_hello
from servertrack.common.nodes import NodeRegistry
from servertrack.common.protocol import Sample, encode_sample
from servertrack.common.stats import IngestStats
from servertrack.keys import generate_keys, read_key_pair
from tests.conftest import FakeClock
from tests.node_fixtures import HELLO_INFO

WAIT_SECONDS = 10.0


@dataclass
class Keys:
    """Key files in a temp dir: the collector's pair, agents' pairs, and the allowed agents' directory."""

    root: Path
    allowed: Path
    collector: CollectorKeys | None = None
    agents: dict[str, Path] = field(default_factory=dict)

    def agent(self, name: str, allow: bool = True) -> CollectorKeys:
        """A new agent key pair (its public key copied into the allowed directory if ``allow``)."""
        public, secret = generate_keys(self.root / name, name)
        if allow:
            shutil.copy(public, self.allowed / public.name)
        self.agents[name] = public
        assert self.collector is not None
        return CollectorKeys(read_key_pair(secret), self.collector.collector)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    _, secret = generate_keys(tmp_path / "collector", "collector")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    found = Keys(tmp_path, allowed)
    pair = read_key_pair(secret)
    found.collector = CollectorKeys(pair, pair.public)  # the collector's own pair, and its public key for agents
    return found


@dataclass
class Collector:
    trust: AgentTrust
    reader: IngestReader
    batch: PendingBatch
    inventory: AgentInventory
    stats: IngestStats
    nodes: NodeRegistry
    endpoint: str
    context: zmq.Context = field(default_factory=zmq.Context)  # the agents' side
    publishers: list[zmq.Socket] = field(default_factory=list)

    async def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not condition():
            assert loop.time() < deadline, f"timed out waiting for {what}: {self.stats.snapshot(0, 0, 0)['dropped']}"
            await asyncio.sleep(0.01)

    def publisher(self, curve: CollectorKeys | None) -> zmq.Socket:
        """A PUB socket connected to the collector (a CURVE client with ``curve``), closed with it."""
        socket = self.context.socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 100_000)
        if curve is not None:
            curve.secure(socket)
        socket.connect(self.endpoint)
        self.publishers.append(socket)
        return socket

    async def connected(self, socket: zmq.Socket, clock: FakeClock, name: str) -> int:
        """Probe with samples for ``name`` until one is kept; return the next seq."""
        seq = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while self.inventory.last_seq(name) is None:
            assert loop.time() < deadline, "the CURVE connection never delivered"
            socket.send(encode_sample(Sample(name, clock.now, 1.0, 1.0, seq, [])))
            seq += 1
            await asyncio.sleep(0.02)
        return seq


@contextlib.asynccontextmanager
async def running_collector(keys: Keys, clock: FakeClock, budget: float = 10.0) -> AsyncIterator[Collector]:
    context = zmq.asyncio.Context()
    assert keys.collector is not None
    trust = AgentTrust(context, keys.collector.agent, keys.allowed)
    trust.start()
    socket = open_ingest_socket(context, "tcp://127.0.0.1:*", lambda s: trust.secure(s, "ingest"))
    batch, inventory, stats = PendingBatch(), AgentInventory(1000, frame_budget=budget), IngestStats()
    nodes = NodeRegistry(1000, clock, on_remove=inventory.release)
    reader = IngestReader(socket, batch, inventory, stats, clock, nodes=nodes, keys=trust.keys)
    collector = Collector(trust, reader, batch, inventory, stats, nodes, socket.getsockopt_string(zmq.LAST_ENDPOINT))
    task = asyncio.create_task(collector.reader.run())
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for publisher in collector.publishers:
            publisher.close(linger=0)
        collector.context.term()
        await trust.stop()
        socket.close(linger=0)
        context.term()


def _dropped(stats: IngestStats, reason: str) -> int:
    return stats.total_dropped()[reason]


def test_an_allowed_agent_is_heard_and_its_hello_records_its_key(keys: Keys, clock: FakeClock) -> None:
    async def scenario() -> None:
        agent = keys.agent("web-01")
        async with running_collector(keys, clock) as collector:
            socket = collector.publisher(agent)
            seq = await collector.connected(socket, clock, "web-01")
            socket.send(encode_hello("web-01", clock.now, seq, ["10.0.0.1"], HELLO_INFO))
            await collector.wait_until(lambda: collector.nodes.get("web-01") is not None, "the hello")
            node = collector.nodes.get("web-01")
            assert node is not None and node.owner_key == agent.agent.public.decode()
            assert collector.trust.handshakes["succeeded"] >= 1
            assert collector.trust.counters()["allowed_keys"] == 1
    asyncio.run(scenario())


def test_an_unknown_key_is_refused_at_the_handshake_and_nothing_is_stored(keys: Keys, clock: FakeClock,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        keys.agent("web-01")
        stranger = keys.agent("intruder", allow=False)
        async with running_collector(keys, clock) as collector:
            socket = collector.publisher(stranger)
            await collector.wait_until(lambda: collector.trust.handshakes["unknown_key"] >= 1, "the refusal")
            for seq in range(20):
                socket.send(encode_sample(Sample("web-01", clock.now, 1.0, 1.0, seq, [])))
            await asyncio.sleep(0.2)
            assert collector.stats.total_received() == 0 and len(collector.batch) == 0
            assert collector.inventory.last_seq("web-01") is None
            plain = collector.publisher(None)  # no CURVE at all
            await collector.wait_until(lambda: collector.trust.handshakes["failed"] >= 1, "the failed handshake")
            plain.send(encode_sample(Sample("web-01", clock.now, 1.0, 1.0, 0, [])))
            await asyncio.sleep(0.1)
            assert collector.stats.total_received() == 0
        assert any("is not in" in record.getMessage() for record in caplog.records)
    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())


def test_a_revoked_key_stops_flowing_after_a_reload(keys: Keys, clock: FakeClock) -> None:
    async def scenario() -> None:
        agent = keys.agent("web-01")
        keys.agent("db-01")
        async with running_collector(keys, clock) as collector:
            socket = collector.publisher(agent)
            seq = await collector.connected(socket, clock, "web-01")
            (keys.allowed / "web-01.key").unlink()
            assert collector.trust.allowed.reload()
            assert collector.trust.counters()["allowed_keys"] == 1
            kept = len(collector.batch)
            for offset in range(10):  # the open connection still delivers: the reader refuses each frame
                socket.send(encode_sample(Sample("web-01", clock.now, 1.0, 1.0, seq + offset, [])))
            await collector.wait_until(lambda: _dropped(collector.stats, "revoked_key") == 10, "the refusals")
            assert len(collector.batch) == kept
    asyncio.run(scenario())


def test_an_unreadable_directory_keeps_the_keys_in_force(keys: Keys, clock: FakeClock) -> None:
    async def scenario() -> None:
        keys.agent("web-01")
        async with running_collector(keys, clock) as collector:
            (keys.allowed / "broken.key").write_text("not a certificate\x00")
            assert not collector.trust.allowed.reload()
            assert collector.trust.counters()["allowed_keys"] == 1 and collector.trust.allowed.reload_errors == 1
    asyncio.run(scenario())


def test_a_directory_that_cannot_be_read_at_start_is_a_trust_error(keys: Keys) -> None:
    assert keys.collector is not None
    context = zmq.asyncio.Context()
    try:
        with pytest.raises(TrustError):
            AgentTrust(context, keys.collector.agent, keys.root / "missing")
    finally:
        context.term()


def test_a_name_owned_by_one_key_is_refused_from_another_until_released(keys: Keys, clock: FakeClock) -> None:
    async def scenario() -> None:
        owner, thief = keys.agent("web-01"), keys.agent("db-01")
        async with running_collector(keys, clock) as collector:
            mine = collector.publisher(owner)
            seq = await collector.connected(mine, clock, "web-01")
            mine.send(encode_hello("web-01", clock.now, seq, ["10.0.0.1"], HELLO_INFO))
            await collector.wait_until(lambda: "web-01" in collector.nodes, "the hello")
            theirs = collector.publisher(thief)
            await collector.connected(theirs, clock, "db-01")
            kept = len(collector.batch)
            for seq in range(5):
                theirs.send(encode_sample(Sample("web-01", clock.now, 99.0, 99.0, 100 + seq, [])))
            theirs.send(encode_hello("web-01", clock.now, 200, ["10.6.6.6"], {**HELLO_INFO, "hostname": "evil"}))
            await collector.wait_until(lambda: _dropped(collector.stats, "wrong_key") == 6, "the refusals")
            node = collector.nodes.get("web-01")
            assert node is not None and node.ips == ["10.0.0.1"] and len(collector.batch) == kept
            assert collector.stats.agent_drops("web-01") == {"wrong_key": 6}
            collector.nodes.remove("web-01")  # what DELETE /nodes/web-01 does: the name is released
            theirs.send(encode_sample(Sample("web-01", clock.now, 99.0, 99.0, 300, [])))
            await collector.wait_until(lambda: collector.inventory.last_seq("web-01") == 300, "the new owner's sample")
            assert collector.inventory.owner("web-01") == collector.trust.keys.allowed[thief.agent.public.decode()]
            assert _dropped(collector.stats, "wrong_key") == 6
    asyncio.run(scenario())


def test_one_agent_flooding_costs_the_others_nothing(keys: Keys, clock: FakeClock) -> None:
    async def scenario() -> None:
        flooder, fleet = keys.agent("flood-01"), keys.agent("fleet")
        async with running_collector(keys, clock) as collector:
            flood = collector.publisher(flooder)
            others = collector.publisher(fleet)
            await collector.connected(flood, clock, "flood-01")
            await collector.connected(others, clock, "fleet-probe")
            received = collector.stats.total_received()
            frames = 20_000
            flood_frame = encode_sample(Sample("flood-01", clock.now, 5.0, 5.0, 1, []))
            for index in range(frames):  # as fast as one sender can, with the others' samples among them
                flood.send(flood_frame)
                if index % 100 == 0:
                    others.send(encode_sample(Sample(f"fleet-{index // 100:03d}", clock.now, 1.0, 1.0, 0, [])))
            await collector.wait_until(lambda: collector.stats.total_received() - received >= frames + 200,
                                       "every frame")
            fleet_kept = sum(1 for index in range(200) if collector.inventory.last_seq(f"fleet-{index:03d}") == 0)
            assert fleet_kept == 200
            assert _dropped(collector.stats, "over_budget") >= frames - 200
            assert collector.stats.agent_drops("flood-01")["over_budget"] >= frames - 200
    asyncio.run(scenario())


@pytest.mark.parametrize("content", [
    'metadata\ncurve\n    public-key = "short"\n',
    'metadata\ncurve\n    public-key = "' + "é" * 40 + '"\n',
    b"\xff\xfe\x00garbage",
])
def test_a_key_file_that_is_not_a_key_is_a_trust_error_at_start_and_kept_out_on_reload(
        keys: Keys, clock: FakeClock, content: str | bytes) -> None:
    assert keys.collector is not None
    keys.agent("web-01")
    bad = keys.allowed / "bad.key"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    context = zmq.asyncio.Context()
    try:
        with pytest.raises(TrustError):
            AgentTrust(context, keys.collector.agent, keys.allowed)
    finally:
        context.term()
    bad.unlink()

    async def scenario() -> None:
        async with running_collector(keys, clock) as collector:
            bad.write_bytes(content if isinstance(content, bytes) else content.encode())
            assert not collector.trust.allowed.reload()
            assert collector.trust.counters()["allowed_keys"] == 1
    asyncio.run(scenario())
