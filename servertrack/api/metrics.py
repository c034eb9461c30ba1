"""``GET /metrics``: the service's own counters, gauges and histograms in the Prometheus text format.

Each application has its own ``CollectorRegistry`` (``ServiceMetrics``), never
``prometheus_client``'s global one: one process may run many apps (the tests
do). Two kinds of series live in it:

- what ``/stats`` already counts, read at scrape time by ``ServiceCollector``
  (nothing is counted twice, nothing on the ingest path changes):
  ``servertrack_received_total{kind}``, ``servertrack_applied_total{kind}``,
  ``servertrack_dropped_total{kind,reason}``, ``servertrack_lost_total``,
  ``servertrack_http_refused_total{reason}``,
  ``servertrack_store_failures_total{worker}``, and the gauges
  ``servertrack_servers``, ``servertrack_nodes{state}``,
  ``servertrack_pending_samples``;
- two histograms observed as things happen: ``servertrack_batch_apply_seconds``
  (the applier's ``on_applied`` hook, once per non-empty apply) and
  ``servertrack_http_request_seconds{route,method}`` (the application's
  ``log_function``, once per finished request), labelled by the route's
  pattern, never the raw path, so the series are bounded by the routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import tornado.routing
import tornado.web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..common.aggregator import Aggregator
from ..common.batch import PendingBatch
from ..common.inventory import AgentInventory
from ..common.nodes import NODE_STATES, NodeRegistry
from ..common.stats import COUNTED_KINDS, IngestStats
from .handlers import JsonHandler

# The text format every Prometheus reads (generate_latest writes it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# An apply takes a few ms for a fleet's second; a request a few hundred µs.
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The route label of a request no route matched (404s), and the method label of a method no handler
# supports (Tornado accepts any token as a method): both keep the label values bounded.
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"


class ServiceCollector(Collector):
    """The ``/stats`` counters and gauges, read at scrape time from the service's shared objects.

    ``settings`` is the application's settings, read at each scrape as
    ``StatsHandler`` reads them: ``http_counters`` (the HTTP server's refusals)
    and ``store`` (its ``health()``), both set by the service after ``make_app``.
    """

    def __init__(self, aggregator: Aggregator, inventory: AgentInventory, batch: PendingBatch, stats: IngestStats,
                 nodes: NodeRegistry, settings: Mapping[str, Any]) -> None:
        self._aggregator = aggregator
        self._inventory = inventory
        self._batch = batch
        self._stats = stats
        self._nodes = nodes
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        received = CounterMetricFamily("servertrack_received", "Messages received, by kind", labels=["kind"])
        applied = CounterMetricFamily("servertrack_applied", "Messages applied, by kind", labels=["kind"])
        dropped = CounterMetricFamily("servertrack_dropped", "Messages dropped, by kind and reason",
                                      labels=["kind", "reason"])
        for kind in COUNTED_KINDS:
            received.add_metric([kind], stats.received[kind])
            applied.add_metric([kind], stats.applied[kind])
            for reason, count in sorted(stats.dropped[kind].items()):
                dropped.add_metric([kind, reason], count)
        yield from (received, applied, dropped)
        yield CounterMetricFamily("servertrack_lost", "Samples lost in transit (gaps in the agents' seq)",
                                  value=self._inventory.lost)
        refused = CounterMetricFamily("servertrack_http_refused", "HTTP requests and connections refused, by reason",
                                      labels=["reason"])
        reasons = dict(stats.http_refused)
        http_counters: Callable[[], dict[str, int]] | None = self._settings.get("http_counters")
        reasons.update(http_counters() if http_counters is not None else {})
        for reason, count in sorted(reasons.items()):
            refused.add_metric([reason], count)
        yield refused
        failures = CounterMetricFamily("servertrack_store_failures", "Failed jobs of the store's workers",
                                       labels=["worker"])
        store = self._settings.get("store")
        for worker, figures in sorted((store.health() if store is not None else {}).items()):
            if isinstance(figures, dict) and "failures" in figures:
                failures.add_metric([worker], figures["failures"])
        yield failures
        yield GaugeMetricFamily("servertrack_servers", "Servers held in memory", value=len(self._aggregator))
        states = GaugeMetricFamily("servertrack_nodes", "Nodes in the registry, by state", labels=["state"])
        counts = dict.fromkeys(NODE_STATES, 0)
        state_of = self._nodes.state
        for node in self._nodes.all_nodes():  # unsorted: a scrape at 10,000 nodes need not sort their names
            counts[state_of(node)] += 1
        for state, count in counts.items():
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily("servertrack_pending_samples", "Samples queued for the next apply",
                                value=len(self._batch))


class ServiceMetrics:
    """One application's registry: the two histograms, and the collectors ``register`` adds."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # series written as text by their own source, after the registry's (see ``add_text``)
        self._texts: list[Callable[[], bytes]] = []
        self.batch_seconds = Histogram("servertrack_batch_apply_seconds",
                                       "Time spent applying one batch (every non-empty apply)",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.request_seconds = Histogram("servertrack_http_request_seconds",
                                         "Time from a request's arrival to its answer, by route pattern and method",
                                         ["route", "method"], buckets=REQUEST_BUCKETS, registry=self.registry)

    def register(self, collector: Collector) -> None:
        """Add ``collector``'s series to every scrape."""
        self.registry.register(collector)

    def add_text(self, source: Callable[[], bytes]) -> None:
        """Append what ``source`` returns (complete series in the text format, names of their own) to every
        scrape: for series too many for metric families to be cheap (``server_gauges``)."""
        self._texts.append(source)

    def observe_batch(self, seconds: float) -> None:
        """One apply took ``seconds`` (the applier's ``on_applied`` hook)."""
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        """One request of ``route`` (a pattern) and ``method`` took ``seconds``."""
        self.request_seconds.labels(route, method).observe(seconds)

    def exposition(self) -> bytes:
        """Every series, in the text format (``CONTENT_TYPE``)."""
        if not self._texts:
            return generate_latest(self.registry)
        return b"".join([generate_latest(self.registry), *(source() for source in self._texts)])


class RoutePatterns:
    """The pattern of the route that served a request, found from its handler's class: most classes
    serve one route; for a class that serves several, the request's path is matched against those."""

    def __init__(self, rules: Iterable[tornado.routing.Rule]) -> None:
        self._by_class: dict[type, list[tuple[re.Pattern[str], str]]] = {}
        for rule in rules:
            if isinstance(rule.matcher, tornado.routing.PathMatches) and isinstance(rule.target, type):
                regex = rule.matcher.regex
                pattern = regex.pattern[:-1] if regex.pattern.endswith("$") else regex.pattern
                self._by_class.setdefault(rule.target, []).append((regex, pattern))

    def of(self, handler: tornado.web.RequestHandler) -> str:
        """The route pattern of ``handler``'s request, or ``UNMATCHED_ROUTE``."""
        routes = self._by_class.get(type(handler))
        if not routes:
            return UNMATCHED_ROUTE
        if len(routes) == 1:
            return routes[0][1]
        path = handler.request.path
        for regex, pattern in routes:
            if regex.match(path):
                return pattern
        return UNMATCHED_ROUTE


def request_observer(metrics: ServiceMetrics, routes: RoutePatterns) -> Callable[[tornado.web.RequestHandler], None]:
    """What the application's ``log_function`` calls for each finished request: its time, by route and method."""

    def observe(handler: tornado.web.RequestHandler) -> None:
        method = handler.request.method or ""
        if method not in handler.SUPPORTED_METHODS:
            method = OTHER_METHOD
        metrics.observe_request(routes.of(handler), method, handler.request.request_time())

    return observe


class MetricsHandler(JsonHandler):
    """``GET /metrics``: a read like any other (the read token when serve has one), answered in the text format;
    its errors stay JSON."""

    def initialize(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.metrics.exposition())
