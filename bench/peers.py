"""ServerTrack and VictoriaMetrics side by side: the same 100,000 servers, the same machine, one table.

Goals (ServerTrack's; exit status 1 if one is not met)
    - sustained ZeroMQ ingest >= 300,000 samples/s, and ahead of VictoriaMetrics in the same invocation;
    - server CPU per sample <= VictoriaMetrics' per report (each at its own sustained rate);
    - memory <= 3,072 B per server;
    - query p99 <= 2 ms under ingest.
    A report is one server's cpu and ram at one time: one ServerTrack sample,
    one line-protocol line (two VictoriaMetrics rows, ``load_cpu`` and ``load_ram``).

What runs
    Each run starts, one after the other (order alternating between runs),
    - ServerTrack: ``servertrack serve --store sqlite --data-dir <fresh temp dir>``
      (the durable store on, as deployed) through ``harness.Service``, fed by
      ``bench/loadgen.py --steps``: one ZeroMQ frame per sample, as agents send,
      pre-packed frames paced in 10 ms slices;
    - VictoriaMetrics: ``/usr/bin/victoria-metrics`` (Debian's ``victoria-metrics``;
      missing: exit 2, ``apt-get install -y victoria-metrics``) on a free
      127.0.0.1 port with its own temporary ``-storageDataPath``, fed by
      ``bench/influx_sender.py --steps``: Influx line protocol, batches of 1,000
      lines POSTed to ``/write?precision=ms`` over ``--connections`` keep-alive
      connections (its best case: few, large requests).
    Both senders are Python, build from pre-encoded parts the same names, the
    same loads in the same order (``loadgen.server_name`` and its value pool),
    and print their CPU per report for every step; ``--sender-processes``
    splits the servers over several processes on both sides alike. Each
    system is stopped and its data dir removed at the end of its turn.

    VictoriaMetrics flags (``victoria-metrics -help`` of 1.79.5, and
    https://docs.victoriametrics.com/Single-server-VictoriaMetrics.html):
    ``-search.latencyOffset=0s`` -- its default of 30 s leaves the last 30 s out
    of ``/api/v1/query_range`` ("the time when data points become visible in
    query results after the collection"); ServerTrack's windows include the
    current second and minute, so the range query asks for the same. Everything
    else is its default, which is what a user gets: ``-dedup.minScrapeInterval``
    off (every sample kept), ``-influxTrimTimestamp=1ms`` (millisecond
    timestamps kept), ``-memory.allowedPercent=60`` (caches), the response cache
    on (``-search.cacheTimestampOffset=5m``: the last 5 minutes always come from
    the raw data, and every query here is of a random server), no self-scrape.
    Its ``/write`` answers 204 once the rows are in its in-memory buffers; they
    become searchable when the buffers are flushed, about every second (1.79
    has no flag for that), which the visibility probe below measures.

Stepping (``RateSearch``)
    Before stepping, every server reports twice at ``--start-rate`` (not judged),
    so each step is steady state with all 100,000 servers known. Then short
    steps of ``--probe-seconds`` from ``--start-rate``, times ``--factor`` (1.25)
    while they pass, up to ``--max-rate``, bracket the limit; full steps of
    ``--seconds`` (30 s) confirm the highest short pass (or step down by
    sqrt(factor) until one passes) and bisect (geometric mean) towards the
    lowest failure until the bracket is within ``--resolution`` (6 %). Only a
    full step counts. Runs after the first start the short steps at that
    system's best so far / factor^2 (or ``--start-rate`` if higher). At most
    ``--max-steps`` steps per system and run, and none once ``--max-minutes``
    have passed. ``--seconds 5 --runs 1`` is a quick check (short steps are then
    as long as full ones and count).

A step passes when all of
    - the sender kept the pace: >= 99 % of ``rate * seconds`` sent, never more
      than 1 s behind the schedule. If it did not, the step fails and the
      table says whose fault: ``sender`` when the sender ran out of CPU or time
      (ZeroMQ PUB never waits for the receiver; the HTTP sender also, unless it
      spent >= 20 % of the step waiting with a batch due and every connection
      busy, which is the server pushing back: ``server``);
    - 0 loss. ServerTrack, from ``/stats`` once it has applied everything: every
      frame sent arrived (``kinds.sample.received`` grew by exactly what was
      sent), ``lost`` (seq gaps) and ``dropped`` (any reason) did not grow, the
      store's log and history queues refused and failed nothing. VictoriaMetrics,
      from its ``/metrics``: ``vm_protoparser_rows_read_total{type="influx"}``
      grew by the lines sent and ``vm_rows_inserted_total{type="influx"}`` by
      twice that, ``vm_rows_invalid_total{type="influx"}``, every
      ``vm_rows_ignored_total`` and ``vm_http_request_errors_total`` of
      ``/influx/write`` did not grow, and the sender got a 2xx for every request
      and no connection error. At the end of each run a count query
      (``sum(count_over_time(load_cpu[..]))``) cross-checks what VictoriaMetrics
      stored against every line sent in the run;
    - every sample visible within 1.5 s of its send. Both senders carry a probe
      server (``peer-probe.bench``) every 0.1 s in the same stream (the same ZeroMQ
      connection, the same HTTP bodies), stamped with its send time, so it queues
      behind exactly what the load queues behind. While the step runs a thread
      polls every 50 ms, on one keep-alive connection, ServerTrack's
      ``GET /servers/peer-probe.bench/seconds`` (per-second sample counts: the
      k-th probe sample of a second is visible once that second counts k) and
      VictoriaMetrics' ``GET /api/v1/export?match[]=load_cpu{server="peer-probe.bench"}``
      (the raw timestamps). A sample's lag is the end of the first poll that
      shows it minus its send time (an upper bound, by at most one poll); the
      worst and p99 are reported, never visible counts as infinite.

Figures per system and run
    - sustained rate: the highest full step passed, and what failed above it;
    - server CPU per report: psutil user+system of the server process (all
      threads) from the step's start until it had stored the step (ServerTrack:
      ``pending`` 0 and everything received), divided by the reports stored in
      that time (``applied`` delta; VictoriaMetrics: rows inserted / 2), at the
      sustained rate, and again at the query phase's rate;
    - sender CPU per report at the sustained rate (all of the sender's threads,
      the ZeroMQ I/O thread included);
    - RSS per server: (RSS after the load, with all 100,000 servers in, minus RSS
      just after start) / 100,000. Only the buckets a few minutes of ingest touch
      are filled (``bench/memory.py`` fills every bucket of ServerTrack);
    - query latency under load: at ``--query-rate`` (50,000/s) for both, after 2 s,
      ``--queries`` sequential GETs of one random server's last hour by minute on
      one keep-alive connection (``http.client``, time to the last byte):
      ServerTrack ``GET /servers/srv-NNNNNN.bench/loads`` (its 60 minute and 24
      hour buckets, each with samples and cpu/ram avg, min, max);
      VictoriaMetrics ``GET /api/v1/query_range?query=avg_over_time({__name__=~"load_(cpu|ram)",
      server="srv-NNNNNN.bench"}[1m])&start=NOW-3600&end=NOW&step=60`` (both series,
      61 per-minute averages each) -- one request each way, as a user would ask.

Output
    Every step and run as it goes, then one table: figure | ServerTrack |
    VictoriaMetrics | ratio ST/VM, medians of the runs, the goals met / NOT MET,
    and the command that reproduces it.

Usage
    python bench/peers.py                          # 3 runs, ~20-25 minutes
    python bench/peers.py --seconds 5 --runs 1     # a quick check (~3-5 minutes)
    --only st|vm measures one system (the ratios then read n/a).
"""

from __future__ import annotations

import argparse
import calendar
import http.client
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import harness  # puts this checkout on sys.path (bench/ is the script's own directory)
import psutil
from loadgen import server_name

VM_BINARY = "/usr/bin/victoria-metrics"
VM_INSTALL_HINT = "apt-get install -y victoria-metrics"
PROBE_NAME = "peer-probe.bench"
ST, VM = "ServerTrack", "VictoriaMetrics"

GOAL_RATE = 300_000
GOAL_BYTES_PER_SERVER = 3_072
GOAL_QUERY_P99_MS = 2.0
VISIBLE_WITHIN = 1.5  # seconds from send to visible in a query

SENDER_MIN_SHARE = 0.99  # of rate * seconds
SENDER_MAX_LAG = 1.0  # seconds behind the schedule
SERVER_PUSHBACK_SHARE = 0.2  # of a step spent waiting on busy connections
POLL_INTERVAL = 0.05
VISIBILITY_WAIT = 10.0  # how long after a step the probe is still looked for
SETTLE_TIMEOUT = 60.0
QUERY_WARMUP = 2.0
FILL_TIMEOUT = 120.0


# ---------------------------------------------------------------- the search (pure)


def round_rate(rate: float) -> int:
    """A rate rounded to a whole thousand, at least 1,000."""
    return max(1000, round(rate / 1000.0) * 1000)


@dataclass(frozen=True)
class Step:
    rate: int
    seconds: float
    full: bool  # as long as the contract's window: only these count


class RateSearch:
    """Finds the highest rate that passes a full step, by stepping (see the module docstring).

    Call ``next_step()`` for the next step (None when done) and ``record()`` with its outcome.
    """

    def __init__(
        self,
        start: int,
        max_rate: int,
        seconds: float,
        probe_seconds: float,
        factor: float = 1.25,
        resolution: float = 1.06,
        max_steps: int = 16,
        min_rate: int = 1000,
    ) -> None:
        if factor <= 1 or resolution <= 1 or max_rate < min_rate or seconds <= 0 or probe_seconds <= 0:
            raise ValueError("need factor > 1, resolution > 1, max_rate >= min_rate, seconds > 0")
        self.max_rate, self.min_rate = max_rate, min_rate
        self.seconds, self.probe_seconds = seconds, min(probe_seconds, seconds)
        self.factor, self.resolution, self.max_steps = factor, resolution, max_steps
        self.best: int | None = None  # highest full pass
        self.failed: int | None = None  # lowest failure above ``best``
        self.short_pass: int | None = None  # highest short pass
        self.history: list[tuple[Step, bool]] = []
        self.capped = False  # passed at max_rate
        self._phase = "grow"
        self._next: int | None = min(max_rate, max(min_rate, round_rate(start)))

    def _step(self, rate: int, full: bool) -> Step:
        return Step(rate, self.seconds if full else self.probe_seconds, full or self.probe_seconds >= self.seconds)

    def next_step(self) -> Step | None:
        """The next step to run, or None when the search is over."""
        if self._next is None or len(self.history) >= self.max_steps:
            return None
        return self._step(self._next, self._phase != "grow")

    def record(self, step: Step, passed: bool) -> None:
        """The outcome of ``step`` (the one ``next_step`` gave)."""
        self.history.append((step, passed))
        rate = step.rate
        if passed and step.full and (self.best is None or rate > self.best):
            self.best = rate
        if passed and (self.short_pass is None or rate > self.short_pass):
            self.short_pass = rate
        if not passed and (self.failed is None or rate < self.failed) and (self.best is None or rate > self.best):
            self.failed = rate
        if self._phase == "grow":
            if passed:
                higher = min(self.max_rate, round_rate(rate * self.factor))
                if rate >= self.max_rate or (self.failed is not None and higher >= self.failed):
                    self._phase = "confirm"
                    self._next = self.short_pass
                else:
                    self._next = higher
            elif self.short_pass is None:
                self._next = self._lower(rate, self.factor)
            else:
                self._phase = "confirm"
                self._next = self.short_pass
            if self._phase == "confirm" and self.best is not None and self.best >= (self._next or 0):
                self._phase = "bisect"
                self._next = self._bisect()
            return
        if self._phase == "confirm":
            if passed:
                self._phase = "bisect"
                self._next = self._bisect()
            else:
                self._next = self._lower(rate, math.sqrt(self.factor))
            return
        self._next = self._bisect()

    def _lower(self, rate: int, factor: float) -> int | None:
        """``rate / factor`` (at least 1,000 lower), or None below ``min_rate``."""
        lower = min(rate - 1000, round_rate(rate / factor))
        return lower if lower >= self.min_rate else None

    def _bisect(self) -> int | None:
        best, failed = self.best, self.failed
        if best is None:
            return None
        if failed is None:
            self.capped = best >= self.max_rate
            return None
        if failed / best <= self.resolution:
            return None
        middle = round_rate(math.sqrt(best * failed))
        return middle if best < middle < failed else None


# ---------------------------------------------------------------- visibility, percentiles, table (pure)


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def lags_from_counts(
    probe_ts: Sequence[float], all_probe_ts: Sequence[float], polls: Sequence[tuple[float, dict[int, int]]]
) -> list[float]:
    """Send-to-visible lag of each of ``probe_ts`` from polls of per-second sample counts.

    ``all_probe_ts`` are every probe sample sent so far (they share seconds);
    samples of one stream are applied in order, so the k-th sample of second S
    (by send time, k from 1) is visible once a poll counts >= k samples in S.
    ``polls`` are (wall time at the end of the poll, {second: count}), in time
    order. A sample no poll shows gets ``inf``.
    """
    rank: dict[float, tuple[int, int]] = {}
    per_second: dict[int, int] = {}
    for ts in sorted(all_probe_ts):
        second = int(ts // 1)
        per_second[second] = per_second.get(second, 0) + 1
        rank[ts] = (second, per_second[second])
    lags = []
    for ts in probe_ts:
        second, k = rank[ts]
        lag = math.inf
        for at, counts in polls:
            if at >= ts and counts.get(second, 0) >= k:
                lag = at - ts
                break
        lags.append(lag)
    return lags


def lags_from_timestamps(probe_ts: Sequence[float], polls: Sequence[tuple[float, set[int]]]) -> list[float]:
    """Send-to-visible lag of each of ``probe_ts`` (seconds, whole ms) from polls of the raw
    millisecond timestamps a query returned; ``inf`` if no poll shows it."""
    lags = []
    for ts in probe_ts:
        ms = round(ts * 1000)
        lag = math.inf
        for at, seen in polls:
            if ms in seen:
                lag = at - ts
                break
        lags.append(lag)
    return lags


def ratio(ours: float, theirs: float) -> str:
    """``ours / theirs`` as text, ``n/a`` when either is missing or theirs is 0."""
    if not (math.isfinite(ours) and math.isfinite(theirs)) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: a header, a rule, rows; the first column left-aligned, the others right."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *(line(row) for row in rows)])


def figure(value: float, digits: int = 0, lower_bound: bool = False) -> str:
    """A figure for the table: ``123,456``, ``1.23``; ``n/a``; ``>= `` when it is a lower bound."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "never"
    text = f"{value:,.{digits}f}"
    return (">= " if lower_bound else "") + text


# ---------------------------------------------------------------- senders


class SenderProcess(harness.Process):
    """A ``--steps`` sender (loadgen.py or influx_sender.py): JSON commands on stdin, one JSON line back.

    Like ``harness.Process`` but with a pipe for stdin (the base class gives
    DEVNULL); stopping closes stdin first, which ends the sender cleanly.
    """

    def __init__(self, argv: Sequence[str], name: str) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by stop(), like harness.Process
        self.popen = subprocess.Popen(
            list(argv), cwd=harness.REPO, env=harness.child_env(), stdout=subprocess.PIPE,
            stderr=self._stderr, stdin=subprocess.PIPE,
        )  # fmt: skip
        self.pid = self.popen.pid
        self.ps = psutil.Process(self.pid)

    def command(self, command: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(command) + "\n").encode())
        self.popen.stdin.flush()

    def reply(self, timeout: float) -> dict[str, Any]:
        line = self.read_line(timeout)
        try:
            reply = json.loads(line)
        except ValueError:
            raise RuntimeError(f"{self.name}: not JSON: {line[:200]!r}\n{self.stderr_text()}") from None
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    def stop(self, grace: float = harness.STOP_GRACE_SECONDS) -> int | None:
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
            self.wait(grace)
        return super().stop(grace)


@dataclass
class SenderStep:
    """What the senders of one system did in one step, summed over their processes."""

    sent: int
    seconds: float
    cpu_seconds: float
    max_lag: float
    probe_ts: list[float]
    stopped_early: bool
    server_wait: float = 0.0  # HTTP only: the longest any process waited on busy connections
    errors: int = 0  # HTTP only: non-2xx answers and connection errors


class SenderGroup:
    """``processes`` sender processes splitting the servers; the first also sends the probe."""

    def __init__(self, make_argv: Callable[[int, int, bool], list[str]], servers: int, processes: int, name: str):
        bounds = [servers * k // processes for k in range(processes + 1)]
        self.processes: list[SenderProcess] = []
        try:
            for k in range(processes):
                argv = make_argv(bounds[k], bounds[k + 1] - bounds[k], k == 0)
                self.processes.append(SenderProcess(argv, name=f"{name} sender {k + 1}"))
            for process in self.processes:
                process.reply(timeout=60)  # {"ready": true}
        except BaseException:
            self.stop()
            raise

    def run(self, rate: int, seconds: float) -> SenderStep:
        """One paced phase of ``rate`` reports/s in all, for ``seconds``."""
        count = len(self.processes)
        for k, process in enumerate(self.processes):
            process.command({"rate": rate // count + (1 if k < rate % count else 0), "seconds": seconds})
        replies = [process.reply(timeout=seconds * 1.5 + 60) for process in self.processes]
        errors = sum(sum(r.get("statuses", {}).values()) + r.get("connection_errors", 0) for r in replies)
        return SenderStep(
            sent=sum(r["sent"] for r in replies), seconds=max(r["seconds"] for r in replies),
            cpu_seconds=sum(r["cpu_seconds"] for r in replies), max_lag=max(r["max_lag_seconds"] for r in replies),
            probe_ts=list(replies[0]["probe_ts"]), stopped_early=any(r["stopped_early"] for r in replies),
            server_wait=max(r.get("server_wait_seconds", 0.0) for r in replies), errors=errors,
        )  # fmt: skip

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


# ---------------------------------------------------------------- the two systems


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """GET on a keep-alive connection: (status, body)."""
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


class Peer:
    """One system under test: how to start it, feed it, count what it stored, see the probe, query it."""

    name = ""
    unit = "reports"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.process: harness.Process | None = None
        self.service: harness.Service | None = None
        self.data_dir = ""
        self.port = 0

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = ""

    def senders(self) -> SenderGroup:
        raise NotImplementedError

    def counters(self) -> dict[str, float]:
        raise NotImplementedError

    def settle(self, before: dict[str, float], reports: int) -> dict[str, float]:
        """Counters once the ``reports`` sent since ``before`` are stored (or after a timeout)."""
        raise NotImplementedError

    def loss(self, before: dict[str, float], after: dict[str, float], reports: int, sender: SenderStep) -> dict[str, int]:
        """Every sign of loss between two counter snapshots (empty: none)."""
        raise NotImplementedError

    def stored(self, before: dict[str, float], after: dict[str, float]) -> float:
        raise NotImplementedError

    def observe_probe(self, conn: http.client.HTTPConnection, since: float) -> Any:
        raise NotImplementedError

    def lags(self, probe_ts: list[float], all_probe_ts: list[float], polls: list[tuple[float, Any]]) -> list[float]:
        raise NotImplementedError

    def all_visible(self, probe_ts: list[float], all_probe_ts: list[float], observed: Any) -> bool:
        """Whether one poll's ``observed`` shows every one of ``probe_ts``."""
        raise NotImplementedError

    def query(self, conn: http.client.HTTPConnection, server: str) -> tuple[bool, float]:
        """One timed query of ``server``'s last hour: (answer as expected, milliseconds)."""
        raise NotImplementedError

    def end_of_run_check(self, total_reports: int, run_seconds: float) -> str:
        """A cross-check of everything stored in the run, as a line to print ("" for none)."""
        return ""

    def rss(self) -> int:
        assert self.process is not None
        return self.process.rss()

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return self.process.cpu_seconds()


def _stats_counters(stats: dict[str, Any]) -> dict[str, float]:
    """The ``/stats`` counters a step is judged by (samples; drops of any kind)."""
    store = stats.get("store", {})
    log, history = store.get("log", {}), store.get("history", {})
    sample = stats["kinds"]["sample"]
    return {
        "received": sample["received"], "applied": sample["applied"], "pending": sample["pending"],
        "sample_dropped": sum(sample["dropped"].values()), "lost": stats["lost"],
        "dropped": sum(stats["dropped"].values()),
        "store_refused": log.get("refused", 0) + history.get("refused", 0),
        "store_failures": log.get("failures", 0) + history.get("failures", 0),
    }  # fmt: skip


class ServerTrackPeer(Peer):
    name = ST
    unit = "samples"

    def start(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="peers-servertrack-")
        service = harness.Service(ready_timeout=60, flags=["--store", "sqlite", "--data-dir", self.data_dir])
        self.process, self.service, self.port = service, service, service.port

    def senders(self) -> SenderGroup:
        def argv(first: int, count: int, probe: bool) -> list[str]:
            return [
                harness.PYTHON, os.path.join(harness.BENCH, "loadgen.py"), "--endpoint", self.service.ingest,
                "--servers", str(count), "--first", str(first), "--steps", *(["--probe", PROBE_NAME] if probe else []),
            ]  # fmt: skip

        return SenderGroup(argv, self.args.servers, self.args.sender_processes, "loadgen")

    def counters(self) -> dict[str, float]:
        return _stats_counters(self.service.stats())

    def settle(self, before: dict[str, float], reports: int) -> dict[str, float]:
        want = before["received"] + reports
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            now = self.counters()
            # pending 0 alone is not enough: a batch being applied (in slices) is neither pending nor applied
            everything_applied = now["received"] == now["applied"] + now["sample_dropped"] and now["pending"] == 0
            if (now["received"] >= want and everything_applied) or time.monotonic() >= deadline:
                return now
            time.sleep(0.1)

    def loss(self, before: dict[str, float], after: dict[str, float], reports: int, sender: SenderStep) -> dict[str, int]:
        delta = {key: int(after[key] - before[key]) for key in after}
        problems = {
            "never arrived": reports - delta["received"], "seq gaps": delta["lost"], "dropped": delta["dropped"],
            "store refused": delta["store_refused"], "store failures": delta["store_failures"],
            "not applied": int(after["received"] - after["applied"] - after["sample_dropped"] - after["pending"]),
        }  # fmt: skip
        return {key: value for key, value in problems.items() if value}

    def stored(self, before: dict[str, float], after: dict[str, float]) -> float:
        return after["applied"] - before["applied"]

    def observe_probe(self, conn: http.client.HTTPConnection, since: float) -> dict[int, int]:
        status, body = http_get(conn, f"/servers/{PROBE_NAME}/seconds")
        if status != 200:
            return {}
        return {_epoch(bucket["start"]): bucket["samples"] for bucket in json.loads(body)["seconds"] if bucket["samples"]}

    def lags(self, probe_ts: list[float], all_probe_ts: list[float], polls: list[tuple[float, Any]]) -> list[float]:
        return lags_from_counts(probe_ts, all_probe_ts, polls)

    def all_visible(self, probe_ts: list[float], all_probe_ts: list[float], observed: Any) -> bool:
        seconds = {int(ts // 1) for ts in probe_ts}
        needed: dict[int, int] = {}
        for ts in all_probe_ts:
            second = int(ts // 1)
            if second in seconds:
                needed[second] = needed.get(second, 0) + 1
        return all(observed.get(second, 0) >= count for second, count in needed.items())

    def query(self, conn: http.client.HTTPConnection, server: str) -> tuple[bool, float]:
        start = time.perf_counter()
        status, body = http_get(conn, f"/servers/{server}/loads")
        elapsed = (time.perf_counter() - start) * 1000
        ok = status == 200 and len(json.loads(body).get("minutes", ())) == 60
        return ok, elapsed


_EPOCHS: dict[str, int] = {}


def _epoch(iso: str) -> int:
    """``2026-11-25T14:19:02Z`` -> epoch seconds (cached: the same starts come back poll after poll)."""
    value = _EPOCHS.get(iso)
    if value is None:
        if len(_EPOCHS) > 100_000:
            _EPOCHS.clear()
        value = _EPOCHS[iso] = calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    return value


VM_COUNTERS = {
    "rows_read": 'vm_protoparser_rows_read_total{type="influx"}',
    "rows_inserted": 'vm_rows_inserted_total{type="influx"}',
    "rows_invalid": 'vm_rows_invalid_total{type="influx"}',
    "http_errors": 'vm_http_request_errors_total{path="/influx/write", protocol="influx"}',
}
VM_IGNORED_PREFIX = "vm_rows_ignored_total{"


def parse_vm_metrics(text: str) -> dict[str, float]:
    """The counters this benchmark watches from VictoriaMetrics' ``/metrics`` text (absent ones are 0)."""
    values: dict[str, float] = dict.fromkeys([*VM_COUNTERS, "rows_ignored"], 0.0)
    names = {metric: key for key, metric in VM_COUNTERS.items()}
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric in names:
            values[names[metric]] = float(value)
        elif metric.startswith(VM_IGNORED_PREFIX):
            values["rows_ignored"] += float(value)
    return values


class VictoriaMetricsPeer(Peer):
    name = VM

    def start(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="peers-victoriametrics-")
        self.port = free_port()
        argv = [
            VM_BINARY, f"-storageDataPath={self.data_dir}", f"-httpListenAddr=127.0.0.1:{self.port}",
            "-search.latencyOffset=0s",
        ]  # fmt: skip
        self.process = harness.Process(argv, stdout=subprocess.DEVNULL, name="victoria-metrics")
        conn = self.connection()
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    if http_get(conn, "/health")[0] == 200:
                        return
                except OSError:
                    conn.close()
                if time.monotonic() >= deadline or self.process.popen.poll() is not None:
                    raise RuntimeError(f"victoria-metrics did not come up\n{self.process.stderr_text()}")
                time.sleep(0.1)
        finally:
            conn.close()

    def senders(self) -> SenderGroup:
        url = f"http://127.0.0.1:{self.port}/write"

        def argv(first: int, count: int, probe: bool) -> list[str]:
            return [
                harness.PYTHON, os.path.join(harness.BENCH, "influx_sender.py"), "--url", url, "--servers", str(count),
                "--first", str(first), "--connections", str(self.args.connections), "--steps",
                *(["--probe", PROBE_NAME] if probe else []),
            ]  # fmt: skip

        return SenderGroup(argv, self.args.servers, self.args.sender_processes, "influx")

    def counters(self) -> dict[str, float]:
        conn = self.connection()
        try:
            status, body = http_get(conn, "/metrics")
        finally:
            conn.close()
        if status != 200:
            raise RuntimeError(f"victoria-metrics /metrics answered {status}")
        return parse_vm_metrics(body.decode())

    def settle(self, before: dict[str, float], reports: int) -> dict[str, float]:
        # /write answers once the rows are in; wait only in case a request is still being parsed.
        deadline = time.monotonic() + 5
        while True:
            now = self.counters()
            if now["rows_read"] >= before["rows_read"] + reports or time.monotonic() >= deadline:
                return now
            time.sleep(0.1)

    def loss(self, before: dict[str, float], after: dict[str, float], reports: int, sender: SenderStep) -> dict[str, int]:
        delta = {key: int(after[key] - before[key]) for key in after}
        problems = {
            "never parsed": reports - delta["rows_read"], "rows not inserted": 2 * reports - delta["rows_inserted"],
            "invalid rows": delta["rows_invalid"], "ignored rows": delta["rows_ignored"],
            "HTTP errors (server)": delta["http_errors"], "failed requests (sender)": sender.errors,
        }  # fmt: skip
        return {key: value for key, value in problems.items() if value}

    def stored(self, before: dict[str, float], after: dict[str, float]) -> float:
        return (after["rows_inserted"] - before["rows_inserted"]) / 2

    def observe_probe(self, conn: http.client.HTTPConnection, since: float) -> set[int]:
        match = urllib.parse.quote(f'load_cpu{{server="{PROBE_NAME}"}}')
        status, body = http_get(conn, f"/api/v1/export?match[]={match}&start={since:.3f}")
        seen: set[int] = set()
        if status == 200:
            for line in body.splitlines():
                if line.strip():
                    seen.update(json.loads(line)["timestamps"])
        return seen

    def lags(self, probe_ts: list[float], all_probe_ts: list[float], polls: list[tuple[float, Any]]) -> list[float]:
        return lags_from_timestamps(probe_ts, polls)

    def all_visible(self, probe_ts: list[float], all_probe_ts: list[float], observed: Any) -> bool:
        return all(round(ts * 1000) in observed for ts in probe_ts)

    def query(self, conn: http.client.HTTPConnection, server: str) -> tuple[bool, float]:
        now = time.time()
        query = urllib.parse.quote(f'avg_over_time({{__name__=~"load_(cpu|ram)",server="{server}"}}[1m])')
        path = f"/api/v1/query_range?query={query}&start={now - 3600:.3f}&end={now:.3f}&step=60"
        start = time.perf_counter()
        status, body = http_get(conn, path)
        elapsed = (time.perf_counter() - start) * 1000
        ok = status == 200 and len(json.loads(body)["data"]["result"]) == 2
        return ok, elapsed

    def end_of_run_check(self, total_reports: int, run_seconds: float) -> str:
        time.sleep(2.0)  # the last rows reach the searchable parts within about a second
        window = int(run_seconds) + 120
        query = urllib.parse.quote(f"sum(count_over_time(load_cpu[{window}s]))")
        conn = self.connection()
        try:
            status, body = http_get(conn, f"/api/v1/query?query={query}")
        finally:
            conn.close()
        if status != 200:
            return f"count query answered {status}"
        result = json.loads(body)["data"]["result"]
        stored = int(float(result[0]["value"][1])) if result else 0
        verdict = "all of them" if stored == total_reports else f"MISSING {total_reports - stored:,}"
        return f"count query: {stored:,} load_cpu samples stored of {total_reports:,} lines sent in the run ({verdict})"


# ---------------------------------------------------------------- one step, one run


class ProbePoller(threading.Thread):
    """Polls the probe server's visibility every ``POLL_INTERVAL`` on its own keep-alive connection."""

    def __init__(self, peer: Peer, since: float) -> None:
        super().__init__(daemon=True, name="probe poller")
        self.peer, self.since = peer, since
        self.polls: list[tuple[float, Any]] = []
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        conn = self.peer.connection()
        try:
            while not self.done.is_set():
                try:
                    observed = self.peer.observe_probe(conn, self.since)
                    self.polls.append((time.time(), observed))
                except (OSError, http.client.HTTPException, ValueError):
                    self.errors += 1
                    conn.close()
                    conn = self.peer.connection()
                self.done.wait(POLL_INTERVAL)
        finally:
            conn.close()


@dataclass
class StepResult:
    step: Step
    passed: bool
    culprit: str  # "" when passed, else "sender" or "server"
    reasons: list[str]
    sender_rate: float
    sender_cpu_us: float
    sender_cpu_percent: float
    server_cpu_us: float
    server_cpu_percent: float
    stored: float
    sent_reports: int  # load and probe reports the senders sent
    lag_max: float
    lag_p99: float
    probes: int
    loss: dict[str, int]


def judge_sender(step: Step, sender: SenderStep, http_sender: bool) -> tuple[str, str]:
    """(culprit, reason) when the sender did not keep the pace of ``step``, else ("", "")."""
    wanted = int(step.rate * step.seconds)
    share = sender.sent / wanted if wanted else 1.0
    if share >= SENDER_MIN_SHARE and sender.max_lag <= SENDER_MAX_LAG and not sender.stopped_early:
        return "", ""
    cpu = 100.0 * sender.cpu_seconds / sender.seconds if sender.seconds else 0.0
    what = f"sent {share:.0%} of the rate, up to {sender.max_lag:.1f} s behind, at {cpu:.0f}% CPU"
    if http_sender and sender.server_wait >= SERVER_PUSHBACK_SHARE * sender.seconds:
        return "server", f"{what}: held back by the server ({sender.server_wait:.1f} s on busy connections)"
    return "sender", f"{what}: the sender could not keep up"


def run_step(peer: Peer, senders: SenderGroup, step: Step, all_probe_ts: list[float]) -> StepResult:
    """One paced step: send, wait until stored, judge loss, visibility and the sender."""
    before = peer.counters()
    cpu_before, t_before = peer.cpu_seconds(), time.monotonic()
    poller = ProbePoller(peer, since=time.time() - 5)
    poller.start()
    try:
        sender = senders.run(step.rate, step.seconds)
        reports = sender.sent + len(sender.probe_ts)
        after = peer.settle(before, reports)
        cpu_after, t_after = peer.cpu_seconds(), time.monotonic()
        all_probe_ts.extend(sender.probe_ts)
        deadline = time.time() + VISIBILITY_WAIT
        while time.time() < deadline:
            if poller.polls and peer.all_visible(sender.probe_ts, all_probe_ts, poller.polls[-1][1]):
                break
            time.sleep(POLL_INTERVAL)
    finally:
        poller.done.set()
        poller.join(timeout=5)
    lags = peer.lags(sender.probe_ts, all_probe_ts, poller.polls)
    loss = peer.loss(before, after, reports, sender)
    stored = peer.stored(before, after)
    culprit, reason = judge_sender(step, sender, isinstance(peer, VictoriaMetricsPeer))
    reasons = [reason] if reason else []
    lag_max = max(lags) if lags else math.inf
    if not lags or lag_max > VISIBLE_WITHIN:
        reasons.append(f"visible only after {lag_max:.2f} s" if lags else "no probe sample seen")
        culprit = culprit or "server"
    if loss:
        reasons.append("loss: " + ", ".join(f"{k} {v:,}" for k, v in loss.items()))
        culprit = culprit or "server"
    window = t_after - t_before
    cpu = cpu_after - cpu_before
    return StepResult(
        step=step, passed=not reasons, culprit=culprit, reasons=reasons,
        sender_rate=sender.sent / sender.seconds if sender.seconds else 0.0,
        sender_cpu_us=1e6 * sender.cpu_seconds / sender.sent if sender.sent else math.nan,
        sender_cpu_percent=100.0 * sender.cpu_seconds / sender.seconds if sender.seconds else math.nan,
        server_cpu_us=1e6 * cpu / stored if stored > 0 else math.nan,
        server_cpu_percent=100.0 * cpu / window if window > 0 else math.nan,
        stored=stored, sent_reports=reports, lag_max=lag_max, lag_p99=percentile(lags, 0.99), probes=len(lags), loss=loss,
    )  # fmt: skip


def print_step(label: str, index: int, r: StepResult) -> None:
    kind = "full " if r.step.full else "short"
    verdict = "pass" if r.passed else f"FAIL ({r.culprit}: {'; '.join(r.reasons)})"
    print(
        f"  [{label}] step {index:2d} {kind} {r.step.seconds:g} s at {r.step.rate:,}/s: {verdict}\n"
        f"      sender {r.sender_rate:,.0f}/s, {r.sender_cpu_us:.2f} us/report, {r.sender_cpu_percent:.0f}% CPU | "
        f"server {r.server_cpu_us:.2f} us/report, {r.server_cpu_percent:.0f}% CPU, stored {r.stored:,.0f} | "
        f"visible worst {r.lag_max:.3f} s, p99 {r.lag_p99:.3f} s ({r.probes} probes)",
        flush=True,
    )


@dataclass
class RunResult:
    system: str
    rate: float  # highest full pass (NaN: none)
    limit: str  # what failed above it
    limit_culprit: str
    at_rate: StepResult | None
    query_cpu_us: float
    query_p50: float
    query_p99: float
    query_errors: int
    query_count: int
    rss_empty: int
    rss_loaded: int
    bytes_per_server: float
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_queries(peer: Peer, servers: int, count: int, until: float, seed: int) -> tuple[list[float], int]:
    """Up to ``count`` sequential queries of random servers before ``until`` (monotonic)."""
    rng = random.Random(seed)
    conn = peer.connection()
    times: list[float] = []
    errors = 0
    try:
        while len(times) + errors < count and time.monotonic() < until:
            server = server_name(rng.randrange(servers))
            try:
                ok, ms = peer.query(conn, server)
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                errors += 1
                conn.close()
                conn = peer.connection()
                continue
            if ok:
                times.append(ms)
            else:
                errors += 1
    finally:
        conn.close()
    return times, errors


def run_peer(peer: Peer, args: argparse.Namespace, start_rate: int, run: int, deadline: float) -> RunResult:
    """Start the system, fill it, step the rate, measure queries and memory, stop it."""
    label = f"{'ST' if peer.name == ST else 'VM'} run {run}"
    print(f"-- {peer.name}, run {run}: start, fill {args.servers:,} servers, step from {start_rate:,}/s", flush=True)
    started = time.monotonic()
    peer.start()
    senders: SenderGroup | None = None
    try:
        time.sleep(1.0)
        rss_empty = peer.rss()
        senders = peer.senders()
        all_probe_ts: list[float] = []
        total_reports = 0
        # Every server reports twice before anything is judged (new series are slow to create in both).
        fill_rate, filled = min(args.start_rate, args.servers), 0
        fill_deadline = time.monotonic() + FILL_TIMEOUT
        while filled < 2 * args.servers:
            if time.monotonic() >= fill_deadline:
                raise RuntimeError(f"{peer.name}: {filled:,} reports in {FILL_TIMEOUT:g} s, not every server twice")
            seconds = max(1.0, (2 * args.servers - filled) / fill_rate)
            fill = run_step(peer, senders, Step(fill_rate, seconds, False), all_probe_ts)
            filled += fill.sent_reports - fill.probes
            total_reports += fill.sent_reports
            print_step(label + " fill, not judged", 0, fill)
        search = RateSearch(
            start_rate, args.max_rate, args.seconds, args.probe_seconds, args.factor, args.resolution, args.max_steps
        )
        steps: list[StepResult] = []
        step = search.next_step()
        while step is not None and time.monotonic() < deadline:
            result = run_step(peer, senders, step, all_probe_ts)
            total_reports += result.sent_reports
            steps.append(result)
            print_step(label, len(steps), result)
            search.record(step, result.passed)
            step = search.next_step()
        notes = []
        if step is not None:
            notes.append("search stopped by --max-minutes")
        best = search.best
        at_rate = max((r for r in steps if r.passed and r.step.full and r.step.rate == best), key=lambda r: r.step.rate,
                      default=None)  # fmt: skip
        above = [r for r in steps if not r.passed and (best is None or r.step.rate > best)]
        limit_step = min(above, key=lambda r: r.step.rate, default=None)
        if search.capped:
            limit, culprit = f"none up to --max-rate {args.max_rate:,}", "capped"
        elif limit_step is not None:
            limit, culprit = f"{limit_step.step.rate:,}/s: " + "; ".join(limit_step.reasons), limit_step.culprit
        else:
            limit, culprit = "not found", ""

        # Query latency at a moderate rate, while the senders keep going in a thread.
        before = peer.counters()
        cpu_before, t_before = peer.cpu_seconds(), time.monotonic()
        outcome: dict[str, Any] = {}

        def feed() -> None:
            try:
                assert senders is not None
                outcome["sender"] = senders.run(args.query_rate, args.query_seconds)
            except Exception as error:  # noqa: BLE001 -- re-raised by the main thread
                outcome["error"] = error

        feeder = threading.Thread(target=feed, name="query-phase senders", daemon=True)
        feeder.start()
        time.sleep(QUERY_WARMUP)
        times, errors = run_queries(peer, args.servers, args.queries, t_before + args.query_seconds - 1.0, seed=run)
        feeder.join(timeout=args.query_seconds * 1.5 + 90)
        if "error" in outcome or "sender" not in outcome:
            raise RuntimeError(f"query-phase sender failed: {outcome.get('error')}")
        sender = outcome["sender"]
        all_probe_ts.extend(sender.probe_ts)
        after = peer.settle(before, sender.sent + len(sender.probe_ts))
        cpu = peer.cpu_seconds() - cpu_before
        stored = peer.stored(before, after)
        total_reports += sender.sent + len(sender.probe_ts)
        query_loss = peer.loss(before, after, sender.sent + len(sender.probe_ts), sender)
        if query_loss:
            notes.append(f"loss during the query phase: {query_loss}")
        rss_loaded = peer.rss()
        check = peer.end_of_run_check(total_reports, time.monotonic() - started)
        if check:
            notes.append(check)
    finally:
        if senders is not None:
            senders.stop()
        peer.stop()
    print(f"  ({peer.name} run {run} took {time.monotonic() - started:.0f} s)")
    result = RunResult(
        system=peer.name, rate=float(best) if best is not None else math.nan, limit=limit, limit_culprit=culprit,
        at_rate=at_rate, query_cpu_us=1e6 * cpu / stored if stored else math.nan,
        query_p50=percentile(times, 0.5), query_p99=percentile(times, 0.99), query_errors=errors,
        query_count=len(times), rss_empty=rss_empty, rss_loaded=rss_loaded,
        bytes_per_server=(rss_loaded - rss_empty) / args.servers, steps=steps, notes=notes,
    )  # fmt: skip
    print_run(result, args)
    return result


def print_run(r: RunResult, args: argparse.Namespace) -> None:
    at = r.at_rate
    print(f"  {r.system} run: sustained {figure(r.rate)} {('samples' if r.system == ST else 'reports')}/s; "
          f"above it: {r.limit}")  # fmt: skip
    if at is not None:
        print(f"    at that rate: server {at.server_cpu_us:.2f} us/report ({at.server_cpu_percent:.0f}% CPU), "
              f"sender {at.sender_cpu_us:.2f} us/report ({at.sender_cpu_percent:.0f}% CPU), "
              f"visible worst {at.lag_max:.3f} s / p99 {at.lag_p99:.3f} s")  # fmt: skip
    print(f"    queries at {args.query_rate:,}/s: {r.query_count:,} answered, {r.query_errors} errors, "
          f"p50 {r.query_p50:.2f} ms, p99 {r.query_p99:.2f} ms; server {r.query_cpu_us:.2f} us/report")  # fmt: skip
    print(f"    RSS empty {r.rss_empty / 2**20:,.1f} MiB, loaded {r.rss_loaded / 2**20:,.1f} MiB: "
          f"{r.bytes_per_server:,.0f} B per server")  # fmt: skip
    for note in r.notes:
        print(f"    {note}")
    sys.stdout.flush()


# ---------------------------------------------------------------- the table


def _median(runs: list[RunResult], value: Callable[[RunResult], float]) -> float:
    values = [v for v in (value(r) for r in runs) if not math.isnan(v)]
    return harness.median(values) if values else math.nan


def _at(attr: str) -> Callable[[RunResult], float]:
    return lambda r: getattr(r.at_rate, attr) if r.at_rate is not None else math.nan


TABLE_ROWS: list[tuple[str, Callable[[RunResult], float], int]] = [
    ("sustained ingest, reports/s (30 s, 0 loss, visible <= 1.5 s)", lambda r: r.rate, 0),
    ("  visibility at that rate, worst (s)", _at("lag_max"), 3),
    ("  visibility at that rate, p99 (s)", _at("lag_p99"), 3),
    ("  server CPU per report at that rate (us)", _at("server_cpu_us"), 2),
    ("  sender CPU per report at that rate (us)", _at("sender_cpu_us"), 2),
    ("server CPU per report at the query rate (us)", lambda r: r.query_cpu_us, 2),
    ("RSS per server (B)", lambda r: r.bytes_per_server, 0),
    ("query p50 under ingest (ms)", lambda r: r.query_p50, 2),
    ("query p99 under ingest (ms)", lambda r: r.query_p99, 2),
]


def summary_rows(st_runs: list[RunResult], vm_runs: list[RunResult]) -> list[list[str]]:
    """The table's rows: figure | ServerTrack | VictoriaMetrics | ratio ST/VM (medians of the runs)."""
    rows = []
    for label, value, digits in TABLE_ROWS:
        st, vm = _median(st_runs, value), _median(vm_runs, value)
        lower = label.startswith("sustained")
        rows.append([
            label,
            figure(st, digits, lower and any(r.limit_culprit in ("sender", "capped") for r in st_runs)),
            figure(vm, digits, lower and any(r.limit_culprit in ("sender", "capped") for r in vm_runs)),
            ratio(st, vm),
        ])  # fmt: skip
    rows.append(["limited by (per run)", ", ".join(r.limit_culprit or "?" for r in st_runs) or "n/a",
                 ", ".join(r.limit_culprit or "?" for r in vm_runs) or "n/a", ""])  # fmt: skip
    return rows


def check_goals(st_runs: list[RunResult], vm_runs: list[RunResult]) -> bool:
    """Print the goals met / NOT MET; True if all are met."""
    st_rate, vm_rate = _median(st_runs, lambda r: r.rate), _median(vm_runs, lambda r: r.rate)
    ok = harness.verdict("ServerTrack sustained ingest (median)", st_rate, GOAL_RATE, "samples/s", True)
    if vm_runs:
        ahead = not math.isnan(st_rate) and (math.isnan(vm_rate) or st_rate > vm_rate)
        print(f"  ServerTrack ahead of VictoriaMetrics ({figure(st_rate)} vs {figure(vm_rate)} reports/s): "
              f"{'met' if ahead else 'NOT MET'}")  # fmt: skip
        ok &= ahead
        st_cpu, vm_cpu = _median(st_runs, _at("server_cpu_us")), _median(vm_runs, _at("server_cpu_us"))
        ok &= harness.verdict("ServerTrack server CPU per sample vs VictoriaMetrics' per report",
                              st_cpu, vm_cpu, "us", False)  # fmt: skip
    else:
        print("  ServerTrack ahead of VictoriaMetrics, CPU per report: not checked (--only st)")
        ok = False
    ok &= harness.verdict("ServerTrack RSS per server (median)", _median(st_runs, lambda r: r.bytes_per_server),
                          GOAL_BYTES_PER_SERVER, "B", False)  # fmt: skip
    ok &= harness.verdict("ServerTrack query p99 under ingest (median)", _median(st_runs, lambda r: r.query_p99),
                          GOAL_QUERY_P99_MS, "ms", False)  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per system (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a full step (default %(default)s)")
    parser.add_argument("--probe-seconds", type=float, default=6.0,
                        help="length of a short (bracketing) step (default %(default)s)")  # fmt: skip
    parser.add_argument("--start-rate", type=int, default=100_000, help="first rate, reports/s (default %(default)s)")
    parser.add_argument("--max-rate", type=int, default=1_000_000, help="highest rate tried (default %(default)s)")
    parser.add_argument("--factor", type=float, default=1.25, help="rate step while passing (default %(default)s)")
    parser.add_argument("--resolution", type=float, default=1.06,
                        help="stop bisecting when failure / pass <= this (default %(default)s)")  # fmt: skip
    parser.add_argument("--max-steps", type=int, default=14, help="steps per system and run (default %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=25.0,
                        help="no new step after this many minutes (default %(default)s)")  # fmt: skip
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--query-rate", type=int, default=50_000, help="ingest while querying (default %(default)s)")
    parser.add_argument("--query-seconds", type=float, default=12.0, help="query phase length (default %(default)s)")
    parser.add_argument("--queries", type=int, default=1000, help="queries per run (default %(default)s)")
    parser.add_argument("--connections", type=int, default=4,
                        help="influx sender keep-alive connections (default %(default)s)")  # fmt: skip
    parser.add_argument("--sender-processes", type=int, default=1,
                        help="sender processes per system, both alike (default %(default)s)")  # fmt: skip
    parser.add_argument("--only", choices=("st", "vm"), help="measure one system only")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds <= 0 or args.probe_seconds <= 0 or args.servers < 1 or args.queries < 1 \
            or args.query_rate < 1 or args.query_seconds <= QUERY_WARMUP + 1 or args.sender_processes < 1 \
            or args.start_rate < 1000 or args.max_rate < args.start_rate:  # fmt: skip
        parser.error("need --runs, --seconds, --probe-seconds, --servers, --queries, --query-rate >= 1, "
                     f"--query-seconds > {QUERY_WARMUP + 1:g}, 1000 <= --start-rate <= --max-rate")  # fmt: skip
    if args.only != "st" and not os.access(VM_BINARY, os.X_OK):
        print(f"{VM_BINARY} is missing: install it with `{VM_INSTALL_HINT}` (or run with --only st)", file=sys.stderr)
        return 2
    harness.print_header("ServerTrack and VictoriaMetrics side by side, 100,000 servers")
    began = time.monotonic()
    deadline = began + args.max_minutes * 60
    systems = [("st", ServerTrackPeer), ("vm", VictoriaMetricsPeer)]
    systems = [(key, cls) for key, cls in systems if args.only in (None, key)]
    results: dict[str, list[RunResult]] = {key: [] for key, _ in systems}
    for run in range(1, args.runs + 1):
        order = systems if run % 2 else systems[::-1]
        for key, cls in order:
            previous = [r.rate for r in results[key] if r.rate == r.rate]
            start = args.start_rate
            if previous:
                start = max(start, round_rate(harness.median(previous) / args.factor**2))
            results[key].append(run_peer(cls(args), args, start, run, deadline))
    st_runs, vm_runs = results.get("st", []), results.get("vm", [])
    print(f"== medians of {args.runs} run(s); reports/s = samples/s for ServerTrack (one report = one sample = one "
          "line = two VictoriaMetrics rows)")  # fmt: skip
    print(render_table(["figure", ST, VM, "ratio ST/VM"], summary_rows(st_runs, vm_runs)))
    if args.seconds < 30:
        print(f"  note: full steps of {args.seconds:g} s, shorter than the 30 s the goal names")
    ok = check_goals(st_runs, vm_runs)
    load = os.getloadavg()
    print(f"  took {(time.monotonic() - began) / 60:.1f} min; load average at the end {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} (the benchmark itself keeps one to two cores busy)")  # fmt: skip
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
