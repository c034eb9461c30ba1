"""psutil at the edge: the node's rich statistics (CPU, memory, disks, network, processes).

``NodeStatsCollector.snapshot()`` returns plain JSON/msgpack-ready values (dicts,
lists, str, int, float, None) in the shape the wire protocol's validator checks:
every string printable (a control character, such as the ESC of a process that renamed itself
``evil\x1b[2J``, is sent as a visible escape, ``evil\\x1b[2J``) and at most ``MAX_TEXT`` (names
``MAX_NAME``) bytes of UTF-8, every list capped, every percentage in [0, 100], every rate and counter
non-negative.

Cost: the process scan reads a few files per process and dominates a snapshot's
CPU time, so it runs at most once every ``process_interval`` seconds and the
snapshots in between repeat its last result. Everything else is a handful of
reads of kernel tables.
"""

from __future__ import annotations

import heapq
import math
import platform
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any, NamedTuple

import psutil

from ..common.node_schema import (
    MAX_CPU_SECONDS,
    MAX_CPUS,
    MAX_DISKS,
    MAX_EPOCH_SECONDS,
    MAX_FREQUENCY_MHZ,
    MAX_INTERFACES,
    MAX_LOAD_AVERAGE,
    MAX_NAME,
    MAX_PID,
    MAX_RATE,
    MAX_TEXT,
    MAX_TOP_PROCESSES,
    MAX_TOTAL,
)
from ..common.settings import DEFAULT_PROCESS_INTERVAL
from ..common.text import escape_and_cut
from .rates import CounterRates, Rates

PROCESS_ATTRS = ["pid", "name", "username", "status", "cpu_percent", "memory_info", "memory_percent", "create_time", "cmdline"]

# Optional readings: a platform without them, or a kernel table that cannot be read,
# gives "unavailable" instead of a failed snapshot.
_UNAVAILABLE = (NotImplementedError, OSError, RuntimeError, AttributeError)
_DISK_IO_FIELDS = {"read_bytes": "read_bytes_per_s", "write_bytes": "write_bytes_per_s", "read_count": "read_ops_per_s", "write_count": "write_ops_per_s"}
_NET_RATE_FIELDS = {"bytes_recv": "rx_bytes_per_s", "bytes_sent": "tx_bytes_per_s", "packets_recv": "rx_packets_per_s", "packets_sent": "tx_packets_per_s"}
_NET_TOTAL_FIELDS = {"errin": "rx_errors", "errout": "tx_errors", "dropin": "rx_drops", "dropout": "tx_drops"}
_DISK_IO_KEY = "total"
_MAX_UINT64 = 2**64 - 1
_CPU_TIME_FIELDS = ("user", "system", "idle", "iowait")
_DISK_IO_TOTALS = ("read_count", "write_count", "read_bytes", "write_bytes")  # sent as they are, too


class _Process(NamedTuple):
    """One process of a scan, fields already cleaned; ``cmdline`` joined only for the few reported."""

    pid: int
    name: str
    user: str | None
    status: str
    cpu_percent: float
    rss: int
    memory_percent: float
    create_time: float
    cmdline: Any


class NodeStatsCollector:
    """Gathers the node's statistics with psutil (module, clock and hostname injectable, for tests).

    ``clock`` returns seconds; only differences matter (rates, the process-scan
    schedule), so the default is ``time.monotonic``, immune to wall-clock jumps.
    ``process_interval`` is the minimum number of seconds between two process
    scans (0 scans on every snapshot).
    """

    def __init__(
        self,
        psutil_module: ModuleType | Any = psutil,
        clock: Callable[[], float] = time.monotonic,
        process_interval: float = DEFAULT_PROCESS_INTERVAL,
        hostname: Callable[[], str] = socket.gethostname,
    ) -> None:
        if not (process_interval >= 0.0 and math.isfinite(process_interval)):
            raise ValueError(f"process_interval must be a finite number of seconds >= 0, not {process_interval!r}")
        self._psutil = psutil_module
        self._clock = clock
        self._process_interval = float(process_interval)
        self._hostname = hostname
        # Capped like the protocol's hello (1..MAX_CPUS); also bounds a process's cpu_percent.
        self._cpu_count = min(_count(psutil_module.cpu_count()) or 1, MAX_CPUS)
        self._disk_rates = CounterRates()
        self._net_rates = CounterRates()
        self._last_scan_at: float | None = None
        self._processes: dict[str, Any] = {"count": 0, "top_cpu": [], "top_memory": []}
        # The non-blocking CPU readings measure since their previous call; prime them so
        # the first snapshot covers the time since construction. (cpu_percent() without
        # percpu is left alone: LoadSampler owns that reference point in the same process.)
        psutil_module.cpu_times_percent(interval=None)
        psutil_module.cpu_percent(interval=None, percpu=True)

    def hello_fields(self) -> dict[str, Any]:
        """What the node says about itself once: hostname, boot time, OS, machine, CPU count, memory size."""
        return {
            "hostname": _text(self._hostname()),
            "boot_time": _epoch(self._psutil.boot_time()),
            "os": _text(f"{platform.system()} {platform.release()}"),
            "platform": _text(platform.machine()),
            "cpu_count": self._cpu_count,
            "memory_total": _count(self._psutil.virtual_memory().total),
        }

    def snapshot(self) -> dict[str, Any]:
        """The node's statistics now; rates and CPU shares cover the time since the previous snapshot."""
        now = self._clock()
        if self._process_scan_due(now):
            self._processes = self._scan_processes()
            self._last_scan_at = now
        return {
            "cpu": self._cpu(),
            "memory": self._memory(),
            "swap": self._swap(),
            "disks": self._disks(),
            "disk_io": self._disk_io(now),
            "network": self._network(now),
            "processes": _copy_processes(self._processes),
        }

    # ------------------------------------------------------------------ cpu and memory

    def _cpu(self) -> dict[str, Any]:
        ps = self._psutil
        times = ps.cpu_times_percent(interval=None)
        shares = {field: _percent(getattr(times, field, 0.0)) for field in ("user", "system", "idle", "iowait")}
        # Busy share as psutil's cpu_percent() computes it: everything but idle and iowait.
        busy = _percent(100.0 - _float(getattr(times, "idle", 100.0)) - _float(getattr(times, "iowait", 0.0)))
        return {
            "percent": busy,
            "per_cpu": [_percent(value) for value in list(ps.cpu_percent(interval=None, percpu=True))[:MAX_CPUS]],
            "load_avg": self._load_avg(),
            "times_percent": shares,
            "freq_mhz": self._freq(),
            "times_seconds": self._cpu_times(),
        }

    def _cpu_times(self) -> dict[str, float] | None:
        """Cumulative CPU seconds since boot, all CPUs together (a field psutil lacks, as iowait off
        Linux, counts as 0.0); None where psutil cannot read them."""
        try:
            times = self._psutil.cpu_times(percpu=False)
        except _UNAVAILABLE:
            return None
        return {field: round(_float(getattr(times, field, 0.0), MAX_CPU_SECONDS), CPU_SECONDS_DECIMALS)
                for field in _CPU_TIME_FIELDS}

    def _load_avg(self) -> list[float]:
        try:
            loads = list(self._psutil.getloadavg())[:3]
        except _UNAVAILABLE:
            loads = []
        return [_float(value, MAX_LOAD_AVERAGE) for value in loads] + [0.0] * (3 - len(loads))

    def _freq(self) -> float | None:
        try:
            freq = self._psutil.cpu_freq()
        except _UNAVAILABLE:
            return None
        current = getattr(freq, "current", None)
        if freq is None or not isinstance(current, int | float) or not math.isfinite(current):
            return None
        return _float(current, MAX_FREQUENCY_MHZ)

    def _memory(self) -> dict[str, Any]:
        memory = self._psutil.virtual_memory()
        return {
            "total": _count(memory.total),
            "available": _count(memory.available),
            "used": _count(memory.used),
            "percent": _percent(memory.percent),
            "free": _count(getattr(memory, "free", 0)),
        }

    def _swap(self) -> dict[str, Any]:
        try:
            swap = self._psutil.swap_memory()
        except _UNAVAILABLE:
            return {"total": 0, "used": 0, "percent": 0.0}
        return {"total": _count(swap.total), "used": _count(swap.used), "percent": _percent(swap.percent)}

    # ------------------------------------------------------------------ disks and network

    def _disks(self) -> list[dict[str, Any]]:
        try:
            partitions = self._psutil.disk_partitions(all=False)
        except _UNAVAILABLE:
            return []
        disks: list[dict[str, Any]] = []
        for partition in partitions:
            if len(disks) >= MAX_DISKS:
                break
            try:
                usage = self._psutil.disk_usage(partition.mountpoint)
            except OSError:  # PermissionError included: an unreadable mount is skipped
                continue
            disks.append(
                {
                    "device": _name(partition.device),
                    "mountpoint": _text(partition.mountpoint),
                    "fstype": _name(partition.fstype),
                    "total": _count(usage.total),
                    "used": _count(usage.used),
                    "free": _count(usage.free),
                    "percent": _percent(usage.percent),
                }
            )
        return disks

    def _disk_io(self, now: float) -> dict[str, float | int] | None:
        """Rates since the previous snapshot, and the cumulative counters they come from (capped at
        ``MAX_TOTAL``); None on the first snapshot (no rates yet) or without counters."""
        # nowrap=False: the raw counters, so that rates.py alone decides what a wrap or a reset is.
        try:
            counters = self._psutil.disk_io_counters(perdisk=False, nowrap=False)
        except _UNAVAILABLE:
            counters = None
        reading = None if counters is None else _counters(counters, _DISK_IO_FIELDS)
        readings = {} if reading is None else {_DISK_IO_KEY: reading}
        rates = self._disk_rates.update(now, readings).get(_DISK_IO_KEY)
        if rates is None or reading is None:
            return None
        totals = {field: min(reading[field], MAX_TOTAL) for field in _DISK_IO_TOTALS}
        return {**_renamed(rates, _DISK_IO_FIELDS), **totals}

    def _network(self, now: float) -> list[dict[str, Any]]:
        try:
            per_nic: Mapping[str, Any] = self._psutil.net_io_counters(pernic=True, nowrap=False) or {}
        except _UNAVAILABLE:
            per_nic = {}
        names = sorted(per_nic)[:MAX_INTERFACES]
        rates = self._net_rates.update(now, {name: _counters(per_nic[name], _NET_RATE_FIELDS) for name in names})
        interfaces = []
        for name in names:
            counters = per_nic[name]
            entry: dict[str, Any] = {"interface": _name(name)}
            entry.update(_renamed(rates[name] or {}, _NET_RATE_FIELDS))
            entry.update({out: _count(getattr(counters, field, 0)) for field, out in _NET_TOTAL_FIELDS.items()})
            interfaces.append(entry)
        return interfaces

    # ------------------------------------------------------------------ processes

    def _process_scan_due(self, now: float) -> bool:
        last = self._last_scan_at
        # A clock that went backwards (never with time.monotonic) rescans rather than waiting it out.
        return last is None or now < last or now - last >= self._process_interval

    def _scan_processes(self) -> dict[str, Any]:
        """One ``process_iter`` pass; processes that vanish or deny access are skipped or filled with defaults."""
        seen: list[_Process] = []
        try:
            for proc in self._psutil.process_iter(attrs=PROCESS_ATTRS, ad_value=None):
                try:
                    info = proc.info
                except psutil.Error:  # NoSuchProcess, ZombieProcess, AccessDenied
                    continue
                cleaned = _process(info, 100.0 * self._cpu_count)
                if cleaned is not None:
                    seen.append(cleaned)
        except (psutil.Error, OSError):
            pass  # the iteration itself failed part-way: report what was seen
        ranked = [proc for proc in seen if proc.status != psutil.STATUS_ZOMBIE]
        top_cpu = heapq.nsmallest(MAX_TOP_PROCESSES, ranked, key=lambda proc: (-proc.cpu_percent, proc.pid))
        top_memory = heapq.nsmallest(MAX_TOP_PROCESSES, ranked, key=lambda proc: (-proc.rss, proc.pid))
        return {"count": len(seen), "top_cpu": [_process_dict(p) for p in top_cpu], "top_memory": [_process_dict(p) for p in top_memory]}


# ---------------------------------------------------------------------- value cleaning


def _process(info: Mapping[str, Any] | None, max_cpu: float) -> _Process | None:
    """A process's ``info`` (``None`` where access was denied) cleaned up; ``None`` without a usable pid."""
    if not isinstance(info, Mapping):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid <= MAX_PID:
        return None
    username = info.get("username")
    memory = info.get("memory_info")
    return _Process(
        pid=pid,
        name=_name(info.get("name") or ""),
        user=_name(username) if isinstance(username, str) else None,
        status=_name(info.get("status") or "unknown"),
        cpu_percent=round(min(_float(info.get("cpu_percent")), max_cpu), PERCENT_DECIMALS),
        rss=_count(getattr(memory, "rss", 0)),
        memory_percent=_percent(info.get("memory_percent")),
        create_time=_epoch(info.get("create_time")),
        cmdline=info.get("cmdline"),
    )


def _process_dict(proc: _Process) -> dict[str, Any]:
    """The wire shape of one reported process."""
    return proc._replace(cmdline=_cmdline(proc.cmdline))._asdict()


def _copy_processes(processes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a scan's result, so a caller changing one snapshot cannot change the next."""
    return {
        "count": processes["count"],
        "top_cpu": [dict(proc) for proc in processes["top_cpu"]],
        "top_memory": [dict(proc) for proc in processes["top_memory"]],
    }


def _cmdline(argv: Any) -> str:
    """Arguments joined with spaces, escaped and cut to ``MAX_TEXT``; nothing readable gives ``""``."""
    if isinstance(argv, str):
        return _text(argv)
    if not isinstance(argv, Iterable):
        return ""
    parts: list[str] = []
    length = 0
    for part in argv:  # stop early: a command line can be megabytes long
        if length > MAX_TEXT:
            break
        text = str(part)
        parts.append(text)
        length += len(text) + 1
    return _text(" ".join(parts))


def _counters(reading: Any, fields: Mapping[str, str]) -> dict[str, int]:
    """The named cumulative counters of a psutil record, as ints."""
    return {field: _count(getattr(reading, field, 0)) for field in fields}


def _renamed(rates: Rates, fields: Mapping[str, str]) -> dict[str, float]:
    """Rates under their wire names; a counter without a rate counts as 0.0."""
    return {out: round(_float(rates.get(field, 0.0), MAX_RATE), RATE_DECIMALS) for field, out in fields.items()}


# Non-printable characters (and the lone surrogates of an undecodable file name) become visible
# escapes, so the collector never refuses a snapshot; the cut never splits a character or an escape.


def _text(value: Any) -> str:
    """``value`` as a printable string of at most ``MAX_TEXT`` bytes of UTF-8."""
    return escape_and_cut(str(value), MAX_TEXT)


def _name(value: Any) -> str:
    """``value`` as a printable string of at most ``MAX_NAME`` bytes of UTF-8."""
    return escape_and_cut(str(value), MAX_NAME)


def _float(value: Any, high: float = math.inf) -> float:
    """A finite float in [0, ``high``]; anything else (None, NaN, a negative) counts as 0.0, and a
    value over ``high`` as ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return min(number, high) if math.isfinite(number) and number > 0.0 else 0.0


def _epoch(value: Any) -> float:
    """A time in epoch seconds that can be shown as a date; an impossible one counts as 0.0."""
    number = _float(value)
    return number if number <= MAX_EPOCH_SECONDS else 0.0


# Decimals sent: psutil measures percentages to 0.1 (process memory shares finer), and a rate's
# fraction of a byte or packet a second means nothing. Short decimals also store in a few bits
# (see common/snapshots), which keeps a node with a thousand CPUs within its memory budget.
PERCENT_DECIMALS = 2
RATE_DECIMALS = 2
CPU_SECONDS_DECIMALS = 2  # what the kernel counts (clock ticks of 1/100 s)


def _percent(value: Any) -> float:
    """``value`` as a float in [0, 100] (psutil can round a hair outside it), to 0.01."""
    return round(min(_float(value), 100.0), PERCENT_DECIMALS)


def _count(value: Any) -> int:
    """A non-negative int that msgpack can carry (at most 2**64 - 1); anything else counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return min(max(int(value), 0), _MAX_UINT64)
