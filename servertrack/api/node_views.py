"""JSON shapes of the node inventory endpoints, built from registry nodes and aggregator windows."""

from __future__ import annotations

import math
from typing import Any

from ..common.buckets import BucketWindow, iso_utc
from ..common.nodes import Node

# The sections of ``GET /nodes/{id}/{section}``: the stats snapshot keys each one shows. A section
# of one object (cpu, processes) shows that object's fields; the others show each key's value.
SECTIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu",),
    "memory": ("memory", "swap"),
    "disks": ("disks", "disk_io"),
    "network": ("network",),
    "processes": ("processes",),
}
_SPREAD = frozenset({"cpu", "processes"})


def _iso_or_none(epoch_seconds: float | None) -> str | None:
    return None if epoch_seconds is None else iso_utc(epoch_seconds)


def stats_at(node: Node) -> str | None:
    """When the node's latest stats snapshot was taken (ISO UTC), or None before the first."""
    return _iso_or_none(node.snapshot_ts)


def uptime_seconds(node: Node) -> int | None:
    """Whole seconds from the node's boot to its last message, or None before its hello.

    Counted to ``last_seen``, not to now, so a node that went silent is not
    credited with uptime it may not have had.
    """
    boot_time = node.info.get("boot_time")
    if boot_time is None:
        return None
    return max(0, int(node.last_seen - boot_time))


def node_entry(node: Node, state: str) -> dict[str, Any]:
    """One entry of ``GET /nodes``."""
    return {
        "name": node.name,
        "hostname": node.info.get("hostname"),
        "state": state,
        "last_seen": iso_utc(node.last_seen),
        "ips": list(node.ips),
    }


def node_detail(node: Node, state: str, dropped: dict[str, int] | None = None, seq: int | None = None,
                lost: int | None = None) -> dict[str, Any]:
    """The body of ``GET /nodes/{id}``: the entry, the hello fields, a digest of the latest stats,
    ``dropped``: what its agent sent that was dropped as its own doing (``wrong_key``, ``over_budget``),
    and ``seq`` / ``lost``: the last sequence number seen from its agent and the messages it sent that
    never arrived (gaps in seq; across a clean restart of the collector too), null if not known.

    The digest carries the names the node issue asked for: ``boottime`` (epoch
    seconds, a number; ``boot_time`` is the same instant as an ISO string),
    ``loadavg`` (the 1, 5 and 15 min load averages), ``cpu_usage_percent``
    (one per CPU) and ``memory_usage_percent``; each is null until known.
    """
    info = node.info
    stats = node.stats()
    cpu = stats["cpu"] if stats is not None else None
    return {
        **node_entry(node, state),
        "boottime": info.get("boot_time"),
        "boot_time": _iso_or_none(info.get("boot_time")),
        "uptime_seconds": uptime_seconds(node),
        "os": info.get("os"),
        "platform": info.get("platform"),
        "cpu_count": info.get("cpu_count"),
        "memory_total": info.get("memory_total"),
        "agent_version": info.get("agent_version"),
        "interval": info.get("interval"),
        "loadavg": cpu["load_avg"] if cpu is not None else None,
        "cpu_usage_percent": cpu["per_cpu"] if cpu is not None else None,
        "memory_usage_percent": stats["memory"]["percent"] if stats is not None else None,
        "stats_at": stats_at(node),
        "paused": node.paused,  # as asked (POST /nodes/{id}/pause...), else as the agent last said
        # seconds the agent's clock is ahead of the collector's (negative: behind), from its last hello or snapshot
        "clock_skew_seconds": None if node.clock_skew is None else round(node.clock_skew, 3),
        "agent_key": node.owner_key,  # the CURVE public key that owns the name (null: plain ingest)
        "dropped": dropped or {},
        "seq": seq,
        "lost": lost,
    }


def node_section(node: Node, stats: dict[str, Any], section: str) -> dict[str, Any]:
    """The body of ``GET /nodes/{id}/{section}`` from the node's latest ``stats``: ``name``, ``stats_at``
    and the section, e.g. ``{"name", "stats_at", "percent", "per_cpu", ...}`` for ``cpu`` but
    ``{"name", "stats_at", "memory": {...}, "swap": {...}}`` for ``memory``."""
    body: dict[str, Any] = {"name": node.name, "stats_at": stats_at(node)}
    if section in _SPREAD:
        body.update(stats[section])
    else:
        for key in SECTIONS[section]:
            body[key] = stats[key]
    return body


def process_ids(stats: dict[str, Any]) -> list[int]:
    """The body of ``GET /nodes/{id}/proc``: the pids of every process the snapshot holds (the union of
    its top-CPU and top-memory lists), each once, in ascending order."""
    processes = stats["processes"]
    return sorted({entry["pid"] for entry in (*processes["top_cpu"], *processes["top_memory"])})


def top_process(stats: dict[str, Any], pid: int) -> dict[str, Any] | None:
    """The entry of process ``pid`` in the top-CPU or top-memory list, or None."""
    processes = stats["processes"]
    for entry in (*processes["top_cpu"], *processes["top_memory"]):
        if entry["pid"] == pid:
            return dict(entry)
    return None


def _load_figures(
    sums: list[float], mins: list[float], maxes: list[float], used: list[int], samples: int
) -> dict[str, float]:
    low = min(mins[i] for i in used)
    high = max(maxes[i] for i in used)
    average = math.fsum(sums[i] for i in used) / samples
    # Rounding of the sum may put the average a hair outside [min, max].
    return {"avg": min(max(average, low), high), "min": low, "max": high}


def load_summary(name: str, window_name: str, window: BucketWindow | None, uptime: int | None) -> dict[str, Any]:
    """The body of ``GET /nodes/{id}/summary``: one figure per load over every bucket of ``window``.

    The average is weighted by samples (total of sums over total of samples),
    the minimum is the least bucket minimum and the maximum the greatest
    bucket maximum; buckets without samples are left out. A node without
    samples in the window (or without a window at all) has nulls.
    """
    body: dict[str, Any] = {"name": name, "window": window_name, "samples": 0, "cpu": None, "ram": None,
                            "uptime_seconds": uptime}
    if window is None:
        return body
    counts = window.samples.tolist()
    used = [index for index, count in enumerate(counts) if count]
    if not used:
        return body
    samples = sum(counts[index] for index in used)
    body["samples"] = samples
    body["cpu"] = _load_figures(window.cpu_sum.tolist(), window.cpu_min.tolist(), window.cpu_max.tolist(),
                                used, samples)
    body["ram"] = _load_figures(window.ram_sum.tolist(), window.ram_min.tolist(), window.ram_max.tolist(),
                                used, samples)
    return body
