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
