"""psutil at the edge: CPU and RAM percentages and the node's routable IP addresses."""

from __future__ import annotations

import ipaddress
import math
import socket
from types import ModuleType
from typing import Any

import psutil

from ..common.protocol import MAX_IPS

_IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class LoadSampler:
    """Reads the node's load with psutil (injectable, for tests)."""

    def __init__(self, psutil_module: ModuleType | Any = psutil) -> None:
        self._psutil = psutil_module
        # The first non-blocking cpu_percent() call has no reference point and
        # returns 0.0: prime it so the first real sample is meaningful.
        self._psutil.cpu_percent(interval=None)

    def load(self) -> tuple[float, float]:
        """CPU percent since the previous call, and RAM percent used."""
        return _percent(self._psutil.cpu_percent(interval=None)), _percent(self._psutil.virtual_memory().percent)

    def ips(self) -> list[str]:
        """The node's IPv4/IPv6 addresses, without loopback and link-local ones, sorted.

        At most ``MAX_IPS`` (what the protocol carries), IPv4 first.
        """
        found: set[str] = set()
        for addresses in self._psutil.net_if_addrs().values():
            for address in addresses:
                if address.family not in _IP_FAMILIES:
                    continue
                try:
                    ip = ipaddress.ip_address(address.address.split("%", 1)[0])
                except ValueError:
                    continue
                if not (ip.is_loopback or ip.is_link_local):
                    found.add(str(ip))
        return sorted(found, key=lambda text: (":" in text, text))[:MAX_IPS]


def _percent(value: float) -> float:
    """``value`` clamped to [0, 100]; a non-finite reading (never expected) counts as 0."""
    value = float(value)
    return min(max(value, 0.0), 100.0) if math.isfinite(value) else 0.0
