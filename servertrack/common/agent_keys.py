"""The agents' public keys the collector accepts, numbered for the ingest's arrays.

A CURVE handshake is checked against the allowed keys (ZAP, see
``collector.agent_trust``), and every frame that arrives carries its sender's
key (its ZAP User-Id, the Z85 text of the public key). The ingest looks each
frame's key up here once: a number for an allowed key, None for one revoked
since its agent connected (libzmq checks keys only at the handshake, so a
revoked agent's open connection still delivers: its frames are refused here).

A key keeps its number for the life of the process, so a name owned by a key
that is revoked and allowed again is still its own; numbers start at 1 (0 is
``inventory.NO_OWNER``). Pure: no files, no sockets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# A Z85 text of a 32-byte CURVE public key.
Z85_KEY_LENGTH = 40
_Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE key pair, each key as its Z85 text in bytes (as pyzmq's socket options take them)."""

    public: bytes
    secret: bytes = b""

    def __repr__(self) -> str:  # never print a secret key
        return f"KeyPair(public={self.public!r})"


def is_z85_key(text: str) -> bool:
    """Whether ``text`` is the Z85 text of a CURVE key (40 characters of the Z85 alphabet)."""
    return len(text) == Z85_KEY_LENGTH and _Z85_ALPHABET.issuperset(text)


class AgentKeys:
    """The allowed keys (Z85 text) and the number of every key ever allowed."""

    __slots__ = ("allowed", "_numbers", "_keys")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        # The hot path's lookup: the User-Id of a frame -> its key's number, for allowed keys only.
        self.allowed: dict[str, int] = {}
        self._numbers: dict[str, int] = {}
        self._keys: list[str] = [""]  # by number; number 0 is nobody's
        self.replace(keys)

    def __len__(self) -> int:
        return len(self.allowed)

    def __contains__(self, key: object) -> bool:
        return key in self.allowed

    def replace(self, keys: Iterable[str]) -> tuple[list[str], list[str]]:
        """Allow exactly ``keys`` from now on; return the keys added and the keys revoked, sorted.

        ``ValueError`` (and nothing changed) if one is not a Z85 key text.
        """
        wanted = set(keys)
        bad = sorted(key for key in wanted if not is_z85_key(key))
        if bad:
            raise ValueError(f"not a CURVE public key (40 Z85 characters): {bad[0][:60]!r}")
        added = sorted(wanted - self.allowed.keys())
        revoked = sorted(self.allowed.keys() - wanted)
        for key in revoked:
            del self.allowed[key]
        for key in added:
            self.allowed[key] = self.number(key)
        return added, revoked

    def number(self, key: str) -> int:
        """The number of ``key`` (given one if it has none yet)."""
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = len(self._keys)
            self._keys.append(key)
        return number

    def key(self, number: int) -> str | None:
        """The key of ``number``, or None (0, or a number never given)."""
        return self._keys[number] if 0 < number < len(self._keys) else None
