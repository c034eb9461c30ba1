"""The agent's control handling: pause and resume in ``Agent`` (fake clock), the control subscriber
over real ZeroMQ sockets on 127.0.0.1, and ``run_agent`` obeying a pause within a fraction of an interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import msgpack
import pytest
import zmq
import zmq.asyncio
from agent_doubles import FakeClock, FakeSampler, unused_tcp_port

from servertrack.agent.control import LOG_EVERY_SECONDS, ControlSubscriber
from servertrack.agent.daemon import Agent, AgentError, run_agent
from servertrack.common.control_messages import ControlMessage, encode_control
from servertrack.common.node_messages import NodeBye, NodeHello, NodeSnapshot, decode_message
from servertrack.common.protocol import NameCache, Sample
from tests.node_fixtures import HELLO_INFO, stats_body

WAIT_SECONDS = 5.0


class Outbox:
    """The publish callable: keeps every frame."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    def messages(self, now: float) -> list[object]:
        names = NameCache()
        return [decode_message(frame, now, names) for frame in self.frames]


class FakeNodeStats:
    """Stands in for NodeStatsCollector: fixed hello fields, counted snapshots."""

    def __init__(self) -> None:
        self.snapshots = 0

    def hello_fields(self) -> dict[str, object]:
        return {key: HELLO_INFO[key] for key in ("hostname", "boot_time", "os", "platform", "cpu_count",
                                                 "memory_total")}

    def snapshot(self) -> dict[str, object]:
        self.snapshots += 1
        return stats_body()


def kinds(messages: list[object]) -> list[str]:
    return [{Sample: "sample", NodeHello: "hello", NodeSnapshot: "snapshot", NodeBye: "bye"}[type(m)]
            for m in messages]


# --------------------------------------------------------------------------- Agent.pause / resume


def paused_agent(interval: float = 1.0) -> tuple[Agent, Outbox, FakeSampler, FakeNodeStats, FakeClock]:
    clock = FakeClock(start=1_800_000_000.0, step=0.0)
    outbox, sampler, stats = Outbox(), FakeSampler(), FakeNodeStats()
    agent = Agent("n1", sampler, outbox, clock=clock, node_stats=stats, interval=interval,  # type: ignore[arg-type]
                  stats_every=2, hello_every=60.0, controlled=True)
    return agent, outbox, sampler, stats, clock


def test_a_paused_agent_samples_nothing_and_says_hello_every_two_intervals() -> None:
    agent, outbox, sampler, stats, clock = paused_agent(interval=1.0)
    agent.tick()  # hello, sample
    clock.now += 1.0
    assert agent.pause()
    loads_before, snapshots_before = sampler.load_calls, stats.snapshots
    sent_before = len(outbox.frames)
    results = []
    for _ in range(10):
        clock.now += 1.0
        results.append(agent.tick())
    assert results == [None] * 10
    assert (sampler.load_calls, stats.snapshots) == (loads_before, snapshots_before)  # no psutil reads
    messages = outbox.messages(clock.now)
    # the pause is announced at once, then one hello every 2 intervals, each saying "paused"
    assert kinds(messages) == ["hello", "sample", "hello"] + ["hello"] * 5
    paused_hellos = messages[2:]
    assert all(isinstance(m, NodeHello) and m.paused for m in paused_hellos)
    assert [m.ts - paused_hellos[0].ts for m in paused_hellos] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]  # type: ignore[attr-defined]
    assert len(outbox.frames) - sent_before == 5
    assert agent.samples == 1


def test_resume_says_hello_and_sampling_goes_on() -> None:
    agent, outbox, sampler, _, clock = paused_agent()
    agent.tick()
    agent.pause()
    clock.now += 5.0
    loads_before = sampler.load_calls
    assert agent.resume()
    assert sampler.load_calls == loads_before + 1  # the CPU reading starts afresh at the resume
    resumed_hello = outbox.messages(clock.now)[-1]
    assert isinstance(resumed_hello, NodeHello) and not resumed_hello.paused
    clock.now += 1.0
    assert isinstance(agent.tick(), Sample)
    assert kinds(outbox.messages(clock.now))[-1] == "snapshot"  # the 2nd sample: stats every 2 samples


def test_pause_and_resume_are_idempotent() -> None:
    agent, outbox, _, _, _ = paused_agent()
    assert not agent.resume()
    assert agent.pause() and not agent.pause()
    assert agent.resume() and not agent.resume()
    assert kinds(outbox.messages(1_800_000_000.0)) == ["hello", "hello"]
    assert agent.obey(ControlMessage("pause", "n1", 0.0)) and agent.paused
    assert agent.obey(ControlMessage("resume", "*", 0.0)) and not agent.paused


def test_a_heartbeat_is_never_obeyed() -> None:
    agent, outbox, _, _, _ = paused_agent()
    agent.pause()
    sent = len(outbox.frames)
    assert not agent.obey(ControlMessage("alive", "*", 0.0)) and agent.paused  # not read as "resume"
    assert len(outbox.frames) == sent


def test_a_paused_agent_without_node_stats_sends_nothing_at_all() -> None:
    outbox, sampler = Outbox(), FakeSampler()
    agent = Agent("n1", sampler, outbox, clock=FakeClock())
    agent.pause()
    assert agent.tick() is None and outbox.frames == [] and sampler.load_calls == 0


# --------------------------------------------------------------------------- ControlSubscriber


class Collector:
    """What the agent connects to for control: an XPUB bound on 127.0.0.1 (it sees subscriptions)."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.subscriptions: list[bytes] = []

    def wait_for_subscriptions(self, count: int) -> list[bytes]:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.subscriptions) < count:
            assert time.monotonic() < deadline, f"subscriptions so far: {self.subscriptions}"
            if self.socket.poll(50):
                self.subscriptions.append(self.socket.recv())
        return self.subscriptions

    async def subscribed(self, count: int) -> list[bytes]:
        """``wait_for_subscriptions`` without blocking the event loop (the agent runs on it)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.subscriptions) < count:
            assert time.monotonic() < deadline, f"subscriptions so far: {self.subscriptions}"
            while self.socket.poll(0):
                self.subscriptions.append(self.socket.recv())
            await asyncio.sleep(0.01)
        return self.subscriptions

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


@pytest.fixture
def control_collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coroutine_factory, timeout: float = 15.0):
    async def main():
        return await asyncio.wait_for(coroutine_factory(), timeout)
    return asyncio.run(main())


async def receive_until(subscriber: ControlSubscriber, count: int) -> list[ControlMessage]:
    """What the subscriber yields, waiting (on its readable future) until it dropped or kept ``count``."""
    got: list[ControlMessage] = []
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while len(got) + sum(subscriber.dropped.values()) < count:
        assert asyncio.get_running_loop().time() < deadline, (got, subscriber.dropped)
        future = subscriber.readable()
        try:
            await asyncio.wait_for(future, 0.2)
        except asyncio.TimeoutError:
            continue
        got.extend(subscriber.receive())
    return got


def test_the_subscriber_takes_its_own_and_the_all_nodes_messages_only(control_collector: Collector) -> None:
    async def scenario() -> list[ControlMessage]:
        context = zmq.asyncio.Context()
        subscriber = ControlSubscriber(context, control_collector.endpoint, "web")
        try:
            assert sorted(control_collector.wait_for_subscriptions(2)) == [b"\x01*\0", b"\x01web\0"]
            control_collector.send(encode_control(True, "web-01", 1.0))  # another node, "web" is its prefix
            control_collector.send(encode_control(True, "we", 2.0))
            control_collector.send(encode_control(True, "web", 3.0))
            control_collector.send(encode_control(False, "*", 4.0))
            got = await receive_until(subscriber, 2)
            await asyncio.sleep(0.1)
            got.extend(subscriber.receive())
            assert not subscriber.dropped
            return got
        finally:
            subscriber.close()
            context.term()

    assert run(scenario) == [ControlMessage("pause", "web", 3.0), ControlMessage("resume", "*", 4.0)]


def test_malformed_messages_are_dropped_counted_and_logged_once_a_minute(
    control_collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    ticker = Ticker()
    bad = [
        [b"web\0"],  # one frame
        [b"web\0", b"\xc1garbage"],
        [b"web\0", msgpack.packb({"v": 1, "kind": "reboot", "node": "web", "ts": 1.0})],
        [b"web\0", msgpack.packb({"v": 1, "kind": "pause", "node": "db", "ts": 1.0})],  # re-addressed
        [b"web\0", b"\x00" * 5000],  # over the size limit
        [b"*\0", b"", b""],
    ]

    async def scenario() -> tuple[list[ControlMessage], dict[str, int], list[str]]:
        context = zmq.asyncio.Context()
        subscriber = ControlSubscriber(context, control_collector.endpoint, "web", clock=ticker)
        try:
            control_collector.wait_for_subscriptions(2)
            with caplog.at_level(logging.WARNING, logger="servertrack.agent.control"):
                for frames in bad:
                    control_collector.send(frames)
                control_collector.send(encode_control(True, "web", 5.0))  # still obeyed after the garbage
                got = await receive_until(subscriber, len(bad) + 1)
                logged_at_first = [record.getMessage() for record in caplog.records]
                ticker.now += LOG_EVERY_SECONDS
                control_collector.send([b"web\0", b"\xc1"])
                await receive_until(subscriber, len(bad) + 1)  # drops only, now
                logged = [record.getMessage() for record in caplog.records]
            assert len(logged_at_first) == 1 and "dropped" in logged_at_first[0]
            assert len(logged) == 2  # a minute later, the next drop is logged again
            return got, dict(subscriber.dropped), logged
        finally:
            subscriber.close()
            context.term()

    got, dropped, logged = run(scenario)
    assert got == [ControlMessage("pause", "web", 5.0)]
    assert dropped == {"bad_frame": 2, "not_msgpack": 2, "unknown_kind": 1, "bad_topic": 1, "too_large": 1}
    assert "not_msgpack 2" in logged[-1]


def test_close_logs_the_drops_not_logged_yet(control_collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        context = zmq.asyncio.Context()
        subscriber = ControlSubscriber(context, control_collector.endpoint, "web", clock=Ticker())
        control_collector.wait_for_subscriptions(2)
        with caplog.at_level(logging.WARNING, logger="servertrack.agent.control"):
            for _ in range(3):
                control_collector.send([b"web\0", b"\xc1"])
            await receive_until(subscriber, 3)
            subscriber.close()
        context.term()

    run(scenario)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and "not_msgpack 3" in messages[-1]


def test_frames_over_the_socket_limit_cut_the_connection_and_the_agent_goes_on(control_collector: Collector) -> None:
    async def scenario() -> list[ControlMessage]:
        context = zmq.asyncio.Context()
        subscriber = ControlSubscriber(context, control_collector.endpoint, "web")
        try:
            control_collector.wait_for_subscriptions(2)
            control_collector.send([b"web\0", b"\x00" * (1024 * 1024)])  # libzmq drops the connection
            deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
            got: list[ControlMessage] = []
            while not got:  # it reconnects (and subscribes again); a later message gets through
                assert asyncio.get_running_loop().time() < deadline
                control_collector.send(encode_control(True, "web", 1.0))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(subscriber.readable(), 0.05)
                got = subscriber.receive()
            assert subscriber.reconnects == 1
            return got
        finally:
            subscriber.close()
            context.term()

    assert run(scenario)[0] == ControlMessage("pause", "web", 1.0)


# --------------------------------------------------------------------------- run_agent with a control channel


def test_run_agent_pauses_at_once_and_resumes_on_command(control_collector: Collector, sub_socket) -> None:
    ingest, port = sub_socket
    interval = 0.5
    stop = asyncio.Event()
    names = NameCache()
    log: list[tuple[float, object]] = []  # (monotonic receive time, message)

    async def read_ingest(until: float, enough: Callable[[], bool] = lambda: False) -> None:
        """Log what arrives until ``until`` (loop time), or sooner once ``enough()`` holds."""
        loop = asyncio.get_running_loop()
        while loop.time() < until and not enough():
            while ingest.poll(0):
                log.append((time.monotonic(), decode_message(ingest.recv(), time.time(), names)))
            await asyncio.sleep(0.005)

    def samples_since(at: float) -> int:
        return sum(isinstance(message, Sample) for received, message in log if received >= at)

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        agent = asyncio.create_task(run_agent("ctl-agent", f"tcp://127.0.0.1:{port}", interval, stop=stop,
                                              sampler=FakeSampler(), node_stats=FakeNodeStats(),  # type: ignore[arg-type]
                                              stats_every=0, control=control_collector.endpoint))
        try:
            await control_collector.subscribed(2)
            started = time.monotonic()
            await read_ingest(loop.time() + 3 * interval, lambda: samples_since(started) >= 1)
            assert any(isinstance(message, Sample) for _, message in log)
            # pause a quarter into an interval, well before the next tick
            await read_ingest(loop.time() + interval / 4)
            paused_at = time.monotonic()
            control_collector.send(encode_control(True, "ctl-agent", time.time()))
            await read_ingest(loop.time() + 5 * interval)
            after = [(at, message) for at, message in log if at >= paused_at]
            first_hello = next(at for at, message in after if isinstance(message, NodeHello) and message.paused)
            assert first_hello - paused_at < interval / 2, "the agent waited for a tick to obey"
            assert sum(isinstance(message, Sample) for at, message in after) <= 1  # one may have been on its way
            assert not any(isinstance(message, Sample) for at, message in after if at > first_hello)
            resumed_at = time.monotonic()
            control_collector.send(encode_control(False, "*", time.time()))
            await read_ingest(loop.time() + 3 * interval, lambda: samples_since(resumed_at) >= 2)
            resumed = [(at, message) for at, message in log if at >= resumed_at]
            assert isinstance(resumed[0][1], NodeHello) and not resumed[0][1].paused
            samples = [at for at, message in resumed if isinstance(message, Sample)]
            assert len(samples) >= 2
            assert samples[0] - resumed_at >= interval * 0.8  # a full interval after the resume
        finally:
            stop.set()
            sent = await agent
        return sent

    run(scenario, timeout=30)


def test_run_agent_rejects_a_malformed_control_address() -> None:
    async def scenario() -> int:
        return await run_agent("n1", f"tcp://127.0.0.1:{unused_tcp_port()}", 1.0, stop=asyncio.Event(),
                               sampler=FakeSampler(), control="tcp://:notaport")

    with pytest.raises(AgentError, match="control address tcp://:notaport"):
        run(scenario)
