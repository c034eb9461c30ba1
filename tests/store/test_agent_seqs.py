"""The agents' last seqs across a restart of the durable store: kept by a clean stop, taken (and removed) by the
next start, absent after a crash; a damaged file is ignored with a warning."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from servertrack.common.aggregator import Aggregator
from servertrack.common.inventory import AgentInventory
from servertrack.common.nodes import NodeRegistry
from servertrack.store.agent_seqs import FILE_NAME, AgentSeqs, take_agent_seqs, write_agent_seqs
from servertrack.store.durable import DurableStore


def started(directory: Path, inventory: AgentInventory) -> DurableStore:
    store = DurableStore(directory)
    store.open()
    store.recover(Aggregator(16, closing=True), NodeRegistry(16), inventory)
    return store


def test_a_clean_stop_keeps_the_seqs_and_only_the_next_start_takes_them(tmp_path: Path) -> None:
    inventory = AgentInventory(16)
    store = started(tmp_path, inventory)
    inventory.observe_seq("web-1", 41)
    inventory.observe_seq("web-1", 43)  # one lost
    inventory.observe_seq("web-2", 7)
    asyncio.run(store.close())
    assert (tmp_path / "checkpoint" / FILE_NAME).exists()

    restarted = AgentInventory(16)
    store = started(tmp_path, restarted)
    assert store.recovery.agent_seqs == 2 and store.health()["recovery"]["agent_seqs"] == 2
    assert not (tmp_path / "checkpoint" / FILE_NAME).exists()  # a crash after this start finds none
    assert restarted.observe_seq("web-1", 50) == 6 and restarted.lost_of("web-1") == 7
    store._release()  # a crash: no close, nothing kept

    after_crash = AgentInventory(16)
    store = started(tmp_path, after_crash)
    assert store.recovery.agent_seqs == 0 and after_crash.last_seq("web-1") is None
    assert after_crash.observe_seq("web-1", 60) == 0  # the gap of a crash is not counted
    store._release()


def test_a_damaged_seq_file_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "checkpoint" / FILE_NAME
    write_agent_seqs(path, AgentSeqs(["a", "b"], np.array([1, 2], dtype=np.uint64), np.zeros(2, dtype=np.uint64)))
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    inventory = AgentInventory(4)
    with caplog.at_level(logging.WARNING, logger="servertrack.store"):
        store = started(tmp_path, inventory)
    assert "not used" in caplog.text and inventory.last_seq("a") is None and not path.exists()
    store._release()
    assert take_agent_seqs(path) is None
