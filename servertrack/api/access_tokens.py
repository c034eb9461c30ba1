"""Who may write and who may read: the bearer tokens of ``serve --write-token`` and ``--read-token``.

Part of the ``RequestPolicy`` (``policy.tokens``), checked first thing in
``JsonHandler.prepare``, before the body of a write is read or applied.

- With a write token, every request that changes state (``POST``, ``PUT``,
  ``DELETE``, ``PATCH``, and the old clients' ``GET /start`` and ``/stop``)
  needs ``Authorization: Bearer <write token>``.
- With a read token, every other request does too, with the read token or
  the write token (whoever may write may read). ``/healthz`` stays open.
- A refusal is a 401 whose ``WWW-Authenticate`` challenge is ``Bearer
  realm="servertrack"``, with ``error="invalid_token"`` when a credential was
  sent and is not valid (wrong, malformed, or several ``Authorization``
  headers).

Both sides are hashed (SHA-256) and the digests compared with
``hmac.compare_digest``: the time taken tells neither the token's value nor
its length. Every accepted token is compared, so neither tells which matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..common.tokens import MAX_TOKEN_CHARS, TOKEN_PATTERN

REALM = "servertrack"
_SCHEME = "bearer"
# "Bearer", one or more spaces (RFC 7235's 1*SP; tabs too), the credential; Tornado strips the ends.
_CREDENTIALS = re.compile(r"([A-Za-z]+)(?:[ \t]+(.*))?", re.DOTALL)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


@dataclass(frozen=True, slots=True)
class TokenRefusal:
    """Why a request is refused (``message``), and whether the credential it sent was invalid."""

    message: str
    invalid_token: bool

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of the 401."""
        challenge = f'Bearer realm="{REALM}"'
        return challenge + ', error="invalid_token"' if self.invalid_token else challenge


def bearer_credential(authorization: Sequence[str]) -> bytes | None:
    """The token of the ``Authorization`` header values a request sent, as bytes; None without a bearer
    credential (no header, or another scheme). ``b""`` (matching no token) for one that cannot be a
    token: empty, over-long, a forbidden character, or several headers."""
    if not authorization:
        return None
    if len(authorization) > 1:
        return b""
    match = _CREDENTIALS.fullmatch(authorization[0].strip())
    if match is None or match.group(1).lower() != _SCHEME:
        return None
    token = match.group(2) or ""
    if len(token) > MAX_TOKEN_CHARS or TOKEN_PATTERN.fullmatch(token) is None:
        return b""
    return token.encode("ascii")


@dataclass(frozen=True, slots=True)
class AccessTokens:
    """The digests of the write and read tokens (None: that kind of request needs none)."""

    write: bytes | None = field(default=None, repr=False)
    read: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, write: str | None = None, read: str | None = None) -> AccessTokens:
        """The policy of these tokens (already checked with ``common.tokens.token_problem``)."""
        return cls(None if write is None else _digest(write.encode("ascii")),
                   None if read is None else _digest(read.encode("ascii")))

    @property
    def writes_open(self) -> bool:
        """Whether anyone may write (no write token)."""
        return self.write is None

    def refusal(self, authorization: Sequence[str], writes: bool) -> TokenRefusal | None:
        """Why a request carrying these ``Authorization`` values is refused (``writes``: it changes
        state), or None if it is served."""
        if writes:
            accepted = [self.write] if self.write is not None else []
            what, flag = "writes", "--write-token"
        else:
            accepted = [token for token in (self.read, self.write) if token is not None] if self.read else []
            what, flag = "reads", "--read-token"
        if not accepted:
            return None
        credential = bearer_credential(authorization)
        if credential is None:
            return TokenRefusal(f"{what} need a token here: send Authorization: Bearer <the service's {flag}>",
                                invalid_token=False)
        presented = _digest(credential)
        valid = False
        for token in accepted:
            valid |= hmac.compare_digest(presented, token)
        if not valid:
            return TokenRefusal(f"the bearer token is not valid for {what}", invalid_token=True)
        return None
