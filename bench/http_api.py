"""HTTP API under wrk: batch recording, single-sample recording, and read latency under ingest.

Targets
    (a) POST /loads, 1,000 samples per body: samples/s = 2xx requests/s * 1,000 >= 200,000
    (b) POST /servers/NAME/loads, one sample:  >= 4,000 requests/s
    (c) GET /servers/NAME/loads: p99 latency <= 10 ms, with 100,000 servers loaded
        while the load generator ingests 50,000 samples/s over ZeroMQ
    (d) GET /perf/NAME/last_minute (the per-second window of the /perf API):
        p99 latency <= 10 ms, under the same load as (c)

How
    Each scenario starts a fresh ``servertrack serve`` (``--max-servers 200000``)
    and drives it with wrk (one thread; connections per scenario below) and
    the Lua scripts in ``bench/wrk/``:

    - (a) ``post_batch.lua``: bodies of 1,000 distinct servers, rotating over
      100,000 names, no ``ts``; ``-t1 -c4`` by default (the service has one
      thread, a few connections keep it busy). Only 2xx responses count.
      ``/stats`` ``applied`` over the same time is shown as a cross-check.
    - (b) ``post_single.lua``: ``{"cpu": x, "ram": y}`` to rotating names;
      ``-t1 -c32`` by default.
    - (c) the load generator first reports all 100,000 servers (at 50,000/s)
      and keeps going at 50,000/s; then ``get_random.lua`` reads a random one
      of them per request, ``-t1 -c1 --latency`` by default; the 99 % line of
      wrk's latency distribution is the figure. One connection because wrk is
      a closed loop and the service has one thread: with ``-c4`` every GET
      also queues behind up to three other GETs, so p99 then measures the
      GETs' own queueing more than the interference of ingest, which is what
      the target is about (``--connections-get 4`` shows that figure).
      ``--ingest-rate 0`` loads the servers, stops ingesting, and measures a
      baseline without ingest.
    - (d) as (c), reading ``/perf/NAME/last_minute`` instead.

    Every scenario first runs wrk for ``--warmup`` seconds (not measured),
    then ``--runs`` times for ``--seconds`` seconds; figures are medians.
    wrk's key lines are printed for every run.

Usage
    python bench/http_api.py                              # all four, 30 s x 3 runs each
    python bench/http_api.py --scenario c --seconds 5 --runs 1
Exit status 2 if wrk is missing (install: apt-get install -y wrk), 1 if a target is not met.
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

WRK_DIR = os.path.join(harness.BENCH, "wrk")
TARGET_BATCH_SAMPLES = 200_000
TARGET_SINGLE_RPS = 4_000
TARGET_P99_MS = 10.0
BATCH_SIZE = 1_000
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    errors: int
    rps: float
    latency_ms: dict[str, float]  # "50%", "75%", "90%", "99%" (with --latency)
    key_lines: list[str]

    @property
    def ok_rps(self) -> float:
        """Requests per second that got a 2xx/3xx answer."""
        return (self.requests - self.non_2xx) / self.seconds


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(url: str, script: str, seconds: float, connections: int, script_args: list[str]) -> WrkResult:
    """One bounded wrk run against a 127.0.0.1 URL; parse its summary."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"wrk only runs against 127.0.0.1, not {url}")
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
        "-s", os.path.join(WRK_DIR, script), url, "--", *script_args,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, env=harness.child_env())
    out = done.stdout
    if done.returncode != 0 or "requests in" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{out}\n{done.stderr}")
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    assert total is not None
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latency = {p: _ms(v) for p, v in re.findall(r"^\s+(50%|75%|90%|99%)\s+(\S+)", out, re.M)}
    keep = ("Latency  ", "Req/Sec", "requests in", "Non-2xx", "Socket errors", "Requests/sec", "99%", "50%")
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2) + total.group(3)) / 1000.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        latency_ms=latency,
        key_lines=[line.strip() for line in out.splitlines() if any(token in line for token in keep)],
    )


def print_wrk(run: int, result: WrkResult) -> None:
    print(f"  run {run}: " + " | ".join(result.key_lines))


def repeat_wrk(
    service: harness.Service, path: str, script: str, connections: int, script_args: list[str], args: argparse.Namespace
) -> list[tuple[WrkResult, float]]:
    """A warm-up run, then ``args.runs`` measured runs; each with ``applied`` per second from /stats."""
    url = service.url + path
    if args.warmup > 0:
        run_wrk(url, script, args.warmup, connections, script_args)
    results = []
    for run in range(1, args.runs + 1):
        before = service.wait_idle(timeout=30)["applied"]  # the previous run's samples are all applied
        result = run_wrk(url, script, args.seconds, connections, script_args)
        after = service.wait_idle(timeout=30)["applied"]
        applied_rate = (after - before) / result.seconds  # what this run stored, per wrk second
        print_wrk(run, result)
        if result.non_2xx or result.errors:
            print(f"         WARNING: {result.non_2xx} non-2xx responses, {result.errors} socket errors")
        results.append((result, applied_rate))
    return results


def scenario_batch(args: argparse.Namespace) -> bool:
    print(f"-- (a) POST /loads, {BATCH_SIZE:,} samples per request, wrk -t1 -c{args.connections_batch}")
    with harness.Service(max_servers=args.max_servers) as service:
        results = repeat_wrk(
            service, "/loads", "post_batch.lua", args.connections_batch, [str(args.servers), str(BATCH_SIZE)], args
        )
        stats = service.stats()
    samples = [r.ok_rps * BATCH_SIZE for r, _ in results]
    harness.print_runs("2xx requests/s", [r.ok_rps for r, _ in results], "req/s")
    harness.print_runs("samples/s (2xx requests/s x 1,000)", samples, "samples/s")
    harness.print_runs("cross-check: samples stored (/stats applied) per wrk second", [a for _, a in results], "samples/s")
    print(f"  service after: servers {stats['servers']:,}, dropped {stats['dropped'] or 0}")
    return harness.verdict("(a) samples/s (median)", harness.median(samples), TARGET_BATCH_SAMPLES, "samples/s", True)


def scenario_single(args: argparse.Namespace) -> bool:
    print(f"-- (b) POST /servers/NAME/loads, one sample per request, wrk -t1 -c{args.connections_single}")
    with harness.Service(max_servers=args.max_servers) as service:
        results = repeat_wrk(
            service, "/servers", "post_single.lua", args.connections_single, [str(args.servers)], args
        )
    rps = [r.ok_rps for r, _ in results]
    harness.print_runs("2xx requests/s", rps, "req/s")
    harness.print_runs("p99 latency", [r.latency_ms.get("99%", float("nan")) for r, _ in results], "ms")
    return harness.verdict("(b) requests/s (median)", harness.median(rps), TARGET_SINGLE_RPS, "req/s", True)


READ_SCENARIOS = {"c": "/servers/%s/loads", "d": "/perf/%s/last_minute"}


def scenario_get(args: argparse.Namespace, letter: str = "c") -> bool:
    path = READ_SCENARIOS[letter]
    print(
        f"-- ({letter}) GET {path % 'NAME'}, random among {args.servers:,} loaded servers, wrk -t1 "
        f"-c{args.connections_get} --latency, while loadgen ingests {args.ingest_rate:,} samples/s over ZeroMQ"
    )
    # --ingest-rate 0: load the servers at 50,000/s, then stop ingesting (a baseline without ingest).
    load_rate = args.ingest_rate or 50_000
    load_seconds = math.ceil(args.servers / load_rate)
    planned = args.warmup + args.runs * (args.seconds + 3) + 2 * load_seconds + 30
    with harness.Service(max_servers=args.max_servers) as service:
        argv = harness.loadgen_argv(service.ingest, load_rate, args.servers, planned if args.ingest_rate else load_seconds)
        with harness.Process(argv, name="loadgen") as loadgen:
            if loadgen.read_line(timeout=60) != "measuring":
                raise RuntimeError("loadgen did not start")
            loaded = service.wait_for(lambda s: s["servers"] >= args.servers, timeout=load_seconds + 30)
            if loaded["servers"] < args.servers:
                raise RuntimeError(f"only {loaded['servers']:,} of {args.servers:,} servers loaded")
            if not args.ingest_rate:
                harness.last_json_line(loadgen, timeout=60)
                service.wait_idle(timeout=30)
            time.sleep(2.0)  # a few steady batches before measuring
            results = []
            url = service.url + "/servers"
            if args.warmup > 0:
                run_wrk(url, "get_random.lua", args.warmup, args.connections_get, [str(args.servers), path])
            for run in range(1, args.runs + 1):
                before, started = service.stats(), time.monotonic()
                result = run_wrk(url, "get_random.lua", args.seconds, args.connections_get, [str(args.servers), path])
                after, ended = service.stats(), time.monotonic()
                ingest = (after["applied"] - before["applied"]) / (ended - started)
                print_wrk(run, result)
                print(
                    f"         ingest meanwhile: {ingest:,.0f} samples/s applied, lost {after['lost']:,}, "
                    f"dropped {after['dropped'] or 0}, last batch {after['last_batch_seconds'] * 1000:.0f} ms"
                )
                if result.non_2xx or result.errors:
                    print(f"         WARNING: {result.non_2xx} non-2xx responses, {result.errors} socket errors")
                results.append((result, ingest))
            loadgen.stop()
    p99 = [r.latency_ms["99%"] for r, _ in results]
    harness.print_runs("p99 latency", p99, "ms")
    harness.print_runs("p50 latency", [r.latency_ms["50%"] for r, _ in results], "ms")
    harness.print_runs("GET requests/s", [r.ok_rps for r, _ in results], "req/s")
    harness.print_runs("ingest applied meanwhile", [i for _, i in results], "samples/s")
    return harness.verdict(f"({letter}) GET p99 latency (median)", harness.median(p99), TARGET_P99_MS, "ms", False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("a", "b", "c", "d", "all"), default="all", help="default all")
    parser.add_argument("--seconds", type=float, default=30.0, help="wrk duration per run (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured wrk seconds first (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="measured wrk runs per scenario (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct server names (default %(default)s)")
    parser.add_argument(
        "--ingest-rate", type=int, default=50_000, help="ZeroMQ ingest during (c) and (d), 0 = none (default %(default)s)"
    )
    parser.add_argument("--connections-batch", type=int, default=4, help="wrk -c for (a) (default %(default)s)")
    parser.add_argument("--connections-single", type=int, default=32, help="wrk -c for (b) (default %(default)s)")
    parser.add_argument("--connections-get", type=int, default=1, help="wrk -c for (c) and (d) (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed. Install it with:  apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2
    harness.print_header("HTTP API under wrk")
    ok = True
    if args.scenario in ("a", "all"):
        ok &= scenario_batch(args)
    if args.scenario in ("b", "all"):
        ok &= scenario_single(args)
    for letter in READ_SCENARIOS:
        if args.scenario in (letter, "all"):
            ok &= scenario_get(args, letter)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
