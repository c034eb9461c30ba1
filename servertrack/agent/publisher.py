"""The PUB side: connects to the collector and sends frames without ever blocking."""

from __future__ import annotations

import zmq

# Frames queued for a connected but slow collector; beyond that a send fails
# at once and is counted (the collector counts the gap in seq). While no
# collector is connected, PUB sends nothing and keeps nothing.
SEND_HIGH_WATER_MARK = 1_000


class SamplePublisher:
    """A PUB socket connected to the collector's ingest endpoint."""

    def __init__(self, context: zmq.Context, endpoint: str, high_water_mark: int = SEND_HIGH_WATER_MARK) -> None:
        self._socket = context.socket(zmq.PUB)
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
            # Without NODROP a PUB socket at its high-water mark discards
            # silently; with it a non-blocking send raises Again, so drops are counted.
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
            self._socket.connect(endpoint)
        except zmq.ZMQError:
            self._socket.close(linger=0)
            raise
        self.dropped = 0

    def publish(self, frame: bytes) -> bool:
        """Send one frame now; False (and counted) if ZeroMQ had to drop it."""
        try:
            self._socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        return True

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket, waiting at most ``linger_ms`` for queued frames to leave."""
        self._socket.close(linger=linger_ms)
