"""A real ``servertrack serve`` under its HTTP limits: connection cap, slow clients, Host names, /stats.

Small limits from the command line keep the test short (``--max-connections 4``,
``--idle-timeout 1``): the real timeouts are what is under test.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.test_end_to_end import Service, running_service


@pytest.fixture
def limited() -> Iterator[Service]:
    with running_service("--max-connections", "4", "--idle-timeout", "1", "--allowed-hosts", "monitor.example") as started:
        yield started


def _address(service: Service) -> tuple[str, int]:
    host, port = service.url.removeprefix("http://").split(":")
    return host, int(port)


def _get(service: Service, path: str, host: str | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(*_address(service), timeout=5)
    try:
        headers = {"Host": host} if host is not None else {}
        connection.request("GET", path, headers=headers)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def test_the_connection_cap_refuses_with_json_and_idle_connections_are_closed(limited: Service) -> None:
    idle = [socket.create_connection(_address(limited), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)  # let the service accept all four
        extra = socket.create_connection(_address(limited), timeout=5)
        with extra:
            answer = extra.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 503") and "application/json" in answer, answer
        assert "too many open connections" in answer
        # the idle four are closed once their headers are a second late, then clients get in again
        for connection in idle:
            assert connection.recv(16) == b""
        status, body = _get(limited, "/stats")
        assert status == 200 and body["http_refused"]["too_many_connections"] == 1
    finally:
        for connection in idle:
            connection.close()


def test_a_client_trickling_its_headers_is_closed_while_others_are_served(limited: Service) -> None:
    slow = socket.create_connection(_address(limited), timeout=5)
    with slow:
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 40:
            try:
                slow.send(bytes([byte]))
            except OSError:
                closed = True
                break
            assert _get(limited, "/healthz")[0] == 200  # others see no change
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        if not closed:
            slow.settimeout(3)
            closed = slow.recv(16) == b""
        assert closed and time.monotonic() - started < 3


def test_host_names_are_checked_against_the_allowed_list(limited: Service) -> None:
    assert _get(limited, "/healthz", host="monitor.example:8080")[0] == 200
    assert _get(limited, "/healthz", host="localhost")[0] == 200
    status, body = _get(limited, "/stats", host="evil.example")
    assert status == 403 and "--allowed-hosts" in body["error"]
    assert _get(limited, "/stats")[1]["http_refused"]["bad_host"] == 1
