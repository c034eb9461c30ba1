"""Time ranges of the history queries (``?from=T&to=T&step=``): parse the times, check them, plan the buckets.

Pure: no clock of its own (``now`` is passed in), no I/O. A time ``T`` is one of

- ISO-8601, ``2026-11-25T13:00:00Z``: ``T`` (or ``t``, or a space) between date
  and time, optional fractional seconds (1 to 9 digits), and a zone: ``Z``,
  ``+00:00`` or any other offset ``+HH:MM``/``-HH:MM``, which is *converted*
  (``14:00:00+01:00`` is ``13:00:00Z``); without a zone the time is UTC;
- ``YYYY-MM-DD HH:MM:SS`` (UTC): the same grammar with a space;
- epoch seconds, an integer or a decimal (``1795611600``, ``1795611600.25``).

Every time lies in the years 1970 to 9999 (epoch seconds 0 to
``MAX_EPOCH``). Equal instants give the same float, whatever their spelling:
a fraction is always converted from its decimal digits in one step.

A bucket range covers every bucket whose start lies in
``[floor(from / width) * width, to]``: ``from == to`` is one bucket. Every
refusal is a ``TimeRangeError`` whose message starts with the parameter it
is about (``from``, ``to``, ``step``).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Mapping
from typing import NamedTuple

from .buckets import HOUR_SECONDS, HOURS_SHOWN, MINUTE_SECONDS, MINUTES_SHOWN, iso_utc
from .errors import ServerTrackError
from .text import ascii_escaped

# 9999-12-31T23:59:59Z: the last whole second of the year 9999.
MAX_EPOCH = 253_402_300_799
# The most buckets (or node snapshots) one answer holds.
MAX_BUCKETS = 10_000
MAX_SNAPSHOTS = 10_000
# A range of at most a day defaults to minute buckets, a longer one to hour buckets.
MINUTE_STEP_UP_TO = 24 * HOUR_SECONDS
STEPS = {"minute": MINUTE_SECONDS, "hour": HOUR_SECONDS}
# Without ``from``, a node's snapshot history covers the hour before ``to``.
DEFAULT_SECONDS_SPAN = HOUR_SECONDS
# Values longer than this are refused before they are parsed (and echoed cut to it).
MAX_TIME_CHARS = 64

ACCEPTED_FORMS = ("ISO-8601 like 2026-11-25T13:00:00Z (an offset such as +01:00 is converted), "
                  "'YYYY-MM-DD HH:MM:SS' (UTC) or epoch seconds like 1795611600")

_DATETIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"[Tt ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<offset_hours>[0-9]{2}):(?P<offset_minutes>[0-9]{2}))?",
    re.ASCII,
)
_EPOCH = re.compile(r"(?P<minus>-?)(?P<whole>[0-9]{1,20})(?:\.(?P<fraction>[0-9]{1,9}))?", re.ASCII)
# A '+HH:MM' offset whose '+' a URL query decoded as a space.
_PLUS_AS_SPACE = re.compile(r".+[0-9] [0-9]{2}:[0-9]{2}", re.ASCII)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


class TimeRangeError(ServerTrackError):
    """A ``from``/``to``/``step`` that cannot be served; ``parameter`` names it, ``message`` says why
    (and starts with the parameter's name)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


class RangeQuery(NamedTuple):
    """The range parameters of one request, each None when not given."""

    start: float | None
    stop: float | None
    step: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class BucketPlan:
    """Buckets ``first_bucket .. first_bucket + count - 1`` of ``width`` seconds (``step`` by name)."""

    step: str
    width: int
    first_bucket: int
    count: int

    @property
    def first_start(self) -> int:
        """Epoch second where the first bucket starts."""
        return self.first_bucket * self.width

    @property
    def last_start(self) -> int:
        """Epoch second where the last bucket starts."""
        return (self.first_bucket + self.count - 1) * self.width


def _shown(text: str) -> str:
    """``text`` quoted for an error message: ASCII, controls escaped, cut to ``MAX_TIME_CHARS``."""
    cut = "..." if len(text) > MAX_TIME_CHARS else ""
    return f"'{ascii_escaped(text, MAX_TIME_CHARS)}{cut}'"


def instant_text(epoch_seconds: float) -> str:
    """An instant for a message: ISO UTC, with its fraction of a second if it has one."""
    whole = math.floor(epoch_seconds)
    text = iso_utc(whole)
    fraction = epoch_seconds - whole
    if fraction:
        text = text[:-1] + f"{fraction:.6f}"[1:].rstrip("0").rstrip(".") + "Z"
    return text


def _out_of_bounds(parameter: str, text: str) -> TimeRangeError:
    return TimeRangeError(parameter, f"{parameter}: {_shown(text)} is outside the years 1970 to 9999 "
                                     f"(epoch seconds 0 to {MAX_EPOCH})")


def _with_fraction(whole: int, fraction: str | None) -> float:
    """``whole`` seconds plus the decimal digits ``fraction``, converted in one correctly rounded step."""
    return float(f"{whole}.{fraction}") if fraction else float(whole)


def parse_time(text: str, parameter: str) -> float:
    """Epoch seconds of the time ``text`` (one of the forms in the module docstring), or a
    ``TimeRangeError`` naming ``parameter`` and the problem. Nothing is stripped or guessed."""
    if not text:
        raise TimeRangeError(parameter, f"{parameter}: empty; give {ACCEPTED_FORMS}")
    if len(text) > MAX_TIME_CHARS:
        raise TimeRangeError(parameter, f"{parameter}: {_shown(text)} is too long ({len(text)} characters) "
                                        f"to be a time; give {ACCEPTED_FORMS}")
    number = _EPOCH.fullmatch(text)
    if number is not None:
        whole = int(number["whole"])
        value = _with_fraction(whole, number["fraction"])
        if whole > MAX_EPOCH or (number["minus"] and value):  # "-0" is 0; any other negative is before 1970
            raise _out_of_bounds(parameter, text)
        return value
    moment = _DATETIME.fullmatch(text)
    if moment is None:
        hint = " (a '+' in a URL query reads as a space: write it %2B)" if _PLUS_AS_SPACE.fullmatch(text) else ""
        raise TimeRangeError(parameter, f"{parameter}: {_shown(text)} is not a time{hint}; give {ACCEPTED_FORMS}")
    if moment["year"] == "0000":
        raise _out_of_bounds(parameter, text)
    try:
        date = datetime.date(int(moment["year"]), int(moment["month"]), int(moment["day"]))
        clock = datetime.time(int(moment["hour"]), int(moment["minute"]), int(moment["second"]))
    except ValueError as error:  # month 13, February 30, hour 24, second 60 ...
        raise TimeRangeError(parameter, f"{parameter}: {_shown(text)} is not a valid date and time ({error})") from None
    offset = 0
    if moment["sign"] is not None:
        offset_hours, offset_minutes = int(moment["offset_hours"]), int(moment["offset_minutes"])
        if offset_hours > 23 or offset_minutes > 59:
            raise TimeRangeError(parameter, f"{parameter}: {_shown(text)} has an offset outside -23:59 to +23:59")
        offset = (offset_hours * 60 + offset_minutes) * 60 * (-1 if moment["sign"] == "-" else 1)
    whole = ((date.toordinal() - _EPOCH_ORDINAL) * 86_400
             + clock.hour * 3600 + clock.minute * 60 + clock.second - offset)
    if not 0 <= whole <= MAX_EPOCH:
        raise _out_of_bounds(parameter, text)
    return _with_fraction(whole, moment["fraction"])


def query_value(query: Mapping[str, list[bytes]], parameter: str) -> str | None:
    """The one value of ``parameter`` in a parsed query string (raw bytes, as Tornado keeps them), or
    None when absent; given twice, or not UTF-8: a ``TimeRangeError``. The value is returned exactly as
    sent (nothing stripped, controls kept, so that a refusal can show them escaped)."""
    values = query.get(parameter)
    if not values:
        return None
    if len(values) > 1:
        raise TimeRangeError(parameter, f"{parameter}: given {len(values)} times; give it once")
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        shown = ascii_escaped(values[0][:MAX_TIME_CHARS].decode("utf-8", "backslashreplace"), MAX_TIME_CHARS)
        raise TimeRangeError(parameter, f"{parameter}: '{shown}' is not UTF-8") from None


def wants_range(query: Mapping[str, list[bytes]], parameters: tuple[str, ...]) -> bool:
    """Whether the query names any of ``parameters`` (even with an empty value)."""
    return any(parameter in query for parameter in parameters)


def range_query(query: Mapping[str, list[bytes]], with_step: bool = True) -> RangeQuery:
    """``from``, ``to`` and (if ``with_step``) ``step`` of a parsed query string, parsed and checked
    one by one (the order of ``from`` and ``to`` is checked by the plans, once defaults are known)."""
    start_text = query_value(query, "from")
    stop_text = query_value(query, "to")
    step = query_value(query, "step") if with_step else None
    if step is not None and step not in STEPS:
        raise TimeRangeError("step", f"step: must be minute or hour, got {_shown(step)}")
    return RangeQuery(
        start=None if start_text is None else parse_time(start_text, "from"),
        stop=None if stop_text is None else parse_time(stop_text, "to"),
        step=step,
    )


def _check_order(start: float, stop: float, stop_given: bool) -> None:
    if start > stop:
        stop_shown = instant_text(stop) if stop_given else f"now, {instant_text(stop)}"
        raise TimeRangeError("from", f"from ({instant_text(start)}) is after to ({stop_shown})")


def bucket_plan(start: float, stop: float, step: str, limit: int = MAX_BUCKETS) -> BucketPlan:
    """The ``step`` buckets whose start lies in ``[floor(start / width) * width, stop]``; more than
    ``limit`` of them is a ``TimeRangeError``. ``start <= stop`` (checked by the callers)."""
    width = STEPS[step]
    first = int(start // width)
    count = int(stop // width) - first + 1
    if count > limit:
        advice = "narrow from/to or ask for step=hour" if step == "minute" else "narrow from/to"
        raise TimeRangeError("from", f"from/to: the range covers {count:,} {step} buckets, more than the limit "
                                     f"of {limit:,}; {advice}")
    return BucketPlan(step, width, first, count)


def _default_start(stop: float, step: str) -> float:
    """The start of the window the live API shows for ``step``, ending with the bucket holding ``stop``:
    60 minutes, or 24 hours."""
    width = STEPS[step]
    shown = MINUTES_SHOWN if step == "minute" else HOURS_SHOWN
    return float((int(stop // width) - shown + 1) * width)


def loads_plan(query: RangeQuery, now: float) -> BucketPlan:
    """The buckets of ``GET /servers/{name}/loads?from=&to=&step=``.

    ``to`` defaults to ``now``. ``step`` defaults to minute for a range up to
    24 h (``to - from``, exactly), else hour. Without ``from``: the window the
    live API shows, ending with the bucket that holds ``to`` (the last 60
    minutes; with ``step=hour``, the last 24 hours).
    """
    stop = now if query.stop is None else query.stop
    if query.start is None:
        step = query.step or "minute"
        start = _default_start(stop, step)
    else:
        start = query.start
        _check_order(start, stop, query.stop is not None)
        step = query.step or ("minute" if stop - start <= MINUTE_STEP_UP_TO else "hour")
    return bucket_plan(start, stop, step)


def summary_plan(query: RangeQuery, now: float) -> BucketPlan:
    """The buckets a summary over ``?from=&to=`` adds up: minute buckets while the range covers at most
    ``MAX_BUCKETS`` of them, else hour buckets (at most ``MAX_BUCKETS``). Its edges are those of the
    buckets: from the start of the bucket holding ``from`` to the end of the one holding ``to``.

    ``to`` defaults to ``now``; without ``from``, the 60 minutes ending with the minute holding ``to``.
    """
    stop = now if query.stop is None else query.stop
    if query.start is None:
        return bucket_plan(_default_start(stop, "minute"), stop, "minute")
    _check_order(query.start, stop, query.stop is not None)
    minutes = int(stop // MINUTE_SECONDS) - int(query.start // MINUTE_SECONDS) + 1
    return bucket_plan(query.start, stop, "minute" if minutes <= MAX_BUCKETS else "hour")


def seconds_span(query: RangeQuery, now: float) -> tuple[int, int]:
    """The whole seconds ``(first, last)`` of ``[from, to]`` (``first > last`` when the range holds none,
    e.g. ``from == to == 12.5``): ``to`` defaults to ``now``, ``from`` to an hour before ``to``."""
    stop = now if query.stop is None else query.stop
    start = stop - DEFAULT_SECONDS_SPAN if query.start is None else query.start
    _check_order(start, stop, query.stop is not None)
    return math.ceil(start), math.floor(stop)
