"""Fixtures for the agent tests: a private ZeroMQ context and a SUB socket on 127.0.0.1 that clean up after themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq
from agent_doubles import FakeSampler, term_within


@pytest.fixture
def fake_sampler() -> FakeSampler:
    return FakeSampler()


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    """A private context (never ``Context.instance()``); teardown fails if a socket was left open."""
    context = zmq.Context()
    yield context
    assert term_within(context, 5.0), "zmq context did not terminate: a socket was left open"


@pytest.fixture
def sub_socket(zmq_context: zmq.Context) -> Iterator[tuple[zmq.Socket, int]]:
    """A SUB socket bound to a random 127.0.0.1 port, subscribed to everything: ``(socket, port)``."""
    sub = zmq_context.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        port = sub.bind_to_random_port("tcp://127.0.0.1")
        yield sub, port
    finally:
        sub.close(linger=0)
