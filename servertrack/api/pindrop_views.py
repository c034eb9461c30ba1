"""JSON shape of the pindrop-compatible ``GET /get_stats``, built from a node's latest snapshot and its
hour window in the aggregator (pure: no Tornado, no I/O).

The earlier pindrop monitor (Python, psutil, CherryPy) answered one machine's
``/get_stats`` with ``{"current_stat": ..., "past_stat": ...}``. Its client
parsed these forms, kept here:

- ``current_stat.time``: epoch seconds as a float (``time.time()``); here the
  time the snapshot was taken.
- ``current_stat.cpu_stat.usage`` and every ``percent`` / ``used_percent``:
  JSON numbers; ``time_stat``: cumulative CPU seconds since boot
  (``psutil.cpu_times()``).
- every ``past_stat`` figure: a string with a percent sign, ``"13.4%"`` (here
  always one decimal), and ``service_start_time`` the local ``str(datetime)``
  of the service's start, ``"2016-04-11 17:30:10.976343"`` (here in UTC, with
  the microseconds always written).

A figure the node has not sent (an older agent's snapshot lacks cumulative
CPU seconds, ``memory.free`` and disk counters; the first snapshot of a run has
no disk I/O at all) is ``null``, never a made-up zero.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..common.buckets import BucketWindow
from .node_views import load_summary

# The past figures cover the aggregator's hour window: the current hour and the 23 before it.
PAST_WINDOW = "24h"
_DISK_COUNTERS = ("read_count", "write_count", "read_bytes", "write_bytes")
_CPU_TIMES = ("idle", "user", "system")


def percent_text(value: float | None) -> str | None:
    """``13.4`` as ``"13.4%"`` (one decimal), None as None."""
    return None if value is None else f"{value:.1f}%"


def start_time_text(epoch_seconds: float) -> str:
    """Epoch seconds as the UTC ``"2026-12-02 12:00:00.000000"`` (Python's ``str(datetime)``, microseconds
    always shown)."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def current_stat(stats: dict[str, Any], taken_at: float) -> dict[str, Any]:
    """``current_stat`` from a validated stats snapshot taken at ``taken_at`` (epoch seconds)."""
    cpu, memory, swap = stats["cpu"], stats["memory"], stats["swap"]
    seconds = cpu.get("times_seconds") or {}
    disk_io = stats.get("disk_io") or {}
    return {
        "time": float(taken_at),
        "cpu_stat": {
            "usage": cpu["percent"],
            "time_stat": {field: seconds.get(field) for field in _CPU_TIMES},
        },
        "memory_stat": {
            "vm": {"total": memory["total"], "used": memory["used"], "free": memory.get("free"),
                   "percent": memory["percent"], "available": memory["available"]},
            "sm": {"total": swap["total"], "used": swap["used"], "free": max(swap["total"] - swap["used"], 0),
                   "percent": swap["percent"]},
        },
        "disk_stat": {
            "count_stats": {field: disk_io.get(field) for field in _DISK_COUNTERS},
            "part_stats": [
                {"device": disk["device"], "mt_pt": disk["mountpoint"], "total_mem": disk["total"],
                 "used_mem": disk["used"], "free_mem": disk["free"], "used_percent": disk["percent"]}
                for disk in stats["disks"]
            ],
        },
    }


def past_stat(name: str, hours: BucketWindow | None, stats: dict[str, Any] | None, started_at: float) -> dict[str, Any]:
    """``past_stat``: cpu and memory over the aggregator's ``hours`` window of node ``name`` (averages
    weighted by samples, as ``load_summary``; null without samples), the fullest partition of the latest
    ``stats`` (the aggregator keeps no disk history; null without a snapshot or partitions), and when
    this service started."""
    summary = load_summary(name, PAST_WINDOW, hours, None)
    cpu, ram = summary["cpu"] or {}, summary["ram"] or {}
    disks = stats["disks"] if stats is not None else []
    return {
        "avg_cpu_usage": percent_text(cpu.get("avg")),
        "min_cpu_usage": percent_text(cpu.get("min")),
        "max_cpu_usage": percent_text(cpu.get("max")),
        "avg_mem_usage": percent_text(ram.get("avg")),
        "min_mem_usage": percent_text(ram.get("min")),
        "max_mem_usage": percent_text(ram.get("max")),
        "max_disk_usage": percent_text(max((disk["percent"] for disk in disks), default=None)),
        "service_start_time": start_time_text(started_at),
    }


def get_stats_body(
    name: str,
    stats: dict[str, Any] | None,
    taken_at: float | None,
    hours: BucketWindow | None,
    started_at: float,
) -> dict[str, Any]:
    """The body of ``GET /get_stats`` for node ``name``: ``current_stat`` from its latest ``stats`` (null
    before its first snapshot), ``past_stat`` from its ``hours`` window."""
    current = None if stats is None or taken_at is None else current_stat(stats, taken_at)
    return {"current_stat": current, "past_stat": past_stat(name, hours, stats, started_at)}
