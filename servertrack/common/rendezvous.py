"""Rendezvous (highest-random-weight) hashing: which of several collectors an agent publishes to.

Every agent scores each collector by a hash of (collector, agent name) and
takes the highest: all agents agree without talking to each other, the
agents spread evenly, and when a collector joins or leaves only the agents
that must move do (those whose highest score was the one that left, or is
the newcomer's). The hash is BLAKE2b, the same on every machine and Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence


def weight(candidate: str, key: str) -> int:
    """The score of ``candidate`` for ``key``: 64 bits of BLAKE2b over both (a NUL between them)."""
    digest = hashlib.blake2b(f"{candidate}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def chosen_index(key: str, candidates: Sequence[str], weigh: Callable[[str, str], int] = weight) -> int:
    """The index in ``candidates`` of the one ``key`` goes to (ties, never seen in 64 bits, to the first);
    ``weigh`` scores a candidate for a key (tests give one that ties)."""
    if not candidates:
        raise ValueError("rendezvous hashing needs at least one candidate")
    scores = [weigh(candidate, key) for candidate in candidates]
    return scores.index(max(scores))
