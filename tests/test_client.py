"""``servertrack.client`` against a real ``servertrack serve`` on 127.0.0.1, and against stand-ins for
what a real server never sends (no answer, an answer that is not JSON, a hanging one).

Expected shapes come from the README's HTTP API, not from the code.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from servertrack.client import ClientError, ServerTrackClient, ServerUnreachable
from servertrack.common.errors import ServerTrackError
from tests.node_fixtures import HELLO_INFO, stats_body
from tests.test_end_to_end import START_SECONDS, Service, running_service, wait_for
from tests.test_end_to_end import http as send

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(scope="module")
def served() -> Iterator[Service]:
    """One real service for the module (every test uses names of its own)."""
    with running_service() as started:
        yield started


@pytest.fixture
def client(served: Service) -> ServerTrackClient:
    return ServerTrackClient(served.url, timeout=5.0)


def register(service: Service, name: str, ips: list[str], with_stats: bool = True) -> None:
    """A node by ``POST /nodes`` (and its snapshot by ``PUT /nodes/{name}``), as an agent over HTTP would."""
    status, _ = send("POST", f"{service.url}/nodes", {"name": name, "ip": ips, **HELLO_INFO})
    assert status in (200, 201)
    if with_stats:
        status, _ = send("PUT", f"{service.url}/nodes/{name}", stats_body())
        assert status == 200


def applied(client: ServerTrackClient, name: str, samples: int) -> None:
    """Wait until ``name`` has ``samples`` samples in its minute window (the service applies once a second)."""
    def done() -> bool:
        try:
            return sum(bucket["samples"] for bucket in client.loads(name)["minutes"]) >= samples
        except ClientError:
            return False
    wait_for(done, START_SECONDS, f"{samples} samples of {name}")


# -- the native API, route by route ----------------------------------------------------------------


def test_health_and_stats(client: ServerTrackClient) -> None:
    assert client.health() == {"status": "ok", "store": "memory"}
    stats = client.stats()
    assert {"received", "applied", "dropped", "lost", "servers", "nodes", "pending", "kinds"} <= set(stats)
    assert isinstance(stats["received"], int) and isinstance(stats["dropped"], dict)


def test_record_then_read_the_windows_and_seconds(client: ServerTrackClient) -> None:
    assert client.record("client-rec-01", cpu=12.5, ram=40.0) == {"accepted": 1}
    assert client.record("client-rec-01", cpu=17.5, ram=60.0, ts=time.time() - 1.0) == {"accepted": 1}
    applied(client, "client-rec-01", 2)
    loads = client.loads("Client-Rec-01")  # names are compared without case
    assert set(loads) == {"server", "last_seen", "minutes", "hours"} and loads["server"] == "client-rec-01"
    assert len(loads["minutes"]) == 60 and len(loads["hours"]) == 24
    filled = [bucket for bucket in loads["hours"] if bucket["samples"]]
    assert len(filled) in (1, 2)  # both samples, unless they straddle an hour
    assert sum(bucket["samples"] for bucket in filled) == 2
    for bucket in filled:
        assert set(bucket) == {"start", "samples", "cpu", "ram"}
        assert bucket["cpu"] is not None and set(bucket["cpu"]) == {"avg", "min", "max"}
    empty = next(bucket for bucket in loads["minutes"] if not bucket["samples"])
    assert empty["cpu"] is None and empty["ram"] is None
    seconds = client.seconds("client-rec-01")
    assert set(seconds) == {"server", "last_seen", "seconds"} and len(seconds["seconds"]) == 60
    assert set(seconds["seconds"][0]) == {"start", "samples", "cpu", "ram"}


def test_record_batch_and_page_through_servers(client: ServerTrackClient) -> None:
    now = time.time()
    items = [{"server": f"client-page-{index}", "cpu": 1.0, "ram": 2.0, "ts": now} for index in range(3)]
    assert client.record_batch(items) == {"accepted": 3}
    applied(client, "client-page-2", 1)
    first = client.servers(limit=2, after="client-page-")
    assert [entry["server"] for entry in first["servers"]] == ["client-page-0", "client-page-1"]
    assert first["next_after"] == "client-page-1"
    assert set(first["servers"][0]) == {"server", "last_seen", "ips"}
    rest = client.servers(limit=2, after=first["next_after"])
    assert rest["servers"][0]["server"] == "client-page-2"
    assert "servers" in client.servers() and "next_after" in client.servers()


def test_nodes_node_sections_and_summary(served: Service, client: ServerTrackClient) -> None:
    register(served, "client-node-01.example", ["10.77.0.1"])
    listed = client.nodes()
    entry = next(node for node in listed["nodes"] if node["name"] == "client-node-01.example")
    assert {"name", "hostname", "state", "last_seen", "ips"} <= set(entry) and entry["ips"] == ["10.77.0.1"]
    assert any(node["name"] == "client-node-01.example" for node in client.nodes(state="online")["nodes"])
    assert not any(node["name"] == "client-node-01.example" for node in client.nodes(state="offline")["nodes"])
    detail = client.node("10.77.0.1")  # by address
    assert detail["name"] == "client-node-01.example" and detail["state"] == "online"
    by_name = client.node("client-node-01.example")
    assert (by_name["name"], by_name["ips"], by_name["hostname"]) == (detail["name"], ["10.77.0.1"], "node01")
    cpu = client.node_section("client-node-01.example", "cpu")
    assert cpu["name"] == "client-node-01.example" and cpu["percent"] == stats_body()["cpu"]["percent"]
    memory = client.node_section("10.77.0.1", "memory")
    assert memory["memory"] == stats_body()["memory"] and memory["swap"] == stats_body()["swap"]
    disks = client.node_section("client-node-01.example", "disks")
    assert disks["disk_io"] == stats_body()["disk_io"]  # the cumulative counters too
    summary = client.summary("client-node-01.example", "24h")
    assert summary["name"] == "client-node-01.example" and summary["window"] == "24h"
    assert summary["samples"] == 0 and summary["cpu"] is None
    assert client.summary("client-node-01.example")["window"] == "1h"


def test_pause_and_resume_give_the_node_detail(served: Service, client: ServerTrackClient) -> None:
    register(served, "client-pause-01.example", ["10.77.0.2"], with_stats=False)
    paused = client.pause("client-pause-01.example")
    assert paused["name"] == "client-pause-01.example" and paused["paused"] is True and "state" in paused
    assert client.node("client-pause-01.example")["paused"] is True
    resumed = client.resume("10.77.0.2")
    assert resumed["name"] == "client-pause-01.example" and resumed["paused"] is False


# -- errors from a real server ---------------------------------------------------------------------


def error_of(call: Any, *args: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    error = raised.value
    assert isinstance(error, ServerTrackError) and not isinstance(error, ServerUnreachable)
    assert isinstance(error.status, int) and error.message and str(error) == error.message
    return error


def test_http_errors_carry_the_status_and_the_servers_message(client: ServerTrackClient) -> None:
    error = error_of(client.loads, "client-never-seen")
    assert error.status == 404 and "client-never-seen" in error.message
    assert error.body == {"error": error.message} and error.url.endswith("/servers/client-never-seen/loads")
    error = error_of(client.record, "client-bad-01", cpu=101.0, ram=1.0)
    assert error.status == 400 and "cpu" in error.message
    error = error_of(client.record, "client-bad-01", cpu=float("nan"), ram=1.0)  # sent as null
    assert error.status == 400 and "cpu" in error.message
    error = error_of(client.record, "client-bad-01", cpu=1.0, ram=1.0, ts=1.0)
    assert error.status == 400
    error = error_of(client.record_batch, [{"server": "ok-01", "cpu": 1, "ram": 1}, {"server": "x", "cpu": 1}])
    assert error.status == 400 and "item 1" in error.message
    assert error_of(client.servers, limit=0).status == 400
    assert error_of(client.nodes, state="sleepy").status == 400
    assert error_of(client.node, "client-nope.example").status == 404
    assert error_of(client.pause, "client-nope.example").status == 404
    assert error_of(client.resume, "10.77.99.99").status == 404
    assert error_of(client.node_section, "client-nope.example", "cpu").status == 404
    assert error_of(client.summary, "client-nope.example", "7d").status in (400, 404)


def test_names_are_quoted_as_one_path_segment(served: Service, client: ServerTrackClient) -> None:
    # Unquoted, "a/b" and "x?y" would reach other routes (or none); quoted they reach the name check.
    for name in ("a/b", "x?y", "bad name", "../stats", "%2F", "\x1b[2J"):
        error = error_of(client.loads, name)
        assert error.status == 400, (name, error.status, error.message)
        assert error_of(client.record, name, cpu=1.0, ram=1.0).status == 400
    register(served, "client-quote-01.example", ["fd00::77"], with_stats=False)
    assert client.node("fd00::77")["name"] == "client-quote-01.example"  # colons quoted too


def test_a_section_or_window_the_server_does_not_know_is_its_error(served: Service, client: ServerTrackClient) -> None:
    register(served, "client-sect-01.example", ["10.77.0.3"])
    assert error_of(client.node_section, "client-sect-01.example", "gpu").status == 404
    assert error_of(client.node_section, "client-sect-01.example", "cpu/../memory").status == 404
    assert error_of(client.summary, "client-sect-01.example", "7d").status == 400


# -- no server, or no proper answer ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_server_is_server_unreachable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable) as raised:
        ServerTrackClient(url, timeout=2.0).health()
    error = raised.value
    assert isinstance(error, ClientError) and error.status is None
    assert str(error).startswith(f"cannot reach {url}: ") and error.reason and error.url == url + "/healthz"


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the connection is accepted by the kernel; nothing ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ServerUnreachable) as raised:
            ServerTrackClient(url, timeout=0.3).stats()
        assert time.monotonic() - started < 5.0
        assert "timed out" in raised.value.reason


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1", "", "file:///etc/passwd"])
def test_a_base_url_that_is_not_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        ServerTrackClient(url)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan")])
def test_a_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ServerTrackClient("http://127.0.0.1:1", timeout=timeout)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request; answers ``reply`` (status, content type, raw body)."""

    seen: ClassVar[list[dict[str, Any]]] = []
    reply: ClassVar[tuple[int, str, bytes]] = (200, "application/json", b"{}")

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                          "body": self.rfile.read(length)})
        status, content_type, raw = self.reply
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer  # http.server's naming

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    _Recorder.reply = (200, "application/json", b"{}")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"  # a trailing slash is fine
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_bodies_are_json_with_their_content_type_and_reads_carry_none(recorder: str) -> None:
    client = ServerTrackClient(recorder)
    client.record("web 01/x", cpu=1.5, ram=2, ts=1_800_000_000.0)
    client.record_batch([{"server": "a", "cpu": 1, "ram": 2}])
    client.loads("web 01/x")
    client.pause("fd00::1")
    client.servers(limit=5, after="a&b=c")
    record, batch, loads, pause, servers = _Recorder.seen
    assert record["method"] == "POST" and record["path"] == "/servers/web%2001%2Fx/loads"
    assert record["headers"]["Content-Type"] == "application/json"
    assert json.loads(record["body"]) == {"cpu": 1.5, "ram": 2, "ts": 1_800_000_000.0}
    assert batch["path"] == "/loads" and json.loads(batch["body"]) == [{"server": "a", "cpu": 1, "ram": 2}]
    assert loads["method"] == "GET" and "Content-Type" not in loads["headers"] and loads["body"] == b""
    assert pause["method"] == "POST" and pause["path"] == "/nodes/fd00%3A%3A1/pause" and pause["body"] == b""
    assert servers["path"] == "/servers?limit=5&after=a%26b%3Dc"


def test_an_answer_that_is_not_json_is_a_client_error(recorder: str) -> None:
    _Recorder.reply = (200, "text/html", b"<html>a proxy's page</html>")
    with pytest.raises(ClientError) as raised:
        ServerTrackClient(recorder).health()
    assert raised.value.status == 200 and "not JSON" in raised.value.message


def test_an_error_answer_that_is_not_json_gives_its_reason(recorder: str) -> None:
    _Recorder.reply = (502, "text/html", b"<html>bad gateway</html>")
    with pytest.raises(ClientError) as raised:
        ServerTrackClient(recorder).health()
    assert raised.value.status == 502 and raised.value.message == "Bad Gateway" and raised.value.body is None


def test_an_error_message_is_given_as_the_server_sent_it(recorder: str) -> None:
    hostile = "refused \x1b]0;pwned\x07\r\n"
    _Recorder.reply = (409, "application/json", json.dumps({"error": hostile}).encode())
    with pytest.raises(ClientError) as raised:
        ServerTrackClient(recorder).node("a")
    assert raised.value.status == 409 and raised.value.message == hostile  # escaping is the printer's job
