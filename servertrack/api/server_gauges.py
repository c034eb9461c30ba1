"""``serve --export-servers [N]``: per-server gauges of the current load on ``GET /metrics``.

Three series, appended to the service's own (``ServiceMetrics.add_text``):

- ``servertrack_server_cpu_percent{server="NAME"}`` and
  ``servertrack_server_ram_percent{server="NAME"}``: the server's average load over the last 60 seconds
  (the seconds window of ``GET /servers/{name}/seconds``), weighted by samples, to 0.01. A rolling minute
  rather than the last second: a scrape every 15 s then sees every sample, and a server is not missing
  from a scrape that falls just after an apply emptied the current second;
- ``servertrack_servers_not_exported``: the servers with samples that the cap ``N`` left out.

A server without a sample in those 60 seconds has no series at all (never a made-up 0), so Prometheus
marks its series stale. Over the cap, the first ``N`` servers by name are exported: the same ones at
every scrape while the fleet does not change.

The text is written here, not through ``prometheus_client``'s metric families: at 10,000 servers those
build 20,000 sample objects and take ~250 ms a scrape on the service's one loop; this takes a few ms from
the aggregator's arrays (``bench/metrics_scrape.py --export-servers``). Label values are escaped as the
text format says (backslash, double quote, line feed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..common.aggregator import Aggregator
from ..common.settings import DEFAULT_EXPORTED_SERVERS

CPU_SERIES = "servertrack_server_cpu_percent"
RAM_SERIES = "servertrack_server_ram_percent"
LEFT_OUT_SERIES = "servertrack_servers_not_exported"
_HEADERS = {
    CPU_SERIES: "CPU load of each server, percent: its average over the last 60 seconds",
    RAM_SERIES: "RAM load of each server, percent: its average over the last 60 seconds",
    LEFT_OUT_SERIES: "Servers with samples in the last 60 seconds left out of the per-server gauges by the cap",
}


def escape_label_value(value: str) -> str:
    """``value`` as a label value of the Prometheus text format: ``\\``, ``"`` and line feeds escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _header(series: str) -> str:
    return f"# HELP {series} {_HEADERS[series]}\n# TYPE {series} gauge\n"


# Every load to 0.01, 0 to 100, as text: a table lookup is ~10 times cheaper than formatting a float.
_HUNDREDTHS = [repr(hundredths / 100) for hundredths in range(10_001)]


def _lines(prefixes: list[str], values: np.ndarray) -> str:
    if not prefixes:
        return ""
    hundredths = np.clip(np.rint(values * 100), 0, 10_000).astype(np.int64).tolist()
    return "\n".join(map(str.__add__, prefixes, map(_HUNDREDTHS.__getitem__, hundredths))) + "\n"


class ServerGauges:
    """The per-server gauges of at most ``limit`` servers, read from ``aggregator`` at each scrape."""

    def __init__(self, aggregator: Aggregator, limit: int = DEFAULT_EXPORTED_SERVERS,
                 clock: Callable[[], float] | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._aggregator = aggregator
        self._limit = limit
        self._clock = clock
        # name -> the start of its two lines (series, label set, space); names come and go slowly, so this is
        # kept, and dropped when it outgrows twice the cap (evicted servers are not worth tracking one by one)
        self._prefixes: dict[str, tuple[str, str]] = {}

    def _prefix(self, name: str) -> tuple[str, str]:
        prefix = self._prefixes.get(name)
        if prefix is None:
            if len(self._prefixes) >= 2 * self._limit:
                self._prefixes.clear()
            label = f'{{server="{escape_label_value(name)}"}} '
            prefix = self._prefixes[name] = (CPU_SERIES + label, RAM_SERIES + label)
        return prefix

    def exposition(self) -> bytes:
        """The three series in the text format (UTF-8)."""
        loads = self._aggregator.current_loads(self._limit, None if self._clock is None else self._clock())
        prefixes = list(map(self._prefix, loads.names))
        text = (_header(CPU_SERIES) + _lines([cpu for cpu, _ in prefixes], loads.cpu)
                + _header(RAM_SERIES) + _lines([ram for _, ram in prefixes], loads.ram)
                + _header(LEFT_OUT_SERIES) + f"{LEFT_OUT_SERIES} {loads.left_out}\n")
        return text.encode()
