"""Slow readers against a real ``serve`` (the suite's version of ``bench/slow_readers.py``): clients that read
their answers a byte a second hold nothing for long, and ingest and a normal client go on meanwhile."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psutil
import pytest

from servertrack.cli import main, parse
from servertrack.common.settings import EnvironmentDefaults
from tests.conftest import PROJECT_ROOT, subprocess_env
from tests.test_end_to_end import http as send, running_service, wait_for

pytestmark = pytest.mark.e2e

LOADGEN = PROJECT_ROOT / "bench" / "loadgen.py"
SERVERS = 5_000
RATE = 10_000
LOAD_SECONDS = 30.0  # an upper bound: the generator is stopped (SIGTERM) once the slow readers are done with
TIMEOUT = 2.0  # the service's --idle-timeout and --write-timeout here
SMALL_READERS = 50  # one GET /servers/NAME/loads each (~6 KB: the socket buffers take it at once)
LARGE_READERS = 5  # pipelined GET /servers?limit=5000 (~370 KB each) beyond what the socket buffers take
PAGE_BYTES = 370_000
SLOW_SECONDS = 4.0  # twice the timeouts: every slow reader must be gone well before


def test_write_timeout_defaults_to_30_s_and_comes_from_the_flag_or_the_variable() -> None:
    assert parse(["serve"], EnvironmentDefaults()).write_timeout == 30.0
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_WRITE_TIMEOUT": "5"})
    assert parse(["serve"], env).write_timeout == 5.0
    assert parse(["serve", "--write-timeout", "2.5"], env).write_timeout == 2.5
    assert main(["serve", "--write-timeout", "0"]) == 2


def pages_past_the_buffers() -> int:
    """How many pages to pipeline so that the answers outgrow the largest send buffer TCP autotunes to
    (``tcp_wmem``'s maximum; loopback reaches it) and the rest waits in the service's own buffer."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as file:
        largest = int(file.read().split()[2])
    return largest // PAGE_BYTES + 6


def slow_reader(address: tuple[str, int], request: bytes) -> socket.socket:
    """A client with a small receive window (set before connecting) that sent ``request``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.settimeout(5)
    sock.connect(address)
    sock.sendall(request)
    sock.setblocking(False)
    return sock


def held(serve: psutil.Process, port: int, readers: list[socket.socket]) -> int:
    """How many of the readers' connections the service still holds a socket for."""
    ports = {reader.getsockname()[1] for reader in readers}
    return sum(1 for c in serve.net_connections(kind="tcp") if c.raddr and c.laddr.port == port and c.raddr.port in ports)


def test_slow_readers_are_closed_in_time_while_ingest_and_a_normal_client_go_on() -> None:
    timeouts = ("--idle-timeout", str(TIMEOUT), "--write-timeout", str(TIMEOUT))
    pages = pages_past_the_buffers()
    with running_service("--max-servers", "10000", *timeouts) as service:
        serve = psutil.Process(service.process.pid)
        host, port = urlsplit(service.url).hostname or "", urlsplit(service.url).port or 0
        argv = [sys.executable, str(LOADGEN), "--endpoint", service.ingest, "--rate", str(RATE),
                "--servers", str(SERVERS), "--seconds", str(LOAD_SECONDS), "--json"]
        loadgen = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        readers: list[socket.socket] = []
        try:
            assert loadgen.stdout is not None
            assert loadgen.stdout.readline().strip() == "measuring"
            wait_for(lambda: send("GET", service.url + "/stats")[1]["servers"] == SERVERS, 5, "every server seen")
            head = f"HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
            for index in range(SMALL_READERS):
                readers.append(slow_reader((host, port), f"GET /servers/srv-{index:06d}.bench/loads {head}".encode()))
            for _ in range(LARGE_READERS):
                readers.append(slow_reader((host, port), f"GET /servers?limit={SERVERS} {head}".encode() * pages))
            started = time.monotonic()
            client = http.client.HTTPConnection(host, port, timeout=5)
            latencies: list[tuple[float, float, int]] = []  # (since the slow readers came, seconds, status)
            next_byte = started
            while time.monotonic() - started < SLOW_SECONDS:
                begun = time.monotonic()
                client.request("GET", f"/servers/srv-{len(latencies) % SERVERS:06d}.bench/loads")
                response = client.getresponse()
                response.read()
                latencies.append((begun - started, time.monotonic() - begun, response.status))
                if time.monotonic() >= next_byte:
                    for reader in readers:
                        try:
                            reader.recv(1)
                        except (BlockingIOError, ConnectionError):
                            pass
                    next_byte += 1.0
                time.sleep(0.05)
            client.close()
            still_held = held(serve, port, readers)
            # ingest went on for the whole slow phase: the generator was still sending; stopped now, it reports
            generating = loadgen.poll() is None
            loadgen.send_signal(signal.SIGTERM)
            out, err = loadgen.communicate(timeout=30)
        finally:
            for reader in readers:
                reader.close()
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.communicate()
        assert still_held == 0  # each closed by the service within its timeout (+ the time to notice)
        assert {status for _, _, status in latencies} == {200}
        assert max(seconds for since, seconds, _ in latencies if since > 1.0) < 1.0, latencies
        result = json.loads(out.strip().splitlines()[-1])
        sent, warmup = result["sent"], result["warmup_sent"]
        assert generating and result["stopped_early"], err
        stats: dict = {}

        def drained() -> bool:
            stats.update(send("GET", service.url + "/stats")[1])
            return stats["pending"] == 0 and stats["applied"] == stats["received"] >= sent

        wait_for(drained, 10, "every frame applied")
        assert stats["lost"] == 0 and not {reason: n for reason, n in stats["dropped"].items() if n}, stats
        assert sent <= stats["received"] <= sent + warmup, err
        assert stats["http_refused"]["slow_reader"] == LARGE_READERS  # the small answers left by the idle timeout
