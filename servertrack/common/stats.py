"""Ingest counters of the monitoring service, shown by ``GET /stats``.

Every message received, over ZeroMQ or HTTP, is counted once in ``received``
under its kind (``sample``, ``hello``, ``bye``, ``snapshot``, or ``unknown``
when it is not even a map of a known kind), and ends in exactly one of
``applied`` or ``dropped`` (by reason) under the same kind; samples spend up
to a second ``pending`` in between. So, per kind and in total,
``received == applied + sum(dropped) + pending``.

Requests refused before their body is read as a message (wrong ``Host``,
``Origin`` or ``Content-Type``) are counted apart, in ``http_refused``.

Drops that are one agent's doing (``wrong_key``, ``over_budget``) are also
counted per agent (``by_agent``), for at most ``MAX_AGENTS_COUNTED`` agents.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any

from .node_schema import MESSAGE_KINDS

UNKNOWN_KIND = "unknown"
COUNTED_KINDS = (*MESSAGE_KINDS, UNKNOWN_KIND)
# Every count shown fits a signed 64-bit integer, so any JSON reader can take it.
MAX_COUNTER = 2**63 - 1
MAX_AGENTS_COUNTED = 10_000
# The agents ``/stats`` lists, most dropped first.
AGENTS_SHOWN = 10


def _shown(value: int) -> int:
    return value if value <= MAX_COUNTER else MAX_COUNTER


class IngestStats:
    """Messages received, applied and dropped (by reason), per kind, and the last batch's cost."""

    __slots__ = ("received", "applied", "dropped", "http_refused", "last_batch_seconds", "last_batch_size",
                 "by_agent")

    def __init__(self) -> None:
        self.received: dict[str, int] = dict.fromkeys(COUNTED_KINDS, 0)
        self.applied: dict[str, int] = dict.fromkeys(COUNTED_KINDS, 0)
        self.dropped: dict[str, Counter[str]] = {kind: Counter() for kind in COUNTED_KINDS}
        self.http_refused: Counter[str] = Counter()
        self.last_batch_seconds = 0.0
        self.last_batch_size = 0
        self.by_agent: dict[str, Counter[str]] = {}

    def refuse_from(self, agent: str, kind: str, reason: str) -> None:
        """``refuse`` one message of ``kind`` from ``agent``, and count it under the agent too."""
        self.refuse(kind, reason)
        counts = self.by_agent.get(agent)
        if counts is None:
            if len(self.by_agent) >= MAX_AGENTS_COUNTED:
                return
            counts = self.by_agent[agent] = Counter()
        counts[reason] += 1

    def agent_drops(self, agent: str) -> dict[str, int]:
        """The drops counted under ``agent`` by reason (empty if none)."""
        return {reason: _shown(count) for reason, count in sorted(self.by_agent.get(agent, {}).items())}

    def refuse(self, kind: str | None, reason: str, count: int = 1) -> None:
        """``count`` messages of ``kind`` (None: unknown) arrived and were dropped for ``reason``."""
        kind = kind if kind in self.received else UNKNOWN_KIND
        self.received[kind] += count  # type: ignore[index]
        self.dropped[kind][reason] += count  # type: ignore[index]

    def accept(self, kind: str, count: int = 1) -> None:
        """``count`` messages of ``kind`` arrived and were applied at once (node messages)."""
        self.received[kind] += count
        self.applied[kind] += count

    def total_received(self) -> int:
        """Messages received, of every kind."""
        return sum(self.received.values())

    def total_applied(self) -> int:
        """Messages applied, of every kind."""
        return sum(self.applied.values())

    def total_dropped(self) -> Counter[str]:
        """Drops by reason, over every kind."""
        total: Counter[str] = Counter()
        for reasons in self.dropped.values():
            total.update(reasons)
        return total

    def snapshot(self, lost: int, servers: int, pending: int, nodes: int = 0,
                 http: dict[str, int] | None = None) -> dict[str, Any]:
        """The counters as the JSON object ``GET /stats`` returns (``pending``: samples queued)."""
        kinds = {
            kind: {
                "received": _shown(self.received[kind]),
                "applied": _shown(self.applied[kind]),
                "dropped": {reason: _shown(count) for reason, count in sorted(self.dropped[kind].items())},
                "pending": pending if kind == "sample" else 0,
            }
            for kind in COUNTED_KINDS
        }
        refused = dict(self.http_refused)
        refused.update(http or {})
        return {
            "received": _shown(self.total_received()),
            "applied": _shown(self.total_applied()),
            "dropped": {reason: _shown(count) for reason, count in sorted(self.total_dropped().items())},
            "lost": _shown(lost),
            "servers": servers,
            "nodes": nodes,
            "pending": pending,
            "last_batch_seconds": round(self.last_batch_seconds, 6),
            "last_batch_size": self.last_batch_size,
            "kinds": kinds,
            "http_refused": {reason: _shown(count) for reason, count in sorted(refused.items())},
            "agents_dropped": self._most_dropped(),
        }

    def _most_dropped(self) -> list[dict[str, Any]]:
        ranked = heapq.nsmallest(AGENTS_SHOWN, self.by_agent.items(), key=lambda item: (-item[1].total(), item[0]))
        return [{"name": name, "dropped": self.agent_drops(name)} for name, _ in ranked]
