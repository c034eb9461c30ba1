"""Store failures while ingesting: a full disk under ``serve --store sqlite``, then space again.

One run (``--runs`` of them)

    The bench mounts a tmpfs of ``--size`` (needs root; without it the bench says so
    and exits 0, SKIPPED) and runs a real ``serve --store sqlite`` with its data
    directory on it, fed by the load generator at ``--rate`` samples/s from
    ``--servers`` servers. After ``--settle`` s a filler file takes the tmpfs' free
    space but ``--headroom`` bytes, which ingest then fills: the store's writes fail
    (ENOSPC). The disk stays full for ``--hold`` s, then the filler is removed.
    ``/stats`` is polled every 0.25 s throughout, and a few servers' windows are
    read while the disk is full.

What is reported (per run, and the medians)

    - ingest loss: frames sent in the measured phase minus samples applied (``/stats``
      ``applied``; the warm-up's few frames count as applied, so a loss below them would
      hide, but ``lost``, the gaps in seq, would not), ``lost`` and drops (all should
      be 0: the store's failure must not cost ingest anything);
      whether windows kept growing over HTTP while the disk was full, and the longest
      time ``applied`` stood still meanwhile (the applier stalled: about 1 s is one
      apply interval);
    - the counters: ``store`` ``failing`` seen, per worker ``failures``, ``refused``,
      the most ``queued_jobs`` / ``queued_bytes`` seen, the service's RSS before and
      at most during the fault (memory stays bounded);
    - the log: lines saying ``write failed, retrying`` (rate-limited: at most one a
      minute per worker);
    - recovery: seconds from freeing the space to ``store: ok``, and to both queues
      empty;
    - a restart afterwards (SIGTERM, serve again on the same directory): the samples
      of ``--check-servers`` servers in their minute windows against what the load
      generator sent them (what the store kept once the disk was back: the last
      checkpoint carries what the log had to refuse).

Usage

    python bench/store_faults.py                           # 50,000 samples/s, 3 runs
    python bench/store_faults.py --runs 1 --hold 10 --rate 20000 --servers 20000
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import durable
import loadgen
import restart

RETRY_LINE = "write failed, retrying"


@contextlib.contextmanager
def small_tmpfs(size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted on a new temporary directory (None when it cannot be mounted);
    unmounted and removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="servertrack-faults-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    try:
        yield path if done.returncode == 0 else None
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def fill(path: Path, headroom: int) -> int:
    """Write a file at ``path`` taking all the free space of its file system but ``headroom`` bytes."""
    written = 0
    with open(path, "wb", buffering=0) as filler:
        block = b"\0" * (1 << 20)
        while True:
            free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
            if free <= headroom:
                return written
            try:
                written += filler.write(block[:max(4096, min(len(block), free - headroom))])
            except OSError:
                return written


@dataclass
class Poller:
    """Polls ``/stats`` and RSS in a thread; keeps the extremes."""

    service: harness.Service
    samples: list[dict[str, Any]] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                stats = self.service.stats()
                stats["at"] = time.monotonic()
                self.samples.append(stats)
                self.rss.append((time.monotonic(), self.service.rss()))
            self.stop.wait(0.25)

    def between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [stats for stats in self.samples if start <= stats["at"] <= end]


@dataclass
class Run:
    sent: int
    applied: int
    lost: int
    dropped: int
    windows_grew: bool
    longest_stall: float
    max_pending: int
    failing_seen: bool
    failures: dict[str, int]
    refused: dict[str, int]
    max_queued_jobs: int
    max_queued_bytes: int
    rss_before: int
    rss_max_during: int
    log_lines: int
    recover_ok_seconds: float
    drained_seconds: float
    checked: int
    kept_missing: int
    kept_twice: int
    last_error: str


def total_dropped(stats: dict[str, Any]) -> int:
    dropped = stats.get("dropped", {})
    return sum(sum(reasons.values()) if isinstance(reasons, dict) else int(reasons) for reasons in dropped.values())


def longest_stall(samples: list[dict[str, Any]]) -> float:
    """The longest time ``applied`` stood still (seconds): between two polls that saw it grow, or from the
    last growth to the last poll."""
    longest, since, applied = 0.0, None, None
    for stats in samples:
        if since is not None:
            longest = max(longest, stats["at"] - since)
        if applied is None or stats["applied"] > applied:
            since, applied = stats["at"], stats["applied"]
    return longest


def measure(args: argparse.Namespace, mount: Path) -> Run:
    data_dir, filler = mount / "data", mount / "filler"
    flags = ["--store", "sqlite", "--data-dir", str(data_dir), "--checkpoint-every", args.checkpoint_every]
    seconds = args.settle + args.hold + args.after
    service = harness.Service(max_servers=args.max_servers, flags=flags)
    try:
        poller = Poller(service)
        thread = threading.Thread(target=poller.run, daemon=True)
        thread.start()
        client = durable.KeepAlive(service.port)
        probes = [loadgen.server_name(1 + i * (args.servers - 1) // 5) for i in range(5)]
        with durable.loadgen_process(service, args.rate, args.servers, seconds) as generator:
            time.sleep(args.settle)
            rss_before = service.rss()
            full_at = time.monotonic()
            fill(filler, args.headroom)
            held_before = [sum(restart.minute_window(client, name).values()) for name in probes]
            time.sleep(max(0.0, args.hold - 2))
            held_during = [sum(restart.minute_window(client, name).values()) for name in probes]
            time.sleep(max(0.0, full_at + args.hold - time.monotonic()))
            filler.unlink()
            freed = time.monotonic()
            ok_at = drained_at = float("nan")
            deadline = freed + 120
            while time.monotonic() < deadline:
                store = durable.store_of(service.stats())
                if store.get("store") == "ok" and ok_at != ok_at:
                    ok_at = time.monotonic()
                if ok_at == ok_at and durable.queued_jobs(service.stats()) == 0:
                    drained_at = time.monotonic()
                    break
                time.sleep(0.05)
            sent = harness.last_json_line(generator, timeout=seconds + 60)
        stats = service.wait_idle(timeout=60)
        poller.stop.set()
        thread.join(5)
        during = poller.between(full_at, freed)
        store_now = durable.store_of(stats)
        service.popen.send_signal(signal.SIGTERM)
        service.wait(60)
        log_lines = service.stderr_text(1 << 20).count(RETRY_LINE)
        service.stop()
        run_stats = dict(
            sent=sent["sent"], applied=int(stats["applied"]), lost=int(stats["lost"]),
            dropped=total_dropped(stats), windows_grew=all(b > a for a, b in zip(held_before, held_during)),
            longest_stall=longest_stall(during), max_pending=max((int(s["pending"]) for s in during), default=0),
            failing_seen=any(durable.store_of(s).get("store") == "failing" for s in during),
            failures={w: durable.store_counter(stats, w, "failures") for w in ("log", "history")},
            refused={w: durable.store_counter(stats, w, "refused") for w in ("log", "history")},
            max_queued_jobs=max((durable.queued_jobs(s) for s in during), default=0),
            max_queued_bytes=max((durable.store_counter(s, "log", "queued_bytes")
                                  + durable.store_counter(s, "history", "queued_bytes") for s in during), default=0),
            rss_before=rss_before, rss_max_during=max((r for at, r in poller.rss if full_at <= at <= freed), default=0),
            log_lines=log_lines, recover_ok_seconds=ok_at - freed, drained_seconds=drained_at - freed,
            last_error=str((store_now.get("log") or {}).get("last_error") or (store_now.get("history") or {}).get("last_error")),
        )
        client.close()
        service = harness.Service(max_servers=args.max_servers, flags=flags)
        client = durable.KeepAlive(service.port)
        indexes = sorted({1 + i * (args.servers - 1) // args.check_servers for i in range(args.check_servers)})
        differences = [restart.sent_by_server(index, sent["sent"], args.servers)
                       - sum(restart.minute_window(client, loadgen.server_name(index)).values()) for index in indexes]
        client.close()
        return Run(**run_stats, checked=len(indexes), kept_missing=sum(d for d in differences if d > 0),
                   kept_twice=sum(-d for d in differences if d < 0))
    finally:
        service.stop()


def print_run(number: int, r: Run) -> None:
    print(f"  run {number}: sent {r.sent:,}, applied {r.applied:,} (ingest loss {max(0, r.sent - r.applied):,}), lost {r.lost}, "
          f"dropped {r.dropped}; windows grew while full: {r.windows_grew}, applies stood still {r.longest_stall:.2f} s "
          f"at most (pending up to {r.max_pending:,})")
    print(f"    store failing seen: {r.failing_seen}; failures {r.failures}, refused {r.refused}; most queued "
          f"{r.max_queued_jobs:,} jobs / {r.max_queued_bytes / 1e6:,.1f} MB; RSS {r.rss_before / 1e6:,.0f} MB before, "
          f"at most {r.rss_max_during / 1e6:,.0f} MB while full; log lines '{RETRY_LINE}': {r.log_lines}; "
          f"last error: {r.last_error}")
    print(f"    freed -> store ok {r.recover_ok_seconds:.2f} s, -> queues empty {r.drained_seconds:.2f} s; after a "
          f"restart, of {r.checked:,} servers: {r.kept_missing:,} samples missing, {r.kept_twice:,} counted twice")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=50_000, help="samples/s (default %(default)s)")
    parser.add_argument("--servers", type=int, default=50_000, help="distinct servers (default %(default)s)")
    parser.add_argument("--size", default="256m", help="the tmpfs' size (default %(default)s)")
    parser.add_argument("--headroom", type=int, default=1 << 20, help="bytes left free by the filler (default 1 MiB)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of ingest before the disk fills")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds the disk stays full (default %(default)s)")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of ingest after it is freed")
    parser.add_argument("--checkpoint-every", default="5s", help="serve --checkpoint-every (default %(default)s)")
    parser.add_argument("--check-servers", type=int, default=2000, help="servers read after the restart")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-servers", type=int, default=200_000)
    args = parser.parse_args(argv)
    harness.print_header("store failures while ingesting (a full tmpfs)")
    print(f"  {args.rate:,} samples/s from {args.servers:,} servers; tmpfs {args.size}, full for {args.hold:.0f} s "
          f"after {args.settle:.0f} s; checkpoint every {args.checkpoint_every}")
    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        with small_tmpfs(args.size) as mount:
            if mount is None:
                print("  SKIPPED: cannot mount a tmpfs here (needs root and mount(8)); nothing was measured")
                return 0
            run = measure(args, mount)
        print_run(number, run)
        runs.append(run)
    harness.print_runs("ingest loss (sent - applied)", [max(0, r.sent - r.applied) for r in runs], "samples")
    harness.print_runs("longest apply stall while full", [r.longest_stall for r in runs], "s")
    harness.print_runs("freed -> store ok", [r.recover_ok_seconds for r in runs], "s")
    harness.print_runs("freed -> queues empty", [r.drained_seconds for r in runs], "s")
    harness.print_runs("RSS growth while full", [(r.rss_max_during - r.rss_before) / 1e6 for r in runs], "MB")
    ok = harness.verdict("ingest loss, worst run", max(max(0, r.sent - r.applied) + r.lost + r.dropped for r in runs), 0,
                         "samples", higher_is_better=False)
    ok &= durable.verdict_all("failing reported, counted, windows served from memory meanwhile",
                              all(r.failing_seen and sum(r.failures.values()) > 0 and r.windows_grew for r in runs),
                              "every run")
    ok &= harness.verdict("longest apply stall while full, worst run", max(r.longest_stall for r in runs), 2.0, "s",
                          higher_is_better=False)
    ok &= durable.verdict_all("log rate-limited (<= 1 line a minute per worker)",
                              all(r.log_lines <= 2 * (1 + int(args.hold // 60)) for r in runs), "every run")
    ok &= harness.verdict("freed -> queues empty (median)", harness.median([r.drained_seconds for r in runs]), 10.0,
                          "s", higher_is_better=False)
    ok &= harness.verdict("samples missing after a restart, worst run", max(r.kept_missing + r.kept_twice for r in runs),
                          0, "samples", higher_is_better=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
