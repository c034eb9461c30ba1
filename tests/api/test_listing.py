"""``GET /servers``: known servers sorted by name, paged with ``?limit=`` (1..10000) and ``?after=``."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from live_api import HOUR_START, LiveApi, assert_json_error

# Names whose order tests the byte-wise sort: '-' < '.' < digits < '_' < letters.
NAMES = sorted(
    ["a", "a-1", "a.1", "a_1", "a1", "ab", "b", "db-01", "db-02", "web-01", "web-02", "web-10", "web-9",
     "x" * 253, "0", "9z", "_x", "-x", ".x", "z.example.org", "mail", "mail-01", "m", "n", "y"]
)


def record_all(api: LiveApi, names: list[str]) -> None:
    api.post("/loads", [{"server": name.upper(), "cpu": 1, "ram": 2} for name in reversed(names)])
    api.apply()


def page(api: LiveApi, **query: Any) -> dict[str, Any]:
    reply = api.get("/servers?" + urllib.parse.urlencode(query) if query else "/servers")
    assert reply.status == 200, (reply.status, reply.raw)
    assert reply.content_type == "application/json"
    return reply.json


def test_no_servers_is_an_empty_list(api: LiveApi) -> None:
    assert page(api) == {"servers": [], "next_after": None}


def test_servers_are_listed_sorted_by_lowercased_name_with_last_seen_and_ips(api: LiveApi) -> None:
    api.clock.now = HOUR_START + 25 * 60 + 5  # 08:25:05
    record_all(api, NAMES)
    body = page(api)
    assert body["next_after"] is None
    assert [entry["server"] for entry in body["servers"]] == NAMES
    assert all(set(entry) == {"server", "last_seen", "ips"} for entry in body["servers"])
    assert {entry["last_seen"] for entry in body["servers"]} == {"2027-01-15T08:25:05Z"}
    assert {tuple(entry["ips"]) for entry in body["servers"]} == {()}


def test_servers_show_the_ips_their_agent_reported(api: LiveApi) -> None:
    record_all(api, ["node01", "node02"])
    api.inventory.observe("node01", 7, ["10.0.0.5", "fe80::1"])
    assert page(api)["servers"][0]["ips"] == ["10.0.0.5", "fe80::1"]
    assert page(api)["servers"][1]["ips"] == []


def test_servers_with_only_pending_samples_are_not_listed_yet(seeded_api: LiveApi) -> None:
    assert [entry["server"] for entry in page(seeded_api)["servers"]] == ["seed-01"]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 24, 25, 26, 1000])
def test_paging_with_limit_and_after_returns_every_server_exactly_once_in_order(api: LiveApi, limit: int) -> None:
    record_all(api, NAMES)
    seen: list[str] = []
    query: dict[str, Any] = {"limit": limit}
    for _ in range(len(NAMES) + 1):
        body = page(api, **query)
        assert 1 <= len(body["servers"]) <= limit or body["servers"] == []
        seen += [entry["server"] for entry in body["servers"]]
        if body["next_after"] is None:
            break
        assert body["next_after"] == body["servers"][-1]["server"]
        query["after"] = body["next_after"]
    assert seen == NAMES


def test_next_after_is_null_when_the_last_page_is_exactly_full(api: LiveApi) -> None:
    record_all(api, ["a", "b", "c", "d"])
    first = page(api, limit=2)
    assert [entry["server"] for entry in first["servers"]] == ["a", "b"] and first["next_after"] == "b"
    second = page(api, limit=2, after="b")
    assert [entry["server"] for entry in second["servers"]] == ["c", "d"] and second["next_after"] is None


def test_after_need_not_be_a_known_server(api: LiveApi) -> None:
    record_all(api, ["a", "c", "e"])
    assert [entry["server"] for entry in page(api, after="b")["servers"]] == ["c", "e"]
    assert page(api, after="zzz") == {"servers": [], "next_after": None}


def test_after_is_case_insensitive(api: LiveApi) -> None:
    record_all(api, ["web-01", "web-02", "web-03"])
    assert [entry["server"] for entry in page(api, after="WEB-01")["servers"]] == ["web-02", "web-03"]


def test_the_default_page_holds_at_most_1000_servers(api: LiveApi) -> None:
    record_all(api, [f"s{i:04d}" for i in range(1001)])
    body = page(api)
    assert len(body["servers"]) == 1000 and body["next_after"] == "s0999"


@pytest.mark.parametrize("limit", ["1", "10000", "0005"])
def test_a_limit_from_1_to_10000_is_accepted(seeded_api: LiveApi, limit: str) -> None:
    assert seeded_api.get(f"/servers?limit={limit}").status == 200


@pytest.mark.parametrize(
    "limit", ["0", "10001", "-1", "abc", "", "1.5", "1e3", "0x10", "99999999999999999999"],
    ids=["0", "10001", "-1", "abc", "empty", "1.5", "1e3", "0x10", "huge"],
)
def test_a_limit_outside_1_to_10000_or_not_an_integer_is_400(seeded_api: LiveApi, limit: str) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.get(f"/servers?limit={limit}"), 400, "limit")
    assert seeded_api.state() == before


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "%EF%BC%95"], ids=["superscript-2", "arabic-indic-3", "fullwidth-5"])
def test_a_limit_in_non_ascii_digits_is_400(seeded_api: LiveApi, limit: str) -> None:
    """Unicode digits are not the decimal integer the API documents (nor a server error)."""
    assert_json_error(seeded_api.get(f"/servers?limit={limit}"), 400, "limit")


@pytest.mark.parametrize("after", ["a" * 254, "web 01", "wéb"])
def test_an_after_that_is_not_a_valid_name_is_400(seeded_api: LiveApi, after: str) -> None:
    assert_json_error(seeded_api.get("/servers?" + urllib.parse.urlencode({"after": after})), 400)
