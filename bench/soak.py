"""Soak: a real ``servertrack serve`` under 100,000 servers at 1 Hz for ``--minutes`` (60; 10 for the CI-sized run).

Targets (exit status 1 if one is not met)
    - no loss: ``lost == 0``, no drop of any reason, and every frame the load
      generator sent in its measured phase received (``sent <= received <=
      sent + warm-up frames``: a few warm-up frames may go to the PUB slow
      joiner, which is not the collector's doing);
    - RSS flat: (RSS at the end - RSS at minute ``--flat-from``) / RSS at
      minute ``--flat-from`` < 2 %;
    - GET answers throughout: every query of the run answered 200.
    Figures without a target, every minute: batch apply p50/p99/max, query
    p50/p99/max, RSS, service CPU, received/applied rates, store health.

What "RSS flat after the first hour's fill" can mean in 60 minutes
    The aggregator's rings are pre-allocated numpy arrays, slot-major: a new
    minute makes the pages of one more minute slot of every server resident
    (~2.4 MB for 100,000 servers), a new hour those of an hour slot. Left
    alone, RSS therefore grows by design for the first hour (minute ring) and
    in small steps for a day (hour ring), and a 60-minute run could not tell
    that from a leak. So by default (``--prefill``) the service first gets
    the first day's fill over ``POST /loads`` (``durable.fill_windows``: one
    sample per server for each of the 24 hours and of the last 60 minutes,
    in time order), which touches 24 of the 25 hour slots and 60 of the 61
    minute slots of every server, before the soak starts; the seconds ring
    fills in the first minute of ingest. After that nothing of the rings
    should become resident, except the spare hour slot at the first hour
    boundary of the run (~2.4 MB, ~0.5 % of RSS). RSS is then compared
    between minute ``--flat-from`` (10 for runs of 30 minutes or more,
    otherwise a third of the run: 3 for ``--minutes 10``; the minutes before
    it let the allocator, SQLite's page cache, the batch log and the first
    checkpoints settle) and the end, and a least-squares slope over the same
    minutes is printed (MiB/h). With ``--no-prefill`` the minute ring fills
    during the run; ``--flat-from`` then defaults to 62 and a run shorter
    than that cannot judge flatness (the figure is printed, marked so).
    What a 60-minute run cannot show: a leak slower than ~2 % an hour, or
    anything tied to the day boundary, retention purges of minute history
    (24 h) or eviction of 24 h-silent servers.

How
    One service (``--store sqlite`` in a fresh temporary ``--data-dir``,
    removed at the end, as production runs; ``--store memory`` allowed), the
    prefill, then ``bench/loadgen.py`` at ``--rate`` (100,000) frames/s over
    ``--servers`` (100,000) servers for the whole run (it bounds itself with
    ``--seconds``). Meanwhile, from this process:

    - ``GET /stats`` every ``--poll`` (0.5) s; a poll whose ``applied`` moved
      saw a new batch land and records its ``last_batch_seconds`` and
      ``last_batch_size`` (the per-batch apply series; at a 0.5 s poll and one
      batch a second a batch is rarely missed);
    - ``--queries`` (200) per minute of ``GET /servers/NAME/loads`` for random
      servers, evenly spread over the minute, on one keep-alive connection,
      each timed from send to the last byte read;
    - at every minute mark: RSS (psutil), the service's and the generator's
      CPU over the minute, ``/stats`` counters (received, applied, dropped by
      reason, lost, pending) and the store's health (``store``, failures,
      queued jobs, checkpoints), the machine's load average.

    Output (written every minute, so a partial run leaves its figures):
    ``OUT-minutes.csv`` (one row a minute), ``OUT-batches.csv`` (one row per
    batch seen) and ``OUT.png`` (RSS MiB over time; batch apply ms and the
    minute's query p99 over time), where OUT is ``--out``. The PNG needs
    matplotlib (``pip install -e '.[bench]'``); without it the CSVs are still
    written and a line says so. Everything runs on 127.0.0.1; the service and
    the generator are stopped in a ``finally``.

Usage
    python bench/soak.py --minutes 60                   # the soak (~62 minutes with the prefill)
    python bench/soak.py --minutes 10                   # the CI-sized variant
    python bench/soak.py --minutes 2 --out /tmp/soak-check   # a quick check of the script
    python bench/soak.py --minutes 10 --store memory --no-prefill
    python bench/soak.py --replot /tmp/soak-check --minutes 2     # the PNG again from the CSVs
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import csv
import dataclasses
import http.client
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import durable
from loadgen import server_name

TARGET_RSS_GROWTH_PERCENT = 2.0
MIB = 2**20
HARD_LIMIT_MINUTES = 24 * 60
PREFILL_PATIENCE = 300.0  # seconds a prefill body may be refused (503, queue full) on a busy machine


@dataclass
class Batch:
    """One batch seen landing: when (seconds since the soak started), its apply time, its size."""

    at: float
    seconds: float
    size: int


@dataclass
class Minute:
    """One minute of the soak (the CSV row)."""

    minute: int
    elapsed_s: float
    rss_mib: float
    service_cpu_percent: float
    loadgen_cpu_percent: float
    received: int
    applied: int
    received_per_s: float
    applied_per_s: float
    lost: int
    dropped: int
    dropped_by_reason: str
    pending: int
    batches: int
    apply_p50_ms: float
    apply_p99_ms: float
    apply_max_ms: float
    queries: int
    query_errors: int
    query_p50_ms: float
    query_p99_ms: float
    query_max_ms: float
    store: str
    store_failures: int
    store_queued_jobs: int
    checkpoints: int
    load_average: float


MINUTE_FIELDS = [f.name for f in dataclasses.fields(Minute)]
BATCH_FIELDS = [f.name for f in dataclasses.fields(Batch)]


def dropped_total(stats: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, int]:
    """``/stats`` ``dropped``, the reasons with a count only; with ``before``, those since then."""
    earlier = (before or {}).get("dropped") or {}
    counts = {reason: count - earlier.get(reason, 0) for reason, count in (stats.get("dropped") or {}).items()}
    return {reason: count for reason, count in counts.items() if count}


def settled(stats: dict[str, Any]) -> bool:
    """Whether everything received has been applied or dropped (a batch being applied is not ``pending``)."""
    return stats["pending"] == 0 and stats["received"] == stats["applied"] + sum(dropped_total(stats).values())


def new_batch(previous: dict[str, Any] | None, current: dict[str, Any], at: float) -> Batch | None:
    """The batch ``current`` shows if one landed since ``previous`` (``applied`` moved), else None."""
    if previous is None or current["applied"] == previous["applied"]:
        return None
    return Batch(round(at, 3), current["last_batch_seconds"], current["last_batch_size"])


def flat_from_default(minutes: int, prefill: bool) -> int:
    """The minute RSS is compared from: after the settling minutes (with the prefill) or after the minute ring's fill."""
    if not prefill:
        return 62
    return 10 if minutes >= 30 else max(1, minutes // 3)


def rss_growth(rows: list[Minute], flat_from: int) -> tuple[float, float, float] | None:
    """``(growth %, RSS at flat_from MiB, slope MiB/h)`` from minute ``flat_from`` to the last row; None if the
    run did not reach past it."""
    base = [row for row in rows if row.minute == flat_from]
    later = [row for row in rows if row.minute >= flat_from]
    if not base or len(later) < 2:
        return None
    start, end = base[0].rss_mib, rows[-1].rss_mib
    xs = [row.elapsed_s / 3600.0 for row in later]
    ys = [row.rss_mib for row in later]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    return 100.0 * (end - start) / start, start, slope


class Query:
    """``GET /servers/NAME/loads`` of random servers on one keep-alive connection, timed."""

    def __init__(self, port: int, servers: int, seed: int = 11) -> None:
        self.client = durable.KeepAlive(port, timeout=10)
        self.servers = servers
        self.rng = random.Random(seed)

    def once(self) -> tuple[float, bool]:
        """One timed query: ``(milliseconds, answered 200)``; an error counts its time and False."""
        path = f"/servers/{server_name(self.rng.randrange(self.servers))}/loads"
        started = time.perf_counter()
        try:
            status, _ = self.client.request("GET", path)
        except (OSError, http.client.HTTPException):
            status = 0
        return (time.perf_counter() - started) * 1000.0, status == 200

    def close(self) -> None:
        self.client.close()


@dataclass
class Series:
    """What the soak has measured so far, and where it writes it."""

    out: str
    flat_from: int = 10  # the minute RSS growth is judged from: the PNG shades the 2 % above it
    rows: list[Minute] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    plot_note: str = ""
    # /stats before the generator started (with the prefill's samples over HTTP and its retried 503s)
    before: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path, fields in ((self.minutes_csv, MINUTE_FIELDS), (self.batches_csv, BATCH_FIELDS)):
            with open(path, "w", newline="") as file:
                csv.writer(file).writerow(fields)

    @classmethod
    def read(cls, out: str, flat_from: int) -> Series:
        """The series a run wrote under ``out`` (to draw its PNG again: ``--replot``); its CSVs are left as
        they are."""
        series = cls.__new__(cls)
        series.out, series.flat_from, series.plot_note, series.before = out, flat_from, "", {}
        types = {f.name: f.type for f in dataclasses.fields(Minute)}
        with open(series.minutes_csv, newline="") as file:
            series.rows = [Minute(**{k: v if types[k] == "str" else float(v) if types[k] == "float" else int(v)
                                     for k, v in row.items()}) for row in csv.DictReader(file)]
        with open(series.batches_csv, newline="") as file:
            series.batches = [Batch(float(row["at"]), float(row["seconds"]), int(row["size"]))
                              for row in csv.DictReader(file)]
        return series

    @property
    def minutes_csv(self) -> str:
        return self.out + "-minutes.csv"

    @property
    def batches_csv(self) -> str:
        return self.out + "-batches.csv"

    @property
    def png(self) -> str:
        return self.out + ".png"

    def add_minute(self, row: Minute, batches: list[Batch]) -> None:
        """Append the minute and its batches to the CSVs and redraw the PNG."""
        self.rows.append(row)
        self.batches.extend(batches)
        with open(self.minutes_csv, "a", newline="") as file:
            csv.writer(file).writerow([getattr(row, name) for name in MINUTE_FIELDS])
        with open(self.batches_csv, "a", newline="") as file:
            csv.writer(file).writerows([[getattr(b, name) for name in BATCH_FIELDS] for b in batches])
        self.plot()

    def plot(self) -> None:
        """RSS over time; batch apply and the minutes' query p99 over time (PNG; skipped without matplotlib)."""
        if self.plot_note:
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.plot_note = "no PNG: matplotlib is not installed (pip install -e '.[bench]'); the CSVs are written"
            print(f"  {self.plot_note}", flush=True)
            return
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
        minutes = [row.elapsed_s / 60.0 for row in self.rows]
        rss = [row.rss_mib for row in self.rows]
        top.plot(minutes, rss, marker=".", color="tab:blue")
        base = [row.rss_mib for row in self.rows if row.minute == self.flat_from]
        if base:  # the target's band; and never a scale so fine that noise looks like growth
            top.axhspan(base[0], base[0] * (1 + TARGET_RSS_GROWTH_PERCENT / 100), color="tab:green", alpha=0.12,
                        label=f"< {TARGET_RSS_GROWTH_PERCENT:g} % above minute {self.flat_from}")
            top.legend(loc="lower right", fontsize="small")
        low, high = top.get_ylim()
        top.set_ylim(min(low, min(rss) * 0.97), max(high, max(rss) * 1.03))
        top.set_ylabel("service RSS (MiB)")
        top.set_title(os.path.basename(self.out))
        top.grid(True, alpha=0.3)
        bottom.plot([b.at / 60.0 for b in self.batches], [b.seconds * 1000.0 for b in self.batches],
                    linewidth=0.6, color="tab:orange", label="batch apply (each batch)")
        bottom.plot(minutes, [row.apply_p99_ms for row in self.rows], marker=".", color="tab:red",
                    label="batch apply p99 (minute)")
        bottom.plot(minutes, [row.query_p99_ms for row in self.rows], marker="x", color="tab:green",
                    label="GET /servers/NAME/loads p99 (minute)")
        bottom.set_ylabel("ms")
        bottom.set_xlabel("minutes since the soak started")
        bottom.grid(True, alpha=0.3)
        bottom.legend(loc="upper right", fontsize="small")
        figure.tight_layout()
        figure.savefig(self.png, dpi=90)
        plt.close(figure)


class Soak:
    """The measuring loop over one running service and generator."""

    def __init__(self, service: harness.Service, loadgen: harness.Process, args: argparse.Namespace,
                 series: Series) -> None:
        self.service = service
        self.loadgen = loadgen
        self.args = args
        self.series = series
        self.query = Query(service.port, args.servers)

    def run(self) -> dict[str, Any]:
        """Measure until the run's minutes are over; return the last ``/stats``."""
        args, service = self.args, self.service
        started = time.monotonic()
        query_every = 60.0 / args.queries if args.queries else float("inf")
        next_poll, next_query, next_minute = started, started + query_every / 2, started + 60.0
        previous: dict[str, Any] | None = None
        minute_start = (started, service.cpu_seconds(), self.loadgen.cpu_seconds(), service.stats())
        batches: list[Batch] = []
        queries: list[tuple[float, bool]] = []
        minute = 0
        try:
            while minute < args.minutes:
                now = time.monotonic()
                if now >= next_minute:
                    stats = service.stats()
                    minute += 1
                    row = self.minute_row(minute, now - started, minute_start, stats, batches, queries)
                    self.series.add_minute(row, batches)
                    print_minute(row)
                    minute_start = (now, service.cpu_seconds(), self.loadgen.cpu_seconds(), stats)
                    batches, queries = [], []
                    next_minute += 60.0
                    continue
                if now >= next_poll:
                    stats = service.stats()
                    batch = new_batch(previous, stats, now - started)
                    if batch is not None:
                        batches.append(batch)
                    previous = stats
                    next_poll += args.poll
                if now >= next_query:
                    queries.append(self.query.once())
                    next_query += query_every
                time.sleep(max(0.0, min(next_poll, next_query, next_minute) - time.monotonic()))
        finally:
            self.query.close()
        return service.stats()

    def minute_row(self, minute: int, elapsed: float, start: tuple[float, float, float, dict[str, Any]],
                   stats: dict[str, Any], batches: list[Batch], queries: list[tuple[float, bool]]) -> Minute:
        at, service_cpu, loadgen_cpu, before = start
        span = max(1e-9, time.monotonic() - at)
        apply_ms = [b.seconds * 1000.0 for b in batches]
        ok_ms = [ms for ms, ok in queries]
        dropped = dropped_total(stats, self.series.before)  # since the generator started
        store = durable.store_of(stats)
        try:
            loadgen_now = self.loadgen.cpu_seconds()
        except harness.psutil.Error:  # the generator has just ended
            loadgen_now = loadgen_cpu
        return Minute(
            minute=minute, elapsed_s=round(elapsed, 1), rss_mib=round(self.service.rss() / MIB, 1),
            service_cpu_percent=round(100.0 * (self.service.cpu_seconds() - service_cpu) / span, 1),
            loadgen_cpu_percent=round(100.0 * (loadgen_now - loadgen_cpu) / span, 1),
            received=stats["received"], applied=stats["applied"],
            received_per_s=round((stats["received"] - before["received"]) / span),
            applied_per_s=round((stats["applied"] - before["applied"]) / span),
            lost=stats["lost"] - self.series.before.get("lost", 0), dropped=sum(dropped.values()),
            dropped_by_reason=";".join(f"{k}={v}" for k, v in sorted(dropped.items())), pending=stats["pending"],
            batches=len(batches), apply_p50_ms=round(harness.percentile(apply_ms, 0.5), 2),
            apply_p99_ms=round(harness.percentile(apply_ms, 0.99), 2),
            apply_max_ms=round(max(apply_ms, default=float("nan")), 2), queries=len(queries),
            query_errors=sum(1 for _, ok in queries if not ok),
            query_p50_ms=round(harness.percentile(ok_ms, 0.5), 2), query_p99_ms=round(harness.percentile(ok_ms, 0.99), 2),
            query_max_ms=round(max(ok_ms, default=float("nan")), 2), store=str(store.get("store", "none")),
            store_failures=durable.store_failures(stats), store_queued_jobs=durable.queued_jobs(stats),
            checkpoints=durable.store_counter(stats, "checkpoints"), load_average=round(os.getloadavg()[0], 2),
        )  # fmt: skip


def print_minute(row: Minute) -> None:
    print(
        f"  minute {row.minute:3d}: RSS {row.rss_mib:,.1f} MiB, CPU {row.service_cpu_percent:.0f}% "
        f"(loadgen {row.loadgen_cpu_percent:.0f}%), applied {row.applied_per_s:,.0f}/s, lost {row.lost}, "
        f"dropped {row.dropped}, pending {row.pending:,}; apply p50/p99/max {row.apply_p50_ms:.0f}/"
        f"{row.apply_p99_ms:.0f}/{row.apply_max_ms:.0f} ms over {row.batches} batches; GET p50/p99/max "
        f"{row.query_p50_ms:.1f}/{row.query_p99_ms:.1f}/{row.query_max_ms:.1f} ms over {row.queries} "
        f"({row.query_errors} errors); store {row.store} (failures {row.store_failures}, queued "
        f"{row.store_queued_jobs}, checkpoints {row.checkpoints}); load {row.load_average:.2f}",
        flush=True,
    )


def report(series: Series, final: dict[str, Any], generator: dict[str, Any], args: argparse.Namespace) -> bool:
    """Print the run's figures and verdicts; whether every target is met."""
    rows = series.rows
    print(f"-- {len(rows)} of {args.minutes} minutes measured; series in {series.minutes_csv}, "
          f"{series.batches_csv}" + ("" if series.plot_note else f", {series.png}"))
    apply_ms = [b.seconds * 1000.0 for b in series.batches]
    query_ms = [row.query_p99_ms for row in rows]
    print(f"  batch apply over the run: p50 {harness.fmt(harness.percentile(apply_ms, 0.5))} ms, p99 "
          f"{harness.fmt(harness.percentile(apply_ms, 0.99))} ms, max {harness.fmt(max(apply_ms, default=float('nan')))}"
          f" ms over {len(apply_ms):,} batches; per-minute p99 median {harness.fmt(harness.median([r.apply_p99_ms for r in rows]))}"
          f" ms, worst {harness.fmt(max((r.apply_p99_ms for r in rows), default=float('nan')))} ms")
    print(f"  GET /servers/NAME/loads: per-minute p50 median {harness.fmt(harness.median([r.query_p50_ms for r in rows]))}"
          f" ms; per-minute p99 median {harness.fmt(harness.median(query_ms))} ms, worst "
          f"{harness.fmt(max(query_ms, default=float('nan')))} ms; {sum(r.queries for r in rows):,} queries")
    sent, warmup = generator.get("sent", 0), generator.get("warmup_sent", 0)
    before = series.before
    dropped = dropped_total(final, before)
    lost = final["lost"] - before.get("lost", 0)
    print(f"  loadgen: sent {sent:,} (+{warmup} warm-up) at {generator.get('rate', 0):,.0f} frames/s, "
          f"{generator.get('cpu_percent', 0):.0f}% of one core" + (" [stopped early]" if generator.get("stopped_early") else ""))
    received = final["received"] - before.get("received", 0)
    print(f"  service during the soak: received {received:,}, applied {final['applied'] - before.get('applied', 0):,}, "
          f"lost {lost:,}, dropped {dropped or 0}; at the end servers {final['servers']:,}, store "
          f"{durable.store_of(final).get('store', 'none')}")
    ok = True
    clean = lost == 0 and not dropped and 0 < sent <= received <= sent + warmup
    ok &= durable.verdict_all("no loss", clean, f"lost {lost}, dropped {sum(dropped.values())}, received "
                              f"{received:,} of {sent:,} (+{warmup} warm-up) frames sent")
    errors = sum(r.query_errors for r in rows)
    ok &= durable.verdict_all("GET answers throughout", errors == 0 and bool(rows),
                              f"{errors} of {sum(r.queries for r in rows):,} queries not answered 200")
    growth = rss_growth(rows, args.flat_from)
    if growth is None:
        print(f"  RSS flat: cannot judge, the run did not go past minute {args.flat_from} (--flat-from): NOT MET")
        return False
    percent, base, slope = growth
    label = f"RSS growth from minute {args.flat_from} ({base:,.1f} MiB) to the end ({rows[-1].rss_mib:,.1f} MiB)"
    ok &= harness.verdict(label, percent, TARGET_RSS_GROWTH_PERCENT, "%", False)
    print(f"  RSS slope over the same minutes: {slope:+,.1f} MiB/h")
    return ok


def soak(args: argparse.Namespace) -> bool:
    flags = ["--store", args.store]
    with durable.fresh_data_dir() as data_dir:
        if args.store == "sqlite":
            flags += ["--data-dir", str(data_dir)]
        with harness.Service(max_servers=args.max_servers, flags=flags) as service:
            print(f"  service {service.url} ingest {service.ingest} ({args.store}"
                  f"{f' in {data_dir}' if args.store == 'sqlite' else ''}); idle RSS {service.rss() / MIB:,.1f} MiB")
            series = Series(args.out, flat_from=args.flat_from)
            if args.prefill:
                accepted, seconds = durable.fill_windows(service, args.servers, patience=PREFILL_PATIENCE)
                idle = service.wait_for(settled, timeout=PREFILL_PATIENCE)
                if not settled(idle):
                    raise RuntimeError(f"the prefill was not applied within {PREFILL_PATIENCE:.0f} s: {idle}")
                print(f"  prefill: {accepted:,} samples over POST /loads in {seconds:.0f} s; RSS "
                      f"{service.rss() / MIB:,.1f} MiB, servers {idle['servers']:,}; 503s retried meanwhile: "
                      f"{idle['dropped']}", flush=True)
            series.before = service.stats()
            seconds = args.minutes * 60 + 5  # the generator outlasts the last minute mark
            with harness.Process(harness.loadgen_argv(service.ingest, args.rate, args.servers, seconds),
                                 name="loadgen") as loadgen:
                line = loadgen.read_line(timeout=120)
                if line != "measuring":
                    raise RuntimeError(f"unexpected line from loadgen: {line!r}")
                # without the prefill the first queries would ask for servers not seen yet (404)
                service.wait_for(lambda s: s["servers"] >= args.servers, timeout=60)
                Soak(service, loadgen, args, series).run()
                generator = harness.last_json_line(loadgen, timeout=seconds + 120)
            final = service.wait_idle(timeout=60)
    return report(series, final, generator, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=60, help="length of the soak (default %(default)s; 10 for CI)")
    parser.add_argument("--rate", type=int, default=100_000, help="frames per second (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite",
                        help="serve --store; sqlite in a fresh temporary data dir (default %(default)s)")
    parser.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=True,
                        help="first post the first day's fill so the rings' pages are resident (default on)")
    parser.add_argument("--flat-from", type=int, default=None,
                        help="minute RSS growth is measured from (default 10, a third of runs under 30 minutes, "
                             "62 with --no-prefill)")
    parser.add_argument("--queries", type=int, default=200, help="GETs per minute (default %(default)s)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between /stats polls (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    parser.add_argument("--out", default=None, help="prefix of the CSV and PNG files (default /tmp/soak-DATE-TIME)")
    parser.add_argument("--replot", metavar="OUT", help="only draw OUT.png again from OUT's CSVs (no run)")
    args = parser.parse_args()
    if args.replot:
        flat_from = args.flat_from if args.flat_from is not None else flat_from_default(args.minutes, args.prefill)
        series = Series.read(args.replot, flat_from)
        series.plot()
        print(series.plot_note or f"{series.png}: {len(series.rows)} minutes, {len(series.batches):,} batches")
        return 0
    if not 1 <= args.minutes <= HARD_LIMIT_MINUTES or args.rate < 1 or args.servers < 1 or args.poll <= 0:
        parser.error(f"need 1 <= --minutes <= {HARD_LIMIT_MINUTES}, --rate >= 1, --servers >= 1, --poll > 0")
    if args.flat_from is None:
        args.flat_from = flat_from_default(args.minutes, args.prefill)
    if args.out is None:
        args.out = time.strftime("/tmp/soak-%Y%m%d-%H%M%S", time.gmtime())
    harness.print_header(f"soak: {args.servers:,} servers, {args.rate:,} samples/s, {args.minutes} minutes, "
                         f"--store {args.store}{'' if args.prefill else ', no prefill'}")
    print(f"  started {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC; RSS judged from minute {args.flat_from}",
          flush=True)
    ok = soak(args)
    print(f"  ended {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC")
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
