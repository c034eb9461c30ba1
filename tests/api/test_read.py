"""``GET /servers/{name}/loads``: 60 minute and 24 hour buckets, oldest first, UTC-aligned."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live_api import (
    ACCEPTED_AGE,
    EMPTY,
    HOUR_START,
    HTTP_EXAMPLES,
    LiveApi,
    assert_json_error,
    bucket,
    epoch,
    figures,
    quote,
)

ISO_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def at(api: LiveApi, iso: str, extra: float = 0.0) -> None:
    """Set the clock to the UTC time ``iso`` plus ``extra`` seconds."""
    api.clock.now = epoch(iso) + extra


# -- shape ---------------------------------------------------------------------------------------


def test_a_window_has_the_server_last_seen_60_minutes_and_24_hours(api: LiveApi) -> None:
    api.record("web-01", cpu=12.5, ram=40.0)
    api.apply()
    reply = api.get("/servers/web-01/loads")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    body = reply.json
    assert set(body) == {"server", "last_seen", "minutes", "hours"}
    assert body["server"] == "web-01"
    assert ISO_SECOND.match(body["last_seen"]), body["last_seen"]
    assert len(body["minutes"]) == 60
    assert len(body["hours"]) == 24


def test_a_bucket_with_samples_has_start_count_and_cpu_ram_avg_min_max(api: LiveApi) -> None:
    api.record("web-01", cpu=12.5, ram=40.0)
    api.apply()
    last = api.loads_of("web-01")["minutes"][-1]
    assert set(last) == {"start", "samples", "cpu", "ram"}
    assert set(last["cpu"]) == set(last["ram"]) == {"avg", "min", "max"}


def test_a_bucket_without_samples_is_null_not_zero(api: LiveApi) -> None:
    api.record("web-01", cpu=12.5, ram=40.0)
    api.apply()
    body = api.loads_of("web-01")
    empty = body["minutes"][0]
    assert set(empty) == {"start", "samples", "cpu", "ram"}
    assert figures(empty) == EMPTY
    assert all(figures(entry) == EMPTY for entry in body["minutes"][:-1] + body["hours"][:-1])


def test_last_seen_is_the_time_the_server_was_last_heard_from(api: LiveApi) -> None:
    at(api, "2027-01-15T08:20:05Z")
    api.record("web-01", cpu=1, ram=2)
    api.apply()
    assert api.loads_of("web-01")["last_seen"] == "2027-01-15T08:20:05Z"
    at(api, "2027-01-15T08:41:30Z")
    api.record("web-01", cpu=1, ram=2)
    api.apply()
    assert api.loads_of("web-01")["last_seen"] == "2027-01-15T08:41:30Z"


# -- time alignment ---------------------------------------------------------------------------------


def test_minute_starts_are_utc_aligned_oldest_first_ending_with_the_current_minute(api: LiveApi) -> None:
    at(api, "2026-11-24T06:29:41Z", 0.25)
    api.record("web-01", cpu=1, ram=2, ts=epoch("2026-11-24T06:29:00Z"))
    api.apply()
    starts = [entry["start"] for entry in api.loads_of("web-01")["minutes"]]
    assert starts[-1] == "2026-11-24T06:29:00Z"
    assert starts[-2] == "2026-11-24T06:28:00Z"
    assert starts[0] == "2026-11-24T05:30:00Z"
    assert all(start.endswith(":00Z") for start in starts)
    assert [epoch(b) - epoch(a) for a, b in itertools.pairwise(starts)] == [60.0] * 59


def test_hour_starts_are_utc_aligned_oldest_first_ending_with_the_current_hour(api: LiveApi) -> None:
    at(api, "2026-11-24T06:29:41Z", 0.25)
    api.record("web-01", cpu=1, ram=2)
    api.apply()
    starts = [entry["start"] for entry in api.loads_of("web-01")["hours"]]
    assert starts[-1] == "2026-11-24T06:00:00Z"
    assert starts[0] == "2026-11-23T07:00:00Z"
    assert all(start.endswith(":00:00Z") for start in starts)
    assert [epoch(b) - epoch(a) for a, b in itertools.pairwise(starts)] == [3600.0] * 23


def test_samples_on_either_side_of_a_minute_boundary_land_in_their_own_minutes(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    boundary = epoch("2027-01-15T08:30:00Z")
    api.post("/loads", [
        {"server": "web-01", "cpu": 10, "ram": 10, "ts": boundary - 0.001},
        {"server": "web-01", "cpu": 20, "ram": 20, "ts": boundary},
    ])
    api.apply()
    minutes = api.loads_of("web-01")["minutes"]
    assert (minutes[-2]["start"], minutes[-2]["cpu"]["avg"]) == ("2027-01-15T08:29:00Z", 10.0)
    assert (minutes[-1]["start"], minutes[-1]["cpu"]["avg"]) == ("2027-01-15T08:30:00Z", 20.0)


def test_the_windows_follow_the_clock_without_new_samples(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=10, ram=20)
    api.apply()
    api.clock.advance(5 * 60)
    body = api.loads_of("web-01")
    assert body["minutes"][-1]["start"] == "2027-01-15T08:35:00Z"
    assert [entry["start"] for entry in body["minutes"] if entry["samples"]] == ["2027-01-15T08:30:00Z"]
    assert body["minutes"][-6]["samples"] == 1


def test_minutes_older_than_an_hour_leave_the_minute_window_but_stay_in_the_hours(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=10, ram=20)
    api.apply()
    api.clock.advance(2 * 3600)  # 10:30:10
    body = api.loads_of("web-01")
    assert all(figures(entry) == EMPTY for entry in body["minutes"])
    assert body["hours"][-3]["start"] == "2027-01-15T08:00:00Z"
    assert figures(body["hours"][-3]) == bucket(1, (10.0, 10.0, 10.0), (20.0, 20.0, 20.0))


def test_hours_older_than_a_day_leave_the_hour_window(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=10, ram=20)
    api.apply()
    api.clock.advance(23 * 3600)
    assert api.loads_of("web-01")["hours"][0]["samples"] == 1
    api.clock.advance(3600)
    assert all(figures(entry) == EMPTY for entry in api.loads_of("web-01")["hours"])


def test_a_sample_up_to_60s_ahead_shows_once_its_minute_is_current(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=10, ram=10, ts=epoch("2027-01-15T07:31:00Z"))  # oldest minute shown
    api.record("web-01", cpu=20, ram=20, ts=api.clock.now + 60)  # 08:31:10
    api.apply()
    body = api.loads_of("web-01")
    assert body["minutes"][-1]["start"] == "2027-01-15T08:30:00Z"
    assert [entry["start"] for entry in body["minutes"] if entry["samples"]] == ["2027-01-15T07:31:00Z"]
    api.clock.advance(60)
    minutes = api.loads_of("web-01")["minutes"]
    assert (minutes[-1]["start"], minutes[-1]["cpu"]["avg"]) == ("2027-01-15T08:31:00Z", 20.0)


def test_a_sample_older_than_the_oldest_hour_shown_is_refused_and_one_inside_it_is_shown(api: LiveApi) -> None:
    """The hour window shows 08:00 and the 23 hours before it: from 2027-01-14T09:00:00Z on."""
    at(api, "2027-01-15T08:30:10Z")
    reply = api.post_load("web-01", cpu=10, ram=10, ts=epoch("2027-01-14T09:00:00Z") - 0.5)
    assert_json_error(reply, 400, "ts")
    api.record("web-01", cpu=20, ram=30, ts=epoch("2027-01-14T09:00:00Z"))
    api.apply()
    body = api.loads_of("web-01")
    assert body["hours"][0]["start"] == "2027-01-14T09:00:00Z"
    assert figures(body["hours"][0]) == bucket(1, (20.0, 20.0, 20.0), (30.0, 30.0, 30.0))
    assert all(entry["samples"] == 0 for entry in body["minutes"] + body["hours"][1:])


# -- figures --------------------------------------------------------------------------------------------


def test_a_minute_shows_count_average_minimum_and_maximum_of_its_samples(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    for cpu, ram in [(10.0, 80.0), (20.0, 60.0), (60.0, 70.0)]:
        api.record("web-01", cpu=cpu, ram=ram)
    api.apply()
    last = api.loads_of("web-01")["minutes"][-1]
    assert figures(last) == bucket(3, (30.0, 10.0, 60.0), (70.0, 60.0, 80.0))


def test_samples_from_several_applies_add_up_in_one_minute(api: LiveApi) -> None:
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=10.0, ram=10.0)
    api.apply()
    api.clock.advance(20)
    api.record("web-01", cpu=30.0, ram=50.0)
    api.apply()
    assert figures(api.loads_of("web-01")["minutes"][-1]) == bucket(2, (20.0, 10.0, 30.0), (30.0, 10.0, 50.0))


def test_the_hour_average_is_over_all_its_samples_not_a_mean_of_minute_means(api: LiveApi) -> None:
    """Minute 08:10 has 3 samples at 10, minute 08:20 one at 50: hour avg 20, not (10 + 50) / 2 = 30."""
    at(api, "2027-01-15T08:30:10Z")
    ten = epoch("2027-01-15T08:10:00Z")
    samples = [(ten + 1, 10.0, 90.0), (ten + 2, 10.0, 90.0), (ten + 3, 10.0, 90.0)]
    samples.append((epoch("2027-01-15T08:20:30Z"), 50.0, 10.0))
    api.post("/loads", [{"server": "web-01", "ts": ts, "cpu": cpu, "ram": ram} for ts, cpu, ram in samples])
    api.apply()
    body = api.loads_of("web-01")
    minute_means = [entry["cpu"]["avg"] for entry in body["minutes"] if entry["samples"]]
    assert minute_means == [10.0, 50.0]
    hour = body["hours"][-1]
    assert hour["start"] == "2027-01-15T08:00:00Z"
    assert figures(hour) == bucket(4, (20.0, 10.0, 50.0), (70.0, 10.0, 90.0))


def test_the_hour_average_is_sample_weighted_across_separate_applies(api: LiveApi) -> None:
    at(api, "2027-01-15T08:10:30Z")
    for _ in range(3):
        api.record("web-01", cpu=10.0, ram=10.0)
    api.apply()
    at(api, "2027-01-15T08:50:30Z")
    api.record("web-01", cpu=50.0, ram=50.0)
    api.apply()
    assert api.loads_of("web-01")["hours"][-1]["cpu"] == {"avg": 20.0, "min": 10.0, "max": 50.0}


def test_a_single_sample_is_its_bucket_average_minimum_and_maximum_exactly(api: LiveApi) -> None:
    """A load with up to five decimals is reported exactly as sent, in avg, min and max alike."""
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=12.34567, ram=99.99999)
    api.apply()
    last = api.loads_of("web-01")["minutes"][-1]
    assert last["cpu"] == {"avg": 12.34567, "min": 12.34567, "max": 12.34567}
    assert last["ram"] == {"avg": 99.99999, "min": 99.99999, "max": 99.99999}


def test_loads_are_kept_to_five_decimals_consistently(api: LiveApi) -> None:
    """Finer loads are rounded once, on the way in: the average never leaves [min, max]."""
    at(api, "2027-01-15T08:30:10Z")
    api.record("web-01", cpu=12.345674, ram=99.999996)
    api.apply()
    last = api.loads_of("web-01")["minutes"][-1]
    assert last["cpu"] == {"avg": 12.34567, "min": 12.34567, "max": 12.34567}
    assert last["ram"] == {"avg": 100.0, "min": 100.0, "max": 100.0}


# -- which server ---------------------------------------------------------------------------------------


def test_servers_windows_are_independent(api: LiveApi) -> None:
    api.record("web-01", cpu=10.0, ram=10.0)
    api.record("web-02", cpu=90.0, ram=90.0)
    api.apply()
    assert api.loads_of("web-01")["minutes"][-1]["cpu"]["max"] == 10.0
    assert api.loads_of("web-02")["minutes"][-1]["cpu"]["min"] == 90.0


def test_a_server_is_read_with_any_case_of_its_name(api: LiveApi) -> None:
    api.record("web-01", cpu=1, ram=2)
    api.apply()
    assert api.loads_of("WEB-01") == api.loads_of("web-01")
    assert api.loads_of("WEB-01")["server"] == "web-01"


def test_an_unknown_server_is_404(seeded_api: LiveApi) -> None:
    assert_json_error(seeded_api.get("/servers/web-99/loads"), 404, "web-99")


def test_a_server_with_only_pending_samples_is_not_known_yet(seeded_api: LiveApi) -> None:
    assert_json_error(seeded_api.get("/servers/seed-02/loads"), 404)


@pytest.mark.parametrize("name", ["a" * 254, "web 01", "web!01", "wéb"])
def test_reading_an_invalid_name_is_400(seeded_api: LiveApi, name: str) -> None:
    assert_json_error(seeded_api.get(f"/servers/{quote(name)}/loads"), 400, "name")


def test_a_path_segment_that_is_not_utf8_is_400(seeded_api: LiveApi) -> None:
    assert_json_error(seeded_api.get("/servers/%FF%FE/loads"), 400)


def test_reading_changes_nothing(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    seeded_api.loads_of("seed-01")
    seeded_api.get("/servers/nobody/loads")
    assert seeded_api.state() == before


# -- against a naive model ----------------------------------------------------------------------------------

_server_numbers = itertools.count()
SAMPLE = st.tuples(
    st.one_of(st.none(), st.floats(-ACCEPTED_AGE, 60), st.floats(-300, 60)),  # ts offset from now; None: no ts
    st.integers(0, 10_000).map(lambda n: n / 100),  # cpu with 2 decimals, as agents send
    st.integers(0, 10_000).map(lambda n: n / 100),  # ram
)


def expected_window(samples: list[tuple[float, float, float]], current: int, shown: int, width: int) -> list:
    """The naive model: for each bucket, the samples whose ``floor(ts / width)`` is that bucket."""
    window = []
    for number in range(current - shown + 1, current + 1):
        inside = [(cpu, ram) for ts, cpu, ram in samples if ts // width == number]
        if not inside:
            window.append(EMPTY)
            continue
        cpus, rams = [cpu for cpu, _ in inside], [ram for _, ram in inside]
        window.append(
            bucket(
                len(inside),
                (sum(cpus) / len(cpus), min(cpus), max(cpus)),
                (sum(rams) / len(rams), min(rams), max(rams)),
            )
        )
    return window


def assert_same_window(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        got = figures(got)
        assert got["samples"] == want["samples"], (got, want)
        for metric in ("cpu", "ram"):
            if want[metric] is None:
                assert got[metric] is None
                continue
            assert got[metric]["min"] == want[metric]["min"] and got[metric]["max"] == want[metric]["max"]
            assert math.isclose(got[metric]["avg"], want[metric]["avg"], rel_tol=1e-9, abs_tol=1e-9)


@HTTP_EXAMPLES
@given(samples=st.lists(SAMPLE, min_size=1, max_size=40), minute_of_hour=st.integers(0, 59))
def test_windows_match_a_naive_model_of_the_samples(
    api: LiveApi, samples: list[tuple[float | None, float, float]], minute_of_hour: int
) -> None:
    name = f"model-{next(_server_numbers)}"
    api.clock.now = HOUR_START + minute_of_hour * 60 + 41.25
    now = api.clock.now
    items, sent = [], []
    for offset, cpu, ram in samples:
        item: dict[str, Any] = {"server": name, "cpu": cpu, "ram": ram}
        if offset is not None:
            item["ts"] = now + offset
        sent.append((item.get("ts", now), cpu, ram))
        items.append(item)
    assert api.post("/loads", items).json == {"accepted": len(items)}
    api.apply()
    body = api.loads_of(name)
    assert_same_window(body["minutes"], expected_window(sent, int(now // 60), 60, 60))
    assert_same_window(body["hours"], expected_window(sent, int(now // 3600), 24, 3600))


# -- the last 60 seconds ------------------------------------------------------------------------


def test_seconds_lists_the_last_60_seconds_oldest_first_with_averages(api: LiveApi) -> None:
    api.record("web-01", cpu=10.0, ram=20.0)
    api.record("web-01", cpu=30.0, ram=40.0)
    api.apply()
    api.clock.advance(2.0)
    api.record("web-01", cpu=55.5, ram=1.25)
    api.apply()
    reply = api.get("/servers/web-01/seconds")
    assert reply.status == 200 and reply.content_type == "application/json"
    body = reply.json
    assert set(body) == {"server", "last_seen", "seconds"} and body["server"] == "web-01"
    seconds = body["seconds"]
    assert len(seconds) == 60
    assert [epoch(entry["start"]) for entry in seconds] == [int(api.clock.now) - 59 + i for i in range(60)]
    assert seconds[-1] == {"start": seconds[-1]["start"], "samples": 1, "cpu": 55.5, "ram": 1.25}
    assert seconds[-2] == {"start": seconds[-2]["start"], "samples": 0, "cpu": None, "ram": None}
    assert seconds[-3]["samples"] == 2 and seconds[-3]["cpu"] == 20.0 and seconds[-3]["ram"] == 30.0
    assert all(entry["samples"] == 0 for entry in seconds[:-3])


def test_seconds_of_an_unknown_or_invalid_server(api: LiveApi) -> None:
    assert_json_error(api.get("/servers/nobody/seconds"), 404, "nobody")
    assert_json_error(api.get("/servers/bad%20name/seconds"), 400, "name")
