"""Hardening: collector RSS per node with snapshots at every bound, and /healthz latency under floods.

Four scenarios (``--scenario memory|flood-large|flood-small|slow-clients``, default all),
each run in a fresh ``servertrack serve`` (``--max-servers 20000``) that the
script starts and stops itself. All traffic is on 127.0.0.1.

Before any measured traffic a publisher connects a PUB socket to the
service's ingest endpoint (SNDHWM 1,000,000) and sends one v1 sample from
``joiner.bench`` every 50 ms, for at least 1 s and until ``/stats`` counts
one (slow joiner: PUB drops what it sends before the subscription arrives);
then the service is left to go idle and its RSS is read. Frames are counted
against the ``/stats`` ``received`` seen at that point, so the joiner's
frames are not counted as traffic. Every frame kind the script builds is
first decoded locally with ``servertrack.common.node_messages.decode_message``
and the verdict printed ("valid locally" or the refusal), so a refusal by
the service can be told apart from a bad frame.

``memory`` - RSS per node with snapshots at every bound
    For ``--nodes`` nodes (``maxnode-00001.bench`` ...) the script sends a
    hello with every field at its longest (hostname, os, platform: 256 bytes;
    agent_version: 64 bytes; 32 IPv6 addresses of 39 characters, the longest
    form that stays the same once normalised; numbers as 9-byte msgpack), then
    a maximal snapshot: every list at its bound (1,024 per-CPU shares, 64
    disks, 64 interfaces, 20 + 20 processes) and every string at its maximal
    byte length (names 64, paths and command lines 256), numbers as float64
    or uint64. Then every node gets 2 more maximal snapshots (new numbers and
    strings), replacing the stored one. Frames are paced at ``--rate``
    (2,000 frames/s in 10 ms slices); if ``/stats`` shows the service more
    than 2 s of frames behind, sending pauses until it catches up. The
    script then waits until ``received`` has stopped growing and ``pending``
    is 0, waits ``--idle`` s and reads RSS again. Two contents, each in its
    own service (``--content realistic|random``, default both, reported
    apart): ``realistic`` - plausible strings (device ids, mount points like
    ``/srv/data/volume-0001/...``, command lines like ``/usr/bin/python3 -m
    worker --queue=...``) padded to the bound with more plausible segments,
    different per node and per entry, numbers varied; ``random`` - random
    printable ASCII at every bound (incompressible), random numbers. Report:
    (RSS_after - RSS_idle) / nodes, frames sent, ``/stats`` received,
    applied, the whole ``dropped`` map, ``nodes``, and on 50 nodes spread
    over the range how many answer ``GET /nodes/{name}/cpu`` with 200 (they
    hold a snapshot) - a service with a memory budget may refuse some; the
    figure stands either way. Target: <= 30,000 B per node.

``flood-large`` - /healthz latency under 10,000 frames of ~124 KB
    One publisher sends ``--frames`` (10,000) maximal snapshots with random
    content as fast as it can. A snapshot at every bound is ~80 KB, so each
    frame is topped up to ``--frame-bytes`` (124 KiB; the limit is 128 KiB)
    with an extra top-level key ``pad`` holding random printable ASCII: the
    protocol ignores unknown keys, so the collector still receives, unpacks
    and validates the whole frame and stores only the stats. The actual
    frame size is printed. Frames are cut from 16 pre-packed random stats
    maps with their fqdn, ts (now) and seq set per frame; ``--names many``
    (default) gives every frame its own node (``flood-00001.bench`` ...),
    ``--names 1`` sends them all for one node (``--names N``: N names
    round-robin).

``flood-small`` - /healthz latency under 300,000 samples
    One publisher sends ``--frames`` (300,000) v1 sample frames as
    ``loadgen.FrameFactory`` builds them (10,000 servers round-robin, ts =
    now, per-server seq) as fast as it can.

How the floods are measured
    A prober subprocess (this script with ``--probe``) keeps one HTTP/1.1
    connection open (``http.client``) and GETs ``/healthz`` every 10 ms (a
    request that takes longer is followed at once by the next), each with a
    10 s timeout (a timeout counts as 10 s and reconnects), and samples the
    service's RSS with psutil every 100 ms (in a thread of its own, so a
    request that hangs does not stop the samples). It starts just before
    the flood (the flood starts on its first answer). The script polls
    ``/stats`` every 0.2 s: the service has drained when ``received`` has
    not grown for 2 s with ``pending`` 0 (bounded by 120 s from the start of
    the flood); the latencies counted are those of requests started before
    the first poll that showed that final state (the 2 s of calm that prove
    the drain are left out; "in all" counts them too). Report: p50, p99 and
    max latency (nearest rank), requests counted, service RSS before, peak
    (prober samples) and after, ``/stats`` received, applied, dropped and
    nodes. Targets: p99 <= 100 ms (flood-large), <= 50 ms (flood-small).
    The prober is closed-loop on one connection: while a request hangs no
    other is made, so a stall shows in the max and in fewer requests than
    one per 10 ms.

The ``/stats`` JSON is read for ``received``, ``applied``, ``pending``,
``nodes`` and ``dropped`` (shown as it comes: any reasons); other keys are
ignored. A service that refuses or drops frames is reported, not an error.

Usage
    python bench/hardening.py                                   # all scenarios, 3 runs each
    python bench/hardening.py --scenario memory --nodes 200 --runs 1
    python bench/hardening.py --scenario flood-large --frames 1000 --names 1 --runs 1
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import http.client
import json
import math
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import psutil
import zmq

import loadgen
from servertrack.common import node_messages, protocol

# The protocol's bounds (read from the code, with today's values as fallbacks).
MAX_CPUS = getattr(node_messages, "MAX_CPUS", 1024)
MAX_DISKS = getattr(node_messages, "MAX_DISKS", 64)
MAX_INTERFACES = getattr(node_messages, "MAX_INTERFACES", 64)
MAX_TOP = getattr(node_messages, "MAX_TOP_PROCESSES", 20)
MAX_TEXT = getattr(node_messages, "MAX_TEXT", 256)
MAX_NAME = getattr(node_messages, "MAX_NAME", 64)
MAX_VERSION = 64  # HELLO_FIELDS agent_version
MAX_PID = getattr(node_messages, "MAX_PID", 2**32 - 1)
MAX_CPU_SECONDS = getattr(node_messages, "MAX_CPU_SECONDS", 1e15)
MAX_TOTAL = getattr(node_messages, "MAX_TOTAL", 2**63 - 1)
MAX_IPS = getattr(protocol, "MAX_IPS", 32)
MAX_FRAME_BYTES = getattr(protocol, "MAX_FRAME_BYTES", 128 * 1024)

TARGET_BYTES_PER_NODE = 30_000
TARGET_P99_LARGE = 0.100
TARGET_P99_SMALL = 0.050
SEND_HIGH_WATER_MARK = 1_000_000
SLICE = 0.01
PROBE_INTERVAL = 0.01
PROBE_TIMEOUT = 10.0
RSS_INTERVAL = 0.1
STATS_POLL = 0.2
DRAIN_CALM = 2.0  # received unchanged this long: drained
DRAIN_TIMEOUT = 120.0  # from the start of a flood
SAMPLED_NODES = 50
FLOOD_TEMPLATES = 16
SMALL_SERVERS = 10_000
PRINTABLE = bytes(range(0x20, 0x7F))  # 95 printable ASCII characters
_TO_PRINTABLE = bytes(PRINTABLE[b % len(PRINTABLE)] for b in range(256))
_BIG = 2**32  # uint64 values from here on take 9 bytes in msgpack, like float64


# ------------------------------------------------------------------ publisher and service helpers


class Publisher:
    """A PUB socket connected to the service's ingest endpoint (127.0.0.1 only), closed without linger."""

    def __init__(self, endpoint: str) -> None:
        if not endpoint.startswith("tcp://127.0.0.1:"):
            raise ValueError(f"only tcp://127.0.0.1:PORT, not {endpoint}")
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
        self.socket.setsockopt(zmq.SNDBUF, 4 * 1024 * 1024)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.send = self.socket.send

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def safe_stats(service: harness.Service, timeout: float = 10.0) -> dict[str, Any] | None:
    """``GET /stats``, or None if the service does not answer in time (it may be busy)."""
    try:
        status, body = harness.http_json("GET", service.url + "/stats", timeout=timeout)
    except (OSError, ValueError):
        return None
    return body if status == 200 and isinstance(body, dict) else None


def join(service: harness.Service, publisher: Publisher, minimum: float = 1.0, timeout: float = 15.0) -> None:
    """Slow joiner: a sample from ``joiner.bench`` every 50 ms for ``minimum`` s and until /stats counts one."""
    start = time.monotonic()
    seq = 0
    stats: dict[str, Any] | None = None
    while time.monotonic() - start < timeout:
        publisher.send(msgpack.packb({"v": 1, "fqdn": "joiner.bench", "ts": time.time(), "ip": ["127.0.0.1"],
                                      "cpu": 1.0, "ram": 1.0, "seq": seq}))  # fmt: skip
        seq += 1
        time.sleep(0.05)
        if time.monotonic() - start >= minimum:
            stats = safe_stats(service)
            if stats is not None and stats.get("received", 0) > 0:
                return
    raise RuntimeError(f"the service received nothing from the publisher within {timeout:.0f} s "
                       f"(sent {seq} samples; last /stats: {json.dumps(stats)})\n{service.stderr_text()}")


def settle(service: harness.Service, idle: float) -> dict[str, Any]:
    """Wait for the service to go idle (pending 0, counters still), then ``idle`` s more; its /stats."""
    service.wait_idle(timeout=30)
    time.sleep(idle)
    stats = safe_stats(service)
    if stats is None:
        raise RuntimeError("the idle service does not answer /stats")
    return stats


@dataclass
class Drain:
    stats: dict[str, Any]  # the last /stats read
    drained_at: float  # monotonic time of the first poll that showed the final received with pending 0
    complete: bool  # received stopped growing (else: the timeout ended the wait)
    polls: int


def wait_drained(service: harness.Service, since: float, calm: float = DRAIN_CALM,
                 timeout: float = DRAIN_TIMEOUT) -> Drain:
    """Poll /stats until ``received`` has not grown for ``calm`` s with ``pending`` 0, or until
    ``since + timeout``; note when the final state was first seen."""
    deadline = since + timeout
    last: dict[str, Any] | None = None
    changed_at = time.monotonic()
    first_final = changed_at
    polls = 0
    while True:
        now = time.monotonic()
        stats = safe_stats(service, timeout=max(1.0, min(10.0, deadline - now)))
        polls += 1
        now = time.monotonic()
        if stats is not None:
            state = (stats.get("received"), stats.get("pending", 0) == 0)
            if last is None or state != (last.get("received"), last.get("pending", 0) == 0):
                changed_at = now
                first_final = now
            last = stats
            if now - changed_at >= calm and state[1]:
                return Drain(stats, first_final, True, polls)
        if now >= deadline:
            final = last if last is not None else (safe_stats(service) or {})
            return Drain(final, now, False, polls)
        time.sleep(STATS_POLL)


def dropped_text(stats: dict[str, Any]) -> str:
    dropped = stats.get("dropped")
    if not dropped:
        return "none"
    if isinstance(dropped, dict):
        return ", ".join(f"{key} {value:,}" if isinstance(value, int) else f"{key} {value}"
                         for key, value in dropped.items())
    return json.dumps(dropped)


def dropped_total(stats: dict[str, Any]) -> int:
    """The sum of the ``dropped`` map's integer counts (0 if it has none)."""
    dropped = stats.get("dropped")
    if not isinstance(dropped, dict):
        return 0
    return sum(value for value in dropped.values() if isinstance(value, int) and not isinstance(value, bool))


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def check_locally(label: str, frame: bytes) -> None:
    """Decode ``frame`` with the collector's own decoder and print whether it is valid."""
    try:
        message = node_messages.decode_message(frame, time.time(), protocol.NameCache())
        print(f"  {label}: {len(frame):,} B, valid locally ({type(message).__name__})")
    except Exception as error:  # noqa: BLE001 - InvalidSample, or an API that changed
        reason = getattr(error, "reason", type(error).__name__)
        print(f"  {label}: {len(frame):,} B, NOT valid locally ({reason}: {error})")


# ------------------------------------------------------------------ maximal hello and snapshot contents


def text(length: int, start: str, pieces: Callable[[], str]) -> str:
    """``start`` followed by ``pieces()`` until it is exactly ``length`` characters (ASCII)."""
    parts = [start]
    size = len(start)
    while size < length:
        piece = pieces()
        parts.append(piece)
        size += len(piece)
    return "".join(parts)[:length]


def random_text(rng: random.Random, length: int) -> str:
    """``length`` random printable ASCII characters."""
    return rng.randbytes(length).translate(_TO_PRINTABLE).decode("ascii")


def ipv6_addresses(index: int, rng: random.Random) -> list[str]:
    """``MAX_IPS`` distinct IPv6 addresses of 39 characters (every group 4 hex digits, so normal form)."""
    return [
        ":".join(f"{group:04x}" for group in
                 (0xfd00 + (index >> 16), 0x1000 + ((index >> 4) & 0xFFF), 0x1000 + (index & 0xF) * 16 + k % 16,
                  0x1000 + k, *(rng.randrange(0x1000, 0x10000) for _ in range(4))))
        for k in range(MAX_IPS)
    ]  # fmt: skip


_WORDS = ("data", "volume", "shard", "replica", "backup", "archive", "logs", "cache", "spool", "export",
          "tenant", "orders", "billing", "events", "metrics", "search", "media", "reports", "queue", "ingest")
_FSTYPES = ("ext4", "xfs", "btrfs", "zfs", "nfs4", "fuse.glusterfs", "ceph", "overlay")
_USERS = ("root", "postgres", "app", "www-data", "elasticsearch", "kafka", "redis", "prometheus", "mysql")
_STATUSES = ("running", "sleeping", "disk-sleep", "idle", "stopped")


class MaximalContent:
    """Hellos and snapshots with every list at its bound and every string at its longest.

    ``realistic``: plausible strings padded with plausible segments; ``random``: random printable
    ASCII. Content depends on (seed, node, round), so every node and every snapshot differs.
    """

    def __init__(self, content: str, seed: int) -> None:
        self.realistic = content == "realistic"
        self.seed = seed

    def _rng(self, *key: int) -> random.Random:
        return random.Random(hash((self.seed, *key)) & 0xFFFF_FFFF_FFFF)

    def hello_info(self, node: int, name: str) -> tuple[list[str], dict[str, Any]]:
        rng = self._rng(node, -1)
        info: dict[str, Any]
        if self.realistic:
            host = name.split(".", 1)[0]
            info = {
                "hostname": text(MAX_TEXT, f"{host}.rack-{node % 40:02d}.dc-{node % 3 + 1}",
                                 lambda: f".{rng.choice(_WORDS)}-{rng.randrange(10_000):04d}"),
                "os": text(MAX_TEXT, f"Linux 6.1.0-{rng.randrange(10, 30)}-amd64 #1 SMP PREEMPT_DYNAMIC Debian "
                                     f"6.1.{rng.randrange(50, 130)}-1",
                           lambda: f" ({rng.choice(_WORDS)}-{rng.randrange(10_000):04d})"),
                "platform": text(MAX_TEXT, "x86_64 Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                                 lambda: f" flags={rng.choice(('avx2', 'avx512f', 'sse4_2', 'aes', 'sha_ni'))}"),
                "agent_version": text(MAX_VERSION, "0.1.0+build", lambda: f".{rng.randrange(10_000):04d}"),
            }
        else:
            info = {key: random_text(rng, MAX_TEXT) for key in ("hostname", "os", "platform")}
            info["agent_version"] = random_text(rng, MAX_VERSION)
        info.update(boot_time=time.time() - rng.uniform(86_400, 200 * 86_400), cpu_count=MAX_CPUS,
                    memory_total=rng.randrange(2**40, 2**42), interval=1.0)  # fmt: skip
        return ipv6_addresses(node, rng), info

    def stats(self, node: int, round_: int) -> dict[str, Any]:
        """One maximal snapshot of ``node`` for its ``round_``-th report."""
        rng = self._rng(node, round_)
        strings = self._rng(node) if self.realistic else rng  # realistic disks/interfaces keep their names
        # realistic numbers have the decimals the agent sends (percentages and rates to 0.01,
        # servertrack.agent.node_stats); random ones every digit a float holds
        decimals = 2 if self.realistic else 4
        pct = lambda: round(rng.uniform(0.0, 100.0), decimals)  # noqa: E731
        big = lambda: rng.randrange(_BIG, 2**63)  # noqa: E731
        rate = (lambda: round(rng.uniform(0.0, 1e9), 2)) if self.realistic else (lambda: rng.uniform(0.0, 1e9))  # noqa: E731

        def cpu_seconds() -> float:  # cumulative, up to the schema's bound, to the agent's 0.01
            return round(rng.uniform(0.0, MAX_CPU_SECONDS), 2)

        def counter() -> int:  # a cumulative counter up to the schema's bound
            return rng.randrange(0, MAX_TOTAL + 1)

        def name(start: str, pieces: Callable[[], str]) -> str:
            return text(MAX_NAME, start, pieces)

        disks, network = [], []
        for k in range(MAX_DISKS):
            total = rng.randrange(2**36, 2**44)
            used = rng.randrange(0, total)
            if self.realistic:
                device = name(f"/dev/disk/by-id/nvme-SAMSUNG_MZQL2960HCJR-00A07_S64F{node:05d}{k:02d}",
                              lambda: f"-part{strings.randrange(1, 10)}")
                mount = text(MAX_TEXT, f"/srv/data/volume-{k + 1:04d}",
                             lambda: f"/{strings.choice(_WORDS)}-{strings.randrange(10_000):04d}")
                fstype = name(strings.choice(_FSTYPES), lambda: f".{strings.choice(_WORDS)}")
            else:
                device, mount = random_text(rng, MAX_NAME), random_text(rng, MAX_TEXT)
                fstype = random_text(rng, MAX_NAME)
            disks.append({"device": device, "mountpoint": mount, "fstype": fstype, "total": total, "used": used,
                          "free": total - used, "percent": round(100.0 * used / total, decimals)})  # fmt: skip
        for k in range(MAX_INTERFACES):
            if self.realistic:
                interface = name(f"enp{k // 4 + 1}s0f{k % 4}", lambda: f".vlan{strings.randrange(1, 4095)}")
            else:
                interface = random_text(rng, MAX_NAME)
            network.append({"interface": interface, "rx_bytes_per_s": rate(), "tx_bytes_per_s": rate(),
                            "rx_packets_per_s": rate(), "tx_packets_per_s": rate(), "rx_errors": big(),
                            "tx_errors": big(), "rx_drops": big(), "tx_drops": big()})  # fmt: skip

        def process(k: int) -> dict[str, Any]:
            if self.realistic:
                base, user, command = loadgen.FLEET_PROCESSES[rng.randrange(len(loadgen.FLEET_PROCESSES))]
                queue = f"{rng.choice(_WORDS)}-{node:05d}-{k:02d}"
                proc_name = name(base, lambda: f"-{rng.choice(_WORDS)}-{rng.randrange(100):02d}")
                proc_user = name(user, lambda: f"-svc{rng.randrange(100):02d}")
                status = name(rng.choice(_STATUSES), lambda: f"-{rng.choice(_WORDS)}")
                start = (command or f"/usr/bin/python3 -m worker --queue={queue}") + f" --queue={queue}"
                cmdline = text(MAX_TEXT, start, lambda: f" --{rng.choice(_WORDS)}={rng.randrange(100_000)}")
            else:
                proc_name, proc_user, status = (random_text(rng, MAX_NAME) for _ in range(3))
                cmdline = random_text(rng, MAX_TEXT)
            return {"pid": rng.randrange(MAX_PID // 2, MAX_PID + 1), "name": proc_name, "user": proc_user,
                    "status": status, "cpu_percent": round(rng.uniform(0.0, 100.0 * MAX_CPUS), decimals), "rss": big(),
                    "memory_percent": pct(), "create_time": time.time() - rng.uniform(0, 1e7),
                    "cmdline": cmdline}  # fmt: skip

        return {
            "cpu": {"percent": pct(), "per_cpu": [pct() for _ in range(MAX_CPUS)],
                    "load_avg": [rng.uniform(0, 1024) for _ in range(3)],
                    "times_percent": {"user": pct(), "system": pct(), "idle": pct(), "iowait": pct()},
                    "freq_mhz": rng.uniform(800.0, 5000.0),
                    "times_seconds": {key: cpu_seconds() for key in ("user", "system", "idle", "iowait")}},
            "memory": {"total": big(), "available": big(), "used": big(), "percent": pct(), "free": big()},
            "swap": {"total": big(), "used": big(), "percent": pct()},
            "disks": disks,
            "disk_io": {"read_bytes_per_s": rate(), "write_bytes_per_s": rate(), "read_ops_per_s": rate(),
                        "write_ops_per_s": rate(), "read_count": counter(), "write_count": counter(),
                        "read_bytes": counter(), "write_bytes": counter()},
            "network": network,
            "processes": {"count": big(), "top_cpu": [process(k) for k in range(MAX_TOP)],
                          "top_memory": [process(MAX_TOP + k) for k in range(MAX_TOP)]},
        }  # fmt: skip


# ------------------------------------------------------------------ scenario: memory


def memory_node_name(index: int) -> str:
    return f"maxnode-{index:05d}.bench"


@dataclass
class MemoryResult:
    rss_idle: int
    rss_after: int
    per_node: float
    sent: int
    received: int  # this run's frames counted by /stats (received minus the joiner's)
    dropped: int  # frames this run the service dropped, all reasons
    stats: dict[str, Any]
    hello_bytes: float
    snapshot_bytes: float
    with_snapshot: int
    sampled: int
    other_status: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = True


def memory_frames(content: MaximalContent, nodes: int, sizes: dict[str, list[int]]) -> Iterator[bytes]:
    """Hello + snapshot for every node, then two more snapshots each (one seq per node)."""
    for index in range(1, nodes + 1):
        name = memory_node_name(index)
        ips, info = content.hello_info(index, name)
        frame = node_messages.encode_hello(name, time.time(), 0, ips, info)
        sizes["hello"].append(len(frame))
        yield frame
        frame = node_messages.encode_snapshot(name, time.time(), 1, content.stats(index, 0))
        sizes["snapshot"].append(len(frame))
        yield frame
    for round_ in (1, 2):
        for index in range(1, nodes + 1):
            frame = node_messages.encode_snapshot(memory_node_name(index), time.time(), 1 + round_,
                                                  content.stats(index, round_))
            sizes["snapshot"].append(len(frame))
            yield frame


def paced_send(service: harness.Service, publisher: Publisher, frames: Iterator[bytes], total: int, rate: int,
               base_received: int) -> int:
    """Send ``frames`` at ``rate`` frames/s in 10 ms slices, pausing while the service is > 2 s behind."""
    per_slice = max(1, int(rate * SLICE))
    deadline = time.monotonic() + total / rate * 4 + 120
    start = time.monotonic()
    sent = 0
    next_check = start + 1.0
    slice_index = 0
    exhausted = False
    while sent < total and not exhausted:
        now = time.monotonic()
        if now >= deadline:
            print(f"  WARNING: sending stopped at its time bound after {sent:,} of {total:,} frames")
            break
        if now >= next_check:
            next_check = now + 1.0
            pause_end = now + 60
            while time.monotonic() < pause_end:  # the receiver keeps up, or we wait (bounded)
                stats = safe_stats(service)
                if stats is None or sent - (stats.get("received", 0) - base_received) <= 2 * rate:
                    break
                time.sleep(0.2)
            start_shift = time.monotonic() - now
            start += start_shift  # do not try to catch up after a pause
            deadline += start_shift
        due = min(total, int(rate * (time.monotonic() - start)) + per_slice)
        while sent < due:
            frame = next(frames, None)
            if frame is None:
                exhausted = True
                break
            publisher.send(frame)
            sent += 1
        slice_index = max(slice_index + 1, int((time.monotonic() - start) / SLICE))
        pause = start + slice_index * SLICE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return sent


def sample_snapshots(service: harness.Service, nodes: int) -> tuple[int, int, dict[int, int]]:
    """GET /nodes/{name}/cpu on up to 50 nodes spread over the range: (200 answers, asked, other statuses)."""
    picks = sorted({1 + (k * (nodes - 1)) // max(1, SAMPLED_NODES - 1) for k in range(min(nodes, SAMPLED_NODES))})
    ok, others = 0, {}  # type: tuple[int, dict[int, int]]
    for index in picks:
        try:
            status, _ = harness.http_json("GET", f"{service.url}/nodes/{memory_node_name(index)}/cpu", timeout=30)
        except (OSError, ValueError):
            status = -1
        if status == 200:
            ok += 1
        else:
            others[status] = others.get(status, 0) + 1
    return ok, len(picks), others


def memory_run(args: argparse.Namespace, content_name: str, run: int) -> MemoryResult:
    content = MaximalContent(content_name, seed=run)
    if run == 1:  # what the frames look like, checked with the collector's own decoder
        ips, info = content.hello_info(0, memory_node_name(0))
        check_locally("hello frame", node_messages.encode_hello(memory_node_name(0), time.time(), 0, ips, info))
        check_locally("snapshot frame",
                      node_messages.encode_snapshot(memory_node_name(0), time.time(), 1, content.stats(0, 0)))
    sizes: dict[str, list[int]] = {"hello": [], "snapshot": []}
    total = 4 * args.nodes
    # the whole of a core for decoding snapshots: this measures memory, not how many maximal
    # snapshots a second the default budget (0.8 of a core, ~200 of them) takes
    with harness.Service(max_servers=args.max_servers, flags=("--large-frame-cpu", "1")) as service, \
            Publisher(service.ingest) as publisher:
        join(service, publisher)
        base = settle(service, args.idle)
        rss_idle = service.rss()
        started = time.monotonic()
        sent = paced_send(service, publisher, memory_frames(content, args.nodes, sizes), total, args.rate,
                          base["received"])
        seconds = time.monotonic() - started
        drain = wait_drained(service, time.monotonic(), calm=2.0, timeout=300)
        time.sleep(args.idle)
        rss_after = service.rss()
        final = safe_stats(service) or drain.stats
        with_snapshot, sampled, others = sample_snapshots(service, args.nodes)
    return MemoryResult(
        rss_idle=rss_idle, rss_after=rss_after, per_node=(rss_after - rss_idle) / args.nodes, sent=sent,
        received=final.get("received", 0) - base["received"], dropped=dropped_total(final) - dropped_total(base),
        stats=final,
        hello_bytes=harness.median(sizes["hello"]), snapshot_bytes=harness.median(sizes["snapshot"]),
        with_snapshot=with_snapshot, sampled=sampled, other_status=others, seconds=seconds, complete=drain.complete,
    )  # fmt: skip


def scenario_memory(args: argparse.Namespace) -> bool:
    contents = ("realistic", "random") if args.content == "both" else (args.content,)
    ok = True
    for content in contents:
        print(f"-- memory, {content} content: {args.nodes:,} nodes, a maximal hello and 3 maximal snapshots each, "
              f"paced at {args.rate:,} frames/s")  # fmt: skip
        results = []
        for run in range(1, args.runs + 1):
            r = memory_run(args, content, run)
            results.append(r)
            s = r.stats
            print(
                f"  run {run}: RSS idle {mib(r.rss_idle)}, after {mib(r.rss_after)}: {r.per_node:,.0f} B/node; "
                f"sent {r.sent:,} frames in {r.seconds:.1f} s (hello {r.hello_bytes:,.0f} B, snapshot "
                f"{r.snapshot_bytes:,.0f} B median)"
            )
            print(
                f"         /stats: received {count(s.get('received'))} (this run {r.received:,} of {r.sent:,} sent), "
                f"applied {count(s.get('applied'))}, dropped {dropped_text(s)}, nodes {count(s.get('nodes'))}, "
                f"pending {count(s.get('pending'))}" + ("" if r.complete else "  [received still growing at timeout]")
            )
            if r.dropped:
                print(f"         the service dropped {r.dropped:,} of this run's frames: the figure covers what it "
                      f"kept (if a reason means overload, a lower --rate may let more in)")
            shown = ", ".join(f"{status}: {n}" for status, n in sorted(r.other_status.items()))
            print(f"         nodes holding a snapshot (GET /nodes/NAME/cpu == 200): {r.with_snapshot} of "
                  f"{r.sampled} sampled" + (f" (others {shown})" if shown else ""))  # fmt: skip
        harness.print_runs(f"RSS per node ({content})", [r.per_node for r in results], "B")
        ok &= harness.verdict(f"RSS per node, {content} content (median)",
                              harness.median([r.per_node for r in results]), TARGET_BYTES_PER_NODE, "B", False)
    return ok


# ------------------------------------------------------------------ the prober (subprocess)


_PROBE_STOP = False


def _probe_stop(signum: int, frame: object) -> None:
    global _PROBE_STOP
    _PROBE_STOP = True


def run_probe(url: str, pid: int, out: str, limit: float) -> int:
    """GET /healthz every 10 ms on one keep-alive connection until SIGTERM (or ``limit`` s); write JSON."""
    signal.signal(signal.SIGTERM, _probe_stop)
    signal.signal(signal.SIGINT, _probe_stop)
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    if host != "127.0.0.1":
        raise SystemExit("the prober only talks to 127.0.0.1")
    service = psutil.Process(pid)
    starts: list[float] = []
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss: list[tuple[float, int]] = []
    connection: http.client.HTTPConnection | None = None
    begin = time.monotonic()
    sampling = threading.Event()

    def sample_rss() -> None:  # its own thread, so that a request that hangs does not stop the samples
        while not sampling.is_set() and time.monotonic() - begin < limit:
            try:
                rss.append((time.monotonic(), service.memory_info().rss))
            except psutil.Error:
                return
            sampling.wait(RSS_INTERVAL)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    next_request = begin
    announced = False
    while not _PROBE_STOP and time.monotonic() - begin < limit:
        now = time.monotonic()
        if now < next_request:
            time.sleep(next_request - now)
            continue
        next_request = max(next_request + PROBE_INTERVAL, now)
        if connection is None:
            connection = http.client.HTTPConnection(host, int(port), timeout=PROBE_TIMEOUT)
        started = time.monotonic()
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            latency = time.monotonic() - started
            if response.status != 200:
                errors[f"status {response.status}"] = errors.get(f"status {response.status}", 0) + 1
            if response.will_close:
                connection.close()
                connection = None
        except TimeoutError:
            latency = PROBE_TIMEOUT
            errors["timeout"] = errors.get("timeout", 0) + 1
            if connection is not None:
                connection.close()
            connection = None
        except (OSError, http.client.HTTPException) as error:
            latency = time.monotonic() - started
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
            if connection is not None:
                connection.close()
            connection = None
        starts.append(started)
        latencies.append(latency)
        if not announced:
            print("probing", flush=True)
            announced = True
    sampling.set()
    sampler.join(timeout=5)
    if connection is not None:
        connection.close()
    with open(out, "w") as handle:
        json.dump({"starts": starts, "latencies": latencies, "errors": errors, "rss": rss}, handle)
    print("done", flush=True)
    return 0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


# ------------------------------------------------------------------ scenarios: floods


class LargeFrames:
    """Maximal random snapshots topped up to ``frame_bytes`` with an ignored top-level ``pad`` key."""

    def __init__(self, frame_bytes: int, names: int | None, frames: int, seed: int = 7) -> None:
        content = MaximalContent("random", seed)
        self.stats = [msgpack.packb(content.stats(k, 0)) for k in range(FLOOD_TEMPLATES)]
        self.names = frames if names is None else names
        self.seq = [0] * min(self.names, frames)
        self.prefixes: dict[int, bytes] = {}
        rng = random.Random(seed)
        self.pads: list[bytes] = []
        self.sizes: list[int] = []
        for stats in self.stats:
            bare = len(self._frame(0, stats, b"", time.time(), 0))
            pad = b""
            want = min(frame_bytes, MAX_FRAME_BYTES) - bare - len(msgpack.packb("pad"))
            for header in (1, 2, 3, 5):  # msgpack str headers: fixstr, str8, str16, str32
                room = want - header
                if room > 0 and len(msgpack.packb("x" * room)) == want:
                    pad = msgpack.packb("pad") + msgpack.packb(random_text(rng, room))
                    break
            self.pads.append(pad)
            self.sizes.append(len(self._frame(0, stats, pad, time.time(), 0)))

    def name(self, index: int) -> str:
        return "flood-00000.bench" if self.names == 1 else f"flood-{index % self.names + 1:05d}.bench"

    def _frame(self, index: int, stats: bytes, pad: bytes, ts: float, seq: int) -> bytes:
        prefix = self.prefixes.get(index)
        if prefix is None:
            packed = msgpack.packb({"v": 2, "kind": "snapshot", "fqdn": self.name(index)})[1:]
            prefix = self.prefixes[index] = packed
        header = bytes([0x80 | (7 if pad else 6)])  # v kind fqdn [pad] stats ts seq
        return b"".join((header, prefix, pad, b"\xa5stats", stats,
                         struct.pack(">4sd5sQ", b"\xa2ts\xcb", ts, b"\xa3seq\xcf", seq)))  # fmt: skip

    def frame(self, index: int) -> bytes:
        slot = index % len(self.seq)
        seq = self.seq[slot]
        self.seq[slot] = seq + 1
        template = index % len(self.stats)
        return self._frame(slot, self.stats[template], self.pads[template], time.time(), seq)


@dataclass
class FloodResult:
    sent: int
    send_seconds: float
    frame_bytes: tuple[int, int]
    p50: float
    p99: float
    worst: float
    requests: int
    requests_all: int
    errors: dict[str, int]
    rss_before: int
    rss_peak: int
    rss_after: int
    stats: dict[str, Any]
    received: int
    drain_seconds: float
    complete: bool


def flood_run(args: argparse.Namespace, kind: str, run: int) -> FloodResult:
    frames_total = args.frames if args.frames is not None else (10_000 if kind == "large" else 300_000)
    if kind == "large":
        large = LargeFrames(args.frame_bytes, None if args.names == "many" else int(args.names), frames_total)
        if run == 1:
            check_locally("flood frame", large.frame(0))
            large.seq = [0] * len(large.seq)
        sizes = (min(large.sizes), max(large.sizes))
        make_burst: Callable[[int, int], list[bytes]] = lambda first, size: [large.frame(first + k)
                                                                             for k in range(size)]  # noqa: E731
        burst = 50
    else:
        factory = loadgen.FrameFactory(0, SMALL_SERVERS)
        sample = factory.frame(0, time.time())
        if run == 1:
            check_locally("flood frame", sample)
        factory = loadgen.FrameFactory(0, SMALL_SERVERS)
        sizes = (len(sample), len(sample))
        make_burst = lambda first, size: factory.burst(size, time.time())  # noqa: E731
        burst = 1000
    with tempfile.TemporaryDirectory(prefix="hardening-") as tmp:
        out = os.path.join(tmp, "probe.json")
        with harness.Service(max_servers=args.max_servers) as service, Publisher(service.ingest) as publisher:
            join(service, publisher)
            base = settle(service, args.idle)
            rss_before = service.rss()
            argv = [harness.PYTHON, os.path.abspath(__file__), "--probe", service.url, "--probe-pid",
                    str(service.pid), "--probe-out", out, "--probe-limit", str(DRAIN_TIMEOUT + 60)]  # fmt: skip
            with harness.Process(argv, name="healthz prober") as prober:
                line = prober.read_line(timeout=30)
                if line != "probing":
                    raise RuntimeError(f"unexpected line from the prober: {line!r}")
                started = time.monotonic()
                send_deadline = started + DRAIN_TIMEOUT
                sent = 0
                while sent < frames_total and time.monotonic() < send_deadline:
                    for frame in make_burst(sent, min(burst, frames_total - sent)):
                        publisher.send(frame)
                        sent += 1
                send_seconds = time.monotonic() - started
                drain = wait_drained(service, started)
                prober.popen.send_signal(signal.SIGTERM)
                if prober.wait(PROBE_TIMEOUT + 10) is None:
                    raise RuntimeError("the prober did not stop")
            rss_after = service.rss()
        with open(out) as handle:
            probe = json.load(handle)
    counted = [lat for start, lat in zip(probe["starts"], probe["latencies"]) if start <= drain.drained_at]
    peak = max([rss for _, rss in probe["rss"]] + [rss_before, rss_after])
    return FloodResult(
        sent=sent, send_seconds=send_seconds, frame_bytes=sizes, p50=percentile(counted, 50),
        p99=percentile(counted, 99), worst=max(counted, default=float("nan")), requests=len(counted),
        requests_all=len(probe["latencies"]), errors=probe["errors"], rss_before=rss_before, rss_peak=peak,
        rss_after=rss_after, stats=drain.stats, received=drain.stats.get("received", 0) - base["received"],
        drain_seconds=drain.drained_at - started, complete=drain.complete,
    )  # fmt: skip


def scenario_flood(args: argparse.Namespace, kind: str) -> bool:
    frames = args.frames if args.frames is not None else (10_000 if kind == "large" else 300_000)
    target = TARGET_P99_LARGE if kind == "large" else TARGET_P99_SMALL
    if kind == "large":
        names = "one node" if args.names == "1" else ("a node each" if args.names == "many" else f"{args.names} nodes")
        print(f"-- flood-large: {frames:,} maximal random snapshots topped up to {args.frame_bytes:,} B, "
              f"{names}, one publisher unpaced; /healthz every 10 ms")  # fmt: skip
    else:
        print(f"-- flood-small: {frames:,} v1 samples from {SMALL_SERVERS:,} servers, one publisher unpaced; "
              f"/healthz every 10 ms")
    results = []
    for run in range(1, args.runs + 1):
        r = flood_run(args, kind, run)
        results.append(r)
        s = r.stats
        size = f"{r.frame_bytes[0]:,} B" if r.frame_bytes[0] == r.frame_bytes[1] else \
            f"{r.frame_bytes[0]:,}-{r.frame_bytes[1]:,} B"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "none"
        print(
            f"  run {run}: /healthz p50 {r.p50 * 1e3:.1f} ms, p99 {r.p99 * 1e3:.1f} ms, max {r.worst * 1e3:.1f} ms "
            f"over {r.requests:,} requests ({r.requests_all:,} in all, errors {errors})"
        )
        print(
            f"         sent {r.sent:,} frames of {size} in {r.send_seconds:.2f} s "
            f"({r.sent / max(r.send_seconds, 1e-9):,.0f}/s); drained after {r.drain_seconds:.1f} s"
            + ("" if r.complete else f" [NOT drained within {DRAIN_TIMEOUT:.0f} s]")
        )
        print(
            f"         service RSS before {mib(r.rss_before)}, peak {mib(r.rss_peak)}, after {mib(r.rss_after)}; "
            f"/stats received {count(s.get('received'))} (this flood {r.received:,} of {r.sent:,}), "
            f"applied {count(s.get('applied'))}, dropped {dropped_text(s)}, nodes {count(s.get('nodes'))}"
        )
    harness.print_runs("/healthz p50", [r.p50 * 1e3 for r in results], "ms")
    harness.print_runs("/healthz p99", [r.p99 * 1e3 for r in results], "ms")
    harness.print_runs("/healthz max", [r.worst * 1e3 for r in results], "ms")
    harness.print_runs("service peak RSS", [r.rss_peak / 2**20 for r in results], "MiB")
    return harness.verdict(f"flood-{kind} /healthz p99 (median)", harness.median([r.p99 * 1e3 for r in results]),
                           target * 1e3, "ms", False)


# ------------------------------------------------------------------ main


def names_arg(value: str) -> str:
    if value == "many" or (value.isdigit() and int(value) >= 1):
        return value
    raise argparse.ArgumentTypeError("use 1, many, or a number of names")


# ------------------------------------------------------------------ scenario: slow clients

SLOW_CLIENTS = 150
SLOW_TARGET_SECONDS = 30.0  # each slow client closed within this (the service's --idle-timeout is 20 s)
SLOW_LIMIT_SECONDS = 70.0


def slow_clients_run(args: argparse.Namespace, run: int) -> tuple[float, float, float, int]:
    """150 clients trickling one header byte a second against a service at its default limits,
    while a client GETs /healthz every 100 ms on its own connections: (slowest close in s, healthz
    p99 in ms, healthz max in ms, clients still open at the limit)."""
    with harness.Service(max_servers=args.max_servers) as service:
        host, port = service.url.removeprefix("http://").split(":")
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 200
        started = time.monotonic()
        clients = []
        for _ in range(SLOW_CLIENTS):
            connection = socket.create_connection((host, int(port)), timeout=5)
            connection.setblocking(False)
            clients.append(connection)
        closed_at: dict[int, float] = {}
        latencies: list[float] = []
        next_byte = started
        sent = 0
        try:
            while len(closed_at) < len(clients) and time.monotonic() - started < SLOW_LIMIT_SECONDS:
                now = time.monotonic()
                if now >= next_byte:
                    for index, connection in enumerate(clients):
                        if index in closed_at:
                            continue
                        try:
                            connection.send(request[sent:sent + 1])
                        except OSError:
                            closed_at[index] = now - started
                    sent = min(sent + 1, len(request) - 1)
                    next_byte += 1.0
                for index, connection in enumerate(clients):
                    if index not in closed_at:
                        try:
                            if connection.recv(4096) == b"":
                                closed_at[index] = now - started
                        except BlockingIOError:
                            pass
                        except OSError:
                            closed_at[index] = now - started
                probe_start = time.perf_counter()
                probe = http.client.HTTPConnection(host, int(port), timeout=10)
                try:
                    probe.request("GET", "/healthz")
                    probe.getresponse().read()
                finally:
                    probe.close()
                latencies.append((time.perf_counter() - probe_start) * 1000.0)
                time.sleep(0.1)
        finally:
            for connection in clients:
                connection.close()
        slowest = max(closed_at.values()) if closed_at else float("inf")
        still_open = len(clients) - len(closed_at)
        p99, worst = percentile(latencies, 99), max(latencies)
        print(f"  run {run}: {len(closed_at)} of {len(clients)} slow clients closed, the last after {slowest:.1f} s; "
              f"/healthz p50 {percentile(latencies, 50):.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms over "
              f"{len(latencies)} requests; service RSS {mib(service.rss())}")
        return slowest, p99, worst, still_open


def scenario_slow_clients(args: argparse.Namespace) -> bool:
    print(f"-- slow clients: {SLOW_CLIENTS} connections trickling one header byte a second; /healthz every 100 ms")
    results = [slow_clients_run(args, run) for run in range(1, args.runs + 1)]
    harness.print_runs("slowest close", [r[0] for r in results], "s")
    harness.print_runs("/healthz p99", [r[1] for r in results], "ms")
    ok = harness.verdict("slow clients: the last one closed after (median)", harness.median([r[0] for r in results]),
                         SLOW_TARGET_SECONDS, "s", higher_is_better=False)
    return ok and all(r[3] == 0 for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("memory", "flood-large", "flood-small", "slow-clients", "all"),
                        default="all",
                        help="which scenario (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="fresh services per scenario (default %(default)s)")
    parser.add_argument("--nodes", type=int, default=2000, help="memory: nodes (default %(default)s)")
    parser.add_argument("--content", choices=("realistic", "random", "both"), default="both",
                        help="memory: snapshot content (default %(default)s)")
    parser.add_argument("--rate", type=int, default=200, help="memory: frames per second (default %(default)s)")
    parser.add_argument("--frames", type=int, default=None,
                        help="floods: frames to send (default 10,000 for flood-large, 300,000 for flood-small)")
    parser.add_argument("--names", type=names_arg, default="many",
                        help="flood-large: 1, many (one node per frame) or N names (default %(default)s)")
    parser.add_argument("--frame-bytes", type=int, default=124 * 1024,
                        help="flood-large: top frames up to this size, 0 = no top-up (default %(default)s)")
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds idle before each RSS read (default %(default)s)")
    parser.add_argument("--max-servers", type=int, default=20_000, help="serve --max-servers (default %(default)s)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: run as the /healthz prober
    parser.add_argument("--probe-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe-out", help=argparse.SUPPRESS)
    parser.add_argument("--probe-limit", type=float, default=DRAIN_TIMEOUT + 60, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return run_probe(args.probe, args.probe_pid, args.probe_out, args.probe_limit)
    if args.runs < 1 or args.nodes < 1 or args.rate < 1 or (args.frames is not None and args.frames < 1):
        parser.error("need --runs >= 1, --nodes >= 1, --rate >= 1, --frames >= 1")
    if args.frame_bytes > MAX_FRAME_BYTES:
        parser.error(f"--frame-bytes must be at most {MAX_FRAME_BYTES:,}")
    harness.print_header("hardening: RSS per node with snapshots at every bound; /healthz under ingest floods")
    ok = True
    if args.scenario in ("memory", "all"):
        ok &= scenario_memory(args)
    if args.scenario in ("flood-large", "all"):
        ok &= scenario_flood(args, "large")
    if args.scenario in ("flood-small", "all"):
        ok &= scenario_flood(args, "small")
    if args.scenario in ("slow-clients", "all"):
        ok &= scenario_slow_clients(args)
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
