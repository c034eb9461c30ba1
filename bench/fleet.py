"""A fleet of two collectors on one three-master Redis Cluster: loss, cross-collector reads, Redis cost.

What runs (everything on 127.0.0.1, started and stopped by this script)
    Part 1+2, per run: a fresh three-master Redis Cluster (``tests/redis_servers.RedisClusterServers``:
    ``redis-server`` processes in a temp dir, ``redis-cli --cluster create``) and two
    ``servertrack serve --store redis+cluster://... --data-dir <own temp dir> --collector-id a|b
    --share-every S`` (``harness.Service``). Two sender processes (``loadgen.generate``: pre-packed
    protocol-v1 frames paced in 10 ms slices, the machinery of ``bench/loadgen.py``) publish
    ``--servers / 2`` servers each at 1 Hz over ZeroMQ, one to each collector: servers
    ``srv-000000 .. srv-(N/2-1)`` belong to collector ``a``, the rest to ``b``. The load lasts
    ``--settle + --seconds``; the steady window is the last ``--seconds``.

    - loss: per collector, frames sent (incl. warm-up) vs ``/stats`` ``received`` (ZeroMQ never
      delivered), ``lost`` (seq gaps), ``dropped`` (by reason), ``applied``;
    - reads under load: ``--reads`` requests ``GET /servers/NAME/loads`` (keep-alive ``http.client``)
      spread evenly over the steady window, each for a random server, sent to the collector that
      does NOT own it; p50 / p99 / max of the 200s, and the count of other statuses;
    - the floor under the same load (``--floor``, a process of its own so as not to share the reader's
      interpreter): as many rounds, each ``RedisReads.read_fleet`` of a random server straight from the
      store (the round trip and decoding a non-owner's read holds, no collector in the way) and one
      ``GET /healthz`` (the cheapest route: the wait for a collector's loop and the machine) on either
      collector; p50 / p99 of each. A read through a collector cannot be quicker than these;
    - after the load: both idle, then one share interval (+1 s) passes; ``GET /servers`` paged
      (limit 10,000) on each collector must count every server; for ``--check`` random servers the
      minute window's sample count (sum over its buckets) is read from the owner and right after from
      the non-owner: they must be equal;
    - Redis: ``INFO commandstats`` calls (all commands but INFO), ``INFO cpu`` (used_cpu_sys +
      used_cpu_user) summed over the three masters, over the steady window, per sample received in
      it (``received`` moves continuously; ``applied`` in once-a-second batches); ``used_memory``
      summed over masters, from before the load to after the check, per server;
    - collector CPU (psutil user+system of each serve) over the steady window per sample it received.

    Part 3, per run: ONE collector, ``--single-servers`` (default ``--servers / 2``) at 1 Hz, same
    settle/seconds, with ``--store redis+cluster://`` (a fresh cluster) and with ``--store sqlite``
    (order alternating between runs): collector CPU seconds per sample over the steady window and the
    ratio Redis / SQLite.

    Every figure is printed for every run and as the median of ``--runs``; a summary block at the
    end (``--json FILE`` writes it as JSON too). If a run loses samples, the summary says so; with
    ``--fallback`` the two-collector part is then repeated at lower rates (x0.7 each time, one run
    each) until one loses nothing, and that rate is reported as the highest measured at 0 loss.

Bounds
    Every load is bounded (rate x seconds frames; the sender stops at seconds x 1.5 + 2 s whatever
    happens), the reads are bounded in count, every wait has a timeout. Ctrl-C / SIGTERM stop
    everything: serve processes, senders and redis-server processes are stopped in ``finally``
    blocks and the temp dirs removed.

Usage
    python bench/fleet.py                                      # 100,000 servers, 30 s, 3 runs
    python bench/fleet.py --servers 2000 --seconds 5 --runs 1  # a smoke run
"""

from __future__ import annotations

import harness  # noqa: I001  first: puts this checkout on sys.path

import argparse
import http.client
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import loadgen

from tests.redis_servers import RedisClusterServers

READ_TARGET_MS = 5.0
PAGE = 10_000
POLL_SECONDS = 0.5
RECHECK_SECONDS = (5.0, 20.0)  # unequal minute windows are read again this long after the check
KEEP_UP = 0.03  # behind by more than this share of the window (or 1 s of load): the collector fell behind


def keeps_up(received_rate: float, sent_rate: float, window: float) -> bool:
    """In ``window`` seconds the collector received all but max(KEEP_UP x window, 1 s) of the load sent."""
    return (sent_rate - received_rate) * window <= sent_rate * max(KEEP_UP * window, 1.0)
OWNER_EVERY = 5  # one read in 5 goes to the owning collector (its latency is shown apart)


# -- the sender subprocess (loadgen.generate with a first server index) ---------------------------------


def sender_main(argv: list[str]) -> int:
    """``fleet.py --sender ENDPOINT RATE SERVERS SECONDS FIRST``: one paced ZeroMQ sender, JSON result."""
    endpoint, rate, servers, seconds, first = argv[0], int(argv[1]), int(argv[2]), float(argv[3]), int(argv[4])
    signal.signal(signal.SIGTERM, loadgen._request_stop)
    signal.signal(signal.SIGINT, loadgen._request_stop)
    result = loadgen.generate(endpoint, rate, servers, seconds, first=first, should_stop=loadgen._stop_requested,
                              on_start=lambda: print(loadgen.START_LINE, flush=True))
    print(json.dumps(asdict(result)), flush=True)
    return 0


def floor_main(argv: list[str]) -> int:
    """``fleet.py --floor STORE_URL HTTP_URL,HTTP_URL SERVERS COUNT DELAY SECONDS``: after ``DELAY`` s,
    ``COUNT`` rounds spread over ``SECONDS`` s, each a direct store read of a random server's windows and a
    ``GET /healthz`` on one of the collectors (alternating); JSON of the latencies' p50 / p99 in ms."""
    from servertrack.common.buckets import HOURS_SHOWN, MINUTES_SHOWN
    from servertrack.store.redis_store import RedisReads, connect
    from servertrack.store.store_url import parse_store

    store_url, urls, servers, count = argv[0], argv[1].split(","), int(argv[2]), int(argv[3])
    delay, seconds = float(argv[4]), float(argv[5])
    target = parse_store(store_url)
    assert not isinstance(target, str), store_url
    client = connect(target)
    reads = RedisReads(client, 3600.0, time.time, collector="bench")  # "bench" shares nothing: every part read
    connections = [http.client.HTTPConnection(*url.split("://", 1)[1].rsplit(":", 1), timeout=30) for url in urls]
    rng = random.Random(7)
    store_ms: list[float] = []
    healthz_ms: list[float] = []
    errors = 0
    print(loadgen.START_LINE, flush=True)
    start = time.monotonic() + delay
    interval = seconds / max(1, count)
    try:
        for k in range(count):
            wait = start + k * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = time.time()
            minute, hour = int(now // 60), int(now // 3600)
            spans = [(60, minute - MINUTES_SHOWN + 1, MINUTES_SHOWN), (3600, hour - HOURS_SHOWN + 1, HOURS_SHOWN)]
            name = loadgen.server_name(rng.randrange(servers))
            started = time.perf_counter()
            try:
                reads.read_fleet(name, spans, None)
                store_ms.append((time.perf_counter() - started) * 1000)
            except Exception:  # noqa: BLE001 - a failed probe is counted, the bench goes on
                errors += 1
            connection = connections[k % len(connections)]
            started = time.perf_counter()
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    healthz_ms.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
    finally:
        for connection in connections:
            connection.close()
        client.close()
    print(json.dumps({"store_p50_ms": harness.percentile(store_ms, 0.5),
                      "store_p99_ms": harness.percentile(store_ms, 0.99), "store_reads": len(store_ms),
                      "healthz_p50_ms": harness.percentile(healthz_ms, 0.5),
                      "healthz_p99_ms": harness.percentile(healthz_ms, 0.99), "healthz_gets": len(healthz_ms),
                      "errors": errors}), flush=True)
    return 0


def floor_probe(store_url: str, services: list[harness.Service], servers: int, count: int, delay: float,
                seconds: float) -> harness.Process:
    """The ``--floor`` process (see ``floor_main``); it prints a start line, then its JSON when done."""
    argv = [harness.PYTHON, os.path.abspath(__file__), "--floor", store_url, ",".join(s.url for s in services),
            str(servers), str(count), str(delay), str(seconds)]
    return harness.Process(argv, name="floor")


def sender(endpoint: str, rate: int, servers: int, seconds: float, first: int) -> harness.Process:
    argv = [harness.PYTHON, os.path.abspath(__file__), "--sender", endpoint, str(rate), str(servers),
            str(seconds), str(first)]
    return harness.Process(argv, name=f"sender@{first}")


# -- Redis INFO over the masters -------------------------------------------------------------------------


WRITE_COMMANDS = {"hset", "expire", "del", "set", "eval", "evalsha", "sadd", "srem", "zadd", "zrem",
                  "zremrangebyscore", "hdel", "getdel", "unlink"}
READ_COMMANDS = {"hgetall", "exists", "hget", "hkeys", "hmget", "get", "smembers", "zrangebyscore", "scan"}


def redis_totals(cluster: RedisClusterServers) -> dict[str, float]:
    """Calls (all commands but INFO; and split: writes, reads), CPU seconds and used_memory, over the masters."""
    calls = cpu = memory = writes = reads = 0.0
    for node in cluster.nodes:
        client = node.client()
        try:
            for name, stats in client.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                if command != "info":
                    calls += stats["calls"]
                writes += stats["calls"] if command in WRITE_COMMANDS else 0
                reads += stats["calls"] if command in READ_COMMANDS else 0
            info = client.info("cpu")
            cpu += info["used_cpu_sys"] + info["used_cpu_user"]
            memory += client.info("memory")["used_memory"]
        finally:
            client.close()
    return {"calls": calls, "cpu": cpu, "memory": memory, "writes": writes, "reads": reads}


def redis_commands(cluster: RedisClusterServers) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in cluster.nodes:
        client = node.client()
        try:
            for name, stats in client.info("commandstats").items():
                key = name.removeprefix("cmdstat_")
                out[key] = out.get(key, 0) + int(stats["calls"])
        finally:
            client.close()
    return out


# -- HTTP -----------------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection to a collector."""

    def __init__(self, service: harness.Service) -> None:
        self.host, self.port = service.host, service.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def loads_path(index: int) -> str:
    return f"/servers/{loadgen.server_name(index)}/loads"


def count_servers(client: Client) -> int:
    """Page ``GET /servers`` through the whole fleet."""
    total, after = 0, None
    for _ in range(10_000):  # bounded: 10,000 pages of 10,000
        status, body = client.get(f"/servers?limit={PAGE}" + (f"&after={after}" if after else ""))
        if status != 200:
            raise RuntimeError(f"GET /servers: {status} {body[:200]!r}")
        page = json.loads(body)
        total += len(page["servers"])
        after = page["next_after"]
        if after is None:
            return total
    raise RuntimeError("GET /servers did not end")


def minute_samples(client: Client, index: int) -> int | None:
    status, body = client.get(loads_path(index))
    if status != 200:
        return None
    return sum(bucket["samples"] for bucket in json.loads(body)["minutes"])


class Reader(threading.Thread):
    """``count`` GETs of random servers' windows on their non-owning collector, spread from ``start`` to ``end``."""

    def __init__(self, services: list[harness.Service], half: int, servers: int, count: int, start: float,
                 end: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.services, self.half, self.servers, self.count = services, half, servers, count
        self.start_at, self.end_at = start, end
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.owner_latencies: list[float] = []  # every OWNER_EVERY-th request goes to the owner, for comparison
        self.not_found_at: list[float] = []  # seconds after ``start`` of each 404
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.done = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        clients = [Client(service) for service in self.services]
        try:
            interval = max(0.0, (self.end_at - self.start_at) / max(1, self.count))
            for k in range(self.count):
                due = self.start_at + k * interval
                wait = due - time.monotonic()
                if wait > 0 and self.stop_event.wait(wait):
                    return
                if self.stop_event.is_set() or time.monotonic() > self.end_at + 5:
                    return
                index = self.rng.randrange(self.servers)
                to_owner = k % OWNER_EVERY == OWNER_EVERY - 1
                other = clients[1] if (index < self.half) != to_owner else clients[0]  # not the owner, mostly
                started = time.perf_counter()
                try:
                    status, _ = other.get(loads_path(index))
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    continue
                took = (time.perf_counter() - started) * 1000
                self.done += 1
                if to_owner:
                    if status == 200:
                        self.owner_latencies.append(took)
                    continue
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.latencies.append(took)
                elif status == 404:
                    self.not_found_at.append(round(time.monotonic() - self.start_at, 2))
        finally:
            for client in clients:
                client.close()


# -- one two-collector run --------------------------------------------------------------------------------


@dataclass
class Snap:
    at: float
    stats: list[dict[str, Any]]
    cpu: list[float]
    redis: dict[str, float]


def snap(services: list[harness.Service], cluster: RedisClusterServers | None) -> Snap:
    return Snap(time.monotonic(), [s.stats() for s in services], [s.cpu_seconds() for s in services],
                redis_totals(cluster) if cluster is not None else {})


@dataclass
class FleetRun:
    servers: int
    rate: int
    window: float
    sent: list[int]
    received: list[int]
    applied: list[int]
    lost: list[int]
    dropped: list[dict[str, int]]
    never_arrived: list[int]
    warmup_sent: list[int]
    sender_rate: list[float]
    sender_cpu_percent: list[float]
    listed: list[int]
    checked: int
    check_equal: int
    check_mismatches: list[tuple[str, int | None, int | None]]
    recheck: list[tuple[float, int]]
    read_p50_ms: float
    read_p99_ms: float
    read_max_ms: float
    reads_ok: int
    owner_p50_ms: float
    owner_p99_ms: float
    owner_reads: int
    not_found_at: list[float]
    read_statuses: dict[int, int]
    read_errors: int
    floor: dict[str, float]  # floor_main's JSON: direct store read and GET /healthz p50 / p99 under the load
    redis_ops_per_sample: float
    redis_writes_per_sample: float
    redis_reads_per_get: float
    reads_in_window: int
    redis_cpu_us_per_sample: float
    redis_bytes_per_server: float
    redis_commands: dict[str, float]
    collector_cpu_us_per_sample: list[float]
    collector_cpu_percent: list[float]
    received_rate: list[float]  # samples/s each collector received in the steady window
    redis_writes_per_server_second: float
    shares: list[int]
    store_failures: list[int]
    rss_mib: list[float]
    hour_boundary_crossed: bool
    notes: list[str] = field(default_factory=list)

    @property
    def kept_up(self) -> bool:
        """Each collector received, in the steady window, all its sender sent but at most KEEP_UP's share
        of the window or one second's worth, whichever is more (a backlog that grew)."""
        return all(keeps_up(rate, sent, self.window) for rate, sent in zip(self.received_rate, self.sender_rate))

    @property
    def loss(self) -> int:
        """Seq gaps + drops + frames of the measured phase that never arrived (a few warm-up frames sent
        before the subscription is up, the PUB slow joiner, are not counted)."""
        missing = sum(max(0, n - w) for n, w in zip(self.never_arrived, self.warmup_sent))
        return sum(self.lost) + missing + sum(sum(d.values()) for d in self.dropped)


def fleet_run(args: argparse.Namespace, servers: int, run: int, workdir: Path) -> FleetRun:
    half = servers // 2
    parts = [(0, half), (half, servers - half)]
    total = args.settle + args.seconds
    cluster_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=workdir))
    cluster = RedisClusterServers(cluster_dir)
    services: list[harness.Service] = []
    senders: list[harness.Process] = []
    try:
        cluster.start()
        for cid in ("a", "b"):
            data = tempfile.mkdtemp(prefix=f"serve-{cid}-", dir=workdir)
            services.append(harness.Service(max_servers=max(2 * servers, 1000), flags=[
                "--store", cluster.url, "--data-dir", data, "--collector-id", cid,
                "--share-every", str(args.share_every)]))
        base = redis_totals(cluster)
        hour_start = int(time.time() // 3600)
        for service, (first, count) in zip(services, parts):
            senders.append(sender(service.ingest, count, count, total, first))
        for s in senders:
            line = s.read_line(timeout=60)
            if line != loadgen.START_LINE:
                raise RuntimeError(f"unexpected line from {s.name}: {line!r}")
        load_start = time.monotonic()
        window_start, window_end = load_start + args.settle, load_start + total
        reader = Reader(services, half, servers, args.reads, window_start, window_end - 0.5, seed=run)
        reader.start()
        floor = floor_probe(cluster.url, services, servers, args.reads, window_start - time.monotonic(),
                            window_end - 0.5 - window_start)
        senders.append(floor)  # stopped with the senders, whatever happens
        if floor.read_line(timeout=60) != loadgen.START_LINE:
            raise RuntimeError("the floor probe did not start")
        time.sleep(max(0.0, window_start - time.monotonic()))
        first_snap = snap(services, cluster)
        commands_before = redis_commands(cluster)
        reads_before = reader.done
        while time.monotonic() < window_end:
            time.sleep(max(0.0, min(POLL_SECONDS, window_end - time.monotonic())))
        last_snap = snap(services, cluster)
        commands_after = redis_commands(cluster)
        reads_in_window = reader.done - reads_before
        rss = [s.rss() / 2**20 for s in services]
        results = [harness.last_json_line(s, timeout=total + 60) for s in senders[:2]]
        floor_result = harness.last_json_line(floor, timeout=60)
        reader.stop_event.set()
        reader.join(timeout=60)
        finals = [s.wait_idle(timeout=60) for s in services]
        time.sleep(args.share_every + 1.0)  # one share interval after the last batch
        clients = [Client(s) for s in services]
        try:
            listed = [count_servers(c) for c in clients]
            rng = random.Random(1000 + run)
            picks = rng.sample(range(servers), min(args.check, servers))
            equal, mismatches, unequal = 0, [], []
            for index in picks:
                owner, other = (clients[0], clients[1]) if index < half else (clients[1], clients[0])
                mine, theirs = minute_samples(owner, index), minute_samples(other, index)
                if mine is not None and mine == theirs:
                    equal += 1
                else:
                    unequal.append(index)
                    if len(mismatches) < 10:
                        mismatches.append((loadgen.server_name(index), mine, theirs))
            recheck: list[tuple[float, int]] = []  # (seconds after the check, still unequal): lag or lost?
            checked_at = time.monotonic()
            for later in RECHECK_SECONDS:
                if not unequal:
                    break
                time.sleep(max(0.0, checked_at + later - time.monotonic()))
                still = []
                for index in unequal:
                    owner, other = (clients[0], clients[1]) if index < half else (clients[1], clients[0])
                    mine, theirs = minute_samples(owner, index), minute_samples(other, index)
                    if mine is None or mine != theirs:
                        still.append(index)
                unequal = still
                recheck.append((later, len(still)))
        finally:
            for c in clients:
                c.close()
        end = redis_totals(cluster)
        commands = {k: v - commands_before.get(k, 0) for k, v in commands_after.items()}
        finals = [s.stats() for s in services]
        hour_end = int(time.time() // 3600)
        span = last_snap.at - first_snap.at
        received_window = [b["received"] - a["received"] for a, b in zip(first_snap.stats, last_snap.stats)]
        samples_window = sum(received_window)
        cpu_window = [b - a for a, b in zip(first_snap.cpu, last_snap.cpu)]
        sent = [r["sent"] + r["warmup_sent"] for r in results]
        lat = reader.latencies
        store = [f.get("store", {}) for f in finals]
        return FleetRun(
            servers=servers, rate=servers, window=span, sent=sent,
            received=[f["received"] for f in finals], applied=[f["applied"] for f in finals],
            lost=[f["lost"] for f in finals], dropped=[{k: v for k, v in f["dropped"].items() if v} for f in finals],
            never_arrived=[s - f["received"] for s, f in zip(sent, finals)],
            warmup_sent=[r["warmup_sent"] for r in results],
            sender_rate=[r["rate"] for r in results], sender_cpu_percent=[r["cpu_percent"] for r in results],
            listed=listed, checked=len(picks), check_equal=equal, check_mismatches=mismatches, recheck=recheck,
            read_p50_ms=harness.percentile(lat, 0.5), read_p99_ms=harness.percentile(lat, 0.99),
            read_max_ms=max(lat) if lat else float("nan"), reads_ok=len(lat), read_statuses=reader.statuses,
            owner_p50_ms=harness.percentile(reader.owner_latencies, 0.5),
            owner_p99_ms=harness.percentile(reader.owner_latencies, 0.99), owner_reads=len(reader.owner_latencies),
            not_found_at=reader.not_found_at[:20],
            read_errors=reader.errors, floor=floor_result,
            redis_ops_per_sample=(last_snap.redis["calls"] - first_snap.redis["calls"]) / max(1, samples_window),
            redis_writes_per_sample=(last_snap.redis["writes"] - first_snap.redis["writes"]) / max(1, samples_window),
            redis_reads_per_get=(last_snap.redis["reads"] - first_snap.redis["reads"]) / max(1, reads_in_window),
            reads_in_window=reads_in_window,
            redis_cpu_us_per_sample=(last_snap.redis["cpu"] - first_snap.redis["cpu"]) * 1e6 / max(1, samples_window),
            redis_bytes_per_server=(end["memory"] - base["memory"]) / servers,
            redis_commands={k: round(v / max(1, samples_window), 4)
                            for k, v in sorted(commands.items(), key=lambda kv: -kv[1])[:10] if v},
            collector_cpu_us_per_sample=[c * 1e6 / max(1, r) for c, r in zip(cpu_window, received_window)],
            collector_cpu_percent=[100 * c / span for c in cpu_window],
            received_rate=[r / span for r in received_window],
            redis_writes_per_server_second=(last_snap.redis["writes"] - first_snap.redis["writes"]) / span / servers,
            shares=[s.get("shares", 0) for s in store],
            store_failures=[sum(v.get("failures", 0) for v in s.values() if isinstance(v, dict)) for s in store],
            rss_mib=rss, hour_boundary_crossed=hour_end != hour_start,
        )  # fmt: skip
    finally:
        for s in senders:
            s.stop()
        for s in services:
            s.stop(grace=40)
        cluster.stop()
        shutil.rmtree(cluster_dir, ignore_errors=True)


def print_fleet_run(run: int, r: FleetRun) -> None:
    print(f"  run {run}: {r.servers:,} servers at 1 Hz ({r.rate:,} samples/s), steady window {r.window:.1f} s"
          + (" [crossed an hour boundary: closed hours written]" if r.hour_boundary_crossed else ""))
    for k, cid in enumerate("ab"):
        print(f"    collector {cid}: sent {r.sent[k]:,}, received {r.received[k]:,} (never arrived "
              f"{r.never_arrived[k]:,}), applied {r.applied[k]:,}, lost {r.lost[k]:,}, dropped {r.dropped[k] or 0}; "
              f"sender {r.sender_rate[k]:,.0f}/s at {r.sender_cpu_percent[k]:.0f}% CPU; CPU "
              f"{r.collector_cpu_percent[k]:.0f}% of a core = {r.collector_cpu_us_per_sample[k]:.2f} us/sample "
              f"at {r.received_rate[k]:,.0f} samples/s received in the window; "
              f"RSS {r.rss_mib[k]:.0f} MiB; shares {r.shares[k]}, store failures {r.store_failures[k]}")
    print(f"    kept up (received in the window all the sent load but {KEEP_UP:.0%} of the window or 1 s, each): "
          f"{'yes' if r.kept_up else 'NO: a backlog grew in the ZeroMQ queues'}")
    print(f"    GET /servers counts: a {r.listed[0]:,}, b {r.listed[1]:,} (expected {r.servers:,}); minute-window "
          f"samples owner == non-owner for {r.check_equal:,} of {r.checked:,}"
          + (f"; mismatches (name, owner, other): {r.check_mismatches}" if r.check_mismatches else ""))
    print(f"    non-owner GET /servers/NAME/loads under load: {r.reads_ok:,} x 200, p50 {r.read_p50_ms:.2f} ms, "
          f"p99 {r.read_p99_ms:.2f} ms, max {r.read_max_ms:.1f} ms; statuses {r.read_statuses}, errors {r.read_errors}"
          + (f" (404s at s after the window start: {r.not_found_at})" if r.not_found_at else ""))
    print(f"    owner GET /servers/NAME/loads under load (for comparison): {r.owner_reads:,} x 200, "
          f"p50 {r.owner_p50_ms:.2f} ms, p99 {r.owner_p99_ms:.2f} ms")
    fl = r.floor
    print(f"    floor under the same load, from a process of its own: direct store read (read_fleet of a random "
          f"server) {fl['store_reads']:,} x, p50 {fl['store_p50_ms']:.2f} ms, p99 {fl['store_p99_ms']:.2f} ms; "
          f"GET /healthz {fl['healthz_gets']:,} x, p50 {fl['healthz_p50_ms']:.2f} ms, p99 "
          f"{fl['healthz_p99_ms']:.2f} ms; errors {fl['errors']}")
    print(f"    Redis: {r.redis_writes_per_server_second:.3f} write commands per server per second; "
          f"{r.redis_ops_per_sample:.4f} commands/sample ({r.redis_writes_per_sample:.4f} writes/sample; "
          f"{r.redis_reads_per_get:.2f} read commands per GET, {r.reads_in_window:,} GETs in the window), {r.redis_cpu_us_per_sample:.2f} us CPU/sample, "
          f"{r.redis_bytes_per_server:,.0f} B/server used_memory; per sample in the window by command: {r.redis_commands}")


# -- part 3: one collector, Redis vs SQLite ---------------------------------------------------------------


@dataclass
class SingleRun:
    store: str
    servers: int
    window: float
    cpu_us_per_sample: float
    cpu_percent: float
    received_rate: float  # in the steady window
    sent_rate: float
    sent: int
    warmup_sent: int
    received: int
    applied: int
    lost: int
    dropped: dict[str, int]
    rss_mib: float


def single_run(args: argparse.Namespace, store: str, servers: int, workdir: Path) -> SingleRun:
    total = args.settle + args.seconds
    cluster = None
    cluster_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=workdir))
    service = None
    load = None
    try:
        data = tempfile.mkdtemp(prefix=f"serve-{store}-", dir=workdir)
        if store == "redis":
            cluster = RedisClusterServers(cluster_dir).start()
            flags = ["--store", cluster.url, "--data-dir", data, "--collector-id", "solo",
                     "--share-every", str(args.share_every)]
        else:
            flags = ["--store", "sqlite", "--data-dir", data]
        service = harness.Service(max_servers=max(2 * servers, 1000), flags=flags)
        load = sender(service.ingest, servers, servers, total, 0)
        line = load.read_line(timeout=60)
        if line != loadgen.START_LINE:
            raise RuntimeError(f"unexpected line from sender: {line!r}")
        start = time.monotonic()
        time.sleep(args.settle)
        a = snap([service], None)
        time.sleep(max(0.0, start + total - time.monotonic()))
        b = snap([service], None)
        rss = service.rss() / 2**20
        result = harness.last_json_line(load, timeout=total + 60)
        final = service.wait_idle(timeout=60)
        received = b.stats[0]["received"] - a.stats[0]["received"]
        cpu = b.cpu[0] - a.cpu[0]
        return SingleRun(store=store, servers=servers, window=b.at - a.at, cpu_us_per_sample=cpu * 1e6 / max(1, received),
                         cpu_percent=100 * cpu / (b.at - a.at), received_rate=received / (b.at - a.at),
                         sent_rate=result["rate"], sent=result["sent"] + result["warmup_sent"], warmup_sent=result["warmup_sent"],
                         received=final["received"], applied=final["applied"], lost=final["lost"],
                         dropped={k: v for k, v in final["dropped"].items() if v}, rss_mib=rss)
    finally:
        if load is not None:
            load.stop()
        if service is not None:
            service.stop(grace=40)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(cluster_dir, ignore_errors=True)


def single_loss(r: SingleRun) -> int:
    return r.lost + sum(r.dropped.values()) + max(0, r.sent - r.received - r.warmup_sent)


def print_single(run: int, r: SingleRun) -> None:
    print(f"  run {run} {r.store:>6}: {r.servers:,} servers at 1 Hz, CPU {r.cpu_percent:.0f}% of a core = "
          f"{r.cpu_us_per_sample:.2f} us/sample over {r.window:.1f} s, received {r.received_rate:,.0f}/s of "
          f"{r.sent_rate:,.0f}/s sent{'' if keeps_up(r.received_rate, r.sent_rate, r.window) else ' (FELL BEHIND)'}; sent {r.sent:,}, received {r.received:,}, "
          f"applied {r.applied:,}, lost {r.lost:,}, dropped {r.dropped or 0}; RSS {r.rss_mib:.0f} MiB")


# -- main -------------------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return harness.median([v for v in values if not math.isnan(v)])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        return sender_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--floor":
        return floor_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=100_000, help="servers in the fleet, at 1 Hz (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="steady (measured) window (default %(default)s)")
    parser.add_argument("--settle", type=float, default=None,
                        help="unmeasured seconds of load first (default: 2 share intervals + 3, at most --seconds)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default %(default)s)")
    parser.add_argument("--share-every", type=float, default=1.0, help="serve --share-every (default %(default)s)")
    parser.add_argument("--reads", type=int, default=2000, help="GETs under load, 4 in 5 on the non-owner (default %(default)s)")
    parser.add_argument("--check", type=int, default=1000, help="servers compared owner vs non-owner (default %(default)s)")
    parser.add_argument("--single-servers", type=int, default=None,
                        help="servers of the one-collector Redis vs SQLite part (default --servers / 2)")
    parser.add_argument("--parts", default="fleet,single", help="which parts: fleet, single (default %(default)s)")
    parser.add_argument("--fallback", action="store_true",
                        help="if the fleet loses samples, step the rate down (x0.7, one run each) to find 0 loss")
    parser.add_argument("--json", metavar="FILE", help="also write the summary and every run as JSON to FILE")
    args = parser.parse_args()
    if args.servers < 2 or args.seconds <= 0 or args.runs < 1 or args.share_every <= 0:
        parser.error("need --servers >= 2, --seconds > 0, --runs >= 1, --share-every > 0")
    if args.settle is None:
        args.settle = min(2 * args.share_every + 3.0, max(args.seconds, 3.0))
    single_servers = args.single_servers or max(1, args.servers // 2)
    parts = set(args.parts.split(","))

    def on_signal(signum: int, frame: object) -> None:
        # once: a second Ctrl-C must not cut the cleanup short (the finally blocks stop every process)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a shell's background job inherits it ignored, and Python then keeps it so
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    harness.print_header("fleet: two collectors on one Redis Cluster (3 masters), and Redis vs SQLite")
    workdir = Path(tempfile.mkdtemp(prefix="servertrack-fleet-bench-"))
    fleet: list[FleetRun] = []
    fallback: list[FleetRun] = []
    single: list[tuple[SingleRun, SingleRun]] = []
    try:
        if "fleet" in parts:
            print(f"-- part 1+2: {args.servers:,} servers at 1 Hz, half to each of two collectors, --share-every "
                  f"{args.share_every:g}, settle {args.settle:g} s + measure {args.seconds:g} s, {args.runs} run(s)",
                  flush=True)
            for run in range(1, args.runs + 1):
                fleet.append(fleet_run(args, args.servers, run, workdir))
                print_fleet_run(run, fleet[-1])
                sys.stdout.flush()
            if args.fallback and any(r.loss or not r.kept_up for r in fleet):
                servers = args.servers
                for _ in range(6):
                    servers = int(servers * 0.7)
                    print(f"-- fallback: {servers:,} servers at 1 Hz, one run", flush=True)
                    fallback.append(fleet_run(args, servers, 100 + len(fallback), workdir))
                    print_fleet_run(len(fallback), fallback[-1])
                    if fallback[-1].loss == 0 and fallback[-1].kept_up:
                        break
        if "single" in parts:
            print(f"-- part 3: ONE collector, {single_servers:,} servers at 1 Hz, Redis Cluster vs SQLite store, "
                  f"{args.runs} run(s)", flush=True)
            for run in range(1, args.runs + 1):
                order = ("redis", "sqlite") if run % 2 else ("sqlite", "redis")
                pair = {store: single_run(args, store, single_servers, workdir) for store in order}
                single.append((pair["redis"], pair["sqlite"]))
                for store in order:
                    print_single(run, pair[store])
                print(f"  run {run}: Redis / SQLite CPU per sample {pair['redis'].cpu_us_per_sample / pair['sqlite'].cpu_us_per_sample:.2f}",
                      flush=True)
    except KeyboardInterrupt:
        print("interrupted: everything stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(args, fleet, fallback, single, single_servers)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": vars(args), "summary": summary, "fleet_runs": [run_json(r) for r in fleet],
                       "fallback_runs": [run_json(r) for r in fallback],
                       "single_runs": [[asdict(a), asdict(b)] for a, b in single]}, out, indent=1, default=str)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if summary.get("ok", True) else 1


def run_json(r: FleetRun) -> dict[str, Any]:
    return {"loss": r.loss, "kept_up": r.kept_up, **asdict(r)}


def summarize(args: argparse.Namespace, fleet: list[FleetRun], fallback: list[FleetRun],
              single: list[tuple[SingleRun, SingleRun]], single_servers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print("== summary (median of the runs; the runs in brackets)")

    def line(label: str, values: list[float], unit: str, digits: int = 2) -> float:
        m = med(values)
        shown = " / ".join(f"{v:,.{digits}f}" for v in values)
        print(f"  {label}: {m:,.{digits}f} {unit}  [{shown}]")
        out[label] = {"median": m, "runs": values, "unit": unit}
        return m

    ok = True
    if fleet:
        print(f"  two collectors, {args.servers:,} servers at 1 Hz, 3-master Redis Cluster, --share-every "
              f"{args.share_every:g}, {args.seconds:g} s measured, {len(fleet)} run(s):")
        losses = [float(r.loss) for r in fleet]
        line("samples lost (seq gaps + never arrived + dropped, both collectors)", losses, "samples", 0)
        line("servers listed by GET /servers, min of the two collectors", [float(min(r.listed)) for r in fleet],
             "servers", 0)
        line("checked servers whose minute window matches on the non-owner", [float(r.check_equal) for r in fleet],
             f"of {min(args.check, args.servers):,}", 0)
        p99 = line("non-owner GET /servers/NAME/loads p99 under load", [r.read_p99_ms for r in fleet], "ms")
        line("non-owner GET /servers/NAME/loads p50 under load", [r.read_p50_ms for r in fleet], "ms")
        line("owner GET /servers/NAME/loads p99 under load (comparison)", [r.owner_p99_ms for r in fleet], "ms")
        line("owner GET /servers/NAME/loads p50 under load (comparison)", [r.owner_p50_ms for r in fleet], "ms")
        line("floor: direct store read (read_fleet, no collector) p99 under load", [r.floor["store_p99_ms"] for r in fleet], "ms")
        line("floor: direct store read p50 under load", [r.floor["store_p50_ms"] for r in fleet], "ms")
        line("floor: GET /healthz p99 under load", [r.floor["healthz_p99_ms"] for r in fleet], "ms")
        line("floor: GET /healthz p50 under load", [r.floor["healthz_p50_ms"] for r in fleet], "ms")
        line("Redis commands per sample (3 masters)", [r.redis_ops_per_sample for r in fleet], "commands", 4)
        line("Redis write commands per sample (HSET, EXPIRE, DEL, SET, EVAL, ...)",
             [r.redis_writes_per_sample for r in fleet], "commands", 4)
        line("Redis read commands per GET under load (HGETALL, EXISTS, GET, ...; incl. the collectors' own reads)",
             [r.redis_reads_per_get for r in fleet], "commands", 2)
        line("Redis write commands per server per second", [r.redis_writes_per_server_second for r in fleet],
             "commands", 3)
        line("collector a samples/s received in the window", [r.received_rate[0] for r in fleet], "samples/s", 0)
        line("collector b samples/s received in the window", [r.received_rate[1] for r in fleet], "samples/s", 0)
        line("Redis CPU per sample (3 masters)", [r.redis_cpu_us_per_sample for r in fleet], "us")
        line("Redis used_memory per server (3 masters)", [r.redis_bytes_per_server for r in fleet], "B", 0)
        line("collector a CPU per sample", [r.collector_cpu_us_per_sample[0] for r in fleet], "us")
        line("collector b CPU per sample", [r.collector_cpu_us_per_sample[1] for r in fleet], "us")
        line("collector a CPU", [r.collector_cpu_percent[0] for r in fleet], "% of a core", 0)
        line("collector b CPU", [r.collector_cpu_percent[1] for r in fleet], "% of a core", 0)
        zero = all(r.loss == 0 for r in fleet)
        kept = all(r.kept_up for r in fleet)
        listed = all(min(r.listed) == args.servers for r in fleet)
        matched = all(r.check_equal == r.checked for r in fleet)
        print(f"  zero loss in every run: {'met' if zero else 'NOT MET'}; kept up in every run: "
              f"{'met' if kept else 'NOT MET'}; every server listed on both: "
              f"{'met' if listed else 'NOT MET'}; minute windows equal on the non-owner: {'met' if matched else 'NOT MET'}; "
              f"read p99 <= {READ_TARGET_MS:g} ms: {'met' if p99 <= READ_TARGET_MS else 'NOT MET'}")
        if any(r.hour_boundary_crossed for r in fleet):
            print("  note: a run crossed an hour boundary (closed hours written to Redis in its window)")
        ok = zero and kept and listed and matched and p99 <= READ_TARGET_MS
        if not (zero and kept):
            clean = [r.servers for r in fallback if r.loss == 0 and r.kept_up]
            lossless = [r.servers for r in fallback if r.loss == 0] + ([args.servers] if zero else [])
            if lossless:
                print(f"  highest rate measured at 0 loss: {max(lossless):,} servers at 1 Hz (one run, see fallback)")
                out["highest_zero_loss_servers"] = max(lossless)
            if clean:
                print(f"  highest rate measured at 0 loss and keeping up: {max(clean):,} servers at 1 Hz (one run)")
                out["highest_kept_up_servers"] = max(clean)
            else:
                print("  no rate measured at 0 loss and keeping up (see --fallback)")
    if single:
        print(f"  one collector, {single_servers:,} servers at 1 Hz, {len(single)} run(s):")
        redis_us = line("collector CPU per sample, Redis Cluster store", [a.cpu_us_per_sample for a, _ in single], "us")
        sqlite_us = line("collector CPU per sample, SQLite store", [b.cpu_us_per_sample for _, b in single], "us")
        line("ratio Redis / SQLite (per run)", [a.cpu_us_per_sample / b.cpu_us_per_sample for a, b in single], "x")
        print(f"  (ratio of the medians: {redis_us / sqlite_us:.2f}x)")
        line("samples/s received in the window, Redis store", [a.received_rate for a, _ in single], "samples/s", 0)
        line("samples/s received in the window, SQLite store", [b.received_rate for _, b in single], "samples/s", 0)
        line("samples lost, Redis store runs", [float(single_loss(a)) for a, _ in single], "samples", 0)
        line("samples lost, SQLite store runs", [float(single_loss(b)) for _, b in single], "samples", 0)
    out["ok"] = ok
    return out


if __name__ == "__main__":
    sys.exit(main())
