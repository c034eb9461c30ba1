"""The HTTP API under test: the real app on an ephemeral 127.0.0.1 port, over real objects.

Every test gets its own shared objects (aggregator, batch, inventory, stats,
name cache), its own event loop and its own server (see ``conftest.py``).
Requests go through Tornado's HTTP client on that loop; ``LiveApi.apply()``
runs one batch apply, what the service's once-a-second task does, so no
test waits for time: the clock is a ``FakeClock`` the test moves by hand.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.netutil
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from servertrack.api import MAX_BODY_BYTES, ServiceMetrics, make_app
from servertrack.api.perf_views import perf_window
from servertrack.api.views import server_loads
from servertrack.collector.applier import BatchApplier
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.nodes import NodeRegistry
from servertrack.common.protocol import NameCache
from servertrack.common.stats import IngestStats
from servertrack.store.history import LoadHistory
from tests.conftest import FakeClock
from tests.node_fixtures import process_entry, stats_body  # noqa: F401  (re-exported for the API tests)

# 2027-01-15T08:00:00Z is an exact UTC hour; the default clock is 17.5 s into it.
HOUR_START = 1_800_000_000.0
START = HOUR_START + 17.5
DAY = 24 * 3600.0
REQUEST_TIMEOUT = 10.0
# As servertrack.service.Monitor serves the app: Tornado's own cap is 8 MiB,
# the API enforces its 1 MiB limit itself.
SERVER_MAX_BODY = MAX_BODY_BYTES  # as in servertrack.service.Monitor

# Hypothesis over HTTP: each example is a few requests on one live server.
# The function-scoped ``api`` fixture is shared by the examples on purpose:
# every example checks its own before/after state (invalid input changes
# nothing), or uses a server name of its own.
HTTP_EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# The specification's server names, written independently of the code under test.
VALID_NAME = re.compile(r"[A-Za-z0-9._-]{1,253}")
NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

NOT_NUMBERS = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(0, 100), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 100), max_size=2),
)
# Python values that are not a load; ``json.dumps`` writes NaN and infinities as literals.
INVALID_LOADS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not 0 <= x <= 100),
    st.integers().filter(lambda n: not 0 <= n <= 100),
    NOT_NUMBERS,
)
INVALID_NAMES = st.one_of(
    st.text(min_size=1, max_size=300).filter(lambda s: not VALID_NAME.fullmatch(s)),
    st.text(alphabet=NAME_CHARACTERS, min_size=254, max_size=400),
)


def standard_json(value: object) -> bool:
    """Whether ``value`` is written as RFC 8259 JSON whose numbers are finite doubles.

    NaN and infinities (Python writes the literals ``NaN``, ``Infinity``) and
    numbers beyond the double range make the whole body invalid JSON: the
    API's answer is then "not JSON" (400), it cannot name the field or item.
    """
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return not (type(value) is int and abs(value) > 1.7e308)


def oldest_accepted(now: float) -> float:
    """The specification's oldest accepted ``ts`` at ``now``: the start of the oldest of the 24 hours
    the hour window shows (the current hour and the 23 before it)."""
    return (now // 3600 - 23) * 3600


# An age every clock accepts (the oldest accepted ts is at least 23 h back).
ACCEPTED_AGE = 23 * 3600.0


def invalid_timestamps(now: float) -> st.SearchStrategy[object]:
    """Values of ``ts`` refused at ``now``: not a number, or outside [oldest_accepted(now), now + 60 s].

    (``null`` is left out: the code treats it as "no ts".)
    """
    oldest = oldest_accepted(now)

    def outside(ts: float) -> bool:
        return not oldest <= ts <= now + 60

    return st.one_of(
        st.floats(min_value=oldest - 600, max_value=oldest, exclude_max=True),
        st.floats(min_value=now + 60, max_value=now + 600, exclude_min=True),
        st.floats().filter(outside),
        st.integers().filter(outside),
        NOT_NUMBERS.filter(lambda value: value is not None),
    )


def epoch(iso: str) -> float:
    """Epoch seconds of a UTC time written ``2026-11-24T06:29:41Z``."""
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


@dataclass
class Response:
    """What a request returned: status, headers and body."""

    status: int
    headers: tornado.httputil.HTTPHeaders
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()


class LiveApi:
    """``make_app`` served on 127.0.0.1 over real objects, with request and inspection helpers."""

    def __init__(self, clock: FakeClock, max_servers: int = 10_000, batch_limit: int | None = None,
                 with_history: bool = False) -> None:
        """``with_history``: range queries (``?from=&to=``) are answered from the rings, as by a service
        with ``--store memory``; without it the app has no history reader (a test may patch one in)."""
        self.clock = clock
        self.aggregator = Aggregator(max_servers, clock=clock)
        self.batch = PendingBatch() if batch_limit is None else PendingBatch(limit=batch_limit)
        self.inventory = AgentInventory(max_servers)
        self.stats = IngestStats()
        self.names = NameCache()
        self.nodes = NodeRegistry(max_servers, clock)
        self.metrics = ServiceMetrics()  # as the service wires it: the applier observes each batch
        self.applier = BatchApplier(self.batch, self.aggregator, self.inventory, self.stats, clock, nodes=self.nodes,
                                    on_applied=self.metrics.observe_batch)
        self.history = LoadHistory(self.aggregator, self.nodes, lambda: None, None, clock) if with_history else None
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._io_loop: tornado.ioloop.IOLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._client: tornado.httpclient.AsyncHTTPClient | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self._io_loop = tornado.ioloop.IOLoop.current()
        history = {} if self.history is None else {"history": self.history}
        app = make_app(self.aggregator, self.batch, self.inventory, self.stats, self.names, self.clock, self.nodes,
                       metrics=self.metrics, **history)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self._server = tornado.httpserver.HTTPServer(app, max_body_size=SERVER_MAX_BODY)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._client = tornado.httpclient.AsyncHTTPClient(force_instance=True)

    def close(self) -> None:
        if self._io_loop is None:  # never started
            self.loop.close()
            return
        self.loop.run_until_complete(self._stop())
        self._io_loop.close(all_fds=True)  # closes self.loop too

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
        if self._client is not None:
            self._client.close()

    # -- requests -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        body_producer: Callable[..., Any] | None = None,
    ) -> Response:
        """Send one request; every HTTP answer, errors included, comes back as a ``Response``.

        A body is sent as ``application/json`` unless ``headers`` name another Content-Type.
        """
        if isinstance(body, str):
            body = body.encode()
        if body is None and body_producer is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        if body is not None or body_producer is not None:
            headers = dict(headers or {})
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/json"
        request = tornado.httpclient.HTTPRequest(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            body=body,
            headers=headers,
            body_producer=body_producer,
            allow_nonstandard_methods=True,
            request_timeout=REQUEST_TIMEOUT,
        )
        reply = self.loop.run_until_complete(self._fetch(request))
        if reply.code == 599:  # no HTTP answer at all
            raise AssertionError(f"{method} {path}: no HTTP response ({reply.error!r})")
        return Response(reply.code, reply.headers, reply.body or b"")

    async def _fetch(self, request: tornado.httpclient.HTTPRequest) -> tornado.httpclient.HTTPResponse:
        assert self._client is not None
        return await self._client.fetch(request, raise_error=False)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Response:
        """POST ``body`` as JSON (Python's ``json``: NaN and infinities become literals)."""
        return self.request("POST", path, json.dumps(body))

    def post_load(self, name: str, **fields: Any) -> Response:
        """``POST /servers/{name}/loads`` with ``fields`` as the JSON object."""
        return self.post(f"/servers/{quote(name)}/loads", fields)

    def record(self, name: str, **fields: Any) -> None:
        """Post one valid sample; it must be accepted."""
        reply = self.post_load(name, **fields)
        assert reply.status == 202, (reply.status, reply.raw)

    def loads_of(self, name: str) -> dict[str, Any]:
        """The body of ``GET /servers/{name}/loads``, which must answer 200."""
        reply = self.get(f"/servers/{quote(name)}/loads")
        assert reply.status == 200, (reply.status, reply.raw)
        return reply.json

    def raw_exchange(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Write ``data`` on a fresh TCP connection; return all the server sends until it closes."""
        return self.loop.run_until_complete(self._raw_exchange(data, timeout))

    async def _raw_exchange(self, data: bytes, timeout: float) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            return await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    # -- the service side ------------------------------------------------------

    def apply(self) -> int:
        """Run one batch apply now, as the service's periodic task would."""
        return self.loop.run_until_complete(self.applier.apply_pending())

    def state(self) -> dict[str, Any]:
        """Everything a request could store: queued samples, every server's windows, agents' seq
        and IPs, the node inventory. (The counters are not stored data: a refusal is counted.)"""
        servers = self.aggregator.servers()
        return {
            "batch": (list(self.batch.names), list(self.batch.ts), list(self.batch.cpu), list(self.batch.ram)),
            "lost": self.inventory.lost,
            "agents": {name: (self.inventory.last_seq(name), self.inventory.ips_of(name)) for name, _ in servers},
            "servers": servers,
            "windows": {name: server_loads(self.aggregator.windows(name)) for name, _ in servers},  # type: ignore[arg-type]
            "seconds": {name: perf_window(self.aggregator.windows(name), "last_minute")  # type: ignore[arg-type]
                        for name, _ in servers},
            "nodes": self.node_inventory(),
        }

    def node_inventory(self) -> dict[str, Any]:
        """Everything the node registry holds: each node's fields (a deep copy), and the refusal count."""
        listed = {node.name: dataclasses.asdict(node) for node, _ in self.nodes.nodes()}
        return {"nodes": listed, "snapshot_bytes": self.nodes.budget.used}

    def counters(self) -> dict[str, Any]:
        """``GET /stats`` as the service computes it."""
        return self.stats.snapshot(lost=self.inventory.lost, servers=len(self.aggregator), pending=len(self.batch),
                                   nodes=len(self.nodes))


def quote(name: str) -> str:
    """``name`` as one URL path segment."""
    return urllib.parse.quote(name, safe="")


def assert_json_error(reply: Response, status: int, *fragments: str) -> str:
    """``reply`` has ``status``, Content-Type application/json and a body ``{"error": "<non-empty>"}``.

    Each of ``fragments`` must appear (ignoring case) in the message; returns the message.
    """
    assert reply.status == status, (reply.status, reply.raw)
    assert reply.content_type == "application/json", (reply.status, reply.headers.get("Content-Type"))
    body = reply.json
    assert isinstance(body, dict) and set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message.strip(), body
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)
    return message


def bucket(samples: int, cpu: tuple[float, float, float], ram: tuple[float, float, float]) -> dict[str, Any]:
    """The expected figures of a bucket (without its start): loads as ``(avg, min, max)``."""
    return {
        "samples": samples,
        "cpu": dict(zip(("avg", "min", "max"), cpu)),
        "ram": dict(zip(("avg", "min", "max"), ram)),
    }


def figures(entry: dict[str, Any]) -> dict[str, Any]:
    """A bucket of a response without its ``start``."""
    return {key: value for key, value in entry.items() if key != "start"}


EMPTY = {"samples": 0, "cpu": None, "ram": None}


# -- the node inventory (``/nodes``) ---------------------------------------------

# The hello fields of a node booted an hour before ``START``, sampling every 10 s.
HELLO = {
    "hostname": "node01", "boot_time": START - 3600.0, "os": "Linux 6.1.0", "platform": "x86_64",
    "cpu_count": 2, "memory_total": 16 * 2**30, "agent_version": "0.2.0", "interval": 10.0,
}


def hello_body(name: str, ips: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    """A ``POST /nodes`` body: ``name``, ``ip`` (left out if None) and ``HELLO`` with ``changes``."""
    body: dict[str, Any] = {"name": name, **HELLO, **changes}
    if ips is not None:
        body["ip"] = ips
    return body


def register(api: LiveApi, name: str, ips: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    """``POST /nodes`` a new node, which must answer 201; returns the body."""
    reply = api.post("/nodes", hello_body(name, ips, **changes))
    assert reply.status == 201, (reply.status, reply.raw)
    return reply.json


def put_stats(api: LiveApi, node: str, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """``PUT /nodes/{node}`` a snapshot (``stats_body()`` by default), which must answer 200; returns the body."""
    reply = api.request("PUT", f"/nodes/{quote(node)}", json.dumps(stats if stats is not None else stats_body()))
    assert reply.status == 200, (reply.status, reply.raw)
    return reply.json
