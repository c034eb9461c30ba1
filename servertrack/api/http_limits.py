"""What one HTTP client may take of the service, and how incidents at the HTTP edge are logged.

``HttpLimits`` (connections, time, bytes), the connection cap that fits the
descriptor limit, and raising that limit at start. Incidents are logged by
``common.incidents.IncidentLog``: one line per interval with a count, never a
line per connection.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

from .handlers import MAX_BODY_BYTES

# An unlimited hard limit is taken as this many descriptors.
DESCRIPTOR_CEILING = 1_048_576
# Descriptors kept out of the connection cap (see ``connection_cap``): at least this many.
MIN_RESERVED_DESCRIPTORS = 64

# The HTTP server's logger: every line of the HTTP edge goes there.
_log = logging.getLogger("servertrack.api.http_server")


def raise_descriptor_limit(ceiling: int = DESCRIPTOR_CEILING) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (at most ``ceiling``); return the soft limit in force.

    An unlimited hard limit counts as ``ceiling``; so does an unlimited soft
    limit in the value returned. If the system refuses, start-up goes on
    with the limit it had, and a warning says so.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            _log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, error)
        else:
            soft = target
    return ceiling if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP client may take of the server: connections, time and bytes."""

    max_connections: int = 4096
    # Seconds for a request's complete headers, and for an idle keep-alive connection.
    idle_timeout: float = 20.0
    # Seconds for a request's complete body once its headers are in.
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    # For routes that do not stream their body (streaming ones apply their own limit).
    max_body_bytes: int = MAX_BODY_BYTES
    # Open connections from one IP address at most.
    max_connections_per_client: int = 256
    # Seconds for a response to be written in full once its headers are (a client that reads it slower
    # is closed: its connection and the rest of the answer are not held for ever).
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "idle_timeout", "body_timeout", "max_header_bytes", "max_body_bytes",
                     "max_connections_per_client", "write_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HttpLimits.{name} must be positive, not {getattr(self, name)!r}")


def connection_cap(limits: HttpLimits, descriptor_limit: int) -> int:
    """How many HTTP connections may be open at once: ``max_connections``, less if descriptors are short.

    Each connection holds a descriptor. The rest of the process needs some
    too: ZeroMQ (its context, sockets and one per connected agent), the
    store's files, the listening sockets, logs, the spare descriptor of the
    accept handler. An eighth of the limit, and at least
    ``MIN_RESERVED_DESCRIPTORS``, is kept for them, so that a flood of HTTP
    clients is refused by the cap (a JSON 503) before the process runs out
    of descriptors. A large fleet on a small limit needs a larger limit (or
    a lower ``max_connections``). Always at least 1.
    """
    reserve = max(MIN_RESERVED_DESCRIPTORS, descriptor_limit // 8)
    return max(1, min(limits.max_connections, descriptor_limit - reserve))
