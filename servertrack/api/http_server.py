"""The HTTP edge: Tornado's ``HTTPServer`` with limits a client cannot talk it out of.

``GuardedHTTPServer`` adds to ``tornado.httpserver.HTTPServer``:

- **A cap on open connections** (``connection_cap``). One more connection is
  answered at once with a JSON ``503`` (``Retry-After: 1``) and closed, before
  it becomes an IOStream: an idle flood cannot take the descriptors that
  ZeroMQ, the store and the listening sockets need.
- **Accepting that survives EMFILE/ENFILE.** Its own accept handler keeps one
  spare descriptor. When ``accept()`` finds the process out of descriptors it
  gives the spare up for an instant, accepts the pending connection, answers
  it a JSON ``503`` and closes it, so the listening socket does not stay
  readable and spin the loop. If the spare cannot be had back, or ``accept()``
  fails otherwise, accepting pauses for ``ACCEPT_PAUSE`` seconds.
- **Deadlines.** A request's headers must be complete within ``idle_timeout``
  (also how long an idle keep-alive connection is kept; Tornado's
  ``idle_connection_timeout`` is its header timeout), its body within
  ``body_timeout``.
- **JSON for parser-level errors.** What Tornado answers with an empty
  ``400``, a reset or nothing gets ``{"error": "..."}``, ``Content-Type:
  application/json`` and ``Connection: close``: ``400`` for a malformed request
  line, header line, ``Content-Length``, ``Transfer-Encoding``, chunk or
  ``Host``; ``408`` for a body not complete in time; ``413`` for a body over
  ``max_body_bytes`` on a route that does not stream it; ``431`` for headers
  over ``max_header_bytes``. After the answer the server stops writing and
  reads (discarding) what the client still sends for up to
  ``LINGER_SECONDS``, so that closing does not reset the connection and
  destroy the answer.
- **Quiet logs.** Each kind of incident logs one line per ``REPORT_INTERVAL``
  with a count, never one per connection or a traceback per attempt.

What stays a plain close, without an answer: headers not complete within
``idle_timeout`` (a slow or idle client gets no ``408``, as with nginx), and
headers over Tornado's internal limit of twice ``max_header_bytes``: Tornado's
``read_until_regex`` closes the stream itself there (logging one info line,
"Unsatisfiable read", without a traceback). Between ``max_header_bytes`` and
that limit the headers are read and answered ``431``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import logging
import os
import re
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from tornado import gen, httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters, HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.ioloop import IOLoop
from tornado.log import gen_log

from .handlers import MAX_BODY_BYTES

__all__ = [
    "GuardedHTTPServer",
    "HttpLimits",
    "connection_cap",
    "raise_descriptor_limit",
]

# An unlimited hard limit is taken as this many descriptors.
DESCRIPTOR_CEILING = 1_048_576
# Descriptors kept out of the connection cap (see ``connection_cap``): at least this many.
MIN_RESERVED_DESCRIPTORS = 64
REPORT_INTERVAL = 60.0
ACCEPT_PAUSE = 0.1
LINGER_SECONDS = 1.0
# As Tornado's accept handler: at most a listen backlog per wake-up, then let others run.
_ACCEPTS_PER_WAKEUP = 128
_MESSAGE_CHARS = 200
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
# Tornado's words for a chunked (or decompressed) body over the connection's limit.
_TOO_LARGE = frozenset({"chunked body too large", "decompressed body too large"})
_DIGITS = re.compile(r"[0-9]+")

_log = logging.getLogger(__name__)


def raise_descriptor_limit(ceiling: int = DESCRIPTOR_CEILING) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (at most ``ceiling``); return the soft limit in force.

    An unlimited hard limit counts as ``ceiling``; so does an unlimited soft
    limit in the value returned. If the system refuses, start-up goes on
    with the limit it had, and a warning says so.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            _log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, error)
        else:
            soft = target
    return ceiling if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP client may take of the server: connections, time and bytes."""

    max_connections: int = 4096
    # Seconds for a request's complete headers, and for an idle keep-alive connection.
    idle_timeout: float = 20.0
    # Seconds for a request's complete body once its headers are in.
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    # For routes that do not stream their body (streaming ones apply their own limit).
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        for name in ("max_connections", "idle_timeout", "body_timeout", "max_header_bytes", "max_body_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HttpLimits.{name} must be positive, not {getattr(self, name)!r}")


def connection_cap(limits: HttpLimits, descriptor_limit: int) -> int:
    """How many HTTP connections may be open at once: ``max_connections``, less if descriptors are short.

    Each connection holds a descriptor. The rest of the process needs some
    too: ZeroMQ (its context, sockets and one per connected agent), the
    store's files, the listening sockets, logs, the spare descriptor of the
    accept handler. An eighth of the limit, and at least
    ``MIN_RESERVED_DESCRIPTORS``, is kept for them, so that a flood of HTTP
    clients is refused by the cap (a JSON 503) before the process runs out
    of descriptors. A large fleet on a small limit needs a larger limit (or
    a lower ``max_connections``). Always at least 1.
    """
    reserve = max(MIN_RESERVED_DESCRIPTORS, descriptor_limit // 8)
    return max(1, min(limits.max_connections, descriptor_limit - reserve))


class IncidentLog:
    """Counts one kind of incident and logs it at most once per interval, with the count since the last line.

    ``text`` is a %-format whose first argument is that count; the others are
    the arguments of the incident that triggers the line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        text: str,
        clock: Callable[[], float],
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self.total = 0
        self._logger = logger
        self._level = level
        self._text = text
        self._clock = clock
        self._interval = interval
        self._unreported = 0
        self._latest: tuple[object, ...] = ()
        self._reported_at: float | None = None

    def record(self, *args: object) -> None:
        """Count one incident; log a line if none was logged in the last interval."""
        self.total += 1
        self._unreported += 1
        self._latest = args
        now = self._clock()
        if self._reported_at is None or now - self._reported_at >= self._interval:
            self._reported_at = now
            self.flush()

    def flush(self) -> None:
        """Log the incidents not reported yet, if any."""
        if self._unreported:
            self._logger.log(self._level, self._text, self._unreported, *self._latest)
            self._unreported = 0


def _error_response(status: int, message: str, *extra_headers: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 response: ``{"error": message}`` as JSON, then the connection closes."""
    body = orjson.dumps({"error": message})
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra_headers),
    ]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def _refuse_socket(connection: socket.socket, response: bytes) -> None:
    """Send ``response`` on a just-accepted connection and close it, without ever blocking.

    What the client has already sent is read first: closing a socket with
    unread data resets the connection, which can destroy the answer.
    """
    try:
        connection.setblocking(False)
        connection.send(response)
        for _ in range(4):
            if not connection.recv(65536):
                break
    except OSError:
        pass
    finally:
        connection.close()


class DescriptorReserve:
    """One spare descriptor, given up for an instant to accept a connection when none is left."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def restore(self) -> bool:
        """Hold the spare descriptor (open it if it is not); whether it is held."""
        if self._fd is None:
            with contextlib.suppress(OSError):
                self._fd = os.open(os.devnull, os.O_RDONLY)
        return self._fd is not None

    @contextlib.contextmanager
    def released(self) -> Iterator[bool]:
        """Free the spare descriptor for the block (yields False if there is none), then take it back."""
        if not self.restore():
            yield False
            return
        self.close()
        try:
            yield True
        finally:
            self.restore()

    def close(self) -> None:
        """Close the spare descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Acceptor:
    """Accepts the connections of one listening socket for a ``GuardedHTTPServer``; never raises."""

    def __init__(self, server: GuardedHTTPServer, listener: socket.socket) -> None:
        self._server = server
        self._listener = listener
        self._io_loop = IOLoop.current()
        self._removed = False
        self._resume: object | None = None
        self._io_loop.add_handler(listener, self._on_readable, IOLoop.READ)

    def remove(self) -> None:
        """Stop accepting for good (``TCPServer.stop`` calls this through ``_handlers``)."""
        self._removed = True
        if self._resume is not None:
            self._io_loop.remove_timeout(self._resume)
            self._resume = None
        self._io_loop.remove_handler(self._listener)

    def _on_readable(self, fd: Any, events: int) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            if self._removed:
                return
            try:
                connection, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except ConnectionAbortedError:
                continue  # closed while it waited in the queue
            except OSError as error:
                if not self._server._accept_failed(self._listener, error):
                    self._pause()
                    return
                continue
            self._server._admit(connection, address)

    def _pause(self) -> None:
        self._io_loop.remove_handler(self._listener)
        self._resume = self._io_loop.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if not self._removed:
            self._io_loop.add_handler(self._listener, self._on_readable, IOLoop.READ)


class _Refusal(Exception):
    """A request the server edge answers itself with a JSON error, then closes."""

    def __init__(self, status: int, message: str, *, drain: bool = True) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message[:_MESSAGE_CHARS]
        # Whether the rest of the request may be read and discarded before closing
        # (not while Tornado may still be reading it: a timed-out body).
        self.drain = drain


def _malformed(error: Exception) -> _Refusal:
    return _Refusal(400, f"malformed request: {error}")


Reporter = Callable[[_Refusal, object], None]


class GuardedConnection(HTTP1Connection):
    """One request on a server connection, whose parser-level errors get a JSON answer.

    Tornado raises ``HTTPInputError`` and catches it in ``_read_message_inner``,
    answering an empty 400. The steps that raise it are overridden here to
    raise ``_Refusal`` instead, which passes through Tornado's handling and is
    answered by ``read_response``.
    """

    def __init__(
        self,
        stream: iostream.IOStream,
        params: HTTP1ConnectionParameters,
        context: object,
        limits: HttpLimits,
        report: Reporter,
    ) -> None:
        super().__init__(stream, False, params, context)
        self._limits = limits
        self._report = report

    async def read_response(self, delegate: httputil.HTTPMessageDelegate) -> bool:
        """Read one request (see ``HTTP1Connection.read_response``); answer a refused one and close."""
        try:
            return await super().read_response(delegate)
        except _Refusal as refusal:
            await self._answer(refusal)
            return False

    def refuse(self, refusal: _Refusal) -> None:
        """Answer ``refusal`` through the connection's own API (from the app's ``headers_received``)."""
        self._report(refusal, self.context)
        body = orjson.dumps({"error": refusal.message})
        headers = httputil.HTTPHeaders(
            {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close"}
        )
        phrase = http.HTTPStatus(refusal.status).phrase
        self.write_headers(httputil.ResponseStartLine("HTTP/1.1", refusal.status, phrase), headers, body)
        self.finish()  # the request is not read yet: Tornado closes once this is written

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        if len(data) > self._limits.max_header_bytes:
            raise _Refusal(
                431, f"request headers of {len(data)} bytes exceed the limit of {self._limits.max_header_bytes} bytes"
            )
        try:
            start_line, headers = super()._parse_headers(data)
            httputil.parse_request_start_line(start_line)  # Tornado parses it next, outside our reach
        except httputil.HTTPInputError as error:
            raise _malformed(error) from None
        return start_line, headers

    def _can_keep_alive(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> bool:
        try:
            return super()._can_keep_alive(start_line, headers)  # checks Transfer-Encoding for HTTP/1.0
        except httputil.HTTPInputError as error:
            raise _malformed(error) from None

    def _read_body(
        self, code: int, headers: httputil.HTTPHeaders, delegate: httputil.HTTPMessageDelegate
    ) -> Awaitable[None] | None:
        try:
            body = super()._read_body(code, headers, delegate)
        except httputil.HTTPInputError as error:
            raise self._body_refusal(error, headers.get("Content-Length", "")) from None
        # The body is timed here rather than by Tornado (which closes without an
        # answer and logs each one): Tornado reads _body_timeout after this returns.
        timeout, self._body_timeout = self._body_timeout, None
        return None if body is None else self._read_body_within(body, timeout)

    async def _read_body_within(self, body: Awaitable[None], timeout: float | None) -> None:
        try:
            if timeout is None:
                await body
            else:
                await gen.with_timeout(
                    self.stream.io_loop.time() + timeout, body, quiet_exceptions=iostream.StreamClosedError
                )
        except httputil.HTTPInputError as error:
            raise self._body_refusal(error, "") from None
        except TimeoutError:
            raise _Refusal(408, f"request body not complete within {timeout:g} s", drain=False) from None

    def _body_refusal(self, error: httputil.HTTPInputError, length: str) -> _Refusal:
        limit = self._max_body_size
        if _DIGITS.fullmatch(length) and int(length) > limit:
            return _Refusal(413, f"body of {length} bytes exceeds the limit of {limit} bytes")
        if str(error) in _TOO_LARGE:
            return _Refusal(413, f"body exceeds the limit of {limit} bytes")
        return _malformed(error)

    async def _answer(self, refusal: _Refusal) -> None:
        """Send the JSON answer (after whatever response was begun), drain the input, close."""
        self._report(refusal, self.context)
        stream = self.stream
        if stream is None or stream.closed():  # detached, or the client is gone
            return
        data = b"" if self._response_start_line is not None else _error_response(refusal.status, refusal.message)
        deadline = stream.io_loop.time() + LINGER_SECONDS
        try:
            # write(b"") too waits until what is buffered has been sent.
            await gen.with_timeout(deadline, stream.write(data), quiet_exceptions=iostream.StreamClosedError)
            if refusal.drain:
                stream.socket.shutdown(socket.SHUT_WR)
                await gen.with_timeout(deadline, self._discard_input(), quiet_exceptions=iostream.StreamClosedError)
        except (iostream.StreamClosedError, TimeoutError, OSError):
            pass
        finally:
            self.close()

    async def _discard_input(self) -> None:
        while True:
            await self.stream.read_bytes(65536, partial=True)


class GuardedServerConnection(HTTP1ServerConnection):
    """A server connection whose requests are ``GuardedConnection``s."""

    def __init__(
        self,
        stream: iostream.IOStream,
        params: HTTP1ConnectionParameters,
        context: object,
        limits: HttpLimits,
        report: Reporter,
    ) -> None:
        super().__init__(stream, params, context)
        self._limits = limits
        self._report = report

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        # Tornado's loop, with our connection class for each request.
        try:
            while True:
                conn = GuardedConnection(self.stream, self.params, self.context, self._limits, self._report)
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    conn.close()
                    return
                if not ret:
                    return
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


class _AppGuard(httputil.HTTPMessageDelegate):
    """The app's delegate for one request; an ``HTTPInputError`` it raises on the headers becomes a JSON 400.

    Tornado builds the request in the app's ``headers_received``, where a
    missing or invalid ``Host`` or an unparsable query string raise.
    """

    def __init__(self, delegate: httputil.HTTPMessageDelegate, connection: GuardedConnection) -> None:
        self._delegate = delegate
        self._connection = connection
        self._refused = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        try:
            return self._delegate.headers_received(start_line, headers)
        except httputil.HTTPInputError as error:
            self._refused = True
            self._connection.refuse(_malformed(error))
            return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self._refused else self._delegate.data_received(chunk)

    def finish(self) -> None:
        if not self._refused:
            self._delegate.finish()

    def on_connection_close(self) -> None:
        if not self._refused:
            self._delegate.on_connection_close()


class GuardedHTTPServer(HTTPServer):
    """An ``HTTPServer`` for ``app`` under ``limits``: capped, EMFILE-safe, with JSON for parser errors.

    ``descriptor_limit`` (default: the soft RLIMIT_NOFILE now) sizes the
    connection cap; ``clock`` (monotonic seconds) and ``logger`` serve the
    once-per-interval incident lines. Serve with ``add_sockets``; ``stop``
    and ``close_all_connections`` work as for any ``HTTPServer``.
    """

    def __init__(
        self,
        app: httputil.HTTPServerConnectionDelegate,
        limits: HttpLimits = HttpLimits(),
        *,
        descriptor_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = _log,
    ) -> None:
        super().initialize(
            app,
            idle_connection_timeout=limits.idle_timeout,
            body_timeout=limits.body_timeout,
            # Tornado closes silently past this; up to it we read the headers and answer 431.
            max_header_size=2 * limits.max_header_bytes,
            max_body_size=limits.max_body_bytes,
        )
        self.limits = limits
        if descriptor_limit is None:
            descriptor_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if descriptor_limit == resource.RLIM_INFINITY:
                descriptor_limit = DESCRIPTOR_CEILING
        self.descriptor_limit = descriptor_limit
        self.cap = connection_cap(limits, descriptor_limit)
        self._reserve = DescriptorReserve()
        self._refused = IncidentLog(
            logger, logging.WARNING,
            "refused %d connection(s) since the last report: %d connections open is the cap", clock,
        )
        self._shed = IncidentLog(
            logger, logging.WARNING,
            "out of file descriptors: answered %d connection(s) 503 since the last report (%s; limit %d)", clock,
        )
        self._accept_errors = IncidentLog(
            logger, logging.WARNING,
            f"accept() failed %d time(s) since the last report (latest: %s); pausing accepts for {ACCEPT_PAUSE:g} s",
            clock,
        )
        self._rejected = IncidentLog(
            logger, logging.INFO,
            "answered %d malformed or slow request(s) since the last report; latest from %s: %d %s", clock,
        )

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: ``Configurable`` calls this before ``__init__``, which does the work."""

    @property
    def open_connections(self) -> int:
        """HTTP connections open now."""
        return len(self._connections)

    @property
    def refused_connections(self) -> int:
        """Connections answered 503 because ``cap`` were open."""
        return self._refused.total

    @property
    def shed_connections(self) -> int:
        """Connections answered 503 because the process was out of descriptors."""
        return self._shed.total

    @property
    def rejected_requests(self) -> int:
        """Requests answered by the server edge itself: malformed (400, 413, 431) or slow (408)."""
        return self._rejected.total

    def counters(self) -> dict[str, int]:
        """What the server edge refused, for ``/stats`` (``http_refused``)."""
        return {"too_many_connections": self.refused_connections, "out_of_descriptors": self.shed_connections,
                "malformed_or_slow": self.rejected_requests}

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on ``sockets`` with this server's accept handler (not ``tornado.netutil``'s)."""
        self._reserve.restore()
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = _Acceptor(self, sock).remove

    def stop(self) -> None:
        """Stop listening (as ``TCPServer.stop``), give the spare descriptor back, log what is unreported."""
        super().stop()
        self._reserve.close()
        for incidents in (self._refused, self._shed, self._accept_errors, self._rejected):
            incidents.flush()

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        """Serve ``stream`` with a ``GuardedServerConnection``."""
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = GuardedServerConnection(stream, self.conn_params, context, self.limits, self._report)
        self._connections.add(conn)
        conn.start_serving(self)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """The app's delegate for a request, guarded for the errors Tornado raises inside it."""
        delegate = super().start_request(server_conn, request_conn)
        if isinstance(request_conn, GuardedConnection):
            return _AppGuard(delegate, request_conn)
        return delegate

    def _admit(self, connection: socket.socket, address: Any) -> None:
        if len(self._connections) >= self.cap:
            message = f"too many open connections ({len(self._connections)}); retry later"
            self._refused.record(self.cap)  # counted before the client can see the answer
            _refuse_socket(connection, _error_response(503, message, ("Retry-After", "1")))
            return
        self._handle_connection(connection, address)

    def _accept_failed(self, listener: socket.socket, error: OSError) -> bool:
        """Deal with a failed ``accept()``; False if accepting should pause."""
        if error.errno not in _OUT_OF_DESCRIPTORS:
            self._accept_errors.record(error)
            return False
        with self._reserve.released() as freed:
            if not freed:
                self._accept_errors.record(f"{error}, and no spare descriptor")
                return False
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return True
            except OSError as again:
                self._accept_errors.record(again)
                return False
            self._shed.record(os.strerror(error.errno), self.descriptor_limit)
            message = "server out of file descriptors; retry later"
            _refuse_socket(connection, _error_response(503, message, ("Retry-After", "1")))
        return True

    def _report(self, refusal: _Refusal, context: object) -> None:
        self._rejected.record(context, refusal.status, refusal.message)
