"""Which agents may talk to the collector: CURVE on the ingest and control sockets, keys checked by ZAP.

``serve --curve-secret FILE --allowed-agents DIR`` makes both bound sockets
CURVE servers with the collector's key pair. Every handshake is checked by
pyzmq's ZAP authenticator on the service's loop (``AsyncioAuthenticator``)
against the public keys in DIR (ZeroMQ certificate files, as
``servertrack keys generate`` or ``zmq.auth.create_certificates`` write them).
A frame that arrives carries its sender's key as its User-Id, which the
ingest checks against ``AgentKeys`` (revoked keys, name ownership).

DIR is read again on SIGHUP and whenever its listing changes (checked every
``WATCH_SECONDS``): added keys may connect at once; a revoked key's frames are
refused from then on (libzmq checks a key only at the handshake, so its open
connection stays until it drops). A DIR that cannot be read keeps the keys
in force, and says so in the log.

Handshakes are watched on both sockets (socket monitors) and counted for
``/stats``: ``succeeded``, ``unknown_key`` (ZAP refused the key) and
``failed`` (anything else: a client with a wrong collector key, a plain
client, garbage). Refusals are logged once a minute with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from ..common.agent_keys import AgentKeys, KeyPair
from ..common.errors import ServerTrackError
from ..common.incidents import IncidentLog

WATCH_SECONDS = 2.0
_HANDSHAKE_EVENTS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "succeeded",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "unknown_key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed",
}
_MONITORED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH \
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

_log = logging.getLogger("servertrack.collector.trust")


class TrustError(ServerTrackError):
    """The collector's key pair or the allowed agents' directory cannot be used."""


def read_allowed_keys(directory: Path) -> set[str]:
    """The public keys (Z85 text) of the certificate files in ``directory``; ``TrustError`` if it cannot
    be read or a file in it is not a certificate."""
    try:
        found = zmq.auth.load_certificates(directory)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise TrustError(f"cannot read the allowed agents' keys in {directory}: {error}") from None
    return {key.decode("ascii", "replace") for key in found}


class AllowedAgents:
    """The ZAP credentials provider: allows the keys in a directory, re-read on demand."""

    def __init__(self, directory: Path, keys: AgentKeys, logger: logging.Logger = _log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Reads ``directory`` now (``TrustError`` if it cannot)."""
        self.directory = directory
        self.keys = keys
        self.reloads = 0
        self.reload_errors = 0
        self._logger = logger
        self._listing = self._list()
        self._refused = IncidentLog(logger, logging.WARNING,
                                    "refused %d agent handshake(s) since the last report: key %s is not in %s",
                                    clock)
        try:
            keys.replace(read_allowed_keys(directory))
        except ValueError as error:
            raise TrustError(f"in {directory}: {error}") from None

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: whether the agent with public key ``key`` (Z85 bytes) may connect."""
        text = key.decode("ascii", "replace")
        if text in self.keys:
            return True
        self._refused.record(text, self.directory)
        return False

    def reload(self) -> bool:
        """Read the directory again and allow exactly its keys; False (the keys in force kept, logged)
        if it cannot be read."""
        self._listing = self._list()
        try:
            wanted = read_allowed_keys(self.directory)
            added, revoked = self.keys.replace(wanted)
        except (TrustError, ValueError) as error:
            self.reload_errors += 1
            self._logger.error("%s; the %d keys allowed before stay in force", error, len(self.keys))
            return False
        self.reloads += 1
        self._logger.warning("allowed agents re-read from %s: %d keys (%d added, %d revoked)",
                             self.directory, len(self.keys), len(added), len(revoked))
        return True

    def changed(self) -> bool:
        """Whether the directory's listing (names, sizes, times) changed since it was last read."""
        return self._list() != self._listing

    def _list(self) -> frozenset[tuple[str, int, int]] | None:
        try:
            return frozenset((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                             for entry in os.scandir(self.directory))
        except OSError:
            return None

    def flush(self) -> None:
        """Log the refusals not reported yet."""
        self._refused.flush()


class AgentTrust:
    """CURVE for the collector's sockets: the key pair, the ZAP authenticator, reloads and the handshake
    counters. ``secure`` each socket before it binds; ``start`` before the first agent connects."""

    def __init__(self, context: zmq.asyncio.Context, key_pair: KeyPair, allowed: Path,
                 keys: AgentKeys | None = None, logger: logging.Logger = _log) -> None:
        self.key_pair = key_pair
        self.keys = keys if keys is not None else AgentKeys()
        self.allowed = AllowedAgents(allowed, self.keys, logger)
        self.handshakes: Counter[str] = Counter(dict.fromkeys(("succeeded", "unknown_key", "failed"), 0))
        self._context = context
        self._logger = logger
        self._authenticator: AsyncioAuthenticator | None = None
        self._monitors: list[tuple[zmq.Socket[Any], zmq.asyncio.Socket]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._failed = IncidentLog(logger, logging.WARNING,
                                   "%d agent handshake(s) failed since the last report (latest on %s): a client "
                                   "without CURVE, with a wrong collector key, or not ZeroMQ", time.monotonic)

    def start(self) -> None:
        """Start checking handshakes (before any socket binds: libzmq lets every key in without ZAP)."""
        authenticator = AsyncioAuthenticator(self._context, log=self._logger.getChild("zap"))
        authenticator.start()
        authenticator.configure_curve_callback("*", credentials_provider=self.allowed)
        self._authenticator = authenticator
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, self.allowed.reload)
        self._tasks.append(asyncio.create_task(self._watch_directory()))

    def secure(self, socket: zmq.Socket[Any], name: str) -> None:
        """Make ``socket`` (not yet bound) a CURVE server with the collector's keys, its handshakes
        counted under ``name``."""
        socket.curve_server = True
        socket.curve_secretkey = self.key_pair.secret
        socket.curve_publickey = self.key_pair.public
        monitor: Any = socket.get_monitor_socket(_MONITORED)  # an asyncio socket, as the context is
        self._monitors.append((socket, monitor))
        self._tasks.append(asyncio.create_task(self._count_handshakes(monitor, name)))

    def counters(self) -> dict[str, Any]:
        """What ``/stats`` shows under ``curve``."""
        return {"allowed_keys": len(self.keys), "handshakes": dict(self.handshakes),
                "reloads": self.allowed.reloads, "reload_errors": self.allowed.reload_errors}

    async def _count_handshakes(self, monitor: zmq.asyncio.Socket, name: str) -> None:
        while True:
            frames = await monitor.recv_multipart()
            try:
                event = int(parse_monitor_message(frames)["event"])
            except (ValueError, KeyError, TypeError):
                continue
            outcome = _HANDSHAKE_EVENTS.get(event)
            if outcome is not None:
                self.handshakes[outcome] += 1
                if outcome == "failed":
                    self._failed.record(name)

    async def _watch_directory(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            if self.allowed.changed():
                self.allowed.reload()

    async def stop(self) -> None:
        """Stop the authenticator, the watchers and the monitors (before the sockets close)."""
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for socket, monitor in self._monitors:
            with contextlib.suppress(zmq.ZMQError):
                socket.disable_monitor()
            monitor.close(linger=0)
        self._monitors = []
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        self.allowed.flush()
        self._failed.flush()
