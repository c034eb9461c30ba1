"""Protocol v2 node messages: hello, bye and snapshot frames, next to v1 samples."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest

from servertrack.common.errors import InvalidSample
from servertrack.common.node_messages import (
    NodeBye,
    NodeHello,
    NodeSnapshot,
    decode_message,
    encode_bye,
    encode_hello,
    encode_snapshot,
)
from servertrack.common.node_schema import (
    MAX_CPUS,
    MAX_DISKS,
    MAX_FREQUENCY_MHZ,
    MAX_INTERFACES,
    MAX_NAME,
    MAX_PID,
    MAX_TEXT,
    MAX_TOP_PROCESSES,
)
from servertrack.common.protocol import (
    MAX_FRAME_BYTES,
    NameCache,
    Sample,
    encode_sample,
)
from tests.conftest import EPOCH
from tests.node_fixtures import HELLO_INFO
from tests.node_fixtures import process_entry as process
from tests.node_fixtures import stats_body as stats

NOW = EPOCH



def decode(frame: bytes) -> object:
    return decode_message(frame, NOW, NameCache())


def test_v1_sample_is_still_a_sample() -> None:
    sent = Sample("web-01", NOW, 1.0, 2.0, 0, [])
    assert decode(encode_sample(sent)) == sent


def test_v2_sample_kind_is_a_sample() -> None:
    frame = msgpack.packb({"v": 2, "kind": "sample", "fqdn": "web-01", "ts": NOW, "ip": [], "cpu": 1.0,
                           "ram": 2.0, "seq": 3})
    assert decode(frame) == Sample("web-01", NOW, 1.0, 2.0, 3, [])


def test_hello_round_trips() -> None:
    message = decode(encode_hello("Node01.Example", NOW, 0, ["10.0.0.5"], HELLO_INFO))
    assert message == NodeHello("node01.example", NOW, 0, ["10.0.0.5"], HELLO_INFO)


def test_bye_round_trips() -> None:
    assert decode(encode_bye("node01", NOW, 9)) == NodeBye("node01", NOW, 9)


def test_snapshot_round_trips_and_drops_unknown_keys() -> None:
    sent = stats(extra_section={"x": 1})
    sent["processes"]["top_cpu"][0]["extra"] = "dropped too"
    message = decode(encode_snapshot("node01", NOW, 4, sent))
    assert isinstance(message, NodeSnapshot)
    del sent["extra_section"], sent["processes"]["top_cpu"][0]["extra"]
    assert message.stats == sent


def test_a_snapshot_of_an_older_agent_without_the_newer_fields_reads_them_as_null() -> None:
    sent = stats()
    del sent["cpu"]["times_seconds"], sent["memory"]["free"]
    for key in ("read_count", "write_count", "read_bytes", "write_bytes"):
        del sent["disk_io"][key]
    message = decode(encode_snapshot("node01", NOW, 4, sent))
    assert isinstance(message, NodeSnapshot)
    assert message.stats["cpu"]["times_seconds"] is None and message.stats["memory"]["free"] is None
    assert message.stats["disk_io"] == {**sent["disk_io"], "read_count": None, "write_count": None,
                                        "read_bytes": None, "write_bytes": None}
    assert message.stats["cpu"]["percent"] == sent["cpu"]["percent"]


def test_cumulative_counters_take_every_signed_64_bit_value_and_cpu_seconds_floats_or_ints() -> None:
    sent = stats(disk_io={**stats()["disk_io"], "read_count": 0, "write_count": 2**63 - 1, "read_bytes": 1,
                          "write_bytes": 2**62},
                 cpu={**stats()["cpu"], "times_seconds": {"user": 0, "system": 0.01, "idle": 1e15, "iowait": 7}})
    message = decode(encode_snapshot("node01", NOW, 4, sent))
    assert isinstance(message, NodeSnapshot) and message.stats == sent


def test_snapshot_larger_than_a_frame_cannot_be_encoded() -> None:
    huge = stats(disks=[{"device": "d" * 256, "mountpoint": "m" * 256, "fstype": "f", "total": 1, "used": 1,
                         "free": 0, "percent": 100.0}] * 400)
    with pytest.raises(ValueError):
        encode_snapshot("node01", NOW, 0, huge)


def test_a_snapshot_at_every_bound_fits_in_a_frame() -> None:
    name, text = "n" * MAX_NAME, "t" * MAX_TEXT
    top = [process(MAX_PID - i, name=name, user=name, status=name, cmdline=text) for i in range(MAX_TOP_PROCESSES)]
    biggest = stats(
        cpu={"percent": 99.99999, "per_cpu": [99.99999] * MAX_CPUS, "load_avg": [1e6, 1e6, 1e6],
             "times_percent": {"user": 33.33333, "system": 33.33333, "idle": 33.33333, "iowait": 0.00001},
             "freq_mhz": MAX_FREQUENCY_MHZ,
             "times_seconds": {"user": 1e15, "system": 1e15, "idle": 1e15, "iowait": 1e15}},
        memory={"total": 2**64 - 1, "available": 2**64 - 1, "used": 2**64 - 1, "percent": 100.0, "free": 2**64 - 1},
        disks=[{"device": name, "mountpoint": text, "fstype": name, "total": 2**63, "used": 2**63, "free": 2**63,
                "percent": 99.99999}] * MAX_DISKS,
        disk_io={"read_bytes_per_s": 1e12, "write_bytes_per_s": 1e12, "read_ops_per_s": 1e9, "write_ops_per_s": 1e9,
                 "read_count": 2**63 - 1, "write_count": 2**63 - 1, "read_bytes": 2**63 - 1, "write_bytes": 2**63 - 1},
        network=[{"interface": name, "rx_bytes_per_s": 1e12, "tx_bytes_per_s": 1e12, "rx_packets_per_s": 1e9,
                  "tx_packets_per_s": 1e9, "rx_errors": 2**63, "tx_errors": 2**63, "rx_drops": 2**63,
                  "tx_drops": 2**63}] * MAX_INTERFACES,
        processes={"count": 2**31, "top_cpu": top, "top_memory": top},
    )
    frame = encode_snapshot("n" * 253, NOW, 2**63, biggest)
    assert len(frame) <= MAX_FRAME_BYTES
    assert isinstance(decode(frame), NodeSnapshot)


def with_stats(path: list[str | int], value: object) -> bytes:
    snapshot = copy.deepcopy(stats())
    target: Any = snapshot
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return msgpack.packb({"v": 2, "kind": "snapshot", "fqdn": "n", "ts": NOW, "seq": 0, "stats": snapshot})


@pytest.mark.parametrize(
    "path, value, named",
    [
        (["cpu", "percent"], 101.0, "stats.cpu.percent"),
        (["cpu", "per_cpu"], [1.0, "x"], "stats.cpu.per_cpu[1]"),
        (["cpu", "load_avg"], [1.0, 2.0], "stats.cpu.load_avg"),
        (["memory", "total"], -1, "stats.memory.total"),
        (["memory", "used"], 1.5, "stats.memory.used"),
        (["swap", "percent"], True, "stats.swap.percent"),
        (["disks"], [{}], "stats.disks[0].device"),
        (["network", 0, "rx_bytes_per_s"], -1.0, "stats.network[0].rx_bytes_per_s"),
        (["processes", "top_cpu", 1, "pid"], "1", "stats.processes.top_cpu[1].pid"),
        (["processes", "top_cpu"], [process(i) for i in range(MAX_TOP_PROCESSES + 1)], "stats.processes.top_cpu"),
        (["processes", "top_memory", 0, "cmdline"], "c" * 257, "stats.processes.top_memory[0].cmdline"),
        (["processes", "top_memory", 0, "name"], "c" * 65, "stats.processes.top_memory[0].name"),
        (["processes"], None, "stats.processes"),
        # the fields added for the compatible /get_stats: bounded like the others
        (["disk_io", "read_count"], 2**63, "stats.disk_io.read_count"),
        (["disk_io", "write_count"], -1, "stats.disk_io.write_count"),
        (["disk_io", "read_bytes"], 1.5, "stats.disk_io.read_bytes"),
        (["disk_io", "write_bytes"], True, "stats.disk_io.write_bytes"),
        (["disk_io", "write_bytes"], "1", "stats.disk_io.write_bytes"),
        (["cpu", "times_seconds"], [1.0, 2.0, 3.0], "stats.cpu.times_seconds"),
        (["cpu", "times_seconds", "idle"], 1e15 * 1.01, "stats.cpu.times_seconds.idle"),
        (["cpu", "times_seconds", "user"], -0.5, "stats.cpu.times_seconds.user"),
        (["cpu", "times_seconds", "system"], None, "stats.cpu.times_seconds.system"),
        (["cpu", "times_seconds", "iowait"], float("nan"), "stats.cpu.times_seconds.iowait"),
        (["memory", "free"], -1, "stats.memory.free"),
        (["memory", "free"], "9 GiB", "stats.memory.free"),
        (["memory", "free"], 2.0, "stats.memory.free"),
    ],
)
def test_bad_snapshots_are_refused_naming_the_path(path: list[str | int], value: object, named: str) -> None:
    with pytest.raises(InvalidSample) as refused:
        decode(with_stats(path, value))
    assert refused.value.field == named and named in refused.value.message


@pytest.mark.parametrize(
    "message, reason",
    [
        ({"v": 1, "kind": "hello", "fqdn": "n", "ts": NOW, "seq": 0}, "bad_version"),
        ({"v": 2, "kind": "reboot", "fqdn": "n", "ts": NOW, "seq": 0}, "unknown_kind"),
        ({"v": 2, "kind": "bye", "fqdn": "n", "ts": NOW}, "missing_field"),
        ({"v": 2, "kind": "bye", "fqdn": "bad name", "ts": NOW, "seq": 0}, "bad_name"),
        ({"v": 2, "kind": "bye", "fqdn": "n", "ts": NOW - 90_000, "seq": 0}, "bad_timestamp"),
        ({"v": 2, "kind": "hello", "fqdn": "n", "ts": NOW, "seq": 0, **HELLO_INFO}, "missing_field"),
        ({"v": 2, "kind": "hello", "fqdn": "n", "ts": NOW, "seq": 0, "ip": [], **HELLO_INFO, "cpu_count": 0},
         "bad_field"),
        ({"v": 2, "kind": "snapshot", "fqdn": "n", "ts": NOW, "seq": 0}, "bad_field"),
    ],
)
def test_bad_node_messages_are_refused_with_a_reason(message: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidSample) as refused:
        decode(msgpack.packb(message))
    assert refused.value.reason == reason


def test_text_bounds_count_utf8_bytes() -> None:
    with pytest.raises(InvalidSample) as refused:
        decode(with_stats(["processes", "top_cpu", 0, "name"], "é" * (MAX_NAME // 2 + 1)))
    assert refused.value.field == "stats.processes.top_cpu[0].name"
    assert isinstance(decode(with_stats(["processes", "top_cpu", 0, "name"], "é" * (MAX_NAME // 2))), NodeSnapshot)
