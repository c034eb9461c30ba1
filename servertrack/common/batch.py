"""The pending batch: samples validated by the readers, waiting for the next apply."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_BATCH_LIMIT = 2_000_000


class PendingBatch:
    """Column lists of validated samples (canonical name, ts, cpu, ram), bounded in length.

    Readers append; the applier ``take``s everything once a second. Appends
    are plain list appends so the per-sample cost stays tiny.
    """

    __slots__ = ("names", "ts", "cpu", "ram", "limit")

    def __init__(self, limit: int = DEFAULT_BATCH_LIMIT) -> None:
        self.limit = limit
        self.names: list[str] = []
        self.ts: list[float] = []
        self.cpu: list[float] = []
        self.ram: list[float] = []

    def __len__(self) -> int:
        return len(self.names)

    def room(self) -> int:
        """How many more samples fit before the batch is full."""
        return self.limit - len(self.names)

    def add(self, name: str, ts: float, cpu: float, ram: float) -> None:
        """Queue one validated sample (the caller checks ``room()`` first)."""
        self.names.append(name)
        self.ts.append(ts)
        self.cpu.append(cpu)
        self.ram.append(ram)

    def extend(
        self, names: Sequence[str], ts: Sequence[float], cpu: Sequence[float], ram: Sequence[float]
    ) -> None:
        """Queue several validated samples given as equal-length columns."""
        self.names.extend(names)
        self.ts.extend(ts)
        self.cpu.extend(cpu)
        self.ram.extend(ram)

    def take(self) -> tuple[list[str], list[float], list[float], list[float]]:
        """Return every queued sample as columns and start an empty batch."""
        taken = (self.names, self.ts, self.cpu, self.ram)
        self.names, self.ts, self.cpu, self.ram = [], [], [], []
        return taken
