"""NodeStatsCollector against a fake psutil (schema, bounds, rates, process scans) and once against the real one."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from agent_doubles import (
    FakeNodePsutil,
    FakeProcess,
    disk_counters,
    disk_usage,
    net_counters,
    partition,
    process_info,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.agent.node_stats import PROCESS_ATTRS, NodeStatsCollector
from servertrack.agent.rates import WRAP_32
from servertrack.common.node_messages import HELLO_FIELDS, STATS, encode_snapshot
from servertrack.common.node_schema import MAX_NAME, MAX_TEXT
from tests.conftest import FakeClock

# --------------------------------------------------------------------------- the schema, checked independently

INF = math.inf
PERCENT = ("float", 0.0, 100.0)
RATE = ("float", 0.0, INF)
COUNT = ("int", 0, INF)
TOTAL = ("int", 0, 2**63 - 1)  # cumulative counters: what a signed 64-bit integer holds
CPU_SECONDS = ("float", 0.0, 1e15)
TEXT = ("str", 256)

PROC = {
    "pid": COUNT, "name": TEXT, "user": ("optional", TEXT), "status": TEXT,
    "cpu_percent": ("float", 0.0, INF), "rss": COUNT, "memory_percent": PERCENT,
    "create_time": ("float", 0.0, INF), "cmdline": TEXT,
}
SNAPSHOT = {
    "cpu": {
        "percent": PERCENT,
        "per_cpu": ("list", PERCENT, 1024),
        "load_avg": ("tuple3", ("float", 0.0, INF)),
        "times_percent": {"user": PERCENT, "system": PERCENT, "idle": PERCENT, "iowait": PERCENT},
        "freq_mhz": ("optional", ("float", 0.0, INF)),
        "times_seconds": ("optional", {"user": CPU_SECONDS, "system": CPU_SECONDS, "idle": CPU_SECONDS,
                                       "iowait": CPU_SECONDS}),
    },
    "memory": {"total": COUNT, "available": COUNT, "used": COUNT, "percent": PERCENT, "free": COUNT},
    "swap": {"total": COUNT, "used": COUNT, "percent": PERCENT},
    "disks": ("list", {
        "device": TEXT, "mountpoint": TEXT, "fstype": TEXT, "total": COUNT, "used": COUNT, "free": COUNT, "percent": PERCENT,
    }, 64),
    "disk_io": ("optional", {"read_bytes_per_s": RATE, "write_bytes_per_s": RATE, "read_ops_per_s": RATE, "write_ops_per_s": RATE,
                             "read_count": TOTAL, "write_count": TOTAL, "read_bytes": TOTAL, "write_bytes": TOTAL}),
    "network": ("list", {
        "interface": TEXT, "rx_bytes_per_s": RATE, "tx_bytes_per_s": RATE, "rx_packets_per_s": RATE, "tx_packets_per_s": RATE,
        "rx_errors": COUNT, "tx_errors": COUNT, "rx_drops": COUNT, "tx_drops": COUNT,
    }, 64),
    "processes": {"count": COUNT, "top_cpu": ("list", PROC, 20), "top_memory": ("list", PROC, 20)},
}


def conforms(value: Any, spec: Any, path: str = "snapshot") -> None:
    """Assert ``value`` matches ``spec`` exactly: same keys, exact types (no bool, no namedtuple), bounds."""
    if isinstance(spec, dict):
        assert type(value) is dict, f"{path}: {type(value).__name__}, not dict"
        assert set(value) == set(spec), f"{path}: keys {sorted(value)} != {sorted(spec)}"
        for key, item in spec.items():
            conforms(value[key], item, f"{path}.{key}")
        return
    kind = spec[0]
    if kind == "optional":
        if value is not None:
            conforms(value, spec[1], path)
    elif kind in ("list", "tuple3"):
        assert type(value) is list, f"{path}: {type(value).__name__}, not list"
        assert len(value) == 3 if kind == "tuple3" else len(value) <= spec[2], f"{path}: {len(value)} items"
        for index, item in enumerate(value):
            conforms(item, spec[1], f"{path}[{index}]")
    elif kind == "str":
        assert type(value) is str and len(value) <= spec[1], f"{path}: {value!r}"
    else:
        assert type(value) is {"float": float, "int": int}[kind], f"{path}: {value!r} is {type(value).__name__}, not {kind}"
        assert math.isfinite(value) and spec[1] <= value <= spec[2], f"{path}: {value!r} outside [{spec[1]}, {spec[2]}]"


def assert_valid(snapshot: dict[str, Any]) -> None:
    """Our own checker, the protocol's validator, and the frame size limit."""
    conforms(snapshot, SNAPSHOT)
    assert STATS.check(snapshot, "stats") == snapshot
    encode_snapshot("node01", 1.0, 1, snapshot)


def collector(fake: FakeNodePsutil, clock: FakeClock | None = None, **kwargs: Any) -> NodeStatsCollector:
    return NodeStatsCollector(fake, clock=clock or FakeClock(), hostname=lambda: "node01.corp.internal", **kwargs)


# --------------------------------------------------------------------------- schema and the static readings


def test_snapshots_match_the_schema_exactly() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    first = stats.snapshot()
    assert_valid(first)
    assert first["disk_io"] is None
    clock.advance(5.0)
    second = stats.snapshot()
    assert_valid(second)
    assert second["disk_io"] is not None


def test_cpu_readings_are_primed_and_never_block() -> None:
    fake = FakeNodePsutil()
    stats = collector(fake)
    assert fake.called("cpu_times_percent") == [{"interval": None}]
    assert fake.called("cpu_percent") == [{"interval": None, "percpu": True}]
    stats.snapshot()
    assert fake.called("cpu_times_percent") == [{"interval": None}] * 2
    # Only per-CPU: the whole-machine cpu_percent() reference point belongs to LoadSampler.
    assert fake.called("cpu_percent") == [{"interval": None, "percpu": True}] * 2


def test_cpu_section() -> None:
    cpu = collector(FakeNodePsutil()).snapshot()["cpu"]
    assert cpu == {
        "percent": 30.0,  # everything but idle (65) and iowait (5), as psutil.cpu_percent counts
        "per_cpu": [10.0, 20.0, 30.0, 40.0],
        "load_avg": [0.5, 0.25, 0.125],
        "times_percent": {"user": 20.0, "system": 10.0, "idle": 65.0, "iowait": 5.0},
        "freq_mhz": 2400.0,
        "times_seconds": {"user": 2498.32, "system": 526.52, "idle": 90185.2, "iowait": 12.25},
    }


def test_cpu_seconds_are_cumulative_totals_read_without_blocking() -> None:
    fake = FakeNodePsutil()
    stats = collector(fake)
    fake.times = SimpleNamespace(user=10.0, system=5.0, idle=100.0, iowait=1.0)
    assert stats.snapshot()["cpu"]["times_seconds"] == {"user": 10.0, "system": 5.0, "idle": 100.0, "iowait": 1.0}
    fake.times = SimpleNamespace(user=12.5, system=6.0, idle=103.5, iowait=1.0)
    assert stats.snapshot()["cpu"]["times_seconds"] == {"user": 12.5, "system": 6.0, "idle": 103.5, "iowait": 1.0}
    assert fake.called("cpu_times") == [{"percpu": False}] * 2  # the machine's totals, one call a snapshot


def test_cpu_seconds_are_rounded_clamped_and_missing_fields_zero() -> None:
    fake = FakeNodePsutil()
    fake.times = SimpleNamespace(user=1.23456, system=-3.0, idle=1e30)  # macOS: no iowait; nonsense values
    times = collector(fake).snapshot()["cpu"]["times_seconds"]
    assert times == {"user": 1.23, "system": 0.0, "idle": 1e15, "iowait": 0.0}
    fake.times = SimpleNamespace(user=math.nan, system=math.inf, idle=True, iowait="7")
    snapshot = collector(fake).snapshot()
    assert snapshot["cpu"]["times_seconds"] == {"user": 0.0, "system": 0.0, "idle": 0.0, "iowait": 0.0}
    assert_valid(snapshot)


@pytest.mark.parametrize("failure", [NotImplementedError(), OSError("no /proc/stat"), RuntimeError()])
def test_cpu_seconds_unavailable_are_none(failure: BaseException) -> None:
    fake = FakeNodePsutil()
    fake.times = failure
    snapshot = collector(fake).snapshot()
    assert snapshot["cpu"]["times_seconds"] is None
    assert_valid(snapshot)


def test_a_platform_without_iowait_reports_zero() -> None:
    fake = FakeNodePsutil()
    fake.times_percent = SimpleNamespace(user=12.5, system=2.5, idle=85.0)  # macOS / Windows fields
    cpu = collector(fake).snapshot()["cpu"]
    assert cpu["times_percent"] == {"user": 12.5, "system": 2.5, "idle": 85.0, "iowait": 0.0}
    assert cpu["percent"] == 15.0


def test_cpu_values_are_clamped_and_per_cpu_capped() -> None:
    fake = FakeNodePsutil()
    fake.per_cpu = [100.0001, -0.1, math.nan] + [5.0] * 2000
    fake.times_percent = SimpleNamespace(user=100.1, system=0.0, idle=0.0, iowait=0.0)
    fake.loadavg = (-1.0, math.inf, 2)
    cpu = collector(fake).snapshot()["cpu"]
    assert cpu["per_cpu"][:3] == [100.0, 0.0, 0.0] and len(cpu["per_cpu"]) == 1024
    assert cpu["times_percent"]["user"] == 100.0 and cpu["percent"] == 100.0
    assert cpu["load_avg"] == [0.0, 0.0, 2.0]


@pytest.mark.parametrize(
    "freq",
    [None, NotImplementedError(), FileNotFoundError("/sys/devices/system/cpu"), OSError(), SimpleNamespace(current=math.nan)],
    ids=["none", "not-implemented", "no-sysfs", "oserror", "nan"],
)
def test_cpu_frequency_unavailable_is_none(freq: Any) -> None:
    fake = FakeNodePsutil()
    fake.freq = freq
    assert collector(fake).snapshot()["cpu"]["freq_mhz"] is None


def test_platforms_lacking_optional_functions() -> None:
    fake = FakeNodePsutil()
    stats = collector(fake)
    fake.loadavg = OSError("no loadavg")
    fake.swap = RuntimeError("no swap info")
    fake.disk_io = None
    fake.nics = {}
    snapshot = stats.snapshot()
    assert_valid(snapshot)
    assert snapshot["cpu"]["load_avg"] == [0.0, 0.0, 0.0]
    assert snapshot["swap"] == {"total": 0, "used": 0, "percent": 0.0}
    assert snapshot["disk_io"] is None and snapshot["network"] == []


def test_memory_and_swap() -> None:
    snapshot = collector(FakeNodePsutil()).snapshot()
    assert snapshot["memory"] == {"total": 16 << 30, "available": 10 << 30, "used": 6 << 30, "percent": 37.5,
                                  "free": 9 << 30}
    assert snapshot["swap"] == {"total": 2 << 30, "used": 1 << 28, "percent": 12.5}


# --------------------------------------------------------------------------- disks


def test_disks_physical_partitions_only_and_unreadable_ones_skipped() -> None:
    fake = FakeNodePsutil()
    fake.partitions = [partition("/dev/sda1", "/"), partition("/dev/sdb1", "/secret"), partition("/dev/sdc1", "/gone"),
                       partition("/dev/sdd1", "/data", "xfs")]
    fake.usage = {"/": disk_usage(100, 25), "/secret": PermissionError(13, "denied"), "/gone": OSError(5, "EIO"),
                  "/data": disk_usage(1000, 500)}
    disks = collector(fake).snapshot()["disks"]
    assert fake.called("disk_partitions") == [{"all": False}]
    assert disks == [
        {"device": "/dev/sda1", "mountpoint": "/", "fstype": "ext4", "total": 100, "used": 25, "free": 75, "percent": 25.0},
        {"device": "/dev/sdd1", "mountpoint": "/data", "fstype": "xfs", "total": 1000, "used": 500, "free": 500, "percent": 50.0},
    ]


def test_at_most_64_disks_counting_only_readable_ones() -> None:
    fake = FakeNodePsutil()
    fake.partitions = [partition(f"/dev/d{i}", f"/m{i}") for i in range(100)]
    fake.usage = {f"/m{i}": disk_usage(100, i) for i in range(10, 100)}  # the first ten are unreadable
    disks = collector(fake).snapshot()["disks"]
    assert [disk["mountpoint"] for disk in disks] == [f"/m{i}" for i in range(10, 74)]


def test_long_disk_strings_are_truncated() -> None:
    fake = FakeNodePsutil()
    fake.partitions = [partition("/dev/" + "x" * 300, "/" + "y" * 300, "z" * 300)]
    fake.usage = {"/" + "y" * 300: disk_usage(10, 1)}
    [disk] = collector(fake).snapshot()["disks"]
    assert len(disk["device"]) == len(disk["fstype"]) == MAX_NAME
    assert len(disk["mountpoint"]) == MAX_TEXT


# --------------------------------------------------------------------------- disk I/O rates


def test_disk_io_rates_between_snapshots() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    fake.disk_io = disk_counters(read_bytes=1_000, write_bytes=2_000, read_count=10, write_count=20)
    assert stats.snapshot()["disk_io"] is None
    clock.advance(4.0)
    fake.disk_io = disk_counters(read_bytes=9_000, write_bytes=2_000, read_count=50, write_count=22)
    assert stats.snapshot()["disk_io"] == {"read_bytes_per_s": 2_000.0, "write_bytes_per_s": 0.0, "read_ops_per_s": 10.0, "write_ops_per_s": 0.5,
                                           "read_count": 50, "write_count": 22, "read_bytes": 9_000, "write_bytes": 2_000}
    # Raw counters (nowrap=False): wraps and resets are rates.py's decision alone.
    assert fake.called("disk_io_counters")[-1] == {"perdisk": False, "nowrap": False}


def test_disk_io_wrap_reset_and_disappearance() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    fake.disk_io = disk_counters(read_bytes=WRAP_32 - 100)
    stats.snapshot()
    clock.advance(2.0)
    fake.disk_io = disk_counters(read_bytes=300)
    assert stats.snapshot()["disk_io"]["read_bytes_per_s"] == 200.0  # wrapped: 100 + 300 over 2 s
    clock.advance(2.0)
    fake.disk_io = disk_counters(read_bytes=10)  # reset (far from any limit)
    assert stats.snapshot()["disk_io"]["read_bytes_per_s"] == 0.0
    fake.disk_io = None  # counters gone: no figure, and the old reading is forgotten
    clock.advance(2.0)
    assert stats.snapshot()["disk_io"] is None
    fake.disk_io = disk_counters(read_bytes=10**12)
    clock.advance(2.0)
    assert stats.snapshot()["disk_io"] is None


def test_disk_io_totals_are_the_counters_as_read_even_across_a_reset() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    fake.disk_io = disk_counters(read_bytes=5_000, write_bytes=6_000, read_count=7, write_count=8)
    stats.snapshot()
    clock.advance(1.0)
    fake.disk_io = disk_counters(read_bytes=10, write_bytes=20, read_count=1, write_count=2)  # a reboot's fresh counters
    disk_io = stats.snapshot()["disk_io"]
    assert disk_io["read_bytes_per_s"] == 0.0  # the rate of a reset interval is unknown: 0
    assert (disk_io["read_count"], disk_io["write_count"], disk_io["read_bytes"], disk_io["write_bytes"]) == (1, 2, 10, 20)


def test_disk_io_totals_are_capped_at_the_largest_signed_64_bit_integer() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    fake.disk_io = disk_counters(read_bytes=2**64 - 10, write_bytes=2**63, read_count=2**63 - 1, write_count=-5)
    stats.snapshot()
    clock.advance(1.0)
    fake.disk_io = disk_counters(read_bytes=2**64 - 1, write_bytes=2**63 + 1, read_count=2**63 - 1, write_count=-5)
    snapshot = stats.snapshot()
    disk_io = snapshot["disk_io"]
    assert disk_io["read_bytes"] == disk_io["write_bytes"] == disk_io["read_count"] == 2**63 - 1
    assert disk_io["write_count"] == 0
    assert disk_io["read_bytes_per_s"] == 9.0  # the rate still comes from the raw counters
    assert_valid(snapshot)


# --------------------------------------------------------------------------- network rates


def test_network_rates_between_snapshots_and_cumulative_errors() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    fake.nics = {"eth0": net_counters(bytes_recv=1_000, bytes_sent=500, packets_recv=10, packets_sent=5, errin=3, dropout=7)}
    first = stats.snapshot()["network"]
    assert first == [{"interface": "eth0", "rx_bytes_per_s": 0.0, "tx_bytes_per_s": 0.0, "rx_packets_per_s": 0.0,
                      "tx_packets_per_s": 0.0, "rx_errors": 3, "tx_errors": 0, "rx_drops": 0, "tx_drops": 7}]
    clock.advance(2.5)
    fake.nics = {"eth0": net_counters(bytes_recv=6_000, bytes_sent=1_500, packets_recv=20, packets_sent=10, errin=4, dropout=7)}
    assert stats.snapshot()["network"] == [{"interface": "eth0", "rx_bytes_per_s": 2_000.0, "tx_bytes_per_s": 400.0,
                                            "rx_packets_per_s": 4.0, "tx_packets_per_s": 2.0, "rx_errors": 4, "tx_errors": 0,
                                            "rx_drops": 0, "tx_drops": 7}]
    assert fake.called("net_io_counters")[-1] == {"pernic": True, "nowrap": False}


def test_network_new_wrapped_reset_and_vanished_interfaces() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    fake.nics = {"eth0": net_counters(bytes_recv=WRAP_32 - 50), "eth1": net_counters(bytes_recv=10**10), "tun0": net_counters(bytes_recv=5)}
    stats.snapshot()
    clock.advance(1.0)
    fake.nics = {
        "eth0": net_counters(bytes_recv=50),  # 32-bit wrap
        "eth1": net_counters(bytes_recv=123),  # re-created: reset
        "wg0": net_counters(bytes_recv=10**9),  # new: no rate yet
    }  # tun0 vanished
    rx = {nic["interface"]: nic["rx_bytes_per_s"] for nic in stats.snapshot()["network"]}
    assert rx == {"eth0": 100.0, "eth1": 0.0, "wg0": 0.0}
    clock.advance(1.0)
    fake.nics = {"tun0": net_counters(bytes_recv=10**9), "wg0": net_counters(bytes_recv=10**9 + 7)}
    rx = {nic["interface"]: nic["rx_bytes_per_s"] for nic in stats.snapshot()["network"]}
    assert rx == {"tun0": 0.0, "wg0": 7.0}  # tun0 was forgotten: it starts over, no spike


def test_at_most_64_interfaces_sorted_by_name() -> None:
    fake = FakeNodePsutil()
    fake.nics = {f"veth{i:03d}": net_counters() for i in reversed(range(100))}
    network = collector(fake).snapshot()["network"]
    assert [nic["interface"] for nic in network] == [f"veth{i:03d}" for i in range(64)]


def test_same_clock_reading_gives_zero_rates() -> None:
    fake, clock = FakeNodePsutil(), FakeClock()
    stats = collector(fake, clock)
    stats.snapshot()
    fake.nics = {"eth0": net_counters(bytes_recv=10**6)}
    assert stats.snapshot()["network"][0]["rx_bytes_per_s"] == 0.0


# --------------------------------------------------------------------------- processes


def _top(snapshot: dict[str, Any], which: str, field: str) -> list[Any]:
    return [proc[field] for proc in snapshot["processes"][which]]


def test_top_lists_hold_20_sorted_descending() -> None:
    fake = FakeNodePsutil()
    fake.processes = [
        FakeProcess(process_info(pid, cpu_percent=float((pid * 37) % 100), memory_info=SimpleNamespace(rss=((pid * 53) % 100) << 20)))
        for pid in range(1, 101)
    ]
    snapshot = collector(fake).snapshot()
    assert snapshot["processes"]["count"] == 100
    cpus = _top(snapshot, "top_cpu", "cpu_percent")
    rss = _top(snapshot, "top_memory", "rss")
    assert len(cpus) == len(rss) == 20
    assert cpus == sorted(cpus, reverse=True) and cpus[0] == 99.0
    assert rss == sorted(rss, reverse=True) and rss[0] == 99 << 20
    assert fake.called("process_iter") == [{"attrs": PROCESS_ATTRS, "ad_value": None}]


def test_process_record() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(process_info(
        4242, name="postgres", username="postgres", status="running", cpu_percent=12.5,
        memory_info=SimpleNamespace(rss=123_456), memory_percent=1.25, create_time=1_700_000_123.5,
        cmdline=["postgres", "-D", "/var/lib/postgresql"],
    ))]
    [proc] = collector(fake).snapshot()["processes"]["top_cpu"]
    assert proc == {"pid": 4242, "name": "postgres", "user": "postgres", "status": "running", "cpu_percent": 12.5,
                    "rss": 123_456, "memory_percent": 1.25, "create_time": 1_700_000_123.5,
                    "cmdline": "postgres -D /var/lib/postgresql"}


def test_process_strings_are_truncated_and_cpu_clamped_to_all_cores() -> None:
    fake = FakeNodePsutil()
    fake.cpus = 4
    fake.processes = [FakeProcess(process_info(7, name="n" * 300, username="u" * 300, cmdline=["a" * 200, "b" * 100] + ["c"] * 10**5,
                                               cpu_percent=987.0))]
    [proc] = collector(fake).snapshot()["processes"]["top_cpu"]
    assert len(proc["name"]) == len(proc["user"]) == MAX_NAME
    assert len(proc["cmdline"]) == MAX_TEXT
    assert proc["cmdline"] == "a" * 200 + " " + "b" * 55
    assert proc["cpu_percent"] == 400.0


def test_none_fields_from_access_denied_are_filled_safely() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess({attr: None for attr in PROCESS_ATTRS} | {"pid": 9})]
    snapshot = collector(fake).snapshot()
    assert_valid(snapshot)
    assert snapshot["processes"]["top_memory"] == [{"pid": 9, "name": "", "user": None, "status": "unknown", "cpu_percent": 0.0,
                                                    "rss": 0, "memory_percent": 0.0, "create_time": 0.0, "cmdline": ""}]


def test_vanished_denied_and_zombie_processes_never_crash_the_scan() -> None:
    fake = FakeNodePsutil()
    fake.processes = [
        FakeProcess(process_info(1)),
        FakeProcess(error=psutil.NoSuchProcess(2)),
        FakeProcess(error=psutil.AccessDenied(3)),
        FakeProcess(error=psutil.ZombieProcess(4)),
        FakeProcess(None),  # no info at all
        FakeProcess({"pid": None, "name": "ghost"}),  # no usable pid
        FakeProcess(process_info(5, status=psutil.STATUS_ZOMBIE, memory_info=None, cpu_percent=None)),
        FakeProcess(process_info(6)),
    ]
    snapshot = collector(fake).snapshot()
    assert_valid(snapshot)
    assert snapshot["processes"]["count"] == 3  # 1, the zombie 5, and 6
    assert sorted(_top(snapshot, "top_cpu", "pid")) == [1, 6]  # a zombie is counted, never ranked


def test_an_iteration_that_fails_part_way_keeps_what_it_saw() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(process_info(1)), psutil.NoSuchProcess(2), FakeProcess(process_info(3))]
    snapshot = collector(fake).snapshot()
    assert snapshot["processes"]["count"] == 1
    assert _top(snapshot, "top_memory", "pid") == [1]


def test_own_process_is_found_by_its_memory() -> None:
    fake = FakeNodePsutil()
    me = os.getpid()
    fake.processes = [FakeProcess(process_info(pid)) for pid in range(1, 50)] + [
        FakeProcess(process_info(me, name="python", memory_info=SimpleNamespace(rss=1 << 33)))
    ]
    top = collector(fake).snapshot()["processes"]["top_memory"][0]
    assert (top["pid"], top["name"], top["rss"]) == (me, "python", 1 << 33)


def test_process_scan_reruns_only_after_the_interval(clock: FakeClock) -> None:
    fake = FakeNodePsutil()
    stats = collector(fake, clock, process_interval=15.0)
    fake.processes = [FakeProcess(process_info(1))]
    assert stats.snapshot()["processes"]["count"] == 1
    fake.processes = [FakeProcess(process_info(1)), FakeProcess(process_info(2))]
    clock.advance(14.9)
    assert stats.snapshot()["processes"]["count"] == 1  # the last scan's result, repeated
    assert len(fake.called("process_iter")) == 1
    clock.advance(0.1)
    assert stats.snapshot()["processes"]["count"] == 2
    assert len(fake.called("process_iter")) == 2


def test_process_interval_zero_scans_every_time_and_a_clock_going_back_rescans(clock: FakeClock) -> None:
    fake = FakeNodePsutil()
    every = collector(fake, clock, process_interval=0.0)
    every.snapshot()
    every.snapshot()
    assert len(fake.called("process_iter")) == 2
    other = FakeNodePsutil()
    stats = collector(other, clock, process_interval=60.0)
    stats.snapshot()
    clock.advance(-30.0)
    stats.snapshot()
    assert len(other.called("process_iter")) == 2


@pytest.mark.parametrize("interval", [-1.0, math.nan, math.inf])
def test_process_interval_must_be_finite_and_non_negative(interval: float) -> None:
    with pytest.raises(ValueError, match="process_interval"):
        collector(FakeNodePsutil(), process_interval=interval)


def test_a_repeated_scan_is_a_copy_the_caller_cannot_spoil(clock: FakeClock) -> None:
    stats = collector(FakeNodePsutil(), clock)
    first = stats.snapshot()
    first["processes"]["top_cpu"][0]["name"] = "changed"
    first["processes"]["top_memory"].clear()
    second = stats.snapshot()
    assert second["processes"]["top_cpu"][0]["name"] == "proc1"
    assert len(second["processes"]["top_memory"]) == 1


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=300),
    st.lists(st.text(max_size=50), max_size=20), st.builds(SimpleNamespace, rss=st.integers(-(2**70), 2**70)),
)


@settings(max_examples=60)
@given(st.lists(st.fixed_dictionaries({"pid": st.integers(0, 2**31)}, optional={attr: junk for attr in PROCESS_ATTRS[1:]}), max_size=30))
def test_any_process_info_still_gives_a_valid_snapshot(infos: list[dict[str, Any]]) -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(info) for info in infos]
    snapshot = collector(fake).snapshot()
    assert_valid(snapshot)
    assert snapshot["processes"]["count"] == len(infos)


# --------------------------------------------------------------------------- hello


def test_hello_fields() -> None:
    import platform

    hello = collector(FakeNodePsutil()).hello_fields()
    assert hello == {
        "hostname": "node01.corp.internal",
        "boot_time": 1_699_990_000.0,
        "os": f"{platform.system()} {platform.release()}"[:256],
        "platform": platform.machine()[:256],
        "cpu_count": 4,
        "memory_total": 16 << 30,
    }
    assert HELLO_FIELDS.check(hello | {"agent_version": "0", "interval": 1.0}, "") == hello | {"agent_version": "0", "interval": 1.0}


def test_hello_with_unknown_cpu_count_and_a_long_hostname() -> None:
    fake = FakeNodePsutil()
    fake.cpus = None
    hello = NodeStatsCollector(fake, clock=FakeClock(), hostname=lambda: "h" * 300).hello_fields()
    assert hello["cpu_count"] == 1 and len(hello["hostname"]) == 256


# --------------------------------------------------------------------------- this machine


def test_real_psutil_snapshot_of_this_machine() -> None:
    stats = NodeStatsCollector(process_interval=0.0)
    first = stats.snapshot()
    second = stats.snapshot()
    for snapshot in (first, second):
        assert_valid(snapshot)
        assert snapshot["processes"]["count"] > 0
        assert snapshot["memory"]["total"] > 0
    hello = stats.hello_fields()
    assert hello["cpu_count"] >= 1 and hello["memory_total"] == first["memory"]["total"]


def test_non_ascii_strings_are_cut_to_the_byte_limit_on_a_character_boundary() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(process_info(7, name="é" * 100, cmdline=["日本" * 200]))]
    [proc] = collector(fake).snapshot()["processes"]["top_cpu"]
    assert len(proc["name"].encode()) <= MAX_NAME and proc["name"] == "é" * (MAX_NAME // 2)
    assert len(proc["cmdline"].encode()) <= MAX_TEXT and set(proc["cmdline"]) == {"日", "本"}


# --------------------------------------------------------------------------- hostile text: escaped, never refused


def strings_in(value: Any) -> list[str]:
    """Every string inside a snapshot (or hello), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []


def test_control_characters_in_names_are_escaped_so_the_snapshot_is_accepted() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(process_info(
        7, name="a\x1b[2Jb\n", username="r\x00ot", status="run\rning", cmdline=["sh", "-c", "echo hi\nrm -rf /tmp/x"],
    ))]
    fake.partitions = [partition("/dev/sd\x1ba", "/mnt/\u202eevil", "ext\x074")]
    fake.usage = {"/mnt/\u202eevil": disk_usage(100, 1)}
    fake.nics = {"eth\x1b]0;pwned\x070": net_counters(bytes_recv=1)}
    snapshot = collector(fake).snapshot()
    assert_valid(snapshot)  # STATS.check included: the collector would take it
    assert all(text.isprintable() for text in strings_in(snapshot))
    [proc] = snapshot["processes"]["top_cpu"]
    assert (proc["name"], proc["user"], proc["status"]) == ("a\\x1b[2Jb\\x0a", "r\\x00ot", "run\\x0dning")
    assert proc["cmdline"] == "sh -c echo hi\\x0arm -rf /tmp/x"
    [disk] = snapshot["disks"]
    assert (disk["device"], disk["mountpoint"], disk["fstype"]) == ("/dev/sd\\x1ba", "/mnt/\\u202eevil", "ext\\x074")
    assert [nic["interface"] for nic in snapshot["network"]] == ["eth\\x1b]0;pwned\\x070"]


def test_escaped_strings_are_cut_to_their_byte_bounds_without_splitting_an_escape() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(process_info(7, name="x" + "\x1b" * 100, cmdline=["\n" * 300, "tail"]))]
    fake.nics = {"\x00" * 100: net_counters()}
    snapshot = collector(fake).snapshot()
    assert_valid(snapshot)
    [proc] = snapshot["processes"]["top_cpu"]
    assert proc["name"] == "x" + "\\x1b" * 15  # 61 bytes: a 16th escape would not fit in 64
    assert proc["cmdline"] == "\\x0a" * (MAX_TEXT // 4)
    assert snapshot["network"][0]["interface"] == "\\x00" * (MAX_NAME // 4)


def test_a_lone_surrogate_from_an_undecodable_name_is_escaped() -> None:
    fake = FakeNodePsutil()
    fake.processes = [FakeProcess(process_info(7, name="caf\udce9", cmdline=["/srv/caf\udce9/run"]))]
    [proc] = collector(fake).snapshot()["processes"]["top_cpu"]
    assert (proc["name"], proc["cmdline"]) == ("caf\\udce9", "/srv/caf\\udce9/run")


def test_hello_fields_with_control_characters_are_escaped() -> None:
    hello = NodeStatsCollector(FakeNodePsutil(), clock=FakeClock(), hostname=lambda: "node\x1b[2J01\n" + "h" * 300).hello_fields()
    assert hello["hostname"].startswith("node\\x1b[2J01\\x0ahh") and len(hello["hostname"].encode()) == MAX_TEXT
    assert all(text.isprintable() for text in strings_in(hello))
    info = hello | {"agent_version": "0", "interval": 1.0}
    assert HELLO_FIELDS.check(info, "") == info
