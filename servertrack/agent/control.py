"""The agent's side of the control channel: a SUB socket connected to the collector's control PUB.

It subscribes to this node's topic and to the all-nodes topic (see
``common.control_messages``: NUL-terminated, so ``web`` never receives what
is meant for ``web-01``), and is read without blocking from the agent's loop,
which wakes as soon as a message arrives (``wait``). A malformed message is
dropped and counted in ``dropped`` by reason, and logged at most once every
``LOG_EVERY_SECONDS`` (a flood of garbage cannot flood the log); the agent
keeps running whatever arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from ..common.control_messages import ALL_NODES, MAX_CONTROL_BYTES, ControlMessage, control_topic, decode_control
from ..common.errors import InvalidSample
from .publisher import CollectorKeys

LOG_EVERY_SECONDS = 60.0
# Messages read per wake-up at most: control messages are rare, so more than this is a flood.
RECEIVE_CHUNK = 100
# A message (all frames) larger than this makes libzmq drop the connection before it is held (the
# subscriber then connects again); larger than a valid one, so an oversized but bounded one is still
# read and counted.
MAX_MESSAGE_BYTES = 64 * MAX_CONTROL_BYTES
RECEIVE_HIGH_WATER_MARK = 1_000
# A connection dropped within this many seconds of opening (a refused CURVE key, a wrong collector key)
# is not reopened at once but after a pause, doubled each time up to the last: no handshake storm.
QUICK_DISCONNECT_SECONDS = 1.0
REOPEN_PAUSES = (0.5, 30.0)

_log = logging.getLogger("servertrack.agent.control")


class ControlSubscriber:
    """Receives the control messages addressed to node ``name`` (or to all nodes) from ``endpoint``.

    libzmq gives up a connection for good after a protocol error (a message
    over ``MAX_MESSAGE_BYTES``, which the collector never sends): a socket
    monitor sees every disconnection, and the subscriber then opens a new
    socket (counted in ``reconnects``), so the channel always comes back. A
    connection that drops at once (a refused handshake) is reopened after a
    pause that grows up to 30 s. With ``curve`` the socket is a CURVE client.
    """

    def __init__(
        self,
        context: zmq.asyncio.Context,
        endpoint: str,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = _log,
        curve: CollectorKeys | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.dropped: Counter[str] = Counter()
        self.reconnects = 0
        self._context = context
        self._clock = clock
        self._log = log
        self._next_log = float("-inf")
        self._unlogged = 0
        self._curve = curve
        self._pause = 0.0  # before reopening a connection that dropped at once
        self._reopen_at: float | None = None  # while closed after such a drop: when to open again
        self._open()

    def _open(self) -> None:
        self._reopen_at = None
        self._opened_at = self._clock()
        socket = self._context.socket(zmq.SUB)
        try:
            if self._curve is not None:
                self._curve.secure(socket)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, RECEIVE_HIGH_WATER_MARK)
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            socket.setsockopt(zmq.SUBSCRIBE, control_topic(self.name))
            socket.setsockopt(zmq.SUBSCRIBE, control_topic(ALL_NODES))
            monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        except zmq.ZMQError:
            socket.close(linger=0)
            raise
        try:
            socket.connect(self.endpoint)
        except zmq.ZMQError:
            _close(socket, monitor)
            raise
        self._socket, self._monitor = socket, monitor
        # Reads without a Future per message.
        self._sync: zmq.Socket = zmq.Socket.shadow(socket.underlying)
        self._sync_monitor: zmq.Socket = zmq.Socket.shadow(monitor.underlying)
        self._poller = zmq.asyncio.Poller()
        self._poller.register(socket, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)

    def readable(self) -> asyncio.Future[Any]:
        """A future done when a message (or a disconnection) is waiting, or (closed after a quick drop)
        when it is time to open again; cancel it when no longer wanted."""
        if self._reopen_at is not None:
            return asyncio.ensure_future(asyncio.sleep(max(0.0, self._reopen_at - self._clock())))
        return asyncio.ensure_future(self._poller.poll())

    def receive(self) -> list[ControlMessage]:
        """The valid messages waiting now (at most ``RECEIVE_CHUNK``), oldest first; never blocks.

        Malformed ones are dropped and counted. After a disconnection the
        socket is replaced (what it held is gone with the connection).
        """
        if self._reopen_at is not None:
            if self._clock() >= self._reopen_at:
                self._open()
            return []
        if self._disconnected():
            _close(self._socket, self._monitor)
            self.reconnects += 1
            quick = self._clock() - self._opened_at < QUICK_DISCONNECT_SECONDS
            first, longest = REOPEN_PAUSES
            self._pause = min(longest, max(first, 2 * self._pause)) if quick else 0.0
            if self._pause:
                self._reopen_at = self._clock() + self._pause
            else:
                self._open()
            return []
        messages: list[ControlMessage] = []
        for _ in range(RECEIVE_CHUNK):
            try:
                frames = self._sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                message = decode_control(frames)
            except InvalidSample as invalid:
                self._drop(invalid.reason, invalid.message)
                continue
            if message.node not in (self.name, ALL_NODES):  # not subscribed; cannot arrive, but never obey it
                self._drop("other_node", f"control message for node {message.node!r}")
                continue
            messages.append(message)
        return messages

    def _disconnected(self) -> bool:
        disconnected = False
        while True:
            try:
                self._sync_monitor.recv_multipart(zmq.NOBLOCK)  # only EVENT_DISCONNECTED is monitored
            except zmq.Again:
                return disconnected
            disconnected = True

    def _drop(self, reason: str, message: str) -> None:
        self.dropped[reason] += 1
        now = self._clock()
        if now < self._next_log:
            self._unlogged += 1
            return
        self._next_log = now + LOG_EVERY_SECONDS
        self._unlogged = 0
        self._log.warning("servertrack agent: dropped a malformed control message (%s: %s); dropped so far: %s",
                          reason, message[:200], self._summary())

    def _summary(self) -> str:
        return ", ".join(f"{reason} {count}" for reason, count in sorted(self.dropped.items()))

    def close(self) -> None:
        """Close the sockets; log the drops not yet logged."""
        if self._unlogged:
            self._log.warning("servertrack agent: control messages dropped: %s", self._summary())
            self._unlogged = 0
        if self._reopen_at is None:
            _close(self._socket, self._monitor)


def _close(socket: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> None:
    socket.disable_monitor()
    monitor.close(linger=0)
    socket.close(linger=0)
