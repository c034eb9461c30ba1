"""Replay progress, pure: a fake clock decides when a line is due; at most one a second, the first at
once, a final line with the totals; the counts as a person reads them."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.store.replay_progress import ReplayProgress, samples_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_chunk_is_told_then_at_most_a_line_a_second_then_the_totals() -> None:
    clock, lines = FakeClock(), []
    progress = ReplayProgress(3_000_000, lines.append, clock)
    for _ in range(24):  # 24 chunks of 125,000 samples, 0.125 s each (exact in binary): 3 s in all
        clock.now += 0.125
        progress.advance(125_000)
    progress.finish()
    assert lines == [
        "replaying the log: 4% (125.0k of 3.0M samples, 0.1 s)",
        "replaying the log: 37% (1.1M of 3.0M samples, 1.1 s)",
        "replaying the log: 70% (2.1M of 3.0M samples, 2.1 s)",
        "replayed the log: 3.0M samples in 24 chunks, 3.0 s",
    ]


def test_nothing_replayed_says_nothing_and_one_chunk_says_two_lines() -> None:
    lines: list[str] = []
    ReplayProgress(0, lines.append, FakeClock()).finish()
    assert lines == []
    clock = FakeClock()
    progress = ReplayProgress(12, lines.append, clock, started=99.5)
    progress.advance(12)
    progress.finish()
    assert lines == ["replaying the log: 100% (12 of 12 samples, 0.5 s)", "replayed the log: 12 samples in 1 chunk, 0.5 s"]


@settings(max_examples=50)
@given(st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(0, 50_000)), max_size=200))
def test_never_more_than_a_line_a_second(steps: list[tuple[float, int]]) -> None:
    clock, told = FakeClock(), []
    progress = ReplayProgress(sum(samples for _, samples in steps), lambda line: told.append((clock.now, line)), clock)
    for pause, samples in steps:
        clock.now += pause
        progress.advance(samples)
    progress.finish()
    progress_lines = [(when, line) for when, line in told if line.startswith("replaying")]
    assert all(later - earlier >= 1.0 for (earlier, _), (later, _) in itertools.pairwise(progress_lines))
    if steps:
        assert progress_lines[0][0] == 100.0 + steps[0][0]  # the first chunk is told at once
        assert told[-1][1].startswith(f"replayed the log: {samples_text(progress.done)} samples in {len(steps)} ")
        assert len(progress_lines) <= 1 + sum(pause for pause, _ in steps)  # the rate bound
    else:
        assert told == []
    assert all(line.count("%") <= 1 for _, line in told)


def test_sample_counts_for_a_person() -> None:
    assert [samples_text(count) for count in (0, 999, 1_000, 12_345, 999_949, 1_000_000, 1_870_000)] == [
        "0", "999", "1.0k", "12.3k", "999.9k", "1.0M", "1.9M"]
