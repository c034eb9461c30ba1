"""The ``servertrack agent`` daemon: sample on absolute deadlines, publish, obey pause and resume, stop on a signal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from .. import __version__
from ..common.control_messages import ControlMessage
from ..common.node_messages import encode_bye, encode_hello, encode_snapshot
from ..common.nodes import paused_hello_period
from ..common.protocol import Sample, encode_sample
from ..common.settings import DEFAULT_STATS_EVERY
from ..shutdown import stop_on_signals
from .collector_choice import DEFAULT_FAILOVER_AFTER, CollectorAddress
from .collector_links import AgentError, CollectorLinks, say_on_stderr
from .node_stats import NodeStatsCollector
from .publisher import CollectorKeys
from .sampler import LoadSampler

__all__ = ["BYE_LINGER_MS", "HELLO_EVERY_SECONDS", "Agent", "AgentError", "next_deadline", "run_agent"]

HELLO_EVERY_SECONDS = 60.0
# How long a stopping agent waits for its bye to leave (well within the 2 s stop budget).
BYE_LINGER_MS = 500


class Agent:
    """Publishes one sample per tick; ``seq`` counts every message (of any kind) from 0.

    With ``node_stats``, the agent also announces itself (``hello``) on its
    first tick and every ``hello_every`` seconds after (so a restarted
    collector relearns it), sends a stats snapshot every ``stats_every``
    samples (0: never), and can say ``bye``.

    ``pause()`` stops the sampling: a paused agent's ticks read nothing and
    send no samples or snapshots, only a hello every ``paused_hello_period``
    (2 intervals, so the collector sees it alive), each saying ``paused``.
    Pausing and resuming say hello at once, so the collector learns the new
    state without waiting for the next one. ``controlled``: the agent listens
    to a control channel, so its hellos say whether it is paused (an agent
    without one leaves that out, and the collector never asks it to pause).
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
        controlled: bool = False,
    ) -> None:
        self.name = name
        self.controlled = controlled
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
        self.paused = False

    def _send(self, frame: bytes) -> None:
        self._publish(frame)
        self.seq += 1

    def hello(self) -> None:
        """Announce this node (no-op without ``node_stats``)."""
        if self._node_stats is None:
            return
        now = self._clock()
        info = {**self._node_stats.hello_fields(), "agent_version": __version__, "interval": self._interval}
        paused = self.paused if self.controlled else None
        self._send(encode_hello(self.name, now, self.seq, self._sampler.ips(), info, paused=paused))
        period = paused_hello_period(self._interval, self._hello_every) if self.paused else self._hello_every
        self._next_hello = now + period

    def bye(self) -> None:
        """Say this node is stopping (no-op without ``node_stats``)."""
        if self._node_stats is not None:
            self._send(encode_bye(self.name, self._clock(), self.seq))

    def pause(self) -> bool:
        """Stop sampling (and say so); False if already paused."""
        if self.paused:
            return False
        self.paused = True
        self.hello()
        return True

    def resume(self) -> bool:
        """Sample again (and say so); False if not paused.

        The CPU reading is taken once now, so the first sample after a resume
        covers the time since the resume, not the whole pause.
        """
        if not self.paused:
            return False
        self.paused = False
        self._sampler.load()
        self.hello()
        return True

    def obey(self, message: ControlMessage) -> bool:
        """Apply a control message; True if it changed the state (never for a heartbeat)."""
        if not message.command:
            return False
        return self.pause() if message.paused else self.resume()

    def tick(self) -> Sample | None:
        """Sample the node now, publish it (with a hello or snapshot when due), and return the sample;
        while paused, only say hello when due, and return None."""
        if self._node_stats is not None and (self._next_hello is None or self._clock() >= self._next_hello):
            self.hello()
        if self.paused:
            return None
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


async def run_agent(
    name: str,
    endpoint: str | Sequence[CollectorAddress],
    interval: float,
    stop: asyncio.Event | None = None,
    sampler: LoadSampler | None = None,
    node_stats: NodeStatsCollector | None = None,
    stats_every: int = DEFAULT_STATS_EVERY,
    control: str | None = None,
    hello_every: float = HELLO_EVERY_SECONDS,
    curve: CollectorKeys | None = None,
    failover_after: float = DEFAULT_FAILOVER_AFTER,
    say: Callable[[str], None] = say_on_stderr,
) -> int:
    """Publish samples every ``interval`` seconds until SIGINT/SIGTERM; return how many samples were sent.

    ``endpoint`` is the collector's ingest address (with ``control``, its
    control address), or several collectors (``CollectorAddress``, each with
    its control address): then the agent publishes to the one its name picks
    among those heard from within ``failover_after`` seconds, and moves (saying
    so with ``say``) when that changes; see ``collector_links``.

    The collector need not be up: ZeroMQ connects (and reconnects) in the
    background and sends never block. With ``node_stats`` the agent also
    sends hellos, snapshots and, when stopped, a bye. With a control address
    it pauses and resumes when told to. With ``curve`` every connection is a
    CURVE client of the collectors (one collector key for all); a refused
    key or a wrong collector key is logged (once a minute), never fatal.
    """
    collectors = [CollectorAddress(endpoint, control)] if isinstance(endpoint, str) else list(endpoint)
    context = zmq.Context()
    try:
        links = CollectorLinks(context, name, collectors, failover_after, curve=curve, say=say)
        linger = 0
        try:
            agent = Agent(name, sampler if sampler is not None else LoadSampler(), links.publish,
                          node_stats=node_stats, interval=interval, stats_every=stats_every, hello_every=hello_every,
                          controlled=links.controlled)
            with stop_on_signals(stop if stop is not None else asyncio.Event()) as stopping:
                await _tick_until(stopping, agent, interval, links)
            if node_stats is not None:
                agent.bye()
                linger = BYE_LINGER_MS
            return agent.samples
        finally:
            links.close(linger)
    finally:
        context.term()


async def _tick_until(stop: asyncio.Event, agent: Agent, interval: float, links: CollectorLinks) -> None:
    """Tick on the grid until ``stop``; between ticks, wake at once for a control message, and when the
    links ask (a collector would go down unheard, or a hello is due after a move)."""
    loop = asyncio.get_running_loop()
    # The first sample waits one interval: cpu_percent then measures a real
    # interval, and the PUB socket has had time to connect.
    start = loop.time()
    next_tick = start + interval
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            timeout = next_tick - loop.time()
            wake = links.seconds_to_wake()
            if wake is not None:
                timeout = min(timeout, wake)
            await asyncio.wait({stopping, *links.readable()}, timeout=max(0.0, timeout),
                               return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                return
            commands = links.receive()
            if links.reconsider() or links.greeting_due():
                # the new collector learns the node (and re-asserts its pause state) from a hello: one at
                # once, and one when the new connection is up (PUB drops what is sent before)
                agent.hello()
            if _obey(agent, commands):
                # resumed: the first sample comes one full interval later (cpu_percent measures it)
                start = loop.time()
                next_tick = start + interval
                continue
            if loop.time() >= next_tick:
                agent.tick()
                next_tick = next_deadline(start, interval, loop.time())
    finally:
        stopping.cancel()


def _obey(agent: Agent, messages: list[ControlMessage]) -> bool:
    """Apply ``messages`` in order; True if the agent was resumed by them (and is sampling)."""
    resumed = False
    for message in messages:
        if message.command and agent.obey(message):
            resumed = not message.paused
    return resumed and not agent.paused
