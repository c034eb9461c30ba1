"""The monitoring service: collector (ingest and control sockets), aggregator and HTTP API on one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import zmq
import zmq.asyncio

from .api import ServiceMetrics, make_app
from .api.http_pressure import HttpPressure
from .api.server_gauges import ServerGauges
from .api.access_tokens import AccessTokens
from .api.http_server import GuardedHTTPServer, HttpLimits, raise_descriptor_limit
from .collector.agent_trust import AgentTrust, TrustError
from .api.tls import TlsSetupError, server_tls_context
from .collector.applier import BatchApplier
from .collector.control import ControlChannel, open_control_socket
from .collector.ingest import IngestReader, open_ingest_socket
from .common.agent_keys import AgentKeys
from .common.aggregator import Aggregator
from .common.batch import PendingBatch
from .common.errors import ServerTrackError
from .common.inventory import AgentInventory
from .common.nodes import NodeRegistry
from .api.request_policy import RequestPolicy
from .common.protocol import NameCache, name_cache_limit
from .common.settings import MIB, ServeSettings, control_endpoint_for
from .common.control_messages import ALL_NODES
from .common.snapshots import SnapshotBudget
from .common.stats import IngestStats
from .collection import collect_and_freeze, keep_collected
from .keys import KeyFileError, read_key_pair
from .memory import limit_heap_retention
from .shutdown import stop_on_signals
from .store import LoadHistory, Retention, make_store

SHUTDOWN_GRACE_SECONDS = 1.0
GIL_SWITCH_SECONDS = 0.0005

_log = logging.getLogger("servertrack.service")


class StartupError(ServerTrackError):
    """The service could not bind its HTTP port, ingest socket or control socket."""


class Monitor:
    """All shared state of one monitoring process, wired together (no I/O until ``start``)."""

    def __init__(self, settings: ServeSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        retention = Retention(minutes=settings.keep_minutes, hours=settings.keep_hours,
                              snapshots=settings.keep_snapshots, snapshot_every=settings.snapshot_every,
                              checkpoint_every=settings.checkpoint_every)
        self.store = make_store(settings.store, settings.data_dir, retention, clock, settings.store_password,
                                settings.store_ca, settings.collector_id, settings.share_every)
        # the rings hand the hours and days they close to a store that keeps them
        self.aggregator = Aggregator(settings.max_servers, clock=clock, closing=self.store.logs_chunks)
        self.batch = PendingBatch()
        self.inventory = AgentInventory(settings.max_servers, frame_budget=settings.agent_budget)
        # CURVE ingest: the allowed agents' keys, numbered (None: plain ingest, every sender trusted)
        self.agent_keys = AgentKeys() if settings.curve_secret is not None else None
        self.stats = IngestStats()
        # every cache keyed by what clients send is bounded by the server cap
        self.names = NameCache(name_cache_limit(settings.max_servers))
        # Pause and resume: the registry keeps each node's desired state and hands a node whose agent
        # disagrees (in a hello) to the channel, which publishes it again.
        self.control = ControlChannel(clock)
        self.nodes = NodeRegistry(settings.max_servers, clock, offline_after=settings.offline_after,
                                  budget=SnapshotBudget(total=settings.snapshot_memory_mib * MIB),
                                  on_mismatch=self.control.reassert, on_remove=self.inventory.release)
        # requests go first: bulk work on the loop steps aside while HTTP work waits
        self.pressure = HttpPressure()
        self.metrics = ServiceMetrics()  # GET /metrics: the applier observes each batch's time in it
        self.applier = BatchApplier(self.batch, self.aggregator, self.inventory, self.stats, clock=clock,
                                    nodes=self.nodes, store=self.store, http_waiting=self.pressure.waiting,
                                    on_applied=self.metrics.observe_batch)
        kept_for = {60: retention.minutes, 3600: retention.hours} if self.store.logs_chunks else None
        # every serve on one Redis store is a collector of one fleet (see store.fleet_directory)
        self.fleet = getattr(self.store, "kind", "") in ("redis", "redis+cluster")
        self.history = LoadHistory(self.aggregator, self.nodes, self.store.open_reader, kept_for, clock,
                                   fleet=self.fleet)
        self.nodes.fleet = self.history.mirror  # the registry answers for the others' nodes too (read-only)
        tokens = AccessTokens.of(settings.write_token, settings.read_token)
        policy = RequestPolicy.for_listener(settings.host, settings.allowed_hosts, tokens)
        self.app = make_app(self.aggregator, self.batch, self.inventory, self.stats, self.names, clock, self.nodes,
                            policy, control=self.control, history=self.history, metrics=self.metrics)
        self.app.settings["store"] = self.store
        if settings.export_servers:
            self.metrics.add_text(ServerGauges(self.aggregator, settings.export_servers).exposition)
        self.http_url = ""
        self.ingest_endpoint = ""
        self.control_endpoint = ""
        self._context: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._control_socket: zmq.asyncio.Socket | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.trust: AgentTrust | None = None
        self._tls: ssl.SSLContext | None = None
        self.recovery: object = None

    async def start(self) -> None:
        """Bind the ingest and control sockets and the HTTP port, and start the reader and applier tasks.

        The control address defaults to the port after the ingest port (any
        free port when the ingest port is any free port); ``control_endpoint``
        tells the one bound.
        """
        limit_heap_retention()
        # The store's threads (log, writer, range readers) take the GIL back after each disk call; with
        # the default 5 ms switch interval a range read that hops to its thread a few times waited
        # 5 ms per hop behind the busy loop.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        if self.settings.tls_cert is not None and self.settings.tls_key is not None:
            try:
                self._tls = server_tls_context(self.settings.tls_cert, self.settings.tls_key)
            except TlsSetupError as error:
                raise StartupError(str(error)) from None
        try:
            self.store.open()
            self.recovery = self.store.recover(self.aggregator, self.nodes, self.inventory)
        except ServerTrackError as error:
            raise StartupError(str(error)) from None
        try:
            await self._bind()
        except StartupError:
            await self.store.close()
            raise
        collect_and_freeze()  # what start and recovery built lives as long as the process

    @property
    def store_description(self) -> str:
        """The store as the ready line names it: ``memory``, ``sqlite:DIR`` or the Redis URL, without a
        password (``redis://127.0.0.1:6379/0``)."""
        description = getattr(self.store, "description", None)
        return self.store.kind if description is None else str(description)

    def _start_trust(self, context: zmq.asyncio.Context) -> None:
        """CURVE on both sockets with the allowed agents' keys (nothing without ``--curve-secret``)."""
        settings = self.settings
        if settings.curve_secret is None or self.agent_keys is None:
            return
        if settings.allowed_agents is None:
            raise StartupError("--curve-secret needs --allowed-agents DIR (the agents' public keys)")
        try:
            trust = AgentTrust(context, read_key_pair(Path(settings.curve_secret)), Path(settings.allowed_agents),
                               self.agent_keys)
        except (KeyFileError, TrustError) as error:
            raise StartupError(str(error)) from None
        trust.start()
        self.trust = trust
        self.app.settings["curve"] = lambda: {"enabled": True, **trust.counters()}
        self._restore_owners()

    def _restore_owners(self) -> None:
        """Each node's name is owned again by the key that owned it before the restart."""
        assert self.agent_keys is not None
        for node in self.nodes.all_nodes():
            if node.owner_key is not None:
                self.inventory.restore_owner(node.name, self.agent_keys.number(node.owner_key))

    def _secure(self, name: str) -> Callable[[zmq.asyncio.Socket], None] | None:
        return None if self.trust is None else functools.partial(self.trust.secure, name=name)

    async def _bind(self) -> None:
        self._context = zmq.asyncio.Context()
        try:
            self._start_trust(self._context)
            self._socket = open_ingest_socket(self._context, self.settings.ingest, self._secure("ingest"))
        except zmq.ZMQError as error:
            await self._stop_trust()
            self._context.term()
            raise StartupError(f"cannot bind ingest socket {self.settings.ingest}: {error}") from None
        except StartupError:
            await self._stop_trust()
            self._context.term()
            raise
        self.ingest_endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        control = self.settings.control
        try:
            if control is None:
                control = control_endpoint_for(self.settings.ingest)
            self._control_socket = open_control_socket(self._context, control, self._secure("control"))
        except (ValueError, zmq.ZMQError) as error:
            await self._stop_trust()
            self._close_ingest()
            shown = f" {control}" if control is not None else ""
            raise StartupError(f"cannot bind control socket{shown}: {error}") from None
        self.control_endpoint = self._control_socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.control.attach(self._control_socket)
        try:
            sockets = tornado.netutil.bind_sockets(self.settings.port, self.settings.host, family=socket.AF_INET)
        except (OSError, socket.gaierror) as error:
            await self._stop_trust()
            self._close_ingest()
            raise StartupError(f"cannot listen on {self.settings.host}:{self.settings.port}: {error}") from None
        limits = HttpLimits(max_connections=self.settings.max_connections, idle_timeout=self.settings.idle_timeout,
                            body_timeout=self.settings.body_timeout,
                            max_connections_per_client=self.settings.max_connections_per_client,
                            write_timeout=self.settings.write_timeout)
        self._server = GuardedHTTPServer(self.app, limits, descriptor_limit=raise_descriptor_limit(),
                                         pressure=self.pressure, ssl_options=self._tls)
        self.app.settings["http_counters"] = self._server.counters
        self._server.add_sockets(sockets)
        host, port = sockets[0].getsockname()[:2]
        self.http_url = f"{'https' if self._tls is not None else 'http'}://{host}:{port}"
        reader = IngestReader(self._socket, self.batch, self.inventory, self.stats, self.clock, self.names, self.nodes,
                              large_frame_share=self.settings.large_frame_share,
                              http_waiting=self.pressure.waiting, keys=self.agent_keys)
        self._tasks = [asyncio.create_task(reader.run()), asyncio.create_task(self.applier.run()),
                       asyncio.create_task(keep_collected()), asyncio.create_task(self.control.beat())]
        if self.fleet:
            self._tasks.append(asyncio.create_task(self._follow_fleet()))

    async def _follow_fleet(self) -> None:
        """Read the other collectors' directories every ``--share-every`` seconds, and do what the pause and
        resume requests made on them since ask of the nodes this one holds."""
        since = self.clock()
        collector = getattr(self.store, "collector", None)
        while True:
            await self.history.refresh_fleet()
            for node, paused, ts, by in self.history.controls_after(since):
                since = max(since, ts)
                if by == collector:
                    continue
                if node == ALL_NODES:
                    self.nodes.set_all_paused(paused)
                    self.control.publish_all(paused)
                elif (held := self.nodes.get(node)) is not None:
                    self.nodes.set_paused(node, paused)
                    self.control.assert_state(held)
            await asyncio.sleep(self.settings.share_every)

    async def stop(self) -> None:
        """Stop accepting, close connections and sockets, and apply what is still pending."""
        if self._server is not None:
            self._server.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.applier.apply_pending()
        await self._stop_trust()
        self._close_ingest()
        await self.store.close()
        self.history.close()
        self.pressure.close()

    async def _stop_trust(self) -> None:
        if self.trust is not None:
            await self.trust.stop()
            self.trust = None

    def _close_ingest(self) -> None:
        self.control.detach()
        if self._control_socket is not None:
            self._control_socket.close(linger=0)
            self._control_socket = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None


async def serve(
    settings: ServeSettings,
    on_ready: Callable[[Monitor], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the monitoring service until SIGINT/SIGTERM (or ``stop`` is set)."""
    with stop_on_signals(stop if stop is not None else asyncio.Event()) as stopping:
        monitor = Monitor(settings)
        await monitor.start()
        if monitor.trust is None:
            _log.warning("ingest at %s is unauthenticated and unencrypted: any process that reaches it may publish "
                         "samples for any server (start with --curve-secret and --allowed-agents to require keys)",
                         monitor.ingest_endpoint)
        if settings.write_token is None:
            _log.warning("HTTP writes are unauthenticated: anyone who reaches %s can record loads and pause "
                         "nodes (start with --write-token FILE to require a token)", monitor.http_url)
        try:
            if on_ready is not None:
                on_ready(monitor)
            await stopping.wait()
        finally:
            await monitor.stop()
