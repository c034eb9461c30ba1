"""The ``servertrack agent`` daemon: sample on absolute deadlines, publish, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import zmq

from ..common.errors import ServerTrackError
from .. import __version__
from ..common.node_messages import encode_bye, encode_hello, encode_snapshot
from ..common.protocol import Sample, encode_sample
from ..common.settings import DEFAULT_STATS_EVERY
from ..shutdown import stop_on_signals
from .node_stats import NodeStatsCollector
from .publisher import SamplePublisher
from .sampler import LoadSampler


HELLO_EVERY_SECONDS = 60.0
# How long a stopping agent waits for its bye to leave (well within the 2 s stop budget).
BYE_LINGER_MS = 500


class Agent:
    """Publishes one sample per tick; ``seq`` counts every message (of any kind) from 0.

    With ``node_stats``, the agent also announces itself (``hello``) on its
    first tick and every ``hello_every`` seconds after (so a restarted
    collector relearns it), sends a stats snapshot every ``stats_every``
    samples (0: never), and can say ``bye``.
    """

    def __init__(
        self,
        name: str,
        sampler: LoadSampler,
        publish: Callable[[bytes], bool],
        clock: Callable[[], float] = time.time,
        node_stats: NodeStatsCollector | None = None,
        interval: float = 1.0,
        stats_every: int = DEFAULT_STATS_EVERY,
        hello_every: float = HELLO_EVERY_SECONDS,
    ) -> None:
        self.name = name
        self._sampler = sampler
        self._publish = publish
        self._clock = clock
        self._node_stats = node_stats
        self._interval = interval
        self._stats_every = stats_every
        self._hello_every = hello_every
        self._next_hello: float | None = None
        self.seq = 0
        self.samples = 0
        self.oversized_snapshots = 0

    def _send(self, frame: bytes) -> None:
        self._publish(frame)
        self.seq += 1

    def hello(self) -> None:
        """Announce this node (no-op without ``node_stats``)."""
        if self._node_stats is None:
            return
        now = self._clock()
        info = {**self._node_stats.hello_fields(), "agent_version": __version__, "interval": self._interval}
        self._send(encode_hello(self.name, now, self.seq, self._sampler.ips(), info))
        self._next_hello = now + self._hello_every

    def bye(self) -> None:
        """Say this node is stopping (no-op without ``node_stats``)."""
        if self._node_stats is not None:
            self._send(encode_bye(self.name, self._clock(), self.seq))

    def tick(self) -> Sample:
        """Sample the node now, publish it (with a hello or snapshot when due), and return the sample."""
        if self._node_stats is not None and (self._next_hello is None or self._clock() >= self._next_hello):
            self.hello()
        cpu, ram = self._sampler.load()
        sample = Sample(self.name, self._clock(), cpu, ram, self.seq, self._sampler.ips())
        self._send(encode_sample(sample))
        self.samples += 1
        if self._node_stats is not None and self._stats_every and self.samples % self._stats_every == 0:
            self._send_snapshot(self._node_stats)
        return sample

    def _send_snapshot(self, node_stats: NodeStatsCollector) -> None:
        try:
            frame = encode_snapshot(self.name, self._clock(), self.seq, node_stats.snapshot())
        except ValueError:  # over the frame limit: cannot happen within the schema's bounds
            self.oversized_snapshots += 1
            return
        self._send(frame)


def next_deadline(start: float, interval: float, now: float) -> float:
    """The first tick deadline ``start + k * interval`` strictly after ``now``.

    Ticks sit on a fixed grid, so the schedule never drifts; ticks missed
    (the process was suspended) are skipped, not bunched up.
    """
    ticks = int((now - start) // interval) + 1
    while start + ticks * interval <= now:  # float rounding can land exactly on now
        ticks += 1
    return start + ticks * interval


class AgentError(ServerTrackError):
    """The agent cannot start (for example, a malformed collector address)."""


async def run_agent(
    name: str,
    endpoint: str,
    interval: float,
    stop: asyncio.Event | None = None,
    sampler: LoadSampler | None = None,
    node_stats: NodeStatsCollector | None = None,
    stats_every: int = DEFAULT_STATS_EVERY,
) -> int:
    """Publish samples every ``interval`` seconds until SIGINT/SIGTERM; return how many samples were sent.

    The collector need not be up: ZeroMQ connects (and reconnects) in the
    background and sends never block. With ``node_stats`` the agent also
    sends hellos, snapshots and, when stopped, a bye.
    """
    context = zmq.Context()
    try:
        try:
            publisher = SamplePublisher(context, endpoint)
        except zmq.ZMQError as error:
            raise AgentError(f"cannot use collector address {endpoint}: {error}") from None
        linger = 0
        try:
            agent = Agent(name, sampler if sampler is not None else LoadSampler(), publisher.publish,
                          node_stats=node_stats, interval=interval, stats_every=stats_every)
            with stop_on_signals(stop if stop is not None else asyncio.Event()) as stopping:
                await _tick_until(stopping, agent, interval)
            if node_stats is not None:
                agent.bye()
                linger = BYE_LINGER_MS
            return agent.samples
        finally:
            publisher.close(linger)
    finally:
        context.term()


async def _tick_until(stop: asyncio.Event, agent: Agent, interval: float) -> None:
    loop = asyncio.get_running_loop()
    # The first sample waits one interval: cpu_percent then measures a real
    # interval, and the PUB socket has had time to connect.
    start = loop.time()
    next_tick = start + interval
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_tick - loop.time()))
        if stop.is_set():
            return
        agent.tick()
        next_tick = next_deadline(start, interval, loop.time())
