"""Test doubles and helpers for the agent tests (a uniquely named module, so no other test tree shadows it)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import psutil
import zmq

from tests.conftest import servertrack_command  # noqa: F401  (re-exported for the agent tests)
from tests.conftest import subprocess_env as checkout_env  # noqa: F401

# psutil's own constant for the link-layer family (AF_PACKET on Linux).
AF_LINK = getattr(psutil, "AF_LINK", getattr(socket, "AF_PACKET", 17))


# --------------------------------------------------------------------------- psutil


def nic(family: int, address: str) -> SimpleNamespace:
    """One entry of ``psutil.net_if_addrs()[name]`` (psutil's ``snicaddr``)."""
    return SimpleNamespace(family=family, address=address, netmask=None, broadcast=None, ptp=None)


def inet(address: str) -> SimpleNamespace:
    """An AF_INET or AF_INET6 entry, the family chosen from the address text."""
    return nic(socket.AF_INET6 if ":" in address else socket.AF_INET, address)


def fake_psutil(
    cpu: Sequence[float] = (0.0,),
    ram: float = 50.0,
    interfaces: Mapping[str, list[SimpleNamespace]] | None = None,
) -> SimpleNamespace:
    """A module-like object with just the three psutil functions the sampler uses.

    ``cpu`` scripts successive ``cpu_percent`` results (the last one repeats);
    every call's arguments are recorded in ``cpu_calls``.
    """
    cpu_values = list(cpu)
    calls: list[dict[Any, Any]] = []

    def cpu_percent(*args: Any, **kwargs: Any) -> float:
        calls.append(dict(enumerate(args)) | kwargs)
        return cpu_values[min(len(calls) - 1, len(cpu_values) - 1)]

    return SimpleNamespace(
        cpu_percent=cpu_percent,
        virtual_memory=lambda: SimpleNamespace(percent=ram, total=8 << 30, available=4 << 30),
        net_if_addrs=lambda: dict(interfaces or {}),
        cpu_calls=calls,
    )


# --------------------------------------------------------------------------- agent


class FakeSampler:
    """Stands in for LoadSampler: returns scripted loads (the last one repeats), counts calls."""

    def __init__(self, loads: Sequence[tuple[float, float]] = ((12.5, 43.0),), ips: Sequence[str] = ("10.0.0.5",)) -> None:
        self._loads = list(loads)
        self._ips = list(ips)
        self.load_calls = 0

    def load(self) -> tuple[float, float]:
        value = self._loads[min(self.load_calls, len(self._loads) - 1)]
        self.load_calls += 1
        return value

    def ips(self) -> list[str]:
        return list(self._ips)


class FakeClock:
    """Epoch seconds under test control: each call returns the current value, then steps."""

    def __init__(self, start: float = 1_700_000_000.25, step: float = 1.0) -> None:
        self.now = start
        self.step = step
        self.readings: list[float] = []

    def __call__(self) -> float:
        value = self.now
        self.readings.append(value)
        self.now += self.step
        return value


# --------------------------------------------------------------------------- ZeroMQ


def term_within(context: zmq.Context, seconds: float) -> bool:
    """Terminate ``context`` in a helper thread; False if still blocked (a socket leaked or lingers)."""
    done = threading.Event()

    def run() -> None:
        context.term()
        done.set()

    threading.Thread(target=run, daemon=True, name="zmq-term").start()
    return done.wait(seconds)


def unused_tcp_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- psutil, rich statistics (NodeStatsCollector)


def net_counters(
    bytes_recv: int = 0,
    bytes_sent: int = 0,
    packets_recv: int = 0,
    packets_sent: int = 0,
    errin: int = 0,
    errout: int = 0,
    dropin: int = 0,
    dropout: int = 0,
) -> SimpleNamespace:
    """One value of ``psutil.net_io_counters(pernic=True)`` (psutil's ``snetio``)."""
    return SimpleNamespace(
        bytes_sent=bytes_sent, bytes_recv=bytes_recv, packets_sent=packets_sent, packets_recv=packets_recv,
        errin=errin, errout=errout, dropin=dropin, dropout=dropout,
    )


def disk_counters(read_bytes: int = 0, write_bytes: int = 0, read_count: int = 0, write_count: int = 0) -> SimpleNamespace:
    """``psutil.disk_io_counters(perdisk=False)`` (psutil's ``sdiskio``, the fields the collector reads and two more)."""
    return SimpleNamespace(
        read_count=read_count, write_count=write_count, read_bytes=read_bytes, write_bytes=write_bytes, read_time=0, write_time=0,
    )


def partition(device: str, mountpoint: str, fstype: str = "ext4") -> SimpleNamespace:
    """One entry of ``psutil.disk_partitions()`` (psutil's ``sdiskpart``)."""
    return SimpleNamespace(device=device, mountpoint=mountpoint, fstype=fstype, opts="rw")


def disk_usage(total: int, used: int) -> SimpleNamespace:
    """``psutil.disk_usage(path)`` (psutil's ``sdiskusage``), percent computed as psutil does."""
    return SimpleNamespace(total=total, used=used, free=total - used, percent=round(100.0 * used / total, 1) if total else 0.0)


def process_info(pid: int, **fields: Any) -> dict[str, Any]:
    """The ``info`` dict ``process_iter(attrs=...)`` attaches to a process: plausible defaults, ``fields`` override."""
    info: dict[str, Any] = {
        "pid": pid,
        "name": f"proc{pid}",
        "username": "root",
        "status": "sleeping",
        "cpu_percent": 0.0,
        "memory_info": SimpleNamespace(rss=1 << 20, vms=4 << 20),
        "memory_percent": 0.1,
        "create_time": 1_700_000_000.0 + pid,
        "cmdline": [f"/usr/bin/proc{pid}", "--flag"],
    }
    info.update(fields)
    return info


class FakeProcess:
    """What ``process_iter(attrs=...)`` yields: ``info`` is the attribute dict, or raises ``error`` when read."""

    def __init__(self, info: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
        self._info = info
        self._error = error

    @property
    def info(self) -> dict[str, Any] | None:
        if self._error is not None:
            raise self._error
        return self._info


class FakeNodePsutil:
    """A module-like psutil with the functions NodeStatsCollector calls; tests change the attributes between snapshots.

    An attribute holding an exception instance makes the matching function raise it;
    ``usage`` maps a mountpoint to its usage or to an exception; an exception inside
    ``processes`` is raised by ``process_iter`` when the iteration reaches it.
    Every call is recorded in ``calls`` as ``(function name, keyword arguments)``.
    """

    def __init__(self) -> None:
        self.cpus = 4
        self.boot = 1_699_990_000.0
        self.times_percent: Any = SimpleNamespace(user=20.0, nice=0.0, system=10.0, idle=65.0, iowait=5.0, irq=0.0, softirq=0.0, steal=0.0)
        self.per_cpu: list[float] = [10.0, 20.0, 30.0, 40.0]
        self.times: Any = SimpleNamespace(user=2498.32, nice=1.5, system=526.52, idle=90185.2, iowait=12.25, irq=0.0)
        self.loadavg: Any = (0.5, 0.25, 0.125)
        self.freq: Any = SimpleNamespace(current=2400.0, min=800.0, max=3600.0)
        self.memory = SimpleNamespace(total=16 << 30, available=10 << 30, used=6 << 30, free=9 << 30, percent=37.5)
        self.swap: Any = SimpleNamespace(total=2 << 30, used=1 << 28, free=(2 << 30) - (1 << 28), percent=12.5, sin=0, sout=0)
        self.partitions: Any = [partition("/dev/sda1", "/")]
        self.usage: dict[str, Any] = {"/": disk_usage(100 << 30, 25 << 30)}
        self.disk_io: Any = disk_counters(read_bytes=1000, write_bytes=2000, read_count=10, write_count=20)
        self.nics: Any = {"eth0": net_counters(bytes_recv=1000, bytes_sent=500, packets_recv=10, packets_sent=5)}
        self.processes: list[Any] = [FakeProcess(process_info(1))]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, name: str, value: Any, kwargs: dict[str, Any]) -> Any:
        self.calls.append((name, kwargs))
        if isinstance(value, BaseException):
            raise value
        return value

    def called(self, name: str) -> list[dict[str, Any]]:
        """The keyword arguments of every call of ``name``, in order."""
        return [kwargs for called, kwargs in self.calls if called == name]

    def cpu_count(self, logical: bool = True) -> int | None:
        return self._answer("cpu_count", self.cpus, {"logical": logical})

    def boot_time(self) -> float:
        return self._answer("boot_time", self.boot, {})

    def cpu_times_percent(self, **kwargs: Any) -> Any:
        return self._answer("cpu_times_percent", self.times_percent, kwargs)

    def cpu_times(self, **kwargs: Any) -> Any:
        return self._answer("cpu_times", self.times, kwargs)

    def cpu_percent(self, **kwargs: Any) -> Any:
        return self._answer("cpu_percent", list(self.per_cpu) if kwargs.get("percpu") else 50.0, kwargs)

    def getloadavg(self) -> Any:
        return self._answer("getloadavg", self.loadavg, {})

    def cpu_freq(self, **kwargs: Any) -> Any:
        return self._answer("cpu_freq", self.freq, kwargs)

    def virtual_memory(self) -> Any:
        return self._answer("virtual_memory", self.memory, {})

    def swap_memory(self) -> Any:
        return self._answer("swap_memory", self.swap, {})

    def disk_partitions(self, **kwargs: Any) -> Any:
        return self._answer("disk_partitions", self.partitions, kwargs)

    def disk_usage(self, path: str) -> Any:
        return self._answer("disk_usage", self.usage.get(path, FileNotFoundError(path)), {"path": path})

    def disk_io_counters(self, **kwargs: Any) -> Any:
        return self._answer("disk_io_counters", self.disk_io, kwargs)

    def net_io_counters(self, **kwargs: Any) -> Any:
        return self._answer("net_io_counters", self.nics, kwargs)

    def process_iter(self, attrs: Any = None, ad_value: Any = None) -> Any:  # a generator, as psutil's
        self.calls.append(("process_iter", {"attrs": attrs, "ad_value": ad_value}))
        for entry in list(self.processes):
            if isinstance(entry, BaseException):
                raise entry
            yield entry
