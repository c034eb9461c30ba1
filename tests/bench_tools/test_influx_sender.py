"""bench/influx_sender.py: line-protocol bodies, HTTP response parsing, one real paced phase into a sink."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import msgpack
import pytest
from influx_sender import (
    BATCH_LINES,
    ConnectionPool,
    LineBatcher,
    format_value,
    line_prefix,
    paced_phase,
    parse_response,
    probe_line,
    split_url,
)
from loadgen import FrameFactory


def parse_line(line: bytes) -> tuple[str, dict[str, str], dict[str, float], int]:
    """A naive reference parser of one unescaped line: measurement, tags, fields, timestamp."""
    series, fields, ts = line.decode().split(" ")
    measurement, *tags = series.split(",")
    return (
        measurement,
        dict(tag.split("=", 1) for tag in tags),
        {key: float(value) for key, value in (field.split("=", 1) for field in fields.split(","))},
        int(ts),
    )


def test_a_body_is_one_line_per_report_round_robin_with_the_batch_timestamp() -> None:
    body = LineBatcher(first=5, count=3).body(7, ts_ms=1_764_079_200_123)
    assert body.endswith(b"\n")
    lines = [parse_line(line) for line in body.split(b"\n")[:-1]]
    assert [tags["server"] for _, tags, _, _ in lines] == [
        "srv-000005.bench", "srv-000006.bench", "srv-000007.bench"] * 2 + ["srv-000005.bench"]  # fmt: skip
    assert all(m == "load" and set(f) == {"cpu", "ram"} and ts == 1_764_079_200_123 for m, _, f, ts in lines)
    assert all(0 <= value <= 100 for _, _, fields, _ in lines for value in fields.values())


def test_the_loads_are_those_loadgen_sends_to_servertrack() -> None:
    batcher, factory = LineBatcher(0, 4), FrameFactory(0, 4)
    lines = batcher.body(10, 0).split(b"\n")[:-1] + batcher.body(3, 0).split(b"\n")[:-1]
    frames = factory.burst(10, 0.0) + factory.burst(3, 0.0)
    for line, frame in zip(lines, frames, strict=True):
        sample = msgpack.unpackb(frame)
        _, tags, fields, _ = parse_line(line)
        assert (tags["server"], fields["cpu"], fields["ram"]) == (sample["fqdn"], sample["cpu"], sample["ram"])
    assert batcher.seq == factory.seq  # every server's seq walks the pool the same way
    assert len({parse_line(line)[2]["cpu"] for line in lines}) > 1


def test_values_and_probe_lines() -> None:
    assert format_value(12.34) == b"12.34" and format_value(50) == b"50.0" and format_value(0.0) == b"0.0"
    assert parse_line(probe_line("peer-probe.bench", 1_700_000_000_000).rstrip(b"\n")) == (
        "load", {"server": "peer-probe.bench"}, {"cpu": 1.0, "ram": 1.0}, 1_700_000_000_000)  # fmt: skip


@pytest.mark.parametrize("name", ["a b", "a,b", "a=b", 'a"b', "a\\b"])
def test_names_that_would_need_escaping_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="escaping"):
        line_prefix(name)


def test_responses() -> None:
    no_content = b"HTTP/1.1 204 No Content\r\nX-Server-Hostname: x\r\nDate: now\r\n\r\n"
    parsed = parse_response(no_content + b"HTTP/1.1 20")
    assert parsed is not None and parsed[0].status == 204 and not parsed[0].close and parsed[1] == b"HTTP/1.1 20"
    error = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nbad line 12"
    assert parse_response(error[:-3]) is None  # body incomplete
    assert parse_response(error[:20]) is None  # head incomplete
    parsed = parse_response(error)
    assert parsed is not None and parsed[0].status == 400 and parsed[1] == b""
    chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nbusy!\r\n"
    assert parse_response(chunked) is None
    parsed = parse_response(chunked + b"0\r\n\r\nrest")
    assert parsed is not None and parsed[0].status == 503 and parsed[0].close and parsed[1] == b"rest"
    with pytest.raises(ValueError, match="not an HTTP response"):
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_only_loopback_urls() -> None:
    assert split_url("http://127.0.0.1:8428/write") == ("127.0.0.1", 8428, "/write?precision=ms")
    assert split_url("http://127.0.0.1:1/write?db=x") == ("127.0.0.1", 1, "/write?db=x&precision=ms")
    for url in ("http://localhost:8428/write", "http://10.0.0.1:8428/write", "https://127.0.0.1:1/write"):
        with pytest.raises(ValueError, match="127.0.0.1"):
            split_url(url)


class Sink(threading.Thread):
    """A line-protocol endpoint on an ephemeral 127.0.0.1 port: keeps every body, answers 204
    (or 400 to the request numbers in ``refuse``)."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.bodies: list[bytes] = []
        self.paths: list[bytes] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buffer += chunk
                while (end := buffer.find(b"\r\n\r\n")) >= 0:
                    head = buffer[:end].split(b"\r\n")
                    length = next(int(h.split(b":")[1]) for h in head if h.lower().startswith(b"content-length"))
                    if len(buffer) < end + 4 + length:
                        break
                    with self.lock:
                        number = len(self.bodies)
                        self.bodies.append(buffer[end + 4 : end + 4 + length])
                        self.paths.append(head[0])
                    buffer = buffer[end + 4 + length :]
                    if number in self.refuse:
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad")
                    else:
                        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink(refuse=frozenset({2}))
    server.start()
    yield server
    server.close()


def test_a_paced_phase_sends_every_line_once_in_batches_and_counts_answers(sink: Sink) -> None:
    pool = ConnectionPool("127.0.0.1", sink.port, "/write?precision=ms", connections=2)
    try:
        result = paced_phase(pool, LineBatcher(0, 2_500), rate=100_000, seconds=0.055, probe="peer-probe.bench")
    finally:
        pool.close()
    assert result.sent == 5_500 and result.requests == 6 and len(sink.bodies) == 6
    assert all(path == b"POST /write?precision=ms HTTP/1.1" for path in sink.paths)
    lines = [line for body in sink.bodies for line in body.split(b"\n")[:-1]]
    servers = [parse_line(line)[1]["server"] for line in lines]
    probes = [line for line, server in zip(lines, servers) if server == "peer-probe.bench"]
    assert len(probes) == len(result.probe_ts) >= 1
    assert [parse_line(line)[3] for line in probes] == [round(ts * 1000) for ts in result.probe_ts]
    load = [server for server in servers if server != "peer-probe.bench"]
    assert len(load) == 5_500 and len(set(load)) == 2_500  # round-robin: every server, 2 or 3 times
    assert [len(body.split(b"\n")) - 1 for body in sink.bodies].count(BATCH_LINES) >= 4
    assert result.answered == 5 and result.statuses == {"400": 1} and result.connection_errors == 0
