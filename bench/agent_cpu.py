"""CPU use of a real ``servertrack agent`` publishing once a second.

Target: <= 1 % of one core at the default 1 s interval.

How
    The script binds a ZeroMQ SUB socket on 127.0.0.1 (a stand-in collector
    that only counts frames) and starts ``python -m servertrack agent
    --collector tcp://127.0.0.1:PORT --name bench-agent --interval 1``. It
    skips the first ``--skip`` seconds (interpreter start-up, imports, the
    connection), then reads the agent's user + system CPU time with psutil
    (all its threads, ZeroMQ's I/O thread included) at the start and the end
    of a ``--seconds`` window: CPU % = delta CPU time / wall time * 100.
    Frames received in the window are counted as a sanity check (about one a
    second). ``--collector absent`` points the agent at a port where nothing
    listens instead (it keeps trying to reconnect). Figures are medians of
    ``--runs`` runs, one agent at a time. psutil reads CPU time in 10 ms
    ticks, so a window of 60 s resolves ~0.02 %.

Usage
    python bench/agent_cpu.py                     # 60 s x 3 runs
    python bench/agent_cpu.py --seconds 10 --runs 1
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import socket
import sys
import time

import zmq

TARGET_PERCENT = 1.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_run(seconds: float, skip: float, interval: float, collector: str) -> tuple[float, int, float]:
    """CPU % of one core, frames received, and the wall time measured."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if collector == "bound":
            port = sub.bind_to_random_port("tcp://127.0.0.1")
        else:
            port = free_port()
        argv = [
            harness.PYTHON, "-m", "servertrack", "agent", "--collector", f"tcp://127.0.0.1:{port}",
            "--name", "bench-agent", "--interval", str(interval),
        ]  # fmt: skip
        with harness.Process(argv, stdout=None, name="servertrack agent") as agent:
            started = time.monotonic()
            frames = drain(sub, started + skip)
            if agent.popen.poll() is not None:
                raise RuntimeError(f"agent exited early ({agent.popen.returncode}):\n{agent.stderr_text()}")
            cpu_start, wall_start = agent.cpu_seconds(), time.monotonic()
            frames = drain(sub, wall_start + seconds)
            cpu_end, wall_end = agent.cpu_seconds(), time.monotonic()
            if agent.popen.poll() is not None:
                raise RuntimeError(f"agent exited early ({agent.popen.returncode}):\n{agent.stderr_text()}")
    finally:
        sub.close(linger=0)
        context.term()
    wall = wall_end - wall_start
    return 100.0 * (cpu_end - cpu_start) / wall, frames, wall


def drain(sub: zmq.Socket, until: float) -> int:
    """Receive and count frames until ``until`` (monotonic)."""
    frames = 0
    while (left := until - time.monotonic()) > 0:
        if sub.poll(max(1, int(min(left, 0.5) * 1000))):
            while True:
                try:
                    sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                frames += 1
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default %(default)s)")
    parser.add_argument("--skip", type=float, default=3.0, help="start-up seconds not measured (default %(default)s)")
    parser.add_argument("--interval", type=float, default=1.0, help="agent --interval (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs (default %(default)s)")
    parser.add_argument(
        "--collector", choices=("bound", "absent"), default="bound", help="a SUB listening, or nothing (default bound)"
    )
    args = parser.parse_args()
    harness.print_header(f"CPU of servertrack agent, interval {args.interval:g} s, collector {args.collector}")
    percents = []
    for run in range(1, args.runs + 1):
        percent, frames, wall = one_run(args.seconds, args.skip, args.interval, args.collector)
        percents.append(percent)
        print(f"  run {run}: {percent:.3f} % of one core over {wall:.1f} s; {frames} frames received")
    harness.print_runs("agent CPU", percents, "% of one core")
    ok = harness.verdict("agent CPU (median)", harness.median(percents), TARGET_PERCENT, "% of one core", False)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
