"""The pindrop-compatible ``GET /get_stats[?node=NAME]``: one node's current and past stats in the
shape the earlier pindrop monitor's clients parse (see ``pindrop_views``).

Pindrop watched the one machine it ran on, so its clients send no node. Here
the node is ``?node=`` (a name or an IP address, as in ``/nodes/{id}``); it may
be left out while exactly one node is known. Served from the node registry and
the aggregator the native API reads: no copy of the data.
"""

from __future__ import annotations

from collections.abc import Awaitable

from ..common.aggregator import Aggregator
from ..common.nodes import Node, NodeRegistry
from ..common.protocol import NameCache
from .handlers import ApiError, JsonHandler
from .node_handlers import find_node
from .pindrop_views import get_stats_body

# How many node names a 400 for a missing ?node= lists at most.
MAX_CHOICES_SHOWN = 20


def choose_node(nodes: NodeRegistry, names: NameCache, wanted: list[str]) -> Node:
    """The node a ``/get_stats`` request means by its ``?node=`` values ``wanted``.

    One value: that node (400 if it is no name or address, 404 if unknown, 409
    if several nodes share the address). None: the only known node; 404 if
    there is none, 400 naming the choices (the first ``MAX_CHOICES_SHOWN`` by
    name) if there are several. Several values: 400.
    """
    if len(wanted) > 1:
        raise ApiError(400, f"node: give one node, not {len(wanted)}", "bad_request")
    if wanted:
        return find_node(nodes, names, wanted[0])  # any case, one trailing dot dropped, or an address
    count = len(nodes)
    if count == 0:
        raise ApiError(404, "no node is known yet: start an agent, or register one with POST /nodes",
                       "unknown_node")
    listed = nodes.nodes()
    if count == 1:
        return listed[0][0]
    shown = ", ".join(node.name for node, _ in listed[:MAX_CHOICES_SHOWN])
    more = f" and {count - MAX_CHOICES_SHOWN} more" if count > MAX_CHOICES_SHOWN else ""
    raise ApiError(400, f"{count} nodes are known; choose one with ?node=NAME: {shown}{more}", "bad_request")


class GetStatsHandler(JsonHandler):
    """``GET /get_stats[?node=NAME]``: the pindrop shape of one node's latest snapshot and last 24 hours.

    ``service_start_time`` is the application's ``started_at`` setting (set by ``make_app``).
    """

    def initialize(self, nodes: NodeRegistry, names: NameCache, aggregator: Aggregator) -> None:
        self.nodes = nodes
        self.names = names
        self.aggregator = aggregator

    def get(self) -> Awaitable[None] | None:  # a subclass may answer asynchronously
        node = choose_node(self.nodes, self.names, self.get_query_arguments("node", strip=False))
        windows = self.aggregator.windows(node.name)
        started_at: float = self.application.settings["started_at"]
        body = get_stats_body(node.name, node.stats(), node.snapshot_ts, None if windows is None else windows.hours,
                              started_at)
        self.write_json(200, body)
        return None
