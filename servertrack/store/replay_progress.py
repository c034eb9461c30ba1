"""How far a start's replay of the batch log is, told at a bounded rate; pure (the clock and where the
lines go are injected), no I/O.

The store calls ``advance`` once per replayed chunk (thousands of samples),
never per sample, so reporting costs nothing next to the replay itself.
The first chunk is told at once (a restart says it is replaying, however
short the log), then at most one line every ``every`` seconds, then one
final line with the totals::

    replaying the log: 40% (1.2M of 3.0M samples, 2.1 s)
    replayed the log: 3.0M samples in 600 chunks, 5.3 s
"""

from __future__ import annotations

import time
from collections.abc import Callable

REPORT_EVERY_SECONDS = 1.0


def samples_text(count: int) -> str:
    """A sample count for a person: ``950``, ``12.3k``, ``1.2M``."""
    if count < 1_000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1_000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


class ReplayProgress:
    """Progress of replaying ``total`` samples, started when it is made: lines go to ``report``, time is read
    from ``clock`` (seconds), one line at most every ``every`` seconds besides the final one."""

    def __init__(self, total: int, report: Callable[[str], None], clock: Callable[[], float] = time.perf_counter,
                 every: float = REPORT_EVERY_SECONDS, started: float | None = None) -> None:
        self.total = total
        self.done = 0
        self.chunks = 0
        self._report = report
        self._clock = clock
        self._every = every
        self._started = clock() if started is None else started
        self._next_report: float | None = None  # None: nothing told yet

    def _elapsed(self, now: float) -> str:
        return f"{now - self._started:.1f} s"

    def advance(self, samples: int) -> None:
        """One more chunk of ``samples`` replayed; tell it if the last line is ``every`` seconds old."""
        self.done += samples
        self.chunks += 1
        now = self._clock()
        if self._next_report is not None and now < self._next_report:
            return
        self._next_report = now + self._every
        percent = 100 * self.done // self.total if self.total else 100
        self._report(f"replaying the log: {percent}% ({samples_text(self.done)} of {samples_text(self.total)} "
                     f"samples, {self._elapsed(now)})")

    def finish(self) -> None:
        """The final line, with the totals (nothing when no chunk was replayed)."""
        if self.chunks:
            self._report(f"replayed the log: {samples_text(self.done)} samples in {self.chunks} "
                         f"chunk{'' if self.chunks == 1 else 's'}, {self._elapsed(self._clock())}")
