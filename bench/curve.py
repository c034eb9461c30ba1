"""What CURVE costs the collector: ingest over 1,000 CURVE connections vs plain, in the same run.

The issue's figure: "ingest at 100k samples/s from 1,000 CURVE connections
(each carrying many servers) vs plain, same run: CPU ratio (goal <= 1.5x) and
0 loss."

How
    Keys are made in a temporary directory (``zmq.auth.create_certificates``):
    one collector pair and ``--connections`` (1,000) agent pairs, the agents'
    public ``.key`` files copied into the ``--allowed-agents`` directory.

    Each round starts a real ``servertrack serve --store memory`` (plain),
    measures it, stops it, then the same with ``--curve-secret`` and
    ``--allowed-agents`` (every other flag the same), and measures that; the
    order alternates from round to round (plain first in odd rounds) so a
    drift of the shared machine does not favour one side.

    The load comes from one sender process (this script with ``--sender``):
    ``--servers`` (100,000) servers, each reporting once a second, over
    ``--connections`` XPUB sockets in one ``zmq.Context`` (2 I/O threads);
    server ``s`` is always sent on connection ``s % connections`` (so each
    connection carries 100 servers and, under CURVE, the key that first sent
    a name keeps owning it). Frames are built by ``loadgen.FrameFactory`` and
    paced in 10 ms slices by ``loadgen``'s paced phase, sent with pyzmq's
    Cython send; under CURVE every socket is a CURVE client with its own key
    pair. XPUB (PUB that also reads subscriptions) tells the sender when the
    collector's subscription has arrived on each connection, i.e. when its
    handshake is done and nothing more is lost to the slow joiner.

    Warm-up: the sender waits until all connections are subscribed, then
    sends one sample of each connection's first server; the script waits until
    ``/stats`` counts every one of them (all connections deliver, ZAP passed).
    Then ``--settle`` (5) seconds at the full rate (every server's first
    sample: new names), not measured; then the measured phase of
    ``--seconds`` (30). Over it (from just before the sender starts the phase
    to the moment it reports the end) the script reads the serve process's CPU
    time (psutil user + system of the whole process, its libzmq I/O threads
    and the ZAP handler included) and ``/stats`` ``received``:

    - CPU µs per sample = CPU seconds / samples received in the window;
    - CPU share = CPU seconds / wall seconds (% of one core);
    - the sender's achieved rate, how far it fell behind its schedule, and
      its own CPU (whole process, I/O threads included), for context.

    After the load, once the service is idle: ``lost`` (seq gaps) and every
    ``dropped`` reason over the whole run must be 0, and ``received`` must
    equal every frame the sender sent (probe + settle + measured).

    Ratio: CURVE / plain of the median CPU µs per sample; goal <= 1.5. A run
    in which the sender fell behind (achieved < 99 % of the rate) is flagged
    INVALID: it measured the sender.

Bounds
    Everything on 127.0.0.1; at most ``--runs`` (<= 10) rounds of two
    services, ``--seconds`` <= 120; every wait is bounded; every process
    started is stopped in a ``finally``; the temporary key directory is
    removed at the end.

Usage
    python bench/curve.py                      # 3 rounds, 30 s measured each
    python bench/curve.py --seconds 5 --settle 3 --runs 1 --servers 20000 --rate 20000   # a short check
    --json prints one JSON object with every run and the medians at the end.
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq
import zmq.auth

import loadgen
from peers import SenderProcess
from profile_ingest import summarize

TARGET_RATIO = 1.5
IO_THREADS = 2
SUBSCRIBE_TIMEOUT = 60.0  # seconds for every connection's handshake and subscription
PROBE_TIMEOUT = 30.0  # seconds for /stats to count every connection's probe sample
COLLECTOR_KEY_NAME = "collector"
DRAIN_TIMEOUT = 30.0  # seconds for the service to receive what was sent
DRAIN_POLL = 0.05


# ------------------------------------------------------------------------------------------------ keys


@dataclass(frozen=True)
class KeyFiles:
    """Where ``make_keys`` put the key files."""

    collector_secret: Path  # collector.key_secret (for serve --curve-secret)
    collector_public: Path  # collector.key (what agents are given)
    allowed: Path  # the agents' public .key files only (serve --allowed-agents)
    agents: Path  # the agents' .key and .key_secret files (the sender reads these)


def agent_key_name(index: int) -> str:
    return f"agent-{index:05d}"


def make_keys(directory: Path, agents: int) -> KeyFiles:
    """A collector key pair and ``agents`` agent key pairs as ZeroMQ certificates under ``directory``."""
    collector, allowed, agent_dir = directory / "collector", directory / "allowed", directory / "agents"
    for path in (collector, allowed, agent_dir):
        path.mkdir(mode=0o700)
    public, secret = zmq.auth.create_certificates(collector, COLLECTOR_KEY_NAME)
    for index in range(agents):
        agent_public, _ = zmq.auth.create_certificates(agent_dir, agent_key_name(index))
        shutil.copyfile(agent_public, allowed / os.path.basename(agent_public))
    return KeyFiles(Path(secret), Path(public), allowed, agent_dir)


def load_agent_keys(directory: Path, agents: int) -> list[tuple[bytes, bytes]]:
    """The (public, secret) pairs of agents ``0 .. agents - 1`` written by ``make_keys``."""
    pairs = []
    for index in range(agents):
        public, secret = zmq.auth.load_certificate(directory / f"{agent_key_name(index)}.key_secret")
        if secret is None:
            raise ValueError(f"no secret key for {agent_key_name(index)} in {directory}")
        pairs.append((public, secret))
    return pairs


# ---------------------------------------------------------------------------------------------- sender


def connection_of(server: int, connections: int) -> int:
    """The connection that carries server ``server`` (always the same one)."""
    return server % connections


def dispatcher(sends: Sequence[Callable[[bytes], object]], servers: int, cursor: int) -> Callable[[bytes], None]:
    """A send function for frames in ``FrameFactory.burst`` order (round-robin over ``servers`` from
    ``cursor``): the k-th frame goes out on its server's connection."""
    order = [sends[connection_of(s, len(sends))] for s in range(servers)]
    next_send = itertools.cycle(order[cursor:] + order[:cursor]).__next__

    def send(frame: bytes) -> None:
        next_send()(frame)

    return send


class Publishers:
    """``connections`` XPUB sockets in one context, CURVE clients when ``server_key`` is given."""

    def __init__(self, endpoint: str, connections: int, server_key: bytes | None,
                 pairs: Sequence[tuple[bytes, bytes]]) -> None:
        if not endpoint.startswith("tcp://127.0.0.1:"):
            raise ValueError(f"the sender only sends to tcp://127.0.0.1:PORT, not {endpoint}")
        self.context = zmq.Context(io_threads=IO_THREADS)
        self.context.set(zmq.MAX_SOCKETS, connections + 64)
        self.sockets: list[zmq.Socket] = []
        try:
            for index in range(connections):
                socket = self.context.socket(zmq.XPUB)
                self.sockets.append(socket)
                socket.setsockopt(zmq.SNDHWM, loadgen.SEND_HIGH_WATER_MARK)
                socket.setsockopt(zmq.LINGER, 2000)
                if server_key is not None:
                    socket.curve_serverkey = server_key
                    socket.curve_publickey, socket.curve_secretkey = pairs[index]
                socket.connect(endpoint)
        except BaseException:
            self.close()
            raise
        self.sends = [loadgen.fast_send(socket) for socket in self.sockets]

    def wait_subscribed(self, timeout: float) -> tuple[int, float]:
        """Wait until every socket has read a subscription (its handshake is done); return how many
        did and the seconds it took."""
        started = time.monotonic()
        poller = zmq.Poller()
        waiting = set(range(len(self.sockets)))
        for socket in self.sockets:
            poller.register(socket, zmq.POLLIN)
        index_of = {socket: index for index, socket in enumerate(self.sockets)}
        while waiting and time.monotonic() - started < timeout and not loadgen._stop_requested():
            for socket, _ in poller.poll(200):
                while socket.poll(0):
                    socket.recv()
                waiting.discard(index_of[socket])
        return len(self.sockets) - len(waiting), time.monotonic() - started

    def close(self) -> None:
        for socket in self.sockets:
            socket.close()
        self.context.term()


def run_sender(args: argparse.Namespace) -> int:
    """``--sender``: connect, report when subscribed, then obey commands from stdin (one JSON line each):
    ``{"probe": true}`` (one sample of each connection's first server) or ``{"rate": R, "seconds": S}``."""
    signal.signal(signal.SIGTERM, loadgen._request_stop)
    signal.signal(signal.SIGINT, loadgen._request_stop)
    server_key = pairs = None
    if args.collector_key:
        server_key, _ = zmq.auth.load_certificate(args.collector_key)
        pairs = load_agent_keys(Path(args.agent_keys), args.connections)
    factory = loadgen.FrameFactory(0, args.servers)
    emit: Callable[[dict[str, Any]], None] = lambda reply: print(json.dumps(reply), flush=True)
    publishers = Publishers(args.endpoint, args.connections, server_key, pairs or [])
    try:
        subscribed, seconds = publishers.wait_subscribed(SUBSCRIBE_TIMEOUT)
        emit({"ready": subscribed == args.connections, "subscribed": subscribed, "seconds": seconds})
        for command in loadgen.read_commands(sys.stdin.fileno(), loadgen._stop_requested):
            if command.get("probe"):
                now = time.time()
                for server in range(min(args.connections, args.servers)):
                    publishers.sends[connection_of(server, args.connections)](factory.frame(server, now))
                emit({"probed": min(args.connections, args.servers)})
                continue
            rate, seconds = command.get("rate"), command.get("seconds")
            if not isinstance(rate, int) or rate <= 0 or not isinstance(seconds, (int, float)) or seconds <= 0:
                emit({"error": f"bad command {command!r}"})
                continue
            send = dispatcher(publishers.sends, args.servers, factory.cursor)
            phase = loadgen._paced_phase(send, factory, rate, float(seconds), loadgen._stop_requested)
            emit({"sent": phase.sent, "seconds": phase.seconds, "rate": phase.sent / phase.seconds,
                  "cpu_seconds": phase.cpu_seconds, "max_lag_seconds": phase.max_lag_seconds,
                  "stopped_early": phase.stopped_early})
    finally:
        publishers.close()
    return 0


# ------------------------------------------------------------------------------------------- benchmark


@dataclass
class RunResult:
    mode: str  # plain | curve
    round: int
    seconds: float  # measured window (wall)
    received: int  # samples received in the window
    cpu_seconds: float  # serve process, whole process
    cpu_us_per_sample: float
    cpu_percent: float  # of one core
    sender_rate: float
    sender_target: int
    sender_max_lag: float
    sender_cpu_percent: float
    sender_cpu_us_per_sample: float
    subscribe_seconds: float
    sent_total: int
    received_total: int
    lost: int
    dropped: dict[str, int]
    servers: int
    handshakes: dict[str, int] = field(default_factory=dict)
    load_average: float = 0.0
    drain_seconds: float = 0.0  # from the sender's last frame to /stats counting it
    thread_us_per_sample: dict[str, float] = field(default_factory=dict)  # the service's CPU by thread name

    @property
    def clean(self) -> bool:
        return self.lost == 0 and not self.dropped and self.received_total == self.sent_total

    @property
    def valid(self) -> bool:
        return self.sender_rate >= 0.99 * self.sender_target


def sender_argv(endpoint: str, args: argparse.Namespace, keys: KeyFiles | None) -> list[str]:
    argv = [harness.PYTHON, os.path.abspath(__file__), "--sender", "--endpoint", endpoint,
            "--servers", str(args.servers), "--connections", str(args.connections)]
    if keys is not None:
        argv += ["--collector-key", str(keys.collector_public), "--agent-keys", str(keys.agents)]
    return argv


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid`` so far, summed by the thread's name
    (``/proc/PID/task/TID/comm``; the main thread is ``main``): libzmq's are ``ZMQbg/IO/0`` (I/O,
    CURVE's encryption) and ``ZMQbg/Reaper``; Python threads keep the process's name."""
    totals: dict[str, float] = {}
    for thread in psutil.Process(pid).threads():
        if thread.id == pid:
            name = "main"
        else:
            try:
                name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
            except OSError:
                name = "?"
        totals[name] = totals.get(name, 0.0) + thread.user_time + thread.system_time
    return totals


def caught_up(service: harness.Service, sent: int) -> tuple[dict[str, Any], float, float, dict[str, float]]:
    """Wait (at most ``DRAIN_TIMEOUT``) until ``/stats`` counts ``sent`` frames received; return those
    stats, the service's CPU seconds, ``time.monotonic()`` and its threads' CPU right then. Measuring from caught up to
    caught up makes the window hold exactly the measured phase's samples (no backlog in or out)."""
    stats = service.wait_for(lambda s: s["received"] >= sent, timeout=DRAIN_TIMEOUT, poll=DRAIN_POLL)
    return stats, service.cpu_seconds(), time.monotonic(), thread_cpu(service.pid)


def start_profiler(pid: int, out: str, seconds: float) -> harness.Process:
    """py-spy (``pip install py-spy``) on ``pid`` for ``seconds``, collapsed stacks to ``out``; without
    pausing the process (``--nonblocking``). It samples Python threads only: libzmq's I/O thread shows
    in ``thread_us_per_sample`` instead."""
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(harness.PYTHON), "py-spy")
    return harness.Process([py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                            "--nonblocking", "--format", "raw", "--output", out], name="py-spy")


def run_once(mode: str, round_: int, args: argparse.Namespace, keys: KeyFiles, profile: str | None = None) -> RunResult:
    """One service (plain or CURVE), one sender, one measured phase (profiled into ``profile`` if given)."""
    curve = mode == "curve"
    flags = ["--curve-secret", str(keys.collector_secret), "--allowed-agents", str(keys.allowed)] if curve else []
    with harness.Service(max_servers=args.max_servers, flags=flags) as service:
        with SenderProcess(sender_argv(service.ingest, args, keys if curve else None), name="curve sender") as sender:
            ready = sender.reply(timeout=SUBSCRIBE_TIMEOUT + 30)
            if not ready["ready"]:
                raise RuntimeError(f"only {ready['subscribed']} of {args.connections} connections subscribed")
            sender.command({"probe": True})
            probed = sender.reply(timeout=30)["probed"]
            stats = service.wait_for(lambda s: s["received"] >= probed, timeout=PROBE_TIMEOUT, poll=0.1)
            if stats["received"] < probed:
                raise RuntimeError(f"{mode}: /stats counts {stats['received']} of {probed} probe samples")
            sent_total = probed
            sender.command({"rate": args.rate, "seconds": args.settle})
            sent_total += sender.reply(timeout=args.settle * 1.5 + 30)["sent"]
            before_stats, before_cpu, before_at, before_threads = caught_up(service, sent_total)
            sender.command({"rate": args.rate, "seconds": args.seconds})
            profiler = start_profiler(service.pid, profile, args.seconds - 1) if profile else None
            try:
                phase = sender.reply(timeout=args.seconds * 1.5 + 30)
            finally:
                if profiler is not None:
                    profiler.wait(timeout=10)
                    profiler.stop()
            phase_end = time.monotonic()
            sent_total += phase["sent"]
            after_stats, after_cpu, after_at, after_threads = caught_up(service, sent_total)
            final = service.wait_idle(timeout=60)
    received = after_stats["received"] - before_stats["received"]
    cpu = after_cpu - before_cpu
    window = after_at - before_at
    return RunResult(
        mode=mode, round=round_, seconds=window, received=received, cpu_seconds=cpu,
        cpu_us_per_sample=1e6 * cpu / received if received else float("nan"),
        cpu_percent=100.0 * cpu / window, sender_rate=phase["rate"], sender_target=args.rate,
        sender_max_lag=phase["max_lag_seconds"], sender_cpu_percent=100.0 * phase["cpu_seconds"] / phase["seconds"],
        sender_cpu_us_per_sample=1e6 * phase["cpu_seconds"] / phase["sent"] if phase["sent"] else float("nan"),
        subscribe_seconds=ready["seconds"], sent_total=sent_total, received_total=final["received"],
        lost=final["lost"], dropped={k: v for k, v in final["dropped"].items() if v}, servers=final["servers"],
        handshakes=(final.get("curve") or {}).get("handshakes", {}), load_average=os.getloadavg()[0],
        drain_seconds=after_at - phase_end,
        thread_us_per_sample={name: 1e6 * (seconds - before_threads.get(name, 0.0)) / max(received, 1)
                              for name, seconds in sorted(after_threads.items())},
    )  # fmt: skip


def print_run(r: RunResult) -> None:
    print(
        f"  round {r.round} {r.mode:5}: {r.cpu_us_per_sample:.2f} µs CPU/sample, {r.cpu_percent:.0f}% of a core "
        f"({r.received:,} samples in {r.seconds:.1f} s); sender {r.sender_rate:,.0f}/s (max lag "
        f"{r.sender_max_lag * 1000:.0f} ms, {r.sender_cpu_percent:.0f}% CPU, {r.sender_cpu_us_per_sample:.2f} µs/sample); "
        f"subscribed in {r.subscribe_seconds:.1f} s"
    )
    print(
        f"           sent {r.sent_total:,}, received {r.received_total:,}, lost {r.lost:,}, dropped {r.dropped or 0}, "
        f"servers {r.servers:,}, caught up {r.drain_seconds:.2f} s after the last send"
        + (f", handshakes {r.handshakes}" if r.handshakes else "")
        + f"; load average {r.load_average:.2f}" + ("" if r.valid else "  INVALID: the sender fell behind")
    )
    print("           service CPU by thread, µs/sample: "
          + ", ".join(f"{name} {us:.2f}" for name, us in r.thread_us_per_sample.items() if us >= 0.005))


def summary(results: list[RunResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("plain", "curve"):
        runs = [r for r in results if r.mode == mode]
        out[mode] = {
            "cpu_us_per_sample": harness.median([r.cpu_us_per_sample for r in runs]),
            "cpu_percent": harness.median([r.cpu_percent for r in runs]),
            "sender_rate": harness.median([r.sender_rate for r in runs]),
            "sender_cpu_percent": harness.median([r.sender_cpu_percent for r in runs]),
            "sender_cpu_us_per_sample": harness.median([r.sender_cpu_us_per_sample for r in runs]),
            "thread_us_per_sample": {name: harness.median([r.thread_us_per_sample.get(name, 0.0) for r in runs])
                                     for name in sorted({n for r in runs for n in r.thread_us_per_sample})},
        }
    out["ratio"] = out["curve"]["cpu_us_per_sample"] / out["plain"]["cpu_us_per_sample"]
    out["clean"] = all(r.clean for r in results)
    out["valid"] = all(r.valid for r in results)
    return out


def print_table(results: list[RunResult], medians: dict[str, Any]) -> None:
    print("-- summary (medians)")
    print(f"  {'':6} {'µs CPU/sample':>14} {'% of a core':>12} {'sender rate':>12} {'sender CPU':>11} "
          f"{'sender µs/sample':>17}  runs (µs CPU/sample)")
    for mode in ("plain", "curve"):
        m = medians[mode]
        per_run = ", ".join(f"{r.cpu_us_per_sample:.2f}" for r in results if r.mode == mode)
        print(f"  {mode:6} {m['cpu_us_per_sample']:14.2f} {m['cpu_percent']:12.0f} {m['sender_rate']:12,.0f} "
              f"{m['sender_cpu_percent']:10.0f}% {m['sender_cpu_us_per_sample']:17.2f}  {per_run}")
    for mode in ("plain", "curve"):
        threads = medians[mode]["thread_us_per_sample"]
        print(f"  {mode:6} service CPU by thread, µs/sample: "
              + ", ".join(f"{name} {us:.2f}" for name, us in threads.items() if us >= 0.005))
    ratios = [c.cpu_us_per_sample / p.cpu_us_per_sample
              for p, c in zip([r for r in results if r.mode == "plain"], [r for r in results if r.mode == "curve"])]
    print(f"  CURVE / plain per round: {', '.join(f'{x:.2f}' for x in ratios)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=100_000, help="samples/s (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--connections", type=int, default=1_000, help="PUB connections (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured phase (default %(default)s, <= 120)")
    parser.add_argument("--settle", type=float, default=5.0, help="unmeasured full-rate phase first (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of plain + CURVE (default %(default)s, <= 10)")
    parser.add_argument("--max-servers", type=int, default=200_000, help="serve --max-servers (default %(default)s)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="py-spy the service in round 1's measured phases into PREFIX-plain.txt / PREFIX-curve.txt "
                             "(collapsed stacks; those rounds' figures include the profiler's cost)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object with every run at the end")
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--collector-key", help=argparse.SUPPRESS)
    parser.add_argument("--agent-keys", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        return run_sender(args)
    if not (0 < args.seconds <= 120 and 1 <= args.runs <= 10 and 1 <= args.connections <= 5000
            and args.servers >= args.connections and args.rate > 0 and args.settle > 0):
        parser.error("need 0 < --seconds <= 120, 1 <= --runs <= 10, 1 <= --connections <= 5000 <= ... "
                     "--servers >= --connections, --rate > 0, --settle > 0")
    harness.print_header(f"CURVE vs plain ingest: {args.rate:,} samples/s from {args.servers:,} servers over "
                         f"{args.connections:,} connections, {args.settle:g} s settle + {args.seconds:g} s measured")
    directory = Path(tempfile.mkdtemp(prefix="servertrack-curve-"))
    results: list[RunResult] = []
    try:
        keys = make_keys(directory, args.connections)
        for round_ in range(1, args.runs + 1):
            modes = ("plain", "curve") if round_ % 2 else ("curve", "plain")
            for mode in modes:
                profile = f"{args.profile}-{mode}.txt" if args.profile and round_ == 1 else None
                results.append(run_once(mode, round_, args, keys, profile))
                print_run(results[-1])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    medians = summary(results)
    print_table(results, medians)
    ok = harness.verdict("CPU per sample, CURVE / plain (medians)", medians["ratio"], TARGET_RATIO, "x", False)
    print(f"  lost 0, no drop of any reason, received == sent in every run (target): "
          f"{'met' if medians['clean'] else 'NOT MET'}")
    ok &= medians["clean"]
    if not medians["valid"]:
        print("  INVALID: the sender fell behind its rate in some run (see above); the figures measured the sender")
        ok = False
    if args.profile:
        for mode in ("plain", "curve"):
            print(f"-- py-spy of the {mode} service, round 1 ({args.profile}-{mode}.txt)")
            summarize(f"{args.profile}-{mode}.txt", 20)
    print(f"  reproduce: {harness.reproduce_command()}")
    if args.json:
        print(json.dumps({"runs": [asdict(r) for r in results], "medians": medians}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
