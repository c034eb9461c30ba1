"""Which Redis nodes fleet reads stop waiting for (``redis_store.NodeSilence``), on an injected clock."""

from __future__ import annotations

from servertrack.store.redis_store import SILENT_NODE_SECONDS, NodeSilence


def test_a_node_that_failed_a_read_is_silent_for_a_while_and_an_answer_ends_it() -> None:
    now = [1000.0]
    silence = NodeSilence(clock=lambda: now[0])
    assert not silence.silent("10.0.0.1:6379")
    silence.failed("10.0.0.1:6379")
    assert silence.silent("10.0.0.1:6379") and not silence.silent("10.0.0.2:6379")
    now[0] += SILENT_NODE_SECONDS - 0.01
    assert silence.silent("10.0.0.1:6379")
    now[0] += 0.02  # the window is over: the next read tries the node again
    assert not silence.silent("10.0.0.1:6379")
    silence.failed("10.0.0.1:6379")  # it failed again: silent again, from now
    assert silence.silent("10.0.0.1:6379")
    silence.answered("10.0.0.1:6379")  # a read that got through (another thread's, or after a failover)
    assert not silence.silent("10.0.0.1:6379")
    silence.answered("10.0.0.3:6379")  # a node never silent: nothing to forget
    assert not silence.silent("10.0.0.3:6379")
