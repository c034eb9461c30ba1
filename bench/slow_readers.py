"""Slow readers: 200 clients that read their answers one byte a second, against ingest and a normal client.

Targets (exit status 1 if one is not met)
    - ingest is not stalled: while the slow readers hang on, ``lost == 0``, no
      drop of any reason, every frame of the load generator received;
    - other clients are not stalled: the normal client's GET p99 with the slow
      readers (after the first ``--report-every`` seconds, while the service
      is still producing their answers: that burst is shown, not judged)
      <= 2 x its p99 without them + 5 ms, and every one of its GETs answered 200;
    - the slow connections do not hold the service for ever: every one of them
      closed by the service within ``--seconds``.

How
    Per scenario (``--scenario loads|page``, default both) a fresh service
    (``--store sqlite`` in a temporary data dir unless ``--store memory``) and
    ``bench/loadgen.py`` at ``--rate`` (50,000) samples/s over ``--servers``
    (100,000) servers for the whole scenario. Once every server has been seen:

    1. baseline, ``--baseline`` (15) s: a normal client GETs
       ``/servers/NAME/loads`` of random servers on one keep-alive connection,
       20 ms apart, each timed from send to the last byte;
    2. ``--clients`` (200) slow readers connect (each with ``SO_RCVBUF`` set to
       ``--rcvbuf`` (2,048) bytes before connecting, so the client's window
       stays small and the service's send buffer fills instead of the kernel
       swallowing the answer), each sends one GET and then reads one byte a
       second; the normal client keeps going, for ``--seconds`` (60) s. In
       ``loads`` each slow reader sends one ``GET /servers/NAME/loads`` (~6 KB:
       the answer fits in the socket buffers at once, and the connection then
       waits idle for its next request); in ``page`` each sends 8 pipelined
       ``GET /servers?limit=10000`` (the inventory's largest page, ~740 KB:
       ~6 MB in all, more than the service's socket send buffer takes, which
       loopback autotunes to ~3.9 MB; the rest waits in the service's
       IOStream buffer, in its RSS).

    Every ``--report-every`` (10) s a line: the slow connections the service
    still holds (its TCP sockets whose peer is a slow reader, from psutil: a
    socket the service closed is gone from it even while the kernel still
    sends its tail), the bytes the slow readers got, the service's RSS, the
    normal client's p50/p99 over the interval, the applied ingest rate, and
    ``/stats`` ``http_refused``. At the end the slow readers close, the
    generator finishes and the loss figures come from ``/stats``.
    ``--serve-flags`` passes extra flags to serve (e.g. ``"--write-timeout 30"``).

Usage
    python bench/slow_readers.py                          # both scenarios, 60 s with slow readers each
    python bench/slow_readers.py --scenario page --seconds 20 --baseline 5    # a short check
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import durable
from loadgen import server_name
from soak import Query, dropped_total, settled

# scenario: (the slow readers' GET, how many of them each sends at once, pipelined)
SCENARIOS = {"loads": ("/servers/{name}/loads", 1), "page": ("/servers?limit=10000", 8)}
NORMAL_PAUSE = 0.02  # seconds between two GETs of the normal client
MIB = 2**20
P99_FACTOR, P99_SLACK_MS = 2.0, 5.0


class SlowReader:
    """One client socket with a small receive buffer that sent a GET and reads its answer a byte at a time."""

    def __init__(self, host: str, port: int, path: str, rcvbuf: int, pipeline: int = 1) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
        self.socket.settimeout(5)
        self.socket.connect((host, port))
        self.port = self.socket.getsockname()[1]
        self.socket.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii") * pipeline)
        self.socket.setblocking(False)
        self.received = 0
        self.ended = ""  # "eof" or "reset", once the client sees it

    def read_byte(self) -> None:
        """Read at most one byte, if one is there; note the end of the stream."""
        if self.ended:
            return
        try:
            data = self.socket.recv(1)
        except BlockingIOError:
            return
        except OSError:
            self.ended = "reset"
            return
        if data:
            self.received += 1
        else:
            self.ended = "eof"

    def close(self) -> None:
        self.socket.close()


def held_by_service(service: harness.Service, ports: set[int]) -> int:
    """How many of the service's TCP sockets have a slow reader's port as their peer."""
    connections = service.ps.net_connections(kind="tcp")
    return sum(1 for c in connections if c.raddr and c.laddr.port == service.port and c.raddr.port in ports)


@dataclass
class Interval:
    """One ``--report-every`` stretch of the slow phase."""

    at: float
    held: int
    slow_bytes: int
    rss_mib: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    gets: int
    applied_per_s: float
    refused: dict[str, int]


@dataclass
class ScenarioResult:
    scenario: str
    baseline_p50: float
    baseline_p99: float
    slow_p50: float
    slow_p99: float
    steady_p99: float  # after the first interval (while the slow readers' answers are being produced)
    errors: int
    all_closed_after: float  # seconds into the slow phase (inf: some still held at the end)
    held_at_end: int
    peak_rss_mib: float
    baseline_rss_mib: float
    lost: int
    dropped: dict[str, int]
    sent: int
    received: int
    warmup: int
    intervals: list[Interval] = field(default_factory=list)


def normal_gets(query: Query, until: float, latencies: list[float], errors: list[int],
                between: Any = None) -> None:
    """The normal client's GETs until ``until`` (monotonic), calling ``between()`` after each."""
    while time.monotonic() < until:
        ms, ok = query.once()
        latencies.append(ms)
        if not ok:
            errors.append(1)
        if between is not None:
            between()
        time.sleep(NORMAL_PAUSE)


def run_scenario(scenario: str, args: argparse.Namespace) -> ScenarioResult:
    path, pipeline = SCENARIOS[scenario]
    flags = ["--store", args.store, *shlex.split(args.serve_flags)]
    total = 10 + args.baseline + args.seconds + 5
    with durable.fresh_data_dir() as data_dir:
        if args.store == "sqlite":
            flags += ["--data-dir", str(data_dir)]
        with harness.Service(max_servers=args.max_servers, flags=flags) as service, \
                harness.Process(harness.loadgen_argv(service.ingest, args.rate, args.servers, total),
                                name="loadgen") as loadgen:
            if loadgen.read_line(timeout=120) != "measuring":
                raise RuntimeError("loadgen did not start")
            service.wait_for(lambda s: s["servers"] >= args.servers, timeout=60)
            query = Query(service.port, args.servers)
            baseline: list[float] = []
            errors: list[int] = []
            baseline_rss = service.rss() / MIB
            normal_gets(query, time.monotonic() + args.baseline, baseline, errors)
            print(f"  baseline: GET /servers/NAME/loads p50 {harness.percentile(baseline, 0.5):.2f} ms, p99 "
                  f"{harness.percentile(baseline, 0.99):.2f} ms over {len(baseline)}; RSS {baseline_rss:,.1f} MiB",
                  flush=True)
            readers = [SlowReader(service.host, service.port, path.format(name=server_name(i)), args.rcvbuf, pipeline)
                       for i in range(args.clients)]
            ports = {reader.port for reader in readers}
            started = time.monotonic()
            slow: list[float] = []
            intervals: list[Interval] = []
            all_closed_after = float("inf")
            steady_from = 0
            next_byte = started
            peak_rss = service.rss() / MIB

            def read_bytes() -> None:
                nonlocal next_byte
                if time.monotonic() >= next_byte:
                    for reader in readers:
                        reader.read_byte()
                    next_byte += 1.0

            try:
                before, before_at = service.stats(), time.monotonic()
                while time.monotonic() - started < args.seconds:
                    mark = len(slow)
                    until = min(started + args.seconds, time.monotonic() + args.report_every)
                    normal_gets(query, until, slow, errors, read_bytes)
                    stats, stats_at = service.stats(), time.monotonic()
                    held = held_by_service(service, ports)
                    rss = service.rss() / MIB
                    peak_rss = max(peak_rss, rss)
                    window = slow[mark:]
                    at = time.monotonic() - started
                    interval = Interval(
                        at=at, held=held, slow_bytes=sum(r.received for r in readers), rss_mib=rss,
                        p50_ms=harness.percentile(window, 0.5), p99_ms=harness.percentile(window, 0.99),
                        max_ms=max(window, default=float("nan")), gets=len(window),
                        applied_per_s=(stats["applied"] - before["applied"]) / (stats_at - before_at),
                        refused={k: v for k, v in (stats.get("http_refused") or {}).items() if v},
                    )  # fmt: skip
                    before, before_at = stats, stats_at
                    intervals.append(interval)
                    if len(intervals) == 1:
                        steady_from = len(slow)
                    print_interval(interval, len(readers))
                    if held == 0 and all_closed_after == float("inf"):
                        all_closed_after = at
                held_at_end = held_by_service(service, ports)
            finally:
                for reader in readers:
                    reader.close()
                query.close()
            generator = harness.last_json_line(loadgen, timeout=total + 60)
            final = service.wait_for(settled, timeout=60)
    return ScenarioResult(
        scenario=scenario, baseline_p50=harness.percentile(baseline, 0.5),
        baseline_p99=harness.percentile(baseline, 0.99), slow_p50=harness.percentile(slow, 0.5),
        slow_p99=harness.percentile(slow, 0.99), steady_p99=harness.percentile(slow[steady_from:], 0.99),
        errors=len(errors), all_closed_after=all_closed_after,
        held_at_end=held_at_end, peak_rss_mib=peak_rss, baseline_rss_mib=baseline_rss, lost=final["lost"],
        dropped=dropped_total(final), sent=generator["sent"], received=final["received"],
        warmup=generator["warmup_sent"], intervals=intervals,
    )  # fmt: skip


def print_interval(row: Interval, clients: int) -> None:
    print(f"    t+{row.at:5.1f} s: service holds {row.held} of {clients} slow connections; slow readers got "
          f"{row.slow_bytes:,} B; RSS {row.rss_mib:,.1f} MiB; normal GET p50/p99/max {row.p50_ms:.2f}/{row.p99_ms:.2f}/{row.max_ms:.0f} ms "
          f"over {row.gets}; applied {row.applied_per_s:,.0f}/s; http_refused {row.refused or {}}", flush=True)


def judge(result: ScenarioResult, args: argparse.Namespace) -> bool:
    ok = True
    complete = result.sent <= result.received <= result.sent + result.warmup
    ok &= durable.verdict_all(
        f"{result.scenario}: ingest not stalled", result.lost == 0 and not result.dropped and complete,
        f"lost {result.lost}, dropped {result.dropped or 0}, received {result.received:,} of {result.sent:,} "
        f"(+{result.warmup} warm-up)")
    bound = P99_FACTOR * result.baseline_p99 + P99_SLACK_MS
    ok &= durable.verdict_all(
        f"{result.scenario}: other clients not stalled", result.steady_p99 <= bound and result.errors == 0,
        f"normal GET p99 {result.steady_p99:.2f} ms with slow readers after the first {args.report_every:g} s "
        f"({result.slow_p99:.2f} ms with them), {result.baseline_p99:.2f} ms without (bound {bound:.2f} ms); p50 "
        f"{result.slow_p50:.2f} / {result.baseline_p50:.2f} ms; {result.errors} errors")
    closed = result.held_at_end == 0
    shown = f"{result.all_closed_after:.0f} s" if closed else f"not within {args.seconds:g} s"
    ok &= durable.verdict_all(
        f"{result.scenario}: slow connections closed by the service", closed,
        f"all {args.clients} closed after {shown} ({result.held_at_end} still held at the end); RSS "
        f"{result.baseline_rss_mib:,.1f} MiB before, peak {result.peak_rss_mib:,.1f} MiB")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all", help="default all")
    parser.add_argument("--clients", type=int, default=200, help="slow readers (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the slow phase (default %(default)s)")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds without slow readers (default %(default)s)")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds per line (default %(default)s)")
    parser.add_argument("--rcvbuf", type=int, default=2048, help="slow readers' SO_RCVBUF (default %(default)s)")
    parser.add_argument("--rate", type=int, default=50_000, help="ZeroMQ ingest, samples/s (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite", help="default %(default)s")
    parser.add_argument("--serve-flags", default="", help="extra serve flags, one string (default none)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 1000 or not 0 < args.seconds <= 3600 or args.baseline <= 0 or args.report_every <= 0:
        parser.error("need 1 <= --clients <= 1000, 0 < --seconds <= 3600, --baseline > 0, --report-every > 0")
    harness.print_header(f"slow readers: {args.clients} clients reading a byte a second, {args.rate:,} samples/s "
                         f"of ingest, a normal client")
    ok = True
    for scenario in SCENARIOS if args.scenario == "all" else (args.scenario,):
        path, pipeline = SCENARIOS[scenario]
        print(f"-- {scenario}: each slow reader sends {pipeline} x GET {path.format(name='NAME')} at once "
              f"(SO_RCVBUF {args.rcvbuf} B)", flush=True)
        ok &= judge(run_scenario(scenario, args), args)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
