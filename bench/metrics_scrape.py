"""``GET /metrics`` scrape time: a real serve holding ``--servers`` servers and ``--nodes`` nodes, and the
median (and p90) of ``--gets`` GETs of ``/metrics``, one after another. Target: median <= 10 ms, 50 ms with ``--export-servers`` (a scrape runs
on the service's one loop; Prometheus scrapes every 15 s by default).

``python bench/metrics_scrape.py --servers 5000 --nodes 1000 --gets 50 --runs 3``

With ``--export-servers N`` serve runs with ``--export-servers N`` (per-server gauges of the first N
servers): ``python bench/metrics_scrape.py --servers 10000 --nodes 1000 --export-servers 10000 --runs 5``.
The scrapes run within a minute of the samples, so every server has its two series (checked).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request

from harness import Service, http_json, median, percentile, print_header, print_runs, verdict

TARGET_MS = 10.0
EXPORT_TARGET_MS = 50.0  # with --export-servers 10,000: 20,000 more series, ~1.3 MB of text
BATCH = 10_000  # POST /loads' limit per request
HELLO = {"hostname": "bench", "boot_time": 0.0, "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2,
         "memory_total": 2**34, "agent_version": "0.2.0", "interval": 1.0}


def fill(service: Service, servers: int, nodes: int) -> None:
    names = [f"srv-{number:06}.bench" for number in range(servers)]
    for start in range(0, servers, BATCH):
        body = [{"server": name, "cpu": 12.5, "ram": 40.0} for name in names[start:start + BATCH]]
        status, _ = http_json("POST", service.url + "/loads", body)
        assert status == 202, status
    for number in range(nodes):
        status, _ = http_json("POST", service.url + "/nodes", {"name": f"node-{number:05}.bench", **HELLO,
                                                                "boot_time": time.time() - 3600})
        assert status == 201, status
    service.wait_for(lambda stats: stats["servers"] == servers and stats["pending"] == 0, 30)


def exported_series(url: str) -> int:
    """How many ``servertrack_server_cpu_percent`` series one scrape of ``url`` holds."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return sum(line.startswith(b"servertrack_server_cpu_percent{") for line in response.read().splitlines())


def scrape_times(url: str, gets: int) -> list[float]:
    """Seconds of each of ``gets`` GETs of ``url`` (the body read in full)."""
    times = []
    for _ in range(gets):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=5_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--gets", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--export-servers", type=int, default=0, metavar="N",
                        help="serve --export-servers N (default: without per-server gauges)")
    args = parser.parse_args()
    exported = f", --export-servers {args.export_servers:,}" if args.export_servers else ""
    print_header(f"GET /metrics at {args.servers:,} servers and {args.nodes:,} nodes{exported}, "
                 f"{args.gets} GETs a run")
    flags = ["--export-servers", str(args.export_servers)] if args.export_servers else []
    medians, p90s = [], []
    for _ in range(args.runs):
        with Service(flags=flags) as service:
            fill(service, args.servers, args.nodes)
            series = exported_series(service.url + "/metrics")
            assert series == min(args.servers, args.export_servers), series
            times = scrape_times(service.url + "/metrics", args.gets)
        medians.append(median(times) * 1000)
        p90s.append(percentile(times, 0.9) * 1000)
    print_runs("median", medians, "ms")
    print_runs("p90", p90s, "ms")
    target = EXPORT_TARGET_MS if args.export_servers else TARGET_MS
    return 0 if verdict("median scrape", median(medians), target, "ms", higher_is_better=False) else 1


if __name__ == "__main__":
    sys.exit(main())
