"""Pause latency: from ``POST /nodes/{name}/pause`` to a real agent's last sample.

Target (issue): the agent's last sample comes less than 2 sample intervals
after the HTTP pause call.

How
    The script starts a real ``servertrack serve`` (``--control`` on a free
    port) and a real ``servertrack agent --interval I`` whose ``--collector``
    is a relay of this script: a SUB socket that timestamps every frame the
    agent sends, decodes it, and forwards it to the service's ingest (so the
    service knows the node). The agent's ``--control`` is the service's own
    control socket: the pause travels HTTP -> service -> control PUB -> agent
    exactly as in production.

    Each of ``--pauses`` rounds waits for samples to flow, waits a random
    fraction of an interval (so the call falls anywhere between two ticks),
    calls ``POST /nodes/bench-pause/pause``, waits for the agent's hello
    saying ``paused`` and 3 more intervals, then reads, from the relay's
    record, the ``ts`` of the last sample (the agent's clock, this machine's)
    and takes ``latency = last sample ts - time the HTTP call returned``
    (negative: the last sample was taken before the call returned). Also
    shown: the time from the call returning to the agent's paused hello (the
    agent's reaction), and the samples taken after the call. Then it resumes
    the agent (``POST .../resume``) for the next round. Figures are per
    interval, median and max over the rounds of each run, for ``--runs``
    runs.

Usage
    python bench/pause_latency.py                      # intervals 1 and 0.5, 6 pauses x 3 runs
    python bench/pause_latency.py --intervals 1 --pauses 5 --runs 1
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import json
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import zmq

from servertrack.common.node_messages import NodeHello, decode_message
from servertrack.common.protocol import NameCache, Sample

NAME = "bench-pause"
TARGET_INTERVALS = 2.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Relay:
    """Receives the agent's frames, records ``(receive time, message)``, forwards them to the service."""

    ingest: str
    context: zmq.Context = field(default_factory=zmq.Context)
    records: list[tuple[float, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.endpoint = f"tcp://127.0.0.1:{self.sub.bind_to_random_port('tcp://127.0.0.1')}"
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(self.ingest)
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True, name="relay")
        self.thread.start()

    def _run(self) -> None:
        names = NameCache()
        while self.running:
            if not self.sub.poll(20):
                continue
            frame = self.sub.recv()
            at = time.time()
            self.pub.send(frame)
            try:
                message = decode_message(frame, at, names)
            except Exception:  # noqa: BLE001 - the agent sends only valid frames; count nothing else
                continue
            with self.lock:
                self.records.append((at, message))

    def since(self, moment: float) -> list[tuple[float, object]]:
        with self.lock:
            return [(at, message) for at, message in self.records if at >= moment]

    def last_sample_ts(self) -> float:
        with self.lock:
            return max(message.ts for _, message in self.records if isinstance(message, Sample))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sub.close(linger=0)
        self.pub.close(linger=0)
        self.context.term()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Round:
    latency: float  # last sample ts - call returned, seconds
    reaction: float  # paused hello received - call returned, seconds
    call: float  # the HTTP call's own duration, seconds
    samples_after_call: int


def measure(interval: float, pauses: int, seed: int) -> list[Round]:
    """One run: a service, a relay and an agent; ``pauses`` pause/resume rounds."""
    rng = random.Random(seed)
    control = f"tcp://127.0.0.1:{free_port()}"
    rounds: list[Round] = []
    with harness.Service(max_servers=1000, flags=["--control", control]) as service:
        relay = Relay(service.ingest)
        try:
            argv = [harness.PYTHON, "-m", "servertrack", "agent", "--collector", relay.endpoint, "--control", control,
                    "--name", NAME, "--interval", str(interval), "--stats-every", "0"]
            with harness.Process(argv, stdout=None, name="servertrack agent"):
                node_url = f"{service.url}/nodes/{NAME}"
                wait_until(lambda: harness.http_json("GET", node_url)[0] == 200, 30, "the agent's hello")
                for _ in range(pauses):
                    started = time.time()
                    wait_until(lambda: sum(isinstance(m, Sample) for _, m in relay.since(started)) >= 2,
                               10 * interval + 5, "samples")
                    time.sleep(rng.uniform(0, interval))
                    called = time.time()
                    status, body = harness.http_json("POST", f"{node_url}/pause", {})
                    returned = time.time()
                    if status != 200 or body.get("paused") is not True:
                        raise RuntimeError(f"pause answered {status} {body}")
                    wait_until(lambda: any(isinstance(m, NodeHello) and m.paused for _, m in relay.since(called)),
                               10 * interval + 5, "the paused hello")
                    hello_at = next(at for at, m in relay.since(called) if isinstance(m, NodeHello) and m.paused)
                    time.sleep(3 * interval)
                    after = [m for _, m in relay.since(called) if isinstance(m, Sample) and m.ts >= called]
                    rounds.append(Round(relay.last_sample_ts() - returned, hello_at - returned, returned - called,
                                        len(after)))
                    status, body = harness.http_json("POST", f"{node_url}/resume", {})
                    if status != 200:
                        raise RuntimeError(f"resume answered {status} {body}")
        finally:
            relay.close()
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.5], help="agent --interval values")
    parser.add_argument("--pauses", type=int, default=6, help="pause calls per run (>= 5 for the target)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print one JSON line of every figure")
    args = parser.parse_args(argv)
    harness.print_header("pause latency: POST /nodes/{name}/pause -> the agent's last sample")
    met = True
    results: dict[str, list[dict[str, float]]] = {}
    for interval in args.intervals:
        print(f"-- agent --interval {interval:g}, {args.pauses} pauses per run")
        medians, maxima = [], []
        for run in range(args.runs):
            rounds = measure(interval, args.pauses, seed=run)
            latencies = [r.latency / interval for r in rounds]
            reactions = [r.reaction * 1000 for r in rounds]
            medians.append(harness.median(latencies))
            maxima.append(max(latencies))
            results.setdefault(str(interval), []).append({
                "median_intervals": harness.median(latencies), "max_intervals": max(latencies),
                "reaction_ms_median": harness.median(reactions), "reaction_ms_max": max(reactions),
                "call_ms_max": max(r.call for r in rounds) * 1000,
                "samples_after_call_max": max(r.samples_after_call for r in rounds),
            })
            print(f"  run {run + 1}: last sample - call returned, in intervals: median {harness.fmt(medians[-1])}, "
                  f"max {harness.fmt(maxima[-1])} (each: {', '.join(harness.fmt(v) for v in latencies)}); "
                  f"paused hello after {harness.fmt(harness.median(reactions))} ms median, "
                  f"{harness.fmt(max(reactions))} ms max; samples after the call at most "
                  f"{max(r.samples_after_call for r in rounds)}")
        harness.print_runs("median", medians, "intervals")
        met &= harness.verdict(f"worst of {args.runs} runs, --interval {interval:g}", max(maxima), TARGET_INTERVALS,
                               "intervals", higher_is_better=False)
    if args.json:
        print(json.dumps(results))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
