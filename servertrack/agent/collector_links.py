"""The agent's sockets to its collectors: a PUB to the one it publishes to, and control SUBs.

With one collector: one PUB to its ingest address and, if it has a control
address, one control SUB (as always). With several: one PUB to the one
``CollectorChoice`` picks, and one control SUB to *every* collector's control
address, so the agent hears each one's heartbeats and commands; it obeys
commands only from the collector it publishes to. When the pick changes
(``reconsider``), the PUB to the old collector is closed, one to the new
collector opened, and a line on stderr says why. The agent then says hello at
once and again once the new connection is up (``greeting_due``): PUB drops
what is sent before the collector's subscription has arrived, and the
collector learns the node (and re-asserts its pause state) from a hello.
Every socket is secured the same way (``curve``: one collector key for all
the collectors).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio

from ..common.control_messages import ControlMessage
from ..common.errors import ServerTrackError
from .collector_choice import DEFAULT_FAILOVER_AFTER, CollectorAddress, CollectorChoice
from .control import ControlSubscriber
from .publisher import CollectorKeys, SamplePublisher

# After a move: the hello that follows the new connection's handshake waits this long (the collector's
# subscription arrives just after the handshake); until the handshake, the agent looks every POLL seconds,
# for at most WATCH seconds (then only when it wakes anyway: ticks, control messages).
GREETING_DELAY_SECONDS = 0.05
HANDSHAKE_POLL_SECONDS = 0.1
HANDSHAKE_WATCH_SECONDS = 10.0


class AgentError(ServerTrackError):
    """The agent cannot start (for example, a malformed collector address)."""


def say_on_stderr(line: str) -> None:
    """Print one line on stderr at once."""
    print(line, file=sys.stderr, flush=True)


class CollectorLinks:
    """The PUB to the current collector and the control SUBs (see the module); ``current`` is the index,
    in ``collectors``, of the collector published to, and ``moves`` counts how often it changed."""

    def __init__(
        self,
        context: zmq.Context[Any],
        name: str,
        collectors: Sequence[CollectorAddress],
        failover_after: float = DEFAULT_FAILOVER_AFTER,
        curve: CollectorKeys | None = None,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = say_on_stderr,
    ) -> None:
        if not collectors:
            raise AgentError("no collector to publish to")
        if len(collectors) > 1 and any(address.control is None for address in collectors):
            raise AgentError("an agent given several collectors needs every one's control address")
        self.name = name
        self.collectors = tuple(collectors)
        self.moves = 0
        self._context = context
        self._curve = curve
        self._say = say
        self._clock = clock
        self._moved_at: float | None = None  # after a move, until the greeting: when it moved
        self._connected_at: float | None = None  # and when the new connection's handshake was seen
        self.choice = (CollectorChoice(name, [address.ingest for address in collectors], failover_after, clock)
                       if len(collectors) > 1 else None)
        self.current = self.choice.pick() if self.choice is not None else 0
        self.subscribers: dict[int, ControlSubscriber] = {}
        self._readable: dict[int, asyncio.Future[Any]] = {}
        asynchronous = zmq.asyncio.Context.shadow(context.underlying)
        try:
            for index, address in enumerate(self.collectors):
                if address.control is not None:
                    try:
                        self.subscribers[index] = ControlSubscriber(asynchronous, address.control, name, clock=clock,
                                                                    curve=curve)
                    except zmq.ZMQError as error:
                        raise AgentError(f"cannot use control address {address.control}: {error}") from None
            for index, address in enumerate(self.collectors):
                if index != self.current:
                    self._check_ingest(address.ingest)
            self._publisher = self._open_publisher(self.current)
        except AgentError:
            self._close_subscribers()
            raise

    @property
    def controlled(self) -> bool:
        """Whether the agent listens to a control channel (then its hellos say whether it is paused)."""
        return bool(self.subscribers)

    def _check_ingest(self, endpoint: str) -> None:
        """Refuse at the start an ingest address ZeroMQ cannot connect to (not one that is merely down)."""
        socket = self._context.socket(zmq.PUB)
        try:
            socket.connect(endpoint)
        except zmq.ZMQError as error:
            raise AgentError(f"cannot use collector address {endpoint}: {error}") from None
        finally:
            socket.close(linger=0)

    def _open_publisher(self, index: int) -> SamplePublisher:
        endpoint = self.collectors[index].ingest
        try:
            return SamplePublisher(self._context, endpoint, curve=self._curve)
        except zmq.ZMQError as error:
            raise AgentError(f"cannot use collector address {endpoint}: {error}") from None

    def publish(self, frame: bytes) -> bool:
        """Send one frame to the current collector now; False if ZeroMQ had to drop it."""
        return self._publisher.publish(frame)

    def readable(self) -> set[asyncio.Future[Any]]:
        """Futures, one per control subscriber, each done when that one has something to read (see
        ``ControlSubscriber.readable``); the same ones until they are done."""
        for index, subscriber in self.subscribers.items():
            future = self._readable.get(index)
            if future is None or future.done():
                self._readable[index] = subscriber.readable()
        return set(self._readable.values())

    def receive(self) -> list[ControlMessage]:
        """Read every subscriber that has something: note which collectors were heard from, and return
        the commands (pause, resume) of the current one, oldest first. Heartbeats are never returned."""
        commands: list[ControlMessage] = []
        for index, future in list(self._readable.items()):
            if not future.done():
                continue
            del self._readable[index]
            if not future.cancelled():
                future.result()  # raises what the poll raised (the socket failed)
            messages = self.subscribers[index].receive()
            if messages and self.choice is not None:
                self.choice.heard(index)
            if index == self.current:
                commands.extend(message for message in messages if message.command)
        return commands

    def seconds_to_wake(self) -> float | None:
        """Seconds until the agent should look again (``reconsider``, ``greeting_due``) though nothing is
        heard: when the pick may change, or the greeting after a move be due (None: only on hearing something)."""
        waits = []
        if self.choice is not None and (change := self.choice.seconds_to_change()) is not None:
            waits.append(change)
        now = self._clock()
        if self._connected_at is not None:
            waits.append(max(0.0, self._connected_at + GREETING_DELAY_SECONDS - now))
        elif self._moved_at is not None and now - self._moved_at < HANDSHAKE_WATCH_SECONDS:
            waits.append(HANDSHAKE_POLL_SECONDS)
        return min(waits) if waits else None

    def greeting_due(self) -> bool:
        """After a move: True once, when the new connection has been up for ``GREETING_DELAY_SECONDS`` (say
        hello then: the one said at the move itself is most likely dropped)."""
        if self._moved_at is None:
            return False
        now = self._clock()
        if self._connected_at is None:
            handshakes = self._publisher.handshakes
            if handshakes is not None:
                handshakes.check()
            if handshakes is None or handshakes.connected:
                self._connected_at = now
            return False
        if now < self._connected_at + GREETING_DELAY_SECONDS:
            return False
        self._moved_at = self._connected_at = None
        return True

    def reconsider(self) -> bool:
        """Move the PUB to the collector picked now, if that changed; True if it moved."""
        if self.choice is None:
            return False
        pick = self.choice.pick()
        if pick == self.current:
            return False
        reason = self.choice.move_reason(self.current, pick)
        try:
            publisher = self._open_publisher(pick)
        except AgentError as error:  # a resource limit: the addresses were checked at the start
            self.choice.set_aside(pick)
            self._say(f"servertrack agent {self.name}: {error}; it is set aside")
            return False
        self._publisher.close()
        self._publisher = publisher
        self.current = pick
        self.moves += 1
        self._moved_at, self._connected_at = self._clock(), None
        address = self.collectors[pick]
        self._say(f"servertrack agent {self.name}: {reason}; publishing to {address.ingest} "
                  f"(control {address.control})")
        return True

    def close(self, linger_ms: int = 0) -> None:
        """Close every socket, waiting at most ``linger_ms`` for the frames queued to the current collector."""
        self._close_subscribers()
        self._publisher.close(linger_ms)

    def _close_subscribers(self) -> None:
        for future in self._readable.values():
            future.cancel()
        self._readable.clear()
        for subscriber in self.subscribers.values():
            subscriber.close()
        self.subscribers.clear()
