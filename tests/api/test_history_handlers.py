"""Range queries over HTTP (``?from=T&to=T``), on the live app with a fake history reader.

The shapes come from the specification (issue 9, "Range queries"), not from the code:

- ``GET /servers/{name}/loads?from=&to=&step=minute|hour`` -> ``{"server", "step", "from", "to",
  "buckets": [...]}`` (the windows' bucket shape, null loads when empty; ``from``/``to`` the starts of the
  first and last bucket; ``kept_from`` only where history begins later than the range);
- ``GET /servers/{name}/summary?from=&to=`` -> ``{"server", "from", "to", "samples", "cpu", "ram"}``,
  sample-weighted; minute buckets up to 10,000 of them, else hour buckets;
- ``GET /nodes/{id}/cpu?from=&to=`` and ``/memory`` -> ``{"YYYY-MM-DD HH:MM:SS": {section}, ...}`` oldest
  first, also as ``/cluster/{ip}/cpu`` (the transcript's history call);
- 400 naming the parameter for a bad range, 404 for an unknown server or node; without range parameters
  every route answers as before.

The reader (``FakeHistory``) is a naive model: it keeps every sample and adds them up per bucket.
"""

from __future__ import annotations

import datetime
import functools
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import live_api
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from live_api import (
    EMPTY,
    HOUR_START,
    HTTP_EXAMPLES,
    START,
    LiveApi,
    assert_json_error,
    bucket,
    figures,
    put_stats,
    register,
    stats_body,
)

from servertrack.api import make_app
from servertrack.common.buckets import BucketWindow
from servertrack.store.interface import RangeAnswer

UTC = datetime.UTC
MINUTE = 60
HOUR = 3600
DAY = 86_400
LIMIT = 10_000


def iso(epoch: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` of whole epoch seconds (the reference: ``datetime``)."""
    return datetime.datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_key(epoch: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC (the reference: ``datetime``)."""
    return datetime.datetime.fromtimestamp(epoch, UTC).isoformat(sep=" ").removesuffix("+00:00")


class FakeHistory:
    """A ``HistoryReader`` that keeps every sample and snapshot and answers from them naively.

    ``kept_from[width]`` is where kept history of that width begins (earlier buckets read empty).
    Every call is recorded in ``calls``.
    """

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float, float]]] = {}
        self.snapshots: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.kept_from: dict[int, int] = {}
        self.calls: list[tuple[Any, ...]] = []

    def add(self, name: str, *samples: tuple[float, float, float]) -> None:
        """Samples ``(ts, cpu, ram)`` of server ``name`` (none: a known server without samples)."""
        self.samples.setdefault(name, []).extend(samples)

    async def loads(self, name: str, width: int, first_bucket: int, count: int) -> RangeAnswer | None:
        self.calls.append(("loads", name, width, first_bucket, count))
        if name not in self.samples:
            return None
        kept = self.kept_from.get(width)
        samples = np.zeros(count, dtype=np.uint32)
        sums = {key: np.zeros(count) for key in ("cpu", "ram")}
        lows = {key: np.full(count, np.inf) for key in ("cpu", "ram")}
        highs = {key: np.full(count, -np.inf) for key in ("cpu", "ram")}
        for ts, cpu, ram in self.samples[name]:
            index = int(ts // width) - first_bucket
            if not 0 <= index < count or (kept is not None and ts < kept):
                continue
            samples[index] += 1
            for key, value in (("cpu", cpu), ("ram", ram)):
                sums[key][index] += value
                lows[key][index] = min(lows[key][index], value)
                highs[key][index] = max(highs[key][index], value)
        for values in (*lows.values(), *highs.values()):
            values[samples == 0] = 0.0
        window = BucketWindow(first_bucket, width, samples, sums["cpu"], sums["ram"], lows["cpu"], highs["cpu"],
                              lows["ram"], highs["ram"])
        return RangeAnswer(window, kept if kept is not None and first_bucket * width < kept else None)

    async def node_sections(self, node: str, start: int, stop: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        self.calls.append(("node_sections", node, start, stop, limit))
        kept = sorted(self.snapshots.get(node, []), key=lambda entry: entry[0])
        return [(ts, sections) for ts, sections in kept if start <= ts <= stop][:limit]


@pytest.fixture
def history() -> FakeHistory:
    return FakeHistory()


@pytest.fixture
def hapi(make_api: Callable[..., LiveApi], history: FakeHistory, monkeypatch: pytest.MonkeyPatch) -> LiveApi:
    """The live app, its ``history`` setting the fake reader."""
    monkeypatch.setattr(live_api, "make_app", functools.partial(make_app, history=history))
    return make_api()


def get_ok(api: LiveApi, path: str) -> Any:
    reply = api.get(path)
    assert reply.status == 200, (path, reply.status, reply.raw)
    assert reply.content_type == "application/json"
    return reply.json


def query(**parameters: Any) -> str:
    """``?from=...&to=...`` (``from_`` for ``from``), values URL-encoded."""
    return "?" + urllib.parse.urlencode({key.rstrip("_"): value for key, value in parameters.items()})


# -- GET /servers/{name}/loads?from=&to=&step= ----------------------------------------------


def test_a_range_answers_buckets_in_the_window_shape(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01", (HOUR_START + 5, 10.0, 20.0), (HOUR_START + 30, 20.0, 40.0), (HOUR_START + 125, 50.0, 60.0))
    body = get_ok(hapi, "/servers/web-01/loads" + query(from_="2027-01-15T08:00:00Z", to="2027-01-15T08:03:00Z"))
    assert set(body) == {"server", "step", "from", "to", "buckets"}
    assert (body["server"], body["step"], body["from"], body["to"]) == (
        "web-01", "minute", "2027-01-15T08:00:00Z", "2027-01-15T08:03:00Z")
    assert [entry["start"] for entry in body["buckets"]] == [iso(HOUR_START + 60 * i) for i in range(4)]
    assert [figures(entry) for entry in body["buckets"]] == [
        bucket(2, (15.0, 10.0, 20.0), (30.0, 20.0, 40.0)), EMPTY, bucket(1, (50.0, 50.0, 50.0), (60.0, 60.0, 60.0)),
        EMPTY]
    assert history.calls == [("loads", "web-01", MINUTE, int(HOUR_START) // MINUTE, 4)]


def test_the_server_name_is_read_as_everywhere(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01")
    body = get_ok(hapi, "/servers/WEB-01./loads?from=1800000000&to=1800000000")
    assert body["server"] == "web-01" and history.calls[0][1] == "web-01"
    assert_json_error(hapi.get("/servers/10.0.0.1/loads?from=1800000000"), 400)
    assert_json_error(hapi.get("/servers/a%20b/loads?from=1800000000"), 400)


@pytest.mark.parametrize("spelling", [
    "2027-01-15T08:00:00Z", "2027-01-15T09:00:00%2B01:00", "2027-01-15T03:00:00-05:00", "2027-01-15%2008:00:00",
    "2027-01-15+08:00:00", "1800000000", "1800000000.0", "2027-01-15T08:00:00.000Z", "2027-01-15T08:00:00%2B00:00",
])
def test_every_time_form_gives_the_same_answer(hapi: LiveApi, history: FakeHistory, spelling: str) -> None:
    history.add("web-01", (HOUR_START + 61, 10.0, 20.0))
    expected = get_ok(hapi, "/servers/web-01/loads?from=2027-01-15T08:00:00Z&to=2027-01-15T08:05:00Z")
    assert get_ok(hapi, f"/servers/web-01/loads?from={spelling}&to=2027-01-15T08:05:00Z") == expected
    assert get_ok(hapi, "/servers/web-01/loads?from=2027-01-15T08:00:00Z&to=1800000300") == expected


def test_from_equal_to_is_one_bucket(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01", (HOUR_START + 40, 10.0, 20.0))
    body = get_ok(hapi, "/servers/web-01/loads?from=1800000030&to=1800000030")
    assert (body["from"], body["to"]) == ("2027-01-15T08:00:00Z", "2027-01-15T08:00:00Z")
    assert [figures(entry) for entry in body["buckets"]] == [bucket(1, (10.0,) * 3, (20.0,) * 3)]
    hour = get_ok(hapi, "/servers/web-01/loads?from=1800000030&to=1800000030&step=hour")
    assert hour["step"] == "hour" and len(hour["buckets"]) == 1 and hour["buckets"][0]["start"] == iso(HOUR_START)


def test_the_step_is_minute_up_to_exactly_24_hours_then_hour(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01")
    day = get_ok(hapi, f"/servers/web-01/loads?from={HOUR_START - DAY:.0f}&to={HOUR_START:.0f}")
    assert day["step"] == "minute" and len(day["buckets"]) == 24 * 60 + 1
    assert (day["from"], day["to"]) == (iso(HOUR_START - DAY), iso(HOUR_START))
    longer = get_ok(hapi, f"/servers/web-01/loads?from={HOUR_START - DAY:.0f}&to={HOUR_START + 1:.0f}")
    assert longer["step"] == "hour" and len(longer["buckets"]) == 25
    assert [entry["start"] for entry in longer["buckets"]] == [iso(HOUR_START - DAY + HOUR * i) for i in range(25)]
    forced = get_ok(hapi, f"/servers/web-01/loads?from={HOUR_START - DAY:.0f}&to={HOUR_START + 1:.0f}&step=minute")
    assert forced["step"] == "minute" and len(forced["buckets"]) == 24 * 60 + 1


@pytest.mark.parametrize("step, width", [("minute", MINUTE), ("hour", HOUR)])
def test_a_range_holds_at_most_10000_buckets(hapi: LiveApi, history: FakeHistory, step: str, width: int) -> None:
    history.add("web-01", (HOUR_START, 1.0, 2.0))
    last = HOUR_START + (LIMIT - 1) * width
    body = get_ok(hapi, f"/servers/web-01/loads?from={HOUR_START:.0f}&to={last:.0f}&step={step}")
    assert len(body["buckets"]) == LIMIT and body["to"] == iso(last)
    assert body["buckets"][0]["samples"] == 1
    calls = len(history.calls)
    over = hapi.get(f"/servers/web-01/loads?from={HOUR_START:.0f}&to={last + width:.0f}&step={step}")
    assert_json_error(over, 400, "from", "10,000", "10,001")
    assert len(history.calls) == calls  # refused before the reader is asked


def test_kept_from_is_there_only_when_the_range_reaches_before_history(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01", (HOUR_START - 90, 5.0, 5.0), (HOUR_START + 10, 7.0, 8.0))
    history.kept_from[MINUTE] = int(HOUR_START)
    early = get_ok(hapi, f"/servers/web-01/loads?from={HOUR_START - 120:.0f}&to={HOUR_START:.0f}")
    assert early["kept_from"] == "2027-01-15T08:00:00Z"
    assert [figures(entry) for entry in early["buckets"]] == [EMPTY, EMPTY, bucket(1, (7.0,) * 3, (8.0,) * 3)]
    inside = get_ok(hapi, f"/servers/web-01/loads?from={HOUR_START:.0f}&to={HOUR_START + 60:.0f}")
    assert "kept_from" not in inside


def test_an_unknown_server_is_a_404(hapi: LiveApi, history: FakeHistory) -> None:
    assert_json_error(hapi.get("/servers/nope/loads?from=1800000000"), 404, "unknown server", "nope")
    assert_json_error(hapi.get("/servers/nope/loads?step=hour"), 404, "nope")
    assert history.calls[0][:2] == ("loads", "nope")


BAD_RANGES = [
    ("from=1800000060&to=1800000000", ("from", "after", "to")),
    ("from=2027-01-15T08:01:00Z&to=2027-01-15T08:00:59Z", ("from", "after")),
    ("from=yesterday", ("from:", "not a time", "ISO-8601", "epoch seconds")),
    ("to=soon&from=1800000000", ("to:", "not a time")),
    ("from=2027-02-29T00:00:00Z", ("from:", "valid")),
    ("from=1969-12-31T23:59:59Z", ("from:", "1970")),
    ("to=10000-01-01T00:00:00Z", ("to:",)),
    ("from=-5", ("from:", "1970")),
    ("step=day", ("step:", "minute or hour")),
    ("step=", ("step:",)),
    ("from=1800000000&from=1800000060", ("from:", "2 times")),
    ("step=minute&step=hour", ("step:", "2 times")),
    ("to=1800000000&to=1800000000", ("to:", "2 times")),
    ("from=", ("from:", "empty")),
    ("from=%20%201800000000", ("from:",)),
    ("from=1800000000%20", ("from:",)),
    ("from=%ff%fe", ("from:", "UTF-8")),
    ("from=2027-01-15T09:00:00+01:00", ("from:", "%2B")),
    ("from=" + "9" * 5000, ("from:", "too long")),
    ("from=1e9", ("from:",)),
    ("from=NaN", ("from:",)),
    ("from=inf", ("from:",)),
]


@pytest.mark.parametrize("parameters, fragments", BAD_RANGES)
def test_a_bad_range_is_a_400_naming_the_parameter(
    hapi: LiveApi, history: FakeHistory, parameters: str, fragments: tuple[str, ...]
) -> None:
    history.add("web-01")
    assert_json_error(hapi.get(f"/servers/web-01/loads?{parameters}"), 400, *fragments)
    if "step" not in parameters:  # a summary has no step: the same times are refused the same way
        assert_json_error(hapi.get(f"/servers/web-01/summary?{parameters}"), 400, *fragments)
    assert history.calls == []


@pytest.mark.parametrize("raw, escaped", [
    ("%00", "\\x00"), ("%1b%5B2J", "\\x1b"), ("%0d%0a", "\\r\\n"), ("%e2%80%ae", "\\u202e"), ("%7f", "\\x7f"),
])
def test_control_characters_are_echoed_escaped(hapi: LiveApi, history: FakeHistory, raw: str, escaped: str) -> None:
    history.add("web-01")
    for path in (f"/servers/web-01/loads?from=18000{raw}00000", f"/servers/web-01/loads?step=min{raw}ute",
                 f"/servers/web-01/summary?to=18000{raw}00000"):
        message = assert_json_error(hapi.get(path), 400, escaped)
        assert message.isprintable() and message.isascii(), message


def test_to_defaults_to_now_and_from_to_the_window_ending_there(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01")  # the clock is at START, 2027-01-15T08:00:17.5Z
    since = get_ok(hapi, "/servers/web-01/loads?from=2027-01-15T07:50:00Z")
    assert (since["from"], since["to"], len(since["buckets"])) == ("2027-01-15T07:50:00Z", "2027-01-15T08:00:00Z", 11)
    until = get_ok(hapi, "/servers/web-01/loads?to=2027-01-15T06:30:00Z")
    assert (until["step"], until["from"], until["to"], len(until["buckets"])) == (
        "minute", "2027-01-15T05:31:00Z", "2027-01-15T06:30:00Z", 60)
    hours = get_ok(hapi, "/servers/web-01/loads?step=hour")
    assert (hours["step"], hours["from"], hours["to"], len(hours["buckets"])) == (
        "hour", "2027-01-14T09:00:00Z", "2027-01-15T08:00:00Z", 24)
    minutes = get_ok(hapi, "/servers/web-01/loads?step=minute")
    assert (minutes["from"], minutes["to"], len(minutes["buckets"])) == ("2027-01-15T07:01:00Z",
                                                                         "2027-01-15T08:00:00Z", 60)
    assert_json_error(hapi.get("/servers/web-01/loads?from=2027-01-15T08:00:18Z"), 400, "from", "after", "now")


def test_without_range_parameters_the_windows_are_unchanged(hapi: LiveApi, history: FakeHistory) -> None:
    hapi.record("web-01", cpu=12.5, ram=40.0)
    hapi.apply()
    for path in ("/servers/web-01/loads", "/servers/web-01/loads?window=1h", "/servers/web-01/loads?fromm=1"):
        body = get_ok(hapi, path)
        assert set(body) == {"server", "last_seen", "minutes", "hours"}
        assert len(body["minutes"]) == 60 and len(body["hours"]) == 24
        assert figures(body["minutes"][-1]) == bucket(1, (12.5,) * 3, (40.0,) * 3)
    assert history.calls == []
    assert hapi.post_load("web-01", cpu=1.0, ram=2.0).status == 202


@given(start=st.integers(-3 * DAY, 3 * DAY), span=st.integers(0, 2 * DAY),
       step=st.sampled_from([None, "minute", "hour"]))
@HTTP_EXAMPLES
def test_any_range_covers_the_buckets_from_floor_of_from_to_to(
    hapi: LiveApi, history: FakeHistory, start: int, span: int, step: str | None
) -> None:
    history.add("web-01")
    begin, end = int(START) + start, int(START) + start + span
    parameters = {"from": begin, "to": end, **({"step": step} if step else {})}
    body = get_ok(hapi, "/servers/web-01/loads?" + urllib.parse.urlencode(parameters))
    width = {"minute": MINUTE, "hour": HOUR}[step or ("minute" if span <= DAY else "hour")]
    first = begin // width * width
    starts = list(range(first, end + 1, width))
    assert body["step"] == ("minute" if width == MINUTE else "hour")
    assert [entry["start"] for entry in body["buckets"]] == [iso(t) for t in starts]
    assert (body["from"], body["to"]) == (iso(starts[0]), iso(starts[-1]))


@given(values=st.dictionaries(st.sampled_from(["from", "to", "step"]), st.text(max_size=40), min_size=1))
@HTTP_EXAMPLES
def test_any_parameter_text_is_answered_200_or_a_400_naming_it(hapi: LiveApi, history: FakeHistory,
                                                                values: dict[str, str]) -> None:
    history.add("web-01")
    reply = hapi.get("/servers/web-01/loads?" + urllib.parse.urlencode(values))
    if reply.status != 200:
        message = assert_json_error(reply, 400)
        assert message.isprintable() and re.match(r"(from|to|step)\b", message), message


# -- GET /servers/{name}/summary?from=&to= ------------------------------------------------------


def test_a_summary_is_weighted_by_samples(hapi: LiveApi, history: FakeHistory) -> None:
    # one sample in the first minute, three in the second: bucket averages 10 and 30, sample average 25
    history.add("web-01", (HOUR_START + 5, 10.0, 30.0), (HOUR_START + 65, 20.0, 40.0),
                (HOUR_START + 70, 30.0, 50.0), (HOUR_START + 75, 40.0, 60.0))
    body = get_ok(hapi, "/servers/web-01/summary" + query(from_="2027-01-15T08:00:00Z", to="2027-01-15T08:05:00Z"))
    assert set(body) >= {"server", "from", "to", "samples", "cpu", "ram"}
    assert set(body) - {"server", "from", "to", "samples", "cpu", "ram"} <= {"step"}
    assert (body["server"], body["from"], body["to"], body["samples"]) == (
        "web-01", "2027-01-15T08:00:00Z", "2027-01-15T08:05:00Z", 4)
    assert body["cpu"] == {"avg": 25.0, "min": 10.0, "max": 40.0}
    assert body["ram"] == {"avg": 45.0, "min": 30.0, "max": 60.0}
    assert history.calls == [("loads", "web-01", MINUTE, int(HOUR_START) // MINUTE, 6)]


def test_a_summary_without_samples_has_null_loads(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01", (HOUR_START - DAY, 10.0, 30.0))
    body = get_ok(hapi, f"/servers/web-01/summary?from={HOUR_START:.0f}&to={HOUR_START + 600:.0f}")
    assert (body["samples"], body["cpu"], body["ram"]) == (0, None, None)


def test_a_summary_adds_minutes_up_to_10000_then_hours(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01", (HOUR_START + 1800, 10.0, 30.0))
    get_ok(hapi, f"/servers/web-01/summary?from={HOUR_START:.0f}&to={HOUR_START + (LIMIT - 1) * MINUTE:.0f}")
    assert history.calls[-1] == ("loads", "web-01", MINUTE, int(HOUR_START) // MINUTE, LIMIT)
    begin, end = HOUR_START + 1830, HOUR_START + 1830 + LIMIT * MINUTE  # 10,001 minute buckets
    body = get_ok(hapi, f"/servers/web-01/summary?from={begin:.0f}&to={end:.0f}")
    first_hour, last_hour = int(begin) // HOUR, int(end) // HOUR
    assert history.calls[-1] == ("loads", "web-01", HOUR, first_hour, last_hour - first_hour + 1)
    assert (body["from"], body["to"]) == (iso(first_hour * HOUR), iso(last_hour * HOUR))  # edges on the hour
    assert body["samples"] == 1  # the hour holding `from` counts whole
    get_ok(hapi, f"/servers/web-01/summary?from={HOUR_START:.0f}&to={HOUR_START + (LIMIT - 1) * HOUR:.0f}")
    assert_json_error(hapi.get(f"/servers/web-01/summary?from={HOUR_START:.0f}&to={HOUR_START + LIMIT * HOUR:.0f}"),
                      400, "from", "10,000")


def test_a_summary_defaults_to_the_last_60_minutes_and_knows_kept_from(hapi: LiveApi, history: FakeHistory) -> None:
    history.add("web-01", (START - 30, 10.0, 30.0))
    body = get_ok(hapi, "/servers/web-01/summary")
    assert (body["from"], body["to"], body["samples"]) == ("2027-01-15T07:01:00Z", "2027-01-15T08:00:00Z", 1)
    assert "kept_from" not in body
    history.kept_from[MINUTE] = int(HOUR_START)
    assert get_ok(hapi, "/servers/web-01/summary")["kept_from"] == "2027-01-15T08:00:00Z"


def test_a_summary_of_an_unknown_server_is_a_404_and_it_takes_no_post(hapi: LiveApi, history: FakeHistory) -> None:
    assert_json_error(hapi.get("/servers/nope/summary?from=1800000000"), 404, "unknown server")
    before = hapi.counters()
    assert_json_error(hapi.post("/servers/nope/summary", {"cpu": 1, "ram": 2}), 405, "POST")
    assert hapi.counters() == before  # not counted as a refused sample


# -- GET /nodes/{id}/cpu|memory?from=&to=, and under /cluster ----------------------------------------

CPU_A = {"percent": 10.0, "per_cpu": [5.0, 15.0], "load_avg": [0.1, 0.2, 0.3]}
CPU_B = {"percent": 90.0, "per_cpu": [85.0, 95.0], "load_avg": [1.5, 1.0, 0.5]}
MEMORY = {"total": 16 * 2**30, "available": 8 * 2**30, "used": 8 * 2**30, "percent": 50.0}
NODE_RANGE = query(from_="2027-01-15T07:58:00Z", to="2027-01-15T08:00:00Z")


@pytest.fixture
def node_history(hapi: LiveApi, history: FakeHistory) -> Iterator[LiveApi]:
    """Node ``node-h`` (10.0.0.7) with three snapshots kept at 07:58, 07:59 (no cpu) and 08:00."""
    register(hapi, "node-h", ["10.0.0.7"])
    history.snapshots["node-h"] = [
        (int(HOUR_START) - 120, {"cpu": CPU_A, "memory": MEMORY, "swap": {"total": 0, "used": 0, "percent": 0.0}}),
        (int(HOUR_START) - 60, {"memory": MEMORY}),
        (int(HOUR_START), {"cpu": CPU_B, "memory": dict(MEMORY, percent=75.0)}),
        (int(HOUR_START) + 60, {"cpu": CPU_A}),
    ]
    yield hapi


CPU_HISTORY = {"2027-01-15 07:58:00": CPU_A, "2027-01-15 08:00:00": CPU_B}


@pytest.mark.parametrize("path", [
    "/nodes/node-h/cpu", "/nodes/NODE-H./cpu", "/nodes/10.0.0.7/cpu", "/cluster/10.0.0.7/cpu",
    "/cluster/nodes/10.0.0.7/cpu",
])
def test_node_cpu_history_is_keyed_by_utc_time_oldest_first(node_history: LiveApi, history: FakeHistory,
                                                             path: str) -> None:
    body = get_ok(node_history, path + NODE_RANGE)
    assert body == CPU_HISTORY
    assert list(body) == [history_key(int(HOUR_START) - 120), history_key(int(HOUR_START))]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", key) for key in body)
    assert history.calls == [("node_sections", "node-h", int(HOUR_START) - 120, int(HOUR_START), LIMIT + 1)]


@pytest.mark.parametrize("path", ["/nodes/node-h/memory", "/cluster/10.0.0.7/memory", "/cluster/nodes/10.0.0.7/memory"])
def test_node_memory_history(node_history: LiveApi, path: str) -> None:
    assert get_ok(node_history, path + NODE_RANGE) == {
        "2027-01-15 07:58:00": MEMORY, "2027-01-15 07:59:00": MEMORY, "2027-01-15 08:00:00": dict(MEMORY, percent=75.0)}


def test_node_history_takes_whole_seconds_and_defaults_to_the_last_hour(node_history: LiveApi,
                                                                        history: FakeHistory) -> None:
    get_ok(node_history, "/nodes/node-h/cpu?from=1799999879.5&to=1800000000.5")
    assert history.calls[-1] == ("node_sections", "node-h", int(HOUR_START) - 120, int(HOUR_START), LIMIT + 1)
    assert get_ok(node_history, "/nodes/node-h/cpu?to=1800000000") == CPU_HISTORY
    assert history.calls[-1][2:4] == (int(HOUR_START) - HOUR, int(HOUR_START))
    # the transcript's call without from/to: the hour before now (17.5 s past 08:00)
    get_ok(node_history, "/cluster/10.0.0.7/cpu")
    assert history.calls[-1][2:4] == (int(HOUR_START) - HOUR + 18, int(HOUR_START) + 17)
    calls = len(history.calls)
    assert get_ok(node_history, "/nodes/node-h/cpu?from=1800000000.25&to=1800000000.75") == {}
    assert len(history.calls) == calls


def test_node_history_holds_at_most_10000_snapshots(node_history: LiveApi, history: FakeHistory) -> None:
    first = int(HOUR_START) - 2 * DAY
    history.snapshots["node-h"] = [(first + i, {"cpu": CPU_A}) for i in range(LIMIT)]
    full = get_ok(node_history, f"/nodes/node-h/cpu?from={first}&to={first + 2 * LIMIT}")
    assert len(full) == LIMIT and next(iter(full)) == history_key(first)
    history.snapshots["node-h"].append((first + LIMIT, {"cpu": CPU_B}))
    assert_json_error(node_history.get(f"/nodes/node-h/cpu?from={first}&to={first + 2 * LIMIT}"), 400,
                      "from", "10,000")
    assert_json_error(node_history.get(f"/cluster/10.0.0.7/cpu?from={first}&to={first + 2 * LIMIT}"), 400, "10,000")


def test_node_history_errors(node_history: LiveApi, history: FakeHistory) -> None:
    assert_json_error(node_history.get("/nodes/nope/cpu" + NODE_RANGE), 404, "nope")
    assert_json_error(node_history.get("/cluster/10.9.9.9/cpu" + NODE_RANGE), 404)
    assert_json_error(node_history.get("/cluster/node-h/cpu" + NODE_RANGE), 400, "not an IP address")
    assert_json_error(node_history.get("/nodes/node-h/cpu?from=1800000060&to=1800000000"), 400, "from", "after")
    assert_json_error(node_history.get("/cluster/10.0.0.7/cpu?from=x"), 400, "from:", "not a time")
    assert_json_error(node_history.get("/cluster/10.0.0.7/memory?to=1&to=2"), 400, "to:", "2 times")
    assert_json_error(node_history.get("/nodes/node-h/cpu?from=%00"), 400, "\\x00")
    assert_json_error(node_history.get("/nodes/node-h/disks" + NODE_RANGE), 400, "from/to", "cpu and memory")
    assert_json_error(node_history.get("/cluster/10.0.0.7/disks" + NODE_RANGE), 404)
    assert history.calls == []  # every refusal comes before the reader is asked


def test_without_from_and_to_a_node_section_is_the_latest_snapshot(node_history: LiveApi,
                                                                   history: FakeHistory) -> None:
    assert_json_error(node_history.get("/nodes/node-h/cpu"), 404, "no stats")
    put_stats(node_history, "node-h")
    for path in ("/nodes/node-h/cpu", "/cluster/nodes/10.0.0.7/cpu", "/nodes/node-h/cpu?step=hour"):
        body = get_ok(node_history, path)
        assert set(body) == {"name", "stats_at", *stats_body()["cpu"]} and body["percent"] == 25.0
    assert set(get_ok(node_history, "/nodes/node-h/memory")) == {"name", "stats_at", "memory", "swap"}
    assert history.calls == []


# -- GET /nodes/{id}/summary?from=&to= and /get_stats?from=&to= --------------------------------------


def test_a_node_summary_over_a_range(hapi: LiveApi, history: FakeHistory) -> None:
    register(hapi, "node-s", ["10.0.0.8"])
    history.add("node-s", (HOUR_START + 5, 10.0, 30.0), (HOUR_START + 65, 20.0, 40.0),
                (HOUR_START + 70, 30.0, 50.0), (HOUR_START + 75, 40.0, 60.0))
    window = get_ok(hapi, "/nodes/node-s/summary")
    assert set(window) == {"name", "window", "samples", "cpu", "ram", "uptime_seconds"}
    body = get_ok(hapi, "/nodes/10.0.0.8/summary" + query(from_="2027-01-15T08:00:00Z", to="2027-01-15T08:05:00Z"))
    assert {key: body[key] for key in ("name", "from", "to", "samples", "cpu", "ram", "uptime_seconds")} == {
        "name": "node-s", "from": "2027-01-15T08:00:00Z", "to": "2027-01-15T08:05:00Z", "samples": 4,
        "cpu": {"avg": 25.0, "min": 10.0, "max": 40.0}, "ram": {"avg": 45.0, "min": 30.0, "max": 60.0},
        "uptime_seconds": window["uptime_seconds"]}
    assert_json_error(hapi.get("/nodes/node-s/summary?window=1h&from=1800000000"), 400, "window", "from")
    assert_json_error(hapi.get("/nodes/node-s/summary?from=1800000060&to=1800000000"), 400, "after")
    assert_json_error(hapi.get("/nodes/nope/summary?from=1800000000"), 404)


def test_a_node_without_load_history_has_a_null_summary(hapi: LiveApi, history: FakeHistory) -> None:
    register(hapi, "node-q")
    body = get_ok(hapi, "/nodes/node-q/summary?from=1800000000")
    assert (body["samples"], body["cpu"], body["ram"]) == (0, None, None)


def test_get_stats_past_values_over_a_range(hapi: LiveApi, history: FakeHistory) -> None:
    register(hapi, "node-p")
    put_stats(hapi, "node-p")
    history.add("node-p", (HOUR_START - 2 * DAY, 10.0, 30.0), (HOUR_START - 2 * DAY + 60, 40.0, 60.0))
    recent = get_ok(hapi, "/get_stats?node=node-p")["past_stat"]
    assert recent["avg_cpu_usage"] is None and history.calls == []
    past = get_ok(hapi, f"/get_stats?node=node-p&from={HOUR_START - 3 * DAY:.0f}&to={HOUR_START - DAY:.0f}")
    assert past["past_stat"]["avg_cpu_usage"] == "25.0%"
    assert (past["past_stat"]["min_cpu_usage"], past["past_stat"]["max_mem_usage"]) == ("10.0%", "60.0%")
    assert past["current_stat"] is not None
    assert_json_error(hapi.get("/get_stats?node=node-p&from=later"), 400, "from:")

