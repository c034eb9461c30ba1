"""The ``servertrack agent`` daemon: sample on absolute deadlines, publish, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import zmq

from ..common.errors import ServerTrackError
from ..common.protocol import Sample, encode_sample
from ..shutdown import stop_on_signals
from .publisher import SamplePublisher
from .sampler import LoadSampler


class Agent:
    """Builds and publishes one sample per tick; ``seq`` counts messages from 0."""

    def __init__(
        self,
        name: str,
        sampler: LoadSampler,
        publish: Callable[[bytes], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._sampler = sampler
        self._publish = publish
        self._clock = clock
        self.seq = 0

    def tick(self) -> Sample:
        """Sample the node now, publish it, and return what was sent."""
        cpu, ram = self._sampler.load()
        sample = Sample(self.name, self._clock(), cpu, ram, self.seq, self._sampler.ips())
        self._publish(encode_sample(sample))
        self.seq += 1
        return sample


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
    name: str, endpoint: str, interval: float, stop: asyncio.Event | None = None, sampler: LoadSampler | None = None
) -> int:
    """Publish samples every ``interval`` seconds until SIGINT/SIGTERM; return how many were sent.

    The collector need not be up: ZeroMQ connects (and reconnects) in the
    background and sends never block.
    """
    context = zmq.Context()
    try:
        try:
            publisher = SamplePublisher(context, endpoint)
        except zmq.ZMQError as error:
            raise AgentError(f"cannot use collector address {endpoint}: {error}") from None
        try:
            agent = Agent(name, sampler if sampler is not None else LoadSampler(), publisher.publish)
            with stop_on_signals(stop if stop is not None else asyncio.Event()) as stopping:
                await _tick_until(stopping, agent, interval)
            return agent.seq
        finally:
            publisher.close()
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
