"""JSON shapes of the ``/cluster`` API (the cluster-stats transcript) that the native views lack.

Only the node listing differs from the native API: the transcript's ``GET /nodes``
is a bare list of addresses, one per node. Every other ``/cluster`` body is the
native one (``node_views``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..common.nodes import Node

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_loopback(address: Address) -> bool:
    """127.0.0.0/8 and ::1, also written as an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def first_public_ip(node: Node) -> str | None:
    """The node's first address that is not a loopback one, in the order its agent gave them, or None."""
    for text in node.ips:
        if not _is_loopback(ipaddress.ip_address(text)):
            return text
    return None


def _address_order(text: str) -> tuple[int, int, str]:
    address = ipaddress.ip_address(text)
    return address.version, int(address), text


def cluster_addresses(nodes: Iterable[Node]) -> list[str]:
    """The body of ``GET /cluster/nodes``: each node's ``first_public_ip``, each address once, in address
    order (IPv4 before IPv6, numerically: ``192.168.2.9`` before ``192.168.2.10``). A node with no such
    address is left out."""
    addresses = {address for address in map(first_public_ip, nodes) if address is not None}
    return sorted(addresses, key=_address_order)
