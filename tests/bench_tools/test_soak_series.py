"""bench/soak.py's bookkeeping: batches seen from /stats polls, drops since a baseline, RSS growth, the CSVs."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from harness import percentile
from soak import (
    MINUTE_FIELDS,
    Batch,
    Minute,
    Series,
    dropped_total,
    flat_from_default,
    new_batch,
    rss_growth,
    settled,
)


def stats(applied: int, received: int | None = None, pending: int = 0, dropped: dict | None = None,
          seconds: float = 0.05, size: int = 100_000) -> dict:
    return {"applied": applied, "received": applied if received is None else received, "pending": pending,
            "dropped": dropped or {}, "last_batch_seconds": seconds, "last_batch_size": size}


def minute(number: int, rss: float) -> Minute:
    values = {f.name: 0 for f in dataclasses.fields(Minute)}
    values.update(minute=number, elapsed_s=60.0 * number, rss_mib=rss, dropped_by_reason="", store="ok")
    return Minute(**values)


def test_a_batch_is_seen_when_applied_moves_and_not_otherwise() -> None:
    assert new_batch(None, stats(10), 1.0) is None
    assert new_batch(stats(10), stats(10), 1.5) is None
    assert new_batch(stats(10), stats(20, seconds=0.07, size=10), 2.0) == Batch(2.0, 0.07, 10)


def test_drops_count_since_the_baseline_and_zero_reasons_are_left_out() -> None:
    before = stats(0, dropped={"queue_full": 5, "bad_frame": 0})
    after = stats(0, dropped={"queue_full": 5, "bad_frame": 2, "too_old": 0})
    assert dropped_total(after) == {"queue_full": 5, "bad_frame": 2}
    assert dropped_total(after, before) == {"bad_frame": 2}


def test_settled_needs_nothing_pending_and_everything_applied_or_dropped() -> None:
    assert settled(stats(10, received=12, dropped={"queue_full": 2}))
    assert not settled(stats(10, received=12))  # a batch still being applied
    assert not settled(stats(10, pending=1))


def test_rss_growth_from_the_flat_minute_to_the_end_with_its_slope() -> None:
    rows = [minute(1, 50.0), minute(2, 100.0), minute(3, 101.0), minute(4, 102.0)]
    growth = rss_growth(rows, 2)
    assert growth is not None
    percent, base, slope = growth
    assert (percent, base) == (pytest.approx(2.0), 100.0)
    assert slope == pytest.approx(60.0)  # 1 MiB a minute
    assert rss_growth(rows, 4) is None  # nothing after it to compare
    assert rss_growth(rows, 9) is None


def test_the_flat_minute_defaults() -> None:
    assert flat_from_default(60, prefill=True) == 10
    assert flat_from_default(10, prefill=True) == 3
    assert flat_from_default(2, prefill=True) == 1
    assert flat_from_default(60, prefill=False) == 62


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50, 99, 100)
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_series_appends_a_row_a_minute_to_its_csvs(tmp_path: Path) -> None:
    series = Series(str(tmp_path / "soak"), plot_note="no plot in this test")
    series.add_minute(minute(1, 10.0), [Batch(1.0, 0.05, 100)])
    series.add_minute(minute(2, 11.0), [Batch(61.0, 0.06, 100), Batch(62.0, 0.07, 100)])
    with open(series.minutes_csv, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == MINUTE_FIELDS and [row[0] for row in rows[1:]] == ["1", "2"]
    with open(series.batches_csv, newline="") as file:
        assert [row[1] for row in csv.reader(file)] == ["seconds", "0.05", "0.06", "0.07"]


def test_a_series_reads_back_what_it_wrote(tmp_path: Path) -> None:
    series = Series(str(tmp_path / "soak"), flat_from=1, plot_note="no plot in this test")
    series.add_minute(minute(1, 10.5), [Batch(1.0, 0.05, 100)])
    again = Series.read(series.out, flat_from=1)
    assert again.rows == series.rows and again.batches == series.batches
