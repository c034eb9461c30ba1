"""The collector's side of the control channel: a bound PUB socket that tells agents to pause or resume.

Messages are ``control_messages`` frames, topic-addressed to one node or to
all (``*``). PUB/SUB delivers only to subscribers connected at the time, so
the desired state of every node lives in the node registry, and the registry
calls ``reassert`` (this channel re-publishes it) whenever a node's hello
disagrees with it; see ``common.nodes``.

It also says the collector is alive (``heartbeat``, every ``HEARTBEAT_SECONDS``
from ``beat``): an agent given several collectors moves away from one it has
not heard from for a while, and back when it is heard again.

Sends never block: a message for a subscriber whose queue is full is dropped
by ZeroMQ (the next hello heals it). Published and unsent messages, and the
heartbeats sent, are counted for ``GET /stats``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from ..common.control_messages import (
    ALL_NODES,
    HEARTBEAT_SECONDS,
    PAUSE,
    RESUME,
    encode_alive,
    encode_control,
)
from ..common.nodes import Node

# Control messages queued per connected agent at most (each is ~100 bytes); an agent that cannot
# take them is far behind, and its next hello re-asserts what it missed.
CONTROL_HIGH_WATER_MARK = 1_000


def open_control_socket(context: zmq.asyncio.Context, endpoint: str,
                        secure: Callable[[zmq.asyncio.Socket], None] | None = None) -> zmq.asyncio.Socket:
    """Bind the control PUB socket at ``endpoint`` (``tcp://host:port``, port may be ``*`` or 0);
    ``secure`` (e.g. ``AgentTrust.secure``) sets the socket up before it binds."""
    socket = context.socket(zmq.PUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, CONTROL_HIGH_WATER_MARK)
        if secure is not None:
            secure(socket)
        socket.bind(endpoint)
    except zmq.ZMQError:
        socket.close(linger=0)
        raise
    return socket


class ControlChannel:
    """Publishes pause and resume messages; counts them. Until ``attach`` it has no socket and counts
    every message as unsent (an API served without a collector, as in tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._socket: zmq.Socket | None = None
        self.published: Counter[str] = Counter({PAUSE: 0, RESUME: 0})
        self.unsent = 0
        self.heartbeats = 0

    @property
    def attached(self) -> bool:
        """Whether a socket is attached."""
        return self._socket is not None

    def attach(self, socket: zmq.Socket | zmq.asyncio.Socket) -> None:
        """Publish on ``socket`` from now on (the caller owns and closes it; call ``detach`` first)."""
        # A synchronous view of the socket: a non-blocking send without a Future per message.
        self._socket = zmq.Socket.shadow(socket.underlying)

    def detach(self) -> None:
        """Stop publishing (before the socket is closed)."""
        self._socket = None

    def publish(self, node: str, paused: bool) -> bool:
        """Ask ``node`` (a canonical name, or ``*`` for every node) to pause or resume; False if not sent."""
        if self._socket is not None:
            try:
                self._socket.send_multipart(encode_control(paused, node, self._clock()), zmq.NOBLOCK)
            except zmq.ZMQError:  # Again at the high-water mark (PUB rarely says so), or a closed socket
                pass
            else:
                self.published[PAUSE if paused else RESUME] += 1
                return True
        self.unsent += 1
        return False

    def heartbeat(self) -> bool:
        """Say to every connected agent that this collector is alive; False if not sent (not counted then:
        a heartbeat is never owed, the next one replaces it)."""
        if self._socket is None:
            return False
        try:
            self._socket.send_multipart(encode_alive(self._clock()), zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        self.heartbeats += 1
        return True

    async def beat(self, every: float = HEARTBEAT_SECONDS) -> None:
        """Send a heartbeat every ``every`` seconds (the first at once) until cancelled; the beats keep
        to a fixed grid of the loop's clock, so a slow turn of the loop does not delay the later ones."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        beats = 0
        while True:
            self.heartbeat()
            beats = max(beats + 1, int((loop.time() - start) // every) + 1)  # skip the beats missed
            await asyncio.sleep(max(0.0, start + beats * every - loop.time()))

    def publish_all(self, paused: bool) -> bool:
        """Ask every connected agent to pause or resume."""
        return self.publish(ALL_NODES, paused)

    def assert_state(self, node: Node) -> bool:
        """Publish the state ``node`` is meant to be in (``Node.paused``)."""
        return self.publish(node.name, node.paused)

    def reassert(self, node: Node) -> None:
        """The registry's ``on_mismatch``: the node's agent is not in its desired state; tell it again."""
        self.assert_state(node)

    def counters(self) -> dict[str, Any]:
        """What ``GET /stats`` shows under ``control`` (``heartbeats``: the alive messages sent)."""
        return {"published": sum(self.published.values()), "pause": self.published[PAUSE],
                "resume": self.published[RESUME], "unsent": self.unsent, "heartbeats": self.heartbeats}
