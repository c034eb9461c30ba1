"""``POST /servers/{name}/loads``: one sample, validated, queued for the next batch apply."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live_api import (
    DAY,
    oldest_accepted,
    EMPTY,
    HTTP_EXAMPLES,
    INVALID_LOADS,
    INVALID_NAMES,
    NAME_CHARACTERS,
    LiveApi,
    Response,
    assert_json_error,
    bucket,
    figures,
    invalid_timestamps,
    quote,
    standard_json,
)

# JSON texts that are not a load: not a number, or not a finite number in [0, 100].
INVALID_LOAD_JSON = st.one_of(
    INVALID_LOADS.map(json.dumps),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "-0.1", "100.01", "-1"]),
)


def post_text(api: LiveApi, name: str, text: str) -> Response:
    return api.request("POST", f"/servers/{quote(name)}/loads", text)


# -- accepted -------------------------------------------------------------------


def test_one_sample_is_accepted_with_202_and_count_1(api: LiveApi) -> None:
    reply = api.post_load("web-01", cpu=12.5, ram=40.0)
    assert reply.status == 202
    assert reply.content_type == "application/json"
    assert reply.json == {"accepted": 1}


def test_a_recorded_sample_is_only_queued_until_the_batch_is_applied(api: LiveApi) -> None:
    api.record("web-01", cpu=12.5, ram=40.0)
    assert len(api.batch) == 1
    assert "web-01" not in api.aggregator
    assert api.apply() == 1
    assert len(api.batch) == 0
    assert figures(api.loads_of("web-01")["minutes"][-1]) == bucket(1, (12.5, 12.5, 12.5), (40.0, 40.0, 40.0))


def test_sample_without_ts_lands_in_the_minute_of_the_clock(api: LiveApi) -> None:
    api.clock.now += 25 * 60 + 30  # 08:25:47.5
    api.record("web-01", cpu=12.5, ram=40.0)
    api.apply()
    minutes = api.loads_of("web-01")["minutes"]
    assert minutes[-1]["start"] == "2027-01-15T08:25:00Z"
    assert figures(minutes[-1]) == bucket(1, (12.5, 12.5, 12.5), (40.0, 40.0, 40.0))
    assert all(figures(entry) == EMPTY for entry in minutes[:-1])


def test_sample_with_ts_lands_in_the_minute_of_its_ts(api: LiveApi) -> None:
    api.clock.now += 25 * 60 + 30  # 08:25:47.5
    api.record("web-01", cpu=12.5, ram=40.0, ts=api.clock.now - 7 * 60)  # 08:18:47.5
    api.apply()
    minutes = api.loads_of("web-01")["minutes"]
    assert [entry["start"] for entry in minutes if entry["samples"]] == ["2027-01-15T08:18:00Z"]


@pytest.mark.parametrize("cpu, ram", [(0, 100), (0.0, 100.0), (100, 0), (50, 50.25), (-0.0, 1e-7)])
def test_loads_from_0_to_100_inclusive_are_accepted(api: LiveApi, cpu: float, ram: float) -> None:
    assert api.post_load("web-01", cpu=cpu, ram=ram).status == 202


@pytest.mark.parametrize("offset", [0, 0.001, 3600, 23 * 3600])
def test_ts_from_the_oldest_hour_shown_on_is_accepted(api: LiveApi, offset: float) -> None:
    assert api.post_load("web-01", cpu=1, ram=2, ts=oldest_accepted(api.clock.now) + offset).status == 202


@pytest.mark.parametrize("offset", [-1, 0, 59.999, 60])
def test_ts_up_to_60s_ahead_inclusive_is_accepted(api: LiveApi, offset: float) -> None:
    assert api.post_load("web-01", cpu=1, ram=2, ts=api.clock.now + offset).status == 202


def test_integer_ts_is_accepted(api: LiveApi) -> None:
    assert api.post_load("web-01", cpu=1, ram=2, ts=int(api.clock.now)).status == 202


def test_unknown_keys_in_the_body_are_ignored(api: LiveApi) -> None:
    assert api.post_load("web-01", cpu=1, ram=2, disk=99, note="x").status == 202


# -- names ------------------------------------------------------------------------


def test_names_are_case_insensitive_and_stored_lowercased(api: LiveApi) -> None:
    api.record("WEB-01", cpu=10, ram=20)
    api.record("Web-01", cpu=30, ram=40)
    api.apply()
    assert api.batch.names == []
    assert api.aggregator.servers() == [("web-01", api.clock.now)]
    for spelling in ("web-01", "WEB-01", "wEb-01"):
        body = api.loads_of(spelling)
        assert body["server"] == "web-01"
        assert body["minutes"][-1]["samples"] == 2


def test_a_name_of_every_allowed_character_is_accepted(api: LiveApi) -> None:
    api.record(NAME_CHARACTERS, cpu=1, ram=2)
    api.apply()
    assert api.loads_of(NAME_CHARACTERS)["server"] == NAME_CHARACTERS.lower()


def test_a_name_of_253_characters_is_accepted(api: LiveApi) -> None:
    name = "a" * 253
    api.record(name, cpu=1, ram=2)
    api.apply()
    assert api.loads_of(name)["server"] == name


def test_a_name_of_254_characters_is_rejected_with_400(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.post_load("a" * 254, cpu=1, ram=2), 400, "name")
    assert seeded_api.state() == before


@pytest.mark.parametrize("name", ["web 01", "web/01", "web_01!", "wéb-01", "web:8080", "web\n01", "*"])
def test_a_name_with_a_character_outside_the_allowed_set_is_rejected_with_400(
    seeded_api: LiveApi, name: str
) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.post_load(name, cpu=1, ram=2), 400, "name")
    assert seeded_api.state() == before


@HTTP_EXAMPLES
@given(name=INVALID_NAMES)
def test_any_invalid_name_is_rejected_and_changes_nothing(seeded_api: LiveApi, name: str) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.post_load(name, cpu=1, ram=2), 400)
    assert seeded_api.state() == before


# -- invalid loads ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["cpu", "ram"])
@pytest.mark.parametrize("value", ['"12.5"', "null", "true", "false", "-0.1", "100.01", "-1", "101", "[]", "{}"])
def test_a_load_that_is_not_a_number_from_0_to_100_is_rejected_with_400_naming_it(
    seeded_api: LiveApi, field: str, value: str
) -> None:
    loads = {"cpu": "12.5", "ram": "40.0", field: value}
    before = seeded_api.state()
    reply = post_text(seeded_api, "web-01", '{"cpu": %(cpu)s, "ram": %(ram)s}' % loads)
    assert_json_error(reply, 400, field)
    assert seeded_api.state() == before


@pytest.mark.parametrize("field", ["cpu", "ram"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_a_non_finite_load_is_rejected_with_400(seeded_api: LiveApi, field: str, value: str) -> None:
    """Python's json reads these literals as nan/inf; they must never be stored."""
    loads = {"cpu": "12.5", "ram": "40.0", field: value}
    before = seeded_api.state()
    reply = post_text(seeded_api, "web-01", '{"cpu": %(cpu)s, "ram": %(ram)s}' % loads)
    assert_json_error(reply, 400)
    assert seeded_api.state() == before


@pytest.mark.parametrize("field", ["cpu", "ram"])
def test_a_missing_load_is_rejected_with_400_naming_it(seeded_api: LiveApi, field: str) -> None:
    body = {"cpu": 12.5, "ram": 40.0}
    del body[field]
    before = seeded_api.state()
    assert_json_error(seeded_api.post("/servers/web-01/loads", body), 400, field)
    assert seeded_api.state() == before


@HTTP_EXAMPLES
@given(field=st.sampled_from(["cpu", "ram"]), value=INVALID_LOAD_JSON)
def test_any_invalid_load_is_rejected_and_changes_nothing(seeded_api: LiveApi, field: str, value: str) -> None:
    loads = {"cpu": "12.5", "ram": "40.0", field: value}
    before = seeded_api.state()
    reply = post_text(seeded_api, "web-01", '{"cpu": %(cpu)s, "ram": %(ram)s}' % loads)
    assert_json_error(reply, 400, *([field] if standard_json(json.loads(value)) else []))
    assert seeded_api.state() == before


# -- invalid ts ---------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-0.001, -3600, -DAY, None, 60.001, 3600, -1e12, 1e12])
def test_ts_before_the_oldest_hour_shown_or_over_60s_ahead_is_rejected_with_400(
    seeded_api: LiveApi, offset: float | None
) -> None:
    """Negative offsets count from the oldest accepted ts, positive ones from now; None: 24 h ago,
    which is accepted nowhere (its hour is the 25th back)."""
    now = seeded_api.clock.now
    ts = now - DAY if offset is None else (oldest_accepted(now) + offset if offset < 0 else now + offset)
    before = seeded_api.state()
    reply = seeded_api.post_load("web-01", cpu=1, ram=2, ts=ts)
    assert_json_error(reply, 400, "ts")
    assert seeded_api.state() == before


@pytest.mark.parametrize("ts", ['"1800000017"', "true", "[]", "{}", "null"])
def test_a_ts_that_is_not_a_number_is_rejected_with_400_naming_it(seeded_api: LiveApi, ts: str) -> None:
    before = seeded_api.state()
    reply = post_text(seeded_api, "web-01", '{"cpu": 1, "ram": 2, "ts": %s}' % ts)
    assert_json_error(reply, 400, "ts")
    assert seeded_api.state() == before


@pytest.mark.parametrize("ts", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_ts_is_rejected_with_400(seeded_api: LiveApi, ts: str) -> None:
    before = seeded_api.state()
    assert_json_error(post_text(seeded_api, "web-01", '{"cpu": 1, "ram": 2, "ts": %s}' % ts), 400)
    assert seeded_api.state() == before


@HTTP_EXAMPLES
@given(data=st.data())
def test_any_invalid_ts_is_rejected_and_changes_nothing(
    seeded_api: LiveApi, data: st.DataObject
) -> None:
    ts = data.draw(invalid_timestamps(seeded_api.clock.now), label="ts")
    before = seeded_api.state()
    reply = seeded_api.post_load("web-01", cpu=1, ram=2, ts=ts)
    assert_json_error(reply, 400, *(["ts"] if standard_json(ts) else []))
    assert seeded_api.state() == before


# -- invalid bodies ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "cpu=1&ram=2", '{"cpu": 1, "ram": 2', "{'cpu': 1}", b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_rejected_with_400(seeded_api: LiveApi, text: str | bytes) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.request("POST", "/servers/web-01/loads", text), 400)
    assert seeded_api.state() == before


@pytest.mark.parametrize("text", ["[]", '[{"cpu": 1, "ram": 2}]', "12.5", '"cpu"', "null", "true"])
def test_a_body_that_is_not_a_json_object_is_rejected_with_400(seeded_api: LiveApi, text: str) -> None:
    before = seeded_api.state()
    assert_json_error(post_text(seeded_api, "web-01", text), 400)
    assert seeded_api.state() == before


def test_a_deeply_nested_body_is_rejected_with_400(seeded_api: LiveApi) -> None:
    """Valid JSON but not an object: 400, not a server error (it stays far under 1 MiB)."""
    before = seeded_api.state()
    assert_json_error(post_text(seeded_api, "web-01", "[" * 100_000 + "]" * 100_000), 400)
    assert seeded_api.state() == before


def test_a_body_over_1_mib_is_rejected_with_413(seeded_api: LiveApi) -> None:
    text = '{"cpu": 1, "ram": 2}'
    padded = text + " " * (1024 * 1024 + 1 - len(text))
    before = seeded_api.state()
    assert_json_error(post_text(seeded_api, "web-01", padded), 413)
    assert seeded_api.state() == before


def test_a_body_of_exactly_1_mib_is_accepted(api: LiveApi) -> None:
    text = '{"cpu": 1, "ram": 2}'
    assert post_text(api, "web-01", text + " " * (1024 * 1024 - len(text))).status == 202


def test_a_body_announced_far_over_1_mib_is_rejected_with_json_413(seeded_api: LiveApi) -> None:
    """Content-Length of 9 MiB (beyond the server's transport cap): still the API's JSON 413."""
    before = seeded_api.state()
    answer = seeded_api.raw_exchange(
        b"POST /servers/web-01/loads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 9437184\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"]
    assert seeded_api.state() == before


# -- a full queue -----------------------------------------------------------------------


def test_a_full_pending_batch_refuses_with_503_and_queues_nothing(make_api) -> None:
    api = make_api(batch_limit=2)
    api.record("web-01", cpu=1, ram=2)
    api.record("web-02", cpu=3, ram=4)
    before = api.state()
    assert_json_error(api.post_load("web-03", cpu=5, ram=6), 503)
    assert api.state() == before
    assert len(api.batch) == 2
    assert api.counters()["kinds"]["sample"] | {"dropped": None} == {
        "received": 3, "applied": 0, "pending": 2, "dropped": None}
    assert api.counters()["dropped"] == {"queue_full": 1}


def test_after_an_apply_a_full_batch_accepts_again(make_api) -> None:
    api = make_api(batch_limit=1)
    api.record("web-01", cpu=1, ram=2)
    assert api.post_load("web-01", cpu=1, ram=2).status == 503
    api.apply()
    assert api.post_load("web-01", cpu=1, ram=2).status == 202
