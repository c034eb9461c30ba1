"""The window bodies written straight from the arrays (``window_json``) are the reference views' JSON.

The reference is ``orjson.dumps`` of the dict-per-bucket views (``views.window_buckets``,
``second_buckets``, ``perf_views.perf_window``, ``server_history``), which the API
served before: the same bytes, hence the same keys in the same order, the same
numbers (floats exactly: ``json.loads`` gives equal values) and ``null`` in the
same places, for windows of any length, position and emptiness.
"""

from __future__ import annotations

import json
import random
from typing import Any, NamedTuple

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from live_api import LiveApi

from servertrack.api import perf_views, views, window_json
from servertrack.common.aggregator import Aggregator
from servertrack.common.buckets import BucketWindow
from servertrack.common.seconds import SecondWindow
from servertrack.common.time_range import MAX_EPOCH
from tests.conftest import FakeClock

EXAMPLES = settings(max_examples=75, deadline=None, database=None)

COUNTS = st.one_of(st.just(0), st.integers(1, 2**32 - 1), st.integers(1, 3))
SUMS = st.one_of(st.floats(0, 1e13, allow_nan=False), st.integers(0, 2**40).map(lambda units: units / 100_000))
EXTREMES = st.integers(0, 10_000_000).map(lambda units: units / 100_000)  # loads kept to five decimals


def same_json(encoded: bytes, reference: Any) -> None:
    """``encoded`` is ``orjson.dumps(reference)``, byte for byte, and reads back to the same values."""
    expected = orjson.dumps(reference)
    assert encoded == expected
    assert json.loads(encoded) == json.loads(expected)


@st.composite
def bucket_windows(draw: st.DrawFn, max_count: int = 90, min_count: int = 0) -> BucketWindow:
    count = draw(st.integers(min_count, max_count))
    width = draw(st.sampled_from([60, 3600]))
    first = draw(st.integers(0, MAX_EPOCH // width - count))
    samples = draw(st.one_of(
        arrays(np.uint32, count, elements=COUNTS),
        st.just(np.zeros(count, dtype=np.uint32)),  # a server heard from in no bucket shown
        arrays(np.uint32, count, elements=st.integers(1, 60)),  # every bucket shown has samples
    ))
    return BucketWindow(first, width, samples, *(draw(arrays(np.float64, count, elements=SUMS)) for _ in range(2)),
                        *(draw(arrays(np.float64, count, elements=EXTREMES)) for _ in range(4)))


@st.composite
def second_windows(draw: st.DrawFn) -> SecondWindow:
    count = draw(st.sampled_from([0, 1, 60]))
    first = draw(st.integers(0, MAX_EPOCH - count))
    samples = draw(arrays(np.uint32, count, elements=st.one_of(st.just(0), st.integers(1, 255))))
    cpu, ram = (draw(arrays(np.uint16, count, elements=st.integers(0, 10_000))) / 100.0 for _ in range(2))
    return SecondWindow(first, samples, cpu, ram)


class Windows(NamedTuple):
    """What the views read of ``aggregator.ServerWindows``."""

    name: str
    last_seen: float
    seconds: SecondWindow
    minutes: BucketWindow
    hours: BucketWindow


@st.composite
def server_windows(draw: st.DrawFn) -> Windows:
    return Windows(draw(st.sampled_from(["web-01", "db.example.com", "a" * 253])), draw(st.floats(0, 2e9)),
                   draw(second_windows()), draw(bucket_windows(60, 60)), draw(bucket_windows(24, 24)))


@EXAMPLES
@given(window=bucket_windows())
def test_a_bucket_list_is_the_reference_json(window: BucketWindow) -> None:
    same_json(window_json.bucket_list(window), views.window_buckets(window))


@settings(max_examples=20, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1441, 3000), width=st.sampled_from([60, 3600]),
       empty_share=st.sampled_from([0.0, 0.3, 1.0]))
def test_a_range_longer_than_the_kept_start_pieces_is_the_reference_json(
    seed: int, count: int, width: int, empty_share: float
) -> None:
    rng = np.random.default_rng(seed)
    samples = np.where(rng.random(count) < empty_share, 0, rng.integers(1, 3600, count)).astype(np.uint32)
    window = BucketWindow(int(rng.integers(0, 10**7)), width, samples, *(rng.random((2, count)) * 1e6),
                          *(rng.integers(0, 10_000_001, (4, count)) / 100_000))
    same_json(window_json.bucket_list(window), views.window_buckets(window))


@EXAMPLES
@given(window=second_windows())
def test_a_second_list_is_the_reference_json(window: SecondWindow) -> None:
    same_json(window_json.second_list(window), views.second_buckets(window))


@settings(max_examples=25, deadline=None, database=None)
@given(windows=server_windows())
def test_every_encoded_window_body_is_the_reference_json(windows: Windows) -> None:
    same_json(orjson.dumps(views.encoded_server_loads(windows)), views.server_loads(windows))  # type: ignore[arg-type]
    same_json(orjson.dumps(views.encoded_server_seconds(windows)), views.server_seconds(windows))  # type: ignore[arg-type]
    for mode in perf_views.PERF_MODES:
        same_json(orjson.dumps(perf_views.encoded_perf_window(windows, mode)),  # type: ignore[arg-type]
                  perf_views.perf_window(windows, mode))  # type: ignore[arg-type]
    same_json(orjson.dumps(perf_views.encoded_server_history(windows)),  # type: ignore[arg-type]
              perf_views.server_history(windows))  # type: ignore[arg-type]


SAMPLES = st.lists(st.tuples(st.integers(0, 4), st.floats(-86_000, 60), st.integers(0, 10_000_000),
                             st.integers(0, 10_000_000)), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None, database=None)
@given(batches=st.lists(SAMPLES, min_size=1, max_size=3), now=st.floats(1.7e9, 1.9e9))
def test_windows_read_from_an_aggregator_encode_as_the_reference(
    batches: list[list[tuple[int, float, int, int]]], now: float
) -> None:
    clock = FakeClock(now)
    aggregator = Aggregator(100, clock=clock)
    for batch in batches:
        aggregator.apply([f"srv-{server}" for server, _, _, _ in batch], [now + offset for _, offset, _, _ in batch],
                         [cpu / 100_000 for _, _, cpu, _ in batch], [ram / 100_000 for _, _, _, ram in batch])
        clock.now += 1.0
    for name, _ in aggregator.servers():
        windows = aggregator.windows(name)
        assert windows is not None
        same_json(orjson.dumps(views.encoded_server_loads(windows)), views.server_loads(windows))
        same_json(orjson.dumps(views.encoded_server_seconds(windows)), views.server_seconds(windows))
        for mode in perf_views.PERF_MODES:
            same_json(orjson.dumps(perf_views.encoded_perf_window(windows, mode)), perf_views.perf_window(windows, mode))
        same_json(orjson.dumps(perf_views.encoded_server_history(windows)), perf_views.server_history(windows))


def test_a_window_answer_is_the_reference_json_over_http(api: LiveApi) -> None:
    for offset in range(0, 7200, 1300):  # buckets with samples and without, in both windows
        api.post("/loads", [{"server": "web-01", "cpu": 12.345 + offset / 1000, "ram": 40.0,
                             "ts": api.clock.now - offset}])
        api.apply()
    api.clock.advance(30.0)
    reply = api.get("/servers/web-01/loads")
    assert reply.status == 200
    windows = api.aggregator.windows("web-01")
    assert windows is not None
    assert reply.raw == orjson.dumps(views.server_loads(windows))
    assert "Etag" not in reply.headers  # the windows move every second: no conditional GETs


def test_empty_windows_and_values() -> None:
    assert window_json.number_tokens(np.zeros(0)) == []
    assert window_json.number_tokens(np.array([np.nan, 0.1 + 0.2, 1e-5, 100.0])) == [
        b"null", b"0.30000000000000004", b"0.00001", b"100.0"]
    assert window_json.number_tokens(np.array([0, 7, 2**32 - 1], dtype=np.uint32)) == [b"0", b"7", b"4294967295"]
    empty = BucketWindow(100, 60, np.zeros(0, dtype=np.uint32), *(np.zeros(0) for _ in range(6)))
    assert window_json.bucket_list(empty) == b"[]"
    assert window_json.second_list(SecondWindow(100, np.zeros(0, dtype=np.uint32), np.zeros(0), np.zeros(0))) == b"[]"


def test_the_start_pieces_kept_are_bounded() -> None:
    rng = random.Random(1)
    for _ in range(window_json._CACHED_WINDOWS + 20):
        count = rng.choice([1, 24, 60])
        window = BucketWindow(rng.randrange(10**6), 60, np.ones(count, dtype=np.uint32), *(np.ones(count) for _ in range(6)))
        same_json(window_json.bucket_list(window), views.window_buckets(window))
    kept = window_json._cached_start_pieces.cache_info()
    assert kept.currsize <= window_json._CACHED_WINDOWS
    long_range = BucketWindow(5, 60, np.zeros(1441, dtype=np.uint32), *(np.zeros(1441) for _ in range(6)))
    window_json.bucket_list(long_range)
    window_json.bucket_list(long_range)
    assert window_json._cached_start_pieces.cache_info()[:2] == kept[:2]  # neither a hit nor a miss: not kept
