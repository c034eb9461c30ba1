"""Tornado handlers: record loads, read windows, list servers, health and ingest counters.

Handlers get shared objects through ``initialize`` (see ``app.make_app``).
They only validate and enqueue: the aggregator is written by the applier
alone. Every error leaves as ``{"error": "..."}`` from ``JsonHandler.write_error``,
which also counts a refused message (``IngestStats``) in the one place every
refusal passes. Every request is first checked against the ``RequestPolicy``
(the application's ``policy`` setting): its bearer token (a 401 with a
``WWW-Authenticate`` challenge, see ``access_tokens``), Host, Origin of
writes, media type.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import tornado.web

from ..common.aggregator import Aggregator, ServerWindows
from ..common.batch import PendingBatch
from ..common.errors import HistoryUnreadable, InvalidSample
from ..common.fleet import fleet_servers
from ..common.incidents import IncidentLog
from ..common.inventory import AgentInventory
from ..common.nodes import NodeRegistry
from ..common.protocol import NameCache, check_load, check_timestamp
from ..common.stats import IngestStats
from ..common.text import ascii_escaped
from .load_bodies import MAX_BATCH_ITEMS, Columns, load_columns
from .request_policy import JSON_MEDIA_TYPE, RequestPolicy, media_type_refusal
from .views import server_entry, server_loads, server_seconds

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE = 1_000
MAX_PAGE = 10_000
# Bodies of a streamed POST are read (and discarded past MAX_BODY_BYTES) up to
# this size, so an oversized body still gets a JSON 413; beyond it Tornado
# closes the connection.
MAX_STREAMED_BYTES = 64 * MAX_BODY_BYTES
_DECIMAL = re.compile(r"[0-9]{1,9}")
_DIGITS = re.compile(r"[0-9]+")
WRITE_METHODS = frozenset(("POST", "PUT", "DELETE", "PATCH"))
# The drop reason of a refused message when the error does not name one.
_REASON_OF_STATUS = {400: "bad_request", 404: "unknown_node", 413: "too_large", 415: "bad_content_type",
                     503: "queue_full"}


class ApiError(tornado.web.HTTPError):
    """An HTTP error whose ``message`` is shown to the client; ``reason`` is the drop counter of a
    refused message (see ``JsonHandler.write_error``)."""

    def __init__(self, status_code: int, message: str, reason: str | None = None) -> None:
        super().__init__(status_code)
        self.message = message
        self.reason = reason


class RequestRefused(ApiError):
    """A request refused before it is read (its token, Host or Origin): counted in ``http_refused``."""


class Unauthorized(RequestRefused):
    """A 401: the request lacks the token it needs; ``challenge`` is its ``WWW-Authenticate`` header."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(401, message, "unauthorized")
        self.challenge = challenge


def allowed_methods(handler_class: type[tornado.web.RequestHandler]) -> list[str]:
    """The methods ``handler_class`` implements (those it overrides of tornado's ``RequestHandler``)."""
    return [method for method in handler_class.SUPPORTED_METHODS
            if getattr(handler_class, method.lower(), None) is not getattr(tornado.web.RequestHandler, method.lower(), None)]


def error_message(handler: tornado.web.RequestHandler, status_code: int) -> str:
    """What an error body says when no ``ApiError`` names the problem: the method refused, an internal
    error (its detail stays in the log), or the status' reason. A 405 also gets the ``Allow`` header
    naming the handler's methods (RFC 9110 15.5.6)."""
    if status_code == 405:
        handler.set_header("Allow", ", ".join(allowed_methods(type(handler))))
        return f"method {handler.request.method} not allowed on {handler.request.path}"
    if status_code >= 500:
        return "internal error"
    return handler._reason.lower()


class JsonHandler(tornado.web.RequestHandler):
    """Base handler: JSON responses, JSON errors, the request policy.

    ``MESSAGE_KINDS`` maps each method that carries a message (a sample, a
    hello, a snapshot) to its kind, so that a refusal is counted as a dropped
    message of that kind; ``message_count`` is how many messages the request
    carried (a batch of samples carries many).
    """

    MESSAGE_KINDS: dict[str, str] = {}
    # The methods that change state, so need the write token (the old clients' GET /stop is one).
    STATE_CHANGING_METHODS = WRITE_METHODS
    NEEDS_TOKEN = True  # False: served without any token (/healthz)
    message_count = 1
    body_media_type = JSON_MEDIA_TYPE  # what a message body must be declared as

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    @property
    def ingest_stats(self) -> IngestStats:
        """The service's counters (the application's ``stats`` setting)."""
        stats: IngestStats = self.application.settings["stats"]
        return stats

    @property
    def message_kind(self) -> str | None:
        """The kind of message this request carries, or None."""
        return self.MESSAGE_KINDS.get(self.request.method or "")

    def prepare(self) -> Awaitable[None] | None:  # a subclass may prepare asynchronously
        """Refuse a request without the token it needs (401), a foreign Host (403), a cross-origin
        write (403) and a message body that is not JSON (415) before anything else is read."""
        policy: RequestPolicy = self.application.settings["policy"]
        if self.NEEDS_TOKEN:
            writes = self.request.method in self.STATE_CHANGING_METHODS
            denied = policy.tokens.refusal(self.request.headers.get_list("Authorization"), writes)
            if denied is not None:
                raise Unauthorized(denied.message, denied.challenge)
        host = self.request.headers.get("Host")
        refusal = policy.host_refusal(host)
        if refusal is not None:
            raise RequestRefused(403, refusal, "bad_host")
        if self.request.method in WRITE_METHODS:
            refusal = policy.origin_refusal(self.request.headers.get("Origin"), host)
            if refusal is not None:
                raise RequestRefused(403, refusal, "bad_origin")
        if self.message_kind is not None:
            refusal = media_type_refusal(self.request.headers.get("Content-Type"), self.body_media_type)
            if refusal is not None:
                raise ApiError(415, refusal, "bad_content_type")
        return None

    def write_json(self, status: int, body: Any) -> None:
        """Finish the request with ``body`` as JSON."""
        self.set_status(status)
        self.finish(orjson.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render every error as ``{"error": message}``, and count what it refused."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.message if isinstance(error, ApiError) else error_message(self, status_code)
        reason = error.reason if isinstance(error, ApiError) else None
        if isinstance(error, Unauthorized):
            self._refused_unauthorized(error)
        if isinstance(error, RequestRefused):
            self.ingest_stats.http_refused[reason or "refused"] += 1
        elif self.message_kind is not None:
            reason = reason or ("internal_error" if status_code >= 500 else _REASON_OF_STATUS.get(status_code))
            self.ingest_stats.refuse(self.message_kind, reason or f"http_{status_code}", self.message_count)
        self.finish(orjson.dumps({"error": message}))

    def _refused_unauthorized(self, error: Unauthorized) -> None:
        """Challenge the client, count the message it carried as dropped, log (once per interval)."""
        self.set_header("WWW-Authenticate", error.challenge)
        if self.message_kind is not None:
            self.ingest_stats.refuse(self.message_kind, "unauthorized", self.message_count)
        incidents: IncidentLog | None = self.application.settings.get("unauthorized_log")
        if incidents is not None:
            incidents.record(self.request.method, ascii_escaped(self.request.path, 100), self.request.remote_ip)

    def parse_json_body(self) -> Any:
        """The request body as JSON, or a 400."""
        try:
            return orjson.loads(self.request.body)
        except orjson.JSONDecodeError as error:
            raise ApiError(400, f"body is not valid JSON: {error}", "not_json") from None

    def canonical_name(self, names: NameCache, raw: str) -> str:
        """The canonical server name from the URL, or a 400."""
        try:
            return names.canonical(raw)
        except InvalidSample as invalid:
            raise ApiError(400, invalid.message, invalid.reason) from None


@tornado.web.stream_request_body
class StreamedJsonHandler(JsonHandler):
    """A handler that reads its body itself, so an oversized one gets a JSON 413."""

    def prepare(self) -> Awaitable[None] | None:  # a subclass may prepare asynchronously
        self.chunks: list[bytes] = []
        self.received_bytes = 0
        super().prepare()
        length = self.request.headers.get("Content-Length", "")
        if length and _DIGITS.fullmatch(length) is None:
            return None  # Tornado itself refuses a malformed Content-Length
        if length and int(length) > MAX_BODY_BYTES:
            raise ApiError(413, f"body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}", "too_large")
        self.request.connection.set_max_body_size(MAX_STREAMED_BYTES)  # type: ignore[union-attr]
        return None

    def data_received(self, chunk: bytes) -> None:
        self.received_bytes += len(chunk)
        if self.received_bytes <= MAX_BODY_BYTES:
            self.chunks.append(chunk)

    def streamed_body(self) -> bytes:
        """The streamed body's bytes: 413 if over 1 MiB."""
        if self.received_bytes > MAX_BODY_BYTES:
            raise ApiError(413, f"body exceeds the limit of {MAX_BODY_BYTES} bytes", "too_large")
        self.request.body = b"".join(self.chunks)
        return self.request.body

    def parse_json_body(self) -> Any:
        """The streamed body as JSON: 413 if over 1 MiB, 400 if not JSON."""
        self.streamed_body()
        return super().parse_json_body()


class NotFoundHandler(JsonHandler):
    """Any path no route matches."""

    def prepare(self) -> Awaitable[None] | None:  # a subclass may prepare asynchronously
        super().prepare()
        shown = self.request.path if len(self.request.path) <= 200 else self.request.path[:200] + "..."
        raise ApiError(404, f"no such endpoint: {shown}")


class LoadsHandler(StreamedJsonHandler):
    """A handler of one server's loads: the aggregator and what queueing a sample needs."""

    MESSAGE_KINDS = {"POST": "sample"}

    def initialize(
        self,
        aggregator: Aggregator,
        batch: PendingBatch,
        stats: IngestStats,
        names: NameCache,
        clock: Callable[[], float],
    ) -> None:
        self.aggregator = aggregator
        self.batch = batch
        self.stats = stats
        self.names = names
        self.clock = clock

    async def prepare(self) -> None:
        """For a collector of a fleet, a GET's server is read as the whole fleet holds it (this collector's
        rings and what the others shared, off the loop: ``LoadHistory.windows``) before the handler runs."""
        super().prepare()
        history: Any = self.application.settings.get("history")
        if self.request.method != "GET" or not self.path_args or getattr(history, "mirror", None) is None:
            return
        name = self.canonical_name(self.names, self.path_args[0])
        try:
            self._fleet_windows = await history.windows(name)
        except HistoryUnreadable as error:
            raise ApiError(503, error.message, "store_unavailable") from None

    def known_windows(self, raw_name: str, what: str = "server") -> ServerWindows:
        """The windows of the server in the URL: 400 for a bad name, 404 for an unknown one."""
        name = self.canonical_name(self.names, raw_name)
        windows = self._fleet_windows if hasattr(self, "_fleet_windows") else self.aggregator.windows(name)
        if windows is None:
            raise ApiError(404, f"unknown {what} {name!r}")
        return windows  # type: ignore[return-value]


class ServerLoadsHandler(LoadsHandler):
    """``POST`` one sample for a server; ``GET`` its minute and hour windows."""

    def get(self, raw_name: str) -> Awaitable[None] | None:  # a subclass may answer asynchronously
        self.write_json(200, server_loads(self.known_windows(raw_name)))
        return None

    def post(self, raw_name: str) -> None:
        name = self.canonical_name(self.names, raw_name)
        body = self.parse_json_body()
        if type(body) is not dict:
            raise ApiError(400, 'body must be a JSON object like {"cpu": 12.5, "ram": 40.0}')
        try:
            ts, cpu, ram = _validated_load(body, self.clock())
        except InvalidSample as invalid:
            raise ApiError(400, invalid.message, invalid.reason) from None
        queue_sample(self.batch, self.stats, name, ts, cpu, ram)
        self.write_json(202, {"accepted": 1})


def queue_sample(batch: PendingBatch, stats: IngestStats, name: str, ts: float, cpu: float, ram: float) -> None:
    """Queue one validated sample for the next apply and count it; a 503 when the queue is full."""
    if batch.room() < 1:
        raise ApiError(503, "ingest queue is full, retry in a second", "queue_full")
    batch.add(name, ts, cpu, ram)
    stats.received["sample"] += 1


class ServerSecondsHandler(LoadsHandler):
    """``GET /servers/{name}/seconds``: the server's last 60 seconds, one bucket each."""

    MESSAGE_KINDS: dict[str, str] = {}  # read-only

    def get(self, raw_name: str) -> None:
        self.write_json(200, server_seconds(self.known_windows(raw_name)))


class BatchLoadsHandler(StreamedJsonHandler):
    """``POST /loads``: up to 10,000 samples for any servers, all or nothing."""

    MESSAGE_KINDS = {"POST": "sample"}

    def initialize(
        self,
        batch: PendingBatch,
        stats: IngestStats,
        names: NameCache,
        clock: Callable[[], float],
    ) -> None:
        self.batch = batch
        self.stats = stats
        self.names = names
        self.clock = clock

    def post(self) -> None:
        now = self.clock()
        # A plain valid body is decoded and checked in C (load_bodies); anything else, valid or not,
        # by checked_columns, which names what is wrong.
        columns = load_columns(self.streamed_body(), now, self.names)
        if columns is None:
            items = self.parse_json_body()
            if type(items) is list:
                self.message_count = max(1, len(items))  # a refusal drops every item
            columns = checked_columns(items, now, self.names)
        names, stamps, cpus, rams = columns
        self.message_count = max(1, len(names))
        if self.batch.room() < len(names):
            raise ApiError(503, "ingest queue is full, retry in a second", "queue_full")
        self.batch.extend(names, stamps, cpus, rams)
        self.stats.received["sample"] += len(names)
        self.write_json(202, {"accepted": len(names)})


def checked_columns(items: Any, now: float, names: NameCache) -> Columns:
    """The samples of a ``POST /loads`` body (parsed JSON) received at ``now`` as columns (canonical
    names, ts, cpu, ram), every item checked in Python; an ``ApiError`` naming the first bad one."""
    if type(items) is not list:
        raise ApiError(400, 'body must be a JSON list like [{"server": "web-01", "cpu": 1, "ram": 2}]', "bad_type")
    if len(items) > MAX_BATCH_ITEMS:
        raise ApiError(413, f"{len(items)} items exceed the limit of {MAX_BATCH_ITEMS} per request", "too_large")
    canonical = names.canonical
    servers: list[str] = []
    stamps: list[float] = []
    cpus: list[float] = []
    rams: list[float] = []
    for index, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise InvalidSample("bad_type", "item must be a JSON object")
            if "server" not in item:
                raise InvalidSample("missing_field", "missing key 'server'", "server")
            servers.append(canonical(item["server"]))
            ts, cpu, ram = _validated_load(item, now)
        except InvalidSample as invalid:
            raise ApiError(400, f"item {index}: {invalid.message}", invalid.reason) from None
        stamps.append(ts)
        cpus.append(cpu)
        rams.append(ram)
    return servers, stamps, cpus, rams


def _validated_load(body: dict[str, Any], now: float) -> tuple[float, float, float]:
    """``(ts, cpu, ram)`` of one JSON sample; ``ts`` defaults to ``now``."""
    for key in ("cpu", "ram"):
        if key not in body:
            raise InvalidSample("missing_field", f"missing key {key!r}", key)
    cpu = check_load(body["cpu"], "cpu")
    ram = check_load(body["ram"], "ram")
    return (check_timestamp(body["ts"], now) if "ts" in body else now), cpu, ram


class ServersHandler(JsonHandler):
    """``GET /servers``: known servers sorted by name, paged with ``limit`` and ``after``."""

    def initialize(self, aggregator: Aggregator, inventory: AgentInventory, names: NameCache) -> None:
        self.aggregator = aggregator
        self.inventory = inventory
        self.names = names

    def get(self) -> None:
        limit_text = self.get_query_argument("limit", str(DEFAULT_PAGE))
        if _DECIMAL.fullmatch(limit_text) is None or not 1 <= int(limit_text) <= MAX_PAGE:
            raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE}, got {limit_text!r}")
        limit = int(limit_text)
        after = self.get_query_argument("after", None)
        if after is not None:
            after = self.canonical_name(self.names, after)
        fleet = self.application.settings.get("fleet_view")
        if fleet is not None and fleet.mirror is not None and fleet.mirror.tables:
            page = fleet_servers(fleet.table(), limit + 1, after)  # the whole fleet's
        else:
            page = self.aggregator.servers(limit=limit + 1, after=after)
        more = len(page) > limit
        page = page[:limit]
        ips_of = self.inventory.ips_of
        self.write_json(
            200,
            {
                "servers": [server_entry(name, seen, ips_of(name)) for name, seen in page],
                "next_after": page[-1][0] if more else None,
            },
        )


class HealthHandler(JsonHandler):
    """``GET /healthz``: the process is up and its loop answers (served without any token)."""

    NEEDS_TOKEN = False

    def get(self) -> None:
        body = {"status": "ok"}
        store = self.application.settings.get("store")  # the service's store: "ok", "failing" or "memory"
        if store is not None:
            body["store"] = store.health()["store"]
        self.write_json(200, body)


class StatsHandler(JsonHandler):
    """``GET /stats``: ingest counters."""

    def initialize(
        self,
        aggregator: Aggregator,
        inventory: AgentInventory,
        batch: PendingBatch,
        stats: IngestStats,
        nodes: NodeRegistry,
    ) -> None:
        self.aggregator = aggregator
        self.inventory = inventory
        self.batch = batch
        self.stats = stats
        self.nodes = nodes

    def get(self) -> None:
        server_counters = self.application.settings.get("http_counters")  # set by the service's HTTP server
        http = server_counters() if server_counters is not None else None
        body = self.stats.snapshot(lost=self.inventory.lost, servers=len(self.aggregator),
                                   pending=len(self.batch), nodes=len(self.nodes), http=http)
        control = self.application.settings.get("control")  # the control channel's messages (pause, resume)
        if control is not None:
            body["control"] = control.counters()
        store = self.application.settings.get("store")
        if store is not None:
            body["store"] = store.health()
            # range reads the store could not answer (503s), counted by the history reader
            body["store"]["read_failures"] = getattr(self.application.settings.get("history"), "read_failures", 0)
        history = self.application.settings.get("history")
        mirror = getattr(history, "mirror", None)
        if mirror is not None:  # a collector of a fleet: what it knows of the others
            body["fleet"] = {**mirror.counters(), "window_fallbacks": getattr(history, "fleet_fallbacks", 0)}
        trust = self.application.settings.get("curve")  # the collector's CURVE handshakes and keys, if on
        body["curve"] = trust() if trust is not None else {"enabled": False}
        self.write_json(200, body)
