"""A real ``servertrack serve`` with bearer tokens, TLS and the per-client connection cap.

Every write route of the application is walked (from its routes, so a new one
cannot be forgotten): without the token, or with a wrong one, it is a 401 with
a JSON body and a ``WWW-Authenticate`` challenge, and nothing stored changes.
The TLS certificate is made per module with the ``openssl`` command
(``IP:127.0.0.1`` in its subjectAltName).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.web

from servertrack.api import make_app
from servertrack.client import ClientError, ServerTrackClient, UntrustedServer
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.stats import IngestStats
from tests.conftest import servertrack_command, subprocess_env
from tests.node_fixtures import HELLO_INFO, stats_body
from tests.test_end_to_end import Service, running_service, stop, wait_for

WRITE_TOKEN = "a3" * 32
READ_TOKEN = "b4" * 32
WRONG_TOKEN = "c5" * 32
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
SAMPLE = {"cpu": 1.0, "ram": 2.0}
# Every write route: its pattern in the app's routes -> (method, a path it matches, Content-Type, body).
# The requests are valid: with the token, each one would change something.
WRITES: dict[str, list[tuple[str, str, str | None, Any]]] = {
    r"/servers/([^/]+)/loads$": [("POST", "/servers/intruder/loads", JSON, SAMPLE)],
    r"/loads$": [("POST", "/loads", JSON, [{"server": "intruder", **SAMPLE}])],
    r"/nodes$": [("POST", "/nodes", JSON, {**HELLO_INFO, "name": "intruder", "ip": ["10.9.9.9"]})],
    r"/nodes/([^/]+)$": [("PUT", "/nodes/seed.node", JSON, stats_body()),
                         ("DELETE", "/nodes/seed.node", None, None)],
    r"/nodes/([^/]+)/(pause|resume)$": [("POST", "/nodes/seed.node/pause", None, None),
                                        ("POST", "/nodes/seed.node/resume", None, None)],
    r"/(start|stop)$": [("POST", "/stop", None, None), ("GET", "/stop", None, None),
                        ("GET", "/start?node=seed.node", None, None)],
    r"/perf/([^/]+)/?$": [("POST", "/perf/intruder/", FORM, "cpu=1&ram=2")],
    r"/server/([^/]+)/?$": [("POST", "/server/intruder", JSON, SAMPLE)],
    r"/cluster/nodes$": [("POST", "/cluster/nodes", JSON, {"ip": "10.9.9.8", "hostname": "intruder2"})],
    r"/cluster/nodes/([^/]+)$": [("PUT", "/cluster/nodes/10.1.1.1", JSON, stats_body()),
                                 ("DELETE", "/cluster/nodes/10.1.1.1", None, None)],
}


class Reply:
    """One answer: status, headers, decoded JSON body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.json: Any = json.loads(body) if body else None


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split(":")
    return host, int(port)


def call(url: str, method: str, path: str, token: str | None = None, content_type: str | None = None,
         body: Any = None, headers: list[tuple[str, str]] = (), context: ssl.SSLContext | None = None) -> Reply:
    """One request on a fresh connection (``headers`` may repeat a name)."""
    host, port = _address(url)
    connection = (http.client.HTTPSConnection(host, port, timeout=5, context=context) if url.startswith("https")
                  else http.client.HTTPConnection(host, port, timeout=5))
    try:
        data = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        connection.putrequest(method, path)
        if token is not None:
            connection.putheader("Authorization", f"Bearer {token}")
        for name, value in headers:
            connection.putheader(name, value)
        if content_type is not None:
            connection.putheader("Content-Type", content_type)
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        reply = connection.getresponse()
        return Reply(reply.status, reply.headers, reply.read())
    finally:
        connection.close()


def write_routes() -> set[tuple[str, str]]:
    """``(pattern, METHOD)`` of every route whose handler changes state by that method."""
    app = make_app(Aggregator(10), PendingBatch(), AgentInventory(10), IngestStats())
    found = set()
    for rule in app.wildcard_router.rules:
        handler = rule.target
        for method in ("get", "post", "put", "delete", "patch"):
            implemented = getattr(handler, method) is not getattr(tornado.web.RequestHandler, method)
            if implemented and method.upper() in handler.STATE_CHANGING_METHODS:
                found.add((rule.matcher.regex.pattern, method.upper()))
    return found


def test_the_walk_covers_every_write_route_of_the_application() -> None:
    listed = {(pattern, method) for pattern, requests in WRITES.items() for method, *_ in requests}
    assert write_routes() == listed


def state(url: str, token: str | None = None) -> dict[str, Any]:
    """What the service holds: servers, nodes (with their pause state), and the applied counts."""
    stats = call(url, "GET", "/stats", token).json
    nodes = call(url, "GET", "/nodes", token).json
    for node in nodes["nodes"]:
        node.pop("state")  # online, then stale as time passes
    paused = {node["name"]: call(url, "GET", f"/nodes/{node['name']}", token).json["paused"]
              for node in nodes["nodes"]}
    return {"servers": call(url, "GET", "/servers", token).json, "nodes": nodes, "paused": paused,
            "applied": stats["applied"], "pending": stats["pending"], "stats_servers": stats["servers"]}


def token_file(directory: Path, name: str, token: str) -> str:
    path = directory / name
    path.write_text(f"  {token}\n")
    return str(path)


@pytest.fixture(scope="module")
def trust_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token files and a self-signed certificate for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("trust")
    token_file(directory, "write.token", WRITE_TOKEN)
    token_file(directory, "read.token", READ_TOKEN)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
                    "-days", "2", "-subj", "/CN=servertrack test", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return directory


@pytest.fixture(scope="module")
def guarded(trust_dir: Path) -> Iterator[Service]:
    """A service whose writes need the write token, holding a node, a cluster node and a server."""
    with running_service("--write-token", str(trust_dir / "write.token")) as service:
        assert call(service.url, "POST", "/nodes", WRITE_TOKEN, JSON,
                    {**HELLO_INFO, "name": "seed.node", "ip": ["10.1.1.1"]}).status == 201
        assert call(service.url, "POST", "/servers/seed/loads", WRITE_TOKEN, JSON, SAMPLE).status == 202
        wait_for(lambda: call(service.url, "GET", "/stats").json["pending"] == 0, 5, "the sample applied")
        yield service


@pytest.mark.parametrize("token", [None, WRONG_TOKEN, READ_TOKEN[:-2]], ids=["none", "wrong", "malformed"])
def test_every_write_route_refuses_without_the_token_and_changes_nothing(guarded: Service, token: str | None) -> None:
    before = state(guarded.url)
    refused_before = call(guarded.url, "GET", "/stats").json["http_refused"].get("unauthorized", 0)
    requests = [request for group in WRITES.values() for request in group]
    for method, path, content_type, body in requests:
        reply = call(guarded.url, method, path, token, content_type, body)
        assert reply.status == 401, (method, path, reply.status, reply.json)
        assert reply.headers["Content-Type"] == JSON and set(reply.json) == {"error"}, (method, path)
        expected = 'Bearer realm="servertrack"' + (', error="invalid_token"' if token is not None else "")
        assert reply.headers["WWW-Authenticate"] == expected, (method, path)
        assert WRITE_TOKEN not in reply.json["error"]
    # a sample that slipped through would be pending (in /stats) or applied (in /servers) by now
    assert state(guarded.url) == before
    stats = call(guarded.url, "GET", "/stats").json
    assert stats["http_refused"]["unauthorized"] == refused_before + len(requests)
    assert stats["dropped"].get("unauthorized", 0) >= 1  # the refused messages are counted as dropped


def test_writes_with_the_token_are_served(guarded: Service) -> None:
    assert call(guarded.url, "POST", "/servers/fine/loads", WRITE_TOKEN, JSON, SAMPLE).status == 202
    assert call(guarded.url, "POST", "/nodes/seed.node/pause", WRITE_TOKEN).json["paused"] is True
    assert call(guarded.url, "GET", "/start", WRITE_TOKEN).status == 200
    assert call(guarded.url, "GET", "/nodes/seed.node").json["paused"] is False
    # reads stay open without --read-token, the Authorization header notwithstanding
    assert call(guarded.url, "GET", "/servers").status == 200
    assert call(guarded.url, "GET", "/servers", WRONG_TOKEN).status == 200


@pytest.mark.parametrize(
    "headers, status",
    [
        ([("Authorization", f"Bearer {WRITE_TOKEN}"), ("Authorization", f"Bearer {WRITE_TOKEN}")], 401),
        ([("Authorization", f"Bearer  {WRITE_TOKEN}x")], 401),
        ([("Authorization", "Bearer " + "a" * 60_000)], 401),
        ([("Authorization", "Bearer " + "a" * 100_000)], 431),  # over the header limit: the edge answers
        ([("Authorization", f"Basic {WRITE_TOKEN}")], 401),
        # Tornado's parser refuses control characters in a header: the edge answers a JSON 400
        ([("Authorization", f"Bearer {WRITE_TOKEN}\x01")], 400),
        ([("Authorization", f"Bearer {WRITE_TOKEN}\x7f")], 400),
        ([("Authorization", f"Bearer {WRITE_TOKEN[:-1]}\xe9")], 401),
    ],
    ids=["repeated", "extra-char", "very-long", "over-the-header-limit", "basic", "control-char", "delete-char",
         "non-ascii"],
)
def test_hostile_authorization_headers_are_refused(
    guarded: Service, headers: list[tuple[str, str]], status: int,
) -> None:
    reply = call(guarded.url, "POST", "/servers/intruder/loads", None, JSON, SAMPLE, headers)
    assert reply.status == status and set(reply.json) == {"error"}
    assert call(guarded.url, "GET", "/healthz").status == 200


def test_extra_spaces_before_the_token_are_taken(guarded: Service) -> None:
    reply = call(guarded.url, "POST", "/servers/spaced/loads", None, JSON, SAMPLE,
                 [("Authorization", f"bearer    {WRITE_TOKEN}")])
    assert reply.status == 202


def test_the_python_client_and_the_cli_send_the_token(guarded: Service, trust_dir: Path) -> None:
    with pytest.raises(ClientError) as refused:
        ServerTrackClient(guarded.url).pause("seed.node")
    assert refused.value.status == 401
    assert ServerTrackClient(guarded.url, token=WRITE_TOKEN).resume("seed.node")["paused"] is False
    without = subprocess.run(servertrack_command("pause", "seed.node", "--url", guarded.url),
                             env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert without.returncode == 1 and without.stderr.count("\n") == 1 and "--token" in without.stderr
    env = {**subprocess_env(), "SERVERTRACK_TOKEN": WRITE_TOKEN}
    for argv, environment in ((["--token", str(trust_dir / "write.token")], subprocess_env()), ([], env)):
        done = subprocess.run(servertrack_command("resume", "seed.node", "--url", guarded.url, *argv),
                              env=environment, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.startswith("resumed seed.node"), done.stderr


def test_reads_need_the_read_or_the_write_token_and_healthz_stays_open(trust_dir: Path) -> None:
    with running_service("--write-token", str(trust_dir / "write.token"),
                         "--read-token", str(trust_dir / "read.token")) as service:
        for path in ("/servers", "/stats", "/nodes", "/servers/x/loads", "/no/such/route"):
            reply = call(service.url, "GET", path)
            assert reply.status == 401 and reply.headers["WWW-Authenticate"] == 'Bearer realm="servertrack"', path
            assert call(service.url, "GET", path, WRONG_TOKEN).status == 401
        assert call(service.url, "HEAD", "/servers").status == 401
        assert call(service.url, "GET", "/servers", READ_TOKEN).status == 200
        assert call(service.url, "GET", "/servers", WRITE_TOKEN).status == 200  # who may write may read
        assert call(service.url, "GET", "/healthz").status == 200
        # the read token does not grant writes
        assert call(service.url, "POST", "/servers/x/loads", READ_TOKEN, JSON, SAMPLE).status == 401
        assert ServerTrackClient(service.url, token=READ_TOKEN).servers()["servers"] == []
        shown = subprocess.run(servertrack_command("nodes", "--url", service.url), env=subprocess_env(),
                               capture_output=True, text=True, timeout=30)
        assert shown.returncode == 1 and "token" in shown.stderr and shown.stderr.count("\n") == 1


def test_without_a_write_token_serve_warns_once_that_writes_are_open(trust_dir: Path) -> None:
    with running_service() as open_service:
        assert call(open_service.url, "POST", "/servers/x/loads", None, JSON, SAMPLE).status == 202
        assert stop(open_service.process) == 0
        assert open_service.process.stderr is not None
        assert open_service.process.stderr.read().count("HTTP writes are unauthenticated") == 1
    with running_service("--write-token", str(trust_dir / "write.token")) as closed:
        assert stop(closed.process) == 0
        assert closed.process.stderr is not None
        assert "HTTP writes are unauthenticated" not in closed.process.stderr.read()


# -- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(trust_dir: Path) -> Iterator[Service]:
    """HTTPS with the write token, an idle timeout of 1 s and a cap of 3 connections per client."""
    with running_service("--tls-cert", str(trust_dir / "cert.pem"), "--tls-key", str(trust_dir / "key.pem"),
                         "--write-token", str(trust_dir / "write.token"), "--idle-timeout", "1",
                         "--max-connections-per-client", "3") as service:
        yield service


def test_the_ready_line_says_https_and_the_client_verifies_with_the_ca(tls: Service, trust_dir: Path) -> None:
    assert tls.url.startswith("https://127.0.0.1:")
    client = ServerTrackClient(tls.url, token=WRITE_TOKEN, ca=str(trust_dir / "cert.pem"))
    assert client.health()["status"] == "ok"
    assert client.record("tls-box", cpu=5.0, ram=6.0) == {"accepted": 1}
    with pytest.raises(UntrustedServer) as untrusted:
        ServerTrackClient(tls.url).health()
    assert untrusted.value.status is None and "--ca" in untrusted.value.message
    assert "certificate" in untrusted.value.message


def test_the_cli_shows_over_https_with_ca(tls: Service, trust_dir: Path) -> None:
    ServerTrackClient(tls.url, token=WRITE_TOKEN, ca=str(trust_dir / "cert.pem")).record("shown-box", 1.0, 2.0)
    ca = str(trust_dir / "cert.pem")
    wait_for(lambda: ServerTrackClient(tls.url, ca=ca).servers()["servers"] != [], 5, "the sample applied")
    wait_for(lambda: "shown-box" in str(ServerTrackClient(tls.url, ca=ca).servers()), 5, "shown-box applied")
    shown = subprocess.run(servertrack_command("show", "shown-box", "--url", tls.url, "--ca", ca),
                           env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "shown-box" in shown.stdout, shown.stderr
    untrusted = subprocess.run(servertrack_command("show", "shown-box", "--url", tls.url), env=subprocess_env(),
                               capture_output=True, text=True, timeout=30)
    assert untrusted.returncode == 2 and untrusted.stderr.count("\n") == 1 and "--ca" in untrusted.stderr


def _tls_context(trust_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(trust_dir / "cert.pem"))


def test_plain_http_and_failed_handshakes_on_the_tls_port_are_survived_and_counted(
    tls: Service, trust_dir: Path,
) -> None:
    host, port = _address(tls.url)
    for _ in range(3):
        with socket.create_connection((host, port), timeout=5) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                assert plain.recv(4096)[:4] != b"HTTP"  # no plain-HTTP answer: a TLS alert or a close
            except ConnectionResetError:
                pass
    with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
        with socket.create_connection((host, port), timeout=5) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    reply = call(tls.url, "GET", "/stats", context=_tls_context(trust_dir))
    assert reply.status == 200 and reply.json["http_refused"]["tls_handshake_failed"] >= 3


def test_a_tls_client_that_sends_nothing_is_closed_after_the_idle_timeout(tls: Service) -> None:
    with socket.create_connection(_address(tls.url), timeout=5) as idle:
        started = time.monotonic()
        assert idle.recv(16) == b""
        assert 0.8 <= time.monotonic() - started <= 3.0


def test_the_cap_per_client_holds_over_tls(tls: Service, trust_dir: Path) -> None:
    held = [socket.create_connection(_address(tls.url), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.2)  # accepted, and far from the 1 s idle timeout
        with socket.create_connection(_address(tls.url), timeout=5) as extra:
            assert extra.recv(16) == b""  # over TLS the excess is closed without an answer
    finally:
        for connection in held:
            connection.close()

    def counted() -> bool:
        try:  # refused too until the service has seen the three close
            reply = call(tls.url, "GET", "/stats", context=_tls_context(trust_dir))
        except (OSError, http.client.HTTPException):
            return False
        return bool(reply.json["http_refused"]["too_many_from_client"] >= 1)

    wait_for(counted, 5, "the refused connection counted")


def test_the_tls_service_logged_no_traceback(tls: Service) -> None:
    assert tls.process.poll() is None
    assert stop(tls.process) == 0
    assert tls.process.stderr is not None
    errors = tls.process.stderr.read()
    assert "Traceback" not in errors and "SSL Error" not in errors, errors


# -- limits per client and per request ---------------------------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[Service]:
    with running_service("--max-connections-per-client", "3", "--idle-timeout", "2", "--body-timeout", "1") as service:
        yield service


def test_a_client_over_its_connection_cap_gets_a_json_429_while_others_are_served(limited: Service) -> None:
    address = _address(limited.url)
    held = [socket.create_connection(address, timeout=5) for _ in range(3)]
    try:
        time.sleep(0.2)
        with socket.create_connection(address, timeout=5) as extra:
            answer = extra.recv(4096).decode()
        head, body = answer.split("\r\n\r\n", 1)
        assert head.startswith("HTTP/1.1 429") and "Retry-After: 1" in head and "application/json" in head
        assert "127.0.0.1" in json.loads(body)["error"]
        # another address is another client (127.0.0.2 is loopback too)
        with socket.create_connection(address, timeout=5, source_address=("127.0.0.2", 0)) as other:
            other.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := other.recv(65536):
                reply += chunk
        stats = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert stats["http_refused"]["too_many_from_client"] == 1
    finally:
        for connection in held:
            connection.close()
    wait_for(lambda: call(limited.url, "GET", "/healthz").status == 200, 5, "the client served again")


def test_a_body_trickled_one_byte_at_a_time_is_cut_off_by_the_body_timeout(limited: Service) -> None:
    body = json.dumps(SAMPLE).encode()
    with socket.create_connection(_address(limited.url), timeout=5) as slow:
        slow.sendall(b"POST /servers/slow/loads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        started = time.monotonic()
        answer = b""
        for byte in body:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            slow.settimeout(0.3)
            try:
                answer += slow.recv(4096)
            except TimeoutError:
                continue
            if answer:
                break
        slow.settimeout(5)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 0.8 <= time.monotonic() - started <= 3.0
