"""The ``servertrack`` command: argument parsing and wiring only (serve, agent, demo, show, top, nodes,
node, pause, resume, keys)."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import ipaddress
import math
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .common.control_messages import HEARTBEAT_SECONDS
from .common.errors import InvalidSample
from .common.nodes import NODE_STATES
from .common.protocol import normalize_name
from .common.rendezvous import chosen_index
from .common.settings import (
    DEFAULT_EXPORTED_SERVERS,
    MAX_FAILOVER_AFTER,
    MIN_FAILOVER_AFTER,
    AgentSettings,
    EnvironmentDefaults,
    ServeSettings,
    control_endpoint_for,
    parse_duration,
)
from .common.tokens import token_problem
from .event_loop import EVENT_LOOPS, loop_factory
from .event_loop import run as run_on_loop

if TYPE_CHECKING:
    from .client import Trust

EXIT_USAGE = 2
_ENDPOINT = re.compile(r"(tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+|\*):(\d{1,5}|\*)|ipc://\S+)\Z")
_URL = re.compile(r"https?://[^\s/]+\Z")


class CommandLineError(Exception):
    """A bad flag or an unusable address: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (``servertrack: error: ...``) and exit code 2.

    Abbreviated flags (``--coll``) are refused: they would break silently when
    a later flag shares the prefix.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(message)


def _whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer (ASCII digits) from ``low`` to ``high``."""
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{what} must be an integer from {low} to {high}, got {text!r}")
        return int(text)
    return parse


def _number(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a number from ``low`` to ``high``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be a number from {low:g} to {high:g}, got {text!r}")
        return value
    return parse


_port = _whole_number(0, 65535, "port")
_positive_int = _whole_number(1, 100_000_000, "the value")
_agent_count = _whole_number(0, 64, "agents")
_sample_count = _whole_number(0, 1_000_000, "samples")
_interval = _number(0.01, 3600.0, "interval (seconds)")
_seconds = _number(0.0, 86_400.0, "seconds")
_timeout = _number(0.1, 3600.0, "timeout (seconds)")
_mebibytes = _whole_number(0, 1_048_576, "MiB")
_core_share = _number(0.0, 1.0, "the share of a core")
_connections = _whole_number(1, 1_000_000, "connections")
_frame_budget = _number(0.0, 1_000_000.0, "frames a second")
_exported_servers = _whole_number(1, 1_000_000, "servers exported")
_refresh = _number(0.1, 3600.0, "interval (seconds)")
_share_every = _number(0.1, 60.0, "--share-every (seconds)")
_failover_after = _number(MIN_FAILOVER_AFTER, MAX_FAILOVER_AFTER, "failover-after (seconds)")
_page = _whole_number(1, 500, "limit")  # GET /fleet's page at most (common.fleet.MAX_LIMIT)
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_HOST_NAME = re.compile(r"(\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?)\Z")


def _collector_id(text: str) -> str:
    """An argparse ``type``: a collector id (``fleet_directory.check_collector_id``)."""
    from .store.fleet_directory import check_collector_id

    try:
        return check_collector_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _duration(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a duration (``90s``, ``12h``, ``7d``; a bare number is days) from ``low`` to
    ``high`` seconds."""
    def parse(text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{what}: {error}") from None
        if not low <= seconds <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low:g} s to {high:g} s, got {text!r}")
        return seconds
    return parse


_retention = _duration(3600.0, 100 * 366 * 86_400.0, "retention")
_cadence = _duration(1.0, 86_400.0, "the period")


def _path(what: str) -> Callable[[str], str]:
    """An argparse ``type``: a path (not empty, no NUL) to ``what`` (a directory, a file)."""
    def parse(text: str) -> str:
        if not text or "\0" in text:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return text
    return parse


_data_dir = _path("a directory")
_file = _path("a file")


def _key_name(text: str) -> str:
    if _KEY_NAME.match(text) is None:
        raise argparse.ArgumentTypeError(f"expected a name of letters, digits, '.', '_' and '-', got {text!r}")
    return text


def _endpoint(text: str) -> str:
    match = _ENDPOINT.match(text)
    if match is None or (match.group(3) not in (None, "*") and int(match.group(3)) > 65535):
        raise argparse.ArgumentTypeError(f"expected tcp://HOST:PORT (or ipc://PATH), got {text!r}")
    return text


MAX_COLLECTORS = 64


def _endpoints(text: str) -> list[str]:
    """An argparse ``type``: one endpoint or several, comma-separated (each checked; none twice)."""
    endpoints = [part.strip() for part in text.split(",")]
    if len(endpoints) > MAX_COLLECTORS:
        raise argparse.ArgumentTypeError(f"at most {MAX_COLLECTORS} addresses, got {len(endpoints)}")
    for endpoint in endpoints:
        _endpoint(endpoint)
    if len(set(endpoints)) != len(endpoints):
        raise argparse.ArgumentTypeError(f"an address is given twice in {text!r}")
    return endpoints


def _server_name(text: str) -> str:
    try:
        return normalize_name(text)
    except InvalidSample as invalid:
        raise argparse.ArgumentTypeError(invalid.message) from None


def _node_id(text: str) -> str:
    try:
        return normalize_name(text)
    except InvalidSample:
        pass
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a node name or an IP address, got {text!r}") from None


def _host_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if _HOST_NAME.match(name) is None:
            raise argparse.ArgumentTypeError(f"expected host names separated by commas (or *), got {name!r}")
    return names


def _url(text: str) -> str:
    if _URL.match(text) is None:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT or https://HOST:PORT, got {text!r}")
    return text


# HTTP trust: a token is read from a file (a command line shows in ps), or taken from SERVERTRACK_*.
_TOKEN_FILE_BYTES = 4096


def _secret_file_bytes(path: str, what: str) -> bytes:
    """The first ``_TOKEN_FILE_BYTES`` + 1 bytes of the ``what`` file ``path`` (one more than a secret may
    take, so an oversized file shows), or an argparse error naming it."""
    try:
        with open(path, "rb") as file:
            return file.read(_TOKEN_FILE_BYTES + 1)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {what} file {path!r}: {error.strerror or error}") from None


def _token_file(path: str) -> str:
    """An argparse ``type``: the token in the file ``path``, whitespace stripped."""
    raw = _secret_file_bytes(path, "token")
    token = raw.decode("latin-1").strip()  # a byte that is not ASCII is refused by token_problem
    if not token:
        raise argparse.ArgumentTypeError(f"token file {path!r} is empty (make one with: openssl rand -hex 32 > FILE)")
    problem = token_problem(token) if len(raw) <= _TOKEN_FILE_BYTES else "the file is too long for a token"
    if problem is not None:
        raise argparse.ArgumentTypeError(f"token file {path!r}: {problem}")
    return token


def _environment_token(value: str | None, variable: str) -> str | None:
    """The token of ``SERVERTRACK_*`` ``variable`` (its value, stripped), checked; None if unset."""
    if value is None or not value.strip():
        return None
    problem = token_problem(value.strip())
    if problem is not None:
        raise CommandLineError(f"{variable}: {problem}")
    return value.strip()


def _store(text: str) -> str:
    """An argparse ``type``: what ``--store`` accepts (``store_url.parse_store``), kept as written."""
    from .store.store_url import parse_store

    try:
        parse_store(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _password_file(path: str) -> str:
    """An argparse ``type``: the first line of the file ``path`` (a password), without its line end."""
    raw = _secret_file_bytes(path, "password")
    if len(raw) > _TOKEN_FILE_BYTES:
        raise argparse.ArgumentTypeError(f"password file {path!r} is too long for a password")
    try:
        password = raw.decode("utf-8").splitlines()[0] if raw.strip() else ""
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"password file {path!r} is not UTF-8 text") from None
    if not password:
        raise argparse.ArgumentTypeError(f"password file {path!r} is empty")
    return password


def _readable_file(path: str) -> str:
    """An argparse ``type``: a file this process can read."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {error.strerror or error}") from None
    return path


def _add_client_flags(command: argparse.ArgumentParser, env: EnvironmentDefaults) -> None:
    """``--url``, ``--token`` and ``--ca``, the flags of every command that talks to the API."""
    command.add_argument("--url", type=_url, default=env.url, help="API base URL (default %(default)s)")
    command.add_argument("--token", type=_token_file, metavar="FILE",
                         help="send the token in FILE as Authorization: Bearer (default: $SERVERTRACK_TOKEN, "
                              "which holds the token itself)")
    command.add_argument("--ca", type=_readable_file, default=env.ca, metavar="FILE",
                         help="trust the CA certificate(s) in FILE (PEM) for an https:// URL (default: the "
                              "system's)")


def build_parser(defaults: EnvironmentDefaults | None = None) -> argparse.ArgumentParser:
    """The full ``servertrack`` parser; flag defaults come from ``SERVERTRACK_*`` variables."""
    env = defaults if defaults is not None else EnvironmentDefaults()
    parser = _Parser(prog="servertrack", description="Fleet-load monitor: agents, collector and HTTP API.")
    parser.add_argument("--version", action="version", version=f"servertrack {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run collector + aggregator + HTTP API")
    serve.add_argument("--host", default=env.host, help="HTTP listen address (default %(default)s)")
    serve.add_argument("--port", type=_port, default=env.port, help="HTTP port, 0 for any (default %(default)s)")
    serve.add_argument("--ingest", type=_endpoint, default=env.ingest, help="ZeroMQ SUB bind address (default %(default)s)")
    serve.add_argument("--control", type=_endpoint, default=env.control,
                       help="ZeroMQ PUB bind address of the control channel (pause/resume; default: the port "
                            "after --ingest's, any free port if --ingest's is)")
    serve.add_argument("--max-servers", type=_positive_int, default=env.max_servers, help="server cap (default %(default)s)")
    serve.add_argument("--offline-after", type=_seconds, default=env.offline_after,
                       help="seconds of silence after which a node is offline (default %(default)s)")
    serve.add_argument("--allowed-hosts", type=_host_names, default=env.allowed_hosts, metavar="NAMES",
                       help="host names the API answers to besides IP addresses and localhost, comma-separated; "
                            "* for any (default: the --host name only)")
    serve.add_argument("--snapshot-memory", type=_mebibytes, default=env.snapshot_memory, metavar="MIB",
                       help="memory for the nodes' latest stats snapshots, all nodes together (default %(default)s)")
    serve.add_argument("--large-frame-cpu", type=_core_share, default=env.large_frame_cpu, metavar="SHARE",
                       help="share of one core for decoding frames over 4 KiB (snapshots); beyond it they "
                            "are dropped unread as overload (default %(default)s)")
    serve.add_argument("--max-connections", type=_connections, default=env.max_connections,
                       help="open HTTP connections at most (lowered to fit the descriptor limit; default %(default)s)")
    serve.add_argument("--idle-timeout", type=_timeout, default=env.idle_timeout, metavar="SECONDS",
                       help="close an idle HTTP connection, or one whose request headers take longer "
                            "(default %(default)s)")
    serve.add_argument("--body-timeout", type=_timeout, default=env.body_timeout, metavar="SECONDS",
                       help="close an HTTP connection whose request body takes longer (default %(default)s)")
    # HTTP trust
    serve.add_argument("--write-token", type=_token_file, metavar="FILE",
                       help="writes (POST, PUT, DELETE, GET /start and /stop) need Authorization: Bearer with "
                            "the token in FILE (default: $SERVERTRACK_WRITE_TOKEN, the token itself; unset: "
                            "writes are open)")
    serve.add_argument("--read-token", type=_token_file, metavar="FILE",
                       help="reads need the token in FILE, or the write token; /healthz stays open "
                            "(default: $SERVERTRACK_READ_TOKEN; unset: reads are open)")
    serve.add_argument("--tls-cert", type=_readable_file, default=env.tls_cert, metavar="FILE",
                       help="serve HTTPS with this certificate chain (PEM); needs --tls-key")
    serve.add_argument("--tls-key", type=_readable_file, default=env.tls_key, metavar="FILE",
                       help="the certificate's private key (PEM, unencrypted); needs --tls-cert")
    serve.add_argument("--max-connections-per-client", type=_connections, default=env.max_connections_per_client,
                       metavar="N", help="open HTTP connections from one IP address at most; more are answered "
                                         "429 (default %(default)s)")
    serve.add_argument("--write-timeout", type=_timeout, default=env.write_timeout, metavar="SECONDS",
                       help="close an HTTP connection whose response is not read in full within this time "
                            "(a slow reader; default %(default)s)")
    serve.add_argument("--export-servers", type=_exported_servers, nargs="?", const=DEFAULT_EXPORTED_SERVERS,
                       default=env.export_servers, metavar="N",
                       help="GET /metrics also shows each server's cpu and ram load (its average over the "
                            f"last 60 s), for the first N servers by name (default N: {DEFAULT_EXPORTED_SERVERS})")
    serve.add_argument("--store", type=_store, default=env.store, metavar="STORE",
                       help="where history lives: sqlite in --data-dir, memory (nothing on disk), "
                            "redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,HOST:PORT,... (rediss:// for "
                            "TLS; the log and checkpoints stay in --data-dir; default %(default)s)")
    serve.add_argument("--store-password-file", type=_password_file, default=env.store_password_file,
                       metavar="FILE", dest="store_password",
                       help="the Redis store's password is the first line of FILE")
    serve.add_argument("--store-ca", type=_readable_file, default=env.store_ca, metavar="FILE",
                       help="trust the CA certificate(s) in FILE (PEM) for a rediss:// store (default: the "
                            "system's)")
    serve.add_argument("--share-every", type=_share_every, default=env.share_every, metavar="SECONDS",
                       help="with a Redis store, every serve on it is a collector of one fleet: share this one's "
                            "live state with the others this often (default %(default)s s)")
    serve.add_argument("--collector-id", type=_collector_id, default=env.collector_id, metavar="ID",
                       help="this collector's name in the fleet (1-32 of a-z 0-9 -; default: one made at the "
                            "first start and kept in --data-dir)")
    serve.add_argument("--data-dir", type=_data_dir, default=env.data_dir, metavar="DIR",
                       help="the store's directory, created on first start (default $XDG_DATA_HOME/servertrack "
                            "or ~/.local/share/servertrack)")
    serve.add_argument("--keep-minutes", type=_retention, default=env.keep_minutes, metavar="DURATION",
                       help="keep minute buckets this long (90m, 12h, 7d, 2w; default %(default)s s)")
    serve.add_argument("--keep-hours", type=_retention, default=env.keep_hours, metavar="DURATION",
                       help="keep hour buckets this long (default %(default)s s)")
    serve.add_argument("--keep-snapshots", type=_retention, default=env.keep_snapshots, metavar="DURATION",
                       help="keep node snapshot history this long (default %(default)s s)")
    serve.add_argument("--snapshot-every", type=_cadence, default=env.snapshot_every, metavar="DURATION",
                       help="keep one snapshot per node this often (default %(default)s s)")
    serve.add_argument("--checkpoint-every", type=_cadence, default=env.checkpoint_every, metavar="DURATION",
                       help="checkpoint the windows this often: a restart replays at most this much of the log "
                            "(default %(default)s s)")
    serve.add_argument("--event-loop", choices=EVENT_LOOPS, default=env.event_loop,
                       help="event loop: asyncio, uvloop (the fast extra), or auto (uvloop when installed); uvloop "
                            "measured no faster on this workload (default %(default)s)")
    serve.add_argument("--curve-secret", type=_file, default=env.curve_secret, metavar="FILE",
                       help="the collector's secret key file (servertrack keys generate): ingest and control "
                            "become CURVE servers, only agents whose key is in --allowed-agents connect "
                            "(default: unauthenticated ingest, with a warning)")
    serve.add_argument("--allowed-agents", type=_data_dir, default=env.allowed_agents, metavar="DIR",
                       help="directory of the agents' public key files; re-read on SIGHUP and when it changes")
    serve.add_argument("--agent-budget", type=_frame_budget, default=env.agent_budget, metavar="FRAMES",
                       help="frames a second each agent (server name) may send over ZeroMQ, averaged over 10 s; "
                            "the excess is dropped and counted (0: no budget; default %(default)s)")

    agent = commands.add_parser("agent", help="sample this node and publish to a collector")
    agent.add_argument("--collector", type=_endpoints, default=env.collector, metavar="ADDRESS[,ADDRESS...]",
                       help="collector ingest address, or several comma-separated: the agent publishes to the one "
                            "its name picks by rendezvous hashing among those it hears from, so adding or removing "
                            "a collector moves only the agents that must move; it listens to every one's control "
                            "channel, moves away from one silent for --failover-after and back when it is heard "
                            "again (default %(default)s)")
    agent.add_argument("--control", type=_endpoints, default=env.control, metavar="ADDRESS[,ADDRESS...]",
                       help="collector control address, to be paused and resumed, one per collector in the same "
                            "order (default: the port after each --collector's)")
    agent.add_argument("--failover-after", type=_failover_after, default=env.failover_after, metavar="SECONDS",
                       help=f"with several collectors: seconds a collector may be silent (no heartbeat, which it "
                            f"sends every {HEARTBEAT_SECONDS:g} s) before the agent publishes to another, from "
                            f"{MIN_FAILOVER_AFTER:g} to {MAX_FAILOVER_AFTER:g} (default %(default)s)")
    agent.add_argument("--interval", type=_interval, default=env.interval, help="seconds between samples (default %(default)s)")
    agent.add_argument("--name", type=_server_name, default=env.name, help="server name (default: this host's FQDN)")
    agent.add_argument("--stats-every", type=_sample_count, default=env.stats_every,
                       help="send a rich stats snapshot every N samples, 0 for never (default %(default)s)")
    agent.add_argument("--process-interval", type=_seconds, default=env.process_interval,
                       help="seconds between two process scans for the top-20 lists (default %(default)s)")
    agent.add_argument("--curve-secret", type=_file, default=env.curve_secret, metavar="FILE",
                       help="this agent's secret key file: connect with CURVE (needs --collector-key)")
    agent.add_argument("--collector-key", type=_file, default=env.collector_key, metavar="FILE",
                       help="the collector's public key file (its NAME.key); with several collectors, they "
                            "share one key pair")

    demo = commands.add_parser("demo", help="a server and N local agents in one command")
    demo.add_argument("--agents", type=_agent_count, default=3, help="local agents to start (default %(default)s)")
    demo.add_argument("--port", type=_port, default=env.port, help="HTTP port (default %(default)s)")

    show = commands.add_parser("show", help="print a server's minute and hour windows, with sparklines")
    show.add_argument("name", type=_server_name, help="server name")
    _add_client_flags(show, env)
    show.add_argument("--json", action="store_true", dest="as_json",
                      help="print the API's answer as one JSON document, for scripts")
    show.add_argument("--ascii", action="store_true",
                      help="draw the sparklines in ASCII (the default where the terminal cannot show blocks, "
                           "or LANG / LC_ALL is C or POSIX)")

    top = commands.add_parser("top", help="a live view of the fleet, busiest first (q quits)")
    _add_client_flags(top, env)
    top.add_argument("--interval", type=_refresh, default=2.0, metavar="SECONDS",
                     help="seconds between two refreshes (default %(default)s)")
    top.add_argument("--limit", type=_page, default=50, metavar="N",
                     help="rows read per refresh: the first N of the whole fleet by the sort key, sorted by "
                          "the service (default %(default)s)")

    nodes = commands.add_parser("nodes", help="list the node inventory")
    _add_client_flags(nodes, env)
    nodes.add_argument("--state", choices=NODE_STATES, help="only nodes in this state")

    node = commands.add_parser("node", help="print one node's summary and latest stats")
    node.add_argument("name", type=_node_id, metavar="NAME", help="node name or IP address")
    _add_client_flags(node, env)

    keys = commands.add_parser("keys", help="make CURVE key pairs for the collector and agents")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = key_commands.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (mode 0600)")
    generate.add_argument("directory", type=_data_dir, metavar="DIR", help="where to write them (created if missing)")
    generate.add_argument("--name", type=_key_name, default=socket.gethostname().split(".")[0] or "servertrack",
                          help="the files' name (default: this host's short name, %(default)s)")

    for action, summary in (("pause", "ask a node's agent to stop sampling"), ("resume", "let a paused node sample again")):
        control = commands.add_parser(action, help=summary)
        control.add_argument("name", type=_node_id, metavar="NAME", help="node name or IP address")
        _add_client_flags(control, env)
    return parser


def parse(argv: Sequence[str] | None = None, defaults: EnvironmentDefaults | None = None) -> argparse.Namespace:
    """Parse ``argv``; raise ``CommandLineError`` on a bad flag.

    argparse runs string defaults (from the environment) through the same
    ``type`` checks as flags, so a bad ``SERVERTRACK_*`` value is caught too.
    """
    env = defaults if defaults is not None else EnvironmentDefaults.from_environ()
    args = build_parser(env).parse_args(argv)
    _take_environment_tokens(args, env)
    if args.command == "agent":
        _choose_collector(args)
    if args.command in ("serve", "agent") and (args.curve_secret is None) != (
            (args.allowed_agents if args.command == "serve" else args.collector_key) is None):
        needed = "--allowed-agents" if args.command == "serve" else "--collector-key"
        raise CommandLineError(f"--curve-secret and {needed} go together")
    if args.command == "serve" and not args.store.startswith(("redis://", "rediss://", "redis+", "rediss+")) \
            and (args.store_password is not None or args.store_ca is not None):
        raise CommandLineError("--store-password-file and --store-ca are for a redis:// or redis+cluster:// "
                                   "--store")
    return args


def _choose_collector(args: argparse.Namespace) -> None:
    """The agent's name (default: this host's FQDN), every collector's control address (the same place in
    ``--control``'s list, or derived), and of its ``--collector`` list the one the name picks by rendezvous
    hashing when all are up (``collector``, ``control``)."""
    if args.name is None:
        try:
            args.name = normalize_name(socket.getfqdn())
        except InvalidSample:
            raise CommandLineError(f"this host's name {socket.getfqdn()!r} is not a valid server name; pass --name") from None
    collectors: list[str] = args.collector
    controls: list[str] | None = args.control
    if controls is not None and len(controls) != len(collectors):
        raise CommandLineError(f"--control names {len(controls)} address(es) for {len(collectors)} collector(s): "
                               "give one per collector, in the same order, or none")
    if controls is None:
        try:
            controls = [control_endpoint_for(collector, connect=True) for collector in collectors]
        except ValueError as error:
            raise CommandLineError(str(error)) from None
    index = chosen_index(args.name, collectors)
    args.collectors = collectors
    args.controls = controls
    args.collector = collectors[index]
    args.control = controls[index]


def _take_environment_tokens(args: argparse.Namespace, env: EnvironmentDefaults) -> None:
    """Fill the tokens not given by a flag from ``SERVERTRACK_*``; refuse half a TLS setup."""
    if args.command == "serve":
        if args.write_token is None:
            args.write_token = _environment_token(env.write_token, "SERVERTRACK_WRITE_TOKEN")
        if args.read_token is None:
            args.read_token = _environment_token(env.read_token, "SERVERTRACK_READ_TOKEN")
        if (args.tls_cert is None) != (args.tls_key is None):
            raise CommandLineError("--tls-cert and --tls-key go together: give both or neither")
    elif hasattr(args, "token") and args.token is None:
        args.token = _environment_token(env.token, "SERVERTRACK_TOKEN")


def _run_serve(args: argparse.Namespace) -> int:
    from .service import Monitor, serve

    settings = ServeSettings(host=args.host, port=args.port, ingest=args.ingest, control=args.control,
                             max_servers=args.max_servers,
                             offline_after=args.offline_after, allowed_hosts=args.allowed_hosts,
                             snapshot_memory_mib=args.snapshot_memory, large_frame_share=args.large_frame_cpu,
                             max_connections=args.max_connections, idle_timeout=args.idle_timeout,
                             body_timeout=args.body_timeout, store=args.store, data_dir=args.data_dir,
                             store_password=args.store_password, store_ca=args.store_ca,
                             share_every=args.share_every, collector_id=args.collector_id,
                             keep_minutes=args.keep_minutes, keep_hours=args.keep_hours,
                             keep_snapshots=args.keep_snapshots, snapshot_every=args.snapshot_every,
                             checkpoint_every=args.checkpoint_every, event_loop=args.event_loop,
                             curve_secret=args.curve_secret, allowed_agents=args.allowed_agents,
                             agent_budget=args.agent_budget,
                             write_token=args.write_token, read_token=args.read_token, tls_cert=args.tls_cert,
                             tls_key=args.tls_key, max_connections_per_client=args.max_connections_per_client,
                             write_timeout=args.write_timeout, export_servers=args.export_servers or 0)
    try:
        loop_name, _ = loop_factory(settings.event_loop)
    except ValueError as error:  # from SERVERTRACK_EVENT_LOOP: argparse checks only what is typed
        raise CommandLineError(str(error)) from None

    def announce(monitor: Monitor) -> None:
        print(f"servertrack serving http={monitor.http_url} ingest={monitor.ingest_endpoint} "
              f"control={monitor.control_endpoint} store={monitor.store_description} loop={loop_name}", flush=True)

    if hasattr(signal, "SIGUSR1"):  # kill -USR1: every thread's stack to stderr, the culprit of a stall
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    run_on_loop(serve(settings, on_ready=announce), settings.event_loop)
    return 0


def _run_agent(args: argparse.Namespace) -> int:
    from .agent import run_agent

    from .agent.node_stats import NodeStatsCollector

    from .agent.collector_choice import CollectorAddress
    from .agent.publisher import CollectorKeys
    from .keys import read_key_pair, read_public_key

    settings = AgentSettings(collector=args.collector, interval=args.interval, name=args.name,
                             stats_every=args.stats_every, process_interval=args.process_interval,
                             control=args.control, curve_secret=args.curve_secret, collector_key=args.collector_key,
                             collectors=tuple(zip(args.collectors, args.controls)) if len(args.collectors) > 1 else (),
                             failover_after=args.failover_after)
    assert settings.name is not None
    if settings.collectors:
        print(f"servertrack agent {settings.name}: publishing to {settings.collector} (control {settings.control}), "
              f"its pick of {len(settings.collectors)} collectors by rendezvous hashing; moving to another when "
              f"it is silent for {settings.failover_after:g} s", file=sys.stderr, flush=True)
    curve = None
    if settings.curve_secret is not None and settings.collector_key is not None:
        curve = CollectorKeys(read_key_pair(Path(settings.curve_secret)), read_public_key(Path(settings.collector_key)))
    node_stats = NodeStatsCollector(process_interval=settings.process_interval)
    endpoint: str | list[CollectorAddress] = settings.collector
    if settings.collectors:
        endpoint = [CollectorAddress(ingest, control) for ingest, control in settings.collectors]
    asyncio.run(run_agent(settings.name, endpoint, settings.interval, node_stats=node_stats,
                          stats_every=settings.stats_every, control=settings.control, curve=curve,
                          failover_after=settings.failover_after))
    return 0


def _run_keys(args: argparse.Namespace) -> int:
    from .keys import generate_keys

    public, secret = generate_keys(Path(args.directory), args.name)
    print(f"wrote {public} (public: give it to the other side) and {secret} (secret, mode 0600: keep it here)")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(agents=args.agents, port=args.port))


def _trust(args: argparse.Namespace) -> Trust:
    from .client import Trust

    return Trust(token=args.token, ca=args.ca)


def _run_show(args: argparse.Namespace) -> int:
    from .console import show_server
    from .sparklines import glyphs_for

    glyphs = glyphs_for(getattr(sys.stdout, "encoding", None), os.environ, args.ascii)
    return show_server(args.url, args.name, sys.stdout, _trust(args), glyphs, args.as_json, sys.stderr)


def _run_top(args: argparse.Namespace) -> int:
    from .client import ServerTrackClient
    from .console import REQUEST_TIMEOUT_SECONDS
    from .fleet_feed import FleetFeed
    from .sparklines import glyphs_for
    from .top_terminal import run_top

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CommandLineError("top needs a terminal (for a script: GET /fleet, or servertrack show NAME --json)")
    client = ServerTrackClient.trusting(args.url, _trust(args), timeout=REQUEST_TIMEOUT_SECONDS)
    ascii_only = glyphs_for(getattr(sys.stdout, "encoding", None), os.environ).ascii
    return run_top(FleetFeed(client, args.limit, args.interval), args.url, ascii_only)


def _run_nodes(args: argparse.Namespace) -> int:
    from .console import list_nodes, wants_colour

    return list_nodes(args.url, args.state, sys.stdout, sys.stderr, wants_colour(sys.stdout, os.environ),
                      _trust(args))


def _run_node(args: argparse.Namespace) -> int:
    from .console import show_node, wants_colour

    return show_node(args.url, args.name, sys.stdout, sys.stderr, wants_colour(sys.stdout, os.environ),
                     _trust(args))


def _run_pause(args: argparse.Namespace) -> int:
    from .console import set_paused

    return set_paused(args.url, args.name, True, sys.stdout, sys.stderr, _trust(args))


def _run_resume(args: argparse.Namespace) -> int:
    from .console import set_paused

    return set_paused(args.url, args.name, False, sys.stdout, sys.stderr, _trust(args))


_COMMANDS = {
    "serve": _run_serve,
    "agent": _run_agent,
    "demo": _run_demo,
    "show": _run_show,
    "top": _run_top,
    "nodes": _run_nodes,
    "node": _run_node,
    "pause": _run_pause,
    "resume": _run_resume,
    "keys": _run_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``servertrack`` console script; returns the exit code."""
    from .common.errors import ServerTrackError

    try:
        args = parse(argv)
        return _COMMANDS[args.command](args)
    except (CommandLineError, ServerTrackError) as error:
        print(f"servertrack: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0


def run() -> NoReturn:
    """Console-script wrapper: exit with ``main()``'s code."""
    sys.exit(main())
