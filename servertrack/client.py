"""A small typed Python client of ServerTrack's native HTTP API, for scripts and the CLI.

>>> client = ServerTrackClient("http://127.0.0.1:8080")      # doctest: +SKIP
>>> client.record("web-01", cpu=12.5, ram=40.0)               # doctest: +SKIP
{'accepted': 1}
>>> client.node("web-01")["state"]                           # doctest: +SKIP
'online'

Every method sends one request and returns the JSON body of the answer as
plain dicts and lists (typed below where the shape is stable; node shapes are
``dict[str, Any]``). An HTTP error raises ``ClientError`` with the status and
the server's ``{"error": ...}`` message; no HTTP answer at all (refused,
timed out, not HTTP) raises ``ServerUnreachable``, a ``ClientError`` whose
``status`` is None, naming the URL. Messages are the server's text as it is:
escape them before printing to a terminal (``console`` does).

Only the standard library's ``urllib`` (no new dependency); request bodies are
JSON with ``Content-Type: application/json``; every path segment (a server or
node name, an IP address) is URL-quoted. ``token`` is sent as
``Authorization: Bearer`` with every request (a service started with
``--write-token`` / ``--read-token`` answers 401 without it); for an
``https://`` URL, ``ca`` names the CA certificate file (PEM) to verify the
service with instead of the system's (a certificate it cannot verify raises
``UntrustedServer``). Values such as a section, window or
state are passed through for the server to accept or refuse (400 or 404).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

import orjson

from .common.errors import ServerTrackError
from .common.tokens import token_problem

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS", "Accepted", "Bucket", "ClientError", "Health", "LoadFigures", "LoadItem", "LoadSummary",
    "NodeDetail", "NodeList", "NodeSection", "SecondBucket", "ServerEntry", "ServerLoads", "ServerPage",
    "ServerSeconds", "ServerTrackClient", "ServerUnreachable", "Trust", "UntrustedServer",
]

DEFAULT_TIMEOUT_SECONDS = 5.0
# An answer larger than this is refused unread (a listing of 200,000 nodes is ~40 MB).
MAX_ANSWER_BYTES = 256 * 1024 * 1024
_NO_BODY: Any = object()


class ClientError(ServerTrackError):
    """A request that failed: ``status`` is the HTTP status (None without an HTTP answer), ``message``
    the server's ``{"error": ...}`` text (or the HTTP reason), ``url`` what was asked, and ``body`` the
    decoded JSON body of the error answer, if it had one."""

    def __init__(self, status: int | None, message: str, url: str = "", body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.url = url
        self.body = body


class ServerUnreachable(ClientError):
    """No HTTP answer from the server (connection refused, timeout, not an HTTP server...); ``reason``
    is what failed, as the system said it."""

    def __init__(self, message: str, url: str = "", reason: str = "") -> None:
        super().__init__(None, message, url)
        self.reason = reason


class UntrustedServer(ServerUnreachable):
    """An ``https://`` service whose certificate could not be verified (pass its CA as ``ca``)."""


@dataclass(frozen=True, slots=True)
class Trust:
    """What a client presents and whom it trusts: the bearer token to send (None: none) and the CA
    certificate file for ``https://`` (None: the system's CAs)."""

    token: str | None = field(default=None, repr=False)
    ca: str | None = None


# -- shapes (see the README's HTTP API) ------------------------------------------------------------


class Health(TypedDict):
    """``GET /healthz``."""

    status: str


class Accepted(TypedDict):
    """What a recorded sample or batch answers (202)."""

    accepted: int


class LoadFigures(TypedDict):
    """One load of a bucket: average, minimum, maximum (percent)."""

    avg: float
    min: float
    max: float


class Bucket(TypedDict):
    """One minute or hour bucket; ``cpu`` and ``ram`` are None without samples."""

    start: str
    samples: int
    cpu: LoadFigures | None
    ram: LoadFigures | None


class ServerLoads(TypedDict):
    """``GET /servers/{name}/loads``: 60 minute and 24 hour buckets, oldest first."""

    server: str
    last_seen: str
    minutes: list[Bucket]
    hours: list[Bucket]


class SecondBucket(TypedDict):
    """One second of ``GET /servers/{name}/seconds``: count and averages (None without samples)."""

    start: str
    samples: int
    cpu: float | None
    ram: float | None


class ServerSeconds(TypedDict):
    """``GET /servers/{name}/seconds``."""

    server: str
    last_seen: str
    seconds: list[SecondBucket]


class ServerEntry(TypedDict):
    """One server of ``GET /servers``."""

    server: str
    last_seen: str
    ips: list[str]


class ServerPage(TypedDict):
    """``GET /servers``: a page sorted by name; ``next_after`` continues it (None on the last page)."""

    servers: list[ServerEntry]
    next_after: str | None


class LoadItem(TypedDict):
    """One item of ``record_batch``; ``ts`` (epoch seconds) defaults to when it is received."""

    server: str
    cpu: float
    ram: float
    ts: NotRequired[float]


class LoadSummary(TypedDict):
    """``GET /nodes/{id}/summary``: one figure per load over the window (None without samples)."""

    name: str
    window: str
    samples: int
    cpu: LoadFigures | None
    ram: LoadFigures | None
    uptime_seconds: int | None


# The node shapes grow with the product (see the README): plain dicts.
NodeList = dict[str, Any]  # {"nodes": [{"name", "hostname", "state", "last_seen", "ips"}, ...]}
NodeDetail = dict[str, Any]  # GET /nodes/{id}: the entry, the hello fields, "paused", a digest of the stats
NodeSection = dict[str, Any]  # GET /nodes/{id}/{section}: "name", "stats_at" and the section's fields


# -- paths -------------------------------------------------------------------------------------------


def segment(value: str) -> str:
    """``value`` as one URL path segment (``/``, ``:``, ``%``, spaces... quoted)."""
    return urllib.parse.quote(value, safe="")


def _query(**values: object) -> str:
    """``?key=value&...`` of the values that are not None, or ``""``."""
    given = {key: str(value) for key, value in values.items() if value is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""


def server_loads_path(name: str) -> str:
    """The path of a server's minute and hour windows."""
    return f"/servers/{segment(name)}/loads"


def server_seconds_path(name: str) -> str:
    """The path of a server's last 60 seconds."""
    return f"/servers/{segment(name)}/seconds"


def nodes_path(state: str | None = None) -> str:
    """The path of the node inventory, only nodes in ``state`` if given."""
    return "/nodes" + _query(state=state)


def node_path(name_or_ip: str) -> str:
    """The path of one node, by name or IP address."""
    return f"/nodes/{segment(name_or_ip)}"


def node_section_path(name_or_ip: str, section: str) -> str:
    """The path of one section (cpu, memory, disks, network, processes) of a node's latest stats."""
    return f"{node_path(name_or_ip)}/{segment(section)}"


def summary_path(name_or_ip: str, window: str) -> str:
    """The path of a node's load summary over ``window`` (1h or 24h)."""
    return f"{node_path(name_or_ip)}/summary" + _query(window=window)


# -- the client --------------------------------------------------------------------------------------


class ServerTrackClient:
    """The native API at ``base_url`` (``http://HOST:PORT`` or ``https://...``), each request waiting at
    most ``timeout`` s, sending ``token`` (if given) as a bearer token and trusting ``ca`` (a PEM file)
    for HTTPS.

    ``ValueError`` for a bad URL, timeout or token; ``ClientError`` for a CA file that cannot be used.
    """

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS, *, token: str | None = None,
                 ca: str | None = None) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        problem = token_problem(token) if isinstance(token, str) else None if token is None else "not a string"
        if problem is not None:
            raise ValueError(f"token: {problem}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._authorization = None if token is None else f"Bearer {token}"
        self._tls: ssl.SSLContext | None = None
        if scheme == "https":
            try:
                self._tls = ssl.create_default_context(cafile=ca)
            except (OSError, ssl.SSLError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                raise ClientError(None, f"cannot use the CA file {ca!r}: {reason}", self.base_url) from None

    @classmethod
    def trusting(cls, base_url: str, trust: Trust, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> ServerTrackClient:
        """A client of ``base_url`` with ``trust``'s token and CA."""
        return cls(base_url, timeout, token=trust.token, ca=trust.ca)

    def call(self, method: str, path: str, body: Any = _NO_BODY) -> Any:
        """Send ``method path`` (``path`` already quoted, with its query), ``body`` as JSON if given; return
        the decoded JSON answer. Raise ``ClientError`` for an HTTP error or an answer that is not JSON,
        ``ServerUnreachable`` without an HTTP answer."""
        return self.request(method, path, body)[1]

    def request(self, method: str, path: str, body: Any = _NO_BODY) -> tuple[int, Any]:
        """``call``, but the answer's status (a 2xx) comes back too: ``(status, decoded JSON)``."""
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        data = None
        if body is not _NO_BODY:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as response:
                status = response.status
                raw = _read_limited(response, url)
        except urllib.error.HTTPError as error:
            raise _http_error(error, url) from None
        except (urllib.error.URLError, OSError, ValueError) as error:  # refused, timed out, not HTTP
            cause = getattr(error, "reason", error)
            if isinstance(cause, ssl.SSLCertVerificationError):
                reason = f"its TLS certificate is not trusted ({cause.verify_message}); pass the CA that " \
                         "signed it (--ca FILE, or ServerTrackClient(ca=FILE))"
                raise UntrustedServer(f"cannot reach {self.base_url}: {reason}", url, reason) from None
            reason = str(cause)
            raise ServerUnreachable(f"cannot reach {self.base_url}: {reason}", url, reason) from None
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ClientError(status, f"the answer of {url} is not JSON: {error}", url) from None

    # -- servers and loads

    def health(self) -> Health:
        """``GET /healthz``: ``{"status": "ok"}`` while the service's loop answers."""
        return cast(Health, self.call("GET", "/healthz"))

    def stats(self) -> dict[str, Any]:
        """``GET /stats``: the ingest counters (received, applied, dropped by reason, per kind...)."""
        return cast(dict[str, Any], self.call("GET", "/stats"))

    def servers(self, limit: int | None = None, after: str | None = None) -> ServerPage:
        """``GET /servers``: up to ``limit`` servers (the server's default: 1,000) sorted by name, after
        ``after``; pass the answer's ``next_after`` as ``after`` for the next page."""
        return cast(ServerPage, self.call("GET", "/servers" + _query(limit=limit, after=after)))

    def loads(self, name: str) -> ServerLoads:
        """``GET /servers/{name}/loads``: the server's last 60 minutes and 24 hours."""
        return cast(ServerLoads, self.call("GET", server_loads_path(name)))

    def seconds(self, name: str) -> ServerSeconds:
        """``GET /servers/{name}/seconds``: the server's last 60 seconds."""
        return cast(ServerSeconds, self.call("GET", server_seconds_path(name)))

    def record(self, name: str, cpu: float, ram: float, ts: float | None = None) -> Accepted:
        """``POST /servers/{name}/loads``: one sample (``ts``: epoch seconds, default when received)."""
        body: dict[str, float] = {"cpu": cpu, "ram": ram}
        if ts is not None:
            body["ts"] = ts
        return cast(Accepted, self.call("POST", server_loads_path(name), body))

    def record_batch(self, items: Iterable[LoadItem | Mapping[str, Any]]) -> Accepted:
        """``POST /loads``: many samples, all or nothing (at most 10,000 items and 1 MiB)."""
        return cast(Accepted, self.call("POST", "/loads", [dict(item) for item in items]))

    # -- nodes

    def nodes(self, state: str | None = None) -> NodeList:
        """``GET /nodes``: ``{"nodes": [...]}``, only nodes in ``state`` (online, paused, stale, offline)
        if given."""
        return cast(NodeList, self.call("GET", nodes_path(state)))

    def node(self, name_or_ip: str) -> NodeDetail:
        """``GET /nodes/{id}``: one node's detail, by name or IP address."""
        return cast(NodeDetail, self.call("GET", node_path(name_or_ip)))

    def node_section(self, name_or_ip: str, section: str) -> NodeSection:
        """``GET /nodes/{id}/{section}``: part of the node's latest stats (cpu, memory, disks, network,
        processes); 404 before its first snapshot."""
        return cast(NodeSection, self.call("GET", node_section_path(name_or_ip, section)))

    def summary(self, name_or_ip: str, window: str = "1h") -> LoadSummary:
        """``GET /nodes/{id}/summary?window=``: the node's loads over the last hour (``1h``) or day (``24h``)."""
        return cast(LoadSummary, self.call("GET", summary_path(name_or_ip, window)))

    def pause(self, name_or_ip: str) -> NodeDetail:
        """``POST /nodes/{id}/pause``: ask the node's agent to stop sampling; the node's detail, whose
        ``paused`` is then true (its ``state`` turns ``paused`` once the agent says so)."""
        return cast(NodeDetail, self.call("POST", node_path(name_or_ip) + "/pause"))

    def resume(self, name_or_ip: str) -> NodeDetail:
        """``POST /nodes/{id}/resume``: ask a paused node's agent to sample again; the node's detail."""
        return cast(NodeDetail, self.call("POST", node_path(name_or_ip) + "/resume"))


def _read_limited(response: Any, url: str) -> bytes:
    """The answer's body, refused past ``MAX_ANSWER_BYTES``."""
    raw: bytes = response.read(MAX_ANSWER_BYTES + 1)
    if len(raw) > MAX_ANSWER_BYTES:
        raise ClientError(response.status, f"the answer of {url} exceeds {MAX_ANSWER_BYTES} bytes", url)
    return raw


def _http_error(error: urllib.error.HTTPError, url: str) -> ClientError:
    """A ``ClientError`` for an HTTP error answer: its ``{"error": ...}`` message, else its reason."""
    body: Any = None
    try:
        body = orjson.loads(error.read(1024 * 1024))
    except (orjson.JSONDecodeError, OSError, ValueError):
        pass
    finally:
        error.close()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    else:
        message = str(error.reason) if error.reason else f"HTTP {error.code}"
    return ClientError(error.code, message, url, body)
