"""The node inventory over HTTP, reads: a node's summary, the sections of its latest snapshot, one of
its top processes, its load summary over 1 h or 24 h; addressed by name or by IPv4/IPv6 address."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live_api import (
    ACCEPTED_AGE,
    HTTP_EXAMPLES,
    LiveApi,
    assert_json_error,
    hello_body,
    process_entry,
    put_stats,
    register,
    stats_body,
)

from servertrack.console import NODE_SECTIONS, snapshot_of
from tests.conftest import FakeClock

START_ISO = "2027-01-15T08:00:17Z"  # live_api.START


@pytest.fixture
def nodes_api(seeded_api: LiveApi) -> LiveApi:
    """``node-a`` (10.0.0.5, fd00::2) with a snapshot taken at START, ``node-b`` (10.0.0.6) without one."""
    register(seeded_api, "node-a", ["10.0.0.5", "fd00::2"])
    put_stats(seeded_api, "node-a")
    register(seeded_api, "node-b", ["10.0.0.6"])
    return seeded_api


def get_json(api: LiveApi, path: str) -> Any:
    reply = api.get(path)
    assert reply.status == 200, (path, reply.status, reply.raw)
    assert reply.content_type == "application/json"
    return reply.json


# -- GET /nodes/{id} ----------------------------------------------------------------


def test_a_node_summary_digests_the_latest_snapshot(nodes_api: LiveApi, clock: FakeClock) -> None:
    clock.advance(100)
    assert get_json(nodes_api, "/nodes/node-a") == {
        "name": "node-a", "hostname": "node01", "state": "stale", "last_seen": START_ISO,
        "ips": ["10.0.0.5", "fd00::2"], "boottime": 1_799_996_417.5, "boot_time": "2027-01-15T07:00:17Z",
        "uptime_seconds": 3600,
        "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2, "memory_total": 16 * 2**30,
        "agent_version": "0.2.0", "interval": 10.0,
        "loadavg": [0.5, 0.4, 0.3], "cpu_usage_percent": [20.0, 30.0], "memory_usage_percent": 37.5,
        "stats_at": START_ISO, "paused": False, "clock_skew_seconds": None, "agent_key": None, "dropped": {}, "seq": None, "lost": None,
    }


def test_a_node_without_stats_has_nulls(nodes_api: LiveApi) -> None:
    body = get_json(nodes_api, "/nodes/node-b")
    assert [body[key] for key in ("loadavg", "cpu_usage_percent", "memory_usage_percent", "stats_at")] == [None] * 4


def test_a_node_known_only_from_a_snapshot_has_null_hello_fields(nodes_api: LiveApi) -> None:
    # The collector registers a node on its first snapshot, before any hello arrives.
    nodes_api.nodes.record_stats("zmq-only", stats_body(), ts=nodes_api.clock(), now=nodes_api.clock())
    body = get_json(nodes_api, "/nodes/zmq-only")
    assert [body[key] for key in ("hostname", "boottime", "boot_time", "uptime_seconds", "os", "interval")] == [None] * 6
    assert body["loadavg"] == [0.5, 0.4, 0.3]


@pytest.mark.parametrize("path", [
    "/nodes/node-a", "/nodes/NODE-A", "/nodes/Node-A.", "/nodes/10.0.0.5", "/nodes/fd00::2", "/nodes/fd00%3A%3A2",
    "/nodes/FD00:0:0::2", "/nodes/fd00:0000:0000:0000:0000:0000:0000:0002",
])
def test_a_node_is_addressed_by_name_or_any_of_its_ips(nodes_api: LiveApi, path: str) -> None:
    assert get_json(nodes_api, path)["name"] == "node-a"
    assert get_json(nodes_api, path + "/cpu")["name"] == "node-a"
    assert get_json(nodes_api, path + "/summary")["name"] == "node-a"
    assert get_json(nodes_api, path + "/processes/101")["pid"] == 101
    assert get_json(nodes_api, path + "/proc") == [101, 102, 202]
    assert get_json(nodes_api, path + "/proc/101")["pid"] == 101


def test_a_name_that_reads_as_an_address_is_refused_so_it_cannot_take_over_address_lookups(nodes_api: LiveApi) -> None:
    before = nodes_api.state()
    assert_json_error(nodes_api.post("/nodes", hello_body("10.0.0.6", ["10.0.0.1"])), 400, "name", "IP address")
    assert nodes_api.state() == before
    register(nodes_api, "node-six", ["10.0.0.66"])
    assert get_json(nodes_api, "/nodes/10.0.0.66")["name"] == "node-six"


@pytest.mark.parametrize("path, fragment", [
    ("/nodes/node-c", "node-c"),
    ("/nodes/10.0.0.7", "10.0.0.7"),
    ("/nodes/fd00::3", "fd00::3"),
    ("/nodes/node-c/cpu", "node-c"),
    ("/nodes/node-c/processes/1", "node-c"),
    ("/nodes/node-c/proc", "node-c"),
    ("/nodes/10.0.0.7/proc/1", "10.0.0.7"),
    ("/nodes/node-c/summary", "node-c"),
])
def test_an_unknown_node_is_a_404(nodes_api: LiveApi, path: str, fragment: str) -> None:
    assert_json_error(nodes_api.get(path), 404, fragment)


@pytest.mark.parametrize("raw", ["bad%20name", "a" * 254, "%C3%A9t%C3%A9", "node%2Fa", "10.0.0.5%20", "fd00:::2",
                                 "a:b"])
@pytest.mark.parametrize("suffix", ["", "/cpu", "/processes/1", "/summary", "/proc", "/proc/1"])
def test_an_id_that_is_neither_a_name_nor_an_address_is_a_400(nodes_api: LiveApi, raw: str, suffix: str) -> None:
    assert_json_error(nodes_api.get(f"/nodes/{raw}{suffix}"), 400, "neither a node name nor an IP address")


@pytest.mark.parametrize("suffix", ["", "/cpu", "/memory", "/processes/101", "/summary?window=24h", "/proc",
                                    "/proc/101"])
def test_an_address_shared_by_two_nodes_is_a_409_naming_them(nodes_api: LiveApi, suffix: str) -> None:
    register(nodes_api, "node-c", ["10.0.0.5", "fd00:0::2"])
    for address in ("10.0.0.5", "fd00::2"):
        assert_json_error(nodes_api.get(f"/nodes/{address}{suffix}"), 409, address, "node-a", "node-c")
    assert get_json(nodes_api, "/nodes/node-c")["name"] == "node-c"
    before = nodes_api.state()
    assert_json_error(nodes_api.request("PUT", "/nodes/10.0.0.5", json.dumps(stats_body())), 409, "node-a, node-c")
    assert nodes_api.state() == before


# -- GET /nodes/{id}/{section} ----------------------------------------------------------


def test_each_section_shows_its_part_of_the_latest_snapshot(nodes_api: LiveApi) -> None:
    snapshot = stats_body()
    wrap = {"name": "node-a", "stats_at": START_ISO}
    assert get_json(nodes_api, "/nodes/node-a/cpu") == {**wrap, **snapshot["cpu"]}
    assert get_json(nodes_api, "/nodes/node-a/memory") == {**wrap, "memory": snapshot["memory"],
                                                           "swap": snapshot["swap"]}
    assert get_json(nodes_api, "/nodes/node-a/disks") == {**wrap, "disks": snapshot["disks"],
                                                          "disk_io": snapshot["disk_io"]}
    assert get_json(nodes_api, "/nodes/node-a/network") == {**wrap, "network": snapshot["network"]}
    assert get_json(nodes_api, "/nodes/node-a/processes") == {**wrap, **snapshot["processes"]}


def test_the_sections_together_give_back_the_snapshot_the_cli_prints(nodes_api: LiveApi) -> None:
    sections = {section: get_json(nodes_api, f"/nodes/node-a/{section}") for section in NODE_SECTIONS}
    assert snapshot_of(sections) == stats_body()


def test_optional_stats_are_null(nodes_api: LiveApi) -> None:
    cpu = {key: value for key, value in stats_body()["cpu"].items() if key != "freq_mhz"}
    put_stats(nodes_api, "node-b", stats_body(cpu=cpu, disk_io=None))
    assert get_json(nodes_api, "/nodes/node-b/cpu")["freq_mhz"] is None
    assert get_json(nodes_api, "/nodes/node-b/disks")["disk_io"] is None


@pytest.mark.parametrize("section", ["cpu", "memory", "disks", "network", "processes", "processes/101", "proc",
                                     "proc/101"])
def test_sections_of_a_node_without_stats_are_a_404(nodes_api: LiveApi, section: str) -> None:
    assert_json_error(nodes_api.get(f"/nodes/node-b/{section}"), 404, "node-b", "no stats")


def test_a_top_process_is_found_in_either_list(nodes_api: LiveApi) -> None:
    assert get_json(nodes_api, "/nodes/node-a/processes/101") == process_entry(101)
    by_memory = get_json(nodes_api, "/nodes/node-a/processes/202")
    assert (by_memory["name"], by_memory["rss"]) == ("postgres", 900_000_000)
    assert get_json(nodes_api, "/nodes/node-a/processes/0102")["pid"] == 102


def test_a_process_outside_the_top_lists_is_a_404_saying_why(nodes_api: LiveApi) -> None:
    assert_json_error(nodes_api.get("/nodes/node-a/processes/999"), 404, "999", "top", "20")
    assert_json_error(nodes_api.get("/nodes/node-a/proc/999"), 404, "999", "top", "20")


@pytest.mark.parametrize("pid", ["abc", "-1", "1.5", "%2B1", "%201", "12345678901", "1e3", "%D9%A1", "4294967296",
                                 "%00"])
@pytest.mark.parametrize("route", ["processes", "proc"])
def test_a_pid_that_is_not_an_integer_is_a_400(nodes_api: LiveApi, pid: str, route: str) -> None:
    assert_json_error(nodes_api.get(f"/nodes/node-a/{route}/{pid}"), 400, "pid")


# -- GET /nodes/{id}/proc and /proc/{pid} ---------------------------------------------------


def test_proc_lists_the_pids_of_both_top_lists_once_each_in_ascending_order(nodes_api: LiveApi) -> None:
    # stats_body(): top_cpu holds 101 and 102, top_memory 202 and 101
    pids = get_json(nodes_api, "/nodes/node-a/proc")
    assert pids == [101, 102, 202] and all(type(pid) is int for pid in pids)
    top = [process_entry(pid) for pid in (9, 3, 7)]
    put_stats(nodes_api, "node-b", stats_body(processes={"count": 3, "top_cpu": top, "top_memory": top[::-1]}))
    assert get_json(nodes_api, "/nodes/node-b/proc") == [3, 7, 9]
    put_stats(nodes_api, "node-b", stats_body(processes={"count": 0, "top_cpu": [], "top_memory": []}))
    assert get_json(nodes_api, "/nodes/node-b/proc") == []


def test_proc_pid_is_the_process_entry_with_pid_name_status_cpu_and_memory(nodes_api: LiveApi) -> None:
    entry = get_json(nodes_api, "/nodes/node-a/proc/202")
    assert {"pid", "name", "status", "cpu_percent", "memory_percent", "rss"} <= set(entry)
    assert entry == process_entry(202, name="postgres", rss=900_000_000, memory_percent=5.5)
    assert entry == get_json(nodes_api, "/nodes/node-a/processes/202")
    for pid in get_json(nodes_api, "/nodes/node-a/proc"):  # every listed pid can be read
        assert get_json(nodes_api, f"/nodes/node-a/proc/{pid}")["pid"] == pid


def test_processes_stays_beside_proc(nodes_api: LiveApi) -> None:
    body = get_json(nodes_api, "/nodes/node-a/processes")
    assert {entry["pid"] for entry in body["top_cpu"] + body["top_memory"]} == {101, 102, 202}


# -- GET /nodes/{id}/summary -----------------------------------------------------------


def test_a_node_without_samples_has_an_empty_summary(nodes_api: LiveApi) -> None:
    for window in ("1h", "24h"):
        assert get_json(nodes_api, f"/nodes/node-b/summary?window={window}") == {
            "name": "node-b", "window": window, "samples": 0, "cpu": None, "ram": None, "uptime_seconds": 3600}
    assert get_json(nodes_api, "/nodes/node-b/summary")["window"] == "1h"


def test_the_summary_weights_buckets_by_their_samples(nodes_api: LiveApi, clock: FakeClock) -> None:
    now = clock()
    for cpu in (10.0, 10.0, 10.0):
        nodes_api.record("node-a", cpu=cpu, ram=50.0, ts=now - 120)
    nodes_api.record("node-a", cpu=50.0, ram=10.0, ts=now)
    nodes_api.record("node-a", cpu=99.0, ram=99.0, ts=now - 3 * 3600)  # in the day, not the hour
    nodes_api.record("node-a", cpu=99.0, ram=99.0, ts=now + 45)  # the next minute: in no window yet
    nodes_api.apply()
    hour = get_json(nodes_api, "/nodes/node-a/summary?window=1h")
    assert hour == {"name": "node-a", "window": "1h", "samples": 4, "cpu": {"avg": 20.0, "min": 10.0, "max": 50.0},
                    "ram": {"avg": 40.0, "min": 10.0, "max": 50.0}, "uptime_seconds": 3600}
    day = get_json(nodes_api, "/nodes/node-a/summary?window=24h")
    assert (day["samples"], day["cpu"]["max"], day["ram"]["min"]) == (6, 99.0, 10.0)


@pytest.mark.parametrize("query", ["?window=", "?window=1H", "?window=60m", "?window=7d", "?window=1h,24h",
                                   "?window=%00"])
def test_an_unknown_summary_window_is_a_400(nodes_api: LiveApi, query: str) -> None:
    assert_json_error(nodes_api.get(f"/nodes/node-a/summary{query}"), 400, "window", "1h", "24h")


def _naive_summary(samples: list[tuple[float, float, float]], now: float, width: int, shown: int) -> dict[str, Any]:
    """Figures over the raw samples whose bucket is one of the ``shown`` ending with the current one."""
    current = math.floor(now / width)
    kept = [(cpu, ram) for ts, cpu, ram in samples if current - shown < math.floor(ts / width) <= current]
    if not kept:
        return {"samples": 0, "cpu": None, "ram": None}

    def figures(values: list[float]) -> dict[str, float]:
        return {"avg": math.fsum(values) / len(values), "min": min(values), "max": max(values)}

    return {"samples": len(kept), "cpu": figures([cpu for cpu, _ in kept]), "ram": figures([ram for _, ram in kept])}


# Loads with at most five decimals, as the aggregator keeps them.
LOADS = st.integers(0, 10_000_000).map(lambda n: n / 100_000)
SAMPLES = st.lists(st.tuples(st.floats(-ACCEPTED_AGE, 60.0), LOADS, LOADS), max_size=40)
_counter = itertools.count()  # one node per example: the examples share one app


@HTTP_EXAMPLES
@given(samples=SAMPLES, wait=st.floats(0.0, 7200.0))
def test_the_summary_matches_a_naive_computation(
    nodes_api: LiveApi, clock: FakeClock, samples: list[tuple[float, float, float]], wait: float
) -> None:
    name = f"prop-{next(_counter)}"
    register(nodes_api, name)
    clock.advance(wait)
    now = clock()
    stamped = [(now + offset, cpu, ram) for offset, cpu, ram in samples]
    if stamped:
        items = [{"server": name, "ts": ts, "cpu": cpu, "ram": ram} for ts, cpu, ram in stamped]
        assert nodes_api.post("/loads", items).status == 202
        nodes_api.apply()
    for window, width, shown in (("1h", 60, 60), ("24h", 3600, 24)):
        body = get_json(nodes_api, f"/nodes/{name}/summary?window={window}")
        expected = _naive_summary(stamped, now, width, shown)
        assert (body["name"], body["window"], body["samples"]) == (name, window, expected["samples"])
        for load in ("cpu", "ram"):
            if expected[load] is None:
                assert body[load] is None
                continue
            got, want = body[load], expected[load]
            assert (got["min"], got["max"]) == (want["min"], want["max"])
            assert got["avg"] == pytest.approx(want["avg"], rel=1e-12, abs=1e-9)
            assert got["min"] <= got["avg"] <= got["max"]


