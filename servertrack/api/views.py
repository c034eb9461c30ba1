"""JSON shapes of the API, built from the aggregator's arrays in one pass.

Each window body has two forms: the shape as Python objects (``server_loads``,
``server_seconds``: one dict per bucket, what tests and tools compare), and
the same body with its bucket lists already written as JSON from the arrays
(``encoded_server_loads``, ``encoded_server_seconds``, see ``window_json``),
which the handlers send: ``orjson.dumps`` of either gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..common.aggregator import ServerWindows
from ..common.buckets import BucketWindow, bucket_starts, iso_utc
from ..common.seconds import SecondWindow
from .window_json import bucket_list, second_list


def window_buckets(window: BucketWindow) -> list[dict[str, Any]]:
    """One dict per bucket, oldest first; a bucket without samples has null loads."""
    counts = window.samples.tolist()
    cpu_sum, ram_sum = window.cpu_sum.tolist(), window.ram_sum.tolist()
    cpu_min, cpu_max = window.cpu_min.tolist(), window.cpu_max.tolist()
    ram_min, ram_max = window.ram_min.tolist(), window.ram_max.tolist()
    starts = bucket_starts(window.first_bucket, window.width, len(counts))
    buckets: list[dict[str, Any]] = []
    for i, samples in enumerate(counts):
        start = starts[i]
        if samples:
            buckets.append(
                {
                    "start": start,
                    "samples": samples,
                    "cpu": {"avg": cpu_sum[i] / samples, "min": cpu_min[i], "max": cpu_max[i]},
                    "ram": {"avg": ram_sum[i] / samples, "min": ram_min[i], "max": ram_max[i]},
                }
            )
        else:
            buckets.append({"start": start, "samples": 0, "cpu": None, "ram": None})
    return buckets


def server_loads(windows: ServerWindows) -> dict[str, Any]:
    """The body of ``GET /servers/{name}/loads``."""
    return {
        "server": windows.name,
        "last_seen": iso_utc(windows.last_seen),
        "minutes": window_buckets(windows.minutes),
        "hours": window_buckets(windows.hours),
    }


def encoded_server_loads(windows: ServerWindows) -> dict[str, Any]:
    """``server_loads`` with the bucket lists as ``orjson.Fragment``: the same JSON, a fraction of the cost."""
    return {
        "server": windows.name,
        "last_seen": iso_utc(windows.last_seen),
        "minutes": orjson.Fragment(bucket_list(windows.minutes)),
        "hours": orjson.Fragment(bucket_list(windows.hours)),
    }


def server_entry(name: str, last_seen: float, ips: list[str] | None) -> dict[str, Any]:
    """One entry of ``GET /servers``."""
    return {"server": name, "last_seen": iso_utc(last_seen), "ips": list(ips) if ips else []}


def second_buckets(window: SecondWindow) -> list[dict[str, Any]]:
    """One dict per second, oldest first: sample count and averages (null without samples)."""
    counts = window.samples.tolist()
    cpu, ram = window.cpu_avg.tolist(), window.ram_avg.tolist()
    starts = bucket_starts(window.first_second, 1, len(counts))
    return [
        {"start": starts[i], "samples": samples,
         "cpu": cpu[i] if samples else None, "ram": ram[i] if samples else None}
        for i, samples in enumerate(counts)
    ]


def server_seconds(windows: ServerWindows) -> dict[str, Any]:
    """The body of ``GET /servers/{name}/seconds``."""
    return {"server": windows.name, "last_seen": iso_utc(windows.last_seen), "seconds": second_buckets(windows.seconds)}


def encoded_server_seconds(windows: ServerWindows) -> dict[str, Any]:
    """``server_seconds`` with the list of seconds as an ``orjson.Fragment``: the same JSON."""
    return {"server": windows.name, "last_seen": iso_utc(windows.last_seen),
            "seconds": orjson.Fragment(second_list(windows.seconds))}
