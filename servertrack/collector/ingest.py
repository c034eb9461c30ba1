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
from ..common.node_messages import Message, NodeBye, NodeHello, NodeSnapshot, decode_message
from ..common.sample_frames import fast_sample
from ..common.nodes import NodeRefused, NodeRegistry
from ..common.protocol import MAX_SAMPLE_FRAME_BYTES, NameCache, Sample
from ..common.settings import DEFAULT_LARGE_FRAME_SHARE
from ..common.stats import IngestStats

# Work per turn of the event loop, so HTTP requests never wait long behind a
# flood: at most this many frames (~2 ms of samples), this much time, and
# this many bytes of frames decoded. A request waits behind about one ingest
# turn and one apply chunk (applier.CHUNK_SECONDS): with 4 ms each, the p99 of
# a GET under 50,000 samples/s was 15-18 ms on a busy 2-core machine, with 2 ms
# 10 ms. A turn that decodes large frames (snapshots, ~0.1 ms each) may take
# twice as long: with 2 ms, 10,000 nodes' snapshots fell behind (shed as
# backlog), with 4 ms they do not.
DRAIN_CHUNK = 500
TURN_SECONDS = 0.002
LARGE_FRAME_TURN_SECONDS = 0.004
TURN_BYTES = 4 * 1024 * 1024
# Large frames are shed, whatever the budget, once the socket has not been
# empty for this long *and* this many bytes of large frames: decoding them has
# fallen behind what arrives, and what waits in the receive queue is memory (a
# flood of 10,000 frames of 127 KB is 1.3 GB). Either alone is not enough: a
# loop busy with a large HTTP answer leaves a socket non-empty for a while with
# a few MB behind it, and 16 MB arrive in a moment of a flood.
MAX_BACKLOG_SECONDS = 0.25
MAX_BACKLOG_BYTES = 16 * 1024 * 1024
# After a turn that used all its time, the reader lets the loop turn this many
# times before its next turn: a request takes several turns of the loop (read,
# handle, write) and would otherwise wait behind a full drain turn at each of
# them. Yielding costs no throughput when nothing else is waiting (a sleep would).
YIELDS_AFTER_FULL_TURN = 4
# Frames above this size (only hellos and snapshots are that large) are
# decoded only while the large-frame budget lasts: a share of one core's time
# (a maximal snapshot costs ~4 ms, a typical one ~0.1 ms, so the budget is
# time, not bytes). Beyond it they are discarded unread (``overload``), which
# costs little more than their copy, so a flood of large frames can neither
# starve the loop nor pile up in the receive queue.
SMALL_FRAME_BYTES = MAX_SAMPLE_FRAME_BYTES  # 4 KiB: samples and hellos (2.3 KiB at every bound) are never shed
LARGE_FRAME_BURST_SECONDS = 0.5
# The receive queue, per publisher connection. With frames of at most
# SMALL_FRAME_BYTES decoded at full speed and larger ones shed, it stays far
# below HWM x SMALL_FRAME_BYTES; PUB/SUB drops (and we count as lost) what
# does not fit. A frame above MAX_MESSAGE_BYTES makes libzmq drop its sender's
# connection before the frame is ever held.
RECEIVE_HIGH_WATER_MARK = 250_000  # 2.5 s of 100,000 samples/s; at most 1 GiB of 4 KiB frames
MAX_MESSAGE_BYTES = 1024 * 1024


def open_ingest_socket(context: zmq.asyncio.Context, endpoint: str) -> zmq.asyncio.Socket:
    """Bind a SUB socket subscribed to everything at ``endpoint`` (``tcp://host:port``, port may be ``*``)."""
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HIGH_WATER_MARK)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.RCVBUF, 4 * 1024 * 1024)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.bind(endpoint)
    except zmq.ZMQError:
        socket.close(linger=0)
        raise
    return socket


class WorkBudget:
    """A token bucket of work time: ``share`` seconds per second, holding at most ``burst`` seconds.

    Work is allowed while the bucket is not empty and paid for afterwards, by
    what it took, so one costly frame may take the bucket below zero.
    """

    __slots__ = ("share", "burst", "_tokens", "_at")

    def __init__(self, share: float, burst: float, now: float) -> None:
        self.share = share
        self.burst = burst
        self._tokens = burst
        self._at = now

    def allows(self, now: float) -> bool:
        """Whether work may start at ``now`` (the bucket refilled up to then)."""
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.share)
            self._at = now
        return self._tokens > 0.0

    def spend(self, seconds: float) -> None:
        """Pay for work that took ``seconds``."""
        self._tokens -= seconds


class IngestReader:
    """Reads protocol frames from a bound SUB socket into the pending batch.

    Bad frames are dropped and counted in ``stats.dropped`` by kind and
    reason; the reader never stops on bad input. A refused message changes
    nothing: seq, IPs and liveness are recorded only for what is kept.
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
        large_frame_share: float = DEFAULT_LARGE_FRAME_SHARE,
        timer: Callable[[], float] = time.monotonic,
        work_timer: Callable[[], float] = time.thread_time,
    ) -> None:
        """``large_frame_share``: the share of one core that decoding frames over ``SMALL_FRAME_BYTES``
        may take, as measured by ``work_timer`` (this thread's CPU seconds: time the process is
        preempted is not work); ``timer`` (monotonic seconds) bounds each turn and refills the budget."""
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
        self._timer = timer
        self._work_timer = work_timer
        self._full_turn = False  # the last drain stopped because its time or bytes were spent
        self._backlog_since: float | None = None  # when the socket was last seen not empty after a turn
        self._backlog_bytes = 0  # bytes of large frames received since then
        self._large_frames = WorkBudget(large_frame_share, large_frame_share * LARGE_FRAME_BURST_SECONDS, timer())

    async def run(self) -> None:
        """Drain the socket whenever it is readable, until cancelled."""
        while True:
            await self._socket.poll()  # readable (POLLIN is the default)
            while not self.drain(DRAIN_CHUNK):
                for _ in range(YIELDS_AFTER_FULL_TURN if self._full_turn else 1):
                    await asyncio.sleep(0)

    def drain(self, limit: int) -> bool:
        """Receive and handle up to ``limit`` waiting frames without blocking, within this turn's
        time and byte budget; return True once the socket is empty."""
        recv = self._sync.recv
        batch = self._batch
        # PendingBatch.add, unrolled: this loop runs once per received frame
        add_name, add_ts, add_cpu, add_ram = batch.names.append, batch.ts.append, batch.cpu.append, batch.ram.append
        observe = self._inventory.observe
        ips_of = self._inventory.ips_of
        names = self._names
        node_seen = self._nodes.seen
        stats = self._stats
        dropped_samples = stats.dropped["sample"]
        now = self._clock()
        timer, work_timer = self._timer, self._work_timer
        large_frames = self._large_frames
        started = timer()
        large_bytes = 0
        handled = samples = 0
        room = batch.room()
        backlog_since = self._backlog_since
        behind = backlog_since is not None and started - backlog_since > MAX_BACKLOG_SECONDS \
            and self._backlog_bytes > MAX_BACKLOG_BYTES
        empty = full_turn = False
        while handled < limit:
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                empty = True
                break
            handled += 1
            if len(frame) > SMALL_FRAME_BYTES:
                began = timer()
                large_bytes += len(frame)
                if behind or not large_frames.allows(began):
                    stats.refuse(None, "backlog" if behind else "overload")
                    if large_bytes > TURN_BYTES:  # even unread, a frame costs its copy
                        handled = limit
                        full_turn = True
                    continue
                work_began = work_timer()
                message: Message | None = self._large_message(frame, now)
                large_frames.spend(work_timer() - work_began)
                ended = timer()
                if large_bytes > TURN_BYTES or ended - started > LARGE_FRAME_TURN_SECONDS:
                    handled = limit  # this turn's work is done once this frame is
                    full_turn = True
                if type(message) is not Sample:
                    continue
            else:
                message = fast_sample(frame, now, names, ips_of)  # a plain valid sample, decoded in C
                if message is None:  # anything else: the general decoder decides, and names a refusal
                    try:
                        message = decode_message(frame, now, names, ips_of)
                    except InvalidSample as invalid:
                        stats.refuse(invalid.kind, invalid.reason)
                        continue
                    if type(message) is not Sample:
                        self._node_message(message, now)  # type: ignore[arg-type]
                        continue
            samples += 1
            if not samples & 127 and timer() - started > TURN_SECONDS:  # new names cost more
                handled = limit
                full_turn = True
            if room <= 0:
                dropped_samples["queue_full"] += 1
                continue
            room -= 1
            sample: Sample = message  # type: ignore[assignment]
            observe(sample.fqdn, sample.seq, sample.ips)
            node_seen(sample.fqdn, now)
            add_name(sample.fqdn)
            add_ts(sample.ts)
            add_cpu(sample.cpu)
            add_ram(sample.ram)
        stats.received["sample"] += samples
        self._full_turn = full_turn
        if not empty:  # the turn ended on its limits: is anything still waiting?
            empty = not int(self._sync.getsockopt(zmq.EVENTS)) & zmq.POLLIN
        if empty:
            self._backlog_since, self._backlog_bytes = None, 0
        else:
            self._backlog_bytes += large_bytes
            if backlog_since is None:
                self._backlog_since = started
        return empty

    def _large_message(self, frame: bytes, now: float) -> Sample | None:
        """Decode a large frame and apply it if it is a node message (the costly part, paid from the
        large-frame budget); a sample is returned for the batch, anything else gives None."""
        try:
            message = decode_message(frame, now, self._names, self._inventory.ips_of)
        except InvalidSample as invalid:
            self._stats.refuse(invalid.kind, invalid.reason)
            return None
        if type(message) is Sample:
            return message  # type: ignore[return-value]
        self._node_message(message, now)  # type: ignore[arg-type]
        return None

    def _node_message(self, message: NodeHello | NodeBye | NodeSnapshot, now: float) -> None:
        """Apply a hello, bye or snapshot to the node registry (and the agent's seq), or count why not."""
        nodes = self._nodes
        kind = _KIND_OF[type(message)]
        try:
            if type(message) is NodeHello:
                # the registry compares the reported pause state with the desired one (re-asserted on a mismatch)
                node = nodes.hello(message.fqdn, message.ips, message.info, now, paused=message.paused)
                self._inventory.observe(message.fqdn, message.seq, node.ips)  # one copy of the addresses
            elif type(message) is NodeBye:
                if not nodes.bye(message.fqdn, now):
                    raise NodeRefused("node_refused", f"bye from unknown node {message.fqdn!r}")
                self._inventory.observe_seq(message.fqdn, message.seq)
            else:
                snapshot: NodeSnapshot = message  # type: ignore[assignment]
                nodes.record_stats(snapshot.fqdn, snapshot.stats, snapshot.ts, now)
                self._inventory.observe_seq(snapshot.fqdn, snapshot.seq)
        except NodeRefused as refused:
            self._stats.refuse(kind, refused.reason)
            return
        self._stats.accept(kind)


_KIND_OF = {NodeHello: "hello", NodeBye: "bye", NodeSnapshot: "snapshot"}
