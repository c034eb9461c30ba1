"""A node's durable record: what a restart needs to show the same node in the same state.

Its hello fields, addresses, times and pause states, as a msgpack map; not
its latest stats snapshot (the next one arrives within seconds, and the
numeric history of snapshots is kept separately).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from .nodes import Node

RECORD_VERSION = 1


def encode_node(node: Node) -> bytes:
    """The record of ``node`` as bytes."""
    return msgpack.packb({
        "v": RECORD_VERSION, "name": node.name, "ips": node.ips, "info": node.info,
        "registered": node.registered, "last_seen": node.last_seen, "said_bye": node.said_bye,
        "desired_paused": node.desired_paused, "reported_paused": node.reported_paused,
        "controllable": node.controllable, "owner_key": node.owner_key,
    })


def decode_node(record: bytes) -> Node:
    """A node from its record; ``ValueError`` if the record is not one this version wrote."""
    try:
        fields: Any = msgpack.unpackb(record)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise ValueError(f"not a node record: {error}") from None
    if not isinstance(fields, dict) or fields.get("v") != RECORD_VERSION:
        raise ValueError("not a node record of this version")
    try:
        node = Node(name=fields["name"], ips=list(fields["ips"]), info=dict(fields["info"]),
                    registered=float(fields["registered"]), last_seen=float(fields["last_seen"]),
                    said_bye=bool(fields["said_bye"]), desired_paused=fields["desired_paused"],
                    reported_paused=bool(fields["reported_paused"]), controllable=bool(fields["controllable"]),
                    owner_key=fields.get("owner_key"))  # absent in records written before ownership
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"a node record lacks a field: {error}") from None
    if not isinstance(node.name, str) or not all(isinstance(ip, str) for ip in node.ips) \
            or node.desired_paused not in (None, True, False) \
            or not (node.owner_key is None or isinstance(node.owner_key, str)) \
            or not (math.isfinite(node.registered) and math.isfinite(node.last_seen)):
        raise ValueError("a node record has a field of the wrong type")
    return node
