"""``GET /metrics``: the Prometheus text format, its values the same as ``/stats``'."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from live_api import LiveApi, register

from servertrack.api import ServiceMetrics
from servertrack.api.metrics import UNMATCHED_ROUTE
from servertrack.common.nodes import NODE_STATES

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scraped(api: LiveApi) -> Series:
    """Every sample of ``GET /metrics``, by name and labels."""
    reply = api.get("/metrics")
    assert reply.status == 200, (reply.status, reply.raw)
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.raw.decode())
            for sample in family.samples}


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def test_the_counters_and_gauges_are_those_of_stats(api: LiveApi) -> None:
    for number in range(3):
        api.record(f"web-{number:02}", cpu=10.0, ram=20.0)
    assert api.post_load("web-09", cpu=300, ram=1).status == 400
    assert api.request("POST", "/servers/x/loads", "{}", {"Content-Type": "text/plain"}).status == 415
    api.apply()
    api.record("web-03", cpu=1.0, ram=2.0)  # still pending
    register(api, "node01")
    stats = api.get("/stats").json
    series = scraped(api)
    for kind, counts in stats["kinds"].items():
        assert value(series, "servertrack_received_total", kind=kind) == counts["received"]
        assert value(series, "servertrack_applied_total", kind=kind) == counts["applied"]
        for reason, count in counts["dropped"].items():
            assert value(series, "servertrack_dropped_total", kind=kind, reason=reason) == count
    assert value(series, "servertrack_received_total", kind="sample") == 6
    assert value(series, "servertrack_applied_total", kind="sample") == 3
    assert sum(count for (name, _), count in series.items() if name == "servertrack_dropped_total") == 2
    assert value(series, "servertrack_lost_total") == stats["lost"] == 0
    assert value(series, "servertrack_servers") == stats["servers"] == 3
    assert value(series, "servertrack_pending_samples") == stats["pending"] == 1
    assert {state: value(series, "servertrack_nodes", state=state) for state in NODE_STATES} == {
        "online": 1, "paused": 0, "stale": 0, "offline": 0}
    # one non-empty apply observed; the requests so far by route pattern and method
    assert value(series, "servertrack_batch_apply_seconds_count") == 1
    assert value(series, "servertrack_http_request_seconds_count", route="/servers/([^/]+)/loads", method="POST") == 6
    assert value(series, "servertrack_http_request_seconds_count", route="/stats", method="GET") == 1


def test_refusals_are_counted_by_reason_and_routes_stay_bounded(api: LiveApi) -> None:
    assert api.request("GET", "/stats", headers={"Host": "evil.example"}).status == 403
    for path in ("/no/such/1", "/no/such/2", "/nodes/a/proc/1", "/nodes/b/processes/2"):
        api.get(path)
    assert api.request("BREW", "/stats").status == 405
    series = scraped(api)
    assert value(series, "servertrack_http_refused_total", reason="bad_host") == 1
    assert value(series, "servertrack_http_request_seconds_count", route=UNMATCHED_ROUTE, method="GET") == 2
    # one handler class, two routes: each request under its own pattern
    assert value(series, "servertrack_http_request_seconds_count", route="/nodes/([^/]+)/proc/([^/]+)", method="GET") == 1
    assert value(series, "servertrack_http_request_seconds_count", route="/nodes/([^/]+)/processes/([^/]+)",
                 method="GET") == 1
    assert value(series, "servertrack_http_request_seconds_count", route="/stats", method="other") == 1
    assert not any(dict(labels).get("route", "").startswith("/no/") for _, labels in series)
    # no store in this app: the family is there, without series
    assert not any(name.startswith("servertrack_store_failures") for name, _ in series)


def test_each_app_has_its_own_registry(api: LiveApi) -> None:
    other = ServiceMetrics()
    other.observe_batch(0.5)
    api.record("web-01", cpu=1.0, ram=1.0)
    series = scraped(api)
    assert value(series, "servertrack_batch_apply_seconds_count") == 0
    assert b"servertrack_received_total" not in other.exposition()


def test_only_applies_of_something_are_observed(api: LiveApi) -> None:
    api.apply()
    api.record("web-01", cpu=1.0, ram=1.0)
    api.apply()
    api.apply()
    series = scraped(api)
    assert value(series, "servertrack_batch_apply_seconds_count") == 1
    assert value(series, "servertrack_batch_apply_seconds_sum") > 0
