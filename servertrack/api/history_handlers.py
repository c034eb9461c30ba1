"""Range queries over HTTP: ``?from=T&to=T`` on server loads and summaries, node cpu/memory history.

Each handler here extends the window handler of its route: without range
parameters a request is answered exactly as before (the live windows, the
latest snapshot); with them, from the application's ``history`` setting, a
``store.interface.HistoryReader`` that merges the live rings with the store
and does its work off the loop. The times are parsed and the buckets planned
by ``common.time_range``; a refusal there is a 400 naming the parameter.

- ``GET /servers/{name}/loads?from=&to=&step=minute|hour``: buckets (``ServerLoadsHistoryHandler``);
- ``GET /servers/{name}/summary?from=&to=``: one figure per load (``ServerSummaryHandler``);
- ``GET /nodes/{id}/summary?from=&to=``: the same for a node (``NodeSummaryHistoryHandler``);
- ``GET /nodes/{id}/cpu?from=&to=`` and ``/memory``: snapshot history (``NodeSectionHistoryHandler``,
  also under ``/cluster``, see ``cluster_handlers``);
- ``GET /get_stats?node=&from=&to=``: pindrop's ``past_stat`` over the range (``GetStatsHistoryHandler``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import tornado.httputil
import tornado.web

from ..common.aggregator import Aggregator
from ..common.errors import HistoryUnreadable
from ..common.nodes import NodeRegistry
from ..common.protocol import NameCache
from ..common.time_range import (
    MAX_SNAPSHOTS,
    BucketPlan,
    RangeQuery,
    TimeRangeError,
    loads_plan,
    range_query,
    seconds_span,
    summary_plan,
    wants_range,
)
from .handlers import ApiError, LoadsHandler, ServerLoadsHandler
from .history_views import node_range_summary, range_loads, range_summary, section_history
from .node_handlers import NodeSectionHandler, NodeSummaryHandler
from .node_views import uptime_seconds
from .pindrop_handlers import GetStatsHandler, choose_node
from .pindrop_views import get_stats_body
from .views import encoded_server_loads

if TYPE_CHECKING:  # the Protocol only: the API does not import a store backend
    from ..store.interface import HistoryReader, RangeAnswer

# The query parameters that turn a window route into a range query.
LOADS_PARAMETERS = ("from", "to", "step")
TIME_PARAMETERS = ("from", "to")
# The snapshot sections with a history route.
HISTORY_SECTIONS = ("cpu", "memory")


class HistoryAccess:
    """What every range handler shares: the history reader and the checked range parameters."""

    application: tornado.web.Application
    request: tornado.httputil.HTTPServerRequest

    @property
    def history(self) -> HistoryReader:
        """The application's ``history`` setting (``make_app(history=...)``)."""
        reader: HistoryReader | None = self.application.settings.get("history")
        if reader is None:
            raise RuntimeError("make_app was given no history reader: range queries need one")
        return reader

    def wants_range(self, parameters: tuple[str, ...] = TIME_PARAMETERS) -> bool:
        """Whether the request names any of the range ``parameters``."""
        return wants_range(self.request.query_arguments, parameters)

    def range_query(self, with_step: bool = False) -> RangeQuery:
        """``from``, ``to`` (and ``step``) of the request, parsed; a 400 naming the parameter."""
        try:
            return range_query(self.request.query_arguments, with_step)
        except TimeRangeError as error:
            raise ApiError(400, error.message, "bad_range") from None

    def plan(self, planner: Callable[[RangeQuery, float], BucketPlan], query: RangeQuery, now: float) -> BucketPlan:
        """``planner(query, now)``, a refusal as a 400."""
        try:
            return planner(query, now)
        except TimeRangeError as error:
            raise ApiError(400, error.message, "bad_range") from None

    async def loads_of(self, name: str, plan: BucketPlan) -> RangeAnswer | None:
        """The planned buckets of server ``name`` from the history reader (None: unknown server); a 503 when
        the store cannot be read."""
        try:
            return await self.history.loads(name, plan.width, plan.first_bucket, plan.count)
        except HistoryUnreadable as error:
            raise ApiError(503, error.message, "store_unavailable") from None

    async def sections_of(self, node: str, first: int, last: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The node's snapshots taken in ``first .. last`` from the history reader; a 503 when the store
        cannot be read."""
        try:
            return await self.history.node_sections(node, first, last, limit)
        except HistoryUnreadable as error:
            raise ApiError(503, error.message, "store_unavailable") from None


class ServerLoadsHistoryHandler(HistoryAccess, ServerLoadsHandler):
    """``GET /servers/{name}/loads?from=T&to=T&step=minute|hour``: the buckets of a range; without any of
    those parameters, the windows (``ServerLoadsHandler``'s body, written from the arrays:
    ``views.encoded_server_loads``). Answers carry no ETag. ``POST`` is unchanged."""

    def get(self, raw_name: str) -> Awaitable[None] | None:
        if not self.wants_range(LOADS_PARAMETERS):
            # the windows as ServerLoadsHandler answers them, the bucket lists written from the arrays
            self.write_json(200, encoded_server_loads(self.known_windows(raw_name)))
            return None
        return self._range(raw_name)

    def compute_etag(self) -> str | None:
        # No ETag: the windows move every second, and a conditional GET would save no work (the body
        # is built anyway to hash it), while hashing every answer costs about as much as its headers.
        return None

    async def _range(self, raw_name: str) -> None:
        query = self.range_query(with_step=True)
        plan = self.plan(loads_plan, query, self.clock())
        name = self.canonical_name(self.names, raw_name)
        answer = await self.loads_of(name, plan)
        if answer is None:
            raise ApiError(404, f"unknown server {name!r}")
        self.write_json(200, range_loads(name, plan, answer))


class ServerSummaryHandler(HistoryAccess, LoadsHandler):
    """``GET /servers/{name}/summary?from=T&to=T``: samples and sample-weighted cpu/ram figures over the
    range (default: the last 60 minutes), from minute buckets, or hour buckets past 10,000 minutes."""

    MESSAGE_KINDS: dict[str, str] = {}  # read-only

    async def get(self, raw_name: str) -> None:
        query = self.range_query()
        plan = self.plan(summary_plan, query, self.clock())
        name = self.canonical_name(self.names, raw_name)
        answer = await self.loads_of(name, plan)
        if answer is None:
            raise ApiError(404, f"unknown server {name!r}")
        self.write_json(200, range_summary(name, plan, answer))


class NodeSummaryHistoryHandler(HistoryAccess, NodeSummaryHandler):
    """``GET /nodes/{id}/summary?from=T&to=T``: the node's loads over a range, as the server summary (a node
    without load history has nulls); with ``?window=`` or nothing, ``NodeSummaryHandler``."""

    def initialize(
        self, nodes: NodeRegistry, names: NameCache, aggregator: Aggregator, clock: Callable[[], float] = time.time
    ) -> None:
        super().initialize(nodes, names, aggregator)
        self.clock = clock

    def get(self, raw_id: str) -> Awaitable[None] | None:
        if not self.wants_range():
            return super().get(raw_id)
        return self._range(raw_id)

    async def _range(self, raw_id: str) -> None:
        if "window" in self.request.query_arguments:
            raise ApiError(400, "window: give either window or from/to, not both", "bad_range")
        query = self.range_query()
        plan = self.plan(summary_plan, query, self.clock())
        node = self.find(raw_id)
        answer = await self.loads_of(node.name, plan)
        self.write_json(200, node_range_summary(node.name, plan, answer, uptime_seconds(node)))


class NodeSectionHistoryHandler(HistoryAccess, NodeSectionHandler):
    """``GET /nodes/{id}/cpu?from=T&to=T`` and ``/memory``: ``{"YYYY-MM-DD HH:MM:SS": {section}, ...}``
    from the snapshot history, oldest first, at most ``MAX_SNAPSHOTS`` entries; without ``from``/``to``,
    the latest snapshot's section (``NodeSectionHandler``)."""

    def initialize(self, nodes: NodeRegistry, names: NameCache, clock: Callable[[], float] = time.time) -> None:
        super().initialize(nodes, names)
        self.clock = clock

    def get(self, raw_id: str, section: str) -> Awaitable[None] | None:
        if not self.wants_range():
            return super().get(raw_id, section)
        return self.section_history(raw_id, section)

    async def section_history(self, raw_id: str, section: str) -> None:
        """Answer the history of ``section`` of the node ``raw_id`` names, over ``from``/``to`` (default:
        the hour before now)."""
        if section not in HISTORY_SECTIONS:
            raise ApiError(400, f"from/to: history is kept for {' and '.join(HISTORY_SECTIONS)} only, "
                                f"not {section}", "bad_range")
        query = self.range_query()
        try:
            first, last = seconds_span(query, self.clock())
        except TimeRangeError as error:
            raise ApiError(400, error.message, "bad_range") from None
        node = self.find(raw_id)
        if first > last:  # a range inside one second holds no whole second
            self.write_json(200, {})
            return
        snapshots = await self.sections_of(node.name, first, last, MAX_SNAPSHOTS + 1)
        if len(snapshots) > MAX_SNAPSHOTS:
            raise ApiError(400, f"from/to: the range holds more than {MAX_SNAPSHOTS:,} snapshots of node "
                                f"{node.name!r}, the limit of one answer; narrow it", "bad_range")
        self.write_json(200, section_history(snapshots, section))


class GetStatsHistoryHandler(HistoryAccess, GetStatsHandler):
    """``GET /get_stats?node=NAME&from=T&to=T``: pindrop's shape, ``past_stat`` over the range (as the
    server summary adds it up) instead of the last 24 hours; without ``from``/``to``, ``GetStatsHandler``."""

    def initialize(
        self, nodes: NodeRegistry, names: NameCache, aggregator: Aggregator, clock: Callable[[], float] = time.time
    ) -> None:
        super().initialize(nodes, names, aggregator)
        self.clock = clock

    def get(self) -> Awaitable[None] | None:
        if not self.wants_range():
            return super().get()
        return self._range()

    async def _range(self) -> None:
        query = self.range_query()
        plan = self.plan(summary_plan, query, self.clock())
        node = choose_node(self.nodes, self.names, self.get_query_arguments("node", strip=False))
        answer = await self.loads_of(node.name, plan)
        started_at: float = self.application.settings["started_at"]
        body: dict[str, Any] = get_stats_body(node.name, node.stats(), node.snapshot_ts,
                                              None if answer is None else answer.window, started_at)
        self.write_json(200, body)
