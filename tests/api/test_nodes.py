"""The node inventory over HTTP, writes and listing: ``POST /nodes``, ``PUT`` and ``DELETE /nodes/{name}``,
``GET /nodes`` with its state filter, and the JSON 404/405 of the new paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from live_api import (
    HELLO,
    MAX_BODY_BYTES,
    LiveApi,
    assert_json_error,
    hello_body,
    process_entry,
    put_stats,
    quote,
    register,
    stats_body,
)

from servertrack.common.node_messages import STATS
from servertrack.common.node_schema import (
    MAX_DISKS,
    MAX_NAME,
    MAX_TEXT,
    MAX_TOP_PROCESSES,
)
from servertrack.common.protocol import MAX_FRAME_BYTES
from tests.conftest import FakeClock

START_ISO = "2027-01-15T08:00:17Z"  # live_api.START
BOOT_ISO = "2027-01-15T07:00:17Z"  # HELLO["boot_time"]
BOOT_EPOCH = 1_799_996_417.5  # the same instant in epoch seconds


@pytest.fixture
def nodes_api(seeded_api: LiveApi) -> LiveApi:
    """The seeded app (two servers with loads) with two registered nodes, one of them with stats:
    ``node-a`` (10.0.0.5, fd00::2) with a snapshot, ``node-b`` (10.0.0.6) without."""
    register(seeded_api, "node-a", ["10.0.0.5", "fd00::2"])
    put_stats(seeded_api, "node-a")
    register(seeded_api, "node-b", ["10.0.0.6"], hostname="node-b-host")
    return seeded_api


def names_listed(api: LiveApi, query: str = "") -> list[str]:
    reply = api.get(f"/nodes{query}")
    assert reply.status == 200, (reply.status, reply.raw)
    return [entry["name"] for entry in reply.json["nodes"]]


# -- POST /nodes ---------------------------------------------------------------


def test_registering_a_node_answers_201_with_its_summary(api: LiveApi) -> None:
    reply = api.post("/nodes", hello_body("Node01.Example", ["10.0.0.5", "FD00:0::2"], unknown_key="ignored"))
    assert reply.status == 201, reply.raw
    assert reply.content_type == "application/json"
    assert reply.headers["Location"] == "/nodes/node01.example"
    assert reply.json == {
        "name": "node01.example", "hostname": "node01", "state": "online", "last_seen": START_ISO,
        "ips": ["10.0.0.5", "fd00::2"], "boottime": BOOT_EPOCH, "boot_time": BOOT_ISO, "uptime_seconds": 3600,
        "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2, "memory_total": 16 * 2**30,
        "agent_version": "0.2.0", "interval": 10.0,
        "loadavg": None, "cpu_usage_percent": None, "memory_usage_percent": None, "stats_at": None,
        "paused": False, "clock_skew_seconds": None, "agent_key": None, "dropped": {}, "seq": None, "lost": None,
    }
    node = api.nodes.get("node01.example")
    assert node is not None and node.info == HELLO and node.ips == ["10.0.0.5", "fd00::2"]


def test_ip_is_optional_and_defaults_to_no_addresses(api: LiveApi) -> None:
    assert register(api, "lonely")["ips"] == []


def test_re_registering_updates_the_node_and_answers_200(nodes_api: LiveApi, clock: FakeClock) -> None:
    nodes_api.nodes.bye("node-a", clock())
    clock.advance(400)
    reply = nodes_api.post("/nodes", hello_body("NODE-A", ["10.0.0.7"], hostname="renamed", interval=2))
    assert reply.status == 200, reply.raw
    body = reply.json
    assert (body["hostname"], body["ips"], body["interval"], body["state"]) == ("renamed", ["10.0.0.7"], 2.0, "online")
    assert body["last_seen"] == "2027-01-15T08:06:57Z"
    assert body["stats_at"] == START_ISO  # the snapshot outlives a new hello
    assert "Location" not in reply.headers
    assert_json_error(nodes_api.get("/nodes/10.0.0.5"), 404)
    assert nodes_api.get("/nodes/10.0.0.7").json["name"] == "node-a"
    assert len(nodes_api.nodes) == 2


def test_a_full_registry_refuses_new_nodes_with_503(make_api: Callable[..., LiveApi]) -> None:
    api = make_api(max_servers=2)
    register(api, "node-a")
    register(api, "node-b")
    before, refused = api.node_inventory(), api.nodes.refused
    assert_json_error(api.post("/nodes", hello_body("node-c")), 503, "node limit reached")
    after = api.node_inventory()
    assert after["nodes"] == before["nodes"]
    assert api.nodes.refused == refused + 1  # counted, like a refused hello over ZeroMQ
    assert api.counters()["kinds"]["hello"]["dropped"] == {"node_refused": 1}
    # known nodes can still refresh themselves and send stats
    assert api.post("/nodes", hello_body("node-a", hostname="again")).status == 200
    put_stats(api, "node-b")


def _without(key: str) -> dict[str, Any]:
    body = hello_body("node-new", ["10.0.0.8"])
    del body[key]
    return body


BAD_REGISTRATIONS: list[tuple[object, str]] = [
    ([], "JSON object"),
    ("node-new", "JSON object"),
    (None, "JSON object"),
    (_without("name"), "name"),
    (hello_body("bad name"), "name"),
    (hello_body(5), "name"),  # type: ignore[arg-type]
    (hello_body(""), "name"),
    (hello_body("x" * 254), "name"),
    (hello_body("node-new", "10.0.0.8"), "ip"),  # type: ignore[arg-type]
    (hello_body("node-new", ["10.0.0.300"]), "ip"),
    (hello_body("node-new", ["fd00:::2"]), "ip"),
    (hello_body("node-new", [5]), "ip"),  # type: ignore[list-item]
    (hello_body("node-new", ["10.0.0.1"] * 33), "ip"),
    *[(_without(key), key) for key in HELLO],
    (hello_body("node-new", hostname=5), "hostname"),
    (hello_body("node-new", hostname="h" * 257), "hostname"),
    (hello_body("node-new", boot_time=-1), "boot_time"),
    (hello_body("node-new", boot_time="yesterday"), "boot_time"),
    (hello_body("node-new", os=None), "os"),
    (hello_body("node-new", platform=["x86_64"]), "platform"),
    (hello_body("node-new", cpu_count=0), "cpu_count"),
    (hello_body("node-new", cpu_count=4.0), "cpu_count"),
    (hello_body("node-new", cpu_count=True), "cpu_count"),
    (hello_body("node-new", cpu_count="4"), "cpu_count"),
    (hello_body("node-new", cpu_count=1025), "cpu_count"),
    (hello_body("node-new", memory_total=-1), "memory_total"),
    (hello_body("node-new", agent_version="v" * 65), "agent_version"),
    (hello_body("node-new", interval=0), "interval"),
    (hello_body("node-new", interval=3601), "interval"),
    (hello_body("node-new", interval=None), "interval"),
]


@pytest.mark.parametrize("body, named", BAD_REGISTRATIONS)
@pytest.mark.parametrize("name", ["node-new", "node-a"])
def test_a_bad_registration_is_a_400_naming_the_field_and_changes_nothing(
    nodes_api: LiveApi, body: object, named: str, name: str
) -> None:
    if isinstance(body, dict) and body.get("name") == "node-new":
        body = {**body, "name": name}  # a new node, and a refresh of a known one
    before = nodes_api.state()
    assert_json_error(nodes_api.post("/nodes", body), 400, named)
    assert nodes_api.state() == before


@pytest.mark.parametrize("raw", ["", "{", "nope", '{"name": "node-new",}', "\xff"])
def test_a_registration_that_is_not_json_is_a_400(nodes_api: LiveApi, raw: str) -> None:
    before = nodes_api.state()
    assert_json_error(nodes_api.request("POST", "/nodes", raw.encode("latin-1")), 400, "JSON")
    assert nodes_api.state() == before


def test_an_oversized_registration_is_a_json_413(nodes_api: LiveApi) -> None:
    before = nodes_api.state()
    body = json.dumps({**hello_body("node-new"), "padding": "x" * MAX_BODY_BYTES})
    assert_json_error(nodes_api.request("POST", "/nodes", body), 413)
    assert nodes_api.state() == before


# -- PUT /nodes/{name} ---------------------------------------------------------


def test_a_stats_snapshot_is_stored_and_summarised(nodes_api: LiveApi, clock: FakeClock) -> None:
    clock.advance(61)
    body = put_stats(nodes_api, "Node-B", stats_body(cpu={**stats_body()["cpu"], "per_cpu": [1.0, 99.5]}))
    assert body["name"] == "node-b"
    assert (body["stats_at"], body["last_seen"]) == ("2027-01-15T08:01:18Z", "2027-01-15T08:01:18Z")
    assert (body["loadavg"], body["cpu_usage_percent"], body["memory_usage_percent"]) == (
        [0.5, 0.4, 0.3], [1.0, 99.5], 37.5)
    node = nodes_api.nodes.get("node-b")
    stored = node.stats() if node is not None else None
    assert stored is not None and stored["cpu"]["per_cpu"] == [1.0, 99.5]


def test_a_snapshot_replaces_the_previous_one_and_unknown_keys_are_dropped(nodes_api: LiveApi) -> None:
    put_stats(nodes_api, "node-a", stats_body(swap={"total": 8, "used": 4, "percent": 50.0, "extra": 1}, extra=2))
    assert nodes_api.get("/nodes/node-a/memory").json["swap"] == {"total": 8, "used": 4, "percent": 50.0}
    stored = nodes_api.nodes.get("node-a").stats()  # type: ignore[union-attr]
    assert stored is not None and "extra" not in stored


def test_a_snapshot_may_be_sent_to_an_ip_address(nodes_api: LiveApi) -> None:
    assert put_stats(nodes_api, "10.0.0.6")["name"] == "node-b"


def test_stats_for_an_unknown_node_are_a_404_and_register_nothing(nodes_api: LiveApi) -> None:
    before = nodes_api.state()
    message = assert_json_error(
        nodes_api.request("PUT", "/nodes/node-new", json.dumps(stats_body())), 404, "node-new")
    assert "unknown" in message
    assert_json_error(nodes_api.request("PUT", "/nodes/10.9.9.9", json.dumps(stats_body())), 404, "10.9.9.9")
    assert nodes_api.state() == before


def _stats_with(path: list[str | int], value: object) -> dict[str, Any]:
    """A valid snapshot with the value at ``path`` replaced (or removed, if ``value`` is ``...``)."""
    body = stats_body()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


BAD_SNAPSHOTS: list[tuple[object, str]] = [
    ([], "JSON object"),
    ("stats", "JSON object"),
    ({}, "cpu"),
    (_stats_with(["memory"], ...), "memory"),
    (_stats_with(["cpu", "percent"], 100.5), "cpu.percent"),
    (_stats_with(["cpu", "percent"], "25"), "cpu.percent"),
    (_stats_with(["cpu", "per_cpu"], "20,30"), "cpu.per_cpu"),
    (_stats_with(["cpu", "per_cpu", 1], -1), "cpu.per_cpu[1]"),
    (_stats_with(["cpu", "load_avg"], [0.5, 0.4]), "cpu.load_avg"),
    (_stats_with(["cpu", "times_percent", "iowait"], ...), "cpu.times_percent.iowait"),
    (_stats_with(["memory", "total"], 1.5), "memory.total"),
    (_stats_with(["swap", "used"], True), "swap.used"),
    (_stats_with(["disks"], {"device": "/dev/vda1"}), "disks"),
    (_stats_with(["disks", 0, "mountpoint"], "m" * 257), "disks[0].mountpoint"),
    (_stats_with(["disk_io", "read_ops_per_s"], -3.0), "disk_io.read_ops_per_s"),
    (_stats_with(["network", 0, "rx_errors"], 1.5), "network[0].rx_errors"),
    (_stats_with(["processes", "count"], -1), "processes.count"),
    (_stats_with(["processes", "top_cpu", 0, "pid"], -1), "processes.top_cpu[0].pid"),
    (_stats_with(["processes", "top_memory", 1, "cmdline"], None), "processes.top_memory[1].cmdline"),
    (_stats_with(["processes", "top_cpu"], [process_entry(pid) for pid in range(21)]), "processes.top_cpu"),
]


@pytest.mark.parametrize("body, named", BAD_SNAPSHOTS)
@pytest.mark.parametrize("node", ["node-a", "node-b"])  # with and without a stored snapshot
def test_a_bad_snapshot_is_a_400_naming_the_path_and_changes_nothing(
    nodes_api: LiveApi, clock: FakeClock, body: object, named: str, node: str
) -> None:
    clock.advance(5)  # a stored request would move last_seen
    before = nodes_api.state()
    message = assert_json_error(nodes_api.request("PUT", f"/nodes/{node}", json.dumps(body)), 400, named)
    assert nodes_api.state() == before, message


@pytest.mark.parametrize("raw", ["bad%20name", "x" * 254, "fd00:::2", "node%2Fa"])
def test_stats_for_an_id_that_is_neither_a_name_nor_an_address_are_a_400(nodes_api: LiveApi, raw: str) -> None:
    before = nodes_api.state()
    assert_json_error(nodes_api.request("PUT", f"/nodes/{raw}", json.dumps(stats_body())), 400, "neither")
    assert nodes_api.state() == before


def test_a_snapshot_that_is_not_json_is_a_400(nodes_api: LiveApi) -> None:
    before = nodes_api.state()
    assert_json_error(nodes_api.request("PUT", "/nodes/node-a", b'{"cpu": '), 400, "JSON")
    assert nodes_api.state() == before


def test_texts_are_bounded_in_utf8_bytes_so_a_snapshot_stays_within_a_frame(nodes_api: LiveApi) -> None:
    # Within its cap in characters, but not in UTF-8 bytes: refused, so a node never keeps over a frame.
    wide = "\U0001F600"  # 4 bytes in UTF-8
    short, long = wide * MAX_NAME, wide * MAX_TEXT
    disk = {"device": short, "mountpoint": long, "fstype": short, "total": 1, "used": 1, "free": 0, "percent": 100.0}
    processes = [process_entry(pid, name=short, user=short, status=short, cmdline=long)
                 for pid in range(MAX_TOP_PROCESSES)]
    body = stats_body(disks=[disk] * MAX_DISKS,
                      processes={"count": 20, "top_cpu": processes, "top_memory": processes})
    assert len(msgpack.packb(body)) > MAX_FRAME_BYTES
    before = nodes_api.state()
    assert_json_error(nodes_api.request("PUT", "/nodes/node-a", json.dumps(body)), 400, "disks[0].device", "bytes")
    assert nodes_api.state() == before


# -- DELETE /nodes/{name} ------------------------------------------------------


def test_deleting_a_node_forgets_it_but_keeps_its_load_history(nodes_api: LiveApi) -> None:
    nodes_api.record("node-a", cpu=12.0, ram=34.0)
    nodes_api.apply()
    loads = nodes_api.loads_of("node-a")
    reply = nodes_api.request("DELETE", "/nodes/Node-A")
    assert (reply.status, reply.raw) == (204, b"")
    assert_json_error(nodes_api.get("/nodes/node-a"), 404, "node-a")
    assert_json_error(nodes_api.get("/nodes/10.0.0.5"), 404, "10.0.0.5")
    assert_json_error(nodes_api.get("/nodes/fd00::2/cpu"), 404)
    assert names_listed(nodes_api) == ["node-b"]
    assert nodes_api.loads_of("node-a") == loads
    assert register(nodes_api, "node-a", ["10.0.0.5"])["stats_at"] is None  # a new registration starts afresh


def test_a_node_may_be_deleted_by_ip_address(nodes_api: LiveApi) -> None:
    assert nodes_api.request("DELETE", "/nodes/10.0.0.6").status == 204
    assert names_listed(nodes_api) == ["node-a"]


@pytest.mark.parametrize("path, status", [
    ("/nodes/node-c", 404),
    ("/nodes/10.9.9.9", 404),
    ("/nodes/bad%20name", 400),
    ("/nodes/10.0.0.9", 409),  # shared by node-a and node-c
])
def test_a_refused_delete_changes_nothing(nodes_api: LiveApi, path: str, status: int) -> None:
    if status == 409:
        register(nodes_api, "node-c", ["10.0.0.9"])
        nodes_api.post("/nodes", hello_body("node-a", ["10.0.0.5", "10.0.0.9"]))
    before = nodes_api.state()
    assert_json_error(nodes_api.request("DELETE", path), status)
    assert nodes_api.state() == before


# -- GET /nodes -----------------------------------------------------------------


def test_an_empty_inventory(api: LiveApi) -> None:
    reply = api.get("/nodes")
    assert (reply.status, reply.content_type, reply.json) == (200, "application/json", {"nodes": []})


def test_the_inventory_lists_every_node_sorted_by_name(nodes_api: LiveApi) -> None:
    register(nodes_api, "AAA.example")
    nodes_api.record("not-a-node", cpu=1.0, ram=1.0)  # a server that only sends loads is not a node
    nodes_api.apply()
    assert nodes_api.get("/nodes").json == {"nodes": [
        {"name": "aaa.example", "hostname": "node01", "state": "online", "last_seen": START_ISO, "ips": []},
        {"name": "node-a", "hostname": "node01", "state": "online", "last_seen": START_ISO,
         "ips": ["10.0.0.5", "fd00::2"]},
        {"name": "node-b", "hostname": "node-b-host", "state": "online", "last_seen": START_ISO,
         "ips": ["10.0.0.6"]},
    ]}


def test_the_state_filter_follows_the_clock(nodes_api: LiveApi, clock: FakeClock) -> None:
    # HELLO's interval is 10 s: stale after 30 s of silence, offline after offline_after (300 s).
    assert nodes_api.nodes.offline_after == 300
    register(nodes_api, "node-c", interval=1.0)
    states = {state: names_listed(nodes_api, f"?state={state}") for state in ("online", "stale", "offline")}
    assert states == {"online": ["node-a", "node-b", "node-c"], "stale": [], "offline": []}

    clock.advance(3.0)  # node-c: 3 intervals, still online
    assert names_listed(nodes_api, "?state=online") == ["node-a", "node-b", "node-c"]
    clock.advance(0.5)
    assert names_listed(nodes_api, "?state=stale") == ["node-c"]

    clock.advance(26.5)  # 30 s: 3 intervals of node-a and node-b
    assert names_listed(nodes_api, "?state=online") == ["node-a", "node-b"]
    clock.advance(0.5)
    assert names_listed(nodes_api, "?state=stale") == ["node-a", "node-b", "node-c"]
    put_stats(nodes_api, "node-b")  # a snapshot is a sign of life
    assert names_listed(nodes_api, "?state=online") == ["node-b"]

    clock.advance(269.5)  # node-a, node-c: exactly 300 s of silence, still stale
    assert names_listed(nodes_api, "?state=stale") == ["node-a", "node-b", "node-c"]
    clock.advance(0.5)
    assert names_listed(nodes_api, "?state=offline") == ["node-a", "node-c"]
    assert names_listed(nodes_api, "?state=stale") == ["node-b"]

    nodes_api.nodes.bye("node-b", clock())  # a clean stop: offline at once
    assert names_listed(nodes_api, "?state=offline") == ["node-a", "node-b", "node-c"]
    assert names_listed(nodes_api, "?state=online") == []
    assert nodes_api.get("/nodes/node-b").json["state"] == "offline"
    register_again = nodes_api.post("/nodes", hello_body("node-b"))
    assert register_again.json["state"] == "online"
    assert [entry["state"] for entry in nodes_api.get("/nodes").json["nodes"]] == ["offline", "online", "offline"]


@pytest.mark.parametrize("query", ["?state=", "?state=ONLINE", "?state=gone", "?state=online,stale", "?state=%00"])
def test_an_unknown_state_filter_is_a_400(nodes_api: LiveApi, query: str) -> None:
    assert_json_error(nodes_api.get(f"/nodes{query}"), 400, "state", "online", "stale", "offline")


# -- routing ---------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", "/nodes/"),
    ("GET", "/nodes//cpu"),
    ("GET", "/nodes/node-a/"),
    ("GET", "/nodes/node-a/loads"),
    ("GET", "/nodes/node-a/cpu/extra"),
    ("GET", "/nodes/node-a/processes/"),
    ("GET", "/nodes/node-a/processes/101/extra"),
    ("GET", "/nodes/node-a/summary/1h"),
    ("GET", "/node/node-a"),
    ("POST", "/nodes/"),
    ("DELETE", "/nodes/node-a/"),
])
def test_an_unknown_node_path_is_a_json_404(nodes_api: LiveApi, method: str, path: str) -> None:
    before = nodes_api.state()
    assert_json_error(nodes_api.request(method, path), 404, "no such endpoint")
    assert nodes_api.state() == before


@pytest.mark.parametrize("method, path", [
    ("PUT", "/nodes"),
    ("DELETE", "/nodes"),
    ("PATCH", "/nodes"),
    ("POST", "/nodes/node-a"),
    ("PATCH", "/nodes/node-a"),
    ("POST", "/nodes/node-a/cpu"),
    ("PUT", "/nodes/node-a/memory"),
    ("DELETE", "/nodes/node-a/processes"),
    ("DELETE", "/nodes/node-a/processes/101"),
    ("DELETE", "/nodes/node-a/proc"),
    ("POST", "/nodes/node-a/proc/101"),
    ("POST", "/nodes/node-a/summary"),
    ("DELETE", "/nodes/node-a/summary"),
])
def test_a_method_a_node_route_does_not_support_is_a_json_405(nodes_api: LiveApi, method: str, path: str) -> None:
    body = json.dumps(stats_body()) if method in ("POST", "PUT", "PATCH") else None
    before = nodes_api.state()
    assert_json_error(nodes_api.request(method, path, body), 405, method)
    assert nodes_api.state() == before


def test_the_server_endpoints_do_not_see_nodes(nodes_api: LiveApi) -> None:
    # Registering a node stores no loads: /servers lists the servers with samples only.
    assert [entry["server"] for entry in nodes_api.get("/servers").json["servers"]] == ["seed-01"]
    assert_json_error(nodes_api.get(f"/servers/{quote('node-a')}/loads"), 404)
