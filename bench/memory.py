"""Memory per server: RSS of a real ``servertrack serve`` before and after 100,000 servers report.

Target: (RSS_loaded - RSS_empty) / 100,000 <= 3,072 bytes per server (issue 10; goal 2,048).

How
    Each run starts a fresh service (``--max-servers 200000``, as in
    production, so half the capacity stays untouched), waits ``--idle``
    seconds and reads its RSS with psutil (RSS_empty). Then it loads the
    servers, by default the way agents do:

    - ``--via zmq`` (default): ``bench/loadgen.py`` at ``--rate`` samples/s
      until every server has reported twice (each sample lands in a minute
      bucket and an hour bucket; the collector also keeps each agent's seq
      and IP list, which is part of the per-server cost);
    - ``--via http``: ``POST /loads`` in batches of 1,000; every server gets
      one sample now and one 61 minutes ago (a different minute and hour bucket).

    The bucket rings are slot-major (one slot of every server is contiguous),
    so a server's memory becomes resident bucket by bucket as time passes. To
    measure the full fixed cost, ``--fill`` (the default) then gives every
    server a sample in each of its 61 second, 61 minute and 25 hour buckets
    over ``POST /loads`` (timestamps up to ~24 h back), as a server reporting
    for a day would. It waits until ``/stats`` shows every sample applied and
    ``servers`` equal to the number loaded, waits ``--idle`` seconds more, and
    reads RSS again (RSS_loaded). Figures are medians over ``--runs`` runs. RSS may grow in
    2 MiB steps (transparent huge pages), hence the measurement at full scale.

Usage
    python bench/memory.py                 # 100,000 servers via ZeroMQ, 3 runs
    python bench/memory.py --via http --runs 1
    python bench/memory.py --no-fill       # only the buckets two samples touch
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import math
import random
import sys
import time

from loadgen import server_name

TARGET_BYTES_PER_SERVER = 3072
HTTP_BATCH = 1_000


def load_via_zmq(service: harness.Service, servers: int, rate: int) -> int:
    """Every server reports twice through the load generator; return samples sent."""
    seconds = math.ceil(2 * servers / rate)
    with harness.Process(harness.loadgen_argv(service.ingest, rate, servers, seconds), name="loadgen") as loadgen:
        result = harness.last_json_line(loadgen, timeout=seconds * 2 + 60)
    return result["sent"] + result["warmup_sent"]


def load_via_http(service: harness.Service, servers: int) -> int:
    """POST /loads in batches of 1,000: one sample now, one 61 minutes ago, per server."""
    rng = random.Random(3)
    sent = 0
    past = time.time() - 61 * 60
    for start in range(0, servers, HTTP_BATCH):
        names = [server_name(i) for i in range(start, min(servers, start + HTTP_BATCH))]
        for ts in (None, past):
            body = []
            for name in names:
                item = {"server": name, "cpu": round(rng.uniform(0, 100), 2), "ram": round(rng.uniform(0, 100), 2)}
                if ts is not None:
                    item["ts"] = ts
                body.append(item)
            status, reply = harness.http_json("POST", service.url + "/loads", body)
            if status != 202:
                raise RuntimeError(f"POST /loads answered {status}: {reply}")
            sent += len(body)
    return sent


MINUTE_OFFSETS = [minute * 60 for minute in range(61)]
# The 23 hours before the current one (the current one is filled by the minutes): every hour the
# API accepts a sample for (see protocol.oldest_accepted). The rings' spare slot is for samples
# ahead of now, which only a clock at the end of an hour could fill.
HOUR_OFFSETS = [hour * 3600 for hour in range(1, 24)]


SECOND_OFFSETS = list(range(61))  # the 60 seconds shown and the ring's spare slot
SERVERS_PER_SECONDS_BATCH = HTTP_BATCH // len(SECOND_OFFSETS)


def fill_every_second(service: harness.Service, servers: int) -> int:
    """One sample per server in each of the 61 slots of its seconds ring; return samples sent.

    A server's 61 seconds go in one request, so they are 61 distinct seconds
    however long the whole fill takes.
    """
    sent = 0
    for start in range(0, servers, SERVERS_PER_SECONDS_BATCH):
        now = time.time()
        body = [{"server": server_name(i), "cpu": 50.0, "ram": 25.0, "ts": now - offset}
                for i in range(start, min(servers, start + SERVERS_PER_SECONDS_BATCH)) for offset in SECOND_OFFSETS]
        status, reply = harness.http_json("POST", service.url + "/loads", body)
        if status != 202:
            raise RuntimeError(f"POST /loads answered {status}: {reply}")
        sent += len(body)
    return sent


def fill_every_bucket(service: harness.Service, servers: int) -> int:
    """One sample per server in each second, minute and hour bucket its rings hold; return samples sent."""
    sent = fill_every_second(service, servers)
    for offset in MINUTE_OFFSETS + HOUR_OFFSETS:
        for start in range(0, servers, HTTP_BATCH):
            ts = time.time() - offset
            body = [{"server": server_name(i), "cpu": 50.0, "ram": 25.0, "ts": ts}
                    for i in range(start, min(servers, start + HTTP_BATCH))]
            status, reply = harness.http_json("POST", service.url + "/loads", body)
            if status != 202:
                raise RuntimeError(f"POST /loads answered {status}: {reply}")
            sent += len(body)
    return sent


def one_run(args: argparse.Namespace) -> tuple[int, int, dict]:
    """RSS empty, RSS loaded, final stats."""
    with harness.Service(max_servers=args.max_servers) as service:
        time.sleep(args.idle)
        empty = service.rss()
        if args.via == "zmq":
            load_via_zmq(service, args.servers, args.rate)
        else:
            load_via_http(service, args.servers)
        if args.fill:
            fill_every_bucket(service, args.servers)
        stats = service.wait_for(lambda s: s["servers"] >= args.servers and s["pending"] == 0, timeout=60)
        stats = service.wait_idle(timeout=60)
        if stats["servers"] != args.servers:
            print(f"  WARNING: service holds {stats['servers']:,} servers, expected {args.servers:,}")
        time.sleep(args.idle)
        loaded = service.rss()
    return empty, loaded, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=100_000, help="servers to load (default %(default)s)")
    parser.add_argument("--via", choices=("zmq", "http"), default="zmq", help="how to load them (default %(default)s)")
    parser.add_argument("--rate", type=int, default=50_000, help="loadgen rate for --via zmq (default %(default)s)")
    parser.add_argument("--fill", action=argparse.BooleanOptionalAction, default=True,
                        help="then fill every second, minute and hour bucket of every server (default on)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds to wait before each RSS read (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="fresh services (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    args = parser.parse_args()
    harness.print_header(f"RSS per server of servertrack serve, {args.servers:,} servers loaded via {args.via}")
    per_server = []
    for run in range(1, args.runs + 1):
        empty, loaded, stats = one_run(args)
        per_server.append((loaded - empty) / args.servers)
        print(
            f"  run {run}: RSS empty {empty / 2**20:,.1f} MiB, loaded {loaded / 2**20:,.1f} MiB, "
            f"{per_server[-1]:,.0f} B/server (servers {stats['servers']:,}, applied {stats['applied']:,}, "
            f"lost {stats['lost']}, dropped {stats['dropped'] or 0})"
        )
    harness.print_runs("RSS per server", per_server, "B")
    ok = harness.verdict("RSS per server (median)", harness.median(per_server), TARGET_BYTES_PER_SERVER, "B", False)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
