"""The PUB side: connects to the collector and sends frames without ever blocking."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..common.agent_keys import KeyPair
from ..common.incidents import IncidentLog

# Frames queued for a connected but slow collector; beyond that a send fails
# at once and is counted (the collector counts the gap in seq). While no
# collector is connected, PUB sends nothing and keeps nothing.
SEND_HIGH_WATER_MARK = 1_000
# A refused handshake is retried after 0.1 s, then less and less often, up to every this many ms.
RECONNECT_MAX_MS = 10_000
# The log says why no handshake succeeds at most once per this many seconds.
HANDSHAKE_REPORT_SECONDS = 60.0

_log = logging.getLogger("servertrack.agent")
_REFUSED_KEY = "the collector refused this agent's key (is its public key in the collector's --allowed-agents?)"
_WRONG_COLLECTOR = ("the CURVE handshake with the collector failed (is --collector-key the collector's public key, "
                    "and does the collector use CURVE?)")
_PLAIN_REFUSED = "the collector refused a plain connection (it may require CURVE: pass --curve-secret and --collector-key)"


@dataclass(frozen=True, slots=True)
class CollectorKeys:
    """What a CURVE agent connects with: its own key pair and the collector's public key (Z85)."""

    agent: KeyPair
    collector: bytes

    def secure(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` (not yet connected) a CURVE client of the collector."""
        socket.curve_serverkey = self.collector
        socket.curve_publickey = self.agent.public
        socket.curve_secretkey = self.agent.secret
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)


class HandshakeWatch:
    """Reads a socket's handshake events without blocking and logs, at most once a minute, why none
    succeeds: a refused key or a failed handshake. The agent keeps running whatever happens."""

    def __init__(self, socket: zmq.Socket[Any], endpoint: str, logger: logging.Logger = _log,
                 clock: Callable[[], float] = time.monotonic, curve: bool = True) -> None:
        self.failures = 0
        self._failure_reason = _WRONG_COLLECTOR if curve else _PLAIN_REFUSED
        self.connected = False
        self._monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                                  | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._socket = socket
        self._endpoint = endpoint
        self._logger = logger
        self._failed = IncidentLog(logger, logging.WARNING, "servertrack agent: %d handshake(s) with %s failed: %s",
                                   clock, HANDSHAKE_REPORT_SECONDS)

    def check(self) -> None:
        """Count and log the handshake events that arrived since the last check."""
        while True:
            try:
                event = int(parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))["event"])
            except zmq.Again:
                return
            except (ValueError, KeyError, TypeError):
                continue
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if not self.connected and self.failures:
                    self._logger.warning("servertrack agent: connected to %s", self._endpoint)
                self.connected = True
                continue
            self.connected = False
            self.failures += 1
            self._failed.record(self._endpoint,
                                _REFUSED_KEY if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else self._failure_reason)

    def close(self) -> None:
        """Stop watching (before the socket closes)."""
        self._failed.flush()
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)


class SamplePublisher:
    """A PUB socket connected to the collector's ingest endpoint (a CURVE client with ``curve``)."""

    def __init__(self, context: zmq.Context[Any], endpoint: str, high_water_mark: int = SEND_HIGH_WATER_MARK,
                 curve: CollectorKeys | None = None) -> None:
        self._socket = context.socket(zmq.PUB)
        self.handshakes: HandshakeWatch | None = None
        try:
            self.handshakes = HandshakeWatch(self._socket, endpoint, curve=curve is not None)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
            # Without NODROP a PUB socket at its high-water mark discards
            # silently; with it a non-blocking send raises Again, so drops are counted.
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
            if curve is not None:
                curve.secure(self._socket)
            self._socket.connect(endpoint)
        except zmq.ZMQError:
            if self.handshakes is not None:
                self.handshakes.close()
            self._socket.close(linger=0)
            raise
        self.dropped = 0

    def publish(self, frame: bytes) -> bool:
        """Send one frame now; False (and counted) if ZeroMQ had to drop it."""
        if self.handshakes is not None:
            self.handshakes.check()
        try:
            self._socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        return True

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket, waiting at most ``linger_ms`` for queued frames to leave."""
        if self.handshakes is not None:
            self.handshakes.close()
        self._socket.close(linger=linger_ms)
