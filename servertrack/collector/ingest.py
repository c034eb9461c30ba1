"""The SUB side: drain the ingest socket, validate each frame, queue it for the next batch."""

from __future__ import annotations

import asyncio
import operator
import time
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from ..common.agent_keys import AgentKeys
from ..common.batch import PendingBatch
from ..common.errors import InvalidSample
from ..common.inventory import NO_OWNER, AgentInventory
from ..common.node_messages import (
    NodeBye,
    NodeHello,
    NodeSnapshot,
    decode_message,
)
from ..common.nodes import Node, NodeRefused, NodeRegistry
from ..common.protocol import MAX_SAMPLE_FRAME_BYTES, NameCache, Sample
from ..common.sample_frames import (
    FIXMAP_HEADERS,
    FRAME_REFUSED,
    SampleFrame,
    checked_sample,
    decode_sample_frame,
    oldest_and_newest,
    paired,
)
from ..common.settings import DEFAULT_LARGE_FRAME_SHARE
from ..common.stats import IngestStats
from .turns import give_way, nothing_waits

# Work per turn of the event loop, so HTTP requests never wait long behind a
# flood: at most this many frames (~2 ms of samples), this much time, and
# this many bytes of frames decoded. A request waits behind about one ingest
# turn and one apply chunk (applier.CHUNK_SECONDS): with 4 ms each, the p99 of
# a GET under 50,000 samples/s was 15-18 ms on a busy 2-core machine, with 2 ms
# 10 ms. A turn that decodes large frames (snapshots, ~0.1 ms each) may take
# twice as long: with 2 ms, 10,000 nodes' snapshots fell behind (shed as
# backlog), with 4 ms they do not.
DRAIN_CHUNK = 500
# Sample frames are checked and queued in runs of at most this many (and the turn's time checked after each).
RUN_LENGTH = 256
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
# While HTTP work waits (``HttpPressure``), a turn ends at the next check, every
# this many frames (~0.2 ms), and the reader gives way (``turns.give_way``).
PRESSURE_CHECK_FRAMES = 128
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


def open_ingest_socket(context: zmq.asyncio.Context, endpoint: str,
                       secure: Callable[[zmq.asyncio.Socket], None] | None = None) -> zmq.asyncio.Socket:
    """Bind a SUB socket subscribed to everything at ``endpoint`` (``tcp://host:port``, port may be ``*``);
    ``secure`` (e.g. ``AgentTrust.secure``) sets the socket up before it binds."""
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HIGH_WATER_MARK)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.RCVBUF, 4 * 1024 * 1024)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        if secure is not None:
            secure(socket)
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

    With ``keys`` (CURVE ingest: every frame carries its sender's key as its
    ZAP User-Id) a frame under a key no longer allowed is dropped
    (``revoked_key``), and a message for a name another key owns is dropped
    (``wrong_key``, see ``inventory``). Every agent's frames are held to its
    budget (``over_budget``).
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
        http_waiting: Callable[[], bool] = nothing_waits,
        keys: AgentKeys | None = None,
    ) -> None:
        """``large_frame_share``: the share of one core that decoding frames over ``SMALL_FRAME_BYTES``
        may take, as measured by ``work_timer`` (this thread's CPU seconds: time the process is
        preempted is not work); ``timer`` (monotonic seconds) bounds each turn and refills the budget;
        ``http_waiting`` says whether requests wait (``HttpPressure.waiting``): turns then end early."""
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
        self._http_waiting = http_waiting
        self._keys = keys
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
                await give_way(self._http_waiting, self._timer)

    def drain(self, limit: int) -> bool:
        """Receive and handle up to ``limit`` waiting frames without blocking, within this turn's
        time and byte budget; return True once the socket is empty.

        Sample frames are decoded one C call each and held until a run of them is queued in one
        go (``_queue_run``); any other frame first queues the run before it, so every agent's
        messages are accounted in the order they came.
        """
        recv: Callable[[int, bool], Any] = self._sync.recv  # bytes, or (keyed) a zmq.Frame
        allowed = self._keys.allowed if self._keys is not None else None
        copied = allowed is None  # a keyed frame is received as a Frame, which carries its User-Id
        key = NO_OWNER
        stats = self._stats
        now = self._clock()
        timer, work_timer = self._timer, self._work_timer
        large_frames = self._large_frames
        started = timer()
        large_bytes = 0
        handled = 0
        backlog_since = self._backlog_since
        behind = backlog_since is not None and started - backlog_since > MAX_BACKLOG_SECONDS \
            and self._backlog_bytes > MAX_BACKLOG_BYTES
        empty = full_turn = False
        run: list[SampleFrame] = []
        run_frames: list[bytes] = []
        run_keys: list[int] = []
        add_record, add_frame, add_key = run.append, run_frames.append, run_keys.append
        while handled < limit:
            try:
                frame = recv(zmq.NOBLOCK, copied)
            except zmq.Again:
                empty = True
                break
            handled += 1
            if allowed is not None:
                key = allowed.get(frame.get(b"User-Id"), NO_OWNER)  # bytes: not encoded again per frame
                frame = frame.bytes
                if key == NO_OWNER:
                    stats.refuse(None, "revoked_key")
                    continue
            if len(frame) > SMALL_FRAME_BYTES:
                if run:
                    self._queue_run(run, run_frames, run_keys, now)
                began = timer()
                large_bytes += len(frame)
                if behind or not large_frames.allows(began):
                    stats.refuse(None, "backlog" if behind else "overload")
                    if large_bytes > TURN_BYTES:  # even unread, a frame costs its copy
                        handled = limit
                        full_turn = True
                    continue
                work_began = work_timer()
                self._general_message(frame, now, key)  # the costly part, paid from the large-frame budget
                large_frames.spend(work_timer() - work_began)
                ended = timer()
                if large_bytes > TURN_BYTES or ended - started > LARGE_FRAME_TURN_SECONDS:
                    handled = limit  # this turn's work is done once this frame is
                    full_turn = True
                continue
            record = None
            if frame.startswith(FIXMAP_HEADERS):  # takes_fast_path, inlined (the size is checked above)
                try:
                    record = decode_sample_frame(frame)  # a sample frame, typed and range-checked in C
                except FRAME_REFUSED:
                    pass
            if record is None:  # anything else: the general decoder decides, and names a refusal
                if run:
                    self._queue_run(run, run_frames, run_keys, now)
                self._general_message(frame, now, key)
                continue
            add_record(record)
            add_frame(frame)
            add_key(key)
            if not handled % PRESSURE_CHECK_FRAMES and self._http_waiting():
                handled = limit
                full_turn = True
            elif len(run) >= RUN_LENGTH:
                self._queue_run(run, run_frames, run_keys, now)
                if timer() - started > TURN_SECONDS:  # new names cost more
                    handled = limit
                    full_turn = True
        if run:
            self._queue_run(run, run_frames, run_keys, now)
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

    def _queue_run(self, run: list[SampleFrame], frames: list[bytes], keys: list[int], now: float) -> None:
        """Check and queue a run of decoded sample frames (in arrival order) and their keys, then empty
        the lists.

        The common case (every name and IP list seen before, versions paired, timestamps in the
        window, each agent once, its own name's owner and within its budget) is a few list
        comprehensions and array operations for the whole run; a run with anything else goes frame
        by frame (``_queue_slowly``), exactly as the general decoder decides.
        """
        canonical = self._names._canonical.get  # NameCache.canonical's cache, inlined
        inventory = self._inventory
        names = [canonical(record.fqdn) for record in run]
        agents: Any = inventory.indexes(names)  # type: ignore[arg-type]  # None names give None
        ts = array("d", [record.ts for record in run])
        oldest, newest = oldest_and_newest(now)
        stamps = np.frombuffer(ts, dtype=np.float64)
        if None in agents or not all(map(paired, run)) \
                or not ((stamps >= oldest) & (stamps <= newest)).all() \
                or False in map(operator.eq, map(inventory.ips.__getitem__, agents), [r.ip for r in run]) \
                or len(set(agents)) != len(agents) \
                or (self._keys is not None and not inventory.owned_by(agents, keys)) \
                or not inventory.within_budget_many(agents, now):
            self._queue_slowly(run, frames, keys, now)
        else:
            count = len(run)
            self._stats.received["sample"] += count
            room = self._batch.room()
            if room < count:
                self._stats.dropped["sample"]["queue_full"] += count - max(room, 0)
                count = max(room, 0)
                del run[count:], names[count:], agents[count:]
                ts = ts[:count]
            if count:
                inventory.observe_many(agents, [record.seq for record in run])  # type: ignore[arg-type]
                self._nodes.seen_many(names, now)  # type: ignore[arg-type]
                self._batch.extend(names, ts, array("d", [r.cpu for r in run]),  # type: ignore[arg-type]
                                   array("d", [r.ram for r in run]))
        run.clear()
        frames.clear()
        keys.clear()

    def _queue_slowly(self, run: list[SampleFrame], frames: list[bytes], keys: list[int], now: float) -> None:
        """Queue a run one frame at a time: each either passes every check of the general decoder
        here, or goes to it (and is refused with its reason, or accepted as it decides)."""
        names, ips_of = self._names, self._inventory.ips_of
        for record, frame, key in zip(run, frames, keys):
            sample = checked_sample(record, now, names, ips_of)
            if sample is None:
                self._general_message(frame, now, key)
            else:
                self._queue_one(sample, now, key)

    def _admitted(self, name: str, kind: str, key: int, now: float) -> bool:
        """Whether a message of ``kind`` for ``name`` under key number ``key`` may be kept: nobody else
        owns the name and the agent is within its budget; else counted, and False. (The key claims a
        name nobody owns once a message of it is kept: ``observe``.)"""
        refusal = self._inventory.refusal(name, key, now)
        if refusal is None:
            return True
        self._stats.refuse_from(name, kind, refusal)
        return False

    def _queue_one(self, sample: Sample, now: float, key: int = NO_OWNER) -> None:
        """Queue one valid sample (or count it ``queue_full``, ``wrong_key`` or ``over_budget``),
        recording its seq, IPs and liveness."""
        if not self._admitted(sample.fqdn, "sample", key, now):
            return
        self._stats.received["sample"] += 1
        batch = self._batch
        if batch.room() <= 0:
            self._stats.dropped["sample"]["queue_full"] += 1
            return
        self._inventory.observe(sample.fqdn, sample.seq, sample.ips, key)
        self._nodes.seen(sample.fqdn, now)
        batch.add(sample.fqdn, sample.ts, sample.cpu, sample.ram)

    def _general_message(self, frame: bytes, now: float, key: int = NO_OWNER) -> None:
        """Decode a frame (sent under key number ``key``) with the general decoder: queue a sample,
        apply a node message, or count why it is refused."""
        try:
            message = decode_message(frame, now, self._names, self._inventory.ips_of)
        except InvalidSample as invalid:
            self._stats.refuse(invalid.kind, invalid.reason)
            return
        if type(message) is Sample:
            self._queue_one(message, now, key)  # type: ignore[arg-type]
        else:
            self._node_message(message, now, key)  # type: ignore[arg-type]

    def _node_message(self, message: NodeHello | NodeBye | NodeSnapshot, now: float, key: int = NO_OWNER) -> None:
        """Apply a hello, bye or snapshot to the node registry (and the agent's seq), or count why not."""
        nodes = self._nodes
        kind = _KIND_OF[type(message)]
        if not self._admitted(message.fqdn, kind, key, now):
            return
        try:
            if type(message) is NodeHello:
                # the registry compares the reported pause state with the desired one (re-asserted on a mismatch)
                node = nodes.hello(message.fqdn, message.ips, message.info, now, paused=message.paused)
                self._inventory.observe(message.fqdn, message.seq, node.ips, key)  # one copy of the addresses
                self._vouch(node, key, message.ts - now)
            elif type(message) is NodeBye:
                if not nodes.bye(message.fqdn, now):
                    raise NodeRefused("node_refused", f"bye from unknown node {message.fqdn!r}")
                self._inventory.observe_seq(message.fqdn, message.seq, key)
            else:
                snapshot: NodeSnapshot = message  # type: ignore[assignment]
                node = nodes.record_stats(snapshot.fqdn, snapshot.stats, snapshot.ts, now)
                self._inventory.observe_seq(snapshot.fqdn, snapshot.seq, key)
                self._vouch(node, key, snapshot.ts - now)
        except NodeRefused as refused:
            self._stats.refuse(kind, refused.reason)
            return
        self._stats.accept(kind)


    def _vouch(self, node: Node, key: int, skew: float) -> None:
        """Record on ``node`` what its agent's message showed: its clock's skew and the key owning it."""
        node.clock_skew = skew
        if self._keys is not None and node.owner_key is None:
            node.owner_key = self._keys.key(self._inventory.owner(node.name))


_KIND_OF = {NodeHello: "hello", NodeBye: "bye", NodeSnapshot: "snapshot"}
