"""bench/curve.py's pure pieces: the key files it makes, and which connection each frame goes out on."""

from __future__ import annotations

from pathlib import Path

import zmq.auth
from curve import connection_of, dispatcher, load_agent_keys, make_keys
from loadgen import FrameFactory

from servertrack.keys import read_key_pair


def test_keys_are_certificates_the_collector_and_agents_read(tmp_path: Path) -> None:
    keys = make_keys(tmp_path, 3)
    allowed = zmq.auth.load_certificates(keys.allowed)  # what serve --allowed-agents reads
    pairs = load_agent_keys(keys.agents, 3)
    assert set(allowed) == {public for public, _ in pairs} and len(allowed) == 3
    assert sorted(p.suffix for p in keys.allowed.iterdir()) == [".key"] * 3  # no secret in the allowed dir
    collector = read_key_pair(keys.collector_secret)  # what serve --curve-secret reads
    assert zmq.auth.load_certificate(keys.collector_public) == (collector.public, None)
    for public, secret in pairs:
        assert zmq.curve_public(secret) == public


def test_every_frame_goes_out_on_its_servers_connection() -> None:
    servers, connections = 10, 3
    factory = FrameFactory(0, servers)
    factory.burst(4, 0.0)  # a phase starts where the last one stopped
    got: list[tuple[int, bytes]] = []
    sends = [lambda frame, c=c: got.append((c, frame)) for c in range(connections)]
    send = dispatcher(sends, servers, factory.cursor)
    for frame in factory.burst(25, 0.0):
        send(frame)
    prefixes = factory.prefixes
    for connection, frame in got:
        server = next(i for i, prefix in enumerate(prefixes) if frame.startswith(prefix))
        assert connection == connection_of(server, connections) == server % connections
    assert len(got) == 25
