"""The agent daemon: one sample per tick (Agent), the tick schedule (next_deadline), and run_agent's lifecycle."""

from __future__ import annotations

import asyncio
import math
import random
import signal
import time

import pytest
import zmq
from agent_doubles import FakeClock, FakeSampler, unused_tcp_port
from hypothesis import example, given, settings
from hypothesis import strategies as st

from servertrack.agent.daemon import Agent, AgentError, next_deadline, run_agent
from servertrack.common.errors import ServerTrackError
from servertrack.common.node_messages import NodeHello, decode_message
from servertrack.common.protocol import NameCache, Sample, decode_sample

# --------------------------------------------------------------------------- Agent.tick


class Outbox:
    """The publish callable: keeps every frame; ``accept`` scripts what it reports back."""

    def __init__(self, accept: list[bool] | None = None) -> None:
        self.frames: list[bytes] = []
        self._accept = accept or []

    def __call__(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return self._accept[len(self.frames) - 1] if len(self.frames) <= len(self._accept) else True


def test_tick_publishes_one_decodable_frame_with_seq_from_zero() -> None:
    sampler = FakeSampler(loads=[(12.5, 43.0), (99.0, 44.5), (0.0, 100.0)], ips=["10.0.0.5", "2001:db8::5"])
    clock = FakeClock(start=1_700_000_000.25, step=0.5)
    outbox = Outbox()
    agent = Agent("node01.corp.internal", sampler, outbox, clock=clock)

    returned = [agent.tick() for _ in range(3)]

    assert len(outbox.frames) == 3
    names = NameCache()
    decoded = [decode_sample(frame, now=ts, names=names) for frame, ts in zip(outbox.frames, clock.readings)]
    assert [sample.seq for sample in decoded] == [0, 1, 2]
    assert [sample.ts for sample in decoded] == [1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.25]
    assert [(sample.cpu, sample.ram) for sample in decoded] == [(12.5, 43.0), (99.0, 44.5), (0.0, 100.0)]
    assert {sample.fqdn for sample in decoded} == {"node01.corp.internal"}
    assert all(sample.ips == ["10.0.0.5", "2001:db8::5"] for sample in decoded)
    # tick() returns exactly what went on the wire.
    assert decoded == returned
    assert agent.seq == 3


def test_tick_reads_the_clock_once_per_sample() -> None:
    clock = FakeClock(start=1_700_000_100.0, step=7.0)
    outbox = Outbox()
    agent = Agent("n1", FakeSampler(), outbox, clock=clock)
    first = agent.tick()
    second = agent.tick()
    assert clock.readings == [first.ts, second.ts] == [1_700_000_100.0, 1_700_000_107.0]


def test_seq_advances_even_when_a_frame_is_dropped() -> None:
    # A dropped frame must leave a gap in seq, so the collector can count the loss.
    outbox = Outbox(accept=[True, False, True])
    clock = FakeClock()
    agent = Agent("n1", FakeSampler(), outbox, clock=clock)
    for _ in range(3):
        agent.tick()
    names = NameCache()
    seqs = [decode_sample(frame, clock.readings[i], names).seq for i, frame in enumerate(outbox.frames)]
    assert seqs == [0, 1, 2]
    assert agent.seq == 3


# Canonical names: a letter first (so never an IP address), no trailing dot.
_names = st.from_regex(r"[a-z][a-z0-9._-]{0,39}[a-z0-9_-]|[a-z]", fullmatch=True)
_loads = st.floats(0.0, 100.0, allow_nan=False)
_ips = st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str), max_size=8, unique=True)


@settings(max_examples=100, deadline=None)
@given(_names, _loads, _loads, _ips, st.floats(0, 4e9, allow_nan=False))
def test_tick_round_trips_through_the_wire_protocol(name: str, cpu: float, ram: float, ips: list[str], now: float) -> None:
    outbox = Outbox()
    agent = Agent(name, FakeSampler(loads=[(cpu, ram)], ips=ips), outbox, clock=lambda: now)
    sent = agent.tick()
    assert decode_sample(outbox.frames[0], now, NameCache()) == Sample(name, now, cpu, ram, 0, ips) == sent


# --------------------------------------------------------------------------- next_deadline


def _grid_index(start: float, interval: float, deadline: float) -> int:
    k = round((deadline - start) / interval)
    assert math.isclose(deadline, start + k * interval, rel_tol=1e-12, abs_tol=1e-9), "deadline is off the grid"
    return k


@pytest.mark.parametrize(
    ("start", "interval", "now", "expected"),
    [
        (100.0, 1.0, 100.0, 101.0),  # exactly on a grid point: the next one, never now itself
        (100.0, 1.0, 100.4, 101.0),
        (100.0, 1.0, 100.999, 101.0),
        (100.0, 1.0, 101.0, 102.0),
        (100.0, 0.25, 100.3, 100.5),
        (0.0, 0.01, 0.09, 0.1),
    ],
)
def test_next_deadline_examples(start: float, interval: float, now: float, expected: float) -> None:
    deadline = next_deadline(start, interval, now)
    assert deadline > now
    assert math.isclose(deadline, expected, rel_tol=1e-12, abs_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(0.0, 2e9, allow_nan=False),
    interval=st.floats(0.01, 3600.0, allow_nan=False),
    ticks=st.integers(0, 10**6),
    fraction=st.one_of(st.just(0.0), st.floats(0.0, 1.0, exclude_max=True)),
)
@example(start=0.0, interval=0.01, ticks=9, fraction=0.0)
@example(start=1_700_000_000.0, interval=1.1, ticks=4998, fraction=0.0)
def test_next_deadline_is_the_first_grid_point_strictly_after_now(
    start: float, interval: float, ticks: int, fraction: float
) -> None:
    now = start + (ticks + fraction) * interval
    deadline = next_deadline(start, interval, now)
    assert deadline > now
    k = _grid_index(start, interval, deadline)
    assert k >= 1
    # The *first* such point: the one before it is not after now (up to float rounding).
    assert start + (k - 1) * interval <= now + 1e-9 * max(1.0, abs(now))


@settings(max_examples=25, deadline=None)
@given(
    start=st.floats(0.0, 1e6, allow_nan=False),
    interval=st.sampled_from([0.01, 0.1, 0.2, 0.25, 1.0, 1.1, 5.0, 60.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_schedule_does_not_drift_over_an_hour_of_ticks(start: float, interval: float, seed: int) -> None:
    # Each tick fires late by a random amount (the loop's latency plus the sampling work);
    # the schedule must stay on the grid instead of accumulating that lateness.
    jitter = random.Random(seed)
    deadline = start
    for expected_k in range(1, 3601):
        now = deadline + jitter.uniform(1e-4, 0.9) * interval
        deadline = next_deadline(start, interval, now)
        assert deadline > now
        assert _grid_index(start, interval, deadline) == expected_k
    assert math.isclose(deadline, start + 3600 * interval, rel_tol=1e-12, abs_tol=1e-6)


def test_a_long_suspension_skips_missed_ticks_instead_of_bunching_them() -> None:
    start, interval = 1000.0, 1.0
    fired = [next_deadline(start, interval, start)]  # 1001
    # Suspended (laptop lid, SIGSTOP) from just after 1001 until 1010.5: ticks 1002..1010 are missed.
    now = 1010.5
    upcoming = next_deadline(start, interval, now)
    assert upcoming == 1011.0
    fired.append(upcoming)
    # After the resume, ticks continue one interval apart: no burst of catch-up ticks.
    fired.append(next_deadline(start, interval, upcoming + 0.01))
    assert fired == [1001.0, 1011.0, 1012.0]


# --------------------------------------------------------------------------- run_agent


def _run(coro_factory, timeout: float = 10.0):
    """Run ``coro_factory()`` in a fresh loop with an overall safety timeout."""

    async def main():
        return await asyncio.wait_for(coro_factory(), timeout)

    return asyncio.run(main())


def test_run_agent_stops_promptly_and_returns_the_number_sent(sub_socket) -> None:
    _, port = sub_socket
    sampler = FakeSampler()
    stop = asyncio.Event()
    timing: dict[str, float] = {}

    async def scenario() -> int:
        loop = asyncio.get_running_loop()

        def set_stop() -> None:
            timing["stop"] = time.monotonic()
            stop.set()

        loop.call_later(0.4, set_stop)
        sent = await run_agent("n1", f"tcp://127.0.0.1:{port}", 0.05, stop=stop, sampler=sampler)
        timing["returned"] = time.monotonic()
        return sent

    sent = _run(scenario)
    assert timing["returned"] - timing["stop"] < 0.5
    assert sent == sampler.load_calls
    assert sent >= 2


def test_run_agent_stop_interrupts_a_long_interval() -> None:
    sampler = FakeSampler()
    stop = asyncio.Event()

    async def scenario() -> tuple[int, float]:
        asyncio.get_running_loop().call_later(0.2, stop.set)
        began = time.monotonic()
        sent = await run_agent("n1", f"tcp://127.0.0.1:{unused_tcp_port()}", 3600.0, stop=stop, sampler=sampler)
        return sent, time.monotonic() - began

    sent, took = _run(scenario)
    assert took < 1.5
    assert sent == sampler.load_calls <= 1


def test_run_agent_with_stop_already_set_sends_nothing() -> None:
    sampler = FakeSampler()
    stop = asyncio.Event()
    stop.set()

    async def scenario() -> int:
        return await run_agent("n1", f"tcp://127.0.0.1:{unused_tcp_port()}", 0.05, stop=stop, sampler=sampler)

    began = time.monotonic()
    assert _run(scenario) == 0
    assert time.monotonic() - began < 1.0
    assert sampler.load_calls == 0


def test_run_agent_publishes_consecutive_frames_to_the_collector(sub_socket) -> None:
    sub, port = sub_socket
    stop = asyncio.Event()
    received: list[bytes] = []

    async def reader() -> None:
        while len(received) < 3:
            while sub.poll(0):
                received.append(sub.recv())
            await asyncio.sleep(0.01)
        stop.set()

    async def scenario() -> int:
        task = asyncio.create_task(reader())
        try:
            return await run_agent("node-7", f"tcp://127.0.0.1:{port}", 0.05, stop=stop, sampler=FakeSampler())
        finally:
            task.cancel()

    sent = _run(scenario)
    names = NameCache()
    samples = [decode_sample(frame, time.time(), names) for frame in received]
    seqs = [sample.seq for sample in samples]
    assert len(samples) >= 3
    assert {sample.fqdn for sample in samples} == {"node-7"}
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[-1] < sent


def test_run_agent_rejects_a_malformed_endpoint() -> None:
    async def scenario() -> int:
        return await run_agent("n1", "tcp://:notaport", 1.0, stop=asyncio.Event(), sampler=FakeSampler())

    with pytest.raises(AgentError) as raised:
        _run(scenario)
    assert isinstance(raised.value, ServerTrackError)
    assert "tcp://:notaport" in str(raised.value)
    assert not isinstance(raised.value, zmq.ZMQError)


def test_run_agent_gives_back_the_signal_handlers_it_found() -> None:
    # stop_on_signals promises "the previous handlers come back on exit": an agent
    # embedded in a larger program must not leave SIGINT/SIGTERM changed.
    def previous_term(signum, frame) -> None:  # pragma: no cover - never delivered
        pass

    def previous_int(signum, frame) -> None:  # pragma: no cover - never delivered
        pass

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, previous_term)
    signal.signal(signal.SIGINT, previous_int)
    try:
        stop = asyncio.Event()
        stop.set()
        _run(lambda: run_agent("n1", f"tcp://127.0.0.1:{unused_tcp_port()}", 1.0, stop=stop, sampler=FakeSampler()))
        after = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert after == {signal.SIGTERM: previous_term, signal.SIGINT: previous_int}


class FakeNodeStats:
    """Stands in for NodeStatsCollector: fixed hello fields and a counted snapshot."""

    def __init__(self) -> None:
        self.snapshots = 0

    def hello_fields(self) -> dict[str, object]:
        return {"hostname": "n1", "boot_time": 1.0, "os": "Linux 6", "platform": "x86_64", "cpu_count": 2,
                "memory_total": 1024}

    def snapshot(self) -> dict[str, object]:
        from tests.node_fixtures import stats_body as stats

        self.snapshots += 1
        return stats()


def test_agent_with_node_stats_says_hello_sends_snapshots_every_n_samples_and_bye() -> None:
    clock = FakeClock(start=1_700_000_000.25, step=0.0)
    outbox = Outbox()
    agent = Agent("n1", FakeSampler(), outbox, clock=clock, node_stats=FakeNodeStats(), interval=2.0,  # type: ignore[arg-type]
                  stats_every=3, hello_every=60.0)
    for _ in range(7):
        agent.tick()
        clock.now += 2.0
    agent.bye()
    names = NameCache()
    messages = [decode_message(frame, clock.now, names) for frame in outbox.frames]
    kinds = [type(message).__name__[4:] if type(message).__name__.startswith("Node") else "Sample"
             for message in messages]
    assert kinds == ["Hello", "Sample", "Sample", "Sample", "Snapshot", "Sample", "Sample", "Sample", "Snapshot",
                     "Sample", "Bye"]
    assert [message.seq for message in messages] == list(range(11))
    hello = messages[0]
    assert isinstance(hello, NodeHello) and hello.info["interval"] == 2.0 and hello.info["agent_version"]
    assert agent.samples == 7 and agent.seq == 11


def test_hello_is_repeated_so_a_restarted_collector_relearns_the_node() -> None:
    clock = FakeClock(start=1_700_000_000.25, step=0.0)
    outbox = Outbox()
    agent = Agent("n1", FakeSampler(), outbox, clock=clock, node_stats=FakeNodeStats(), stats_every=0,  # type: ignore[arg-type]
                  hello_every=60.0)
    for _ in range(181):
        agent.tick()
        clock.now += 1.0
    hellos = [frame for frame in outbox.frames if isinstance(decode_message(frame, clock.now, NameCache()), NodeHello)]
    assert len(hellos) == 4  # at 0, 60, 120 and 180 s
