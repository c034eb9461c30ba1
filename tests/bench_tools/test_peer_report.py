"""bench/peers.py's pure parts: visibility lags, percentiles, VictoriaMetrics counters, judging, the table."""

from __future__ import annotations

import argparse
import math

import pytest
from peers import (
    RunResult,
    SenderStep,
    ServerTrackPeer,
    Step,
    StepResult,
    VictoriaMetricsPeer,
    figure,
    judge_sender,
    lags_from_counts,
    lags_from_timestamps,
    parse_vm_metrics,
    percentile,
    ratio,
    render_table,
    summary_rows,
)

T = 1_800_000_000.0


def test_lags_from_per_second_counts() -> None:
    # Probe samples at .1, .5, .9 of second T and .3 of T+1; samples are applied in order.
    sent = [T + 0.1, T + 0.5, T + 0.9, T + 1.3]
    polls = [
        (T + 0.2, {}),
        (T + 1.0, {int(T): 2}),  # the first two are in
        (T + 2.05, {int(T): 3, int(T) + 1: 1}),  # all of them
    ]
    assert lags_from_counts(sent, sent, polls) == pytest.approx([0.9, 0.5, 1.15, 0.75])
    # Only the last two judged, the others ranked all the same (they share second T).
    assert lags_from_counts(sent[2:], sent, polls) == pytest.approx([1.15, 0.75])


def test_a_probe_sample_never_counted_is_never_visible() -> None:
    sent = [T + 0.1, T + 0.2]
    polls = [(T + 1.0, {int(T): 1}), (T + 5.0, {int(T): 1})]
    lags = lags_from_counts(sent, sent, polls)
    assert lags[0] == pytest.approx(0.9) and math.isinf(lags[1])


def test_lags_from_raw_timestamps() -> None:
    sent = [T + 0.123, T + 0.456]
    polls = [(T + 1.0, {round((T + 0.123) * 1000)}), (T + 1.5, {round((T + 0.123) * 1000), round((T + 0.456) * 1000)})]
    assert lags_from_timestamps(sent, polls) == pytest.approx([0.877, 1.044])
    assert math.isinf(lags_from_timestamps([T + 9.0], polls)[0])


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.99) == 99 and percentile(values, 0.5) == 50 and percentile(values, 1.0) == 100
    assert percentile([3.0], 0.99) == 3.0 and math.isnan(percentile([], 0.5))


def test_victoriametrics_counters() -> None:
    text = """# HELP ignored
vm_protoparser_rows_read_total{type="influx"} 1736061
vm_protoparser_rows_read_total{type="promremotewrite"} 5
vm_rows_inserted_total{type="influx"} 3472122
vm_rows_invalid_total{type="influx"} 2
vm_rows_ignored_total{reason="big_timestamp"} 3
vm_rows_ignored_total{reason="small_timestamp"} 4
vm_http_request_errors_total{path="/influx/write", protocol="influx"} 1
vm_http_request_errors_total{path="/api/v1/export"} 9
"""
    assert parse_vm_metrics(text) == {
        "rows_read": 1736061, "rows_inserted": 3472122, "rows_invalid": 2, "rows_ignored": 7, "http_errors": 1}  # fmt: skip
    assert parse_vm_metrics("") == dict.fromkeys(["rows_read", "rows_inserted", "rows_invalid", "http_errors",
                                                  "rows_ignored"], 0.0)  # fmt: skip


def sender(sent: int, seconds: float = 10.0, cpu: float = 2.0, lag: float = 0.01, wait: float = 0.0) -> SenderStep:
    return SenderStep(sent=sent, seconds=seconds, cpu_seconds=cpu, max_lag=lag, probe_ts=[], stopped_early=False,
                      server_wait=wait)  # fmt: skip


def test_judging_the_sender() -> None:
    step = Step(100_000, 10.0, True)
    assert judge_sender(step, sender(1_000_000), http_sender=True) == ("", "")
    assert judge_sender(step, sender(990_000), http_sender=False) == ("", "")
    culprit, reason = judge_sender(step, sender(900_000, cpu=9.9), http_sender=False)
    assert culprit == "sender" and "90%" in reason and "99% CPU" in reason
    # Behind the schedule although everything went out in the end: a failure too.
    assert judge_sender(step, sender(1_000_000, lag=1.5), http_sender=False)[0] == "sender"
    # An HTTP sender that waited on busy connections was held back by the server.
    culprit, reason = judge_sender(step, sender(800_000, wait=5.0), http_sender=True)
    assert culprit == "server" and "held back" in reason
    assert judge_sender(step, sender(800_000, wait=1.0), http_sender=True)[0] == "sender"


def test_figures_and_ratios() -> None:
    assert figure(123_456.7) == "123,457" and figure(1.234, 2) == "1.23" and figure(5.0, 0, True) == ">= 5"
    assert figure(math.nan) == "n/a" and figure(math.inf, 3) == "never"
    assert ratio(300.0, 200.0) == "1.50"
    assert ratio(1.0, 0.0) == ratio(math.nan, 1.0) == ratio(1.0, math.inf) == "n/a"


def test_the_table_lines_up() -> None:
    text = render_table(["figure", "A", "B"], [["long figure name", "1", "22"], ["x", "333", "4"]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[0].startswith("figure ") and lines[1].startswith("-----") and "-+-" in lines[1]
    assert lines[2].endswith("  1 | 22") and lines[3].startswith("x ")


def run(rate: float, cpu: float, culprit: str = "server", p99: float = 1.0, per_server: float = 3000.0) -> RunResult:
    at = StepResult(
        step=Step(int(rate), 30.0, True), passed=True, culprit="", reasons=[], sender_rate=rate, sender_cpu_us=1.0,
        sender_cpu_percent=30.0, server_cpu_us=cpu, server_cpu_percent=90.0, stored=rate * 30, sent_reports=0,
        lag_max=1.2, lag_p99=1.1, probes=300, loss={},
    )  # fmt: skip
    return RunResult(
        system="x", rate=rate, limit="", limit_culprit=culprit, at_rate=at, query_cpu_us=5.0, query_p50=0.5,
        query_p99=p99, query_errors=0, query_count=1000, rss_empty=0, rss_loaded=0, bytes_per_server=per_server,
    )  # fmt: skip


def test_summary_rows_are_medians_with_ratios_and_say_what_limited() -> None:
    ours = [run(300_000, 3.0), run(320_000, 2.0, culprit="sender"), run(310_000, 4.0)]
    theirs = [run(350_000, 4.0), run(360_000, 4.5), run(370_000, 5.0)]
    rows = {row[0]: row[1:] for row in summary_rows(ours, theirs)}
    sustained = next(key for key in rows if key.startswith("sustained"))
    # One run was sender-limited: the median is a lower bound, said so.
    assert rows[sustained] == [">= 310,000", "360,000", f"{310 / 360:.2f}"]
    assert rows["  server CPU per report at that rate (us)"] == ["3.00", "4.50", "0.67"]
    assert rows["limited by (per run)"] == ["server, sender, server", "server, server, server", ""]


def test_summary_rows_without_the_peer() -> None:
    rows = summary_rows([run(300_000, 3.0)], [])
    assert all(row[2] == "n/a" and row[3] == "n/a" for row in rows[:-1])


def test_when_one_poll_shows_every_probe_sample() -> None:
    servertrack, victoria = ServerTrackPeer(argparse.Namespace()), VictoriaMetricsPeer(argparse.Namespace())
    earlier, step = [T + 0.1], [T + 0.5, T + 0.9, T + 1.3]  # an earlier step's sample shares second T
    assert servertrack.all_visible(step, earlier + step, {int(T): 3, int(T) + 1: 1})
    assert not servertrack.all_visible(step, earlier + step, {int(T): 2, int(T) + 1: 1})
    assert not servertrack.all_visible(step, earlier + step, {int(T): 3})
    shown = {round(ts * 1000) for ts in step}
    assert victoria.all_visible(step, step, shown) and not victoria.all_visible(step, step, shown - {min(shown)})
