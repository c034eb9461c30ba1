"""One HTTP/1 connection of the API's server, whose parser-level errors get a JSON answer.

Tornado raises ``HTTPInputError`` for a malformed request and answers it with
an empty ``400``, a reset or nothing. ``GuardedConnection`` overrides the
steps that raise it so that the error becomes a ``Refusal``, answered with
``{"error": "..."}``, ``Content-Type: application/json`` and ``Connection:
close`` (``400``, ``408`` for a slow body, ``413``, ``431``), after which the
rest of the request is read and discarded for up to ``LINGER_SECONDS`` so that
closing does not reset the connection and destroy the answer. A response not
written in full within ``write_timeout`` of its headers (a client reading it
slower than that, or not at all) closes the connection, counted as overdue.
``GuardedServerConnection`` runs Tornado's request loop with it, and
``AppGuard`` answers what the application's ``headers_received`` raises.
"""

from __future__ import annotations

import asyncio
import http
import re
import socket
from collections.abc import Awaitable, Callable

import orjson
from tornado import gen, httputil, iostream
from tornado.concurrent import Future
from tornado.ioloop import IOLoop
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters, HTTP1ServerConnection
from tornado.log import gen_log

from .http_limits import HttpLimits
from .http_pressure import HttpPressure

LINGER_SECONDS = 1.0
_MESSAGE_CHARS = 200
# Tornado's words for a chunked (or decompressed) body over the connection's limit.
_TOO_LARGE = frozenset({"chunked body too large", "decompressed body too large"})
_DIGITS = re.compile(r"[0-9]+")


def error_response(status: int, message: str, *extra_headers: tuple[str, str]) -> bytes:
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


class Refusal(Exception):
    """A request the server edge answers itself with a JSON error, then closes."""

    def __init__(self, status: int, message: str, *, drain: bool = True) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message[:_MESSAGE_CHARS]
        # Whether the rest of the request may be read and discarded before closing
        # (not while Tornado may still be reading it: a timed-out body).
        self.drain = drain


def malformed(error: Exception) -> Refusal:
    return Refusal(400, f"malformed request: {error}")


Reporter = Callable[[Refusal, object], None]
# Told of a connection closed because its response was not written in full in time (its context).
OverdueReporter = Callable[[object], None]


def _ignore_overdue(context: object) -> None:
    """The ``overdue`` of a connection nobody counts them for."""


class GuardedConnection(HTTP1Connection):
    """One request on a server connection, whose parser-level errors get a JSON answer.

    Tornado raises ``HTTPInputError`` and catches it in ``_read_message_inner``,
    answering an empty 400. The steps that raise it are overridden here to
    raise ``Refusal`` instead, which passes through Tornado's handling and is
    answered by ``read_response``.
    """

    def __init__(
        self,
        stream: iostream.IOStream,
        params: HTTP1ConnectionParameters,
        context: object,
        limits: HttpLimits,
        report: Reporter,
        pressure: HttpPressure | None = None,
        overdue: OverdueReporter = _ignore_overdue,
    ) -> None:
        super().__init__(stream, False, params, context)
        self._limits = limits
        self._report = report
        self._pressure = pressure
        self._overdue = overdue
        self._answering = False  # counted in pressure.answering: the headers are in, the answer is not done
        self._write_deadline: object | None = None  # the timeout handle, from the response's headers on
        self._overdue_closed = False

    async def read_response(self, delegate: httputil.HTTPMessageDelegate) -> bool:
        """Read one request (see ``HTTP1Connection.read_response``); answer a refused one and close.

        False (no next request) once the connection is closed for an overdue response: the requests its
        client pipelined are still in the stream's buffer, and answering them would be work for nobody."""
        try:
            return await super().read_response(delegate) and not self._overdue_closed
        except Refusal as refusal:
            await self._answer(refusal)
            return False

    def refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` through the connection's own API (from the app's ``headers_received``)."""
        self._report(refusal, self.context)
        body = orjson.dumps({"error": refusal.message})
        headers = httputil.HTTPHeaders(
            {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close"}
        )
        phrase = http.HTTPStatus(refusal.status).phrase
        self.write_headers(httputil.ResponseStartLine("HTTP/1.1", refusal.status, phrase), headers, body)
        self.finish()  # the request is not read yet: Tornado closes once this is written

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        """Write the response's headers (see ``HTTP1Connection.write_headers``); the write deadline starts."""
        if self._write_deadline is None and not self._finish_future.done():
            self._write_deadline = self.stream.io_loop.call_later(self._limits.write_timeout, self._write_overdue)
            self._finish_future.add_done_callback(self._cancel_write_deadline)
        return super().write_headers(start_line, headers, chunk)

    def finish(self) -> None:
        """The response is complete (see ``HTTP1Connection.finish``): what is left is the socket's to write,
        so the request no longer presses on bulk work, however slowly its client reads."""
        super().finish()
        self.answered()

    def _cancel_write_deadline(self, finished: Future[None]) -> None:
        if self._write_deadline is not None:  # (the stream may be detached by now)
            IOLoop.current().remove_timeout(self._write_deadline)
            self._write_deadline = None

    def _write_overdue(self) -> None:
        if self._finish_future.done() or self.stream is None or self.stream.closed():
            return
        self._overdue_closed = True
        self._overdue(self.context)
        self.close()

    def answered(self) -> None:
        """The request is over (answered, refused or its connection lost): it no longer presses."""
        if self._answering and self._pressure is not None:
            self._pressure.answering -= 1
        self._answering = False

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        if self._pressure is not None and not self._answering:
            self._answering = True
            self._pressure.answering += 1
        if len(data) > self._limits.max_header_bytes:
            raise Refusal(
                431, f"request headers of {len(data)} bytes exceed the limit of {self._limits.max_header_bytes} bytes"
            )
        try:
            start_line, headers = super()._parse_headers(data)
            httputil.parse_request_start_line(start_line)  # Tornado parses it next, outside our reach
        except httputil.HTTPInputError as error:
            raise malformed(error) from None
        return start_line, headers

    def _can_keep_alive(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> bool:
        try:
            return super()._can_keep_alive(start_line, headers)  # checks Transfer-Encoding for HTTP/1.0
        except httputil.HTTPInputError as error:
            raise malformed(error) from None

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
            raise Refusal(408, f"request body not complete within {timeout:g} s", drain=False) from None

    def _body_refusal(self, error: httputil.HTTPInputError, length: str) -> Refusal:
        limit = self._max_body_size
        if _DIGITS.fullmatch(length) and int(length) > limit:
            return Refusal(413, f"body of {length} bytes exceeds the limit of {limit} bytes")
        if str(error) in _TOO_LARGE:
            return Refusal(413, f"body exceeds the limit of {limit} bytes")
        return malformed(error)

    async def _answer(self, refusal: Refusal) -> None:
        """Send the JSON answer (after whatever response was begun), drain the input, close."""
        self._report(refusal, self.context)
        stream = self.stream
        if stream is None or stream.closed():  # detached, or the client is gone
            return
        data = b"" if self._response_start_line is not None else error_response(refusal.status, refusal.message)
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
        pressure: HttpPressure | None = None,
        overdue: OverdueReporter = _ignore_overdue,
    ) -> None:
        super().__init__(stream, params, context)
        self._limits = limits
        self._report = report
        self._pressure = pressure
        self._overdue = overdue
        self.client: str | None = None  # the remote IP address, as the server's per-client cap counts it

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        # Tornado's loop, with our connection class for each request.
        try:
            while True:
                conn = GuardedConnection(self.stream, self.params, self.context, self._limits, self._report,
                                         self._pressure, self._overdue)
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    conn.close()
                    return
                finally:
                    conn.answered()
                if not ret:
                    return
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


class AppGuard(httputil.HTTPMessageDelegate):
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
            self._connection.refuse(malformed(error))
            return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self._refused else self._delegate.data_received(chunk)

    def finish(self) -> None:
        if not self._refused:
            self._delegate.finish()

    def on_connection_close(self) -> None:
        if not self._refused:
            self._delegate.on_connection_close()
