"""JSON shapes of the earlier monitors' load APIs (``/perf`` and ``/server``), from the aggregator's windows.

As in ``views``: ``perf_window`` and ``server_history`` build the shape as
Python objects; ``encoded_perf_window`` and ``encoded_server_history`` give
the same JSON written straight from the arrays (``window_json``), for the
handlers to send.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ..common.aggregator import ServerWindows
from ..common.buckets import BucketWindow, bucket_starts
from ..common.seconds import SecondWindow
from .window_json import average_loads, number_list, perf_list

# ``GET /perf/{host}/{mode}``: which window each mode shows.
PERF_MODES = ("last_minute", "last_hour", "last_day")


def _averages(sums: npt.NDArray[np.float64], samples: list[int]) -> list[float | None]:
    return [total / count if count else None for total, count in zip(sums.tolist(), samples)]


def _entries(first_bucket: int, width: int, samples: list[int], cpu: list[float | None],
             ram: list[float | None]) -> list[dict[str, Any]]:
    times = bucket_starts(first_bucket, width, len(samples), suffix="")
    return [
        {"cpuload": cpu[i], "memload": ram[i], "interval": width, "samples": count, "time": times[i]}
        for i, count in enumerate(samples)
    ]


def perf_buckets(window: BucketWindow) -> list[dict[str, Any]]:
    """One ``/perf`` entry per minute or hour bucket, oldest first (``time`` the start in UTC, without a
    zone suffix); an empty one has null loads."""
    samples = window.samples.tolist()
    return _entries(window.first_bucket, window.width, samples,
                    _averages(window.cpu_sum, samples), _averages(window.ram_sum, samples))


def perf_seconds(window: SecondWindow) -> list[dict[str, Any]]:
    """One ``/perf`` entry per second of the last 60 s, oldest first; an empty one has null loads."""
    samples = window.samples.tolist()
    cpu = [value if count else None for value, count in zip(window.cpu_avg.tolist(), samples)]
    ram = [value if count else None for value, count in zip(window.ram_avg.tolist(), samples)]
    return _entries(window.first_second, 1, samples, cpu, ram)


def perf_window(windows: ServerWindows, mode: str) -> list[dict[str, Any]]:
    """The body of ``GET /perf/{host}/{mode}`` (``mode`` one of ``PERF_MODES``)."""
    if mode == "last_minute":
        return perf_seconds(windows.seconds)
    return perf_buckets(windows.minutes if mode == "last_hour" else windows.hours)


def _load_lists(window: BucketWindow) -> dict[str, list[float | None]]:
    samples = window.samples.tolist()
    return {"cpu": _averages(window.cpu_sum, samples), "ram": _averages(window.ram_sum, samples)}


def server_history(windows: ServerWindows) -> dict[str, Any]:
    """The body of ``GET /server/{name}``: minute and hour averages, oldest first, null where empty."""
    return {"last_60_minutes": _load_lists(windows.minutes), "last_24_hours": _load_lists(windows.hours)}


def encoded_perf_window(windows: ServerWindows, mode: str) -> orjson.Fragment:
    """``perf_window(windows, mode)`` as JSON text (the same bytes ``orjson.dumps`` gives of it)."""
    if mode == "last_minute":
        window = windows.seconds
        empty = window.samples == 0
        return orjson.Fragment(perf_list(window.first_second, 1, window.samples,
                                         np.where(empty, np.nan, window.cpu_avg), np.where(empty, np.nan, window.ram_avg)))
    buckets = windows.minutes if mode == "last_hour" else windows.hours
    return orjson.Fragment(perf_list(buckets.first_bucket, buckets.width, buckets.samples,
                                     average_loads(buckets.cpu_sum, buckets.samples),
                                     average_loads(buckets.ram_sum, buckets.samples)))


def _encoded_load_lists(window: BucketWindow) -> dict[str, Any]:
    return {"cpu": orjson.Fragment(number_list(average_loads(window.cpu_sum, window.samples))),
            "ram": orjson.Fragment(number_list(average_loads(window.ram_sum, window.samples)))}


def encoded_server_history(windows: ServerWindows) -> dict[str, Any]:
    """``server_history(windows)`` with its lists as ``orjson.Fragment``: the same JSON."""
    return {"last_60_minutes": _encoded_load_lists(windows.minutes), "last_24_hours": _encoded_load_lists(windows.hours)}
