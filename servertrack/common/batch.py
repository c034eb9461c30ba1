"""The pending batch: samples validated by the readers, waiting for the next apply."""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

DEFAULT_BATCH_LIMIT = 2_000_000


class PendingBatch:
    """Columns of validated samples (canonical name, ts, cpu, ram), bounded in length.

    Readers append; the applier ``take``s everything once a second. Numbers
    go into ``array('d')`` columns: as cheap to append as a list, but 8 bytes
    a value instead of a float object each, so a large batch neither costs
    nor fragments much memory, and numpy reads it without a copy.
    """

    __slots__ = ("names", "ts", "cpu", "ram", "limit")

    def __init__(self, limit: int = DEFAULT_BATCH_LIMIT) -> None:
        self.limit = limit
        self.names: list[str] = []
        self.ts = array("d")
        self.cpu = array("d")
        self.ram = array("d")

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
        self, names: Iterable[str], ts: Iterable[float], cpu: Iterable[float], ram: Iterable[float]
    ) -> None:
        """Queue several validated samples given as equal-length columns."""
        self.names.extend(names)
        self.ts.extend(ts)
        self.cpu.extend(cpu)
        self.ram.extend(ram)

    def take(self) -> tuple[list[str], FloatColumn, FloatColumn, FloatColumn]:
        """Return every queued sample as columns (names, then float64 arrays) and start empty."""
        taken = (self.names, _as_numpy(self.ts), _as_numpy(self.cpu), _as_numpy(self.ram))
        self.names, self.ts, self.cpu, self.ram = [], array("d"), array("d"), array("d")
        return taken


FloatColumn = npt.NDArray[np.float64]


def _as_numpy(column: array) -> FloatColumn:
    # frombuffer refuses an empty buffer on some numpy versions; an empty column is cheap
    return np.frombuffer(column, dtype=np.float64) if len(column) else np.empty(0, dtype=np.float64)
