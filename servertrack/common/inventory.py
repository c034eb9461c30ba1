"""What the collector knows of each agent: its IP addresses, the last sequence number seen, the key that
owns its name, and how much of its frame budget it has used.

Agents are numbered (one dict from canonical name to index); per index the
last seq, the messages lost, the owner key's number and the budget's state live
in numpy arrays and the IP list in a plain list, so an agent costs one dict
entry, 29 bytes of arrays and a list slot beside its addresses, and a whole turn of samples is
accounted in a few array operations (``observe_many``, ``owned_by``,
``within_budget_many``) instead of a Python call per sample.

**Restarts**: the last seq and the loss of each agent can be taken out
(``export_seqs``) when the collector stops and put back (``restore_seqs``)
when it starts again, before any message: the first message after the
restart then counts what the agent sent while the collector was down.

**Ownership** (CURVE ingest): the first key that sends for a name owns it; a
message for that name under another key is refused (``wrong_key``) until an
operator releases the name (``release``). Keys are numbered by
``common.agent_keys.AgentKeys``; 0 is "no owner" (and the key of nothing).

**Budget**: each agent may send ``rate`` frames a second, averaged, with a
burst of ``burst`` frames (a generic cell rate algorithm: one theoretical
arrival time per agent). The excess is refused (``over_budget``), so one agent
flooding for its name costs the others nothing but the reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# A jump of seq larger than this is a restart (or a forged seq), not a loss: an
# agent at 1 Hz would need 11 days of silence to lose that many, and a node
# silent for 24 h is forgotten. It also keeps ``lost`` a plausible count.
MAX_COUNTED_GAP = 1_000_000
# Frames a second an agent may send, averaged over BUDGET_SECONDS: an agent at 1 Hz sends ~1.3
# (a sample, a snapshot every fifth, a hello a minute), a fleet sender carries many names.
DEFAULT_FRAME_BUDGET = 10.0
BUDGET_SECONDS = 10.0
NO_OWNER = 0
_NO_IPS: list[str] = []


class AgentInventory:
    """Per agent (canonical fqdn): last ``seq`` and IP list; counts messages lost in transit.

    A jump forward in ``seq`` counts the skipped numbers as lost; a step back
    (the agent restarted and counts from 0 again), a repeat, or a jump of more
    than ``MAX_COUNTED_GAP`` (a restart, or a forged seq) is not a loss.
    Holds at most ``max_agents`` agents; beyond that new agents are not tracked.
    """

    __slots__ = ("_index", "_free", "_seq", "_seen", "_lost", "_owner", "_due", "ips", "max_agents", "lost",
                 "frame_interval", "budget_tolerance")

    def __init__(self, max_agents: int, frame_budget: float = DEFAULT_FRAME_BUDGET) -> None:
        """``frame_budget``: frames a second each agent may send, averaged over ``BUDGET_SECONDS``
        (0: no budget)."""
        self._index: dict[str, int] = {}
        self._free: list[int] = []
        self._seq = np.zeros(0, dtype=np.uint64)  # by index: the last seq seen...
        self._seen = np.zeros(0, dtype=np.bool_)  # ...if one was (a new agent's first message sets it)
        self._lost = np.zeros(0, dtype=np.uint64)  # by index: messages lost since the agent was first seen
        self._owner = np.zeros(0, dtype=np.uint32)  # by index: the number of the key owning the name
        self._due = np.zeros(0, dtype=np.float64)  # by index: the budget's theoretical arrival time
        self.ips: list[list[str]] = []  # by index; a free index holds an empty list
        self.max_agents = max_agents
        self.lost = 0
        # GCRA: a frame is within budget if it does not arrive more than ``budget_tolerance`` seconds
        # before its theoretical time; each frame accepted moves that time ``frame_interval`` on.
        self.frame_interval = 1.0 / frame_budget if frame_budget > 0 else 0.0
        self.budget_tolerance = BUDGET_SECONDS if frame_budget > 0 else float("inf")

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

    def lost_of(self, name: str) -> int | None:
        """Messages of agent ``name`` lost in transit (restored across restarts), or None if not tracked."""
        index = self._index.get(name)
        return None if index is None else int(self._lost[index])

    def export_seqs(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every agent with a seq: names, last seqs (uint64) and losses (uint64), for ``restore_seqs``."""
        names = [name for name, index in self._index.items() if self._seen[index]]
        indexes = np.fromiter(map(self._index.__getitem__, names), dtype=np.int64, count=len(names))
        return names, self._seq[indexes].copy(), self._lost[indexes].copy()

    def restore_seqs(self, names: Sequence[str], seqs: Sequence[int] | np.ndarray,
                     lost: Sequence[int] | np.ndarray) -> int:
        """Take agents' last seqs and losses back (at start, before any message), as many as there is
        room for; return how many were taken. Their next message counts the gap as lost."""
        taken = 0
        for name, seq, lost_before in zip(names, np.asarray(seqs, dtype=np.uint64).tolist(),
                                          np.asarray(lost, dtype=np.uint64).tolist()):
            index = self.admit(name)
            if index is None:
                break
            self._seq[index], self._seen[index], self._lost[index] = seq, True, lost_before
            taken += 1
        return taken

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
                self._seq, self._seen, self._lost, self._owner, self._due = (
                    np.concatenate((array, np.zeros(size - array.size, dtype=array.dtype)))
                    for array in (self._seq, self._seen, self._lost, self._owner, self._due))
        self._index[name] = index
        self._seen[index] = False
        self._lost[index] = 0
        self._owner[index] = NO_OWNER
        self._due[index] = 0.0
        return index

    def observe(self, name: str, seq: int, ips: list[str], key: int = NO_OWNER) -> int:
        """Record a message sent under key number ``key`` (which claims the name if nobody owns it);
        return how many messages were lost just before it."""
        index = self.admit(name)
        if index is None:
            return 0
        self.ips[index] = ips
        if self._owner[index] == NO_OWNER:
            self._owner[index] = key
        return self._account(index, seq)

    def observe_seq(self, name: str, seq: int, key: int = NO_OWNER) -> int:
        """Like ``observe`` for a message without IP addresses (the known ones are kept)."""
        index = self.admit(name)
        if index is None:
            return 0
        if self._owner[index] == NO_OWNER:
            self._owner[index] = key
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
            self._lost[index] += np.uint64(gap)
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
            counted = (gaps > 0) & (gaps <= MAX_COUNTED_GAP)
            lost = int(gaps[counted].sum())
            if lost:
                self._lost[agents[forward][counted]] += gaps[counted]  # each agent once: no repeats
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
        kept = (gaps > 0) & (gaps <= MAX_COUNTED_GAP)
        lost = int(gaps[kept].sum())
        if lost:
            np.add.at(self._lost, agents[forward][kept], gaps[kept])  # an agent may lose twice in a run
        last = np.empty(agents.size, dtype=np.bool_)
        last[-1] = True
        last[:-1] = first[1:]
        self._seq[agents[last]] = values[last]
        self._seen[agents[last]] = True
        self.lost += lost
        return lost

    def owner(self, name: str) -> int:
        """The number of the key that owns ``name`` (``NO_OWNER`` if none does, or it is not tracked)."""
        index = self._index.get(name)
        return NO_OWNER if index is None else int(self._owner[index])

    def refusal(self, name: str, key: int, now: float) -> str | None:
        """Why one more message for ``name`` under key number ``key`` at ``now`` is refused: another key
        owns the name (``wrong_key``), or the agent is over its budget (``over_budget``, else counted
        in it); None if it may be kept. A name not tracked yet is neither owned nor budgeted."""
        index = self._index.get(name)
        if index is None:
            return None
        owner = self._owner[index]
        if owner != key and owner != NO_OWNER:
            return "wrong_key"
        return None if self.within_budget(index, now) else "over_budget"

    def owned_by(self, indexes: Sequence[int], keys: Sequence[int]) -> bool:
        """Whether every agent at ``indexes`` is owned by the key beside it (a run of admitted agents)."""
        return bool((self._owner[np.asarray(indexes, dtype=np.int64)] == np.asarray(keys, dtype=np.uint32)).all())

    def restore_owner(self, name: str, key: int) -> None:
        """Make key number ``key`` the owner of ``name`` again (at start, from the stored inventory)."""
        index = self.admit(name)
        if index is not None:
            self._owner[index] = key

    def release(self, name: str) -> bool:
        """Let the next key that sends for ``name`` own it; False if nobody owned it."""
        index = self._index.get(name)
        if index is None or self._owner[index] == NO_OWNER:
            return False
        self._owner[index] = NO_OWNER
        return True

    def within_budget(self, index: int, now: float) -> bool:
        """Whether one more frame of the agent at ``index`` at ``now`` is within its budget (counted if so)."""
        due = float(self._due[index])
        if due - now > self.budget_tolerance:
            return False
        self._due[index] = max(due, now) + self.frame_interval
        return True

    def within_budget_many(self, indexes: Sequence[int], now: float) -> bool:
        """``within_budget`` for a run of distinct agents, all or nothing: True (and each counted) if every
        one of them is within budget, else False and nothing counted."""
        agents = np.asarray(indexes, dtype=np.int64)
        due = self._due[agents]
        if not (due - now <= self.budget_tolerance).all():
            return False
        self._due[agents] = np.maximum(due, now) + self.frame_interval
        return True

    def forget(self, names: Iterable[str]) -> None:
        """Drop agents (evicted servers)."""
        for name in names:
            index = self._index.pop(name, None)
            if index is not None:
                self.ips[index] = _NO_IPS
                self._free.append(index)
