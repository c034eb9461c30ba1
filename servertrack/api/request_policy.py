"""Which requests the API serves at all: who sent them (the bearer tokens, see ``access_tokens``), the
``Host`` it answers to, the ``Origin`` it takes writes from, and the media type of a message body.

A web page the user opens elsewhere can make the browser send requests to
ServerTrack at 127.0.0.1: a cross-site ``POST`` with a ``text/plain`` body
needs no preflight, and DNS rebinding makes a foreign name resolve to our
address. So: the ``Host`` must be an IP address, ``localhost``, the listen
name or one of ``--allowed-hosts``; a write that carries an ``Origin`` must
come from the origin it is sent to; and a JSON route takes only
``application/json`` (which a cross-site page cannot send without a
preflight that we never grant).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from ..common.protocol import is_ip_address
from ..common.text import ascii_escaped
from .access_tokens import AccessTokens

JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
ANY_HOST = "*"


def _bare_host(host: str) -> str:
    """``host`` without a port or IPv6 brackets, lower-case, without one trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host[:-1] if host.endswith(".") else host


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """The host names the API answers to besides IP addresses and ``localhost`` (``*``: any), and the
    tokens that writes and reads need (default: none)."""

    allowed_hosts: frozenset[str] = frozenset()
    tokens: AccessTokens = AccessTokens()

    @classmethod
    def for_listener(
        cls, listen_host: str, allowed_hosts: Iterable[str] = (), tokens: AccessTokens = AccessTokens()
    ) -> RequestPolicy:
        """The policy of a service listening on ``listen_host`` with ``--allowed-hosts`` and ``tokens``."""
        names = {_bare_host(name) for name in allowed_hosts if name.strip()}
        if not is_ip_address(_bare_host(listen_host)):
            names.add(_bare_host(listen_host))
        names.discard("")
        return cls(frozenset(names), tokens)

    def host_refusal(self, host_header: str | None) -> str | None:
        """Why a request with this ``Host`` header is refused, or None if it is served."""
        if ANY_HOST in self.allowed_hosts or host_header is None:
            return None  # HTTP/1.0 without Host: no browser sends that
        host = _bare_host(host_header)
        if host == "localhost" or host in self.allowed_hosts or is_ip_address(host):
            return None
        shown = host_header if len(host_header) <= 64 and host_header.isprintable() else ascii_escaped(host_header, 64)
        return f"host {shown!r} is not served here: use an IP address or localhost, or start the service with " \
               f"--allowed-hosts {host or 'NAME'}"

    @staticmethod
    def origin_refusal(origin: str | None, host_header: str | None, what: str = "writes") -> str | None:
        """Why a write from this ``Origin`` is refused (it must be the origin it is sent to), or None;
        ``what`` names the requests in the message."""
        if origin is None:
            return None  # not from a browser page: curl, scripts, the CLI
        netloc = urllib.parse.urlsplit(origin.strip()).netloc.lower() if origin.strip() != "null" else ""
        if netloc and host_header is not None and netloc == host_header.strip().lower():
            return None
        return f"{what} from origin {ascii_escaped(origin, 64)!r} are refused: only same-origin pages may write"


def media_type_refusal(content_type: str | None, expected: str) -> str | None:
    """Why a body of ``content_type`` is refused where ``expected`` is taken, or None."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == expected:
        return None
    return f"Content-Type must be {expected}, got {ascii_escaped(content_type or 'none', 64)!r}"
