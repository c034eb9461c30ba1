"""Bearer tokens: what a token may look like, for the service (``--write-token``, ``--read-token``) and
its clients (``--token``, ``ServerTrackClient(token=...)``). Pure functions, no I/O.

A token is sent as ``Authorization: Bearer <token>``, so it must be what RFC 6750 calls a
``b64token``: letters, digits and ``-._~+/``, then optional ``=`` padding; nothing a header could
not carry (no spaces, control characters or non-ASCII). It must also be long enough not to be
guessed over HTTP: ``openssl rand -hex 32`` makes a 64-character one.
"""

from __future__ import annotations

import re

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 1024
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a bearer token (too short, too long, a character a header cannot carry),
    or None if it can."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"a token needs at least {MIN_TOKEN_CHARS} characters, got {len(token)} " \
               "(make one with: openssl rand -hex 32)"
    if len(token) > MAX_TOKEN_CHARS:
        return f"a token has at most {MAX_TOKEN_CHARS} characters, got {len(token)}"
    if TOKEN_PATTERN.fullmatch(token) is None:
        return "a token may hold only letters, digits and -._~+/ (then = padding)"
    return None
