"""The HTTP edge: Tornado's ``HTTPServer`` with limits a client cannot talk it out of.

This module accepts and admits connections; ``http_connection`` answers a
malformed request on one; ``http_limits`` holds the limits and the incident log.

``GuardedHTTPServer`` adds to ``tornado.httpserver.HTTPServer``:

- **A cap on open connections** (``connection_cap``). One more connection is
  answered at once with a JSON ``503`` (``Retry-After: 1``) and closed, before
  it becomes an IOStream: an idle flood cannot take the descriptors that
  ZeroMQ, the store and the listening sockets need.
- **A cap per client** (``max_connections_per_client``, per remote IP
  address): one more connection from an address that has that many open is
  answered a JSON ``429`` (``Retry-After: 1``) and closed the same way, so one
  client cannot take the whole cap from the others.
- **TLS** (``ssl_options``, an ``ssl.SSLContext``): the caps above and the
  deadlines below hold as for plain HTTP (the handshake counts against
  ``idle_timeout``). A refused connection is closed without an answer there:
  answering would need the handshake the cap saves. A failed handshake (a
  plain-HTTP request to the TLS port, a client that does not trust the
  certificate) is counted and logged once per interval, not once per attempt.
- **Accepting that survives EMFILE/ENFILE.** Its own accept handler keeps one
  spare descriptor. When ``accept()`` finds the process out of descriptors it
  gives the spare up for an instant, accepts the pending connection, answers
  it a JSON ``503`` and closes it, so the listening socket does not stay
  readable and spin the loop. If the spare cannot be had back, or ``accept()``
  fails otherwise, accepting pauses for ``ACCEPT_PAUSE`` seconds.
- **Deadlines.** A request's headers must be complete within ``idle_timeout``
  (also how long an idle keep-alive connection is kept; Tornado's
  ``idle_connection_timeout`` is its header timeout), its body within
  ``body_timeout``, and its response must be written in full within
  ``write_timeout`` of the response's headers: Tornado has no write timeout,
  and a client that reads slowly (or not at all) would otherwise hold its
  connection, and the part of the answer its socket buffers cannot take, for
  as long as it likes. Such a connection is closed, counted as
  ``slow_reader`` and logged once per interval.
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

import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tornado import httputil, iostream
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.ioloop import IOLoop

from .http_connection import AppGuard, GuardedConnection, GuardedServerConnection, Refusal, error_response
from .http_pressure import HttpPressure
from ..common.incidents import IncidentLog
from .http_limits import DESCRIPTOR_CEILING, HttpLimits, connection_cap, raise_descriptor_limit

__all__ = [
    "GuardedHTTPServer",
    "HttpLimits",
    "connection_cap",
    "raise_descriptor_limit",
]

ACCEPT_PAUSE = 0.1
# As Tornado's accept handler: at most a listen backlog per wake-up, then let others run.
_ACCEPTS_PER_WAKEUP = 128
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
# What Tornado's SSLIOStream logs, one line per failed handshake (see ``HandshakeFailures``).
_TORNADO_SSL_ERROR = "SSL Error on %s %s: %s"
_TORNADO_LOG = "tornado.general"

_log = logging.getLogger(__name__)


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


class HandshakeFailures(logging.Filter):
    """Takes Tornado's line per failed TLS handshake off its log, into an ``IncidentLog`` (a count, one line
    per interval). While several servers filter the same log, the first one installed counts them all."""

    def __init__(self, incidents: IncidentLog) -> None:
        super().__init__()
        self.incidents = incidents

    def filter(self, record: logging.LogRecord) -> bool:
        """Count (and drop) a failed handshake's record; let every other record through."""
        if record.msg != _TORNADO_SSL_ERROR or not isinstance(record.args, tuple) or len(record.args) != 3:
            return True
        self.incidents.record(record.args[1], record.args[2])
        return False


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
        pressure: HttpPressure | None = None,
        ssl_options: ssl.SSLContext | None = None,
    ) -> None:
        """``pressure`` (if given) is told of every socket and every request being answered; with
        ``ssl_options`` the server speaks HTTPS only."""
        super().initialize(
            app,
            ssl_options=ssl_options,
            idle_connection_timeout=limits.idle_timeout,
            body_timeout=limits.body_timeout,
            # Tornado closes silently past this; up to it we read the headers and answer 431.
            max_header_size=2 * limits.max_header_bytes,
            max_body_size=limits.max_body_bytes,
        )
        self.limits = limits
        self.pressure = pressure
        if descriptor_limit is None:
            descriptor_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if descriptor_limit == resource.RLIM_INFINITY:
                descriptor_limit = DESCRIPTOR_CEILING
        self.descriptor_limit = descriptor_limit
        self.cap = connection_cap(limits, descriptor_limit)
        self._reserve = DescriptorReserve()
        self._per_client: Counter[str] = Counter()  # open connections per remote IP address
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
        self._crowded = IncidentLog(
            logger, logging.WARNING,
            "refused %d connection(s) since the last report: %s had %d open, the cap per client", clock,
        )
        self._slow_readers = IncidentLog(
            logger, logging.INFO,
            f"closed %d connection(s) since the last report whose response was not read within "
            f"{limits.write_timeout:g} s; latest from %s", clock,
        )
        self._handshakes: HandshakeFailures | None = None
        if ssl_options is not None:
            self._handshakes = HandshakeFailures(IncidentLog(
                logger, logging.INFO, "%d TLS handshake(s) failed since the last report; latest from %s: %s", clock,
            ))
            logging.getLogger(_TORNADO_LOG).addFilter(self._handshakes)

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

    @property
    def crowded_connections(self) -> int:
        """Connections refused (429) because their client had ``max_connections_per_client`` open."""
        return self._crowded.total

    @property
    def slow_readers(self) -> int:
        """Connections closed because their response was not written in full within ``write_timeout``."""
        return self._slow_readers.total

    @property
    def failed_handshakes(self) -> int:
        """TLS handshakes that failed with a protocol error (0 without TLS)."""
        return 0 if self._handshakes is None else self._handshakes.incidents.total

    def connections_from(self, client: str) -> int:
        """How many connections from the IP address ``client`` are open now."""
        return self._per_client[client]

    def counters(self) -> dict[str, int]:
        """What the server edge refused, for ``/stats`` (``http_refused``)."""
        counters = {"too_many_connections": self.refused_connections, "out_of_descriptors": self.shed_connections,
                    "malformed_or_slow": self.rejected_requests, "too_many_from_client": self.crowded_connections,
                    "slow_reader": self.slow_readers}
        if self._handshakes is not None:
            counters["tls_handshake_failed"] = self.failed_handshakes
        return counters

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on ``sockets`` with this server's accept handler (not ``tornado.netutil``'s)."""
        self._reserve.restore()
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = _Acceptor(self, sock).remove
            if self.pressure is not None:
                self.pressure.watch(sock.fileno())

    def stop(self) -> None:
        """Stop listening (as ``TCPServer.stop``), give the spare descriptor back, log what is unreported."""
        super().stop()
        self._reserve.close()
        for incidents in (self._refused, self._shed, self._accept_errors, self._rejected, self._crowded,
                          self._slow_readers):
            incidents.flush()
        if self._handshakes is not None:
            logging.getLogger(_TORNADO_LOG).removeFilter(self._handshakes)
            self._handshakes.incidents.flush()

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        """Serve ``stream`` with a ``GuardedServerConnection``."""
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = GuardedServerConnection(stream, self.conn_params, context, self.limits, self._report, self.pressure,
                                       self._slow_readers.record)
        if self.pressure is not None and stream.socket is not None:
            self.pressure.watch(stream.socket.fileno())
        self._connections.add(conn)
        conn.client = _client_of(address)
        self._per_client[conn.client] += 1
        conn.start_serving(self)

    def on_close(self, server_conn: object) -> None:
        """A connection ended: it no longer counts, in all or for its client."""
        super().on_close(server_conn)
        client = getattr(server_conn, "client", None)
        if client is not None:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]  # the counter holds only clients with connections open

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """The app's delegate for a request, guarded for the errors Tornado raises inside it."""
        delegate = super().start_request(server_conn, request_conn)
        if isinstance(request_conn, GuardedConnection):
            return AppGuard(delegate, request_conn)
        return delegate

    def _admit(self, connection: socket.socket, address: Any) -> None:
        if len(self._connections) >= self.cap:
            message = f"too many open connections ({len(self._connections)}); retry later"
            self._refused.record(self.cap)  # counted before the client can see the answer
            self._refuse(connection, error_response(503, message, ("Retry-After", "1")))
            return
        client = _client_of(address)
        open_from_client = self._per_client[client]
        if open_from_client >= self.limits.max_connections_per_client:
            message = f"too many open connections from {client} ({open_from_client}); close some or retry later"
            self._crowded.record(client, open_from_client)
            self._refuse(connection, error_response(429, message, ("Retry-After", "1")))
            return
        try:
            self._handle_connection(connection, address)
        except (OSError, ssl.SSLError) as error:  # TLS: the socket could not even be wrapped (reset at once)
            connection.close()
            self._accept_errors.record(error)

    def _refuse(self, connection: socket.socket, response: bytes) -> None:
        """Answer ``response`` and close; over TLS just close (an answer would need the handshake)."""
        if self.ssl_options is None:
            _refuse_socket(connection, response)
        else:
            connection.close()

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
            self._refuse(connection, error_response(503, message, ("Retry-After", "1")))
        return True

    def _report(self, refusal: Refusal, context: object) -> None:
        self._rejected.record(context, refusal.status, refusal.message)


def _client_of(address: Any) -> str:
    """The IP address of a connection's remote ``address`` (what the per-client cap counts)."""
    return str(address[0]) if isinstance(address, tuple) and address else ""
