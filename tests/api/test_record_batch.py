"""``POST /loads``: up to 10,000 samples for any servers, all or nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live_api import (
    DAY,
    HTTP_EXAMPLES,
    INVALID_LOADS,
    INVALID_NAMES,
    NOT_NUMBERS,
    START,
    LiveApi,
    assert_json_error,
    bucket,
    figures,
    invalid_timestamps,
    standard_json,
)

MIB = 1024 * 1024


def item(server: str = "web-01", cpu: float = 1, ram: float = 2, **more: Any) -> dict[str, Any]:
    return {"server": server, "cpu": cpu, "ram": ram, **more}


def valid_items(api: LiveApi, count: int) -> list[dict[str, Any]]:
    return [item(f"web-{i:02d}", cpu=i % 101, ram=(3 * i) % 101, ts=api.clock.now - i) for i in range(count)]


def padded(text: str, size: int) -> str:
    """``text`` followed by whitespace up to ``size`` bytes (ASCII text)."""
    assert len(text) <= size
    return text + " " * (size - len(text))


# -- accepted -----------------------------------------------------------------------------


def test_a_batch_is_accepted_with_202_and_the_item_count(api: LiveApi) -> None:
    reply = api.post("/loads", valid_items(api, 5))
    assert reply.status == 202
    assert reply.content_type == "application/json"
    assert reply.json == {"accepted": 5}
    assert len(api.batch) == 5


def test_every_item_of_a_batch_is_stored_for_its_own_server_after_apply(api: LiveApi) -> None:
    api.post("/loads", [item("WEB-01", 10, 20), item("web-02", 30, 40), item("Web-01", 50, 60)])
    assert api.apply() == 3
    assert [name for name, _ in api.aggregator.servers()] == ["web-01", "web-02"]
    assert figures(api.loads_of("web-01")["minutes"][-1]) == bucket(2, (30.0, 10.0, 50.0), (40.0, 20.0, 60.0))
    assert figures(api.loads_of("web-02")["minutes"][-1]) == bucket(1, (30.0, 30.0, 30.0), (40.0, 40.0, 40.0))


def test_batch_items_with_and_without_ts_land_in_their_own_minutes(api: LiveApi) -> None:
    api.clock.now += 10 * 60  # 08:10:17.5
    api.post("/loads", [item(cpu=10), item(cpu=20, ts=api.clock.now - 120)])
    api.apply()
    minutes = api.loads_of("web-01")["minutes"]
    assert minutes[-1]["start"] == "2027-01-15T08:10:00Z" and minutes[-1]["cpu"]["avg"] == 10.0
    assert minutes[-3]["start"] == "2027-01-15T08:08:00Z" and minutes[-3]["cpu"]["avg"] == 20.0


def test_an_empty_batch_is_accepted_with_count_0(api: LiveApi) -> None:
    reply = api.post("/loads", [])
    assert (reply.status, reply.json) == (202, {"accepted": 0})
    assert len(api.batch) == 0


def test_a_batch_of_10000_items_is_accepted(api: LiveApi) -> None:
    items = [item(f"s{i % 50}", cpu=i % 101, ram=50) for i in range(10_000)]
    reply = api.post("/loads", items)
    assert (reply.status, reply.json) == (202, {"accepted": 10_000})
    assert api.apply() == 10_000
    assert len(api.aggregator) == 50


def test_a_body_of_exactly_1_mib_is_accepted(api: LiveApi) -> None:
    reply = api.request("POST", "/loads", padded(json.dumps(valid_items(api, 3)), MIB))
    assert (reply.status, reply.json) == (202, {"accepted": 3})


# -- all or nothing ---------------------------------------------------------------------------

INVALID_ITEMS = {
    "not an object": 5,
    "a list": [],
    "null": None,
    "missing server": {"cpu": 1, "ram": 2},
    "server not a string": item(server=5),  # type: ignore[arg-type]
    "empty server": item(server=""),
    "server of 254 characters": item(server="a" * 254),
    "server with a space": item(server="web 01"),
    "missing cpu": {"server": "web-01", "ram": 2},
    "missing ram": {"server": "web-01", "cpu": 1},
    "cpu a string": item(cpu="1"),  # type: ignore[arg-type]
    "cpu a boolean": item(cpu=True),
    "cpu null": item(cpu=None),  # type: ignore[arg-type]
    "cpu below 0": item(cpu=-0.1),
    "ram above 100": item(ram=100.01),
    "ts too old": item(ts=START - DAY - 1),
    "ts too far ahead": item(ts=START + 61),
    "ts a string": item(ts="now"),
}


@pytest.mark.parametrize("invalid", INVALID_ITEMS.values(), ids=INVALID_ITEMS.keys())
def test_one_invalid_item_rejects_the_whole_batch_with_400_naming_its_index(
    seeded_api: LiveApi, invalid: Any
) -> None:
    items: list[Any] = valid_items(seeded_api, 6)
    items[3] = invalid
    before = seeded_api.state()
    message = assert_json_error(seeded_api.post("/loads", items), 400)
    assert message.startswith("item 3: "), message
    assert len(message) > len("item 3: ")
    assert seeded_api.state() == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_load_in_one_item_rejects_the_whole_batch_with_400(seeded_api: LiveApi, literal: str) -> None:
    items = [json.dumps(entry) for entry in valid_items(seeded_api, 6)]
    items[3] = '{"server": "web-03", "cpu": 1, "ram": %s}' % literal
    before = seeded_api.state()
    assert_json_error(seeded_api.request("POST", "/loads", "[%s]" % ", ".join(items)), 400)
    assert seeded_api.state() == before


def test_the_error_names_the_field_of_the_invalid_item(seeded_api: LiveApi) -> None:
    items = valid_items(seeded_api, 3)
    items[1]["ram"] = 101
    assert_json_error(seeded_api.post("/loads", items), 400, "item 1", "ram")


@HTTP_EXAMPLES
@given(size=st.integers(1, 30), field=st.sampled_from(["cpu", "ram", "server", "ts"]), data=st.data())
def test_a_batch_with_any_one_invalid_item_changes_nothing(
    seeded_api: LiveApi, size: int, field: str, data: st.DataObject
) -> None:
    invalid = data.draw(
        {
            "cpu": INVALID_LOADS,
            "ram": INVALID_LOADS,
            "server": st.one_of(INVALID_NAMES, NOT_NUMBERS.filter(lambda v: not isinstance(v, str))),
            "ts": invalid_timestamps(seeded_api.clock.now),
        }[field],
        label="invalid",
    )
    index = data.draw(st.integers(0, size - 1), label="index")
    items = valid_items(seeded_api, size)
    items[index][field] = invalid
    before = seeded_api.state()
    message = assert_json_error(seeded_api.post("/loads", items), 400)
    if standard_json(invalid):
        assert message.startswith(f"item {index}: "), message
    assert seeded_api.state() == before


def test_more_than_10000_items_are_rejected_with_413(seeded_api: LiveApi) -> None:
    items = [item(f"s{i % 50}") for i in range(10_001)]
    before = seeded_api.state()
    assert_json_error(seeded_api.post("/loads", items), 413)
    assert seeded_api.state() == before


def test_a_body_over_1_mib_is_rejected_with_413(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    text = padded(json.dumps(valid_items(seeded_api, 3)), MIB + 1)
    assert_json_error(seeded_api.request("POST", "/loads", text), 413)
    assert seeded_api.state() == before


def test_a_content_length_over_1_mib_is_answered_413_before_the_body_is_sent(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    answer = seeded_api.raw_exchange(
        b"POST /loads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"]
    assert seeded_api.state() == before


@pytest.mark.parametrize("size", [MIB + 1, 9 * MIB], ids=["1MiB+1", "9MiB"])
def test_a_chunked_body_over_1_mib_is_rejected_with_413(seeded_api: LiveApi, size: int) -> None:
    """Without Content-Length the limit is enforced on the bytes received."""
    text = padded(json.dumps(valid_items(seeded_api, 3)), size).encode()

    async def produce(write: Any) -> None:
        for start in range(0, len(text), 256 * 1024):
            await write(text[start : start + 256 * 1024])

    before = seeded_api.state()
    assert_json_error(seeded_api.request("POST", "/loads", body_producer=produce), 413)
    assert seeded_api.state() == before


@pytest.mark.parametrize("text", ["", "[", "[{]", "server=web-01", "[{'server': 'a'}]", b"[\xff]"])
def test_a_body_that_is_not_json_is_rejected_with_400(seeded_api: LiveApi, text: str | bytes) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.request("POST", "/loads", text), 400)
    assert seeded_api.state() == before


@pytest.mark.parametrize("text", ['{"server": "web-01", "cpu": 1, "ram": 2}', "{}", "5", '"web-01"', "null"])
def test_a_body_that_is_not_a_json_list_is_rejected_with_400(seeded_api: LiveApi, text: str) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.request("POST", "/loads", text), 400)
    assert seeded_api.state() == before


def test_a_deeply_nested_body_is_rejected_with_400(seeded_api: LiveApi) -> None:
    """Valid JSON whose item 0 is not an object: 400, not a server error."""
    before = seeded_api.state()
    assert_json_error(seeded_api.request("POST", "/loads", "[" * 100_000 + "]" * 100_000), 400)
    assert seeded_api.state() == before


# -- a full queue ---------------------------------------------------------------------------------


def test_a_batch_that_does_not_fit_the_pending_queue_is_refused_whole_with_503(make_api) -> None:
    api = make_api(batch_limit=5)
    api.post("/loads", valid_items(api, 3))
    before = api.state()
    assert_json_error(api.post("/loads", valid_items(api, 3)), 503)
    assert api.state() == before
    assert len(api.batch) == 3
    assert api.counters()["received"] == 6 and api.counters()["dropped"] == {"queue_full": 3}


def test_a_batch_that_exactly_fills_the_pending_queue_is_accepted(make_api) -> None:
    api = make_api(batch_limit=5)
    api.post("/loads", valid_items(api, 3))
    assert api.post("/loads", valid_items(api, 2)).json == {"accepted": 2}
    assert len(api.batch) == 5
