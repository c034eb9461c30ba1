"""What the collector knows of each agent: its IP addresses and the last sequence number seen."""

from __future__ import annotations

from collections.abc import Iterable

# A jump of seq larger than this is a restart (or a forged seq), not a loss: an
# agent at 1 Hz would need 11 days of silence to lose that many, and a node
# silent for 24 h is forgotten. It also keeps ``lost`` a plausible count.
MAX_COUNTED_GAP = 1_000_000


class AgentInventory:
    """Per agent (canonical fqdn): last ``seq`` and IP list; counts messages lost in transit.

    A jump forward in ``seq`` counts the skipped numbers as lost; a step back
    (the agent restarted and counts from 0 again), a repeat, or a jump of more
    than ``MAX_COUNTED_GAP`` (a restart, or a forged seq) is not a loss.
    Holds at most ``max_agents`` agents; beyond that new agents are not tracked.
    """

    __slots__ = ("_agents", "max_agents", "lost")

    def __init__(self, max_agents: int) -> None:
        self._agents: dict[str, list] = {}
        self.max_agents = max_agents
        self.lost = 0

    def __len__(self) -> int:
        return len(self._agents)

    def ips_of(self, name: str) -> list[str] | None:
        """The IP list last accepted from agent ``name``, or None."""
        record = self._agents.get(name)
        return None if record is None else record[1]

    def last_seq(self, name: str) -> int | None:
        """The last sequence number seen from agent ``name``, or None."""
        record = self._agents.get(name)
        return None if record is None else record[0]

    def observe(self, name: str, seq: int, ips: list[str]) -> int:
        """Record a message; return how many messages were lost just before it."""
        record = self._agents.get(name)
        if record is None:
            if len(self._agents) < self.max_agents:
                self._agents[name] = [seq, ips]
            return 0
        gap = seq - record[0] - 1
        record[0] = seq
        record[1] = ips
        if 0 < gap <= MAX_COUNTED_GAP:
            self.lost += gap
            return gap
        return 0

    def observe_seq(self, name: str, seq: int) -> int:
        """Like ``observe`` for a message without IP addresses (the known ones are kept)."""
        record = self._agents.get(name)
        return self.observe(name, seq, [] if record is None else record[1])

    def forget(self, names: Iterable[str]) -> None:
        """Drop agents (evicted servers)."""
        for name in names:
            self._agents.pop(name, None)
