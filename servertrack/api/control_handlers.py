"""Tornado handlers of the control channel: pause and resume one node, or every node.

- ``POST /nodes/{name-or-ip}/pause`` and ``/resume``: record the desired
  state in the node registry, publish it to the node's agent at once, answer
  200 with the node's detail (``"paused"`` is the desired state; ``state``
  turns ``paused`` once the agent's hello says it is).
- ``GET`` or ``POST /stop`` and ``/start`` (the compatible API of older
  clients): pause or resume every node the registry knows (and every agent
  connected now, by one message to all), or only ``?node=NAME``; answer
  ``{"status": "stopped" | "started", "nodes": [names]}``.

A body, if any, must be a JSON object (its keys are ignored) of at most
``MAX_CONTROL_BODY_BYTES``. A ``GET`` that changes state is the old clients'
contract, so it is guarded as a write: a browser page of another origin
cannot pause the fleet, neither by a request carrying a foreign ``Origin``
nor by one a browser marks cross-site (``Sec-Fetch-Site``, which an
``<img>`` or a link sends without an ``Origin``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..common.control_messages import ALL_NODES
from ..common.nodes import Node, NodeRegistry
from ..common.protocol import NameCache
from ..common.text import ascii_escaped
from .handlers import WRITE_METHODS, ApiError, JsonHandler, RequestRefused
from .node_handlers import detail_body, find_node
from .request_policy import JSON_MEDIA_TYPE, RequestPolicy, media_type_refusal

MAX_CONTROL_BODY_BYTES = 1024
# What a browser says of a request it sends: from the page's own origin, or typed / bookmarked by the user.
_SAME_ORIGIN_FETCHES = frozenset(("same-origin", "none"))
_STATUS = {True: "stopped", False: "started"}


class ControlPublisher(Protocol):
    """What the handlers need of the collector's control channel (``collector.control.ControlChannel``)."""

    def assert_state(self, node: Node) -> bool:
        """Publish the state ``node`` is meant to be in; False if it could not be sent."""

    def publish_all(self, paused: bool) -> bool:
        """Ask every connected agent to pause or resume; False if it could not be sent."""

    def counters(self) -> dict[str, Any]:
        """The channel's counters, shown by ``GET /stats``."""


class NoControlChannel:
    """The control channel of an API served without a collector: nothing is sent, every message is
    counted as unsent (the desired states are still recorded)."""

    def __init__(self) -> None:
        self.unsent = 0

    def assert_state(self, node: Node) -> bool:
        """Count one unsent message."""
        self.unsent += 1
        return False

    def publish_all(self, paused: bool) -> bool:
        """Count one unsent message."""
        self.unsent += 1
        return False

    def counters(self) -> dict[str, Any]:
        """Nothing published."""
        return {"published": 0, "pause": 0, "resume": 0, "unsent": self.unsent, "heartbeats": 0}


class ControlHandler(JsonHandler):
    """Base of the control handlers: the shared objects, the cross-site guard, the optional body."""

    def initialize(self, nodes: NodeRegistry, names: NameCache, control: ControlPublisher) -> None:
        self.nodes = nodes
        self.names = names
        self.control = control

    def prepare(self) -> None:
        """The base checks (Host; Origin of a POST), then: no foreign ``Origin`` on a ``GET`` either, and
        nothing a browser marks as sent from another site."""
        super().prepare()
        headers = self.request.headers
        if self.request.method not in WRITE_METHODS:  # the base checked those
            policy: RequestPolicy = self.application.settings["policy"]
            refusal = policy.origin_refusal(headers.get("Origin"), headers.get("Host"), what="control requests")
            if refusal is not None:
                raise RequestRefused(403, refusal, "bad_origin")
        fetch_site = headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site.strip().lower() not in _SAME_ORIGIN_FETCHES:
            shown = ascii_escaped(fetch_site, 32)
            raise RequestRefused(403, f"control requests sent by a page of another site are refused "
                                      f"(Sec-Fetch-Site: {shown})", "bad_origin")

    def ask_fleet(self, node: str, paused: bool, required: bool = True) -> None:
        """Ask the collector of the fleet that holds ``node`` (``*``: every one) to pause or resume it, through
        the store (``DurableStore.ask_control``); a 503 when the store cannot take a ``required`` request (one
        that only tells the others of a change made here is let go: a collector the node moves to later
        would keep its older wish)."""
        store = self.application.settings.get("store")
        taken = store is not None and getattr(store, "ask_control", lambda *_: False)(node, paused)
        if not taken and required:
            raise ApiError(503, f"the store cannot take the request for {node!r} now (it is another collector's "
                                "to apply); try again", "store_unavailable")

    def check_body(self) -> None:
        """Refuse a body that is not empty or a small JSON object."""
        body = self.request.body
        if not body:
            return
        refusal = media_type_refusal(self.request.headers.get("Content-Type"), JSON_MEDIA_TYPE)
        if refusal is not None:
            raise ApiError(415, refusal, "bad_content_type")
        if len(body) > MAX_CONTROL_BODY_BYTES:
            raise ApiError(413, f"body of {len(body)} bytes exceeds the limit of {MAX_CONTROL_BODY_BYTES} "
                                "(none is needed)", "too_large")
        if type(self.parse_json_body()) is not dict:
            raise ApiError(400, "body must be empty or a JSON object", "bad_type")


class NodeControlHandler(ControlHandler):
    """``POST /nodes/{id}/pause`` and ``POST /nodes/{id}/resume``."""

    def post(self, raw_id: str, action: str) -> None:
        self.check_body()
        node = find_node(self.nodes, self.names, raw_id)
        paused = action == "pause"
        if self.nodes.is_foreign(node):  # another collector's: asked through the store, applied there
            self.ask_fleet(node.name, paused)
            node = dataclasses.replace(node, desired_paused=paused)
        else:
            self.nodes.set_paused(node.name, paused)
            self.control.assert_state(node)
            if self.nodes.fleet is not None:  # the others forget an older wish for it (it may move there)
                self.ask_fleet(node.name, paused, required=False)
        self.write_json(200, detail_body(self, self.nodes, node))



class FleetControlHandler(ControlHandler):
    """``GET`` or ``POST /stop`` and ``/start``: pause or resume every node, or ``?node=NAME``."""

    STATE_CHANGING_METHODS = WRITE_METHODS | {"GET"}  # the GET of old clients pauses the fleet too

    def get(self, action: str) -> None:
        self._apply(action == "stop")

    def post(self, action: str) -> None:
        self.check_body()
        self._apply(action == "stop")

    def _apply(self, paused: bool) -> None:
        wanted = self.get_query_arguments("node", strip=False)
        if len(wanted) > 1:
            raise ApiError(400, "node: give at most one node (or none for every node)", "bad_request")
        if wanted:
            node = find_node(self.nodes, self.names, wanted[0])
            if self.nodes.is_foreign(node):
                self.ask_fleet(node.name, paused)
            else:
                self.nodes.set_paused(node.name, paused)
                self.control.assert_state(node)
                if self.nodes.fleet is not None:
                    self.ask_fleet(node.name, paused, required=False)
            names = [node.name]
        else:
            names = self.nodes.set_all_paused(paused)
            self.control.publish_all(paused)  # also reaches agents not registered yet
            if self.nodes.fleet is not None:  # and every other collector of the fleet does the same
                self.ask_fleet(ALL_NODES, paused)
                names = sorted({*names, *(foreign.name for foreign in self.nodes.fleet.nodes())})
        self.write_json(200, {"status": _STATUS[paused], "nodes": names})
