"""Incidents logged quietly: a count per interval, never a line per connection, frame or attempt."""

from __future__ import annotations

import logging
from collections.abc import Callable

REPORT_INTERVAL = 60.0


class IncidentLog:
    """Counts one kind of incident and logs it at most once per interval, with the count since the last line.

    ``text`` is a %-format whose first argument is that count; the others are
    the arguments of the incident that triggers the line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        text: str,
        clock: Callable[[], float],
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self.total = 0
        self._logger = logger
        self._level = level
        self._text = text
        self._clock = clock
        self._interval = interval
        self._unreported = 0
        self._latest: tuple[object, ...] = ()
        self._reported_at: float | None = None

    def record(self, *args: object) -> None:
        """Count one incident; log a line if none was logged in the last interval."""
        self.total += 1
        self._unreported += 1
        self._latest = args
        now = self._clock()
        if self._reported_at is None or now - self._reported_at >= self._interval:
            self._reported_at = now
            self.flush()

    def flush(self) -> None:
        """Log the incidents not reported yet, if any."""
        if self._unreported:
            self._logger.log(self._level, self._text, self._unreported, *self._latest)
            self._unreported = 0
