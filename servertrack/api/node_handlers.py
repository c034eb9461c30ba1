"""Tornado handlers of the node inventory: register, update, deregister, list and read nodes.

A node is addressed in the URL by its name or by any of its IP addresses
(``NodeRegistry.resolve``). Every request is validated in full before the
registry is touched, so a refused request changes nothing (except the
counters of refusals).
Errors leave as ``{"error": "..."}`` through ``JsonHandler.write_error``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.httputil
import tornado.web

from ..common.aggregator import Aggregator
from ..common.errors import HistoryUnreadable, InvalidSample
from ..common.inventory import AgentInventory
from ..common.node_messages import HELLO_FIELDS, STATS
from ..common.node_schema import MAX_PID, MAX_TOP_PROCESSES
from ..common.nodes import (
    NODE_STATES,
    AmbiguousAddress,
    Node,
    NodeRefused,
    NodeRegistry,
    UnknownNode,
)
from ..common.protocol import NameCache, check_ips, is_ip_address
from .handlers import ApiError, JsonHandler, StreamedJsonHandler
from .node_views import (
    load_summary,
    node_detail,
    node_entry,
    node_section,
    process_ids,
    top_process,
    uptime_seconds,
)

# ``?window=`` of the summary: the last hour (minute buckets) or the last day (hour buckets).
SUMMARY_WINDOWS = ("1h", "24h")
DEFAULT_SUMMARY_WINDOW = "1h"
_PID = re.compile(r"[0-9]{1,%d}" % len(str(MAX_PID)))
# The status of a message the registry refuses: a snapshot over its own budget
# is too large; a full registry or memory budget is the service's condition.
_REFUSAL_STATUS = {"over_node_budget": 413}


def field_error(invalid: InvalidSample, field: str) -> ApiError:
    """A 400 (from ``invalid``) whose message starts with the name of the offending ``field``."""
    message = invalid.message
    return ApiError(400, message if message.startswith(field) else f"{field}: {message}", invalid.reason)


def _refusal_error(refused: NodeRefused) -> ApiError:
    return ApiError(_REFUSAL_STATUS.get(refused.reason, 503), refused.message, refused.reason)


def find_node(nodes: NodeRegistry, names: NameCache, raw: str) -> Node:
    """The node named ``raw``, or the one owning IP address ``raw``.

    400 if ``raw`` is neither a valid name nor an IP address, 404 if no node
    matches, 409 if several nodes share the address.
    """
    try:
        wanted = names.canonical(raw)  # the same spelling rules as every name (case, one trailing dot)
    except InvalidSample:
        if not is_ip_address(raw):
            shown = raw if len(raw) <= 64 else raw[:64] + "..."
            raise ApiError(400, f"{shown!r} is neither a node name nor an IP address", "bad_name") from None
        wanted = raw
    try:
        return nodes.resolve(wanted)
    except UnknownNode as unknown:
        raise ApiError(404, str(unknown), "unknown_node") from None
    except AmbiguousAddress as ambiguous:
        raise ApiError(409, f"{ambiguous}; address the node by name", "ambiguous_address") from None


def _latest_stats(node: Node) -> dict[str, Any]:
    stats = node.stats()
    if stats is None:
        raise ApiError(404, f"node {node.name!r} has sent no stats yet")
    return stats


def detail_body(handler: JsonHandler, nodes: NodeRegistry, node: Node) -> dict[str, Any]:
    """The ``node_detail`` of ``node`` now, with what its agent sent that was dropped as its own doing,
    and its seq and loss (from the application's ``inventory`` setting, when there is one)."""
    inventory: AgentInventory | None = handler.application.settings.get("inventory")
    seq = lost = None
    if inventory is not None:
        seq, lost = inventory.last_seq(node.name), inventory.lost_of(node.name)
    return node_detail(node, nodes.state(node), handler.ingest_stats.agent_drops(node.name), seq, lost)


class NodeAddressing:
    """How a handler finds the node its URL names: ``find_node`` (by name or IP address).

    The ``/cluster`` handlers (``cluster_handlers``) override ``lookup`` to take IP addresses only. For a
    collector of a fleet, a GET for another collector's node reads its newest snapshot (and, for
    ``FLEET_WINDOWS`` handlers, its windows) from the store first, off the loop.
    """

    nodes: NodeRegistry
    names: NameCache
    application: tornado.web.Application
    request: tornado.httputil.HTTPServerRequest
    path_args: list[str]
    FLEET_WINDOWS = False
    _fleet_node: Node | None = None
    _fleet_windows: Any = None

    async def prepare(self) -> None:
        """The handler's own checks, then (a fleet's GET of another collector's node) its snapshot."""
        super().prepare()  # type: ignore[misc]
        history: Any = self.application.settings.get("history")
        if self.request.method != "GET" or not self.path_args or getattr(history, "mirror", None) is None:
            return
        try:
            node = self.lookup(self.path_args[0])
        except ApiError:
            return  # the handler says why
        if not self.nodes.is_foreign(node):
            return
        try:
            latest = await history.foreign_snapshot(node.name)
            if self.FLEET_WINDOWS:
                self._fleet_windows = await history.windows(node.name)
        except HistoryUnreadable as error:
            raise ApiError(503, error.message, "store_unavailable") from None
        self._fleet_node = node if latest is None else dataclasses.replace(node, snapshot_ts=latest[0],
                                                                            snapshot=latest[1])

    def find(self, raw_id: str) -> Node:
        """The node ``raw_id`` names, or the ``ApiError`` saying why there is none."""
        return self._fleet_node if self._fleet_node is not None else self.lookup(raw_id)

    def lookup(self, raw_id: str) -> Node:
        """``find`` in the registry (by name or IP address)."""
        return find_node(self.nodes, self.names, raw_id)


class NodesHandler(StreamedJsonHandler):
    """``GET /nodes``: the inventory (``?state=`` filters); ``POST /nodes``: register or refresh a node.

    ``POST`` is ``hello_of`` (the body's name, addresses and hello fields) then
    ``register``; a subclass with another body shape overrides ``hello_of``.
    """

    MESSAGE_KINDS = {"POST": "hello"}

    def initialize(self, nodes: NodeRegistry, names: NameCache, clock: Callable[[], float]) -> None:
        self.nodes = nodes
        self.names = names
        self.clock = clock

    def get(self) -> None:
        state = self.get_query_argument("state", None)
        if state is not None and state not in NODE_STATES:
            raise ApiError(400, f"state must be one of {', '.join(NODE_STATES)}, got {state!r}")
        self.write_json(200, {"nodes": [node_entry(node, current) for node, current in self.nodes.nodes(state)]})

    def post(self) -> None:
        name, ips, info = self.hello_of(self.parse_json_body())
        self.register(name, ips, info)

    def hello_of(self, body: Any) -> tuple[str, list[str], dict[str, Any]]:
        """``(name, ips, info)`` of a native registration body, or a 400 naming the offending field."""
        if type(body) is not dict:
            raise ApiError(400, 'body must be a JSON object like {"name": "node01.example", "ip": [], "hostname": ...}',
                           "bad_type")
        if "name" not in body:
            raise ApiError(400, "name: missing", "missing_field")
        try:
            name = self.names.canonical(body["name"])
        except InvalidSample as invalid:
            raise field_error(invalid, "name") from None
        try:
            ips = check_ips(body.get("ip", []))
        except InvalidSample as invalid:
            raise field_error(invalid, "ip") from None
        try:
            info = HELLO_FIELDS.check(body, "")
        except InvalidSample as invalid:
            raise ApiError(400, invalid.message, invalid.reason) from None
        return name, list(ips), info

    def register(self, name: str, ips: list[str], info: dict[str, Any]) -> None:
        """Register or refresh node ``name`` (validated input) and answer its detail: 201 with a
        ``Location`` for a new node, 200 for a known one; counted as a hello."""
        known = name in self.nodes
        try:
            node = self.nodes.hello(name, ips, info, now=self.clock())
        except NodeRefused as refused:
            raise _refusal_error(refused) from None
        self.ingest_stats.accept("hello")
        if not known:
            self.set_header("Location", self.location_of(node))
        self.write_json(200 if known else 201, detail_body(self, self.nodes, node))

    def location_of(self, node: Node) -> str:
        """The URL path of a node just registered."""
        return f"/nodes/{node.name}"


class NodeHandler(NodeAddressing, StreamedJsonHandler):
    """``GET`` a node's summary, ``PUT`` its latest stats snapshot, ``DELETE`` it from the inventory."""

    MESSAGE_KINDS = {"PUT": "snapshot"}

    def initialize(self, nodes: NodeRegistry, names: NameCache, clock: Callable[[], float]) -> None:
        self.nodes = nodes
        self.names = names
        self.clock = clock

    def get(self, raw_id: str) -> None:
        node = self.find(raw_id)
        self.write_json(200, detail_body(self, self.nodes, node))

    def put(self, raw_id: str) -> None:
        node = self.find(raw_id)
        body = self.parse_json_body()
        if type(body) is not dict:
            raise ApiError(400, 'body must be a JSON object: a stats snapshot {"cpu": ..., "memory": ..., ...}',
                           "bad_type")
        try:
            stats = STATS.check(body, "")
        except InvalidSample as invalid:
            raise ApiError(400, invalid.message, invalid.reason) from None
        now = self.clock()
        try:
            updated = self.nodes.record_stats(node.name, stats, ts=now, now=now)
        except NodeRefused as refused:
            raise _refusal_error(refused) from None
        self.ingest_stats.accept("snapshot")
        self.write_json(200, detail_body(self, self.nodes, updated))

    def delete(self, raw_id: str) -> None:
        node = self.find(raw_id)
        self.nodes.remove(node.name)
        self.set_status(204)
        self.finish()


class NodeSectionHandler(NodeAddressing, JsonHandler):
    """``GET /nodes/{id}/{cpu|memory|disks|network|processes}``: part of the latest snapshot."""

    def initialize(self, nodes: NodeRegistry, names: NameCache) -> None:
        self.nodes = nodes
        self.names = names

    def get(self, raw_id: str, section: str) -> Awaitable[None] | None:  # a subclass may answer asynchronously
        node = self.find(raw_id)
        self.write_json(200, node_section(node, _latest_stats(node), section))
        return None


class NodeProcessIdsHandler(NodeAddressing, JsonHandler):
    """``GET /nodes/{id}/proc``: a JSON list of the pids (ints, ascending) the latest snapshot holds."""

    def initialize(self, nodes: NodeRegistry, names: NameCache) -> None:
        self.nodes = nodes
        self.names = names

    def get(self, raw_id: str) -> None:
        self.write_json(200, process_ids(_latest_stats(self.find(raw_id))))


class NodeProcessHandler(NodeAddressing, JsonHandler):
    """``GET /nodes/{id}/processes/{pid}`` and ``/proc/{pid}``: the entry of one process (pid, name, user,
    status, cpu_percent, rss, memory_percent, create_time, cmdline), if it is among the top ones kept."""

    def initialize(self, nodes: NodeRegistry, names: NameCache) -> None:
        self.nodes = nodes
        self.names = names

    def get(self, raw_id: str, pid_text: str) -> None:
        if _PID.fullmatch(pid_text) is None or int(pid_text) > MAX_PID:
            shown = pid_text if len(pid_text) <= 32 else pid_text[:32] + "..."
            raise ApiError(400, f"pid must be an integer from 0 to {MAX_PID}, got {shown!r}")
        pid = int(pid_text)
        node = self.find(raw_id)
        stats = _latest_stats(node)
        entry = top_process(stats, pid)
        if entry is None:
            raise ApiError(
                404,
                f"process {pid} is not among the top processes of node {node.name!r}: only the top "
                f"{MAX_TOP_PROCESSES} by CPU and by memory are kept",
            )
        self.write_json(200, entry)


class NodeSummaryHandler(NodeAddressing, JsonHandler):
    """``GET /nodes/{id}/summary?window=1h|24h``: the node's loads over the last hour or day."""

    FLEET_WINDOWS = True

    def initialize(self, nodes: NodeRegistry, names: NameCache, aggregator: Aggregator) -> None:
        self.nodes = nodes
        self.names = names
        self.aggregator = aggregator

    def get(self, raw_id: str) -> Awaitable[None] | None:  # a subclass may answer asynchronously
        window_name = self.get_query_argument("window", DEFAULT_SUMMARY_WINDOW)
        if window_name not in SUMMARY_WINDOWS:
            raise ApiError(400, f"window must be one of {', '.join(SUMMARY_WINDOWS)}, got {window_name!r}")
        node = self.find(raw_id)
        windows = self._fleet_windows if self._fleet_windows is not None else self.aggregator.windows(node.name)
        window = None
        if windows is not None:
            window = windows.minutes if window_name == "1h" else windows.hours
        self.write_json(200, load_summary(node.name, window_name, window, uptime_seconds(node)))
        return None
