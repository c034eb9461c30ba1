"""bench/nodes.py measures the C path of node frames: the fleet generator's hellos and snapshots take it,
and give what the general decoder gives."""

from __future__ import annotations

from loadgen import FleetFactory

from servertrack.common.node_frames import node_message
from servertrack.common.node_messages import NodeHello, NodeSnapshot, decode_general
from servertrack.common.protocol import NameCache
from tests.conftest import EPOCH


def test_every_fleet_hello_and_snapshot_takes_the_fast_path() -> None:
    fleet = FleetFactory(16)
    frames = [bytes(frame) for frame in fleet.ticks(16 * 6, EPOCH)]
    kinds = {NodeHello: 0, NodeSnapshot: 0}
    for frame in frames:
        if len(frame) < 200:
            continue  # a v1 sample: not a node frame
        fast = node_message(frame, EPOCH, NameCache())
        assert fast is not None and fast == decode_general(frame, EPOCH, NameCache())
        kinds[type(fast)] += 1
    assert kinds[NodeHello] == 16 and kinds[NodeSnapshot] >= 16
