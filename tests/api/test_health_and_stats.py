"""``GET /healthz`` and ``GET /stats``: liveness, and ingest counters that follow the samples."""

from __future__ import annotations

from typing import Any

from live_api import LiveApi


def stats(api: LiveApi) -> dict[str, Any]:
    reply = api.get("/stats")
    assert reply.status == 200, (reply.status, reply.raw)
    assert reply.content_type == "application/json"
    return reply.json


def test_healthz_answers_200_status_ok(api: LiveApi) -> None:
    reply = api.get("/healthz")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.json == {"status": "ok"}


def test_stats_of_a_fresh_service_are_zero(api: LiveApi) -> None:
    body = stats(api)
    assert {"received", "applied", "dropped", "lost", "servers", "last_batch_seconds"} <= set(body)
    assert (body["received"], body["applied"], body["dropped"], body["lost"], body["servers"]) == (0, 0, {}, 0, 0)
    assert body["last_batch_seconds"] == 0


def test_received_counts_samples_when_they_are_recorded(api: LiveApi) -> None:
    api.record("web-01", cpu=1, ram=2)
    api.post("/loads", [{"server": f"web-{i:02d}", "cpu": 1, "ram": 2} for i in range(4)])
    body = stats(api)
    assert body["received"] == 5
    assert body["applied"] == 0 and body["servers"] == 0


def test_applied_and_servers_count_when_the_batch_is_applied(api: LiveApi) -> None:
    api.record("web-01", cpu=1, ram=2)
    api.post("/loads", [{"server": f"web-{i:02d}", "cpu": 1, "ram": 2} for i in range(4)])
    api.apply()
    body = stats(api)
    assert (body["received"], body["applied"], body["servers"]) == (5, 5, 4)
    assert isinstance(body["last_batch_seconds"], (int, float)) and body["last_batch_seconds"] >= 0
    api.record("web-01", cpu=1, ram=2)
    api.apply()
    assert (stats(api)["received"], stats(api)["applied"], stats(api)["servers"]) == (6, 6, 4)


def test_pending_counts_samples_waiting_for_the_apply(api: LiveApi) -> None:
    api.record("web-01", cpu=1, ram=2)
    api.record("web-02", cpu=1, ram=2)
    assert stats(api)["pending"] == 2
    api.apply()
    assert stats(api)["pending"] == 0
    assert stats(api)["last_batch_size"] == 2


def test_samples_of_servers_beyond_the_cap_are_dropped_and_counted_by_reason(make_api) -> None:
    api = make_api(max_servers=2)
    api.post("/loads", [{"server": name, "cpu": 1, "ram": 2} for name in ["a", "b", "c", "c", "d"]])
    api.apply()
    body = stats(api)
    assert (body["received"], body["applied"], body["servers"]) == (5, 2, 2)
    assert body["dropped"] == {"server_limit": 3}
    assert api.get("/servers/c/loads").status == 404


def test_lost_shows_the_sequence_gaps_of_agents(api: LiveApi) -> None:
    api.inventory.observe("node01", 1, [])
    api.inventory.observe("node01", 5, [])
    assert stats(api)["lost"] == 3


def test_a_rejected_request_is_counted_as_received_and_dropped_by_reason(seeded_api: LiveApi) -> None:
    before = stats(seeded_api)
    seeded_api.post_load("web-01", cpu=101, ram=2)
    seeded_api.post("/loads", [{"server": "web-01", "cpu": 1, "ram": 2}, {"server": "web-02", "cpu": 1}])
    seeded_api.request("POST", "/loads", "not json")
    after = stats(seeded_api)
    # one sample out of range, a batch of two refused whole, one body of unknown size
    assert after["received"] == before["received"] + 4
    assert after["applied"] == before["applied"] and after["pending"] == before["pending"]
    assert after["kinds"]["sample"]["dropped"] == {"out_of_range": 1, "missing_field": 2, "not_json": 1}
    assert after["dropped"] == {"out_of_range": 1, "missing_field": 2, "not_json": 1}


def test_every_received_message_is_applied_dropped_or_pending_per_kind(seeded_api: LiveApi) -> None:
    from live_api import hello_body, put_stats, register

    register(seeded_api, "node-x", ["10.0.0.7"])
    seeded_api.post("/nodes", {"name": "node-y"})  # missing hello fields
    put_stats(seeded_api, "node-x")
    seeded_api.request("PUT", "/nodes/node-x", '{"cpu": 1}')
    seeded_api.request("PUT", "/nodes/node-unknown", '{}')
    seeded_api.post("/nodes", hello_body("node-z", ["10.0.0.8"], hostname="bad\x1b]0;title\x07"))
    seeded_api.record("web-03", cpu=5, ram=5)
    seeded_api.request("POST", "/servers/web-04/loads", '{"cpu": 1, "ram": 1}', {"Content-Type": "text/plain"})
    body = stats(seeded_api)
    for kind, counts in body["kinds"].items():
        assert counts["received"] == counts["applied"] + sum(counts["dropped"].values()) + counts["pending"], kind
    assert body["kinds"]["hello"]["received"] == 3 and body["kinds"]["hello"]["applied"] == 1
    assert body["kinds"]["snapshot"]["received"] == 3 and body["kinds"]["snapshot"]["applied"] == 1
    assert body["kinds"]["snapshot"]["dropped"] == {"bad_field": 1, "unknown_node": 1}
    assert body["kinds"]["sample"]["dropped"] == {"bad_content_type": 1}
    assert body["received"] == body["applied"] + sum(body["dropped"].values()) + body["pending"]


def test_nodes_counts_the_registered_nodes(api: LiveApi) -> None:
    api.nodes.hello("node-a", ["10.0.0.5"], {"interval": 1.0})
    api.nodes.hello("node-b", [], {"interval": 1.0})
    assert stats(api)["nodes"] == 2
    api.nodes.remove("node-a")
    assert stats(api)["nodes"] == 1
