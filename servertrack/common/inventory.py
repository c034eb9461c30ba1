"""What the collector knows of each agent: its IP addresses and the last sequence number seen.

Agents are numbered (one dict from canonical name to index); per index the
last seq lives in a numpy array and the IP list in a plain list, so an agent
costs one dict entry, 9 bytes of arrays and a list slot beside its addresses,
and a whole turn of samples is accounted in a few array operations
(``observe_many``) instead of a Python call per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# A jump of seq larger than this is a restart (or a forged seq), not a loss: an
# agent at 1 Hz would need 11 days of silence to lose that many, and a node
# silent for 24 h is forgotten. It also keeps ``lost`` a plausible count.
MAX_COUNTED_GAP = 1_000_000
_NO_IPS: list[str] = []


class AgentInventory:
    """Per agent (canonical fqdn): last ``seq`` and IP list; counts messages lost in transit.

    A jump forward in ``seq`` counts the skipped numbers as lost; a step back
    (the agent restarted and counts from 0 again), a repeat, or a jump of more
    than ``MAX_COUNTED_GAP`` (a restart, or a forged seq) is not a loss.
    Holds at most ``max_agents`` agents; beyond that new agents are not tracked.
    """

    __slots__ = ("_index", "_free", "_seq", "_seen", "ips", "max_agents", "lost")

    def __init__(self, max_agents: int) -> None:
        self._index: dict[str, int] = {}
        self._free: list[int] = []
        self._seq = np.zeros(0, dtype=np.uint64)  # by index: the last seq seen...
        self._seen = np.zeros(0, dtype=np.bool_)  # ...if one was (a new agent's first message sets it)
        self.ips: list[list[str]] = []  # by index; a free index holds an empty list
        self.max_agents = max_agents
        self.lost = 0

    def __len__(self) -> int:
        return len(self._index)

    def ips_of(self, name: str) -> list[str] | None:
        """The IP list last accepted from agent ``name``, or None."""
        index = self._index.get(name)
        return None if index is None else self.ips[index]

    def last_seq(self, name: str) -> int | None:
        """The last sequence number seen from agent ``name``, or None."""
        index = self._index.get(name)
        return None if index is None or not self._seen[index] else int(self._seq[index])

    def indexes(self, names: Sequence[str]) -> list[int | None]:
        """The index of each agent (None: not tracked yet)."""
        return list(map(self._index.get, names))

    def admit(self, name: str) -> int | None:
        """The index of agent ``name``, tracking it first if it is new and there is room (else None).

        A new agent has no seq yet: its first message sets it without counting a loss.
        """
        index = self._index.get(name)
        if index is not None:
            return index
        if len(self._index) >= self.max_agents:
            return None
        if self._free:
            index = self._free.pop()
        else:
            index = len(self.ips)
            self.ips.append(_NO_IPS)
            if index >= self._seq.size:
                size = max(1024, 2 * self._seq.size)
                self._seq = np.concatenate((self._seq, np.zeros(size - self._seq.size, dtype=np.uint64)))
                self._seen = np.concatenate((self._seen, np.zeros(size - self._seen.size, dtype=np.bool_)))
        self._index[name] = index
        self._seen[index] = False
        return index

    def observe(self, name: str, seq: int, ips: list[str]) -> int:
        """Record a message; return how many messages were lost just before it."""
        index = self.admit(name)
        if index is None:
            return 0
        self.ips[index] = ips
        return self._account(index, seq)

    def observe_seq(self, name: str, seq: int) -> int:
        """Like ``observe`` for a message without IP addresses (the known ones are kept)."""
        index = self.admit(name)
        if index is None:
            return 0
        return self._account(index, seq)

    def _account(self, index: int, seq: int) -> int:
        previous = int(self._seq[index])
        self._seq[index] = seq
        if not self._seen[index]:
            self._seen[index] = True
            return 0
        gap = seq - previous - 1
        if 0 < gap <= MAX_COUNTED_GAP:
            self.lost += gap
            return gap
        return 0

    def observe_many(self, indexes: Sequence[int], seqs: Sequence[int]) -> int:
        """Record the seqs of a run of messages (in arrival order) of admitted agents, as ``observe_seq``
        would one by one; return how many were lost."""
        if not indexes:
            return 0
        agents = np.asarray(indexes, dtype=np.int64)
        values = np.asarray(seqs, dtype=np.uint64)
        if len(set(indexes)) == len(indexes):  # the common case: each agent once in the run
            previous = self._seq[agents]
            forward = self._seen[agents] & (values > previous)
            gaps = values[forward] - previous[forward] - np.uint64(1)
            lost = int(gaps[(gaps > 0) & (gaps <= MAX_COUNTED_GAP)].sum())
            self._seq[agents] = values
            self._seen[agents] = True
            self.lost += lost
            return lost
        order = np.argsort(agents, kind="stable")  # each agent's messages together, in arrival order
        agents, values = agents[order], values[order]
        first = np.empty(agents.size, dtype=np.bool_)
        first[0] = True
        np.not_equal(agents[1:], agents[:-1], out=first[1:])
        previous = np.empty_like(values)
        previous[1:] = values[:-1]
        previous[first] = self._seq[agents[first]]
        counted = ~first
        counted[first] = self._seen[agents[first]]  # an agent's first message ever sets its seq, losing nothing
        forward = counted & (values > previous)
        gaps = values[forward] - previous[forward] - np.uint64(1)
        lost = int(gaps[(gaps > 0) & (gaps <= MAX_COUNTED_GAP)].sum())
        last = np.empty(agents.size, dtype=np.bool_)
        last[-1] = True
        last[:-1] = first[1:]
        self._seq[agents[last]] = values[last]
        self._seen[agents[last]] = True
        self.lost += lost
        return lost

    def forget(self, names: Iterable[str]) -> None:
        """Drop agents (evicted servers)."""
        for name in names:
            index = self._index.pop(name, None)
            if index is not None:
                self.ips[index] = _NO_IPS
                self._free.append(index)
