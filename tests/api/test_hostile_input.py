"""Regression tests of the outside attack on the HTTP API: each one failed on the main it was found on.

Every refused request answers a 4xx with a JSON error, stores nothing, and is counted.
"""

from __future__ import annotations

import json

import orjson
import pytest
from live_api import (
    LiveApi,
    assert_json_error,
    hello_body,
    process_entry,
    put_stats,
    quote,
    register,
    stats_body,
)

from servertrack.common.node_schema import MAX_EPOCH_SECONDS, MAX_PID
from servertrack.console import NODE_SECTIONS, render_node, snapshot_of

# -- 1. a value that is stored must render ------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("boot_time", 1e17), ("boot_time", MAX_EPOCH_SECONDS + 1), ("boot_time", 2**64 - 1), ("boot_time", -1),
])
def test_a_hello_time_that_cannot_be_shown_as_a_date_is_refused(api: LiveApi, field: str, value: float) -> None:
    before = api.state()
    assert_json_error(api.post("/nodes", hello_body("node-t", ["10.0.0.9"], **{field: value})), 400, field)
    assert api.state() == before
    assert api.get("/nodes/node-t").status == 404


def test_a_node_at_the_last_renderable_second_reads_back_over_http_and_in_the_cli(api: LiveApi) -> None:
    register(api, "node-t", ["10.0.0.9"], boot_time=MAX_EPOCH_SECONDS)
    top = [process_entry(MAX_PID, create_time=MAX_EPOCH_SECONDS)]
    put_stats(api, "node-t", stats_body(processes={"count": 1, "top_cpu": top, "top_memory": top}))
    for path in ("/nodes/node-t", "/nodes/10.0.0.9", "/nodes/node-t/processes", f"/nodes/node-t/processes/{MAX_PID}",
                 "/nodes/node-t/proc", f"/nodes/node-t/proc/{MAX_PID}", f"/cluster/nodes/10.0.0.9/proc/{MAX_PID}"):
        reply = api.get(path)
        assert reply.status == 200, (path, reply.raw)
    assert api.get("/nodes/node-t").json["boot_time"] == "9999-12-31T23:59:59Z"
    assert api.get("/nodes/node-t").json["boottime"] == MAX_EPOCH_SECONDS
    assert api.get("/nodes/node-t/proc").json == [MAX_PID]
    sections = {section: api.get(f"/nodes/node-t/{section}").json for section in NODE_SECTIONS}
    shown = render_node(api.get("/nodes/node-t").json, snapshot_of(sections))
    assert "node-t" in shown and str(MAX_PID) in shown


# -- 4, pids: one bound for storing and asking -----------------------------------------------


def test_a_pid_over_the_bound_is_refused_when_stored_and_when_asked_for(api: LiveApi) -> None:
    register(api, "node-p")
    top = [process_entry(MAX_PID + 1)]
    reply = api.request("PUT", "/nodes/node-p", json.dumps(stats_body(processes={"count": 1, "top_cpu": top,
                                                                                 "top_memory": []})))
    assert_json_error(reply, 400, "processes.top_cpu[0].pid")
    put_stats(api, "node-p")
    assert_json_error(api.get(f"/nodes/node-p/processes/{MAX_PID + 1}"), 400, "pid", str(MAX_PID))
    assert_json_error(api.get(f"/nodes/node-p/processes/{MAX_PID}"), 404, "not among the top")


# -- 8. control characters where a name is expected ------------------------------------------


@pytest.mark.parametrize("text", ["web\x1b]0;pwned\x07", "two\nlines", "cr\r", "nul\x00", "rtl\u202e", "\x9b31m"])
def test_control_characters_in_hello_text_are_refused(api: LiveApi, text: str) -> None:
    before = api.state()
    for field in ("hostname", "os", "platform", "agent_version"):
        assert_json_error(api.post("/nodes", hello_body("node-c", **{field: text})), 400, field, "unprintable")
    assert api.state() == before


@pytest.mark.parametrize("path, entry", [
    (("processes", "top_cpu", 0, "name"), None), (("processes", "top_cpu", 0, "cmdline"), None),
    (("processes", "top_memory", 0, "user"), None), (("disks", 0, "mountpoint"), None),
    (("disks", 0, "device"), None), (("network", 0, "interface"), None),
])
def test_control_characters_in_snapshot_text_are_refused(api: LiveApi, path: tuple, entry: None) -> None:
    register(api, "node-c")
    put_stats(api, "node-c")
    before = api.state()
    body = stats_body()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "evil\x1b[2J\x1b[Hforged"
    where = ".".join(str(key) for key in path).replace(".0", "[0]")
    assert_json_error(api.request("PUT", "/nodes/node-c", json.dumps(body)), 400, where)
    assert api.state() == before


# -- 9. names and addresses -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["10.0.0.5", "10.0.0.5.", "127.0.0.1", ".", "..", "-", "_", "._-"])
def test_names_that_read_as_addresses_or_hold_no_letter_or_digit_are_refused(api: LiveApi, name: str) -> None:
    before = api.state()
    assert_json_error(api.post("/nodes", hello_body(name, [])), 400, "name")
    assert_json_error(api.post_load(name, cpu=1, ram=2), 400)
    assert_json_error(api.post("/loads", [{"server": name, "cpu": 1, "ram": 2}]), 400, "item 0")
    assert api.state() == before


def test_one_trailing_dot_names_the_same_server_and_node(api: LiveApi) -> None:
    api.record("web-01.", cpu=10, ram=20)
    api.record("WEB-01", cpu=30, ram=40)
    api.apply()
    assert api.loads_of("web-01.")["server"] == "web-01"
    assert api.loads_of("web-01")["minutes"][-1]["samples"] == 2
    register(api, "node01.example.", ["10.0.0.3"])
    assert api.post("/nodes", hello_body("node01.example", ["10.0.0.3"])).status == 200  # known already
    assert [entry["name"] for entry in api.get("/nodes").json["nodes"]] == ["node01.example"]


# -- 7. cross-site writes and DNS rebinding ----------------------------------------------------

WRITES = [
    ("POST", "/servers/web-01/loads", '{"cpu": 1, "ram": 2}'),
    ("POST", "/loads", '[{"server": "web-01", "cpu": 1, "ram": 2}]'),
    ("POST", "/nodes", json.dumps(hello_body("node-w", ["10.0.0.4"]))),
    ("PUT", "/nodes/seed-node", json.dumps(stats_body())),
]


@pytest.fixture
def write_api(seeded_api: LiveApi) -> LiveApi:
    register(seeded_api, "seed-node", ["10.0.0.2"])
    return seeded_api


@pytest.mark.parametrize("method, path, body", WRITES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None, "application/jsonx", "text/json"])
def test_a_message_body_that_is_not_declared_json_is_415(
    write_api: LiveApi, method: str, path: str, body: str, content_type: str | None
) -> None:
    before = write_api.state()
    headers = {"Content-Type": content_type} if content_type is not None else {"Content-Type": ""}
    assert_json_error(write_api.request(method, path, body, headers), 415, "application/json")
    assert write_api.state() == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"])
def test_json_with_parameters_or_in_capitals_is_taken(write_api: LiveApi, content_type: str) -> None:
    reply = write_api.request("POST", "/servers/web-01/loads", '{"cpu": 1, "ram": 2}', {"Content-Type": content_type})
    assert reply.status == 202, reply.raw


@pytest.mark.parametrize("method, path, body", [*WRITES, ("DELETE", "/nodes/seed-node", None)])
@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"])
def test_a_write_from_a_foreign_origin_is_403(write_api: LiveApi, method: str, path: str, body: str | None,
                                              origin: str) -> None:
    before = write_api.state()
    assert_json_error(write_api.request(method, path, body, {"Origin": origin}), 403, "origin")
    assert write_api.state() == before


def test_a_write_from_the_same_origin_is_taken(write_api: LiveApi) -> None:
    origin = f"http://127.0.0.1:{write_api.port}"
    reply = write_api.request("POST", "/servers/web-01/loads", '{"cpu": 1, "ram": 2}', {"Origin": origin})
    assert reply.status == 202, reply.raw


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "rebind.attacker.test.", "127.0.0.1.nip.io"])
@pytest.mark.parametrize("method, path, body", [("GET", "/servers/seed-01/loads", None), ("GET", "/stats", None),
                                                ("GET", "/nodes", None), *WRITES])
def test_a_foreign_host_header_is_403_on_reads_and_writes(write_api: LiveApi, host: str, method: str, path: str,
                                                         body: str | None) -> None:
    before = write_api.state()
    assert_json_error(write_api.request(method, path, body, {"Host": host}), 403, "host", "--allowed-hosts")
    assert write_api.state() == before


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080",
                                  "10.1.2.3"])
def test_addresses_and_localhost_are_served(write_api: LiveApi, host: str) -> None:
    assert write_api.request("GET", "/stats", None, {"Host": host}).status == 200


def test_refused_hosts_and_origins_are_counted_apart_from_messages(write_api: LiveApi) -> None:
    write_api.request("GET", "/stats", None, {"Host": "evil.example"})
    write_api.request("POST", "/loads", "[]", {"Origin": "http://evil.example"})
    counters = write_api.counters()
    assert counters["http_refused"] == {"bad_host": 1, "bad_origin": 1}
    assert counters["kinds"]["sample"]["dropped"] == {}


# -- counters stay encodable --------------------------------------------------------------------


def test_stats_stay_json_after_seq_gaps_at_the_edge_of_the_range(api: LiveApi) -> None:
    for seq in (0, 2**64 - 1, 0, 2**64 - 1):
        api.inventory.observe("edge", seq, [])
    reply = api.get("/stats")
    assert reply.status == 200 and reply.json["lost"] == 0
    api.inventory.lost = 2**70  # whatever happens to a counter, /stats still answers
    api.stats.received["sample"] = 2**80
    body = api.get("/stats").json
    assert body["lost"] == 2**63 - 1 and body["kinds"]["sample"]["received"] == 2**63 - 1
    orjson.dumps(body)


def test_an_unknown_route_with_a_huge_path_is_a_short_json_404(api: LiveApi) -> None:
    message = assert_json_error(api.get("/" + "x" * 5000), 404, "no such endpoint")
    assert len(message) < 300
    assert quote("x") == "x"


@pytest.mark.parametrize("value", [2**64, 2**64 - 1, 10**19 + 1, 1e19 * 1.0000001])
def test_a_rate_msgpack_could_not_store_is_refused_not_a_500(api: LiveApi, value: float) -> None:
    register(api, "node-r")
    body = stats_body()
    body["network"][0]["rx_bytes_per_s"] = value
    assert_json_error(api.request("PUT", "/nodes/node-r", json.dumps(body)), 400, "network[0].rx_bytes_per_s")
    body["network"][0]["rx_bytes_per_s"] = 10**19  # at the bound, as a whole number: stored
    assert api.request("PUT", "/nodes/node-r", json.dumps(body)).status == 200
    assert api.get("/nodes/node-r/network").json["network"][0]["rx_bytes_per_s"] == 10**19
