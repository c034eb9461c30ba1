"""The cluster-stats transcript's API under ``/cluster``: nodes addressed by IP address.

The transcript's own client lists nodes with ``GET /nodes`` as a bare list of
addresses, which the native ``GET /nodes`` (an object) cannot be; so its whole
API lives under one prefix, and its client works with the base URL
``http://HOST:PORT/cluster``. The handlers are the native ones
(``node_handlers``) over the same node registry, with two differences:

- a node is addressed by an IP address only (``find_node_by_ip``): anything
  else is a 400, an address no node has a 404, one several nodes share a 409;
- ``GET /cluster/nodes`` is ``["192.168.2.10", ...]`` (``cluster_views``), and
  ``POST /cluster/nodes`` takes the transcript agent's body
  (``{"ip": ..., "hostname": ..., ...}``, see ``ClusterNodesHandler``);
- the transcript's history call ``GET /{ip}/cpu?from=&to=`` (and ``/memory``)
  is ``GET /cluster/{ip}/cpu``: the native snapshot history (``history_handlers``),
  also served at ``/cluster/nodes/{ip}/cpu?from=&to=``.

Everything else (bodies, limits, counters, errors) is the native API's.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.web

from ..common.errors import InvalidSample
from ..common.node_messages import HELLO_FIELDS
from ..common.nodes import AmbiguousAddress, Node, NodeRegistry, UnknownNode
from ..common.protocol import check_ips, is_ip_address
from ..common.schema import Record, Spec
from .cluster_views import cluster_addresses, first_public_ip
from .handlers import ApiError
from .history_handlers import NodeSectionHistoryHandler
from .node_handlers import (
    NodeHandler,
    NodeProcessHandler,
    NodeProcessIdsHandler,
    NodesHandler,
    field_error,
)

PREFIX = "/cluster"


def _optional(spec: Spec) -> Spec:
    relaxed = copy.copy(spec)
    relaxed.optional = True
    return relaxed


# The transcript agent's hello fields: the native ones, each optional (a field it does not send, or
# sends as null, is simply not known), each checked like the native one when present.
TRANSCRIPT_HELLO = Record({key: _optional(spec) for key, spec in HELLO_FIELDS.fields.items()})


def find_node_by_ip(nodes: NodeRegistry, raw: str) -> Node:
    """The one node owning IP address ``raw`` (IPv4 or IPv6, in any spelling ``ipaddress`` reads).

    400 if ``raw`` is not an IP address (a node name included), 404 if no node
    has it, 409 if several nodes share it.
    """
    if not is_ip_address(raw):
        shown = raw if len(raw) <= 64 else raw[:64] + "..."
        raise ApiError(400, f"{shown!r} is not an IP address: /cluster addresses nodes by IP", "bad_ip")
    try:
        return nodes.resolve(raw)
    except UnknownNode as unknown:
        raise ApiError(404, str(unknown), "unknown_node") from None
    except AmbiguousAddress as ambiguous:
        raise ApiError(409, f"{ambiguous}; address the node by name at /nodes/{{name}}",
                       "ambiguous_address") from None


class ByAddress:
    """``lookup`` for the ``/cluster`` handlers: by IP address only."""

    nodes: NodeRegistry

    def lookup(self, raw_id: str) -> Node:
        """The node owning address ``raw_id``, or the ``ApiError`` saying why there is none."""
        return find_node_by_ip(self.nodes, raw_id)


def _addresses(value: object) -> list[str]:
    """The ``ip`` of a transcript registration: one address string or a list of them, at least one."""
    try:
        ips = check_ips([value] if type(value) is str else value)
    except InvalidSample as invalid:
        raise field_error(invalid, "ip") from None
    if not ips:
        raise ApiError(400, "ip: at least one address is needed: /cluster addresses nodes by IP", "bad_ip")
    return list(ips)


class ClusterNodesHandler(NodesHandler):
    """``GET /cluster/nodes``: each node's first non-loopback address (``cluster_addresses``);
    ``POST /cluster/nodes``: register or refresh a node, as the native ``POST /nodes``.

    The body is ``{"ip": "192.168.2.10" or [...], "hostname": ..., "name": ...
    (optional, default: the hostname), "boottime" or "boot_time": epoch seconds,
    "os", "platform", "cpu_count", "memory_total", "agent_version", "interval"}``:
    ``ip`` is required, and ``hostname`` unless ``name`` is given; the other
    fields are optional. Unknown keys are ignored.
    """

    def get(self) -> None:
        self.write_json(200, cluster_addresses(node for node, _ in self.nodes.nodes()))

    def hello_of(self, body: Any) -> tuple[str, list[str], dict[str, Any]]:
        """``(name, ips, info)`` of a transcript registration body, or a 400 naming the offending field."""
        if type(body) is not dict:
            raise ApiError(400, 'body must be a JSON object like {"ip": "192.168.2.10", "hostname": "node01"}',
                           "bad_type")
        if "ip" not in body:
            raise ApiError(400, "ip: missing", "missing_field")
        ips = _addresses(body["ip"])
        field = "name" if body.get("name") is not None else "hostname"
        if body.get(field) is None:
            raise ApiError(400, "hostname: missing (or give a name)", "missing_field")
        try:
            name = self.names.canonical(body[field])
        except InvalidSample as invalid:
            raise field_error(invalid, field) from None
        if "boottime" in body:  # the transcript's name of boot_time
            if body.get("boot_time") is not None and body["boot_time"] != body["boottime"]:
                raise ApiError(400, "boottime: differs from boot_time; give one of them", "bad_field")
            body = {**body, "boot_time": body["boottime"]}
        try:
            info = TRANSCRIPT_HELLO.check(body, "")
        except InvalidSample as invalid:
            raise ApiError(400, invalid.message, invalid.reason) from None
        return name, ips, {key: value for key, value in info.items() if value is not None}

    def location_of(self, node: Node) -> str:
        """``/cluster/nodes/{address}`` of a node just registered (it has at least one address)."""
        return f"{PREFIX}/nodes/{first_public_ip(node) or node.ips[0]}"


class ClusterNodeHandler(ByAddress, NodeHandler):
    """``GET``, ``PUT`` (a stats snapshot) and ``DELETE /cluster/nodes/{ip}``: the native ``/nodes/{id}``."""


class ClusterSectionHandler(ByAddress, NodeSectionHistoryHandler):
    """``GET /cluster/nodes/{ip}/cpu`` and ``/memory``: the native sections (with ``?from=&to=``, their
    history)."""


class ClusterHistoryHandler(ByAddress, NodeSectionHistoryHandler):
    """``GET /cluster/{ip}/cpu?from=T&to=T`` and ``/memory``, the transcript's history call: always the
    snapshot history (``from`` and ``to`` default as in ``time_range.seconds_span``: the last hour)."""

    def get(self, raw_id: str, section: str) -> Awaitable[None] | None:
        return self.section_history(raw_id, section)


class ClusterProcessIdsHandler(ByAddress, NodeProcessIdsHandler):
    """``GET /cluster/nodes/{ip}/proc``: the native list of pids."""


class ClusterProcessHandler(ByAddress, NodeProcessHandler):
    """``GET /cluster/nodes/{ip}/proc/{pid}``: the native process entry."""


def cluster_routes(
    node_lookup: dict[str, Any], clock: Callable[[], float]
) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The ``/cluster`` routes over the native handlers' shared objects (``nodes``, ``names``)."""
    with_clock = dict(node_lookup, clock=clock)
    ip = r"([^/]+)"
    return [
        (rf"{PREFIX}/nodes", ClusterNodesHandler, with_clock),
        (rf"{PREFIX}/nodes/{ip}", ClusterNodeHandler, with_clock),
        (rf"{PREFIX}/nodes/{ip}/(cpu|memory)", ClusterSectionHandler, with_clock),
        (rf"{PREFIX}/nodes/{ip}/proc", ClusterProcessIdsHandler, node_lookup),
        (rf"{PREFIX}/nodes/{ip}/proc/([^/]+)", ClusterProcessHandler, node_lookup),
        (rf"{PREFIX}/{ip}/(cpu|memory)", ClusterHistoryHandler, with_clock),
    ]
