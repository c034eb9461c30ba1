"""The hardened HTTP edge, over real sockets: the real app behind a ``GuardedHTTPServer`` on 127.0.0.1.

The server's event loop runs in a thread of its own; clients are raw
blocking sockets in the test thread (or a few helper threads), so a test
sees exactly the bytes a client would. The only double is the clock of
the once-per-interval log lines. Timeouts are small (``FAST``) so no test
waits long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import tornado.ioloop
import tornado.netutil
import tornado.web

from servertrack.api import MAX_BODY_BYTES, make_app
from servertrack.api.http_server import (
    ACCEPT_PAUSE,
    GuardedHTTPServer,
    HttpLimits,
    connection_cap,
    raise_descriptor_limit,
)
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.stats import IngestStats
from tests.conftest import FakeClock

T = TypeVar("T")
FAST = dict(idle_timeout=0.5, body_timeout=0.5)
LOGGER = "servertrack.api.http_server"
HOST = "Host: 127.0.0.1\r\n"
CLIENT_TIMEOUT = 3.0


# -- the server under test --------------------------------------------------------


class ServedApi:
    """``make_app`` over fresh objects, served by a ``GuardedHTTPServer`` on a loop in its own thread."""

    def __init__(
        self,
        limits: HttpLimits,
        clock: FakeClock,
        descriptor_limit: int = 100_000,
        before_serving: Callable[[], None] | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-server-loop")
        self._thread.start()
        self.server, self.port, self._io_loop = self.run(
            self._start(limits, clock, descriptor_limit, before_serving)
        )

    async def _start(
        self,
        limits: HttpLimits,
        clock: FakeClock,
        descriptor_limit: int,
        before_serving: Callable[[], None] | None,
    ) -> tuple[GuardedHTTPServer, int, tornado.ioloop.IOLoop]:
        app = make_app(Aggregator(100), PendingBatch(), AgentInventory(100), IngestStats())
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        if before_serving is not None:
            before_serving()
        server = GuardedHTTPServer(app, limits, descriptor_limit=descriptor_limit, clock=clock)
        server.add_sockets(sockets)
        return server, sockets[0].getsockname()[1], tornado.ioloop.IOLoop.current()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=5)

    def on_loop(self, read: Callable[[], T]) -> T:
        """``read()`` evaluated on the server's loop (where the server's state lives)."""

        async def call() -> T:
            return read()

        return self.run(call())

    def wait_for_open_connections(self, at_most: int) -> None:
        """Wait (up to 2 s) until the server has noticed enough closes."""
        deadline = time.monotonic() + 2.0
        while self.on_loop(lambda: self.server.open_connections) > at_most:
            assert time.monotonic() < deadline, "the server did not notice the closed connections"
            time.sleep(0.01)

    def close(self) -> None:
        """Stop the server, close its connections, check no task is left, stop and close the loop (once)."""
        if self.loop.is_closed():
            return
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self._io_loop.close(all_fds=True)  # closes self.loop too

    async def _stop(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()
        current = asyncio.current_task()
        for _ in range(50):
            left = [task for task in asyncio.all_tasks() if task is not current]
            if not left:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"tasks left running: {left}")


def open_descriptors() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir used


@pytest.fixture(autouse=True)
def no_descriptor_leak() -> Iterator[None]:
    """Every test leaves the process with the descriptors it found (servers and clients all closed)."""
    before = open_descriptors()
    yield
    assert open_descriptors() == before


@pytest.fixture
def log_clock() -> FakeClock:
    """The clock of the server's log lines; tests move it by hand."""
    return FakeClock(1000.0)


@pytest.fixture
def serve(no_descriptor_leak: None, log_clock: FakeClock) -> Iterator[Callable[..., ServedApi]]:
    """Start a server: ``serve(max_connections=3, ...)`` (``FAST`` timeouts unless given)."""
    started: list[ServedApi] = []

    def start(before_serving: Callable[[], None] | None = None, **limits: Any) -> ServedApi:
        api = ServedApi(HttpLimits(**{**FAST, **limits}), log_clock, before_serving=before_serving)
        started.append(api)
        return api

    yield start
    for api in started:
        api.close()


# -- raw clients ------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP response as a client read it."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A raw TCP connection to the server, reading HTTP/1.1 responses by hand."""

    def __init__(self, port: int, sock: socket.socket | None = None) -> None:
        self.sock = sock if sock is not None else socket.create_connection(("127.0.0.1", port), CLIENT_TIMEOUT)
        self.sock.settimeout(CLIENT_TIMEOUT)
        self._buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode("latin-1") if isinstance(data, str) else data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def response(self) -> Reply:
        """Read one response (headers and a Content-Length body)."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                raise EOFError(f"connection closed after {self._buffer!r}")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            if not self._fill():
                raise EOFError("connection closed inside a body")
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Reply(int(status_line.split()[1]), headers, body)

    def get(self, path: str = "/healthz") -> Reply:
        """``GET path`` on this connection (keep-alive)."""
        self.send(f"GET {path} HTTP/1.1\r\n{HOST}\r\n")
        return self.response()

    def rest(self) -> bytes:
        """Everything the server still sends until it closes the connection."""
        while self._fill():
            pass
        rest, self._buffer = self._buffer, b""
        return rest


def exchange(port: int, data: bytes | str) -> Reply:
    """Send ``data`` on a fresh connection; the one response, after which the server must close."""
    with Client(port) as client:
        client.send(data)
        reply = client.response()
        assert client.rest() == b""
        return reply


def assert_json_error(reply: Reply, status: int, *fragments: str) -> str:
    """``reply`` is ``status`` with a JSON ``{"error": ...}`` body naming each of ``fragments``, and closes."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers.get("content-type") == "application/json", reply.headers
    assert reply.headers.get("connection") == "close", reply.headers
    body = reply.json
    assert isinstance(body, dict) and set(body) == {"error"} and body["error"].strip(), body
    for fragment in fragments:
        assert fragment.lower() in body["error"].lower(), (fragment, body)
    return str(body["error"])


def server_records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """The server's log records containing ``text``."""
    return [record for record in caplog.records if record.name == LOGGER and text in record.getMessage()]


class DescriptorFlood:
    """Fills every free descriptor slot of the process, under a lowered soft limit, until ``release``."""

    def __init__(self) -> None:
        self._limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._dummies: list[int] = []

    def fill(self) -> None:
        """Lower the soft limit just above the descriptors in use and open descriptors until EMFILE."""
        in_use = [int(name) for name in os.listdir("/proc/self/fd")]
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(in_use) + 8, self._limits[1]))
        while True:
            try:
                self._dummies.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as error:
                assert error.errno == errno.EMFILE
                return

    def release(self) -> None:
        """Close the descriptors and restore the limit."""
        for fd in self._dummies:
            os.close(fd)
        self._dummies.clear()
        resource.setrlimit(resource.RLIMIT_NOFILE, self._limits)


# -- limits ---------------------------------------------------------------------------------


def test_limits_default_to_the_documented_values() -> None:
    assert HttpLimits() == HttpLimits(
        max_connections=4096, idle_timeout=20.0, body_timeout=30.0,
        max_header_bytes=64 * 1024, max_body_bytes=MAX_BODY_BYTES, max_connections_per_client=256,
        write_timeout=30.0,
    )
    assert MAX_BODY_BYTES == 1024 * 1024


@pytest.mark.parametrize("field", ["max_connections", "idle_timeout", "body_timeout", "max_header_bytes",
                                   "max_body_bytes", "max_connections_per_client", "write_timeout"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HttpLimits(**{field: 0})


@pytest.mark.parametrize(
    "descriptor_limit, cap",
    [
        (1_048_576, 4096),  # plenty: max_connections decides
        (1024, 896),  # an eighth kept for ZeroMQ, files, listeners
        (4096, 3584),
        (256, 192),  # at least 64 kept
        (65, 1),
        (10, 1),  # never below one
    ],
)
def test_connection_cap_keeps_descriptors_for_the_rest_of_the_process(descriptor_limit: int, cap: int) -> None:
    assert connection_cap(HttpLimits(), descriptor_limit) == cap


def test_connection_cap_is_max_connections_when_lower() -> None:
    assert connection_cap(HttpLimits(max_connections=10), 1024) == 10


def test_raise_descriptor_limit_raises_the_soft_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = min(hard, 1_048_576) if hard != resource.RLIM_INFINITY else 1_048_576
    lowered = max(open_descriptors() + 64, min(soft, expected) // 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        assert raise_descriptor_limit() == expected
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)
        assert raise_descriptor_limit() == expected  # already there: unchanged
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_raise_descriptor_limit_keeps_a_higher_soft_limit_under_a_lower_ceiling() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_descriptor_limit(ceiling=16) == soft  # never lowers
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


# -- normal service ---------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(serve: Callable[..., ServedApi]) -> None:
    api = serve()
    with Client(api.port) as client:
        for _ in range(3):
            reply = client.get()
            assert reply.status == 200 and reply.json == {"status": "ok"}
            assert "connection" not in reply.headers
        # The app's own errors are its own, and keep the connection.
        missing = client.get("/no/such/thing")
        assert missing.status == 404 and "error" in missing.json
        assert client.get().status == 200
        assert api.on_loop(lambda: api.server.open_connections) == 1


def test_stop_and_close_all_connections_end_idle_connections(serve: Callable[..., ServedApi]) -> None:
    api = serve(idle_timeout=10.0)
    with Client(api.port) as first, Client(api.port) as second:
        assert first.get().status == 200 and second.get().status == 200
        api.close()
        assert first.rest() == b"" and second.rest() == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", api.port), CLIENT_TIMEOUT).close()


# -- the connection cap -------------------------------------------------------------------------


def test_a_connection_over_the_cap_gets_a_json_503_and_the_open_ones_still_work(
    serve: Callable[..., ServedApi],
) -> None:
    api = serve(max_connections=3)
    clients = [Client(api.port) for _ in range(3)]
    try:
        for client in clients:
            assert client.get().status == 200
        with Client(api.port) as extra:
            reply = extra.response()  # answered at once, before it sends anything
            assert reply.json == {"error": "too many open connections (3); retry later"}
            assert_json_error(reply, 503)
            assert reply.headers["retry-after"] == "1"
            assert extra.rest() == b""
        # A refused client that sent its request first still reads the answer. (If the request
        # arrives after the close, the server's kernel resets the connection: after the answer.)
        with Client(api.port) as eager:
            eager.send(f"GET /healthz HTTP/1.1\r\n{HOST}\r\n")
            assert_json_error(eager.response(), 503, "too many")
            with contextlib.suppress(ConnectionResetError):
                assert eager.rest() == b""
        for client in clients:
            assert client.get().status == 200
        assert api.on_loop(lambda: api.server.refused_connections) == 2

        for client in clients[:2]:
            client.close()
        api.wait_for_open_connections(at_most=1)
        with Client(api.port) as again, Client(api.port) as twice:
            assert again.get().status == 200 and twice.get().status == 200
            assert clients[2].get().status == 200
    finally:
        for client in clients:
            client.close()


def test_refusals_are_logged_once_per_interval_with_a_count(
    serve: Callable[..., ServedApi], log_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    api = serve(max_connections=1)
    with Client(api.port) as holder:
        assert holder.get().status == 200
        for _ in range(3):
            assert exchange(api.port, "").status == 503
        lines = server_records(caplog, "refused")
        assert [record.getMessage() for record in lines] == [
            "refused 1 connection(s) since the last report: 1 connections open is the cap"
        ]
        assert lines[0].levelno == logging.WARNING
        log_clock.advance(60.0)
        assert exchange(api.port, "").status == 503
        assert [record.getMessage().split(" since")[0] for record in server_records(caplog, "refused")] == [
            "refused 1 connection(s)", "refused 3 connection(s)",
        ]


# -- out of descriptors ---------------------------------------------------------------------------


def test_out_of_descriptors_pending_connections_get_a_503_and_the_loop_stays_idle(
    serve: Callable[..., ServedApi], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api = serve()
    with Client(api.port) as warm:
        assert warm.get().status == 200
    api.wait_for_open_connections(at_most=0)
    pending = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(20)]
    flood = DescriptorFlood()
    try:
        flood.fill()
        for sock in pending:
            sock.settimeout(CLIENT_TIMEOUT)
            sock.connect(("127.0.0.1", api.port))  # no new descriptor on this side
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.15, "the loop spins on the listening socket"
        for sock in pending:
            client = Client(api.port, sock)
            assert_json_error(client.response(), 503, "out of file descriptors")
            assert client.rest() == b""
    finally:
        flood.release()
        for sock in pending:
            sock.close()
    assert api.on_loop(lambda: api.server.shed_connections) == 20
    with Client(api.port) as after:
        assert after.get().status == 200
    assert len(server_records(caplog, "out of file descriptors")) == 1
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


def test_without_a_spare_descriptor_accepting_pauses_and_resumes_when_descriptors_are_freed(
    serve: Callable[..., ServedApi], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pending = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(5)]
    flood = DescriptorFlood()
    try:
        api = serve(before_serving=flood.fill)  # started at the limit: no spare descriptor to give up
        for sock in pending:
            sock.settimeout(CLIENT_TIMEOUT)
            sock.connect(("127.0.0.1", api.port))
            sock.sendall(f"GET /healthz HTTP/1.1\r\n{HOST}\r\n".encode())
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.15, "the loop spins on the listening socket"
        flood.release()
        started = time.monotonic()
        for sock in pending:  # held in the queue meanwhile, then served
            assert Client(api.port, sock).response().status == 200
        assert time.monotonic() - started < 5 * ACCEPT_PAUSE
    finally:
        flood.release()
        for sock in pending:
            sock.close()
    failures = server_records(caplog, "accept() failed")
    assert len(failures) == 1 and "no spare descriptor" in failures[0].getMessage()
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


# -- slow clients -------------------------------------------------------------------------------------


def trickle_headers(port: int) -> tuple[float, bytes]:
    """Send a request's headers one byte per 0.1 s until the server closes; (seconds until then, bytes got)."""
    request = f"GET /healthz HTTP/1.1\r\n{HOST}X-Slow: {'a' * 40}\r\n\r\n".encode()
    with Client(port) as slow:
        started = time.monotonic()
        for index in range(len(request)):
            try:
                slow.send(request[index:index + 1])
            except OSError:
                break
            readable, _, _ = select.select([slow.sock], [], [], 0.1)
            if readable:
                break
        try:
            received = slow.rest()
        except ConnectionResetError:
            received = b""
        return time.monotonic() - started, received


def test_headers_trickled_byte_by_byte_are_cut_off_while_others_are_served(
    serve: Callable[..., ServedApi],
) -> None:
    api = serve(idle_timeout=0.5)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        tricklers = [pool.submit(trickle_headers, api.port) for _ in range(20)]
        time.sleep(0.2)
        started = time.monotonic()
        with Client(api.port) as quick:
            assert quick.get().status == 200
        assert time.monotonic() - started < 0.2
        for trickler in tricklers:
            seconds, received = trickler.result(timeout=5)
            assert 0.4 <= seconds <= 1.0 and received == b""


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve: Callable[..., ServedApi]) -> None:
    api = serve(idle_timeout=0.5)
    with Client(api.port) as client:
        assert client.get().status == 200
        started = time.monotonic()
        assert client.rest() == b""
        assert 0.4 <= time.monotonic() - started <= 1.0


BIG_ANSWER = 8 * 1024 * 1024  # more than any socket buffers between the server and a slow reader hold


class BigAnswerHandler(tornado.web.RequestHandler):
    """An answer far larger than the kernel buffers (the API's largest pages are ~1 MB); counts its calls."""

    answered = 0

    def get(self) -> None:
        BigAnswerHandler.answered += 1
        self.write(b"x" * BIG_ANSWER)


def serve_big_answers(api: ServedApi) -> None:
    """Add ``GET /big`` to the app ``api`` serves."""
    app = api.server.request_callback
    assert isinstance(app, tornado.web.Application)
    api.on_loop(lambda: app.add_handlers(r".*", [(r"/big", BigAnswerHandler)]))


def slow_reader(port: int, requests: int = 1) -> Client:
    """A client with a small receive window that asks for ``/big`` (``requests`` times, pipelined) and reads
    nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: the window it offers
    sock.connect(("127.0.0.1", port))
    client = Client(port, sock)
    client.send(f"GET /big HTTP/1.1\r\n{HOST}\r\n" * requests)
    return client


def test_a_response_not_read_within_the_write_timeout_closes_its_connection_and_is_counted(
    serve: Callable[..., ServedApi], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    api = serve(write_timeout=0.5)
    serve_big_answers(api)
    readers = [slow_reader(api.port) for _ in range(5)]
    try:
        started = time.monotonic()
        with Client(api.port) as other:  # served meanwhile
            assert other.get().status == 200
            assert time.monotonic() - started < 0.3
        api.wait_for_open_connections(at_most=len(readers))
        api.wait_for_open_connections(at_most=0)  # within 2 s of the write timeout's 0.5 s
        assert 0.4 <= time.monotonic() - started
        assert api.on_loop(lambda: api.server.counters()["slow_reader"]) == len(readers)
        assert len(server_records(caplog, "not read within 0.5 s")) == 1  # one line for the five
        with Client(api.port) as after:
            assert after.get().status == 200
    finally:
        for reader in readers:
            reader.close()


def test_requests_pipelined_behind_an_overdue_response_are_not_answered(serve: Callable[..., ServedApi]) -> None:
    api = serve(write_timeout=0.5)
    serve_big_answers(api)
    BigAnswerHandler.answered = 0
    with slow_reader(api.port, requests=4):
        api.wait_for_open_connections(at_most=0)
        time.sleep(0.2)  # time enough to answer the next request, were it read
    assert api.on_loop(lambda: BigAnswerHandler.answered) == 1
    assert api.on_loop(lambda: api.server.counters()["slow_reader"]) == 1


def test_a_large_answer_read_at_full_speed_is_not_cut_by_the_write_timeout(serve: Callable[..., ServedApi]) -> None:
    api = serve(write_timeout=0.5, idle_timeout=5.0)
    serve_big_answers(api)
    with Client(api.port) as client:
        for _ in range(3):  # keep-alive: each response has its own deadline
            reply = client.get("/big")
            assert reply.status == 200 and len(reply.body) == BIG_ANSWER
        time.sleep(0.6)  # past the deadlines of the responses already written
        assert client.get().status == 200
    assert api.on_loop(lambda: api.server.counters()["slow_reader"]) == 0


@pytest.mark.parametrize(
    "head",
    [
        f"GET /healthz HTTP/1.1\r\n{HOST}Content-Length: 100\r\n\r\n",
        # A route that streams its body (the app reads it itself).
        f"POST /servers/web-01/loads HTTP/1.1\r\n{HOST}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    ],
    ids=["buffered", "streamed"],
)
def test_a_body_not_complete_within_the_body_timeout_gets_a_json_408(
    serve: Callable[..., ServedApi], head: str
) -> None:
    api = serve(body_timeout=0.5)
    with Client(api.port) as client:
        client.send(head + '{"cpu": 1')
        started = time.monotonic()
        assert_json_error(client.response(), 408, "0.5 s")
        assert 0.4 <= time.monotonic() - started <= 1.0
        assert client.rest() == b""
    with Client(api.port) as after:
        assert after.get().status == 200


# -- parser-level errors ------------------------------------------------------------------------------

MALFORMED = [
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Content-Length: abc\r\n\r\n", 400, "Content-Length",
                 id="content-length-abc"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Content-Length: 5, 6\r\n\r\n", 400, "Content-Length",
                 id="content-lengths-unequal"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Transfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding",
                 id="transfer-encoding-gzip"),
    pytest.param("GET /healthz HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding",
                 id="transfer-encoding-gzip-http10"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
                 400, "Transfer-Encoding", id="chunked-and-content-length"),
    pytest.param("GET / HTTP/1.1\r\nbadheader\r\n\r\n", 400, "header", id="header-line-without-colon"),
    pytest.param(f"GET / HTTP/1.1\r\n{HOST} folded\r\n\r\n", 400, "header", id="folded-header-line"),
    pytest.param("GARBAGE\r\n\r\n", 400, "request line", id="request-line"),
    pytest.param(f"GET /healthz HTTP/2.0\r\n{HOST}\r\n", 400, "version", id="http-version"),
    pytest.param("GET /healthz HTTP/1.1\r\n\r\n", 400, "Host", id="missing-host"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk",
                 id="bad-chunk-size"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY", 400, "chunk",
                 id="unterminated-chunk"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n200000\r\n", 413,
                 "1048576", id="chunked-body-over-the-limit"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}Content-Length: {2 * 1024 * 1024}\r\n\r\n", 413,
                 "2097152 bytes exceeds the limit of 1048576", id="content-length-2-MiB"),
    pytest.param(f"GET /healthz HTTP/1.1\r\n{HOST}X-Big: {'a' * 70 * 1024}\r\n\r\n", 431, "65536",
                 id="headers-70-KiB"),
]


@pytest.mark.parametrize("request_bytes, status, fragment", MALFORMED)
def test_parser_errors_get_a_json_4xx_and_a_close(
    serve: Callable[..., ServedApi], caplog: pytest.LogCaptureFixture, request_bytes: str, status: int,
    fragment: str,
) -> None:
    caplog.set_level(logging.INFO)
    api = serve()
    assert_json_error(exchange(api.port, request_bytes), status, fragment)
    assert api.on_loop(lambda: api.server.rejected_requests) == 1
    with Client(api.port) as after:
        assert after.get().status == 200
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]
    assert not [record for record in caplog.records if "Malformed HTTP message" in record.getMessage()]


def test_a_body_over_the_limit_sent_in_full_still_gets_its_413(serve: Callable[..., ServedApi]) -> None:
    api = serve()
    size = 2 * 1024 * 1024
    with Client(api.port) as client:
        # Read and discarded after the answer, so that closing does not reset the connection.
        client.send(f"GET /healthz HTTP/1.1\r\n{HOST}Content-Length: {size}\r\n\r\n".encode() + b"x" * size)
        assert_json_error(client.response(), 413, "limit")
        assert client.rest() == b""


def test_headers_over_the_internal_limit_are_closed_without_a_traceback(
    serve: Callable[..., ServedApi], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api = serve()
    with Client(api.port) as client:
        try:
            client.send(f"GET /healthz HTTP/1.1\r\n{HOST}X-Big: {'a' * 200 * 1024}\r\n\r\n")
            received = client.rest()
        except (ConnectionResetError, BrokenPipeError):
            received = b""
        assert received == b""
    with Client(api.port) as after:
        assert after.get().status == 200
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.WARNING]


def test_malformed_requests_are_logged_at_info_once_per_interval(
    serve: Callable[..., ServedApi], log_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api = serve()
    for _ in range(3):
        assert exchange(api.port, "GARBAGE\r\n\r\n").status == 400
    lines = server_records(caplog, "malformed")
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert lines[0].getMessage().startswith("answered 1 malformed or slow request(s)")
    assert "127.0.0.1: 400 malformed request: Malformed HTTP request line" in lines[0].getMessage()
    log_clock.advance(60.0)
    assert exchange(api.port, "GET /healthz HTTP/1.1\r\n\r\n").status == 400
    lines = server_records(caplog, "malformed")
    assert len(lines) == 2 and lines[1].getMessage().startswith("answered 3 malformed or slow request(s)")
