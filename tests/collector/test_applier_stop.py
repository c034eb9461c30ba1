"""The applier stopped mid-batch (the service's SIGTERM cancels its task between two chunks): the rest of
the batch it took is applied before the cancellation goes through, never dropped."""

from __future__ import annotations

import asyncio

import pytest

from servertrack.collector.applier import FIRST_CHUNK
from tests.collector.test_ingest import make_applier
from tests.conftest import FakeClock


def test_a_cancel_between_chunks_applies_the_rest_of_the_batch_then_stops(clock: FakeClock) -> None:
    count = 4 * FIRST_CHUNK + 3  # several chunks, with a turn of the loop between two
    applier, batch, aggregator, stats, _ = make_applier(clock, max_servers=count)
    batch.extend([f"s{i}" for i in range(count)], [clock.now] * count, [1.0] * count, [2.0] * count)

    async def scenario() -> None:
        task = asyncio.create_task(applier.apply_pending(yield_between_chunks=True))
        while stats.total_applied() == 0 and len(aggregator) == 0:
            await asyncio.sleep(0)  # the first chunk is applied, the task waits for its next turn
        assert 0 < len(aggregator) < count
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(batch) == 0 and len(aggregator) == count and stats.total_applied() == count
