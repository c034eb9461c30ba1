"""Node inventory: which nodes exist, what they are, whether each is up, and their latest stats.

A node is registered by a ``hello`` (ZeroMQ) or ``POST /nodes``, kept up to
date by its samples and snapshots, marked offline by ``bye``, and removed by
``DELETE /nodes/{name}`` or after 24 h of silence. Its state is computed
from the clock whenever asked (``node_state``), never stored, so it needs no
timer and is tested without sleeping.

Pause: a node carries two pause states. ``desired_paused`` is what the
operator asked (``POST /nodes/{id}/pause``, ``/stop``...), None until anyone
asked or the node reported; ``reported_paused`` is what the agent said in its
last hello (a sample or snapshot proves it is not paused). Control messages
travel over PUB/SUB, which loses what is sent while an agent is not
connected, so the registry calls ``on_mismatch(node)`` (the collector's
control channel re-publishes the desired state) on every hello that
disagrees with the desired state, and on samples of a node that should be
paused (at most every ``REASSERT_SECONDS``); only for nodes whose agent
reports its pause state (``controllable``): an older agent, or one
registered over HTTP, has no control channel to tell. A registry that has no desired
state for a node (the collector restarted) adopts the one the hello reports,
so a paused node stays paused across restarts of either side. The latest stats snapshot is kept
re-encoded (see ``snapshots``) within a memory budget per node and in total,
decoded only when read. A message the registry cannot take raises
``NodeRefused`` and changes nothing.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ServerTrackError
from .snapshots import SnapshotBudget, StoredSnapshot, pack_snapshot, unpack_snapshot

ONLINE, PAUSED, STALE, OFFLINE = "online", "paused", "stale", "offline"
NODE_STATES = (ONLINE, PAUSED, STALE, OFFLINE)
_ONLINE_CODE, _PAUSED_CODE, _STALE_CODE, _OFFLINE_CODE = range(len(NODE_STATES))
STALE_AFTER_INTERVALS = 3
# A paused agent sends no samples, only hellos: one every this many sample intervals (at most its
# usual hello period apart). So a paused node is judged by the same rule as a sampling one, silence
# of up to 3 expected messages, with the hello period (2 intervals) as the expected gap: 6 intervals.
# Every 2 intervals rather than every one keeps a paused agent cheaper than a sampling one (a hello
# reads a few more figures than a sample), while the state still flips within seconds.
PAUSED_HELLO_INTERVALS = 2
# Samples from a node that should be paused re-publish the pause at most this often.
REASSERT_SECONDS = 1.0
DEFAULT_OFFLINE_AFTER_SECONDS = 300.0
FORGET_AFTER_SECONDS = 24 * 3600.0
DEFAULT_INTERVAL = 1.0


class UnknownNode(ServerTrackError):
    """No node has that name or address."""


class NodeRefused(ServerTrackError):
    """The registry cannot take a message; ``reason`` is its drop counter
    (``node_refused`` when the registry is full, ``over_node_budget``,
    ``over_total_budget``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class AmbiguousAddress(ServerTrackError):
    """Several nodes share the address; ``names`` lists them."""

    def __init__(self, address: str, names: list[str]) -> None:
        super().__init__(f"address {address} belongs to several nodes: {', '.join(names)}")
        self.address = address
        self.names = names


def node_state(
    last_seen: float, interval: float, said_bye: bool, now: float, offline_after: float, paused: bool = False
) -> str:
    """``online`` if heard from within 3 intervals, ``offline`` after a bye or ``offline_after``
    seconds of silence, ``stale`` in between.

    A node whose agent reported itself ``paused`` reads ``paused`` instead of
    ``online``, and, sending hellos every ``PAUSED_HELLO_INTERVALS`` intervals
    instead of samples every interval, is ``stale`` only after 3 missed hellos:
    a paused node that goes silent is stale, then offline, like any other (a
    silent node is not known to be paused any more, only to have been).
    """
    silence = now - last_seen
    if said_bye or silence > offline_after:
        return OFFLINE
    if paused:
        return PAUSED if silence <= STALE_AFTER_INTERVALS * PAUSED_HELLO_INTERVALS * interval else STALE
    if silence <= STALE_AFTER_INTERVALS * interval:
        return ONLINE
    return STALE


def node_states(
    last_seen: npt.NDArray[np.float64], interval: npt.NDArray[np.float64], said_bye: npt.NDArray[np.bool_],
    paused: npt.NDArray[np.bool_], now: float, offline_after: float,
) -> npt.NDArray[np.int8]:
    """``node_state`` of many nodes at once, as indexes into ``NODE_STATES``."""
    silence = now - last_seen
    limit = STALE_AFTER_INTERVALS * interval * np.where(paused, PAUSED_HELLO_INTERVALS, 1)
    states = np.where(silence <= limit, np.where(paused, _PAUSED_CODE, _ONLINE_CODE), _STALE_CODE).astype(np.int8)
    states[said_bye | (silence > offline_after)] = _OFFLINE_CODE
    return states


def paused_hello_period(interval: float, hello_every: float) -> float:
    """Seconds between two hellos of a paused agent sampling every ``interval`` seconds (and saying hello
    every ``hello_every`` seconds when it samples): ``PAUSED_HELLO_INTERVALS`` intervals, never longer than
    its usual hello period, so the collector's rule (``node_state``) always holds."""
    return min(hello_every, PAUSED_HELLO_INTERVALS * interval)


@dataclass(slots=True)
class Node:
    """What is known of one node. ``info`` holds its hello fields (empty until a hello)."""

    name: str
    ips: list[str]
    info: dict[str, Any]
    registered: float
    last_seen: float
    said_bye: bool = False
    snapshot: StoredSnapshot | None = None
    snapshot_ts: float | None = None
    # What the operator asked (None: nobody asked, and the agent has not said), and what the agent said.
    desired_paused: bool | None = None
    reported_paused: bool = False
    controllable: bool = False  # its last hello said whether it is paused: it has a control channel
    reasserted_at: float = float("-inf")
    # CURVE ingest: the public key (Z85) that owns the name (see ``inventory``); None: nobody's.
    owner_key: str | None = None
    # How far ahead of the collector's clock the agent's is (its last hello's or snapshot's ``ts`` minus
    # when it arrived, network delay included); None until measured.
    clock_skew: float | None = None

    @property
    def interval(self) -> float:
        """The agent's sample interval (1 s until it says otherwise)."""
        return float(self.info.get("interval") or DEFAULT_INTERVAL)

    @property
    def paused(self) -> bool:
        """Whether the node is meant to be paused: as asked, else as its agent last said."""
        return self.reported_paused if self.desired_paused is None else self.desired_paused

    def stats(self) -> dict[str, Any] | None:
        """The latest stats snapshot, decoded, or None."""
        return None if self.snapshot is None else unpack_snapshot(self.snapshot)


class NodeRegistry:
    """At most ``max_nodes`` nodes by canonical name, with an index of their IP addresses, and their
    snapshots within ``budget``."""

    def __init__(
        self,
        max_nodes: int,
        clock: Callable[[], float] = time.time,
        offline_after: float = DEFAULT_OFFLINE_AFTER_SECONDS,
        budget: SnapshotBudget | None = None,
        on_mismatch: Callable[[Node], None] | None = None,
        on_remove: Callable[[str], object] | None = None,
    ) -> None:
        """``on_mismatch(node)`` is called when a node's agent is not in the pause state it should be
        (see the module's docstring); the collector passes its control channel's re-assert.
        ``on_remove(name)`` is called when a node is removed (the collector releases its name's owner)."""
        self.max_nodes = max_nodes
        self.on_mismatch = on_mismatch
        self.on_remove = on_remove
        self.offline_after = offline_after
        self.budget = budget if budget is not None else SnapshotBudget()
        self.refused = 0
        self._clock = clock
        self._nodes: dict[str, Node] = {}
        # A collector of a fleet: the other collectors' nodes (``store.fleet_mirror.FleetMirror``: ``node``,
        # ``nodes``), which ``resolve`` and ``nodes`` answer for too; read-only here.
        self.fleet: Any = None
        # address -> the name of its node, or a tuple of names when nodes share it (rare): a set
        # per address would cost ~200 bytes each, and a node may have 32 addresses.
        self._by_ip: dict[str, str | tuple[str, ...]] = {}
        # Names whose record (hello fields, addresses, pause, bye, existence) changed since ``take_changed``:
        # what a store writes at once. A sample or snapshot only moves ``last_seen``, which a checkpoint keeps.
        self._changed: set[str] = set()

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def get(self, name: str) -> Node | None:
        """The node called ``name``, or None."""
        return self._nodes.get(name)

    def is_foreign(self, node: Node) -> bool:
        """Whether ``node`` is another collector's (from ``fleet``), not this registry's."""
        return self._nodes.get(node.name) is not node

    def state(self, node: Node) -> str:
        """The node's state now."""
        return node_state(node.last_seen, node.interval, node.said_bye, self._clock(), self.offline_after,
                          node.reported_paused)

    def hello(
        self, name: str, ips: list[str], info: dict[str, Any], now: float | None = None, paused: bool | None = None
    ) -> Node:
        """Register or refresh a node (``ips`` already validated) whose agent says it is ``paused`` or not
        (None: it does not say; it cannot be paused); ``NodeRefused`` (and counted in ``refused``) when
        the registry is full.

        A node without a desired pause state adopts the reported one; one whose
        desired state differs is handed to ``on_mismatch``.
        """
        now = self._clock() if now is None else now
        node = self._nodes.get(name) or self._add(name, now)
        self._changed.add(name)
        self._index(node, ips)
        node.info = info
        node.last_seen = now
        node.said_bye = False
        node.reported_paused = bool(paused)
        node.controllable = paused is not None
        if paused is None:
            return node
        if node.desired_paused is None:
            node.desired_paused = paused
        elif node.desired_paused != paused and self.on_mismatch is not None:
            node.reasserted_at = now
            self.on_mismatch(node)
        return node

    def seen(self, name: str, now: float) -> None:
        """A sample arrived from ``name``: it is alive, and not paused (unknown names are ignored).

        If it should be paused, ``on_mismatch`` is told (at most every ``REASSERT_SECONDS``).
        """
        node = self._nodes.get(name)
        if node is not None:
            node.last_seen = now
            node.said_bye = False
            node.reported_paused = False
            if node.desired_paused and node.controllable and now - node.reasserted_at >= REASSERT_SECONDS \
                    and self.on_mismatch is not None:
                node.reasserted_at = now
                self.on_mismatch(node)

    def seen_many(self, names: Iterable[str], now: float) -> None:
        """``seen`` for each of ``names`` (samples that arrived together), in one pass."""
        nodes = self._nodes
        if not nodes:
            return
        for node in map(nodes.get, names):
            if node is not None:
                if node.said_bye or node.reported_paused or node.desired_paused:
                    self.seen(node.name, now)
                else:
                    node.last_seen = now

    def set_paused(self, name: str, paused: bool) -> Node:
        """Record that node ``name`` should be ``paused`` (or not); ``UnknownNode`` if there is no such node.

        Telling the agent is the control channel's part.
        """
        node = self._nodes.get(name)
        if node is None:
            raise UnknownNode(f"unknown node {name!r}")
        node.desired_paused = paused
        self._changed.add(name)
        return node

    def set_all_paused(self, paused: bool) -> list[str]:
        """Record that every node should be ``paused`` (or not); return their names, sorted."""
        for node in self._nodes.values():
            node.desired_paused = paused
        self._changed.update(self._nodes)
        return sorted(self._nodes)

    def bye(self, name: str, now: float) -> bool:
        """The node stopped cleanly; False if it is unknown."""
        node = self._nodes.get(name)
        if node is None:
            return False
        node.last_seen = now
        node.said_bye = True
        self._changed.add(name)
        return True

    def record_stats(self, name: str, stats: dict[str, Any], ts: float, now: float) -> Node:
        """Keep validated ``stats`` as the node's latest snapshot, registering the node if needed.

        ``NodeRefused`` if it breaks the memory budget (the node keeps its
        previous snapshot) or the registry is full.
        """
        stored = pack_snapshot(stats)
        node = self._nodes.get(name)
        held = 0 if node is None or node.snapshot is None else node.snapshot.size
        refusal = self.budget.refusal(stored.size, held)
        if refusal is not None:
            raise NodeRefused(*refusal)
        if node is None:
            node = self._add(name, now)
        self.budget.replace(stored.size, held)
        node.snapshot = stored
        node.snapshot_ts = ts
        node.last_seen = now
        node.said_bye = False
        node.reported_paused = False  # a paused agent sends no snapshots
        return node

    def remove(self, name: str) -> bool:
        """Forget a node (its load history stays in the aggregator); False if unknown."""
        node = self._nodes.pop(name, None)
        if node is None:
            return False
        self._changed.add(name)
        if self.on_remove is not None:
            self.on_remove(name)
        self._index(node, [])
        if node.snapshot is not None:
            self.budget.replace(0, node.snapshot.size)
        return True

    def resolve(self, name_or_ip: str) -> Node:
        """The node with this name, else the one node with this IP address.

        Raises ``UnknownNode``, or ``AmbiguousAddress`` if several nodes share the IP.
        """
        node = self._nodes.get(name_or_ip.lower())
        if node is not None:
            return node
        try:
            address = str(ipaddress.ip_address(name_or_ip))
        except ValueError:
            foreign = self.fleet.node(name_or_ip.lower()) if self.fleet is not None else None
            if foreign is not None:
                return foreign
            raise UnknownNode(f"unknown node {name_or_ip!r}") from None
        found = self._by_ip.get(address, ())
        owners = [found] if isinstance(found, str) else sorted(found)
        if not owners:
            foreign = self.fleet.node(address) if self.fleet is not None else None
            if foreign is not None:
                return foreign
            raise UnknownNode(f"no node has address {address}")
        if len(owners) > 1:
            raise AmbiguousAddress(address, owners)
        return self._nodes[owners[0]]

    def nodes(self, state: str | None = None) -> list[tuple[Node, str]]:
        """``(node, state)`` sorted by name, optionally only those in ``state``."""
        now = self._clock()
        listed = []
        every = dict(self._nodes)
        if self.fleet is not None:  # the others' nodes, where this collector holds none of that name
            for foreign in self.fleet.nodes():
                every.setdefault(foreign.name, foreign)
        for name in sorted(every):
            node = every[name]
            current = node_state(node.last_seen, node.interval, node.said_bye, now, self.offline_after,
                                 node.reported_paused)
            if state is None or current == state:
                listed.append((node, current))
        return listed

    def forget_silent(self) -> list[str]:
        """Remove nodes silent for 24 h; return their names."""
        cutoff = self._clock() - FORGET_AFTER_SECONDS
        silent = [name for name, node in self._nodes.items() if node.last_seen < cutoff]
        for name in silent:
            self.remove(name)
        return silent

    def _add(self, name: str, now: float) -> Node:
        if len(self._nodes) >= self.max_nodes:
            self.refused += 1
            raise NodeRefused("node_refused", f"node limit reached: {self.max_nodes} nodes are registered")
        node = Node(name=name, ips=[], info={}, registered=now, last_seen=now)
        self._nodes[name] = node
        self._changed.add(name)
        return node

    def take_changed(self) -> list[tuple[str, Node | None]]:
        """The nodes whose record changed since the last call (None: removed), and start afresh."""
        changed, self._changed = self._changed, set()
        return [(name, self._nodes.get(name)) for name in sorted(changed)]

    def state_columns(self, now: float | None = None) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.int8]]:
        """Every node's name, last seen and state at ``now`` (default: now; an index into ``NODE_STATES``), as
        columns, in no particular order."""
        nodes = list(self._nodes.values())
        count = len(nodes)
        last_seen = np.fromiter((node.last_seen for node in nodes), np.float64, count)
        interval = np.fromiter((node.info.get("interval") or DEFAULT_INTERVAL for node in nodes), np.float64, count)
        said_bye = np.fromiter((node.said_bye for node in nodes), np.bool_, count)
        paused = np.fromiter((node.reported_paused for node in nodes), np.bool_, count)
        states = node_states(last_seen, interval, said_bye, paused, self._clock() if now is None else now,
                             self.offline_after)
        return [node.name for node in nodes], last_seen, states

    def all_nodes(self) -> list[Node]:
        """Every node, in no particular order."""
        return list(self._nodes.values())

    def restore(self, nodes: list[Node]) -> None:
        """Take nodes loaded from a store (at start, before any message), as many as the cap allows."""
        for node in nodes[:max(0, self.max_nodes - len(self._nodes))]:
            if node.name in self._nodes:
                continue
            ips, node.ips = node.ips, []
            self._nodes[node.name] = node
            self._index(node, ips)

    def _index(self, node: Node, ips: list[str]) -> None:
        """Point the IP index at ``ips`` for this node (normalised addresses; the index keys are the
        very strings of ``node.ips``)."""
        name = node.name
        for old in node.ips:
            owners = self._by_ip.get(old)
            if owners == name:
                del self._by_ip[old]
            elif isinstance(owners, tuple):
                rest = tuple(owner for owner in owners if owner != name)
                self._by_ip[old] = rest[0] if len(rest) == 1 else rest
        node.ips = list(dict.fromkeys(str(ipaddress.ip_address(address)) for address in ips))
        for address in node.ips:
            owners = self._by_ip.get(address)
            if owners is None:
                self._by_ip[address] = name
            elif isinstance(owners, str):
                if owners != name:
                    self._by_ip[address] = (owners, name)
            elif name not in owners:
                self._by_ip[address] = (*owners, name)
