"""Typed settings, read once from command-line flags and ``SERVERTRACK_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .aggregator import DEFAULT_MAX_SERVERS
from .inventory import DEFAULT_FRAME_BUDGET
from .nodes import DEFAULT_OFFLINE_AFTER_SECONDS
from .snapshots import DEFAULT_TOTAL_SNAPSHOT_BUDGET

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_INGEST = "tcp://127.0.0.1:5556"
# The control channel (collector PUB, agents SUB) defaults to the port after the ingest port.
DEFAULT_CONTROL = "tcp://127.0.0.1:5557"
DEFAULT_INTERVAL = 1.0
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_STATS_EVERY = 5  # samples between two stats snapshots (5 s at the default interval)
DEFAULT_PROCESS_INTERVAL = 15.0  # seconds between two process scans (the costly part of a snapshot)
# agent --failover-after: seconds a collector may be silent before an agent given several moves away;
# at least two of the collector's heartbeats (common.control_messages.HEARTBEAT_SECONDS), at most 10 min
DEFAULT_FAILOVER_AFTER = 3.0
MIN_FAILOVER_AFTER = 1.0
MAX_FAILOVER_AFTER = 600.0
MIB = 1024 * 1024
DEFAULT_SNAPSHOT_MEMORY_MIB = DEFAULT_TOTAL_SNAPSHOT_BUDGET // MIB
# Of one core's CPU time, for decoding frames over 4 KiB (snapshots): ~3,000 typical ones a second
# (10,000 nodes at the default --stats-every 5 take ~0.6), 200 at every bound.
DEFAULT_LARGE_FRAME_SHARE = 0.8
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_IDLE_TIMEOUT = 20.0  # seconds: an idle keep-alive connection, or a request's headers
DEFAULT_BODY_TIMEOUT = 30.0  # seconds to receive a request body
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 256  # open HTTP connections from one IP address
DEFAULT_EXPORTED_SERVERS = 10_000  # serve --export-servers without N: per-server gauges of this many at most
DEFAULT_WRITE_TIMEOUT = 30.0  # seconds to write a response in full (a slow reader is closed)
DAY = 86_400.0
DEFAULT_KEEP_MINUTES = 7 * DAY
DEFAULT_KEEP_HOURS = 400 * DAY
DEFAULT_KEEP_SNAPSHOTS = 7 * DAY
DEFAULT_SNAPSHOT_EVERY = 60.0
DEFAULT_CHECKPOINT_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How ``servertrack serve`` listens."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ingest: str = DEFAULT_INGEST
    # The control PUB bind address; None: derived from ``ingest`` (``control_endpoint_for``).
    control: str | None = None
    max_servers: int = DEFAULT_MAX_SERVERS
    offline_after: float = DEFAULT_OFFLINE_AFTER_SECONDS
    # Host names the API answers to besides IP addresses and localhost ("*": any).
    allowed_hosts: tuple[str, ...] = ()
    snapshot_memory_mib: int = DEFAULT_SNAPSHOT_MEMORY_MIB
    large_frame_share: float = DEFAULT_LARGE_FRAME_SHARE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    # Where history lives: "memory" (nothing on disk; what a service built in code gets unless it asks)
    # or "sqlite" in ``data_dir`` (None: the per-user default). ``servertrack serve`` defaults to sqlite.
    store: str = "memory"
    data_dir: str | None = None
    # for a redis:// or redis+cluster:// store: the password (read from --store-password-file) and the CA
    # file that a rediss:// server's certificate is checked with (None: the system's)
    store_password: str | None = field(default=None, repr=False)
    store_ca: str | None = None
    # a Redis store's fleet: seconds between two shares of the live state, and this collector's id (None:
    # the one kept in data_dir)
    share_every: float = 1.0
    collector_id: str | None = None
    keep_minutes: float = DEFAULT_KEEP_MINUTES
    keep_hours: float = DEFAULT_KEEP_HOURS
    keep_snapshots: float = DEFAULT_KEEP_SNAPSHOTS
    snapshot_every: float = DEFAULT_SNAPSHOT_EVERY
    checkpoint_every: float = DEFAULT_CHECKPOINT_EVERY
    # "asyncio" (the default: uvloop measured no faster here), "uvloop", or "auto" (uvloop if installed)
    event_loop: str = "asyncio"
    # Agent trust: the collector's secret key file (None: plain, unauthenticated ingest) and the directory
    # of the agents' public keys; the frames a second each agent may send, averaged (0: no budget).
    curve_secret: str | None = None
    allowed_agents: str | None = None
    agent_budget: float = DEFAULT_FRAME_BUDGET
    # HTTP trust
    # The tokens themselves (None: no token needed): writes need the write token, reads (if a read
    # token is set) either token; /healthz needs none.
    write_token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    # HTTPS: both files (PEM) or neither.
    tls_cert: str | None = None
    tls_key: str | None = None
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    # GET /metrics: per-server gauges of at most this many servers (0: none; see api.server_gauges)
    export_servers: int = 0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """What ``servertrack agent`` samples and where it publishes."""

    collector: str = DEFAULT_INGEST
    interval: float = DEFAULT_INTERVAL
    name: str | None = None
    stats_every: int = DEFAULT_STATS_EVERY
    process_interval: float = DEFAULT_PROCESS_INTERVAL
    # The collector's control address; None: derived from ``collector`` (``control_endpoint_for``).
    control: str | None = None
    # CURVE: this agent's secret key file and the collector's public key file (None: plain); with several
    # collectors, one key for all of them.
    curve_secret: str | None = None
    collector_key: str | None = None
    # Several collectors: every one's (ingest, control) address, in the order given (empty: just
    # ``collector``), and the seconds one may be silent before the agent moves to another.
    collectors: tuple[tuple[str, str], ...] = ()
    failover_after: float = DEFAULT_FAILOVER_AFTER


_DURATION = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)([smhdw]?)\Z")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY, "": DAY}


def parse_duration(text: str) -> float:
    """Seconds in a duration: a number and a unit, ``s``, ``m``, ``h``, ``d`` or ``w`` (``90s``, ``12h``,
    ``7d``); a bare number is days. ``ValueError`` otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"expected a duration such as 90s, 30m, 12h, 7d or 2w, got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


_TCP_ENDPOINT = re.compile(r"(tcp://.+):(\d{1,5}|\*)\Z")


def control_endpoint_for(endpoint: str, connect: bool = False) -> str:
    """The default control address next to an ingest address: the port after it
    (``tcp://h:5556`` -> ``tcp://h:5557``), any free port for an ingest on any free port (``*`` or
    ``0``), ``ipc://PATH.control`` for ``ipc://PATH``.

    ``connect``: the address is one to connect to (an agent's), where a free port
    cannot be guessed. Raises ``ValueError`` when there is no such default.
    """
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint + ".control"
    match = _TCP_ENDPOINT.match(endpoint)
    if match is None:
        raise ValueError(f"cannot derive a control address from {endpoint!r}: pass --control")
    base, port = match.groups()
    if port == "*" or int(port) == 0:
        if connect:
            raise ValueError(f"cannot derive a control address from {endpoint!r} (any port): pass --control")
        return f"{base}:{port}"
    if int(port) >= 65535:
        raise ValueError(f"cannot derive a control address from {endpoint!r} (no port after {port}): pass --control")
    return f"{base}:{int(port) + 1}"


@dataclass(frozen=True, slots=True)
class EnvironmentDefaults:
    """Defaults for the command-line flags, overridable by ``SERVERTRACK_*`` variables."""

    host: str = DEFAULT_HOST
    port: str = str(DEFAULT_PORT)
    ingest: str = DEFAULT_INGEST
    # SERVERTRACK_CONTROL: the control address for serve (bind) and agent (connect); unset: derived.
    control: str | None = None
    max_servers: str = str(DEFAULT_MAX_SERVERS)
    offline_after: str = str(DEFAULT_OFFLINE_AFTER_SECONDS)
    allowed_hosts: str = ""
    snapshot_memory: str = str(DEFAULT_SNAPSHOT_MEMORY_MIB)
    large_frame_cpu: str = str(DEFAULT_LARGE_FRAME_SHARE)
    max_connections: str = str(DEFAULT_MAX_CONNECTIONS)
    idle_timeout: str = str(DEFAULT_IDLE_TIMEOUT)
    body_timeout: str = str(DEFAULT_BODY_TIMEOUT)
    store: str = "sqlite"
    data_dir: str | None = None
    store_password_file: str | None = None
    store_ca: str | None = None
    share_every: str = "1.0"
    collector_id: str | None = None
    keep_minutes: str = "7d"
    keep_hours: str = "400d"
    keep_snapshots: str = "7d"
    snapshot_every: str = "60s"
    checkpoint_every: str = "60s"
    event_loop: str = "asyncio"
    curve_secret: str | None = None
    allowed_agents: str | None = None
    agent_budget: str = str(DEFAULT_FRAME_BUDGET)
    collector_key: str | None = None
    collector: str = DEFAULT_INGEST
    interval: str = str(DEFAULT_INTERVAL)
    name: str | None = None
    stats_every: str = str(DEFAULT_STATS_EVERY)
    process_interval: str = str(DEFAULT_PROCESS_INTERVAL)
    failover_after: str = str(DEFAULT_FAILOVER_AFTER)
    url: str = DEFAULT_URL
    # HTTP trust
    # SERVERTRACK_WRITE_TOKEN, _READ_TOKEN and _TOKEN (the client's) hold the token itself, unlike the
    # flags (--write-token FILE...), which name a file: a token on a command line shows in ps.
    write_token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    tls_cert: str | None = None
    tls_key: str | None = None
    max_connections_per_client: str = str(DEFAULT_MAX_CONNECTIONS_PER_CLIENT)
    token: str | None = field(default=None, repr=False)
    ca: str | None = None  # SERVERTRACK_CA: the CA file the client commands trust for https://
    write_timeout: str = str(DEFAULT_WRITE_TIMEOUT)
    export_servers: str | None = None  # SERVERTRACK_EXPORT_SERVERS: N, as --export-servers N

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> EnvironmentDefaults:
        """Read ``SERVERTRACK_`` plus each field's name in capitals (``SERVERTRACK_HOST``, ``_PORT``,
        ``_ALLOWED_HOSTS``, ``_MAX_CONNECTIONS``...); unset ones keep the built-in default."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in cls.__dataclass_fields__:
            value = environ.get("SERVERTRACK_" + field.upper())
            if value:
                values[field] = value
        return cls(**values)
