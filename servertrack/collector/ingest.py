"""The SUB side: drain the ingest socket, validate each frame, queue it for the next batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import zmq
import zmq.asyncio

from ..common.batch import PendingBatch
from ..common.errors import InvalidSample
from ..common.inventory import AgentInventory
from ..common.node_messages import NodeBye, NodeHello, NodeSnapshot, decode_message
from ..common.nodes import NodeRegistry
from ..common.protocol import NameCache, Sample
from ..common.stats import IngestStats

# Frames handled per turn of the event loop: ~3 ms of work, so HTTP
# requests never wait long behind a flood of samples.
DRAIN_CHUNK = 500
# Generous receive buffer: the loop pauses for a batch apply, and PUB/SUB
# drops (and we count as lost) whatever does not fit.
RECEIVE_HIGH_WATER_MARK = 1_000_000


def open_ingest_socket(context: zmq.asyncio.Context, endpoint: str) -> zmq.asyncio.Socket:
    """Bind a SUB socket subscribed to everything at ``endpoint`` (``tcp://host:port``, port may be ``*``)."""
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HIGH_WATER_MARK)
        socket.setsockopt(zmq.RCVBUF, 4 * 1024 * 1024)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.bind(endpoint)
    except zmq.ZMQError:
        socket.close(linger=0)
        raise
    return socket


class IngestReader:
    """Reads protocol frames from a bound SUB socket into the pending batch.

    Bad frames are dropped and counted in ``stats.dropped`` by reason; the
    reader never stops on bad input.
    """

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        batch: PendingBatch,
        inventory: AgentInventory,
        stats: IngestStats,
        clock: Callable[[], float] = time.time,
        names: NameCache | None = None,
        nodes: NodeRegistry | None = None,
    ) -> None:
        self._socket = socket
        # A synchronous view of the same socket: recv(NOBLOCK) without a
        # Future per message.
        self._sync: zmq.Socket = zmq.Socket.shadow(socket.underlying)
        self._batch = batch
        self._inventory = inventory
        self._stats = stats
        self._clock = clock
        self._names = names if names is not None else NameCache()
        self._nodes = nodes if nodes is not None else NodeRegistry(inventory.max_agents, clock)

    async def run(self) -> None:
        """Drain the socket whenever it is readable, until cancelled."""
        while True:
            await self._socket.poll()  # readable (POLLIN is the default)
            while self.drain(DRAIN_CHUNK) == DRAIN_CHUNK:
                await asyncio.sleep(0)

    def drain(self, limit: int) -> int:
        """Receive and handle up to ``limit`` waiting frames without blocking; return how many."""
        recv = self._sync.recv
        batch = self._batch
        # PendingBatch.add, unrolled: this loop runs once per received frame
        add_name, add_ts, add_cpu, add_ram = batch.names.append, batch.ts.append, batch.cpu.append, batch.ram.append
        observe = self._inventory.observe
        ips_of = self._inventory.ips_of
        names = self._names
        node_seen = self._nodes.seen
        dropped = self._stats.dropped
        now = self._clock()
        received = 0
        room = batch.room()
        while received < limit:
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            received += 1
            try:
                sample = decode_message(frame, now, names, ips_of)
            except InvalidSample as invalid:
                dropped[invalid.reason] += 1
                continue
            if not isinstance(sample, Sample):
                self._node_message(sample, now)
                continue
            observe(sample.fqdn, sample.seq, sample.ips)
            node_seen(sample.fqdn, now)
            if room <= 0:
                dropped["queue_full"] += 1
                continue
            room -= 1
            add_name(sample.fqdn)
            add_ts(sample.ts)
            add_cpu(sample.cpu)
            add_ram(sample.ram)
        self._stats.received += received
        return received

    def _node_message(self, message: NodeHello | NodeBye | NodeSnapshot, now: float) -> None:
        """Apply a hello, bye or snapshot to the node registry (and the agent's seq)."""
        nodes = self._nodes
        if type(message) is NodeHello:
            self._inventory.observe(message.fqdn, message.seq, message.ips)
            accepted = nodes.hello(message.fqdn, message.ips, message.info, now) is not None
        else:
            self._inventory.observe_seq(message.fqdn, message.seq)
            if type(message) is NodeBye:
                accepted = nodes.bye(message.fqdn, now)
            else:
                accepted = nodes.record_stats(message.fqdn, message.stats, message.ts, now,  # type: ignore[union-attr]
                                              message.packed) is not None  # type: ignore[union-attr]
        if not accepted:
            self._stats.dropped["node_refused"] += 1
