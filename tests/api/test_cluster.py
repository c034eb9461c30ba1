"""The cluster-stats transcript's API under ``/cluster``: nodes addressed by IP address, on the same
registry as the native ``/nodes``.

The expected shapes come from the specification, not from the code:
``GET /cluster/nodes`` is a bare JSON list of IP strings (each node's first
non-loopback address, sorted); ``GET /cluster/nodes/{ip}``, ``/cpu``,
``/memory``, ``/proc`` and ``/proc/{pid}`` are the native bodies;
``POST /cluster/nodes`` takes ``{"ip": ..., "hostname": ..., ...}`` (the name
defaults to the hostname); ``PUT /cluster/nodes/{ip}`` a stats snapshot;
``DELETE /cluster/nodes/{ip}`` answers 204.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live_api import (
    HELLO,
    HTTP_EXAMPLES,
    MAX_BODY_BYTES,
    LiveApi,
    Response,
    assert_json_error,
    process_entry,
    put_stats,
    quote,
    register,
    stats_body,
)

from tests.conftest import FakeClock

START_ISO = "2027-01-15T08:00:17Z"  # live_api.START
BOOT = HELLO["boot_time"]  # an hour before START
SNAPSHOT_PIDS = [101, 102, 202]  # stats_body(): top_cpu 101, 102; top_memory 202, 101


def transcript_hello(ip: Any, hostname: Any = "node-a", **fields: Any) -> dict[str, Any]:
    """A transcript agent's registration: its address(es), its hostname and hello fields."""
    return {"ip": ip, "hostname": hostname, **fields}


def cluster_register(api: LiveApi, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    reply = api.post("/cluster/nodes", body)
    assert reply.status == status, (reply.status, reply.raw)
    return reply.json


def get_json(api: LiveApi, path: str) -> Any:
    reply = api.get(path)
    assert reply.status == 200, (path, reply.status, reply.raw)
    assert reply.content_type == "application/json"
    return reply.json


def put_json(api: LiveApi, path: str, body: Any) -> Response:
    return api.request("PUT", path, json.dumps(body))


@pytest.fixture
def cluster_api(seeded_api: LiveApi) -> LiveApi:
    """Nodes registered both ways:

    - ``node-a`` over ``/cluster`` at 127.0.0.1, 192.168.2.10, fd00::10, with a snapshot;
    - ``node-b`` over ``/cluster`` at 192.168.2.9 (a bare string), without a snapshot;
    - ``native-c`` over ``/nodes`` at 10.0.0.5;
    - ``v6-only`` over ``/nodes`` at ::1, fd00::20;
    - ``loopback-only`` over ``/nodes`` at 127.0.0.2; ``no-address`` over ``/nodes`` without addresses.
    """
    api = seeded_api
    cluster_register(api, transcript_hello(["127.0.0.1", "192.168.2.10", "fd00::10"], "node-a",
                                           boottime=BOOT, os="Linux 6.1.0", cpu_count=2))
    assert put_json(api, "/cluster/nodes/192.168.2.10", stats_body()).status == 200
    cluster_register(api, transcript_hello("192.168.2.9", "node-b"))
    register(api, "native-c", ["10.0.0.5"])
    register(api, "v6-only", ["::1", "fd00::20"])
    register(api, "loopback-only", ["127.0.0.2"])
    register(api, "no-address")
    return api


# -- GET /cluster/nodes ------------------------------------------------------------------


def test_the_listing_is_a_bare_list_of_each_nodes_first_non_loopback_address_sorted(cluster_api: LiveApi) -> None:
    # numerically, IPv4 first: 192.168.2.9 before 192.168.2.10; loopback-only and address-less nodes left out
    assert get_json(cluster_api, "/cluster/nodes") == ["10.0.0.5", "192.168.2.9", "192.168.2.10", "fd00::20"]


def test_an_empty_registry_lists_no_addresses(api: LiveApi) -> None:
    assert get_json(api, "/cluster/nodes") == []


def test_the_native_listing_keeps_its_envelope(cluster_api: LiveApi) -> None:
    body = get_json(cluster_api, "/nodes")
    assert set(body) == {"nodes"}
    assert [entry["name"] for entry in body["nodes"]] == [
        "loopback-only", "native-c", "no-address", "node-a", "node-b", "v6-only"]


def test_a_first_address_two_nodes_share_is_listed_once_and_reading_it_is_a_409(cluster_api: LiveApi) -> None:
    register(cluster_api, "twin", ["192.168.2.9", "10.9.9.9"])
    assert get_json(cluster_api, "/cluster/nodes") == ["10.0.0.5", "192.168.2.9", "192.168.2.10", "fd00::20"]
    assert_json_error(cluster_api.get("/cluster/nodes/192.168.2.9"), 409, "192.168.2.9", "node-b", "twin")


def test_the_first_address_follows_the_agents_order_and_ipv4_mapped_loopback_is_loopback(api: LiveApi) -> None:
    register(api, "mapped", ["::ffff:127.0.0.1", "fd00::5", "10.1.1.1"])
    register(api, "ordered", ["10.2.2.2", "10.1.1.2"])
    assert get_json(api, "/cluster/nodes") == ["10.2.2.2", "fd00::5"]


# -- POST /cluster/nodes -----------------------------------------------------------------


def test_registering_answers_201_with_the_native_detail_named_after_the_hostname(api: LiveApi) -> None:
    reply = api.post("/cluster/nodes", transcript_hello(
        ["127.0.0.1", "192.168.2.10"], "Web-01.Example", boottime=BOOT, os="Linux 6.1.0", platform="x86_64",
        cpu_count=2, memory_total=16 * 2**30, agent_version="cluster-stats-1", interval=10.0, extra="ignored"))
    assert reply.status == 201, reply.raw
    assert reply.content_type == "application/json"
    assert reply.headers["Location"] == "/cluster/nodes/192.168.2.10"
    assert reply.json == {
        "name": "web-01.example", "hostname": "Web-01.Example", "state": "online", "last_seen": START_ISO,
        "ips": ["127.0.0.1", "192.168.2.10"], "boottime": BOOT, "boot_time": "2027-01-15T07:00:17Z",
        "uptime_seconds": 3600, "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2,
        "memory_total": 16 * 2**30, "agent_version": "cluster-stats-1", "interval": 10.0,
        "loadavg": None, "cpu_usage_percent": None, "memory_usage_percent": None, "stats_at": None,
        "paused": False, "clock_skew_seconds": None, "agent_key": None, "dropped": {}, "seq": None, "lost": None,
    }
    assert get_json(api, "/nodes/web-01.example") == reply.json  # one registry
    assert get_json(api, "/cluster/nodes") == ["192.168.2.10"]
    assert api.counters()["kinds"]["hello"] == {"received": 1, "applied": 1, "dropped": {}, "pending": 0}


def test_the_smallest_registration_is_an_address_and_a_hostname(api: LiveApi) -> None:
    body = cluster_register(api, {"ip": "192.168.2.11", "hostname": "tiny"})
    assert (body["name"], body["ips"], body["state"]) == ("tiny", ["192.168.2.11"], "online")
    for key in ("boottime", "boot_time", "uptime_seconds", "os", "platform", "cpu_count", "memory_total",
                "agent_version", "interval", "loadavg", "cpu_usage_percent", "memory_usage_percent", "stats_at"):
        assert body[key] is None, key


def test_a_given_name_wins_over_the_hostname_and_nulls_count_as_absent(api: LiveApi) -> None:
    body = cluster_register(api, {"ip": ["fd00::1"], "name": "Named", "hostname": "ignored-for-the-name",
                                  "os": None, "boot_time": BOOT})
    assert (body["name"], body["hostname"], body["os"], body["boottime"]) == ("named", "ignored-for-the-name",
                                                                              None, BOOT)
    assert cluster_register(api, {"ip": "fd00::2", "name": "no-hostname"})["hostname"] is None


def test_boottime_and_boot_time_may_both_be_given_if_they_agree(api: LiveApi) -> None:
    body = cluster_register(api, transcript_hello("10.3.3.3", boottime=BOOT, boot_time=BOOT))
    assert body["boottime"] == BOOT


def test_registering_again_refreshes_the_node_and_answers_200(cluster_api: LiveApi, clock: FakeClock) -> None:
    clock.advance(30)
    body = cluster_register(cluster_api, transcript_hello(["192.168.2.12"], "NODE-A", os="Linux 6.6"), status=200)
    assert (body["name"], body["ips"], body["os"]) == ("node-a", ["192.168.2.12"], "Linux 6.6")
    assert body["stats_at"] == START_ISO  # the snapshot outlives the new hello
    assert_json_error(cluster_api.get("/cluster/nodes/192.168.2.10"), 404, "192.168.2.10")
    assert get_json(cluster_api, "/cluster/nodes/192.168.2.12")["name"] == "node-a"


# -- GET /cluster/nodes/{ip} and its sections -----------------------------------------------


@pytest.mark.parametrize("address", ["192.168.2.10", "127.0.0.1", "fd00::10", "FD00:0::10", "fd00%3A%3A10"])
def test_every_read_is_the_native_body_for_any_of_the_nodes_addresses(cluster_api: LiveApi, address: str) -> None:
    for suffix in ("", "/cpu", "/memory", "/proc", "/proc/101", "/proc/202"):
        assert get_json(cluster_api, f"/cluster/nodes/{address}{suffix}") == get_json(
            cluster_api, f"/nodes/node-a{suffix}")


def test_the_node_detail_carries_the_summary_fields_by_their_transcript_names(cluster_api: LiveApi) -> None:
    body = get_json(cluster_api, "/cluster/nodes/192.168.2.10")
    snapshot = stats_body()
    assert body["boottime"] == BOOT and isinstance(body["boottime"], float)
    assert body["loadavg"] == snapshot["cpu"]["load_avg"]
    assert body["cpu_usage_percent"] == snapshot["cpu"]["per_cpu"]
    assert body["memory_usage_percent"] == snapshot["memory"]["percent"]
    assert "load_avg" not in body


def test_cpu_and_memory_are_the_snapshots_sections(cluster_api: LiveApi) -> None:
    snapshot = stats_body()
    wrap = {"name": "node-a", "stats_at": START_ISO}
    assert get_json(cluster_api, "/cluster/nodes/192.168.2.10/cpu") == {**wrap, **snapshot["cpu"]}
    assert get_json(cluster_api, "/cluster/nodes/192.168.2.10/memory") == {
        **wrap, "memory": snapshot["memory"], "swap": snapshot["swap"]}


def test_proc_is_the_list_of_pids_the_snapshot_holds(cluster_api: LiveApi) -> None:
    pids = get_json(cluster_api, "/cluster/nodes/192.168.2.10/proc")
    assert pids == SNAPSHOT_PIDS and all(type(pid) is int for pid in pids)


def test_proc_pid_is_the_process_entry(cluster_api: LiveApi) -> None:
    entry = get_json(cluster_api, "/cluster/nodes/192.168.2.10/proc/101")
    assert {"pid", "name", "status", "cpu_percent", "memory_percent", "rss"} <= set(entry)
    assert entry == process_entry(101)
    by_memory = get_json(cluster_api, "/cluster/nodes/192.168.2.10/proc/202")
    assert (by_memory["pid"], by_memory["name"], by_memory["status"]) == (202, "postgres", "running")


# -- PUT and DELETE /cluster/nodes/{ip} ----------------------------------------------------------


def test_put_stores_a_snapshot_counted_as_one(cluster_api: LiveApi, clock: FakeClock) -> None:
    clock.advance(5)
    before = cluster_api.counters()["kinds"]["snapshot"]
    cpu = {**stats_body()["cpu"], "per_cpu": [1.0, 2.0, 3.0], "load_avg": [3.0, 2.0, 1.0]}
    top = [process_entry(7, status="sleeping")]
    reply = put_json(cluster_api, "/cluster/nodes/192.168.2.9",
                     stats_body(cpu=cpu, processes={"count": 9, "top_cpu": top, "top_memory": top}))
    assert reply.status == 200, reply.raw
    body = reply.json
    assert (body["name"], body["stats_at"], body["loadavg"], body["cpu_usage_percent"]) == (
        "node-b", "2027-01-15T08:00:22Z", [3.0, 2.0, 1.0], [1.0, 2.0, 3.0])
    assert get_json(cluster_api, "/nodes/node-b") == body  # one registry
    assert get_json(cluster_api, "/cluster/nodes/192.168.2.9/proc") == [7]
    assert get_json(cluster_api, "/cluster/nodes/192.168.2.9/proc/7")["status"] == "sleeping"
    after = cluster_api.counters()["kinds"]["snapshot"]
    assert (after["received"], after["applied"]) == (before["received"] + 1, before["applied"] + 1)


def test_delete_answers_204_and_forgets_the_node_everywhere(cluster_api: LiveApi) -> None:
    reply = cluster_api.request("DELETE", "/cluster/nodes/192.168.2.9")
    assert (reply.status, reply.raw) == (204, b"")
    assert get_json(cluster_api, "/cluster/nodes") == ["10.0.0.5", "192.168.2.10", "fd00::20"]
    assert_json_error(cluster_api.get("/cluster/nodes/192.168.2.9"), 404, "192.168.2.9")
    assert_json_error(cluster_api.get("/nodes/node-b"), 404, "node-b")
    assert_json_error(cluster_api.request("DELETE", "/cluster/nodes/192.168.2.9"), 404)


# -- bad input on every route -------------------------------------------------------------


READS = ["", "/cpu", "/memory", "/proc", "/proc/101"]
NOT_ADDRESSES = ["node-a", "NODE-A", "192.168.2.300", "192.168.2", "010.0.0.1", "fd00:::10", "1.2.3.4.5",
                 "%00", "%1B%5B2J", "192.168.2.10%20", "a" * 300, "%F0%9F%92%A5", "-1"]


def _every_request(address: str) -> list[tuple[str, str, bytes | None]]:
    snapshot = json.dumps(stats_body()).encode()
    return [*[("GET", f"/cluster/nodes/{address}{suffix}", None) for suffix in READS],
            ("PUT", f"/cluster/nodes/{address}", snapshot), ("DELETE", f"/cluster/nodes/{address}", None)]


@pytest.mark.parametrize("raw", NOT_ADDRESSES)
def test_what_is_not_an_ip_address_is_a_400_on_every_route_and_changes_nothing(cluster_api: LiveApi, raw: str) -> None:
    before = cluster_api.state()
    for method, path, body in _every_request(raw):
        assert_json_error(cluster_api.request(method, path, body), 400, "not an IP address")
    assert cluster_api.state() == before


@pytest.mark.parametrize("address", ["192.168.2.99", "fd00::99", "0.0.0.0"])
def test_an_unknown_address_is_a_404_on_every_route(cluster_api: LiveApi, address: str) -> None:
    before = cluster_api.state()
    for method, path, body in _every_request(address):
        assert_json_error(cluster_api.request(method, path, body), 404, address)
    assert cluster_api.state() == before
    assert cluster_api.counters()["kinds"]["snapshot"]["dropped"] == {"unknown_node": 1}


def test_a_shared_address_is_a_409_naming_the_nodes_on_every_route(cluster_api: LiveApi) -> None:
    register(cluster_api, "twin", ["10.8.8.8", "fd00::10"])
    before = cluster_api.state()
    for method, path, body in _every_request("fd00::10"):
        assert_json_error(cluster_api.request(method, path, body), 409, "fd00::10", "node-a", "twin")
    assert cluster_api.state() == before


@pytest.mark.parametrize("suffix", ["/cpu", "/memory", "/proc", "/proc/101"])
def test_the_sections_of_a_node_without_stats_are_a_404(cluster_api: LiveApi, suffix: str) -> None:
    assert_json_error(cluster_api.get(f"/cluster/nodes/192.168.2.9{suffix}"), 404, "node-b", "no stats")


@pytest.mark.parametrize("pid", ["abc", "-1", "1.5", "%2B1", "%201", "4294967296", "12345678901", "1e3", "%D9%A1",
                                 "%00"])
def test_a_pid_that_is_not_a_pid_is_a_400(cluster_api: LiveApi, pid: str) -> None:
    assert_json_error(cluster_api.get(f"/cluster/nodes/192.168.2.10/proc/{pid}"), 400, "pid")


@pytest.mark.parametrize("pid", ["999", "0", "4294967295"])
def test_a_pid_the_snapshot_does_not_hold_is_a_404(cluster_api: LiveApi, pid: str) -> None:
    assert_json_error(cluster_api.get(f"/cluster/nodes/192.168.2.10/proc/{pid}"), 404, pid)


BAD_REGISTRATIONS: list[tuple[object, str]] = [
    ([], "JSON object"),
    ("192.168.2.50", "JSON object"),
    (None, "JSON object"),
    ({"hostname": "new-node"}, "ip"),
    (transcript_hello([], "new-node"), "ip"),
    (transcript_hello(None, "new-node"), "ip"),
    (transcript_hello(5, "new-node"), "ip"),
    (transcript_hello({"address": "10.0.0.1"}, "new-node"), "ip"),
    (transcript_hello("192.168.2.300", "new-node"), "ip"),
    (transcript_hello("new-node", "new-node"), "ip"),
    (transcript_hello("10.0.0.1\n", "new-node"), "ip"),
    (transcript_hello(["10.0.0.1", 7], "new-node"), "ip"),
    (transcript_hello(["10.0.0.1"] * 33, "new-node"), "ip"),
    (transcript_hello("1" * 100, "new-node"), "ip"),
    ({"ip": "192.168.2.50"}, "hostname"),
    (transcript_hello("192.168.2.50", None), "hostname"),
    (transcript_hello("192.168.2.50", "bad name"), "hostname"),
    (transcript_hello("192.168.2.50", "evil\x1b[2J"), "hostname"),
    (transcript_hello("192.168.2.50", "10.0.0.1"), "hostname"),  # a name that reads as an address
    (transcript_hello("192.168.2.50", 5), "hostname"),
    (transcript_hello("192.168.2.50", ""), "hostname"),
    (transcript_hello("192.168.2.50", "h" * 254), "hostname"),
    (transcript_hello("192.168.2.50", "new-node", name=5), "name"),
    (transcript_hello("192.168.2.50", "new-node", name="bad name"), "name"),
    (transcript_hello("192.168.2.50", "new-node", name=""), "name"),
    (transcript_hello("192.168.2.50", "new-node", boottime="yesterday"), "boot_time"),
    (transcript_hello("192.168.2.50", "new-node", boottime=-1), "boot_time"),
    (transcript_hello("192.168.2.50", "new-node", boottime=1e17), "boot_time"),
    (transcript_hello("192.168.2.50", "new-node", boottime=True), "boot_time"),
    (transcript_hello("192.168.2.50", "new-node", boottime=BOOT, boot_time=BOOT + 1), "boottime"),
    (transcript_hello("192.168.2.50", "new-node", os="Linux\r\n6.1"), "os"),
    (transcript_hello("192.168.2.50", "new-node", os=["Linux"]), "os"),
    (transcript_hello("192.168.2.50", "new-node", platform="p" * 257), "platform"),
    (transcript_hello("192.168.2.50", "new-node", cpu_count="4"), "cpu_count"),
    (transcript_hello("192.168.2.50", "new-node", cpu_count=4.0), "cpu_count"),
    (transcript_hello("192.168.2.50", "new-node", cpu_count=0), "cpu_count"),
    (transcript_hello("192.168.2.50", "new-node", memory_total=-1), "memory_total"),
    (transcript_hello("192.168.2.50", "new-node", agent_version="v\x00"), "agent_version"),
    (transcript_hello("192.168.2.50", "new-node", interval=0), "interval"),
]


@pytest.mark.parametrize("body, named", BAD_REGISTRATIONS)
@pytest.mark.parametrize("hostname", ["new-node", "node-a"])
def test_a_bad_registration_is_a_400_naming_the_field_counted_and_changes_nothing(
    cluster_api: LiveApi, body: object, named: str, hostname: str
) -> None:
    if isinstance(body, dict) and body.get("hostname") == "new-node":
        body = {**body, "hostname": hostname}  # a new node, and a refresh of a known one
    before, hellos = cluster_api.state(), cluster_api.counters()["kinds"]["hello"]
    assert_json_error(cluster_api.post("/cluster/nodes", body), 400, named)
    assert cluster_api.state() == before
    after = cluster_api.counters()["kinds"]["hello"]
    assert (after["received"], after["applied"]) == (hellos["received"] + 1, hellos["applied"])


@pytest.mark.parametrize("raw", ["", "{", "nope", '{"ip": "10.0.0.1",}', "\xff", "NaN"])
def test_a_body_that_is_not_json_is_a_400(cluster_api: LiveApi, raw: str) -> None:
    before = cluster_api.state()
    assert_json_error(cluster_api.request("POST", "/cluster/nodes", raw.encode("latin-1")), 400, "JSON")
    assert_json_error(cluster_api.request("PUT", "/cluster/nodes/192.168.2.10", raw.encode("latin-1")), 400, "JSON")
    assert cluster_api.state() == before


BAD_SNAPSHOTS: list[tuple[object, str]] = [
    ([], "JSON object"),
    ("stats", "JSON object"),
    ({k: v for k, v in stats_body().items() if k != "cpu"}, "cpu"),
    (stats_body(cpu={**stats_body()["cpu"], "load_avg": [0.5, 0.4]}), "cpu.load_avg"),
    (stats_body(cpu={**stats_body()["cpu"], "per_cpu": ["20"]}), "cpu.per_cpu[0]"),
    (stats_body(memory={**stats_body()["memory"], "percent": 101}), "memory.percent"),
    (stats_body(processes={"count": 1, "top_cpu": [process_entry(1, status="run\x1bning")], "top_memory": []}),
     "processes.top_cpu[0].status"),
    (stats_body(processes={"count": 1, "top_cpu": [process_entry(2**32)], "top_memory": []}),
     "processes.top_cpu[0].pid"),
]


@pytest.mark.parametrize("body, named", BAD_SNAPSHOTS)
def test_a_bad_snapshot_is_a_400_naming_the_field_and_changes_nothing(
    cluster_api: LiveApi, body: object, named: str
) -> None:
    before, snapshots = cluster_api.state(), cluster_api.counters()["kinds"]["snapshot"]
    assert_json_error(put_json(cluster_api, "/cluster/nodes/192.168.2.10", body), 400, named)
    assert cluster_api.state() == before
    assert cluster_api.counters()["kinds"]["snapshot"]["received"] == snapshots["received"] + 1


@pytest.mark.parametrize("method, path", [("POST", "/cluster/nodes"), ("PUT", "/cluster/nodes/192.168.2.10")])
def test_a_huge_body_is_a_json_413(cluster_api: LiveApi, method: str, path: str) -> None:
    before = cluster_api.state()
    body = json.dumps({**transcript_hello("192.168.2.50", "new-node"), **stats_body(), "padding": "x" * MAX_BODY_BYTES})
    assert_json_error(cluster_api.request(method, path, body), 413)
    assert cluster_api.state() == before


@pytest.mark.parametrize("method, path", [("POST", "/cluster/nodes"), ("PUT", "/cluster/nodes/192.168.2.10")])
def test_a_body_that_is_not_declared_json_is_a_415(cluster_api: LiveApi, method: str, path: str) -> None:
    before = cluster_api.state()
    body = json.dumps({**transcript_hello("192.168.2.50", "new-node"), **stats_body()})
    reply = cluster_api.request(method, path, body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_json_error(reply, 415)
    assert cluster_api.state() == before


def test_a_write_from_a_foreign_origin_is_a_403(cluster_api: LiveApi) -> None:
    before = cluster_api.state()
    reply = cluster_api.request("DELETE", "/cluster/nodes/192.168.2.10", headers={"Origin": "http://evil.example"})
    assert_json_error(reply, 403)
    assert cluster_api.state() == before


def test_a_full_registry_refuses_a_new_node_with_503(make_api: Callable[..., LiveApi]) -> None:
    api = make_api(max_servers=1)
    cluster_register(api, transcript_hello("10.0.0.1", "only"))
    assert_json_error(api.post("/cluster/nodes", transcript_hello("10.0.0.2", "second")), 503, "node limit")
    assert get_json(api, "/cluster/nodes") == ["10.0.0.1"]
    cluster_register(api, transcript_hello("10.0.0.3", "only"), status=200)


@pytest.mark.parametrize("method, path", [
    ("PUT", "/cluster/nodes"), ("DELETE", "/cluster/nodes"), ("POST", "/cluster/nodes/192.168.2.10"),
    ("PATCH", "/cluster/nodes/192.168.2.10"), ("POST", "/cluster/nodes/192.168.2.10/cpu"),
    ("DELETE", "/cluster/nodes/192.168.2.10/proc"), ("PUT", "/cluster/nodes/192.168.2.10/proc/101"),
])
def test_a_method_a_route_does_not_support_is_a_json_405(cluster_api: LiveApi, method: str, path: str) -> None:
    body = json.dumps(stats_body()) if method in ("POST", "PUT", "PATCH") else None
    before = cluster_api.state()
    assert_json_error(cluster_api.request(method, path, body), 405, method)
    assert cluster_api.state() == before


@pytest.mark.parametrize("path", ["/cluster", "/cluster/", "/cluster/nodes/192.168.2.10/disks",
                                  "/cluster/nodes/192.168.2.10/processes", "/cluster/nodes/192.168.2.10/proc/1/x"])
def test_paths_outside_the_transcript_api_are_a_json_404(cluster_api: LiveApi, path: str) -> None:
    assert_json_error(cluster_api.get(path), 404, "no such endpoint")


def test_a_node_registered_natively_is_read_and_deleted_by_address(cluster_api: LiveApi) -> None:
    put_stats(cluster_api, "native-c")
    assert get_json(cluster_api, "/cluster/nodes/10.0.0.5/proc") == SNAPSHOT_PIDS
    assert get_json(cluster_api, f"/cluster/nodes/{quote('10.0.0.5')}")["name"] == "native-c"
    assert cluster_api.request("DELETE", "/cluster/nodes/10.0.0.5").status == 204
    assert "native-c" not in cluster_api.nodes


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
REGISTRATION_KEYS = st.sampled_from(["ip", "hostname", "name", "boottime", "boot_time", "os", "platform",
                                     "cpu_count", "memory_total", "agent_version", "interval"])
REGISTRATIONS = st.one_of(
    JSON_VALUES,
    st.dictionaries(REGISTRATION_KEYS, JSON_VALUES | st.sampled_from(["10.0.0.1", "fd00::1", "host-1", BOOT]),
                    max_size=8),
    # mostly valid: an address and a hostname, and a few hello fields of any value
    st.dictionaries(REGISTRATION_KEYS.filter(lambda key: key not in ("ip", "hostname", "name")), JSON_VALUES,
                    max_size=3).map(lambda extra: {"ip": "10.7.7.7", "hostname": "fuzzed", **extra}),
)


@HTTP_EXAMPLES
@given(body=REGISTRATIONS)
def test_any_registration_body_is_answered_201_200_or_a_json_400_that_changes_nothing(
    cluster_api: LiveApi, body: object
) -> None:
    before = cluster_api.state()
    reply = cluster_api.post("/cluster/nodes", body)
    if reply.status in (200, 201):
        node = cluster_api.nodes.get(reply.json["name"])
        assert node is not None and node.ips == reply.json["ips"] and node.ips
        assert (reply.status == 200) == (node.name in before["nodes"]["nodes"])
        if reply.status == 201:  # the examples share the app: forget the new node again
            cluster_api.nodes.remove(node.name)
            assert cluster_api.state() == before
    else:
        assert_json_error(reply, 400)
        assert cluster_api.state() == before


@HTTP_EXAMPLES
@given(segment=st.text(min_size=1, max_size=80))
def test_any_path_segment_is_a_node_or_a_json_4xx(cluster_api: LiveApi, segment: str) -> None:
    before = cluster_api.state()
    for suffix in ("", "/proc", "/proc/101"):
        reply = cluster_api.get(f"/cluster/nodes/{quote(segment)}{suffix}")
        if reply.status != 200:
            assert_json_error(reply, reply.status)
            assert reply.status in (400, 404, 409), (segment, reply.status)
    assert cluster_api.state() == before
