"""The collector's control channel over real ZeroMQ sockets on 127.0.0.1: topic addressing, counting,
and the re-assertion of the desired state when a hello arriving on the ingest socket disagrees."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
import zmq
import zmq.asyncio

from servertrack.collector.control import ControlChannel, open_control_socket
from servertrack.collector.ingest import IngestReader, open_ingest_socket
from servertrack.common.batch import PendingBatch
from servertrack.common.control_messages import ControlMessage, control_topic, decode_control
from servertrack.common.inventory import AgentInventory
from servertrack.common.node_messages import encode_hello
from servertrack.common.nodes import PAUSED, NodeRegistry
from servertrack.common.stats import IngestStats
from tests.conftest import FakeClock
from tests.node_fixtures import HELLO_INFO

WAIT_SECONDS = 5.0


@pytest.fixture
def channel(clock: FakeClock) -> Iterator[tuple[ControlChannel, str]]:
    """A control channel on a bound PUB socket: ``(channel, endpoint)``."""
    context = zmq.asyncio.Context()
    socket = open_control_socket(context, "tcp://127.0.0.1:*")
    control = ControlChannel(clock)
    control.attach(socket)
    try:
        yield control, socket.getsockopt_string(zmq.LAST_ENDPOINT)
    finally:
        control.detach()
        socket.close(linger=0)
        context.term()


class Subscribers:
    """SUB sockets as agents have them, on a private context; all closed at teardown."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []

    def new(self, endpoint: str, *nodes: str) -> zmq.Socket:
        """A SUB socket subscribed to the control topics of ``nodes``."""
        socket = self.context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        for node in nodes:
            socket.setsockopt(zmq.SUBSCRIBE, control_topic(node))
        socket.connect(endpoint)
        self.sockets.append(socket)
        return socket

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(linger=0)
        self.context.term()


@pytest.fixture
def subscribers() -> Iterator[Subscribers]:
    made = Subscribers()
    yield made
    made.close()


def received(socket: zmq.Socket, wait_ms: int = 200) -> list[ControlMessage]:
    messages = []
    while socket.poll(wait_ms):
        messages.append(decode_control(socket.recv_multipart()))
        wait_ms = 50
    return messages


def settle(control: ControlChannel, *sockets: zmq.Socket) -> None:
    """PUB drops until subscriptions have travelled: publish to all until every socket got one, then drain."""
    deadline = time.monotonic() + WAIT_SECONDS
    pending = set(sockets)
    while pending:
        assert time.monotonic() < deadline, "subscriptions did not arrive"
        control.publish_all(False)
        pending = {socket for socket in pending if not socket.poll(20)}
    for socket in sockets:
        received(socket, 100)


def test_a_message_for_one_node_reaches_that_node_only(channel, subscribers, clock: FakeClock) -> None:
    control, endpoint = channel
    web = subscribers.new(endpoint, "web", "*")
    web01 = subscribers.new(endpoint, "web-01", "*")
    settle(control, web, web01)

    assert control.publish("web-01", True)
    assert received(web01) == [ControlMessage("pause", "web-01", clock.now)]
    assert received(web, 100) == []  # "web" is a prefix of "web-01", but topics are NUL-terminated

    assert control.publish("web", False)
    assert [message.kind for message in received(web)] == ["resume"]
    assert received(web01, 100) == []


def test_a_message_for_every_node_reaches_all(channel, subscribers) -> None:
    control, endpoint = channel
    sockets = [subscribers.new(endpoint, name, "*") for name in ("a", "b", "c")]
    settle(control, *sockets)
    before = control.counters()
    assert control.publish_all(True)
    for socket in sockets:
        assert [(message.kind, message.node) for message in received(socket)] == [("pause", "*")]
    after = control.counters()
    assert after["published"] == before["published"] + 1 and after["pause"] == before["pause"] + 1


def test_a_heartbeat_reaches_every_agent_and_is_counted_apart(channel, subscribers, clock: FakeClock) -> None:
    control, endpoint = channel
    sockets = [subscribers.new(endpoint, name, "*") for name in ("a", "b")]
    settle(control, *sockets)
    before = control.counters()
    assert control.heartbeat()
    for socket in sockets:
        assert received(socket) == [ControlMessage("alive", "*", clock.now)]
    after = control.counters()
    assert after["heartbeats"] == before["heartbeats"] + 1
    assert {key: after[key] for key in ("published", "pause", "resume", "unsent")} == {
        key: before[key] for key in ("published", "pause", "resume", "unsent")}  # the commands' counts unchanged


def test_beat_sends_a_heartbeat_at_once_then_every_period(channel, subscribers) -> None:
    control, endpoint = channel
    agent = subscribers.new(endpoint, "a", "*")
    settle(control, agent)

    async def scenario() -> int:
        beating = asyncio.create_task(control.beat(every=0.05))
        try:
            deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
            while control.heartbeats < 4:
                assert asyncio.get_running_loop().time() < deadline, "no heartbeats"
                await asyncio.sleep(0.01)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        return control.heartbeats

    sent = asyncio.run(scenario())
    kinds = [message.kind for message in received(agent)]
    assert kinds and set(kinds) == {"alive"} and len(kinds) <= sent


def test_a_channel_without_a_socket_counts_what_it_could_not_send(clock: FakeClock) -> None:
    control = ControlChannel(clock)
    assert not control.publish("web-01", True) and not control.publish_all(False)
    assert not control.heartbeat()  # not owed: not counted as unsent
    assert control.counters() == {"published": 0, "pause": 0, "resume": 0, "unsent": 2,
                                                       "heartbeats": 0}


@contextlib.asynccontextmanager
async def collector(clock: FakeClock, control: ControlChannel):
    """An ingest reader whose registry re-asserts through ``control``; yields (registry, PUB to ingest)."""
    context = zmq.asyncio.Context()
    socket = open_ingest_socket(context, "tcp://127.0.0.1:*")
    publisher_context = zmq.Context()
    publisher = publisher_context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.connect(socket.getsockopt_string(zmq.LAST_ENDPOINT))
    stats = IngestStats()
    nodes = NodeRegistry(100, clock, on_mismatch=control.reassert)
    reader = IngestReader(socket, PendingBatch(), AgentInventory(100), stats, clock, nodes=nodes)
    task = asyncio.create_task(reader.run())
    try:
        yield nodes, publisher, stats
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        publisher.close(linger=0)
        publisher_context.term()
        socket.close(linger=0)
        context.term()


async def hello_until_received(publisher: zmq.Socket, stats: IngestStats, frame: bytes) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    before = stats.received["hello"]
    while stats.received["hello"] == before:
        assert asyncio.get_running_loop().time() < deadline, "the hello did not arrive"
        publisher.send(frame)
        await asyncio.sleep(0.02)


def test_a_zeromq_hello_that_disagrees_is_answered_with_the_desired_state(channel, subscribers,
                                                                       clock: FakeClock) -> None:
    control, endpoint = channel
    agent = subscribers.new(endpoint, "node-1", "*")
    settle(control, agent)

    async def scenario() -> None:
        async with collector(clock, control) as (nodes, publisher, stats):
            await hello_until_received(publisher, stats, encode_hello("node-1", clock.now, 0, [], HELLO_INFO))
            assert received(agent, 100) == []  # first hello: its state is adopted, nothing to say
            nodes.set_paused("node-1", True)
            await hello_until_received(publisher, stats,
                                       encode_hello("node-1", clock.now, 1, [], HELLO_INFO, paused=False))
            assert [(m.kind, m.node) for m in received(agent)] == [("pause", "node-1")]
            await hello_until_received(publisher, stats,
                                       encode_hello("node-1", clock.now, 2, [], HELLO_INFO, paused=True))
            assert received(agent, 100) == []  # it obeyed
            node = nodes.get("node-1")
            assert node is not None and nodes.state(node) == PAUSED

    asyncio.run(scenario())


def test_a_restarted_collector_learns_the_pause_from_the_hello(channel, subscribers, clock: FakeClock) -> None:
    control, endpoint = channel
    agent = subscribers.new(endpoint, "node-1", "*")
    settle(control, agent)

    async def scenario() -> None:
        async with collector(clock, control) as (nodes, publisher, stats):  # a fresh registry
            await hello_until_received(publisher, stats,
                                       encode_hello("node-1", clock.now, 9, [], HELLO_INFO, paused=True))
            node = nodes.get("node-1")
            assert node is not None and node.paused and nodes.state(node) == PAUSED
            assert received(agent, 100) == []

    asyncio.run(scenario())
