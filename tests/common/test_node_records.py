"""A node's durable record: it gives back the node it was made from, and reads the records written before."""

from __future__ import annotations

import msgpack
import pytest

from servertrack.common.node_records import decode_node, encode_node
from servertrack.common.nodes import Node

KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


def _node(**changes: object) -> Node:
    node = Node(name="web-01", ips=["10.0.0.1"], info={"hostname": "web-01"}, registered=1.0, last_seen=2.0,
                desired_paused=True, reported_paused=False, controllable=True)
    for key, value in changes.items():
        setattr(node, key, value)
    return node


@pytest.mark.parametrize("owner", [None, KEY])
def test_a_record_gives_back_the_node_and_the_key_that_owns_its_name(owner: str | None) -> None:
    node = decode_node(encode_node(_node(owner_key=owner)))
    assert node.owner_key == owner and node.name == "web-01" and node.desired_paused is True


def test_a_record_written_before_ownership_reads_as_owned_by_nobody() -> None:
    fields = msgpack.unpackb(encode_node(_node()))
    del fields["owner_key"]
    assert decode_node(msgpack.packb(fields)).owner_key is None


def test_a_record_whose_owner_is_not_text_is_refused() -> None:
    fields = msgpack.unpackb(encode_node(_node()))
    fields["owner_key"] = 7
    with pytest.raises(ValueError):
        decode_node(msgpack.packb(fields))
