"""What ``serve --store`` names: ``sqlite``, ``memory``, or a Redis server or cluster by URL.

Accepted (pure parsing, no I/O)::

    sqlite | memory
    redis://HOST[:PORT][/DB]              one Redis server (DB 0 to 15 by default, port 6379)
    rediss://HOST[:PORT][/DB]             the same over TLS (``--store-ca FILE`` to trust its CA)
    redis+cluster://HOST:PORT,HOST:PORT   a Redis Cluster: any of its nodes (the rest are discovered)
    rediss+cluster://HOST:PORT,...        the same over TLS

HOST is a name, an IPv4 address or ``[IPv6]``. A user name may come before
the host (``redis://reader@host``, for an ACL user); a password may not: it
would show in ``ps`` and in the ready line, so it is read from
``--store-password-file``. A cluster has only DB 0. ``describe`` gives the
URL back in its canonical form, which the ready line prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PORT = 6379
MAX_DB = 15
PLAIN_KINDS = ("sqlite", "memory")
SCHEMES = {"redis": (False, False), "rediss": (False, True), "redis+cluster": (True, False),
           "rediss+cluster": (True, True)}  # scheme -> (cluster, tls)
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:(\d{1,5}))?\Z")
_USER = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A Redis server (``cluster`` False: one host) or cluster (its start-up nodes), as ``--store`` named it."""

    cluster: bool
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None

    @property
    def kind(self) -> str:
        """The store's kind: ``redis`` or ``redis+cluster``."""
        return "redis+cluster" if self.cluster else "redis"

    def describe(self) -> str:
        """The canonical URL, never with a password (``redis://127.0.0.1:6379/0``)."""
        scheme = ("rediss" if self.tls else "redis") + ("+cluster" if self.cluster else "")
        user = f"{self.username}@" if self.username else ""
        hosts = ",".join(f"{_bracketed(host)}:{port}" for host, port in self.hosts)
        return f"{scheme}://{user}{hosts}" + ("" if self.cluster else f"/{self.db}")


def parse_store(text: str) -> str | RedisTarget:
    """``sqlite`` or ``memory`` as they are, a Redis URL as a ``RedisTarget``; ``ValueError`` with one line
    saying what is wrong otherwise."""
    if text in PLAIN_KINDS:
        return text
    scheme, separator, rest = text.partition("://")
    if not separator or scheme not in SCHEMES:
        raise ValueError(f"expected sqlite, memory, redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,..., "
                         f"got {_shown(text)}")
    cluster, tls = SCHEMES[scheme]
    if "?" in rest or "#" in rest:
        raise ValueError(f"no query or fragment in a --store URL, got {_shown(text)}")
    username = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        if ":" in userinfo:
            raise ValueError("no password in the --store URL (it would show in ps): use --store-password-file")
        if _USER.match(userinfo) is None:
            raise ValueError(f"the user name in the --store URL must be letters, digits, '.', '_' and '-', "
                             f"got {userinfo!r}")
        username = userinfo
    location, slash, path = rest.partition("/")
    if not location:
        raise ValueError(f"no host in the --store URL {_shown(text)}")
    hosts = tuple(_host(part, text) for part in location.split(","))
    if not cluster and len(hosts) > 1:
        raise ValueError(f"redis:// names one server; for several, use redis+cluster://, got {_shown(text)}")
    db = 0
    if slash and path:
        if not (path.isascii() and path.isdigit()) or int(path) > MAX_DB:
            raise ValueError(f"the DB in the --store URL must be a number from 0 to {MAX_DB}, got {path!r}")
        db = int(path)
        if cluster and db != 0:
            raise ValueError(f"a Redis Cluster has only DB 0, got {path!r}")
    return RedisTarget(cluster, tls, hosts, db, username)


def _host(part: str, text: str) -> tuple[str, int]:
    match = _HOST.match(part)
    if match is None:
        raise ValueError(f"expected HOST:PORT in the --store URL, got {part!r}")
    host, port = match.group(1), match.group(4)
    if host.startswith("["):
        host = host[1:-1]
    number = DEFAULT_PORT if port is None else int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"the port in the --store URL must be from 1 to 65535, got {part!r}")
    return host, number


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _shown(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "...")
