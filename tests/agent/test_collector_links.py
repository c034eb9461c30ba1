"""An agent given several collectors, over real ZeroMQ sockets on 127.0.0.1 (CollectorLinks, run_agent):
it listens to every collector's control channel, moves its PUB away from a silent collector and back when
it is heard again, obeys only the collector it publishes to, and survives collectors that send garbage,
never answer, or speak CURVE (every socket is a CURVE client then)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator

import msgpack
import pytest
import zmq
from agent_doubles import FakeSampler, unused_tcp_port

from servertrack.agent.collector_choice import CollectorAddress
from servertrack.agent.collector_links import AgentError, CollectorLinks
from servertrack.agent.daemon import run_agent
from servertrack.agent.publisher import CollectorKeys
from servertrack.common.agent_keys import KeyPair
from servertrack.common.control_messages import encode_alive, encode_control
from servertrack.common.node_messages import NodeHello, decode_message
from servertrack.common.protocol import NameCache, Sample
from servertrack.common.rendezvous import chosen_index
from tests.node_fixtures import HELLO_INFO

WAIT_SECONDS = 5.0
FAILOVER_AFTER = 0.5  # the flag's least is 1 s; the links take any positive time, and the test is quicker
BEAT_SECONDS = 0.1


class FakeCollector:
    """What an agent connects to: an ingest SUB and a control XPUB (it sees subscriptions), both bound on
    127.0.0.1; ``alive`` says whether ``beat`` sends heartbeats. With ``secret`` both are CURVE servers."""

    def __init__(self, context: zmq.Context, secret: bytes | None = None) -> None:
        self.ingest = context.socket(zmq.SUB)
        self.control = context.socket(zmq.XPUB)
        for socket in (self.ingest, self.control):
            socket.setsockopt(zmq.LINGER, 0)
            if secret is not None:
                socket.curve_server = True
                socket.curve_secretkey = secret
        self.ingest.setsockopt(zmq.SUBSCRIBE, b"")
        self.address = CollectorAddress(f"tcp://127.0.0.1:{self.ingest.bind_to_random_port('tcp://127.0.0.1')}",
                                        f"tcp://127.0.0.1:{self.control.bind_to_random_port('tcp://127.0.0.1')}")
        self.alive = True
        self.subscriptions: list[bytes] = []
        self.received: list[object] = []
        self._names = NameCache()

    def read(self) -> None:
        """Take what arrived, without blocking: subscriptions and ingest messages."""
        while self.control.poll(0):
            self.subscriptions.append(self.control.recv())
        while self.ingest.poll(0):
            self.received.append(decode_message(self.ingest.recv(), time.time(), self._names))

    def beat(self) -> None:
        if self.alive:
            self.control.send_multipart(encode_alive(time.time()))

    def samples(self, since: int = 0) -> list[Sample]:
        return [message for message in self.received[since:] if isinstance(message, Sample)]

    def hellos(self) -> list[NodeHello]:
        return [message for message in self.received if isinstance(message, NodeHello)]

    def close(self) -> None:
        self.ingest.close(linger=0)
        self.control.close(linger=0)


@pytest.fixture
def collectors(zmq_context: zmq.Context) -> Iterator[list[FakeCollector]]:
    made = [FakeCollector(zmq_context), FakeCollector(zmq_context)]
    yield made
    for collector in made:
        collector.close()


class FakeNodeStats:
    def hello_fields(self) -> dict[str, object]:
        return {key: HELLO_INFO[key] for key in ("hostname", "boot_time", "os", "platform", "cpu_count",
                                                 "memory_total")}

    def snapshot(self) -> dict[str, object]:
        raise AssertionError("stats_every is 0")


def name_picking(index: int, collectors: list[FakeCollector]) -> str:
    """A node name whose rendezvous pick (all up) is ``collectors[index]``."""
    ingests = [collector.address.ingest for collector in collectors]
    return next(name for name in (f"node-{number:03}.test" for number in range(1000))
                if chosen_index(name, ingests) == index)


async def until(condition: Callable[[], bool], what: str, collectors: list[FakeCollector],
                seconds: float = WAIT_SECONDS) -> None:
    """Beat and read every collector until ``condition()``, for at most ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    next_beat = loop.time()
    while True:
        for collector in collectors:
            collector.read()
        if condition():
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        if loop.time() >= next_beat:
            for collector in collectors:
                collector.beat()
            next_beat = loop.time() + BEAT_SECONDS
        await asyncio.sleep(0.01)


def agent_running(name: str, collectors: list[FakeCollector], lines: list[str], stop: asyncio.Event,
                  curve: CollectorKeys | None = None, interval: float = 0.05) -> asyncio.Task[int]:
    return asyncio.create_task(run_agent(name, [collector.address for collector in collectors], interval, stop=stop,
                                         sampler=FakeSampler(), node_stats=FakeNodeStats(),  # type: ignore[arg-type]
                                         stats_every=0, failover_after=FAILOVER_AFTER, say=lines.append,
                                         curve=curve))


def run(scenario: Callable[[], object], timeout: float = 30.0) -> object:
    async def main() -> object:
        return await asyncio.wait_for(scenario(), timeout)  # type: ignore[arg-type]
    return asyncio.run(main())


def test_the_agent_moves_away_from_a_silent_collector_and_back_and_obeys_only_its_own(
        collectors: list[FakeCollector]) -> None:
    name = name_picking(0, collectors)
    pick, other = collectors
    lines: list[str] = []
    stop = asyncio.Event()

    async def scenario() -> None:
        agent = agent_running(name, collectors, lines, stop)
        try:
            await until(lambda: all(len(c.subscriptions) >= 2 for c in collectors), "both subscribed", collectors)
            await until(lambda: len(pick.samples()) >= 3, "samples at the pick", collectors)
            assert other.received == [] and lines == []
            # a pause from the collector it does not publish to is not obeyed
            other.control.send_multipart(encode_control(True, name, time.time()))
            sampled = len(pick.samples())
            await until(lambda: len(pick.samples()) >= sampled + 5, "samples go on", collectors)
            assert not any(hello.paused for hello in pick.hellos())
            # the pick falls silent: the agent moves, says hello there at once, and says why
            pick.alive = False
            silenced = time.monotonic()
            await until(lambda: len(other.samples()) >= 3, "samples at the other collector", collectors)
            assert time.monotonic() - silenced < FAILOVER_AFTER + 1.0
            # the hello said at the move is most likely dropped (not connected yet); the next follows the handshake
            await until(lambda: bool(other.hellos()), "a hello at the other collector", collectors, seconds=1.0)
            assert len(lines) == 1
            assert re.fullmatch(re.escape(f"servertrack agent {name}: collector {pick.address.ingest} silent for ")
                                + r"0\.[5-9] s" + re.escape(f"; publishing to {other.address.ingest} "
                                                            f"(control {other.address.control})"), lines[0]), lines
            last_at_pick = len(pick.received)
            # the pick is heard again: back there; seq goes on from where it was
            pick.alive = True
            await until(lambda: len(pick.samples(since=last_at_pick)) >= 3, "back at the pick", collectors)
            assert len(lines) == 2
            assert lines[1] == (f"servertrack agent {name}: collector {pick.address.ingest} is heard again; "
                                f"publishing to {pick.address.ingest} (control {pick.address.control})")
            await until(lambda: any(isinstance(message, NodeHello) for message in pick.received[last_at_pick:]),
                        "a hello back at the pick", collectors, seconds=1.0)
            back = pick.received[last_at_pick:]
            seqs = [message.seq for message in other.received] + [message.seq for message in back]  # type: ignore[attr-defined]
            assert min(message.seq for message in back) > max(message.seq for message in other.received)  # type: ignore[attr-defined]
            assert seqs == sorted(seqs)
            # and a command from it is obeyed again
            pick.control.send_multipart(encode_control(True, name, time.time()))
            await until(lambda: any(hello.paused for hello in pick.hellos()), "the pause obeyed", collectors)
        finally:
            stop.set()
            await agent

    run(scenario)


def test_with_an_hour_between_samples_a_move_is_still_made_and_said_at_once(collectors: list[FakeCollector]) -> None:
    name = name_picking(1, collectors)
    lines: list[str] = []
    stop = asyncio.Event()

    async def scenario() -> None:
        agent = agent_running(name, collectors, lines, stop, interval=3600.0)
        try:
            await until(lambda: all(len(c.subscriptions) >= 2 for c in collectors), "both subscribed", collectors)
            collectors[1].alive = False
            silenced = time.monotonic()
            # no tick in sight: the agent wakes for the failover and for the hello after the handshake
            await until(lambda: bool(collectors[0].hellos()), "a hello at the other collector", collectors)
            assert time.monotonic() - silenced < FAILOVER_AFTER + 1.0
            assert len(lines) == 1 and collectors[0].samples() == [] and collectors[1].received == []
        finally:
            stop.set()
            await agent

    run(scenario)


def test_a_collector_that_sends_only_garbage_is_silent_and_the_agent_goes_on(
        collectors: list[FakeCollector]) -> None:
    name = name_picking(0, collectors)
    pick, other = collectors
    lines: list[str] = []
    stop = asyncio.Event()
    garbage = [[b"*\0", b"\xc1"], [b"*\0"], [b"*\0", msgpack.packb({"v": 1, "kind": "alive", "node": name, "ts": 1.0})],
               [b"*\0", msgpack.packb([1, 2, 3])], [b"*\0", b"\x00" * 5000], [b"*\0", b"x" * (1 << 20)]]  # the last
    # is over the socket's message limit: libzmq cuts the connection and the subscriber opens a new one

    async def scenario() -> None:
        agent = agent_running(name, collectors, lines, stop)
        try:
            await until(lambda: all(len(c.subscriptions) >= 2 for c in collectors), "both subscribed", collectors)
            pick.alive = False
            loop = asyncio.get_running_loop()
            ends = loop.time() + 2 * FAILOVER_AFTER
            while loop.time() < ends:
                for frames in garbage:
                    pick.control.send_multipart(frames)
                await until(lambda: True, "", collectors)  # beat (the other) and read once
                await asyncio.sleep(0.05)
            await until(lambda: len(other.samples()) >= 2, "samples at the other collector", collectors)
            assert len(lines) == 1 and "silent for" in lines[0]
            assert not agent.done()
        finally:
            stop.set()
            await agent

    run(scenario)


def test_a_control_address_that_never_answers_is_a_silent_collector(zmq_context: zmq.Context) -> None:
    live = FakeCollector(zmq_context)
    nowhere = CollectorAddress(f"tcp://127.0.0.1:{unused_tcp_port()}", f"tcp://127.0.0.1:{unused_tcp_port()}")
    ingests = [nowhere.ingest, live.address.ingest]
    name = next(name for name in (f"node-{number:03}.test" for number in range(1000))
                if chosen_index(name, ingests) == 0)  # it would publish to the one that is not there
    lines: list[str] = []
    stop = asyncio.Event()

    async def scenario() -> None:
        agent = asyncio.create_task(run_agent(name, [nowhere, live.address], 0.05, stop=stop, sampler=FakeSampler(),
                                              failover_after=FAILOVER_AFTER, say=lines.append))
        try:
            await until(lambda: len(live.samples()) >= 3, "samples at the live collector", [live])
            assert lines and lines[0].startswith(f"servertrack agent {name}: collector {nowhere.ingest} silent for")
        finally:
            stop.set()
            await agent

    try:
        run(scenario)
    finally:
        live.close()


def test_with_curve_every_socket_to_every_collector_is_a_curve_client(zmq_context: zmq.Context) -> None:
    server_public, server_secret = zmq.curve_keypair()
    agent_public, agent_secret = zmq.curve_keypair()
    collectors = [FakeCollector(zmq_context, server_secret), FakeCollector(zmq_context, server_secret)]
    name = name_picking(1, collectors)
    lines: list[str] = []
    stop = asyncio.Event()
    keys = CollectorKeys(KeyPair(agent_public, agent_secret), server_public)

    async def scenario() -> None:
        agent = agent_running(name, collectors, lines, stop, curve=keys)
        try:
            # a plain socket would fail the CURVE handshake, and its subscriptions would never arrive
            await until(lambda: all(len(c.subscriptions) >= 2 for c in collectors), "both subscribed", collectors)
            await until(lambda: len(collectors[1].samples()) >= 2, "samples at the pick", collectors)
            collectors[1].alive = False
            await until(lambda: len(collectors[0].samples()) >= 2, "samples at the other, over CURVE", collectors)
        finally:
            stop.set()
            await agent

    try:
        run(scenario)
    finally:
        for collector in collectors:
            collector.close()


def test_one_collector_has_one_pub_and_at_most_one_control_socket_and_never_moves(zmq_context: zmq.Context) -> None:
    address = CollectorAddress(f"tcp://127.0.0.1:{unused_tcp_port()}", f"tcp://127.0.0.1:{unused_tcp_port()}")

    async def scenario() -> None:
        for control in (address.control, None):
            links = CollectorLinks(zmq_context, "n1", [CollectorAddress(address.ingest, control)],
                                   failover_after=FAILOVER_AFTER, say=pytest.fail)
            try:
                assert links.choice is None and len(links.subscribers) == (control is not None)
                assert links.controlled == (control is not None) and links.seconds_to_wake() is None
                await asyncio.sleep(2 * FAILOVER_AFTER)
                assert not links.reconsider() and links.current == 0 and links.moves == 0
            finally:
                links.close()

    run(scenario)


def test_unusable_addresses_are_refused_at_the_start(zmq_context: zmq.Context) -> None:
    good = CollectorAddress(f"tcp://127.0.0.1:{unused_tcp_port()}", f"tcp://127.0.0.1:{unused_tcp_port()}")
    for addresses, message in [
        ([good, CollectorAddress("tcp://:notaport", good.control)], "collector address tcp://:notaport"),
        ([good, CollectorAddress(good.ingest + "0", "tcp://:nope")], "control address tcp://:nope"),
        ([good, CollectorAddress("tcp://127.0.0.1:1")], "needs every one's control address"),
        ([], "no collector"),
    ]:
        with pytest.raises(AgentError, match=message):
            CollectorLinks(zmq_context, "n1", addresses)


def test_the_links_close_every_socket(zmq_context: zmq.Context) -> None:
    addresses = [CollectorAddress(f"tcp://127.0.0.1:{unused_tcp_port()}", f"tcp://127.0.0.1:{unused_tcp_port()}")
                 for _ in range(3)]

    async def scenario() -> None:
        links = CollectorLinks(zmq_context, "n1", addresses, failover_after=FAILOVER_AFTER)
        assert len(links.subscribers) == 3 and len(links.readable()) == 3
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(*links.readable())), 0.05)
        links.close()

    run(scenario)  # the zmq_context fixture fails its teardown if a socket was left open
