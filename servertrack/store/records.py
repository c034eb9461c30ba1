"""What crosses the store interface: applied batches (the log), history blocks, node records.

Every record is plain data (numpy columns, bytes, names): the loop builds it,
hands it to the store's writer thread, and never touches it again.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ..common.periods import (
    BASE_PART,
    BUCKETS_PER_PERIOD,
    HOUR_WIDTH,
    MINUTE_WIDTH,
    HistoryBlocks,
)

__all__ = ["BASE_PART", "BUCKETS_PER_PERIOD", "HOUR_WIDTH", "MAX_READ_BUCKETS", "MINUTE_WIDTH", "HistoryBlocks",
           "LoggedBatch", "SnapshotRecord", "StoredCells"]

MAX_READ_BUCKETS = 1_000_000  # what one read of any backend may ask for: its cells stay a few tens of MB


class LoggedBatch(NamedTuple):
    """One applied batch as the log keeps it: enough to apply it again, exactly.

    ``seconds`` is ``floor(ts)`` of each sample (the aggregator buckets by whole
    seconds); loads are fixed-point in units of 1e-5 percent (the aggregator
    rounds to that on the way in), so a replay stores the same values.
    """

    batch_id: int
    applied_at: float
    names: list[str]
    seconds: npt.NDArray[np.int64]
    cpu_fixed: npt.NDArray[np.uint32]
    ram_fixed: npt.NDArray[np.uint32]


class StoredCells(NamedTuple):
    """One server's merged buckets ``first_bucket .. first_bucket + count - 1`` of ``width`` seconds
    read from the store (zeros where nothing is stored); min/max fixed-point as in ``HistoryBlocks``."""

    first_bucket: int
    width: int
    samples: npt.NDArray[np.uint32]
    cpu_sum: npt.NDArray[np.float64]
    ram_sum: npt.NDArray[np.float64]
    cpu_min: npt.NDArray[np.uint32]
    cpu_max: npt.NDArray[np.uint32]
    ram_min: npt.NDArray[np.uint32]
    ram_max: npt.NDArray[np.uint32]


class SnapshotRecord(NamedTuple):
    """The numeric sections of one node snapshot (``cpu``, ``memory``, ``swap``, ``disk_io``,
    ``network``), as a msgpack map, taken at whole second ``ts``."""

    node: str
    ts: int
    sections: bytes
