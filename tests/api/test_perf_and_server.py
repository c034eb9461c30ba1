"""The earlier monitors' load APIs: ``/perf`` (form posts; minute, hour and second windows) and ``/server``.

Expected bodies are written from the API's contract (the issue), not from the code:
``/perf`` entries are ``{"cpuload", "memload", "interval", "samples", "time"}`` with
``time`` the bucket start in UTC as ``YYYY-MM-DDTHH:MM:SS``; ``/server`` answers
``{"last_60_minutes": {"cpu": [60], "ram": [60]}, "last_24_hours": {"cpu": [24], "ram": [24]}}``.
"""

from __future__ import annotations

import calendar
import time
import urllib.parse

import pytest

from live_api import START, LiveApi, assert_json_error

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_form(api: LiveApi, host: str, fields: dict[str, str] | str, path_tail: str = "/"):
    body = fields if isinstance(fields, str) else urllib.parse.urlencode(fields)
    return api.request("POST", f"/perf/{host}{path_tail}", body, headers=FORM)


def perf(api: LiveApi, host: str, cpu: float, mem: float) -> None:
    reply = post_form(api, host, {"cpuload": str(cpu), "memload": str(mem)})
    assert 200 <= reply.status < 300, (reply.status, reply.raw)
    assert isinstance(reply.json, dict)


def utc(text: str) -> int:
    """Epoch seconds of a zone-less ``YYYY-MM-DDTHH:MM:SS`` read as UTC."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def assert_entries(entries: list, count: int, width: int, last_start: int) -> None:
    assert isinstance(entries, list) and len(entries) == count
    for index, entry in enumerate(entries):
        assert set(entry) == {"cpuload", "memload", "interval", "samples", "time"}, entry
        assert entry["interval"] == width
        assert len(entry["time"]) == 19 and not entry["time"].endswith("Z")
        assert utc(entry["time"]) == last_start - (count - 1 - index) * width
        if entry["samples"] == 0:
            assert entry["cpuload"] is None and entry["memload"] is None


# -- /perf ------------------------------------------------------------------------------------


def test_a_form_post_lands_in_the_current_second_minute_and_hour(api: LiveApi) -> None:
    perf(api, "web-01", 12.5, 40.25)
    api.apply()
    second, minute, hour = int(START), int(START) // 60 * 60, int(START) // 3600 * 3600
    for mode, count, width, last in (("last_minute", 60, 1, second), ("last_hour", 60, 60, minute),
                                     ("last_day", 24, 3600, hour)):
        reply = api.get(f"/perf/web-01/{mode}")
        assert reply.status == 200 and reply.content_type == "application/json"
        entries = reply.json
        assert_entries(entries, count, width, last)
        assert entries[-1] == {"cpuload": 12.5, "memload": 40.25, "interval": width, "samples": 1,
                               "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last))}
        assert all(entry["samples"] == 0 for entry in entries[:-1])


def test_the_second_window_follows_the_clock_one_entry_per_second(api: LiveApi) -> None:
    for step in range(5):
        perf(api, "web-01", 10.0 + step, 50.0 - step)
        api.apply()
        api.clock.advance(1.0)
    api.clock.advance(2.0)  # two silent seconds at the end
    entries = api.get("/perf/web-01/last_minute").json
    assert_entries(entries, 60, 1, int(api.clock.now))
    tail = entries[-8:]  # the five seconds sampled, then the clock's own second and two more
    assert [entry["samples"] for entry in tail] == [1, 1, 1, 1, 1, 0, 0, 0]
    assert [entry["cpuload"] for entry in tail[:5]] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert [entry["memload"] for entry in tail[:5]] == [50.0, 49.0, 48.0, 47.0, 46.0]
    api.clock.advance(60.0)  # everything has left the last minute
    assert all(entry["samples"] == 0 for entry in api.get("/perf/web-01/last_minute").json)


def test_averages_are_weighted_by_samples_in_every_mode(api: LiveApi) -> None:
    for cpu, mem in ((10.0, 1.0), (20.0, 2.0), (60.0, 3.0)):
        perf(api, "web-01", cpu, mem)
    api.apply()
    for mode in ("last_minute", "last_hour", "last_day"):
        last = api.get(f"/perf/web-01/{mode}").json[-1]
        assert last["samples"] == 3
        assert last["cpuload"] == pytest.approx(30.0) and last["memload"] == pytest.approx(2.0)


def test_the_trailing_slash_of_the_post_is_optional(api: LiveApi) -> None:
    for tail in ("/", ""):
        reply = post_form(api, "web-01", {"cpuload": "1", "memload": "2"}, path_tail=tail)
        assert 200 <= reply.status < 300, (tail, reply.status, reply.raw)
    api.apply()
    assert api.get("/perf/web-01/last_minute").json[-1]["samples"] == 2


def test_a_perf_post_is_the_same_server_as_the_native_api(api: LiveApi) -> None:
    perf(api, "Web-01", 5.0, 6.0)
    api.record("web-01", cpu=15.0, ram=16.0)
    api.apply()
    assert api.get("/perf/web-01/last_hour").json[-1]["samples"] == 2
    assert api.loads_of("web-01")["minutes"][-1]["samples"] == 2


def test_numbers_in_every_decimal_form_are_accepted(api: LiveApi) -> None:
    for text in ("0", "100", "100.0", "7.", ".5", "1e1", "+3", "00012.5"):
        reply = post_form(api, "web-01", {"cpuload": text, "memload": text})
        assert 200 <= reply.status < 300, (text, reply.raw)
    assert api.apply() == 8


def test_unknown_host_and_unknown_mode_are_404_json(seeded_api: LiveApi) -> None:
    perf(seeded_api, "web-01", 1.0, 1.0)
    seeded_api.apply()
    assert_json_error(seeded_api.get("/perf/nobody/last_hour"), 404, "nobody")
    assert_json_error(seeded_api.get("/perf/web-01/last_week"), 404, "last_week", "last_minute")
    assert_json_error(seeded_api.get("/perf/nobody/last_week"), 404)
    assert_json_error(seeded_api.get("/perf/web-01/"), 404, "mode")
    assert_json_error(seeded_api.get("/perf/not%20a%20name/last_hour"), 400, "name")


BAD_FORMS = [
    ("memload=5", "cpuload"),
    ("cpuload=5", "memload"),
    ("", "cpuload"),
    ("cpuload=&memload=5", "cpuload"),
    ("cpuload=abc&memload=5", "cpuload"),
    ("cpuload=5&memload=nan", "memload"),
    ("cpuload=inf&memload=5", "cpuload"),
    ("cpuload=1_0&memload=5", "cpuload"),
    ("cpuload=0x10&memload=5", "cpuload"),
    ("cpuload=%205&memload=5", "cpuload"),
    ("cpuload=-0.01&memload=5", "cpuload"),
    ("cpuload=100.01&memload=5", "cpuload"),
    ("cpuload=5&memload=1e309", "memload"),
    ("cpuload=5&memload=" + "1" * 65, "memload"),
    ("cpuload=5&cpuload=6&memload=5", "cpuload"),
    ("cpuload=5&memload=%00", "memload"),
    ("cpuload=5&memload=%FF", "ascii"),
    ("&".join(f"k{i}=1" for i in range(20)) + "&cpuload=1&memload=1", "fields"),
]


@pytest.mark.parametrize("body, named", BAD_FORMS)
def test_a_bad_form_is_400_naming_the_problem_and_stores_nothing(seeded_api: LiveApi, body: str, named: str) -> None:
    before, counted = seeded_api.state(), seeded_api.counters()["dropped"]
    assert_json_error(post_form(seeded_api, "web-01", body), 400, named)
    assert seeded_api.state() == before
    assert sum(seeded_api.counters()["dropped"].values()) == sum(counted.values()) + 1


def test_a_non_ascii_body_is_400(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    reply = seeded_api.request("POST", "/perf/web-01/", "cpuload=5&memload=5é".encode(), headers=FORM)
    assert_json_error(reply, 400, "ascii")
    assert seeded_api.state() == before


def test_a_json_body_on_the_form_api_is_415(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    reply = seeded_api.request("POST", "/perf/web-01/", '{"cpuload": 5, "memload": 5}')
    assert_json_error(reply, 415, "application/x-www-form-urlencoded")
    assert seeded_api.state() == before


def test_an_oversized_form_is_413(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    body = "cpuload=5&memload=5&pad=" + "x" * 5000
    assert_json_error(post_form(seeded_api, "web-01", body), 413)
    assert seeded_api.state() == before


def test_a_get_is_not_a_post_and_a_post_on_a_mode_is_405(seeded_api: LiveApi) -> None:
    before = seeded_api.state()
    reply = seeded_api.request("POST", "/perf/seed-01/last_hour", "cpuload=1&memload=1", headers=FORM)
    assert_json_error(reply, 405)
    assert seeded_api.state() == before


# -- /server ----------------------------------------------------------------------------------


def test_server_post_and_get_give_minute_and_hour_averages_oldest_first(api: LiveApi) -> None:
    reply = api.post("/server/db-01", {"cpu": 30.0, "ram": 60.0})
    assert 200 <= reply.status < 300 and isinstance(reply.json, dict)
    api.post("/server/db-01", {"cpu": 50.0, "ram": 70.0})
    api.apply()
    api.clock.advance(120.0)  # two minutes on: the samples' minute is third from the end
    api.post("/server/db-01", {"cpu": 10.0, "ram": 20.0})
    api.apply()
    body = api.get("/server/db-01").json
    assert set(body) == {"last_60_minutes", "last_24_hours"}
    minutes, hours = body["last_60_minutes"], body["last_24_hours"]
    assert set(minutes) == set(hours) == {"cpu", "ram"}
    assert len(minutes["cpu"]) == len(minutes["ram"]) == 60
    assert len(hours["cpu"]) == len(hours["ram"]) == 24
    assert minutes["cpu"][-3:] == [40.0, None, 10.0] and minutes["ram"][-3:] == [65.0, None, 20.0]
    assert minutes["cpu"][:-3] == [None] * 57
    assert hours["cpu"][-1] == pytest.approx(30.0) and hours["ram"][-1] == pytest.approx(50.0)
    assert hours["cpu"][:-1] == [None] * 23


def test_server_unknown_is_404_and_a_bad_body_400_storing_nothing(seeded_api: LiveApi) -> None:
    assert_json_error(seeded_api.get("/server/nobody"), 404, "nobody")
    before = seeded_api.state()
    for body in ('{"cpu": 1}', '{"cpu": "1", "ram": 2}', '{"cpu": 101, "ram": 2}', "[1, 2]", "not json",
                 '{"cpu": NaN, "ram": 1}', '{"cpu": 1, "ram": true}'):
        assert_json_error(seeded_api.request("POST", "/server/db-01", body), 400)
    assert_json_error(seeded_api.request("POST", "/server/db-01", '{"cpu": 1, "ram": 1}',
                                         headers={"Content-Type": "text/plain"}), 415)
    assert seeded_api.state() == before
    assert seeded_api.get("/server/db-01").status == 404
