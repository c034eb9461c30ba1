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
    --steps (used by bench/peers.py) holds one connection and runs one paced
    phase per JSON command read from stdin, {"rate": R, "seconds": S}, printing
    {"ready": true, ...} once warmed up and one JSON result per command; servers
    and seqs carry on between phases. With --probe NAME it also sends server
    NAME's sample every 0.1 s in the same stream and reports their ts (so the
    time from send to visible can be measured); --first K starts at server K.
    It sends through pyzmq's Cython send directly (same frames, half the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import selectors
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import msgpack
import zmq

SLICE_SECONDS = 0.01
SEND_HIGH_WATER_MARK = 1_000_000
WARMUP_FRAME_INTERVAL = 0.05
UNPACED_FRAMES_PER_SECOND_CAP = 5_000_000  # the bound on frames when --rate 0
START_LINE = "measuring"  # printed (with --json) when the measured phase starts
PROBE_INTERVAL = 0.1  # seconds between two probe frames (--probe)
MAX_STEP_SECONDS = 3600  # --steps: the longest phase one command may ask for
COMMAND_POLL_SECONDS = 0.5  # --steps: how often a wait for the next command looks at SIGTERM

# Tail of each frame: "ts" float64, "cpu" float64, "ram" float64, "seq" uint64.
_TAIL = struct.Struct(">4sd5sd5sd5sQ")
_TS_KEY, _CPU_KEY, _RAM_KEY, _SEQ_KEY = b"\xa2ts\xcb", b"\xa3cpu\xcb", b"\xa3ram\xcb", b"\xa3seq\xcf"
_MAP_OF_SEVEN = b"\x87"


@contextlib.contextmanager
def _publisher(endpoint: str, linger: float) -> Iterator[zmq.Socket]:
    """A PUB socket connected to ``endpoint`` with a high send high-water mark; on exit it
    lingers up to ``linger`` seconds so queued frames still go out."""
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    try:
        socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
        socket.setsockopt(zmq.SNDBUF, 4 * 1024 * 1024)
        socket.setsockopt(zmq.LINGER, int(linger * 1000))
        socket.connect(endpoint)
        yield socket
    finally:
        socket.close()
        context.term()


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


class ProbeFrames:
    """Frames of one extra server (``--probe NAME``) whose samples a benchmark times from send to query.

    Sent every ``PROBE_INTERVAL`` seconds in the same stream as the load, so
    it queues behind exactly what the load queues behind.
    """

    def __init__(self, name: str, ip: str = "10.255.255.254") -> None:
        self.prefix = _MAP_OF_SEVEN + msgpack.packb({"v": 1, "fqdn": name, "ip": [ip]})[1:]
        self.seq = 0

    def frame(self, ts: float) -> bytes:
        """The probe's next frame stamped ``ts``; advances its seq."""
        seq = self.seq
        self.seq = seq + 1
        return self.prefix + _TAIL.pack(_TS_KEY, ts, _CPU_KEY, 1.0, _RAM_KEY, 1.0, _SEQ_KEY, seq)


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


@dataclass
class PhaseOutcome:
    """One paced phase: frames sent, how long it took, the CPU it cost, how far it fell behind."""

    sent: int
    seconds: float
    cpu_seconds: float
    stopped_early: bool
    max_lag_seconds: float  # the most the sent count was ever behind the schedule (0 when unpaced)
    probe_ts: list[float]  # the ``ts`` of every probe frame sent, in order


def _paced_phase(
    send: Callable[[bytes], object],
    factory: FrameFactory,
    rate: int,
    seconds: float,
    should_stop: Callable[[], bool],
    probe: ProbeFrames | None = None,
) -> PhaseOutcome:
    """Send ``rate`` frames/s (0 = as fast as possible) for ``seconds``, in 10 ms slices.

    With ``probe``, one probe frame goes out after the slice's frames every
    ``PROBE_INTERVAL`` seconds (not counted in ``sent``).
    """
    total = int(rate * seconds) if rate > 0 else int(UNPACED_FRAMES_PER_SECOND_CAP * seconds)
    per_slice = max(1, int(rate * SLICE_SECONDS)) if rate > 0 else 1000
    hard_deadline = seconds * 1.5 + 2.0
    sent = 0
    stopped = False
    max_lag = 0.0
    probe_ts: list[float] = []
    cpu_start = time.process_time()
    start = time.monotonic()
    next_probe = start
    elapsed = 0.0
    slice_index = 0
    while sent < total:
        elapsed = time.monotonic() - start
        if elapsed >= hard_deadline or should_stop():
            stopped = True
            break
        if rate > 0:
            max_lag = max(max_lag, elapsed - sent / rate)
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
        if probe is not None and start + elapsed >= next_probe:
            ts = time.time()
            send(probe.frame(ts))
            probe_ts.append(ts)
            next_probe += PROBE_INTERVAL
        if rate > 0:
            slice_index = max(slice_index + 1, int(elapsed / SLICE_SECONDS))
            pause = start + slice_index * SLICE_SECONDS - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu_start
    return PhaseOutcome(sent, elapsed, cpu, stopped, max_lag, probe_ts)


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
    with _publisher(endpoint, linger) as socket:
        send = socket.send
        # Slow joiner: frames sent before the subscription arrives are dropped by PUB.
        warmup_sent = 0
        warmup_end = time.monotonic() + warmup
        while time.monotonic() < warmup_end and not should_stop():
            send(factory.frame(0, time.time()))
            warmup_sent += 1
            time.sleep(WARMUP_FRAME_INTERVAL)
        on_start()
        phase = _paced_phase(send, factory, rate, seconds, should_stop)
    sent, elapsed, cpu, stopped = phase.sent, phase.seconds, phase.cpu_seconds, phase.stopped_early
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


def fast_send(socket: zmq.Socket) -> Callable[[bytes], object]:
    """``socket.send`` without pyzmq's Python layer on top of its Cython one: the same frames for
    about half the CPU per frame (0.5 vs 1.2 us here). Used by ``--steps`` only."""
    base = getattr(zmq.backend, "Socket", None)
    if base is not None and isinstance(socket, base) and hasattr(base, "send"):
        return base.send.__get__(socket)
    return socket.send


@dataclass
class StepResult:
    """What ``--steps`` prints for one command (one paced phase on the same connection)."""

    target_rate: int
    servers: int
    sent: int  # load frames (probe frames apart)
    seconds: float
    rate: float
    cpu_seconds: float  # process CPU, all threads (the ZeroMQ I/O thread too)
    cpu_percent: float  # of one core
    max_lag_seconds: float
    probe_ts: list[float]
    stopped_early: bool


def read_commands(fd: int, should_stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """JSON objects, one a line, read from file descriptor ``fd`` until EOF, ``{"quit": true}`` or
    ``should_stop()``; a line that is not a JSON object yields ``{"error": ...}``."""
    buffer = b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    try:
        while not should_stop():
            if b"\n" not in buffer:
                if not selector.select(COMMAND_POLL_SECONDS):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                buffer += chunk
                continue
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                command = json.loads(line)
            except ValueError:
                command = None
            if not isinstance(command, dict):
                yield {"error": f"not a JSON object: {line[:80]!r}"}
                continue
            if command.get("quit"):
                return
            yield command
    finally:
        selector.close()


def run_steps(
    endpoint: str,
    servers: int,
    commands: Iterable[dict],
    emit: Callable[[dict], None],
    first: int = 0,
    warmup: float = 1.0,
    probe: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """One connection, one paced phase per command ``{"rate": R, "seconds": S}`` (``--steps``).

    Servers and their seqs carry on from one phase to the next, so a
    benchmark can change the rate without a new connection (and without a
    new slow-joiner window). ``emit`` gets ``{"ready": true, "warmup_sent": n}``
    after the warm-up, then one ``StepResult`` (as a dict) or ``{"error": ...}``
    per command.
    """
    if not endpoint.startswith("tcp://127.0.0.1:"):
        raise ValueError(f"the load generator only sends to tcp://127.0.0.1:PORT, not {endpoint}")
    factory = FrameFactory(first, servers)
    probe_frames = ProbeFrames(probe) if probe else None
    with _publisher(endpoint, linger=2.0) as socket:
        send = fast_send(socket)
        warmup_sent = 0
        warmup_end = time.monotonic() + warmup
        while time.monotonic() < warmup_end and not should_stop():
            send(factory.frame(0, time.time()))
            warmup_sent += 1
            time.sleep(WARMUP_FRAME_INTERVAL)
        emit({"ready": True, "warmup_sent": warmup_sent})
        for command in commands:
            rate, seconds = command.get("rate"), command.get("seconds")
            if "error" in command or not isinstance(rate, int) or isinstance(rate, bool) or rate < 0 \
                    or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_STEP_SECONDS:
                emit({"error": command.get("error") or f"need rate >= 0 and 0 < seconds <= {MAX_STEP_SECONDS}"})
                continue
            phase = _paced_phase(send, factory, rate, float(seconds), should_stop, probe_frames)
            emit(asdict(StepResult(
                target_rate=rate, servers=servers, sent=phase.sent, seconds=phase.seconds,
                rate=phase.sent / phase.seconds if phase.seconds > 0 else 0.0, cpu_seconds=phase.cpu_seconds,
                cpu_percent=100.0 * phase.cpu_seconds / phase.seconds if phase.seconds > 0 else 0.0,
                max_lag_seconds=phase.max_lag_seconds, probe_ts=phase.probe_ts, stopped_early=phase.stopped_early,
            )))  # fmt: skip
            if should_stop():
                break


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
    parser.add_argument("--fleet", action="store_true",
                        help="simulate full agents (--servers of them): hello, 1 sample/s, a stats snapshot every "
                             "--snapshot-every samples; --rate does not apply")
    parser.add_argument("--snapshot-every", type=int, default=FLEET_SNAPSHOT_EVERY,
                        help="--fleet: samples between two snapshots of an agent, 0 = none (default %(default)s)")
    parser.add_argument("--hello-every", type=int, default=FLEET_HELLO_EVERY,
                        help="--fleet: samples between two hellos of an agent, 0 = only the first (default %(default)s)")
    parser.add_argument("--steps", action="store_true",
                        help="hold one connection and run one paced phase per JSON command read from stdin "
                             '({"rate": R, "seconds": S}); print one JSON result line per command (used by peers.py)')
    parser.add_argument("--probe", metavar="NAME", help="--steps: also send server NAME's sample every 0.1 s")
    parser.add_argument("--first", type=int, default=0, help="--steps: index of the first server (default 0)")
    args = parser.parse_args(argv)
    if args.steps:
        if args.self_test or args.fleet or args.processes != 1 or args.rate is not None:
            parser.error("--steps takes its rates from stdin: no --self-test, --fleet, --processes or --rate")
        if not args.endpoint:
            parser.error("--endpoint is required")
        if args.servers < 1 or args.first < 0:
            parser.error("need --servers >= 1 and --first >= 0")
        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)
        run_steps(
            args.endpoint, args.servers, read_commands(sys.stdin.fileno(), _stop_requested),
            lambda result: print(json.dumps(result), flush=True), first=args.first, warmup=args.warmup,
            probe=args.probe, should_stop=_stop_requested,
        )  # fmt: skip
        return 0
    if args.probe or args.first:
        parser.error("--probe and --first go with --steps")
    if args.fleet:
        if args.self_test or args.rate is not None or args.processes != 1:
            parser.error("--fleet runs one process at 1 sample/s per agent: no --self-test, --rate or --processes")
        if not args.endpoint:
            parser.error("--endpoint is required")
        if args.servers < 1 or args.seconds <= 0 or args.snapshot_every < 0 or args.hello_every < 0:
            parser.error("need --servers >= 1, --seconds > 0, --snapshot-every >= 0, --hello-every >= 0")
        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)
        return _run_fleet(args)
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


# ---------------------------------------------------------------------- fleet mode (used by bench/nodes.py)
#
# ``--fleet`` simulates full agents instead of bare samples: every agent says
# hello first (and again every ``hello_every`` samples, i.e. 60 s), sends one
# protocol-v1 sample a second and a protocol-v2 stats snapshot every
# ``snapshot_every`` samples (5 s), with one seq counter per agent shared by all
# three kinds, as ``servertrack agent`` does. Agent ``i`` is offset by ``i``
# samples in both cycles, so snapshots and re-hellos are spread evenly over
# time (N/5 snapshots and N/60 hellos every second) rather than in bursts.
#
# Snapshots are built from ``FLEET_TEMPLATES`` realistic stats maps (4-16 CPUs,
# 3 disks, 3 interfaces, ~300 processes, 20 + 20 top processes with real-looking
# names and command lines up to ~120 characters), each packed once. Per frame
# the generator copies the template's bytes and overwrites ~30-45 numbers in
# place (the cpu and per-CPU shares, load, memory, disk and network rates, the
# top processes' CPU shares; float64 / uint64 encodings at offsets found once),
# so a snapshot costs a few microseconds instead of a msgpack.packb of ~8 KB.

FLEET_SNAPSHOT_EVERY = 5
FLEET_HELLO_EVERY = 60
FLEET_TEMPLATES = 8
MAX_FLEET_TOP = 20  # entries of top_cpu and of top_memory (the protocol's maximum)
FLEET_AGENT_VERSION = "0.1.0"
PROGRESS_INTERVAL = 1.0  # seconds between two progress reports of generate_fleet

# Tail of hello and snapshot frames: "ts" float64, "seq" uint64 (keys in any order are fine in a map).
_FLEET_TAIL = struct.Struct(">4sd5sQ")
_FLOAT_SLOT = struct.Struct(">d")
_UINT_SLOT = struct.Struct(">Q")
_GIB = 2**30

# (name, user, command line): plausible processes of a Linux server.
FLEET_PROCESSES = [
    ("postgres", "postgres", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c config_file=/etc/postgresql/15/main/postgresql.conf"),
    ("postgres", "postgres", "postgres: 15/main: checkpointer"),
    ("postgres", "postgres", "postgres: 15/main: app appdb 10.0.3.17(51234) idle"),
    ("java", "app", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xms2g -Xmx4g -XX:+UseG1GC -jar /opt/orders/orders-service.jar --spring.profiles.active=prod"),
    ("java", "elasticsearch", "/usr/share/elasticsearch/jdk/bin/java -Xshare:auto -Des.networkaddress.cache.ttl=60 -XX:+AlwaysPreTouch -Xms8g -Xmx8g"),
    ("nginx", "www-data", "nginx: worker process"),
    ("nginx", "root", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"),
    ("python3", "app", "/opt/web/venv/bin/python3 /opt/web/venv/bin/gunicorn web.wsgi:application --workers 4 --bind 127.0.0.1:8000"),
    ("node", "app", "node /srv/frontend/dist/server.js --port 3000 --max-old-space-size=2048"),
    ("dockerd", "root", "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"),
    ("containerd", "root", "/usr/bin/containerd"),
    ("containerd-shim", "root", "/usr/bin/containerd-shim-runc-v2 -namespace moby -id 3f9c2b7e1d04a8c6b5e2f7a9d1c3e5b7 -address /run/containerd/containerd.sock"),
    ("systemd", "root", "/lib/systemd/systemd --system --deserialize 31"),
    ("systemd-journal", "root", "/lib/systemd/systemd-journald"),
    ("sshd", "root", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"),
    ("redis-server", "redis", "/usr/bin/redis-server 127.0.0.1:6379"),
    ("node_exporter", "prometheus", "/usr/bin/prometheus-node-exporter --collector.systemd --collector.processes --web.listen-address=:9100"),
    ("kworker/u16:2-events_unbound", "root", ""),
    ("ksoftirqd/0", "root", ""),
    ("rsyslogd", "syslog", "/usr/sbin/rsyslogd -n -iNONE"),
    ("cron", "root", "/usr/sbin/cron -f -P"),
    ("chronyd", "_chrony", "/usr/sbin/chronyd -F 1"),
    ("haproxy", "haproxy", "/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -S /run/haproxy-master.sock"),
    ("mysqld", "mysql", "/usr/sbin/mysqld --basedir=/usr --datadir=/var/lib/mysql --plugin-dir=/usr/lib/mysql/plugin --log-error=/var/log/mysql/error.log"),
    ("php-fpm8.2", "www-data", "php-fpm: pool www"),
    ("gitlab-runner", "gitlab-runner", "/usr/bin/gitlab-runner run --working-directory /home/gitlab-runner --config /etc/gitlab-runner/config.toml --service gitlab-runner"),
    ("python3", "root", "/usr/bin/python3 -m servertrack agent --collector tcp://collector.example.net:5556 --interval 1"),
    ("snapd", "root", "/usr/lib/snapd/snapd"),
    ("memcached", "memcache", "/usr/bin/memcached -m 1024 -p 11211 -u memcache -l 127.0.0.1 -P /var/run/memcached/memcached.pid"),
    ("kubelet", "root", "/usr/bin/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"),
]


def node_name(index: int) -> str:
    """The fqdn of simulated node ``index`` in fleet mode."""
    return f"node-{index:05d}.bench"


def node_ips(index: int) -> list[str]:
    """Two stable addresses of node ``index``: ``10.x.y.z`` and ``fd00::x:y``."""
    n = index + 1
    return [server_ip(index), f"fd00::{(n >> 16) & 0xFFFF:x}:{n & 0xFFFF:x}"]


class _Marks:
    """Unique marker numbers put into a template, so that their byte offsets can be found after packing."""

    def __init__(self) -> None:
        self.floats: list[tuple[float, float]] = []  # (marker, scale)
        self.uints: list[tuple[int, int, int]] = []  # (marker, low, high)

    def f(self, scale: float) -> float:
        """A float slot whose values are pool values (0-100) times ``scale``."""
        marker = 0.0123456789 + len(self.floats) * 1e-7
        self.floats.append((marker, scale))
        return marker

    def u(self, low: int, high: int) -> int:
        """A uint64 slot whose values lie in [low, high)."""
        marker = 2**62 + 12_345 + len(self.uints)
        self.uints.append((marker, low, high))
        return marker


class SnapshotTemplate:
    """One packed ``stats`` map plus the offsets of the numbers that change from frame to frame."""

    def __init__(self, index: int, seed: int = 1) -> None:
        rng = random.Random(seed * 1000 + index)
        marks = _Marks()
        self.cpu_count = (4, 8, 12, 16)[index % 4]
        self.memory_total = (8, 16, 32, 64)[(index // 2) % 4] * _GIB
        total = self.memory_total
        now = time.time()
        self.boot_time = float(int(now - rng.uniform(2, 200) * 86_400))

        def process(pid_base: int, k: int, by_cpu: bool) -> dict:
            name, user, cmdline = FLEET_PROCESSES[rng.randrange(len(FLEET_PROCESSES))]
            rss = int(total * (0.2 if by_cpu else 0.3) / (k + 1) * rng.uniform(0.5, 1.0))
            return {
                "pid": pid_base + rng.randrange(1, 60_000),
                "name": name, "user": user,
                "status": "running" if by_cpu and k < 2 else "sleeping",
                "cpu_percent": marks.f(0.5) if by_cpu and k < 5 else round(rng.uniform(0.0, 3.0), 1),
                "rss": rss,
                "memory_percent": round(100.0 * rss / total, 2),
                "create_time": self.boot_time + round(rng.uniform(10, 86_400), 2),
                "cmdline": cmdline[:120],
            }  # fmt: skip

        self.stats: dict = {
            "cpu": {
                "percent": marks.f(1.0),
                "per_cpu": [marks.f(1.0) for _ in range(self.cpu_count)],
                "load_avg": [marks.f(0.04 * self.cpu_count) for _ in range(3)],
                "times_percent": {"user": marks.f(0.6), "system": marks.f(0.2), "idle": marks.f(1.0), "iowait": marks.f(0.05)},
                "freq_mhz": float(rng.choice((2100, 2400, 2600, 3000, 3500))),
                "times_seconds": {"user": marks.f(1e6), "system": marks.f(2e5), "idle": marks.f(1e7), "iowait": marks.f(1e4)},
            },
            "memory": {"total": total, "available": marks.u(total // 10, total), "used": marks.u(total // 20, total),
                       "percent": marks.f(1.0), "free": marks.u(total // 20, total)},
            "swap": {"total": 4 * _GIB, "used": rng.randrange(0, 256) * 2**20, "percent": round(rng.uniform(0, 6), 1)},
            "disks": [
                {"device": "/dev/nvme0n1p2", "mountpoint": "/", "fstype": "ext4"},
                {"device": "/dev/nvme0n1p1", "mountpoint": "/boot/efi", "fstype": "vfat"},
                {"device": "/dev/sdb1", "mountpoint": "/var/lib/data", "fstype": "xfs"},
            ],
            "disk_io": {"read_bytes_per_s": marks.f(2e5), "write_bytes_per_s": marks.f(5e5),
                        "read_ops_per_s": marks.f(5.0), "write_ops_per_s": marks.f(10.0),
                        "read_count": marks.u(10**6, 10**8), "write_count": marks.u(10**6, 10**8),
                        "read_bytes": marks.u(10**10, 10**12), "write_bytes": marks.u(10**10, 10**12)},
            "network": [],
            "processes": {
                "count": rng.randrange(250, 350),
                "top_cpu": [process(1000 * k, k, True) for k in range(MAX_FLEET_TOP)],
                "top_memory": [process(1000 * k + 500, k, False) for k in range(MAX_FLEET_TOP)],
            },
        }  # fmt: skip
        for disk, size in zip(self.stats["disks"], (rng.choice((100, 250, 500)) * _GIB, 512 * 2**20, 2048 * _GIB)):
            used = int(size * rng.uniform(0.1, 0.9))
            disk.update(total=size, used=used, free=size - used, percent=round(100.0 * used / size, 1))
        for interface in ("docker0", "eth0", "lo"):
            self.stats["network"].append({
                "interface": interface,
                "rx_bytes_per_s": marks.f(1e4), "tx_bytes_per_s": marks.f(1e4),
                "rx_packets_per_s": marks.f(10.0), "tx_packets_per_s": marks.f(10.0),
                "rx_errors": 0, "tx_errors": 0, "rx_drops": rng.randrange(0, 50), "tx_drops": 0,
            })  # fmt: skip
        self.packed = msgpack.packb(self.stats)
        self.float_slots: list[tuple[int, float]] = []
        self.uint_slots: list[tuple[int, int, int]] = []
        for marker, scale in marks.floats:
            self.float_slots.append((self._offset(b"\xcb" + _FLOAT_SLOT.pack(marker)), scale))
        for marker, low, high in marks.uints:
            self.uint_slots.append((self._offset(b"\xcf" + _UINT_SLOT.pack(marker)), low, high - low))

    def _offset(self, encoded: bytes) -> int:
        if self.packed.count(encoded) != 1:
            raise AssertionError("snapshot template marker is not unique")
        return self.packed.index(encoded) + 1

    def render(self, pool: list[float], spin: int) -> bytearray:
        """The packed stats with every slot set from ``pool`` (1024 values in [0, 100)) at position ``spin``."""
        buf = bytearray(self.packed)
        pack_float, pack_uint = _FLOAT_SLOT.pack_into, _UINT_SLOT.pack_into
        for j, (offset, scale) in enumerate(self.float_slots):
            pack_float(buf, offset, pool[(spin + 37 * j) & 1023] * scale)
        for j, (offset, low, span) in enumerate(self.uint_slots):
            pack_uint(buf, offset, low + int(span * pool[(spin + 91 * j) & 1023] / 100.0))
        return buf



class FleetFactory:
    """Frames of ``nodes`` full agents: hello, 1 Hz samples, snapshots; one seq counter per agent."""

    def __init__(self, nodes: int, snapshot_every: int = FLEET_SNAPSHOT_EVERY, hello_every: int = FLEET_HELLO_EVERY,
                 seed: int = 1, templates: int = FLEET_TEMPLATES) -> None:
        self.count = nodes
        self.snapshot_every = snapshot_every
        self.hello_every = hello_every
        self.templates = [SnapshotTemplate(k, seed) for k in range(templates)]
        self.names = [node_name(i) for i in range(nodes)]
        self.ips = [node_ips(i) for i in range(nodes)]
        self.sample_prefixes = [
            _MAP_OF_SEVEN + msgpack.packb({"v": 1, "fqdn": self.names[i], "ip": self.ips[i]})[1:] for i in range(nodes)
        ]
        # Map of 6: v, kind, fqdn, stats (template bytes follow), then the tail's ts and seq.
        self.snapshot_prefixes = [
            b"\x86" + msgpack.packb({"v": 2, "kind": "snapshot", "fqdn": name})[1:] + b"\xa5stats" for name in self.names
        ]
        self.seq = [0] * nodes
        self.samples = [0] * nodes
        self.cursor = 0
        rng = random.Random(seed)
        self.pool = [round(rng.uniform(0.0, 100.0), 2) for _ in range(1024)]
        self.sent_samples = self.sent_snapshots = self.sent_hellos = 0
        self.snapshot_bytes = 0

    def template_of(self, index: int) -> SnapshotTemplate:
        return self.templates[index % len(self.templates)]

    def hello(self, index: int, ts: float) -> bytes:
        """Node ``index``'s hello now; advances its seq."""
        seq = self.seq[index]
        self.seq[index] = seq + 1
        self.sent_hellos += 1
        template = self.template_of(index)
        return msgpack.packb({
            "v": 2, "kind": "hello", "fqdn": self.names[index], "ts": ts, "seq": seq, "ip": self.ips[index],
            "hostname": self.names[index].split(".", 1)[0], "boot_time": template.boot_time,
            "os": "Linux 6.1.0-18-amd64", "platform": "x86_64", "cpu_count": template.cpu_count,
            "memory_total": template.memory_total, "agent_version": FLEET_AGENT_VERSION, "interval": 1.0,
        })  # fmt: skip

    def ticks(self, size: int, ts: float) -> list[bytes]:
        """The frames of the next ``size`` agent ticks (round-robin), all stamped ``ts``."""
        seqs, samples, pool, count = self.seq, self.samples, self.pool, self.count
        prefixes, snapshot_prefixes, templates = self.sample_prefixes, self.snapshot_prefixes, self.templates
        n_templates = len(templates)
        pack, fleet_pack = _TAIL.pack, _FLEET_TAIL.pack
        snapshot_every, hello_every = self.snapshot_every, self.hello_every
        cursor = self.cursor
        frames: list[bytes] = []
        append = frames.append
        snapshots = snapshot_bytes = 0
        for _ in range(size):
            done = samples[cursor]
            if done == 0 or (hello_every and (done + cursor) % hello_every == 0):
                append(self.hello(cursor, ts))
            seq = seqs[cursor]
            append(
                prefixes[cursor]
                + pack(_TS_KEY, ts, _CPU_KEY, pool[(cursor + seq) & 1023], _RAM_KEY,
                       pool[(cursor * 7 + seq * 3 + 512) & 1023], _SEQ_KEY, seq)
            )  # fmt: skip
            seq += 1
            done += 1
            if snapshot_every and (done + cursor) % snapshot_every == 0:
                frame = b"".join((
                    snapshot_prefixes[cursor],
                    templates[cursor % n_templates].render(pool, cursor * 31 + seq),
                    fleet_pack(b"\xa2ts\xcb", ts, b"\xa3seq\xcf", seq),
                ))  # fmt: skip
                append(frame)
                snapshots += 1
                snapshot_bytes += len(frame)
                seq += 1
            seqs[cursor] = seq
            samples[cursor] = done
            cursor += 1
            if cursor == count:
                cursor = 0
        self.cursor = cursor
        self.sent_samples += size
        self.sent_snapshots += snapshots
        self.snapshot_bytes += snapshot_bytes
        return frames


@dataclass
class FleetResult:
    """What the fleet generator did in its measured (paced) phase; warm-up hellos are counted apart."""

    nodes: int
    seconds: float
    samples: int
    snapshots: int
    hellos: int
    warmup_sent: int
    frames: int
    bytes: int
    sample_rate: float
    snapshot_rate: float
    hello_rate: float
    avg_snapshot_bytes: float
    cpu_seconds: float
    cpu_percent: float  # of one core
    max_lag_seconds: float  # how far the sends ever fell behind the schedule (<= 0: never)
    stopped_early: bool = False


def generate_fleet(
    endpoint: str,
    nodes: int,
    seconds: float,
    warmup: float = 1.0,
    linger: float = 2.0,
    snapshot_every: int = FLEET_SNAPSHOT_EVERY,
    hello_every: int = FLEET_HELLO_EVERY,
    should_stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[], None] = lambda: None,
    on_progress: Callable[[dict], None] = lambda progress: None,
) -> FleetResult:
    """Simulate ``nodes`` agents (1 sample/s each, see ``FleetFactory``) for ``seconds``.

    ``on_progress`` gets cumulative counts about once a second: ``t``
    (``time.monotonic()``, system-wide on Linux), ``samples``, ``snapshots``,
    ``hellos``, ``frames``, ``cpu`` (process CPU seconds).
    """
    if not endpoint.startswith("tcp://127.0.0.1:"):
        raise ValueError(f"the load generator only sends to tcp://127.0.0.1:PORT, not {endpoint}")
    factory = FleetFactory(nodes, snapshot_every, hello_every)
    with _publisher(endpoint, linger) as socket:
        send = socket.send
        # Slow joiner: node 0 says hello a few times while the subscription arrives (its seq goes on after).
        warmup_sent = 0
        warmup_end = time.monotonic() + warmup
        while time.monotonic() < warmup_end and not should_stop():
            send(factory.hello(0, time.time()))
            warmup_sent += 1
            time.sleep(WARMUP_FRAME_INTERVAL)
        factory.sent_hellos = 0
        total = int(nodes * seconds)  # agent ticks (one sample each)
        per_slice = max(1, int(nodes * SLICE_SECONDS))
        hard_deadline = seconds * 1.5 + 2.0
        ticks = frames_sent = nbytes = 0
        max_lag = -1.0
        stopped = False
        on_start()
        cpu_start = time.process_time()
        start = time.monotonic()
        next_progress = start
        slice_index = 0
        while ticks < total:
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= hard_deadline or should_stop():
                stopped = True
                break
            if now >= next_progress:
                on_progress({"t": now, "samples": factory.sent_samples, "snapshots": factory.sent_snapshots,
                             "hellos": factory.sent_hellos, "frames": frames_sent,
                             "cpu": time.process_time() - cpu_start})  # fmt: skip
                next_progress += PROGRESS_INTERVAL
            max_lag = max(max_lag, elapsed - ticks / nodes)
            due = min(total, int(nodes * elapsed) + per_slice)
            size = min(due - ticks, 5 * per_slice)  # catch up, but look at the clock often
            if size > 0:
                for frame in factory.ticks(size, time.time()):
                    send(frame)
                    nbytes += len(frame)
                    frames_sent += 1
                ticks += size
            slice_index = max(slice_index + 1, int(elapsed / SLICE_SECONDS))
            pause = start + slice_index * SLICE_SECONDS - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        end = time.monotonic()
        elapsed = end - start
        cpu = time.process_time() - cpu_start
        on_progress({"t": end, "samples": factory.sent_samples, "snapshots": factory.sent_snapshots,
                     "hellos": factory.sent_hellos, "frames": frames_sent, "cpu": cpu})  # fmt: skip
    per = (lambda n: n / elapsed) if elapsed > 0 else (lambda n: 0.0)
    return FleetResult(
        nodes=nodes, seconds=elapsed, samples=factory.sent_samples, snapshots=factory.sent_snapshots,
        hellos=factory.sent_hellos, warmup_sent=warmup_sent, frames=frames_sent, bytes=nbytes,
        sample_rate=per(factory.sent_samples), snapshot_rate=per(factory.sent_snapshots),
        hello_rate=per(factory.sent_hellos),
        avg_snapshot_bytes=factory.snapshot_bytes / factory.sent_snapshots if factory.sent_snapshots else 0.0,
        cpu_seconds=cpu, cpu_percent=100.0 * per(cpu), max_lag_seconds=max_lag, stopped_early=stopped,
    )  # fmt: skip


def _run_fleet(args: argparse.Namespace) -> int:
    if args.json:
        announce: Callable[[], None] = lambda: print(START_LINE, flush=True)
        progress: Callable[[dict], None] = lambda p: print(json.dumps({"progress": p}), flush=True)
    else:
        announce, progress = (lambda: None), (lambda p: None)
    result = generate_fleet(
        args.endpoint, args.servers, args.seconds, warmup=args.warmup, snapshot_every=args.snapshot_every,
        hello_every=args.hello_every, should_stop=_stop_requested, on_start=announce, on_progress=progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps(asdict(result)), flush=True)
    else:
        print(
            f"fleet of {result.nodes:,} agents for {result.seconds:.2f} s: {result.sample_rate:,.0f} samples/s, "
            f"{result.snapshot_rate:,.0f} snapshots/s (avg {result.avg_snapshot_bytes:,.0f} B), "
            f"{result.hello_rate:,.1f} hellos/s; {result.bytes / result.seconds / 1e6:.1f} MB/s; "
            f"generator CPU {result.cpu_percent:.0f}% of one core, max lag {result.max_lag_seconds:.3f} s"
            + (" [stopped early]" if result.stopped_early else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
