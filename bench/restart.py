"""Collector restart under load: agents keep running and reconnect, loss is counted per agent, the windows go on.

One run (``--runs`` of them per variant, each on a fresh data directory)

    A real ``serve --store sqlite --data-dir TMP`` on ports chosen beforehand (HTTP,
    ingest, control: the restarted collector binds the same addresses), a load
    generator (``loadgen.py``: ``--servers`` servers at 1 Hz, ``--rate`` = servers by
    default) and ``--agents`` real ``servertrack agent --interval 0.2`` processes, all
    running throughout. After ``--before`` s the collector is stopped (``term``:
    SIGTERM, a clean stop; ``kill``: SIGKILL, a crash) and started again at once on
    the same data directory; ingest goes on for ``--after`` s, then the load generator
    ends, the agents are stopped (SIGTERM: each sends its ``bye``, the last seq), and
    once everything is applied the restarted collector's windows are read.

What is reported, per run and as medians of the runs of each variant

    - agents still running at the end, never restarted (same pid);
    - downtime: the stop signal to the restarted collector's ready line, and to the
      first sample of *every* agent applied again ("samples flow again");
    - loss per real agent, measured from outside: the samples it sent (from its last
      seq: ``seq = 1 hello + n samples + n // 5 snapshots + 1 bye - 1``, runs shorter
      than the 60 s hello period) minus the samples its minute window holds (negative:
      counted twice); next to it, what the collector counted (``lost`` of
      ``/nodes/NAME``, ``/stats`` ``lost``, and how many agents' seqs the restart
      restored: after a clean stop the gap is counted, after a crash it cannot be);
    - loss of the load generator's servers: per server, the frames it sent (its seq:
      round robin from server 0, server 0 left out for its warm-up frames) minus its
      minute window's samples; total, max per server, servers with a loss, and any
      counted twice (``--check-servers`` of them, evenly spread; 0: all);
    - the windows go on: every minute bucket of every agent from before the stop is
      in the window after (recovered from the store), the closed ones unchanged, and
      no window holds more samples than its agent sent.

Usage

    python bench/restart.py                       # 20,000 servers, 3 agents, both variants, 3 runs each
    python bench/restart.py --variants kill --runs 1 --servers 5000 --before 8 --after 8
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import durable
import loadgen
from servertrack.agent.daemon import HELLO_EVERY_SECONDS

AGENT_INTERVAL = 0.2
STATS_EVERY = 5  # the agent's default: a snapshot after every fifth sample
SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL}


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports of 127.0.0.1, free a moment ago (held together while chosen)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def agent_name(index: int) -> str:
    return f"agent-{index:02d}.restart"


def samples_of_seq(last_seq: int) -> int:
    """Samples an agent sent, from the seq of its bye (1 hello, n samples, n // STATS_EVERY snapshots, 1 bye)."""
    messages_but_hello_and_bye = last_seq - 1  # seq counts from 0: last_seq + 1 messages
    samples = messages_but_hello_and_bye * STATS_EVERY // (STATS_EVERY + 1)
    while samples + samples // STATS_EVERY < messages_but_hello_and_bye:
        samples += 1
    return samples


def sent_by_server(index: int, sent: int, servers: int) -> int:
    """Frames loadgen's measured phase sent for server ``index`` (round robin from server 0)."""
    return sent // servers + (1 if index < sent % servers else 0)


def minute_window(client: durable.KeepAlive, name: str) -> dict[str, int]:
    """Samples per minute bucket (non-empty ones) of ``name``'s minute window; empty if unknown."""
    status, body = client.get_json(f"/servers/{name}/loads")
    if status != 200:
        return {}
    return {str(bucket["start"]): int(bucket["samples"]) for bucket in body["minutes"] if bucket["samples"]}


@dataclass
class AgentResult:
    name: str
    running: bool
    sent: int  # samples, from its last seq
    held: int  # samples its minute window holds
    counted_lost: int | None  # the collector's ``lost`` for it
    flow_seconds: float  # stop signal -> its first sample applied by the restarted collector
    window_ok: bool
    detail: str = ""


@dataclass
class Run:
    variant: str
    ready_seconds: float
    flow_seconds: float  # all agents flowing again
    agents: list[AgentResult]
    fleet_sent: int
    fleet_checked: int
    fleet_lost: int
    fleet_max_lost: int
    fleet_servers_lost: int
    fleet_twice: int
    fleet_extrapolated_lost: float
    stats_lost: int
    restored_seqs: int
    recovery: dict[str, Any] = field(default_factory=dict)

    @property
    def agent_lost(self) -> list[int]:
        return [a.sent - a.held for a in self.agents]


@contextlib.contextmanager
def agents(count: int, ingest: str, control: str) -> Iterator[list[harness.Process]]:
    started: list[harness.Process] = []
    try:
        for index in range(count):
            started.append(harness.Process(
                [harness.PYTHON, "-m", "servertrack", "agent", "--collector", ingest, "--control", control,
                 "--name", agent_name(index), "--interval", str(AGENT_INTERVAL)],
                stdout=subprocess.DEVNULL, name=agent_name(index)))
        yield started
    finally:
        for process in started:
            process.stop()


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.05) -> float:
    """Poll until ``predicate()``; the monotonic time it became true. RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic()


def measure(variant: str, args: argparse.Namespace) -> Run:
    http_port, ingest_port, control_port = free_ports(3)
    ingest, control = f"tcp://127.0.0.1:{ingest_port}", f"tcp://127.0.0.1:{control_port}"
    names = [agent_name(i) for i in range(args.agents)]
    with durable.fresh_data_dir() as data_dir:
        flags = ["--port", str(http_port), "--ingest", ingest, "--control", control, "--store", "sqlite",
                 "--data-dir", str(data_dir), "--checkpoint-every", args.checkpoint_every]
        service = harness.Service(max_servers=args.max_servers, flags=flags)
        try:
            with agents(args.agents, ingest, control) as running:
                pids = [process.pid for process in running]
                seconds = args.before + args.after + 5
                generator = durable.loadgen_process(service, args.rate, args.servers, seconds)
                with generator:
                    client = durable.KeepAlive(http_port)
                    wait_for(lambda: all(minute_window(client, name) for name in names), 30, "every agent's samples")
                    time.sleep(max(0.0, args.before - 2))
                    before = {name: minute_window(client, name) for name in names}
                    client.close()
                    service.popen.send_signal(SIGNALS[variant])
                    stopped = time.monotonic()
                    service.popen.wait(timeout=60)
                    service.stop()
                    service = harness.Service(max_servers=args.max_servers, flags=flags, ready_timeout=120)
                    ready = time.monotonic()
                    client = durable.KeepAlive(http_port)
                    recovered = {name: sum(minute_window(client, name).values()) for name in names}
                    flowing: dict[str, float] = {}

                    def all_flowing() -> bool:
                        for name in names:
                            if name not in flowing and sum(minute_window(client, name).values()) > recovered[name]:
                                flowing[name] = time.monotonic()
                        return len(flowing) == len(names)

                    wait_for(all_flowing, 60, "every agent's samples after the restart", poll=0.02)
                    restored = durable.store_counter(service.stats(), "recovery", "agent_seqs")
                    sent = harness.last_json_line(generator, timeout=seconds + 60)
                alive = [process.popen.poll() is None and process.pid == pid for process, pid in zip(running, pids)]
                for process in running:
                    process.popen.send_signal(signal.SIGTERM)  # each sends its bye: its last seq
                for process in running:
                    process.wait(10)
            stats = service.wait_idle(timeout=60)
            client.close()  # idle for a while: the service may have closed it (the next request reconnects)
            results = []
            for name, is_alive in zip(names, alive):
                after = minute_window(client, name)
                status, node = client.get_json(f"/nodes/{name}")
                last_seq = node["seq"] if status == 200 else None
                sent_samples = samples_of_seq(last_seq) if isinstance(last_seq, int) else -1
                closed = [start for start in before[name] if start < max(before[name])]
                window_ok = (set(before[name]) <= set(after)
                             and all(after[start] == before[name][start] for start in closed)
                             and all(after[start] >= before[name][start] for start in before[name])
                             and sum(after.values()) <= sent_samples)
                results.append(AgentResult(name, is_alive, sent_samples, sum(after.values()),
                                           node.get("lost") if status == 200 else None, flowing[name] - stopped,
                                           window_ok, "" if window_ok else f"before {before[name]} after {after}"))
            fleet = fleet_loss(client, sent["sent"], args)
            client.close()
            return Run(variant=variant, ready_seconds=ready - stopped, flow_seconds=max(flowing.values()) - stopped,
                       agents=results, fleet_sent=sent["sent"], stats_lost=int(stats["lost"]), restored_seqs=restored,
                       recovery=durable.store_of(stats).get("recovery", {}), **fleet)
        finally:
            service.stop()


def fleet_loss(client: durable.KeepAlive, sent: int, args: argparse.Namespace) -> dict[str, Any]:
    """Per load-generator server: frames sent minus samples held (server 0 left out: its warm-up frames)."""
    count = args.servers - 1 if args.check_servers <= 0 else min(args.check_servers, args.servers - 1)
    stride = (args.servers - 1) / count
    indexes = sorted({1 + int(i * stride) for i in range(count)})
    losses = []
    for index in indexes:
        held = sum(minute_window(client, loadgen.server_name(index)).values())
        losses.append(sent_by_server(index, sent, args.servers) - held)
    lost = sum(loss for loss in losses if loss > 0)
    return dict(fleet_checked=len(indexes), fleet_lost=lost, fleet_max_lost=max(losses, default=0),
                fleet_servers_lost=sum(1 for loss in losses if loss > 0),
                fleet_twice=sum(1 for loss in losses if loss < 0),
                fleet_extrapolated_lost=lost * (args.servers - 1) / max(1, len(indexes)))


def print_run(number: int, run: Run, rate: int) -> None:
    print(f"  run {number} ({run.variant}): stop -> ready {run.ready_seconds:.2f} s, stop -> every agent flowing "
          f"{run.flow_seconds:.2f} s; restored seqs {run.restored_seqs}; recovery {run.recovery}")
    for agent in run.agents:
        print(f"    {agent.name}: running {agent.running}, sent {agent.sent}, held {agent.held}, lost "
              f"{agent.sent - agent.held} (collector counted {agent.counted_lost}), flowing after "
              f"{agent.flow_seconds:.2f} s, window {'continues' if agent.window_ok else 'BROKEN ' + agent.detail}")
    print(f"    fleet: {run.fleet_sent:,} frames sent; of {run.fleet_checked:,} servers checked: {run.fleet_lost:,} "
          f"samples lost ({run.fleet_lost / max(1, run.fleet_checked):.2f} a server, "
          f"~{run.fleet_extrapolated_lost / rate:.2f} s of the fleet's ingest), max {run.fleet_max_lost} per server, "
          f"{run.fleet_servers_lost:,} servers with a loss, {run.fleet_twice} counted twice; /stats lost "
          f"{run.stats_lost:,}")


def report(variant: str, runs: list[Run], rate: int) -> bool:
    print(f"== {variant} ({'SIGTERM' if variant == 'term' else 'SIGKILL'}): medians of {len(runs)} runs")
    harness.print_runs("stop -> ready line", [r.ready_seconds for r in runs], "s")
    harness.print_runs("stop -> samples of every agent flowing again", [r.flow_seconds for r in runs], "s")
    harness.print_runs("max loss of one real agent", [max(r.agent_lost) for r in runs], "samples")
    harness.print_runs("loss counted by the collector, max of one agent",
                       [max((a.counted_lost or 0) for a in r.agents) for r in runs], "messages")
    harness.print_runs("fleet loss (checked servers)", [r.fleet_lost for r in runs], "samples")
    harness.print_runs("fleet loss, max per server", [r.fleet_max_lost for r in runs], "samples")
    harness.print_runs("fleet loss in seconds of ingest", [r.fleet_extrapolated_lost / rate for r in runs], "s")
    ok = durable.verdict_all("agents still running, never restarted",
                             all(a.running for r in runs for a in r.agents), "every agent, every run")
    ok &= durable.verdict_all("windows continue (recovered buckets kept, none counted twice)",
                              all(a.window_ok for r in runs for a in r.agents) and not any(r.fleet_twice for r in runs),
                              "every agent, every run")
    ok &= harness.verdict("stop -> every agent flowing again (median)",
                          harness.median([r.flow_seconds for r in runs]), 5.0, "s", higher_is_better=False)
    if variant == "term":
        ok &= harness.verdict("samples lost by a clean restart, worst agent (median)",
                              harness.median([max(r.agent_lost) for r in runs]), 0, "samples", higher_is_better=False)
    else:  # a crash loses what was applied but not logged yet: about a second
        ok &= harness.verdict("fleet loss of a crash in seconds of ingest (median)",
                              harness.median([r.fleet_extrapolated_lost / rate for r in runs]), 1.5, "s",
                              higher_is_better=False)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=20_000, help="load generator servers (default %(default)s)")
    parser.add_argument("--rate", type=int, default=0, help="load generator frames/s (default: --servers, 1 Hz each)")
    parser.add_argument("--agents", type=int, default=3, help="real agents at --interval 0.2 (default %(default)s)")
    parser.add_argument("--before", type=float, default=12.0, help="seconds of ingest before the stop (default %(default)s)")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of ingest after it (default %(default)s)")
    parser.add_argument("--variants", default="term,kill", help="term (SIGTERM) and/or kill (SIGKILL)")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (default %(default)s)")
    parser.add_argument("--check-servers", type=int, default=0,
                        help="load generator servers whose window is read (default: all)")
    parser.add_argument("--checkpoint-every", default="60s", help="serve --checkpoint-every (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=200_000)
    args = parser.parse_args(argv)
    args.rate = args.rate or args.servers
    variants = [variant for variant in args.variants.split(",") if variant]
    if any(variant not in SIGNALS for variant in variants) or args.agents < 1 or args.servers < 2:
        parser.error("--variants takes term and/or kill; --agents >= 1; --servers >= 2")
    if args.before + args.after + 20 >= HELLO_EVERY_SECONDS:
        parser.error(f"--before + --after must stay well below the agents' hello period ({HELLO_EVERY_SECONDS:.0f} s): "
                     "the samples an agent sent are counted from its seq assuming one hello")
    harness.print_header("collector restart under load")
    print(f"  {args.servers:,} servers at {args.rate:,} frames/s, {args.agents} agents every {AGENT_INTERVAL} s; "
          f"stop after {args.before:.0f} s, {args.after:.0f} s after; checkpoint every {args.checkpoint_every}")
    ok = True
    for variant in variants:
        runs = []
        for number in range(1, args.runs + 1):
            run = measure(variant, args)
            print_run(number, run, args.rate)
            runs.append(run)
        ok &= report(variant, runs, args.rate)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
