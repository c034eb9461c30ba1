"""The Tornado application: routes and the shared objects each handler receives."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import tornado.web

from ..common.aggregator import Aggregator
from ..common.batch import PendingBatch
from ..common.fleet import FleetView
from ..common.inventory import AgentInventory
from ..common.nodes import NodeRegistry
from ..common.protocol import NameCache
from ..common.stats import IngestStats
from ..common.incidents import IncidentLog
from .metrics import MetricsHandler, RoutePatterns, ServiceCollector, ServiceMetrics, request_observer
from .request_policy import RequestPolicy
from .control_handlers import ControlPublisher, FleetControlHandler, NoControlChannel, NodeControlHandler
from .handlers import (
    BatchLoadsHandler,
    HealthHandler,
    NotFoundHandler,
    ServerSecondsHandler,
    ServersHandler,
    StatsHandler,
)
from .fleet_handlers import FleetHandler
from .openapi import OpenApiHandler
from .perf_handlers import PerfHandler, PerfWindowHandler, ServerHistoryHandler
from .cluster_handlers import cluster_routes
from .history_handlers import (
    GetStatsHistoryHandler,
    NodeSectionHistoryHandler,
    NodeSummaryHistoryHandler,
    ServerLoadsHistoryHandler,
    ServerSummaryHandler,
)
from .ui_handlers import UiFileHandler
from .node_handlers import (
    NodeHandler,
    NodeProcessHandler,
    NodeProcessIdsHandler,
    NodesHandler,
)

if TYPE_CHECKING:  # the Protocol only: the API does not import a store backend
    from ..store.interface import HistoryReader

_log = logging.getLogger("servertrack.api")


def _log_failures(handler: tornado.web.RequestHandler) -> None:
    # Per-request access logging would cost more than the request itself at
    # thousands of requests per second; server errors are still logged.
    if handler.get_status() >= 500:
        _log.error("%d %s", handler.get_status(), handler._request_summary())


def make_app(
    aggregator: Aggregator,
    batch: PendingBatch,
    inventory: AgentInventory,
    stats: IngestStats,
    names: NameCache | None = None,
    clock: Callable[[], float] = time.time,
    nodes: NodeRegistry | None = None,
    policy: RequestPolicy | None = None,
    control: ControlPublisher | None = None,
    history: HistoryReader | None = None,
    metrics: ServiceMetrics | None = None,
) -> tornado.web.Application:
    """Build the HTTP API over the service's shared objects.

    ``policy`` says which Host headers are served (default: IP addresses and
    localhost) and which tokens writes and reads need (default: none); every
    handler reads it and ``stats`` from the application's settings. ``control`` is the collector's control channel (pause and
    resume); without it, desired states are recorded but nothing is sent.
    ``history`` answers the range queries (``?from=&to=``, see ``history_handlers``):
    the service always passes one; without it, those requests fail (500).
    ``metrics`` is the registry ``GET /metrics`` shows (default: a new one, its batch histogram left
    empty); the app adds the ``/stats`` figures to it and observes every request's time.
    """
    names = names if names is not None else NameCache()
    nodes = nodes if nodes is not None else NodeRegistry(aggregator.max_servers, clock)
    control = control if control is not None else NoControlChannel()
    loads = dict(aggregator=aggregator, batch=batch, stats=stats, names=names, clock=clock)
    node_lookup = dict(nodes=nodes, names=names)
    metrics = metrics if metrics is not None else ServiceMetrics()
    # every server and node; a collector of a fleet adds the other collectors' (their directories)
    fleet_view = FleetView(aggregator, nodes, clock, getattr(history, "mirror", None))
    app = tornado.web.Application(
        [
            # Without ?from/to/step the windows; with them, a range from ``history`` (see history_handlers).
            (r"/servers/([^/]+)/loads", ServerLoadsHistoryHandler, loads),
            (r"/servers/([^/]+)/summary", ServerSummaryHandler, loads),
            (r"/servers/([^/]+)/seconds", ServerSecondsHandler, loads),
            (r"/loads", BatchLoadsHandler, dict(batch=batch, stats=stats, names=names, clock=clock)),
            (r"/servers", ServersHandler, dict(aggregator=aggregator, inventory=inventory, names=names)),
            (r"/fleet", FleetHandler, dict(view=fleet_view, names=names)),
            (r"/healthz", HealthHandler),
            (r"/openapi\.json", OpenApiHandler),  # the document of every route here (see openapi)
            (r"/stats", StatsHandler,
             dict(aggregator=aggregator, inventory=inventory, batch=batch, stats=stats, nodes=nodes)),
            (r"/metrics", MetricsHandler, dict(metrics=metrics)),  # the same figures for Prometheus
            # A node is addressed by name or IP address (IPv6 colons are fine in a path segment).
            (r"/nodes", NodesHandler, dict(node_lookup, clock=clock)),
            (r"/nodes/([^/]+)", NodeHandler, dict(node_lookup, clock=clock)),
            (r"/nodes/([^/]+)/(cpu|memory|disks|network|processes)", NodeSectionHistoryHandler,
             dict(node_lookup, clock=clock)),
            (r"/nodes/([^/]+)/processes/([^/]+)", NodeProcessHandler, node_lookup),
            (r"/nodes/([^/]+)/proc", NodeProcessIdsHandler, node_lookup),
            (r"/nodes/([^/]+)/proc/([^/]+)", NodeProcessHandler, node_lookup),
            (r"/nodes/([^/]+)/summary", NodeSummaryHistoryHandler,
             dict(node_lookup, aggregator=aggregator, clock=clock)),
            (r"/nodes/([^/]+)/(pause|resume)", NodeControlHandler, dict(node_lookup, control=control)),
            (r"/(start|stop)", FleetControlHandler, dict(node_lookup, control=control)),
            # The earlier monitors' load APIs, on the same aggregator (see perf_handlers).
            (r"/perf/([^/]+)/?", PerfHandler, loads),
            (r"/perf/([^/]+)/([^/]+)", PerfWindowHandler, loads),
            (r"/server/([^/]+)/?", ServerHistoryHandler, loads),
            # pindrop's one-machine stats, for ?node=NAME (see pindrop_handlers)
            (r"/get_stats", GetStatsHistoryHandler, dict(node_lookup, aggregator=aggregator, clock=clock)),
            # The cluster-stats transcript's API, nodes by IP, on the same registry (see cluster_handlers).
            *cluster_routes(node_lookup, clock),
            # The web dashboard: its page and files (see ui_handlers), drawn from the routes above.
            (r"/", UiFileHandler),
            (r"/ui/(.*)", UiFileHandler),
        ],
        default_handler_class=NotFoundHandler,
        compress_response=False,
        stats=stats,
        inventory=inventory,  # each agent's seq and loss, shown by GET /nodes/{id}
        policy=policy if policy is not None else RequestPolicy(),
        # 401s: one warning line per interval, with a count (see JsonHandler.write_error)
        unauthorized_log=IncidentLog(_log, logging.WARNING,
                                     "refused %d request(s) without a valid token since the last report; "
                                     "latest: %s %s from %s", clock),
        control=control,
        fleet_view=fleet_view,  # GET /servers of a fleet lists from it
        history=history,  # the range reader (store.interface.HistoryReader), read by history_handlers
        started_at=clock(),  # when this service started (pindrop's service_start_time)
        metrics=metrics,
    )
    metrics.register(ServiceCollector(aggregator, inventory, batch, stats, nodes, app.settings))
    observe = request_observer(metrics, RoutePatterns(app.wildcard_router.rules))

    def log_request(handler: tornado.web.RequestHandler) -> None:
        observe(handler)
        _log_failures(handler)

    app.settings["log_function"] = log_request
    return app
