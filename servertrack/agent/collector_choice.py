"""Which collector an agent given several publishes to: the rendezvous pick among those it hears.

Every collector says it is alive on its control channel (``alive``, every
``HEARTBEAT_SECONDS``) and the agent listens to all of them. A collector not
heard from for ``failover_after`` seconds is down; at the start every one
counts as heard, so none is down before ``failover_after`` has passed. The
agent publishes to the rendezvous pick (``common.rendezvous``) among the
collectors that are up, or among all when none is (then it is where it would
go without failover). Since the pick is by rendezvous, a collector's death
moves only its own agents, and they all come back when it is heard again.

No I/O: the agent's links (``collector_links``) say what they heard, the
clock is injected, and this module answers which one to publish to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_FAILOVER_AFTER", "CollectorAddress", "CollectorChoice"]

from ..common.rendezvous import chosen_index, weight
from ..common.settings import DEFAULT_FAILOVER_AFTER


@dataclass(frozen=True, slots=True)
class CollectorAddress:
    """One collector as an agent reaches it: its ingest address, and its control address (None: no control
    channel; an agent given several collectors needs every one's)."""

    ingest: str
    control: str | None = None


class CollectorChoice:
    """Tracks when each of ``collectors`` (their ingest addresses, the rendezvous candidates) was last heard
    from, and picks the one agent ``name`` publishes to.

    ``set_aside`` takes a collector out for good (its address cannot be used);
    if every one is set aside, the pick is among all again.
    """

    def __init__(self, name: str, collectors: Sequence[str], failover_after: float = DEFAULT_FAILOVER_AFTER,
                 clock: Callable[[], float] = time.monotonic, weigh: Callable[[str, str], int] = weight) -> None:
        if not collectors:
            raise ValueError("a choice of collectors needs at least one")
        if not failover_after > 0:
            raise ValueError(f"failover_after must be positive, got {failover_after!r}")
        self.name = name
        self.collectors = tuple(collectors)
        self.failover_after = failover_after
        self._clock = clock
        self._weigh = weigh
        started = clock()
        self._heard = [started] * len(self.collectors)
        self._set_aside: set[int] = set()

    def heard(self, index: int) -> None:
        """Collector ``index`` was heard from now (a heartbeat or a command)."""
        self._heard[index] = self._clock()

    def silent_for(self, index: int) -> float:
        """Seconds since collector ``index`` was last heard from (or since the start)."""
        return self._clock() - self._heard[index]

    def is_up(self, index: int) -> bool:
        """Whether collector ``index`` was heard from within ``failover_after`` (and is not set aside)."""
        return index not in self._set_aside and self.silent_for(index) < self.failover_after

    def up(self) -> list[int]:
        """The indexes of the collectors that are up, in the list's order."""
        return [index for index in range(len(self.collectors)) if self.is_up(index)]

    def pick(self) -> int:
        """The index of the collector to publish to: the rendezvous pick among those up, else among all
        (but those set aside, unless every one is)."""
        candidates = self.up()
        if not candidates:
            candidates = [index for index in range(len(self.collectors)) if index not in self._set_aside]
        if not candidates:
            candidates = list(range(len(self.collectors)))
        chosen = chosen_index(self.name, [self.collectors[index] for index in candidates], self._weigh)
        return candidates[chosen]

    def all_down(self) -> bool:
        """Whether no collector is up (the pick is then among all)."""
        return not self.up()

    def seconds_to_change(self) -> float | None:
        """Seconds until the next collector that is up would go down unheard (the pick may change then);
        None when none is up."""
        deadlines = [self._heard[index] + self.failover_after for index in self.up()]
        return max(0.0, min(deadlines) - self._clock()) if deadlines else None

    def set_aside(self, index: int) -> None:
        """Never pick collector ``index`` again while another can be (its address cannot be used)."""
        self._set_aside.add(index)

    def move_reason(self, old: int, new: int) -> str:
        """Why the pick moved from collector ``old`` to ``new``, for the agent's line on stderr."""
        if not self.is_up(old):
            reason = f"collector {self.collectors[old]} silent for {self.silent_for(old):.1f} s"
            return reason + (" and every other too" if self.all_down() else "")
        return f"collector {self.collectors[new]} is heard again"
