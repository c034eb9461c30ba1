"""SamplePublisher on real ZeroMQ sockets bound to 127.0.0.1."""

from __future__ import annotations

import time

import pytest
import zmq
from agent_doubles import term_within, unused_tcp_port

from servertrack.agent.publisher import SamplePublisher


@pytest.fixture
def publisher_to(zmq_context: zmq.Context):
    """Factory for publishers on the shared context; every one is closed at teardown."""
    made: list[SamplePublisher] = []

    def make(endpoint: str, **kwargs) -> SamplePublisher:
        publisher = SamplePublisher(zmq_context, endpoint, **kwargs)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def _first_frame(publisher: SamplePublisher, sub: zmq.Socket, frame: bytes, timeout: float = 5.0) -> bytes:
    """PUB/SUB slow joiner: publish until the subscription is through, bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(frame)
        if sub.poll(50):
            return sub.recv()
    raise AssertionError(f"no frame arrived within {timeout} s")


def _drain(sub: zmq.Socket, quiet: float = 0.5) -> list[bytes]:
    """Receive until nothing has arrived for ``quiet`` seconds."""
    frames = []
    while sub.poll(int(quiet * 1000)):
        frames.append(sub.recv())
    return frames


def test_publish_never_blocks_without_a_collector(publisher_to) -> None:
    publisher = publisher_to(f"tcp://127.0.0.1:{unused_tcp_port()}")
    frame = b"x" * 200
    began = time.perf_counter()
    for _ in range(2000):
        publisher.publish(frame)
    assert time.perf_counter() - began < 0.5


def test_frames_reach_a_bound_sub_socket_unchanged(publisher_to, sub_socket) -> None:
    sub, port = sub_socket
    publisher = publisher_to(f"tcp://127.0.0.1:{port}")
    assert _first_frame(publisher, sub, b"hello") == b"hello"
    _drain(sub, quiet=0.2)
    frames = [f"frame-{index}".encode() for index in range(20)]
    assert all(publisher.publish(frame) for frame in frames)
    assert _drain(sub) == frames


def test_publish_never_blocks_when_the_collector_stops_reading(publisher_to, sub_socket) -> None:
    sub, port = sub_socket
    sub.setsockopt(zmq.RCVHWM, 10)
    publisher = publisher_to(f"tcp://127.0.0.1:{port}", high_water_mark=10)
    _first_frame(publisher, sub, b"hello")
    _drain(sub, quiet=0.2)
    frame = b"x" * 1000
    began = time.perf_counter()
    for _ in range(20_000):  # ~20 MB against a reader that reads nothing: queues fill up
        publisher.publish(frame)
    assert time.perf_counter() - began < 2.0


def test_dropped_frames_are_reported_and_counted(publisher_to, sub_socket) -> None:
    # publish() documents: "False (and counted) if ZeroMQ had to drop it".
    sub, port = sub_socket
    sub.setsockopt(zmq.RCVHWM, 10)
    publisher = publisher_to(f"tcp://127.0.0.1:{port}", high_water_mark=10)
    _first_frame(publisher, sub, b"hello")
    _drain(sub, quiet=0.2)
    sent = 20_000
    results = [publisher.publish(b"x" * 1000) for _ in range(sent)]
    delivered = len(_drain(sub))
    assert delivered < sent, "the reader kept up: the test did not overflow the queues"
    assert results.count(False) == publisher.dropped
    assert delivered + publisher.dropped == sent


def test_malformed_endpoint_raises_and_leaks_no_socket() -> None:
    context = zmq.Context()
    try:
        with pytest.raises(zmq.ZMQError):
            SamplePublisher(context, "tcp://:notaport")
    finally:
        # A socket left open would make term() block forever.
        assert term_within(context, 5.0)


def test_close_discards_queued_frames_at_once(sub_socket) -> None:
    sub, port = sub_socket
    context = zmq.Context()
    publisher = SamplePublisher(context, f"tcp://127.0.0.1:{port}")
    try:
        _first_frame(publisher, sub, b"hello")
        for _ in range(5000):  # more than the reader will ever take
            publisher.publish(b"y" * 1000)
    finally:
        publisher.close()
    # linger 0: the context terminates even though frames were still queued.
    began = time.monotonic()
    assert term_within(context, 5.0)
    assert time.monotonic() - began < 1.0
