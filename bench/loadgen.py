"""ZeroMQ load generator: N simulated agents publishing protocol-v1 frames at a steady rate.

What it does
    Connects a PUB socket to the collector's ingest endpoint (the collector
    binds its SUB), waits ``--warmup`` seconds for the subscription handshake
    (slow joiner; it sends a few warm-up frames from server 0 meanwhile, with
    its seq continuing afterwards, so nothing is counted as lost), then sends
    ``--rate`` frames per second for ``--seconds`` seconds, round-robin over
    ``--servers`` distinct servers. At rate == servers every server reports
    once a second, like a real fleet.

    Each frame is a msgpack map exactly as ``encode_sample`` would write it:
    fqdn ``srv-000123.bench``, a stable IP per server (``10.x.y.z``), ``ts`` =
    now, cpu/ram varying from frame to frame, and a per-server ``seq``
    0, 1, 2, ... in order (the collector counts gaps as lost).

How it stays cheap
    The constant part of every server's frame (map header, v, fqdn, ip) is
    packed once; each frame is that prefix plus one ``struct.pack`` of
    ts/cpu/ram/seq (float64 and uint64 msgpack encodings, which ``msgpack``
    decodes like the minimal ones). Frames are sent in bursts every 10 ms
    (``rate / 100`` per slice), with SNDHWM 1,000,000 so that the generator
    measures the collector rather than its own drops. ``--self-test``
    measures how fast the generator itself can go (unpaced, into a sink
    process that only counts frames): it must be well above 100,000 frames/s
    on one core for the ingest benchmark to mean anything.

Bounds
    Sends at most ``rate * seconds`` frames and stops after ``seconds * 1.5 +
    2`` seconds whatever happens; SIGTERM/SIGINT stop it early (it still
    reports). Talks only to the endpoint given (127.0.0.1 is enforced).

Usage
    python bench/loadgen.py --endpoint tcp://127.0.0.1:PORT --rate 100000 --servers 100000 --seconds 30
    python bench/loadgen.py --self-test --seconds 5 --runs 3
    --json prints "measuring" when the measured phase starts, then one JSON
    result line at the end (used by the other benchmarks).
    --processes N splits the servers over N generator processes (prefer 1 on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import msgpack
import zmq

SLICE_SECONDS = 0.01
SEND_HIGH_WATER_MARK = 1_000_000
WARMUP_FRAME_INTERVAL = 0.05
UNPACED_FRAMES_PER_SECOND_CAP = 5_000_000  # the bound on frames when --rate 0
START_LINE = "measuring"  # printed (with --json) when the measured phase starts

# Tail of each frame: "ts" float64, "cpu" float64, "ram" float64, "seq" uint64.
_TAIL = struct.Struct(">4sd5sd5sd5sQ")
_TS_KEY, _CPU_KEY, _RAM_KEY, _SEQ_KEY = b"\xa2ts\xcb", b"\xa3cpu\xcb", b"\xa3ram\xcb", b"\xa3seq\xcf"
_MAP_OF_SEVEN = b"\x87"


def server_name(index: int) -> str:
    """The fqdn of simulated server ``index``."""
    return f"srv-{index:06d}.bench"


def server_ip(index: int) -> str:
    """A stable, realistic IPv4 address for server ``index`` (10.0.0.1, 10.0.0.2, ...)."""
    n = index + 1
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class FrameFactory:
    """Builds frames for servers ``first .. first + count - 1``, keeping each server's seq."""

    def __init__(self, first: int, count: int, seed: int = 1) -> None:
        self.count = count
        self.prefixes = [
            _MAP_OF_SEVEN + msgpack.packb({"v": 1, "fqdn": server_name(i), "ip": [server_ip(i)]})[1:]
            for i in range(first, first + count)
        ]
        self.seq = [0] * count
        self.cursor = 0
        rng = random.Random(seed)
        self.loads = [round(rng.uniform(0.0, 100.0), 2) for _ in range(1024)]

    def frame(self, index: int, ts: float) -> bytes:
        """The next frame of server ``index`` (relative to ``first``); advances its seq."""
        seq = self.seq[index]
        self.seq[index] = seq + 1
        loads = self.loads
        return self.prefixes[index] + _TAIL.pack(
            _TS_KEY, ts, _CPU_KEY, loads[(index + seq) & 1023], _RAM_KEY, loads[(index * 7 + seq * 3 + 512) & 1023],
            _SEQ_KEY, seq,
        )  # fmt: skip

    def burst(self, size: int, ts: float) -> list[bytes]:
        """The next ``size`` frames, round-robin over the servers, all stamped ``ts``."""
        prefixes, seqs, loads, pack, count = self.prefixes, self.seq, self.loads, _TAIL.pack, self.count
        cursor = self.cursor
        frames: list[bytes] = []
        append = frames.append
        for _ in range(size):
            seq = seqs[cursor]
            seqs[cursor] = seq + 1
            append(
                prefixes[cursor]
                + pack(_TS_KEY, ts, _CPU_KEY, loads[(cursor + seq) & 1023], _RAM_KEY,
                       loads[(cursor * 7 + seq * 3 + 512) & 1023], _SEQ_KEY, seq)
            )  # fmt: skip
            cursor += 1
            if cursor == count:
                cursor = 0
        self.cursor = cursor
        return frames


@dataclass
class LoadResult:
    """What one generator (or several, summed) did."""

    target_rate: int
    servers: int
    sent: int  # frames in the measured phase
    warmup_sent: int
    seconds: float  # from the first to the last frame of the measured phase
    rate: float  # sent / seconds
    cpu_seconds: float  # process CPU (all threads, incl. ZeroMQ's I/O thread) during the measured phase
    cpu_percent: float  # of one core
    processes: int = 1
    stopped_early: bool = False


def generate(
    endpoint: str,
    rate: int,
    servers: int,
    seconds: float,
    first: int = 0,
    warmup: float = 1.0,
    linger: float = 2.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[], None] = lambda: None,
) -> LoadResult:
    """Send ``rate`` frames/s (0 = as fast as possible) for ``seconds`` from ``servers`` servers.

    ``on_start`` is called when the measured phase begins (after the warm-up).
    """
    if not endpoint.startswith("tcp://127.0.0.1:"):
        raise ValueError(f"the load generator only sends to tcp://127.0.0.1:PORT, not {endpoint}")
    factory = FrameFactory(first, servers)
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    try:
        socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
        socket.setsockopt(zmq.SNDBUF, 4 * 1024 * 1024)
        socket.setsockopt(zmq.LINGER, int(linger * 1000))
        socket.connect(endpoint)
        send = socket.send
        # Slow joiner: frames sent before the subscription arrives are dropped by PUB.
        warmup_sent = 0
        warmup_end = time.monotonic() + warmup
        while time.monotonic() < warmup_end and not should_stop():
            send(factory.frame(0, time.time()))
            warmup_sent += 1
            time.sleep(WARMUP_FRAME_INTERVAL)
        total = int(rate * seconds) if rate > 0 else int(UNPACED_FRAMES_PER_SECOND_CAP * seconds)
        per_slice = max(1, int(rate * SLICE_SECONDS)) if rate > 0 else 1000
        hard_deadline = seconds * 1.5 + 2.0
        sent = 0
        stopped = False
        on_start()
        cpu_start = time.process_time()
        start = time.monotonic()
        elapsed = 0.0
        slice_index = 0
        while sent < total:
            elapsed = time.monotonic() - start
            if elapsed >= hard_deadline or should_stop():
                stopped = True
                break
            if rate > 0:
                due = min(total, int(rate * elapsed) + per_slice)
                size = min(due - sent, 5 * per_slice)  # catch up, but look at the clock often
            else:
                if elapsed >= seconds:
                    break
                size = min(per_slice, total - sent)
            if size > 0:
                for frame in factory.burst(size, time.time()):
                    send(frame)
                sent += size
            if rate > 0:
                slice_index = max(slice_index + 1, int(elapsed / SLICE_SECONDS))
                pause = start + slice_index * SLICE_SECONDS - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        elapsed = time.monotonic() - start
        cpu = time.process_time() - cpu_start
    finally:
        socket.close()  # lingers up to `linger` seconds so queued frames still go out
        context.term()
    return LoadResult(
        target_rate=rate, servers=servers, sent=sent, warmup_sent=warmup_sent, seconds=elapsed,
        rate=sent / elapsed if elapsed > 0 else 0.0, cpu_seconds=cpu,
        cpu_percent=100.0 * cpu / elapsed if elapsed > 0 else 0.0, stopped_early=stopped,
    )  # fmt: skip


def _generate_part(endpoint: str, rate: int, servers: int, seconds: float, first: int, warmup: float) -> dict:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    return asdict(generate(endpoint, rate, servers, seconds, first=first, warmup=warmup))


def generate_parallel(
    endpoint: str,
    rate: int,
    servers: int,
    seconds: float,
    processes: int,
    warmup: float = 1.0,
    on_start: Callable[[], None] = lambda: None,
) -> LoadResult:
    """Split servers and rate over ``processes`` generator processes; sum their results.

    With several processes ``on_start`` is called after the warm-up time, approximately.
    """
    if processes <= 1:
        return generate(endpoint, rate, servers, seconds, warmup=warmup, should_stop=_stop_requested, on_start=on_start)
    bounds = [servers * k // processes for k in range(processes + 1)]
    parts = [
        (endpoint, rate // processes, bounds[k + 1] - bounds[k], seconds, bounds[k], warmup) for k in range(processes)
    ]
    pool = multiprocessing.get_context("spawn").Pool(processes)
    try:
        pending = pool.starmap_async(_generate_part, parts)
        pending.wait(warmup + 1.0)  # children start up (~1 s) and warm up
        on_start()
        results = [LoadResult(**r) for r in pending.get(seconds * 2 + warmup + 30)]
    finally:
        pool.terminate()
        pool.join()
    elapsed = max(r.seconds for r in results)
    cpu = sum(r.cpu_seconds for r in results)
    sent = sum(r.sent for r in results)
    return LoadResult(
        target_rate=rate, servers=servers, sent=sent, warmup_sent=sum(r.warmup_sent for r in results),
        seconds=elapsed, rate=sent / elapsed if elapsed else 0.0, cpu_seconds=cpu,
        cpu_percent=100.0 * cpu / elapsed if elapsed else 0.0, processes=processes,
        stopped_early=any(r.stopped_early for r in results),
    )  # fmt: skip


_STOP = False


def _stop_requested() -> bool:
    return _STOP


def _request_stop(signum: int, frame: object) -> None:
    global _STOP
    _STOP = True


def _sink(endpoints: multiprocessing.Queue, results: multiprocessing.Queue, done: object, seconds: float) -> None:
    """Self-test receiver: a bound SUB that only counts frames.

    Stops when the generator is ``done`` and nothing arrived for 0.5 s, or after ``seconds``.
    """
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.RCVHWM, SEND_HIGH_WATER_MARK)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        port = socket.bind_to_random_port("tcp://127.0.0.1")
        endpoints.put(f"tcp://127.0.0.1:{port}")
        received = 0
        recv = socket.recv
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not socket.poll(500):
                if done.is_set():  # type: ignore[attr-defined]
                    break
                continue
            try:
                for _ in range(10_000):
                    recv(zmq.NOBLOCK)
                    received += 1
            except zmq.Again:
                pass
        results.put(received)
    finally:
        socket.close(linger=0)
        context.term()


def self_test(seconds: float, rate: int, servers: int) -> tuple[LoadResult, int]:
    """Run the generator into a counting sink process; return its result and what the sink got."""
    ctx = multiprocessing.get_context("spawn")
    endpoints, results, done = ctx.Queue(), ctx.Queue(), ctx.Event()
    sink_seconds = seconds * 2 + 15.0
    sink = ctx.Process(target=_sink, args=(endpoints, results, done, sink_seconds), daemon=True)
    sink.start()
    try:
        endpoint = endpoints.get(timeout=30)
        result = generate(endpoint, rate, servers, seconds, should_stop=_stop_requested)
        done.set()
        received = results.get(timeout=sink_seconds + 30)
    finally:
        done.set()
        sink.join(timeout=2)
        if sink.is_alive():
            sink.terminate()
            sink.join(timeout=5)
        if sink.is_alive():
            sink.kill()
            sink.join()
    return result, received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="collector ingest endpoint, tcp://127.0.0.1:PORT")
    parser.add_argument(
        "--rate", type=int, default=None, help="frames per second, 0 = unpaced (default 100000; 0 with --self-test)"
    )
    parser.add_argument("--servers", type=int, default=100_000, help="distinct simulated servers (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured phase (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds to wait for the subscription (default %(default)s)")
    parser.add_argument("--processes", type=int, default=1, help="generator processes (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON result line only")
    parser.add_argument("--self-test", action="store_true", help="measure the generator's own top speed into a sink")
    parser.add_argument("--runs", type=int, default=3, help="runs for --self-test (default %(default)s)")
    args = parser.parse_args(argv)
    if args.rate is None:
        args.rate = 0 if args.self_test else 100_000
    if args.servers < 1 or args.rate < 0 or args.seconds <= 0 or args.processes < 1:
        parser.error("need --servers >= 1, --rate >= 0, --seconds > 0, --processes >= 1")
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)

    if args.self_test:
        return _run_self_test(args)
    if not args.endpoint:
        parser.error("--endpoint is required (or use --self-test)")
    announce = (lambda: print(START_LINE, flush=True)) if args.json else (lambda: None)
    result = generate_parallel(
        args.endpoint, args.rate, args.servers, args.seconds, args.processes, args.warmup, on_start=announce
    )
    if args.json:
        print(json.dumps(asdict(result)), flush=True)
    else:
        print(
            f"sent {result.sent:,} frames (+{result.warmup_sent} warm-up) from {result.servers:,} servers "
            f"in {result.seconds:.2f} s: {result.rate:,.0f} frames/s (target {result.target_rate:,}); "
            f"generator CPU {result.cpu_percent:.0f}% of one core"
            + (" [stopped early]" if result.stopped_early else "")
        )
    return 0


def _run_self_test(args: argparse.Namespace) -> int:
    import harness  # bench/ is on sys.path: this file's directory

    paced = f"paced at {args.rate:,} frames/s" if args.rate else "unpaced"
    harness.print_header(f"loadgen self-test: one generator process, {paced}, into a sink process that counts frames")
    target = 100_000
    rates, delivered, cpus = [], [], []
    for run in range(1, args.runs + 1):
        result, received = self_test(args.seconds, args.rate, args.servers)
        rates.append(result.rate)
        cpus.append(result.cpu_percent)
        delivered.append(received / result.seconds)
        print(
            f"  run {run}: sent {result.sent:,} in {result.seconds:.2f} s = {result.rate:,.0f} frames/s, "
            f"CPU {result.cpu_percent:.0f}% of one core; sink received {received:,} (incl. warm-up)"
        )
        if _STOP:
            break
    harness.print_runs("generator send rate", rates, "frames/s")
    harness.print_runs("generator CPU", cpus, "% of one core")
    harness.print_runs("sink receive rate (approx.)", delivered, "frames/s")
    if args.rate:  # paced: did it hold the requested rate (within 1 %)?
        harness.verdict("generator send rate (median)", harness.median(rates), 0.99 * args.rate, "frames/s", True)
    else:
        harness.verdict("generator top speed (median)", harness.median(rates), target, "frames/s", True)
    per_core = harness.median([r / max(c, 1e-9) * 100 for r, c in zip(rates, cpus)])
    print(f"  generator frames per CPU-second (median): {per_core:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
