"""The embedded store (``--store sqlite``): history, node inventory and crash recovery in one data directory.

Layout of ``DATA_DIR``::

    servertrack.lock      one serve per directory (flock; gone with the process)
    history.sqlite3       minute and hour blocks, nodes, snapshot history (``sqlite_store``)
    log/NNN.log           every applied chunk, in order (``batch_log``)
    checkpoint/           the minute and hour rings at the last checkpoint (``checkpoint``), and after
                          a clean stop the agents' last seqs (``agent_seqs``, taken by the next start)

Every chunk of samples is handed to the log thread before it is applied, and
written at once (``kill -9`` cannot lose what reached the page cache; an
fsync follows within a second). Blocks the rings close go to the store
thread, which writes them to SQLite. Every ``checkpoint_every`` seconds the
log is rotated and the rings' changes since the last checkpoint are copied
on the loop and written by the store thread *after* the blocks queued before
them, so a committed checkpoint never depends on history not yet written.
On start: nodes, then the checkpoint, then the segment before it into the
second ring only (checkpoints leave that ring out), then every chunk after
it, applied again exactly as it was. Writing the blocks a replay closes a
second time replaces them by key: nothing counts twice. The replay tells how far
it is (``replay_progress``: the first chunk, then at most a line a second, then
the totals) to ``report``, stderr by default. After a clean stop the
agents' last seqs come back too, so what they sent while the collector was
down is counted as lost, per agent (not after a crash: see ``agent_seqs``).

The loop never waits on the disk: the two threads do all the I/O; their
queues are bounded, and a failing disk is retried, counted and reported
(``health``), while ingest and the API go on from memory.

What is kept for good (blocks, nodes, snapshots, the agents' last seqs) goes
through a ``history_backend.HistoryBackend``: ``history.sqlite3`` here by
default, or Redis (``redis_store``), with the log and checkpoints still in
the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from ..common.aggregator import Aggregator, join_shared
from ..common.buckets import from_fixed_point
from ..common.errors import ServerTrackError
from ..common.fleet import FleetTable, fleet_table
from ..common.inventory import AgentInventory
from ..common.node_records import decode_node, encode_node
from ..common.nodes import Node, NodeRegistry
from ..common.periods import HOUR_WIDTH, MINUTE_WIDTH, HistoryBlocks
from ..common.seconds import SECOND_SLOTS
from ..common.snapshots import StoredSnapshot, unpack_snapshot
from .agent_seqs import FILE_NAME as AGENT_SEQS_FILE
from .agent_seqs import AgentSeqs
from .batch_log import BatchLog, LogReplay, read_segments
from .checkpoint import CorruptCheckpoint, load_checkpoint, write_checkpoint
from .fleet_directory import check_collector_id, encode_directory, latest_snapshot
from .history_backend import HistoryBackend, SqliteHistory, no_cells
from .live_share import LiveEntries, LiveShare
from .lock import DataDirLock
from .pending import PendingBlocks, merge_pending
from .records import LoggedBatch, SnapshotRecord, StoredCells
from .replay_progress import ReplayProgress
from .worker import STORE_ERRORS, StoreWorker

LOG = logging.getLogger("servertrack.store")
HISTORY_FILE = "history.sqlite3"
SNAPSHOT_SECTIONS = ("cpu", "memory", "swap", "disk_io", "network")
SYNC_EVERY_SECONDS = 1.0
PURGE_EVERY_SECONDS = 60.0
PURGE_STEP = 5_000  # blocks deleted per job: other writes run between two steps
LOG_QUEUE_BYTES = 512 * 1024 * 1024
STORE_QUEUE_BYTES = 512 * 1024 * 1024
CLOSE_TIMEOUT_SECONDS = 30.0
# How long the applier waits for the log to rotate at a checkpoint: an fsync. A log retrying a failing disk
# takes longer; the checkpoint is then finished by a later ``after_apply``, once the rotation is done, so
# ingest never waits for the disk.
ROTATE_WAIT_SECONDS = 0.5
SHARE_PART_PAIRS = 20_000  # (server, bucket) pairs a share reads from the rings between two turns of the loop
SHARE_PART_NODES = 5_000  # nodes a share lists in its directory between two turns of the loop


class StoreUnavailable(ServerTrackError):
    """The data directory cannot be used (locked, unreadable, written by a newer version)."""


RECOVER_ERRORS: tuple[type[Exception], ...] = (ServerTrackError, *STORE_ERRORS)
OPEN_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, ValueError)  # the file or server refused


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of history is kept, in seconds, and how often a node snapshot is kept."""

    minutes: float = 7 * 86_400.0
    hours: float = 400 * 86_400.0
    snapshots: float = 7 * 86_400.0
    snapshot_every: float = 60.0
    checkpoint_every: float = 60.0


@dataclass(slots=True)
class Recovery:
    """What a start found: the checkpoint's rows, chunks replayed, what the log's tail held."""

    checkpoint_rows: int = 0
    replayed_chunks: int = 0
    replayed_samples: int = 0
    rebuilt_second_samples: int = 0
    nodes: int = 0
    torn_bytes: int = 0
    corrupt_segments: int = 0
    dropped_parts: int = 0
    agent_seqs: int = 0  # agents whose last seq came back (after a clean stop; 0 after a crash)
    seconds: float = 0.0


class DurableStore:
    """The SQLite backend of the store interface, for one data directory (see the module's docstring).

    The history (blocks, node records, snapshots, the agents' last seqs) goes
    to a ``HistoryBackend``: ``SqliteHistory`` in the directory unless
    ``open_history`` opens another one (``redis_store``), named ``kind``
    and ``description``; the log and the checkpoints stay in the directory.
    """

    logs_chunks = True

    def __init__(self, directory: Path, retention: Retention = Retention(), clock: Callable[[], float] = time.time,
                 checkpoint_every: float | None = None, open_history: Callable[[str], HistoryBackend] | None = None,
                 kind: str = "sqlite", description: str | None = None,
                 report: Callable[[str], None] | None = None, collector: str | None = None,
                 share_every: float | None = None) -> None:
        """``open_history(collector)`` opens the backend; ``collector``: this collector's id (default: the one
        kept in the directory, made at its first start); ``share_every``: seconds between two shares of the
        live state with the other collectors of a fleet (a backend that can: ``write_share``), None: never."""
        self.directory = Path(directory)
        self._given_collector = collector
        self.collector = ""
        self.share_every = share_every
        self._share: LiveShare | None = None
        self._share_queued = False
        self._next_share = 0.0
        self._directory: tuple[FleetTable, float, dict[int, list[str]], np.ndarray] | None = None
        self._record_at: dict[str, float] = {}  # when each node's record was last saved (a fleet's directory)
        self._snapshot_shared: dict[str, float | None] = {}  # the snapshot each node last shared was taken at
        self.shares = 0
        self._report = report if report is not None else report_on_stderr
        self.kind = kind
        self.description = description if description is not None else f"{kind}:{self.directory}"
        self._open_history: Callable[[str], Any] = open_history if open_history is not None \
            else self._open_sqlite
        self.retention = retention
        self.checkpoint_every = retention.checkpoint_every if checkpoint_every is None else checkpoint_every
        self.recovery = Recovery()
        self.refused_nodes = 0
        self._clock = clock
        self._lock = DataDirLock(self.directory)
        self._history: Any = None  # a HistoryBackend once open
        self._log: BatchLog | None = None
        self._log_worker: StoreWorker | None = None
        self._store_worker: StoreWorker | None = None
        self._aggregator: Aggregator | None = None
        self._nodes: NodeRegistry | None = None
        self._inventory: AgentInventory | None = None
        self._next_chunk = 1
        self._log_dirty = False
        self._last_logged: Future[Any] | None = None  # the log's job for the last chunk
        self._last_sync = 0.0
        self._next_checkpoint = 0.0
        self._next_purge = 0.0
        self._next_snapshots = 0.0
        self._snapshot_seen: dict[str, float] = {}
        self._checkpointing = False
        self._rotating: Future[Any] | None = None  # a checkpoint's log rotation not done yet
        self.pending = PendingBlocks()
        self.checkpoints = 0
        self.checkpoint_bytes = 0
        self.checkpointed_chunk = 0  # chunks before this id are in the last committed checkpoint

    # ---------------------------------------------------------------- start

    def open(self) -> None:
        """Create and lock the data directory and open the database (blocking: before serving)."""
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreUnavailable(f"cannot use data directory {self.directory}: it is not a directory")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as error:
            raise StoreUnavailable(f"cannot use data directory {self.directory}: {error.strerror or error}") from None
        try:
            self.collector = collector_id(self.directory, self._given_collector)
            self._history = self._open_history(self.collector)
            if self.share_every is not None and hasattr(self._history, "write_share"):
                self._share = LiveShare()
            self._log = BatchLog(self.directory / "log")
        except ServerTrackError:
            self._lock.release()
            raise
        except OPEN_ERRORS as error:  # a bug (any other exception) still shows its traceback
            self._lock.release()
            raise StoreUnavailable(f"cannot open the store in {self.directory}: {error}") from None

    def _open_sqlite(self, collector: str) -> HistoryBackend:
        return SqliteHistory(self.directory / HISTORY_FILE, self.directory / "checkpoint" / AGENT_SEQS_FILE)

    def recover(self, aggregator: Aggregator, nodes: NodeRegistry,
                inventory: AgentInventory | None = None) -> Recovery:
        """Bring ``aggregator`` and ``nodes`` (both fresh) back to where the last run left them, and the
        agents' last seqs into ``inventory`` when the last run stopped cleanly (``close`` keeps them for the
        next start); then start the writer threads. Blocking: the service calls it before it serves.
        ``StoreUnavailable`` (and the directory unlocked) when what is there cannot be read: a newer
        format, a damaged checkpoint."""
        try:
            return self._recover(aggregator, nodes, inventory)
        except RECOVER_ERRORS as error:
            self._release()
            if isinstance(error, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot recover the store in {self.directory}: {error}") from None

    def _recover(self, aggregator: Aggregator, nodes: NodeRegistry, inventory: AgentInventory | None) -> Recovery:
        assert self._history is not None and self._log is not None, "open() first"
        started = time.perf_counter()
        self._aggregator, self._nodes, self._inventory = aggregator, nodes, inventory
        recovery = self.recovery
        self._restore_seqs(inventory)
        restored: list[Node] = []
        for name, record in self._history.load_nodes():
            try:
                restored.append(decode_node(record))
            except ValueError as error:
                LOG.warning("store: skipped the record of node %r: %s", name, error)
        nodes.restore(restored)
        nodes.take_changed()
        recovery.nodes = len(restored)
        try:
            info = load_checkpoint(self.directory / "checkpoint", aggregator)
        except CorruptCheckpoint as error:
            raise StoreUnavailable(str(error)) from None
        first_segment, first_chunk = (info.log_segment, info.next_chunk) if info is not None else (0, 1)
        self.checkpointed_chunk = first_chunk
        recovery.checkpoint_rows = info.rows if info is not None else 0
        replay = LogReplay()
        closed: list[HistoryBlocks] = []
        self._next_chunk = first_chunk
        log_directory = self.directory / "log"
        after = list(read_segments(log_directory, first_segment, replay)) if info is not None else []
        if info is not None:
            # The second ring (not checkpointed) from the segment before: only the samples of its last
            # minute, counted back from the newest second the log holds.
            newest = max([int(batch.seconds.max()) for batch in after if batch.names] + [int(info.written_at)])
            self._rebuild_seconds(aggregator, read_segments(log_directory, first_segment - 1, LogReplay()),
                                  first_chunk, newest - SECOND_SLOTS)
        else:
            after = list(read_segments(log_directory, 0, replay))
        progress = ReplayProgress(sum(len(batch.names) for batch in after if batch.batch_id >= first_chunk),
                                  self._report, started=started)
        for batch in after:
            if batch.batch_id < first_chunk:
                continue  # applied before the checkpoint copied the rings (its rotation was late): in it already
            cpu, ram = from_fixed_point(batch.cpu_fixed), from_fixed_point(batch.ram_fixed)
            aggregator.apply(batch.names, batch.seconds.astype(np.float64), cpu, ram, chunk_id=batch.batch_id,
                             now=batch.applied_at)
            closed.extend(aggregator.take_closed())
            recovery.replayed_chunks += 1
            recovery.replayed_samples += len(batch.names)
            self._next_chunk = max(self._next_chunk, batch.batch_id + 1)
            progress.advance(len(batch.names))  # per chunk: a clock read, at most a line a second
        del after
        recovery.torn_bytes, recovery.corrupt_segments = replay.torn_bytes, replay.corrupt_segments
        # deltas of chunks after the last one replayed came from chunks the log lost: their samples are gone
        # from the windows, so they go from the history too (later chunks reuse those ids)
        recovery.dropped_parts = self._history.drop_parts_after(self._next_chunk - 1)
        # Blocks the replay closed may be on disk already (same keys): write them now, before serving, so a
        # read never sees one both stored and pending.
        for blocks in closed:
            self._history.write_blocks(blocks)
        progress.finish()
        self._start_workers()
        now = self._clock()
        if self._share is not None:
            aggregator.start_sharing()
        self._next_checkpoint = now + self.checkpoint_every
        self._next_purge = now
        self._next_snapshots = now + self.retention.snapshot_every
        recovery.seconds = time.perf_counter() - started
        return recovery

    def _restore_seqs(self, inventory: AgentInventory | None) -> None:
        """The agents' seqs the last clean stop kept, into ``inventory``; the file goes either way (a crash
        after this start must not find seqs older than what its log replays)."""
        try:
            kept = self._history.take_agent_seqs()
        except ValueError as error:
            LOG.warning("store: the agents' last seqs are not used (%s): the gap of this restart is not counted",
                        error)
            return
        if kept is not None and inventory is not None:
            self.recovery.agent_seqs = inventory.restore_seqs(kept.names, kept.seqs, kept.lost)

    def _rebuild_seconds(self, aggregator: Aggregator, batches: Iterable[LoggedBatch], first_chunk: int,
                         oldest_second: int) -> None:
        """Add the samples of seconds from ``oldest_second`` on, of the chunks before ``first_chunk``, to the
        second ring only."""
        for batch in batches:
            if batch.batch_id >= first_chunk:
                break
            recent = np.flatnonzero(batch.seconds >= oldest_second)
            if recent.size == 0:
                continue
            names = batch.names if recent.size == len(batch.names) else [batch.names[i] for i in recent.tolist()]
            aggregator.apply_seconds(names, batch.seconds[recent], from_fixed_point(batch.cpu_fixed[recent]),
                                     from_fixed_point(batch.ram_fixed[recent]))
            self.recovery.rebuilt_second_samples += int(recent.size)

    def _start_workers(self) -> None:
        self._log_worker = StoreWorker("log", LOG_QUEUE_BYTES)
        self._store_worker = StoreWorker("history", STORE_QUEUE_BYTES)

    # ---------------------------------------------------------------- on the loop, per chunk and per second

    def new_chunk_id(self) -> int:
        """The id of the next chunk to apply (ids go on across restarts)."""
        chunk_id = self._next_chunk
        self._next_chunk += 1
        return chunk_id

    def log_chunk(self, batch: LoggedBatch) -> None:
        """Queue a chunk for the log, before it is applied."""
        assert self._log_worker is not None and self._log is not None
        log = self._log
        size = batch.seconds.nbytes * 2 + 64 * len(batch.names)
        self._last_logged = self._log_worker.submit(lambda: log.append(batch), size)
        self._log_dirty = True

    def write_history(self, blocks: list[HistoryBlocks]) -> None:
        """Queue closed blocks for the database."""
        assert self._store_worker is not None and self._history is not None
        history, logged, pending = self._history, self._last_logged, self.pending
        for block in blocks:
            if self._share is not None:  # its base replaces the live cells shared of it: none may come after
                bases = block.parts == 0
                self._share.closed([name for name, base in zip(block.names, bases.tolist()) if base], block.width,
                                   block.periods[bases])
            def write(block: HistoryBlocks = block) -> None:
                _wait_until_logged(logged)
                pending.written(block, history.write_blocks)

            pending.add(block)
            if self._store_worker.submit(write, block.samples.nbytes * 9 + 64 * len(block.names)) is None:
                pending.forget(block)  # refused (the queue is full): counted, and never pending forever

    async def after_apply(self, now: float) -> None:
        """The once-a-second duties after a batch was applied: nodes changed, the log's fsync, and when due
        snapshot history, retention and a checkpoint."""
        assert self._log_worker is not None and self._store_worker is not None and self._nodes is not None
        changed = self._nodes.take_changed()
        if changed:
            self._save_nodes((name, node) for name, node in changed)
        if self._log_dirty and now - self._last_sync >= SYNC_EVERY_SECONDS:
            log = self._log
            assert log is not None
            self._log_worker.submit(log.sync)
            self._log_dirty = False
            self._last_sync = now
        if self._share is not None and now >= self._next_share:
            assert self.share_every is not None
            self._next_share = now + self.share_every
            await self._share_live(now)
        if now >= self._next_snapshots:
            self._next_snapshots = now + self.retention.snapshot_every
            self._keep_snapshots()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_SECONDS
            self._purge(now)
        if self._rotating is not None and not self._checkpointing:
            await self.checkpoint(0.0)  # the one whose rotation the log was behind with, if it is done now
        elif now >= self._next_checkpoint and not self._checkpointing:
            self._next_checkpoint = now + self.checkpoint_every
            await self.checkpoint(ROTATE_WAIT_SECONDS)

    async def _share_live(self, now: float) -> None:
        """Queue a share of the live state: what the applies since the last one touched (read in parts of
        ``SHARE_PART_PAIRS``, ~3 ms each), and the directory (see ``fleet_directory``). One share waits in the
        queue at most; it takes what is there when it runs."""
        assert self._share is not None and self._aggregator is not None and self._nodes is not None
        assert self._store_worker is not None
        parts = []
        for part in self._aggregator.shared_parts(SHARE_PART_PAIRS):  # no apply runs until the last part
            parts.append(part)
            await asyncio.sleep(0)  # between parts, what waits on the loop goes first
        self._share.add(join_shared(parts))
        table = fleet_table(self._aggregator, self._nodes, now)
        node_ips: dict[int, list[str]] = {}
        record_at = np.zeros(len(table.names))
        entries = np.flatnonzero(table.is_node).tolist()
        for start in range(0, len(entries), SHARE_PART_NODES):
            if start:
                await asyncio.sleep(0)  # ~3 ms a part: 50,000 agents' nodes would hold the loop ~35 ms
            for index in entries[start:start + SHARE_PART_NODES]:
                node = self._nodes.get(table.names[index])
                if node is not None:
                    node_ips[index] = node.ips
                    record_at[index] = self._record_at.get(node.name, node.registered)
                    if node.snapshot is not None and node.snapshot_ts != self._snapshot_shared.get(node.name):
                        self._snapshot_shared[node.name] = node.snapshot_ts
                        self._share.add_snapshot(node.name, latest_snapshot(node.snapshot_ts or now, node.snapshot))
        self._directory = (table, now, node_ips, record_at)  # encoded by the worker: a share costs the loop little
        if self._share_queued:
            return
        live, history, collector = self._share, self._history, self.collector
        taken: list[tuple[LiveEntries, bytes | None, int]] = []

        def share() -> None:
            if not taken:  # a retry writes what the first attempt took; later cells wait for the next share
                self._share_queued = False
                assert self._directory is not None
                table, at, node_ips, record_at = self._directory
                ips = [node_ips.get(index, []) for index in range(len(table.names))] if node_ips else None
                taken.append((live.take(), encode_directory(table, collector, at, ips, record_at), len(table.names)))
            history.write_share(*taken[0])
            self.shares += 1

        self._share_queued = self._store_worker.submit(share, 64 * len(table.names)) is not None

    def _save_nodes(self, changed: Iterable[tuple[str, Node | None]]) -> None:
        assert self._store_worker is not None and self._history is not None
        records = [(name, None if node is None else encode_node(node)) for name, node in changed]
        if self._share is not None:  # the directory says when a record changed: the others read it again
            now = self._clock()
            for name, _ in records:
                self._record_at[name] = now
        history = self._history
        self._store_worker.submit(lambda: history.save_nodes(records), sum(len(r or b"") for _, r in records))

    def ask_control(self, node: str, paused: bool) -> bool:
        """Ask the fleet's collector that holds ``node`` (``*``: all of them) to pause or resume it, through
        the store (written by the store's worker); False if this store is not a fleet's or the queue is full."""
        if self._share is None or self._store_worker is None:
            return False
        history = self._history
        return self._store_worker.submit(lambda: history.ask_control(node, paused), 128) is not None

    def _keep_snapshots(self) -> None:
        """Queue the snapshots that arrived since the last time, one per node (decoded on the store thread)."""
        assert self._nodes is not None and self._store_worker is not None and self._history is not None
        taken: list[tuple[str, float, StoredSnapshot]] = []
        seen = self._snapshot_seen
        for node in self._nodes.all_nodes():
            if node.snapshot is not None and node.snapshot_ts is not None and node.snapshot_ts > seen.get(node.name, 0):
                seen[node.name] = node.snapshot_ts
                taken.append((node.name, node.snapshot_ts, node.snapshot))
        if len(seen) > 2 * max(1, len(self._nodes)):  # forget nodes that are gone
            self._snapshot_seen = {node.name: seen[node.name] for node in self._nodes.all_nodes() if node.name in seen}
        if not taken:
            return
        history = self._history

        def write() -> None:
            history.write_snapshots([snapshot_record(name, ts, stored) for name, ts, stored in taken])

        self._store_worker.submit(write, sum(stored.size for _, _, stored in taken))

    def _purge(self, now: float) -> None:
        """Queue retention, in steps, so other writes run between them."""
        assert self._store_worker is not None and self._history is not None
        history, worker = self._history, self._store_worker
        if not history.purges:
            return  # its keys expire by themselves (a job without I/O would also read as "ok" while failing)
        cutoffs = [(MINUTE_WIDTH, int((now - self.retention.minutes) // 3600)),
                   (HOUR_WIDTH, int((now - self.retention.hours) // 86_400))]
        snapshots_before = int(now - self.retention.snapshots)

        def step() -> None:
            deleted = sum(history.purge(width, before, PURGE_STEP) for width, before in cutoffs)
            deleted += history.purge_snapshots(snapshots_before, PURGE_STEP)
            if deleted:
                worker.submit(step)

        worker.submit(step)

    async def checkpoint(self, wait: float | None = None) -> None:
        """Rotate the log, copy the rings' changes, and have them written after the history queued before.

        When the log has not rotated within ``wait`` seconds (None: however long it takes) the checkpoint
        is left half done: the next call copies the rings once the rotation is done. Chunks applied in
        between are then in both the checkpoint and the new segment; a restart skips those (their ids are
        below the checkpoint's ``next_chunk``), so nothing counts twice."""
        assert self._log_worker is not None and self._store_worker is not None and self._log is not None
        assert self._aggregator is not None and self._nodes is not None and self._history is not None
        self._checkpointing = True
        try:
            log = self._log
            if self._rotating is None:
                self._rotating = self._log_worker.submit(log.rotate)
                if self._rotating is None:
                    return
            rotated = self._rotating
            if not rotated.done():
                if wait == 0.0:
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(rotated)), wait)
                except TimeoutError:
                    return  # the log is behind (retrying a failing disk): finished by a later call
            self._rotating = None
            segment = rotated.result()
            changes = self._aggregator.export_changes()
            node_records = [(node.name, encode_node(node)) for node in self._nodes.all_nodes()]
            next_chunk, written_at = self._next_chunk, self._clock()
            directory, history, log_worker = self.directory / "checkpoint", self._history, self._log_worker

            def write() -> None:
                history.save_nodes(node_records)
                self.checkpoint_bytes += write_checkpoint(directory, changes, segment, next_chunk, written_at)
                self.checkpoints += 1
                self.checkpointed_chunk = next_chunk
                history.forget_parts_before(next_chunk)
                # keep the segment before the checkpoint's: a restart rebuilds the second ring from it
                log_worker.submit(lambda: log.delete_before(segment - 1))

            size = sum(stripe.nbytes for ring in changes.rings.values() for stripe in ring.stripes.values())
            done = self._store_worker.submit(write, size)
            if done is None:
                # the changes copied are lost with this checkpoint: the next one must carry them again
                for name, ring in self._aggregator.named_rings().items():
                    ring.dirty[changes.rings[name].slots] = True
        except Exception:
            LOG.exception("store: checkpoint failed")
        finally:
            self._checkpointing = False

    # ---------------------------------------------------------------- stop

    async def close(self) -> None:
        """A last checkpoint, then everything queued written, the log synced and the directory unlocked."""
        if self._log_worker is None or self._store_worker is None:
            self._release()
            return
        await self.checkpoint(CLOSE_TIMEOUT_SECONDS)
        if self._rotating is not None:
            LOG.error("store: no last checkpoint: the log did not rotate within %.0f s (%s); a restart replays "
                      "the log", CLOSE_TIMEOUT_SECONDS, self._log_worker.last_error or "busy")
        log, history = self._log, self._history
        assert log is not None and history is not None
        self._log_worker.submit(log.sync)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._store_worker.close, CLOSE_TIMEOUT_SECONDS)
        await loop.run_in_executor(None, self._log_worker.close, CLOSE_TIMEOUT_SECONDS)
        self._log_worker = self._store_worker = None
        if self._inventory is not None:
            await loop.run_in_executor(None, self._keep_seqs, self._inventory.export_seqs())
        self._release()

    def _keep_seqs(self, seqs: tuple[list[str], np.ndarray, np.ndarray]) -> None:
        """Write the agents' last seqs for the next start (the last thing a clean stop writes)."""
        try:
            self._history.keep_agent_seqs(AgentSeqs(*seqs))
        except STORE_ERRORS as error:
            LOG.error("store: the agents' last seqs were not kept (%s): the next start will not count the gap",
                      error)

    def _release(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            except OSError as error:
                LOG.error("store: closing the log failed: %s", error)
            self._log = None
        if self._history is not None:
            self._history.close()
            self._history = None
        self._lock.release()

    # ---------------------------------------------------------------- reading and health

    def open_reader(self) -> Any:
        """A reader of the history for one thread: the database (its own read-only connection) and the
        blocks queued for it but not written yet."""
        assert self._history is not None
        return HistoryView(self._history.reader(), self.pending)

    def health(self) -> dict[str, Any]:
        """``{"store": "ok" | "failing", ...}`` and the counters ``/stats`` shows."""
        workers = [worker for worker in (self._log_worker, self._store_worker) if worker is not None]
        failing = any(worker.failing for worker in workers)
        body: dict[str, Any] = {
            "store": "failing" if failing else "ok",
            "backend": self.kind,
            "data_dir": str(self.directory),
            **({} if self.kind == "sqlite" else {"url": self.description}),  # a Redis store: where, no password
            **({"collector": self.collector, "shares": self.shares, "unshared_cells": len(self._share)}
               if self._share is not None else {}),
            "checkpoints": self.checkpoints,
            "checkpointed_chunk": self.checkpointed_chunk,
            "checkpoint_bytes": self.checkpoint_bytes,
            "recovery": {"checkpoint_rows": self.recovery.checkpoint_rows,
                         "replayed_chunks": self.recovery.replayed_chunks,
                         "replayed_samples": self.recovery.replayed_samples,
                         "torn_bytes": self.recovery.torn_bytes,
                         "corrupt_segments": self.recovery.corrupt_segments,
                         "dropped_parts": self.recovery.dropped_parts,
                         "agent_seqs": self.recovery.agent_seqs,
                         "seconds": round(self.recovery.seconds, 3)},
        }
        for worker in workers:
            body[worker.name] = {"failures": worker.failures, "refused": worker.refused, "queued_jobs": worker.pending(),
                                 "queued_bytes": worker.queued_bytes, "last_error": worker.last_error or None}
        if self._log is not None:
            body["log"].update(bytes_written=self._log.bytes_written, fsyncs=self._log.fsyncs)
        return body


class HistoryView:
    """One thread's reads: the database and the pending blocks, seen together (see ``pending``)."""

    def __init__(self, reader: Any, pending: PendingBlocks) -> None:
        self._reader = reader
        self._pending = pending

    def read_cells(self, name: str, width: int, first_bucket: int, count: int) -> StoredCells:
        """The merged buckets of ``name``: what is stored, with what is queued applied on top."""
        with self._pending.reading():
            stored = self._reader.read_cells(name, width, first_bucket, count)
            pending = self._pending.of(name, width)
        return merge_pending(stored, pending) if pending else stored

    def read_range(self, name: str, width: int, first_bucket: int, count: int) -> StoredCells | None:
        """The merged buckets of ``name``: what is stored, with what is queued applied on top; None when
        the history does not know ``name`` (neither stored nor pending)."""
        with self._pending.reading():
            stored = self._reader.read_range(name, width, first_bucket, count)
            pending = self._pending.of(name, width)
            known = stored is not None or bool(pending) or bool(self._pending.of(name, 3600 if width == 60 else 60))
        if not known:
            return None
        if stored is None:
            stored = no_cells(first_bucket, width, count)
        return merge_pending(stored, pending) if pending else stored

    def read_split(self, name: str, width: int, first_bucket: int, count: int
                   ) -> tuple[StoredCells, StoredCells] | None:
        """For a store shared by a fleet: ``read_range``, and the same without this collector's own parts
        (what its rings hold already; see ``redis_store.RedisReads.read_split``)."""
        return self.read_fleet(name, [(width, first_bucket, count)], seconds=False)[0][0]

    def read_fleet(self, name: str, spans: list[tuple[int, int, int]], seconds: bool = True
                   ) -> tuple[list[tuple[StoredCells, StoredCells] | None], list[tuple[int, int, int, int]]]:
        """``read_split`` of each ``(width, first_bucket, count)`` and (``seconds``) the seconds the other
        collectors shared, in one read; the blocks queued for the store merged into the first of each pair."""
        with self._pending.reading():
            splits, shared = self._reader.read_fleet(name, spans, self._reader.collector, seconds)
            pending = [self._pending.of(name, width) for width, _, _ in spans]
        merged: list[tuple[StoredCells, StoredCells] | None] = []
        for (width, first_bucket, count), split, queued in zip(spans, splits, pending):
            if split is None:
                if not queued:
                    merged.append(None)
                    continue
                split = (no_cells(first_bucket, width, count), no_cells(first_bucket, width, count))
            stored, others = split
            merged.append(((merge_pending(stored, queued) if queued else stored), others))
        return merged, shared

    def read_directories(self) -> list[tuple[str, bytes]]:
        """The other collectors' directories (``fleet_directory``)."""
        directories: list[tuple[str, bytes]] = self._reader.read_directories()
        return directories

    def read_node_records(self, names: list[str]) -> list[tuple[str, bytes | None]]:
        """The node records of ``names`` as their collectors keep them."""
        records: list[tuple[str, bytes | None]] = self._reader.read_node_records(names)
        return records

    def read_latest_snapshot(self, node: str) -> bytes | None:
        """The newest snapshot another collector shared of ``node``."""
        record: bytes | None = self._reader.read_latest_snapshot(node)
        return record

    def read_controls(self) -> list[tuple[str, bool, float, str]]:
        """The pause/resume requests waiting for the collectors of the fleet."""
        requests: list[tuple[str, bool, float, str]] = self._reader.read_controls()
        return requests

    def read_snapshots(self, node: str, start: int, stop: int, limit: int) -> list[tuple[int, bytes]]:
        """Kept snapshots of ``node`` (see ``SqliteStore.read_snapshots``)."""
        rows: list[tuple[int, bytes]] = self._reader.read_snapshots(node, start, stop, limit)
        return rows


def _wait_until_logged(logged: Future[Any] | None) -> None:
    """Wait until the chunk that closed some blocks is in the log, before they are written: history on
    disk never holds a sample a restart would not apply again (what a kill took from the log, it took
    from the history too)."""
    if logged is not None:
        with contextlib.suppress(Exception):  # refused or given up: nothing to wait for
            logged.result()


def snapshot_record(name: str, ts: float, stored: StoredSnapshot) -> SnapshotRecord:
    """The numeric sections of a stored snapshot, as the snapshot history keeps them."""
    stats = unpack_snapshot(stored)
    sections = {key: stats[key] for key in SNAPSHOT_SECTIONS if key in stats}
    return SnapshotRecord(name, int(ts), msgpack.packb(sections))


def report_on_stderr(line: str) -> None:
    """Write one line of the start's progress to stderr (the service's log), at once."""
    print(f"servertrack: {line}", file=sys.stderr, flush=True)


COLLECTOR_ID_FILE = "collector-id"


def collector_id(directory: Path, given: str | None) -> str:
    """This collector's id: ``given`` (kept in ``directory`` for the next start), else the one kept there,
    else a new random one kept there. ``StoreUnavailable`` for a file that holds no id."""
    path = directory / COLLECTOR_ID_FILE
    if given is not None:
        check_collector_id(given)
        if not path.exists() or path.read_text().strip() != given:
            path.write_text(given + "\n")
        return given
    if path.exists():
        text = path.read_text().strip()
        try:
            return check_collector_id(text)
        except ValueError as error:
            raise StoreUnavailable(f"cannot use {path}: {error}") from None
    made = "c-" + secrets.token_hex(4)
    path.write_text(made + "\n")
    return made


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/servertrack``, else ``~/.local/share/servertrack``."""
    environ = dict(os.environ) if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "servertrack"

