"""``serve --export-servers``: the per-server gauges, from the aggregator's second ring, in the text format."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from servertrack.api import ServiceMetrics
from servertrack.api.server_gauges import (
    CPU_SERIES,
    LEFT_OUT_SERIES,
    RAM_SERIES,
    ServerGauges,
    escape_label_value,
)
from servertrack.common.aggregator import SILENCE_EVICTION_SECONDS, Aggregator
from tests.conftest import EPOCH, FakeClock


def scraped(gauges: ServerGauges) -> dict[tuple[str, str], float]:
    """(series, server label or "") -> value, parsed with prometheus_client's own parser."""
    families = list(text_string_to_metric_families(gauges.exposition().decode()))
    assert [family.name for family in families] == [CPU_SERIES, RAM_SERIES, LEFT_OUT_SERIES]
    assert all(family.type == "gauge" for family in families)
    return {(sample.name, sample.labels.get("server", "")): sample.value
            for family in families for sample in family.samples}


def test_the_gauges_are_each_servers_average_over_the_last_60_seconds(clock: FakeClock) -> None:
    aggregator = Aggregator(100, clock=clock)
    aggregator.apply(["a", "a", "b"], [EPOCH - 30, EPOCH - 30, EPOCH - 5], [10.0, 20.0, 50.0], [1.0, 3.0, 7.5])
    aggregator.apply(["a"], [EPOCH], [45.0], [6.0])  # a's second samples weigh 2, this one 1
    aggregator.apply(["old"], [EPOCH - 60], [99.0], [99.0])  # just outside the window
    aggregator.apply(["ahead"], [EPOCH + 2], [1.0], [1.0])  # a second not yet here
    series = scraped(ServerGauges(aggregator, 10))
    assert series == {
        (CPU_SERIES, "a"): 25.0, (CPU_SERIES, "b"): 50.0,
        (RAM_SERIES, "a"): round((1.0 + 3.0 + 6.0) / 3, 2), (RAM_SERIES, "b"): 7.5,
        (LEFT_OUT_SERIES, ""): 0.0,
    }
    clock.advance(40)  # a's samples 30 s ago have left the window; b's and the current ones not yet
    series = scraped(ServerGauges(aggregator, 10))
    assert series[(CPU_SERIES, "a")] == 45.0 and series[(CPU_SERIES, "b")] == 50.0
    assert series[(CPU_SERIES, "ahead")] == 1.0 and (CPU_SERIES, "old") not in series
    clock.advance(60)  # nothing in the last 60 s: no series at all, never a zero
    assert scraped(ServerGauges(aggregator, 10)) == {(LEFT_OUT_SERIES, ""): 0.0}


def test_over_the_cap_the_first_servers_by_name_are_exported_and_the_rest_counted(clock: FakeClock) -> None:
    aggregator = Aggregator(100, clock=clock)
    names = [f"web-{number:02}" for number in (7, 3, 9, 1, 5)]
    aggregator.apply(names, [EPOCH] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], [0.0] * 5)
    aggregator.apply(["idle"], [EPOCH - 300], [1.0], [1.0])  # no sample in the window: neither in nor left out
    gauges = ServerGauges(aggregator, 3)
    for _ in range(2):  # the same servers at every scrape
        series = scraped(gauges)
        assert series == {(CPU_SERIES, "web-01"): 4.0, (CPU_SERIES, "web-03"): 2.0, (CPU_SERIES, "web-05"): 5.0,
                          (RAM_SERIES, "web-01"): 0.0, (RAM_SERIES, "web-03"): 0.0, (RAM_SERIES, "web-05"): 0.0,
                          (LEFT_OUT_SERIES, ""): 2.0}
    aggregator.apply(["web-00"], [EPOCH], [9.0], [9.0])  # a new first name takes a place
    series = scraped(gauges)
    assert {server for name, server in series if name == CPU_SERIES} == {"web-00", "web-01", "web-03"}
    assert series[(LEFT_OUT_SERIES, "")] == 3.0


def test_a_hostile_name_is_escaped_and_reads_back_the_same(clock: FakeClock) -> None:
    # the API refuses such names; the gauges must not depend on that
    hostile = 'evil"} 1\nservertrack_up{x="\\'
    aggregator = Aggregator(10, clock=clock)
    aggregator.apply([hostile, "plain"], [EPOCH, EPOCH], [12.5, 1.0], [40.0, 2.0])
    text = ServerGauges(aggregator).exposition().decode()
    assert text.count("\n") == 2 * 2 + 3 * 2 + 1  # a line a sample, two a header: the name added none
    series = scraped(ServerGauges(aggregator))
    assert series[(CPU_SERIES, hostile)] == 12.5 and series[(RAM_SERIES, hostile)] == 40.0
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_an_evicted_servers_reused_row_shows_only_the_new_server(clock: FakeClock) -> None:
    aggregator = Aggregator(1, clock=clock)
    aggregator.apply(["gone"], [EPOCH], [70.0], [70.0])
    clock.advance(SILENCE_EVICTION_SECONDS + 1)
    assert aggregator.evict_silent() == ["gone"]
    assert scraped(ServerGauges(aggregator)) == {(LEFT_OUT_SERIES, ""): 0.0}
    aggregator.apply(["new"], [clock.now], [3.0], [4.0])
    assert scraped(ServerGauges(aggregator)) == {(CPU_SERIES, "new"): 3.0, (RAM_SERIES, "new"): 4.0,
                                                 (LEFT_OUT_SERIES, ""): 0.0}


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(-90, 5), st.floats(0, 100), st.floats(0, 100)),
                max_size=60),
       st.integers(0, 80))
def test_current_loads_agree_with_each_servers_seconds_window(samples: list[tuple[int, int, float, float]],
                                                              later: int) -> None:
    """The reference: each server's ``windows(name).seconds``, averaged by hand, one server at a time."""
    clock = FakeClock()
    aggregator = Aggregator(5_000, clock=clock)
    # rows in two blocks of the ring (4,096 rows each)
    aggregator.apply([f"filler-{number}" for number in range(4_100)], [EPOCH - 3_600] * 4_100, [0.0] * 4_100,
                     [0.0] * 4_100)
    for server, offset, cpu, ram in samples:
        aggregator.apply([f"s{server}"], [EPOCH + offset], [cpu], [ram])
    clock.advance(later)
    loads = aggregator.current_loads(limit=100)
    assert loads.left_out == 0
    expected = {}
    for name in {f"s{server}" for server, *_ in samples}:  # the fillers' hour-old samples are in no window
        window = aggregator.windows(name)
        assert window is not None
        weights = window.seconds.samples.astype(np.float64)
        if weights.sum() > 0:
            expected[name] = (float((weights * window.seconds.cpu_avg).sum() / weights.sum()),
                              float((weights * window.seconds.ram_avg).sum() / weights.sum()))
    assert loads.names == sorted(expected)
    for name, cpu, ram in zip(loads.names, loads.cpu.tolist(), loads.ram.tolist()):
        assert math.isclose(cpu, expected[name][0], abs_tol=1e-9) and math.isclose(ram, expected[name][1], abs_tol=1e-9)


def test_the_service_metrics_append_the_gauges_after_their_own_series(clock: FakeClock) -> None:
    aggregator = Aggregator(10, clock=clock)
    aggregator.apply(["web-01"], [EPOCH], [12.5], [40.0])
    metrics = ServiceMetrics()
    metrics.add_text(ServerGauges(aggregator).exposition)
    families = {family.name: family for family in text_string_to_metric_families(metrics.exposition().decode())}
    assert "servertrack_batch_apply_seconds" in families
    assert [(sample.labels, sample.value) for sample in families[CPU_SERIES].samples] == [({"server": "web-01"}, 12.5)]
