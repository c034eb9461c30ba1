"""The pindrop-compatible ``GET /get_stats[?node=NAME]`` on a live server (real HTTP on 127.0.0.1).

The expected shapes are written from the specification (issue 8), not from the code:

    {"current_stat": {"time", "cpu_stat": {"usage", "time_stat": {"idle", "user", "system"}},
                      "memory_stat": {"vm": {total, used, free, percent, ...}, "sm": {total, used, free, percent}},
                      "disk_stat": {"count_stats": {read_count, write_count, read_bytes, write_bytes},
                                    "part_stats": [{"device", "mt_pt", "total_mem", "used_mem", "free_mem",
                                                    "used_percent"}]}},
     "past_stat": {"avg_cpu_usage", "min_cpu_usage", "max_cpu_usage", "avg_mem_usage", "min_mem_usage",
                   "max_mem_usage", "max_disk_usage", "service_start_time"}}

Past figures: the last 24 h of the aggregator, as ``"13.4%"`` strings; ``service_start_time``: when the
service started. The node may be omitted when exactly one is known, else 400 naming the choices.
"""

from __future__ import annotations

import calendar
import json
import re
import subprocess
import time
from typing import Any

import pytest
from live_api import (
    HOUR_START,
    START,
    LiveApi,
    assert_json_error,
    hello_body,
    put_stats,
    quote,
    register,
    stats_body,
)

from tests.conftest import FakeClock, servertrack_command, subprocess_env
from tests.node_fixtures import HELLO_INFO
from tests.test_end_to_end import START_SECONDS, http, running_service, stop, wait_for

PERCENT_TEXT = re.compile(r"[0-9]{1,3}\.[0-9]%")
START_TIME_TEXT = "2027-01-15 08:00:17.500000"  # START (the service's start) in UTC, as str(datetime) writes it
CURRENT_KEYS = {"time", "cpu_stat", "memory_stat", "disk_stat"}
PAST_KEYS = {"avg_cpu_usage", "min_cpu_usage", "max_cpu_usage", "avg_mem_usage", "min_mem_usage", "max_mem_usage",
             "max_disk_usage", "service_start_time"}
PART_KEYS = {"device", "mt_pt", "total_mem", "used_mem", "free_mem", "used_percent"}
COUNT_KEYS = {"read_count", "write_count", "read_bytes", "write_bytes"}
NULL_PAST = {key: None for key in PAST_KEYS - {"service_start_time"}} | {"service_start_time": START_TIME_TEXT}


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def check_shape(body: Any) -> None:
    """Every key the specification names, exactly (``vm`` may carry more), with the types a pindrop client
    parses: numbers in ``current_stat``, ``"13.4%"`` strings (or null) in ``past_stat``."""
    assert isinstance(body, dict) and set(body) == {"current_stat", "past_stat"}, body
    past = body["past_stat"]
    assert set(past) == PAST_KEYS, past
    for key in PAST_KEYS - {"service_start_time"}:
        assert past[key] is None or PERCENT_TEXT.fullmatch(past[key]), (key, past[key])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", past["service_start_time"]), past
    current = body["current_stat"]
    if current is None:
        return
    assert set(current) == CURRENT_KEYS, current
    assert type(current["time"]) is float
    cpu = current["cpu_stat"]
    assert set(cpu) == {"usage", "time_stat"} and is_number(cpu["usage"])
    assert set(cpu["time_stat"]) == {"idle", "user", "system"}
    assert all(value is None or is_number(value) for value in cpu["time_stat"].values())
    memory = current["memory_stat"]
    assert set(memory) == {"vm", "sm"}
    assert {"total", "used", "free", "percent"} <= set(memory["vm"])
    assert set(memory["sm"]) == {"total", "used", "free", "percent"}
    assert all(is_number(memory["sm"][key]) for key in memory["sm"])
    disk = current["disk_stat"]
    assert set(disk) == {"count_stats", "part_stats"} and set(disk["count_stats"]) == COUNT_KEYS
    assert all(value is None or type(value) is int for value in disk["count_stats"].values())
    assert isinstance(disk["part_stats"], list)
    for part in disk["part_stats"]:
        assert set(part) == PART_KEYS, part
        assert type(part["device"]) is str and type(part["mt_pt"]) is str
        assert all(is_number(part[key]) for key in ("total_mem", "used_mem", "free_mem", "used_percent"))


def get_stats(api: LiveApi, query: str = "") -> dict[str, Any]:
    reply = api.get("/get_stats" + query)
    assert reply.status == 200, (reply.status, reply.raw)
    assert reply.content_type == "application/json"
    body = reply.json
    check_shape(body)
    return body


# A node as the pindrop sample shows one: three partitions, a CPU at 13.4 %.
DISKS = [
    {"device": "/dev/sda8", "mountpoint": "/", "fstype": "ext4", "total": 265467244544, "used": 13155872768,
     "free": 238802780160, "percent": 5.2},
    {"device": "/dev/sda1", "mountpoint": "/boot/efi", "fstype": "vfat", "total": 520093696, "used": 29990912,
     "free": 490102784, "percent": 87.5},
    {"device": "/dev/sda4", "mountpoint": "/media/office", "fstype": "ext4", "total": 209715195904,
     "used": 40832688128, "free": 168882507776, "percent": 19.5},
]


def pindrop_like_stats() -> dict[str, Any]:
    body = stats_body(disks=DISKS)
    body["cpu"]["percent"] = 13.4
    body["memory"] = {"total": 8285200384, "available": 5704212480, "used": 2580987904, "percent": 18.0,
                      "free": 4000000000}
    body["swap"] = {"total": 4000313344, "used": 1000000, "percent": 0.03}
    return body


@pytest.fixture
def one_node(api: LiveApi, clock: FakeClock) -> LiveApi:
    """``node01.example`` (10.0.0.5) with a pindrop-like snapshot taken 10 s after START and samples over
    the last day: cpu 10, 20 now, 40 five hours ago; ram 30, 50, 70."""
    register(api, "node01.example", ["10.0.0.5"])
    api.record("node01.example", cpu=10.0, ram=30.0, ts=START - 5.0)
    api.record("node01.example", cpu=20.0, ram=50.0, ts=START - 1.0)
    api.record("node01.example", cpu=40.0, ram=70.0, ts=START - 5 * 3600.0)
    api.apply()
    clock.advance(10.0)
    put_stats(api, "node01.example", pindrop_like_stats())
    return api


# -- the shape ----------------------------------------------------------------------------------------


def test_one_node_gives_its_current_and_past_stats_in_the_pindrop_shape(one_node: LiveApi) -> None:
    body = get_stats(one_node)
    assert body == {
        "current_stat": {
            "time": START + 10.0,
            "cpu_stat": {"usage": 13.4, "time_stat": {"idle": 90185.2, "user": 2498.32, "system": 526.52}},
            "memory_stat": {
                "vm": {"total": 8285200384, "used": 2580987904, "free": 4000000000, "percent": 18.0,
                       "available": 5704212480},
                "sm": {"total": 4000313344, "used": 1000000, "free": 4000313344 - 1000000, "percent": 0.03},
            },
            "disk_stat": {
                "count_stats": {"read_count": 21075, "write_count": 38773, "read_bytes": 689047040,
                                "write_bytes": 1100665856},
                "part_stats": [
                    {"device": "/dev/sda8", "mt_pt": "/", "total_mem": 265467244544, "used_mem": 13155872768,
                     "free_mem": 238802780160, "used_percent": 5.2},
                    {"device": "/dev/sda1", "mt_pt": "/boot/efi", "total_mem": 520093696, "used_mem": 29990912,
                     "free_mem": 490102784, "used_percent": 87.5},
                    {"device": "/dev/sda4", "mt_pt": "/media/office", "total_mem": 209715195904,
                     "used_mem": 40832688128, "free_mem": 168882507776, "used_percent": 19.5},
                ],
            },
        },
        "past_stat": {
            "avg_cpu_usage": "23.3%",  # (10 + 20 + 40) / 3, weighted by samples
            "min_cpu_usage": "10.0%",
            "max_cpu_usage": "40.0%",
            "avg_mem_usage": "50.0%",
            "min_mem_usage": "30.0%",
            "max_mem_usage": "70.0%",
            "max_disk_usage": "87.5%",  # the fullest partition of the latest snapshot
            "service_start_time": START_TIME_TEXT,
        },
    }


def test_the_node_can_be_named_by_name_any_case_or_ip_and_gives_the_same_body(one_node: LiveApi) -> None:
    alone = get_stats(one_node)
    assert get_stats(one_node, "?node=node01.example") == alone
    assert get_stats(one_node, "?node=NODE01.Example.") == alone
    assert get_stats(one_node, "?node=10.0.0.5") == alone
    assert get_stats(one_node, "?node=node01.example&other=ignored") == alone


def test_averages_are_weighted_by_samples_across_hours(api: LiveApi) -> None:
    register(api, "node01.example")
    for _ in range(3):
        api.record("node01.example", cpu=10.0, ram=10.0, ts=START - 1.0)
    api.record("node01.example", cpu=50.0, ram=90.0, ts=HOUR_START - 3600.0)  # the hour before
    api.apply()
    past = get_stats(api)["past_stat"]
    # weighted: (3 x 10 + 50) / 4 = 20, not the mean of the hour averages (30)
    assert (past["avg_cpu_usage"], past["min_cpu_usage"], past["max_cpu_usage"]) == ("20.0%", "10.0%", "50.0%")
    assert (past["avg_mem_usage"], past["min_mem_usage"], past["max_mem_usage"]) == ("30.0%", "10.0%", "90.0%")


def test_percent_strings_have_one_decimal(api: LiveApi) -> None:
    register(api, "node01.example")
    api.record("node01.example", cpu=0.04, ram=99.96, ts=START - 1.0)
    api.record("node01.example", cpu=100.0, ram=0.0, ts=START - 1.0)
    api.apply()
    past = get_stats(api)["past_stat"]
    assert past["min_cpu_usage"] == "0.0%" and past["max_cpu_usage"] == "100.0%"
    assert past["avg_cpu_usage"] == "50.0%"  # 50.02
    assert past["max_mem_usage"] == "100.0%" and past["min_mem_usage"] == "0.0%"


def test_samples_older_than_the_last_24_hours_no_longer_count(one_node: LiveApi, clock: FakeClock) -> None:
    clock.advance(25 * 3600.0)
    past = get_stats(one_node)["past_stat"]
    assert past == {**NULL_PAST, "max_disk_usage": "87.5%"}  # the disks are the latest snapshot's
    assert one_node.post("/nodes", hello_body("node01.example")).status == 200  # still alive: not forgotten
    one_node.record("node01.example", cpu=5.0, ram=6.0)
    one_node.apply()
    past = get_stats(one_node)["past_stat"]
    assert (past["avg_cpu_usage"], past["min_cpu_usage"], past["max_cpu_usage"]) == ("5.0%", "5.0%", "5.0%")


def test_service_start_time_is_when_the_service_started_not_now(one_node: LiveApi, clock: FakeClock) -> None:
    clock.advance(7200.0)
    assert get_stats(one_node)["past_stat"]["service_start_time"] == START_TIME_TEXT


def test_time_is_when_the_latest_snapshot_was_taken(one_node: LiveApi, clock: FakeClock) -> None:
    clock.advance(30.0)
    assert get_stats(one_node)["current_stat"]["time"] == START + 10.0
    put_stats(one_node, "node01.example", pindrop_like_stats())
    assert get_stats(one_node)["current_stat"]["time"] == START + 40.0


def test_a_node_without_stats_has_no_current_stat_but_its_past(api: LiveApi) -> None:
    register(api, "node01.example")
    api.record("node01.example", cpu=12.0, ram=34.0, ts=START - 1.0)
    api.apply()
    assert get_stats(api) == {
        "current_stat": None,
        "past_stat": {**NULL_PAST, "avg_cpu_usage": "12.0%", "min_cpu_usage": "12.0%", "max_cpu_usage": "12.0%",
                      "avg_mem_usage": "34.0%", "min_mem_usage": "34.0%", "max_mem_usage": "34.0%"},
    }


def test_a_node_without_samples_or_stats_has_nulls(api: LiveApi) -> None:
    register(api, "node01.example")
    assert get_stats(api) == {"current_stat": None, "past_stat": NULL_PAST}


def test_figures_an_older_agent_does_not_send_are_null(api: LiveApi) -> None:
    register(api, "node01.example")
    old = stats_body(disks=[])
    del old["cpu"]["times_seconds"], old["memory"]["free"]
    old["disk_io"] = {key: value for key, value in old["disk_io"].items() if key.endswith("_per_s")}
    put_stats(api, "node01.example", old)
    current = get_stats(api)["current_stat"]
    assert current["cpu_stat"]["time_stat"] == {"idle": None, "user": None, "system": None}
    assert current["memory_stat"]["vm"]["free"] is None
    assert current["disk_stat"] == {"count_stats": dict.fromkeys(COUNT_KEYS), "part_stats": []}


def test_a_snapshot_without_disk_io_has_null_counters_and_no_partitions_no_max(api: LiveApi) -> None:
    register(api, "node01.example")
    put_stats(api, "node01.example", stats_body(disk_io=None, disks=[]))
    body = get_stats(api)
    assert body["current_stat"]["disk_stat"]["count_stats"] == dict.fromkeys(COUNT_KEYS)
    assert body["past_stat"]["max_disk_usage"] is None


def test_counters_at_their_bounds_come_back_exactly(api: LiveApi) -> None:
    register(api, "node01.example")
    top = 2**63 - 1
    body = stats_body()
    body["disk_io"].update(read_count=top, write_count=0, read_bytes=top, write_bytes=1)
    body["memory"].update(total=2**64 - 1, used=2**64 - 1, free=0)
    put_stats(api, "node01.example", body)
    current = get_stats(api)["current_stat"]
    assert current["disk_stat"]["count_stats"] == {"read_count": top, "write_count": 0, "read_bytes": top,
                                                   "write_bytes": 1}
    assert current["memory_stat"]["vm"]["total"] == 2**64 - 1


def test_swap_free_is_never_negative(api: LiveApi) -> None:
    register(api, "node01.example")
    put_stats(api, "node01.example", stats_body(swap={"total": 100, "used": 250, "percent": 100.0}))
    assert get_stats(api)["current_stat"]["memory_stat"]["sm"]["free"] == 0


def test_the_answer_is_served_from_the_live_registry(one_node: LiveApi) -> None:
    """No second copy: a node removed from the inventory is gone from /get_stats too."""
    register(one_node, "node02.example")
    assert one_node.request("DELETE", "/nodes/node02.example").status == 204
    assert get_stats(one_node)["current_stat"]["cpu_stat"]["usage"] == 13.4
    assert one_node.request("DELETE", "/nodes/node01.example").status == 204
    assert_json_error(one_node.get("/get_stats"), 404, "no node")


# -- which node ---------------------------------------------------------------------------------------


def test_no_node_known_is_a_404(api: LiveApi) -> None:
    api.record("web-01", cpu=1.0, ram=2.0)  # a server that only posts loads is no node
    api.apply()
    assert_json_error(api.get("/get_stats"), 404, "no node")
    assert_json_error(api.get("/get_stats?node=web-01"), 404, "web-01")


def test_several_nodes_without_a_name_is_a_400_naming_the_choices(one_node: LiveApi) -> None:
    register(one_node, "node02.example")
    message = assert_json_error(one_node.get("/get_stats"), 400, "?node=", "node01.example", "node02.example")
    assert "2 nodes" in message
    assert get_stats(one_node, "?node=node02.example")["current_stat"] is None


def test_the_choices_are_capped_at_20_names(api: LiveApi) -> None:
    for index in range(25):
        register(api, f"node{index:02d}.example")
    message = assert_json_error(api.get("/get_stats"), 400, "25 nodes", "and 5 more")
    assert all(f"node{index:02d}.example" in message for index in range(20))
    assert not any(f"node{index:02d}.example" in message for index in range(20, 25))


def test_an_unknown_node_is_a_404(one_node: LiveApi) -> None:
    assert_json_error(one_node.get("/get_stats?node=nope.example"), 404, "nope.example")
    assert_json_error(one_node.get("/get_stats?node=10.9.9.9"), 404, "10.9.9.9")


def test_an_address_two_nodes_share_is_a_409(one_node: LiveApi) -> None:
    register(one_node, "node02.example", ["10.0.0.5"])
    assert_json_error(one_node.get("/get_stats?node=10.0.0.5"), 409, "node01.example", "node02.example")


@pytest.mark.parametrize(
    "query, fragments",
    [
        ("?node=", ("neither a node name nor an IP address",)),
        ("?node=bad%20name", ("neither",)),
        ("?node=" + quote("a/b"), ("neither",)),
        ("?node=" + quote("\x1b[2J\r\nx"), ("neither",)),
        ("?node=" + quote("\u202eevil"), ("neither",)),
        ("?node=" + "x" * 5000, ("neither", "...")),
        ("?node=---", ("neither",)),
        ("?node=..", ("neither",)),
        ("?node=node01.example&node=node01.example", ("one node", "not 2")),
        ("?node=a&node=b&node=c", ("not 3",)),
        ("?node=%ff%fe", ()),  # not UTF-8
    ],
)
def test_bad_node_values_are_a_400_and_change_nothing(one_node: LiveApi, query: str, fragments: tuple[str, ...]) -> None:
    before = one_node.state()
    message = assert_json_error(one_node.get("/get_stats" + query), 400, *fragments)
    assert message.isprintable()  # the value is shown escaped, never raw
    assert len(message) < 400
    assert one_node.state() == before


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_a_json_405_and_change_nothing(one_node: LiveApi, method: str) -> None:
    before = one_node.state()
    reply = one_node.request(method, "/get_stats", json.dumps({"node": "node01.example"}))
    assert_json_error(reply, 405, method)
    assert one_node.state() == before


def test_reading_changes_nothing_and_counts_nothing(one_node: LiveApi) -> None:
    before, counters = one_node.state(), one_node.counters()
    get_stats(one_node)
    one_node.get("/get_stats?node=nope.example")
    assert one_node.state() == before and one_node.counters() == counters


def test_a_path_below_get_stats_is_no_endpoint(one_node: LiveApi) -> None:
    assert_json_error(one_node.get("/get_stats/node01.example"), 404, "no such endpoint")


# -- against a real serve and a real agent ------------------------------------------------------------


def test_a_real_agent_served_by_a_real_serve_in_the_pindrop_shape() -> None:
    before = time.time()
    with running_service() as service:
        ready = time.time()
        agent = subprocess.Popen(
            servertrack_command("agent", "--collector", service.ingest, "--name", "pindrop-e2e.local",
                                "--interval", "0.2", "--stats-every", "2"),
            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            def complete() -> bool:  # the second snapshot of a run has disk I/O; samples are applied each second
                status, body = http("GET", f"{service.url}/get_stats")
                return (status == 200 and body["current_stat"] is not None
                        and body["current_stat"]["disk_stat"]["count_stats"]["read_count"] is not None
                        and body["past_stat"]["avg_cpu_usage"] is not None)
            wait_for(complete, START_SECONDS, "a snapshot with disk counters and applied samples")
            status, body = http("GET", f"{service.url}/get_stats?node=pindrop-e2e.local")
            assert status == 200
            check_shape(body)
            current, past = body["current_stat"], body["past_stat"]
            assert before <= current["time"] <= time.time()
            times = current["cpu_stat"]["time_stat"]
            assert all(is_number(times[key]) and times[key] >= 0 for key in ("idle", "user", "system"))
            assert all(type(value) is int and value >= 0 for value in current["disk_stat"]["count_stats"].values())
            assert is_number(current["memory_stat"]["vm"]["free"])
            assert all(PERCENT_TEXT.fullmatch(past[key]) for key in ("avg_cpu_usage", "min_cpu_usage",
                                                                     "max_cpu_usage", "avg_mem_usage",
                                                                     "min_mem_usage", "max_mem_usage"))
            started = past["service_start_time"]
            started_epoch = calendar.timegm(time.strptime(started[:19], "%Y-%m-%d %H:%M:%S")) + float(started[19:])
            assert before - 1.0 <= started_epoch <= ready  # when this serve started, in UTC
            # bad input on the real server: JSON errors, and the service keeps serving
            status, error = http("GET", f"{service.url}/get_stats?node=nope.local")
            assert status == 404 and "nope.local" in error["error"]
            status, error = http("GET", f"{service.url}/get_stats?node=%1b%5b2J")
            assert status == 400 and set(error) == {"error"}
            status, _ = http("POST", f"{service.url}/nodes", {"name": "second.local", "ip": [], **HELLO_INFO})
            assert status == 201
            status, error = http("GET", f"{service.url}/get_stats")
            assert status == 400 and "pindrop-e2e.local" in error["error"] and "second.local" in error["error"]
            assert stop(agent) == 0
        finally:
            if agent.poll() is None:
                agent.kill()
            agent.wait()
            agent.stderr.close()  # type: ignore[union-attr]
        assert stop(service.process) == 0
