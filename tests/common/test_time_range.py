"""The times and ranges of the history queries (``common.time_range``), from the specification:

a time is ISO-8601 UTC (``Z`` or ``+00:00``, fractional seconds; another offset
is converted), ``YYYY-MM-DD HH:MM:SS`` (UTC) or epoch seconds; years 1970 to
9999; a range covers every bucket whose start lies in ``[floor(from/w)*w, to]``,
at most 10,000 of them; ``step`` defaults to minute up to 24 h, else hour.
Expected instants come from ``datetime`` (the reference), never from the code.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.errors import ServerTrackError
from servertrack.common.time_range import (
    MAX_BUCKETS,
    RangeQuery,
    TimeRangeError,
    loads_plan,
    parse_time,
    query_value,
    range_query,
    seconds_span,
    summary_plan,
)

UTC = datetime.UTC
MINUTE = 60
HOUR = 3600
DAY = 86_400


def reference(text: str) -> float:
    """Epoch seconds of an ISO-8601 time with an explicit zone, as ``datetime`` reads it."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# 2025-11-25T13:00:00Z
T13 = reference("2025-11-25T13:00:00+00:00")


def refusal(text: str, parameter: str = "from") -> str:
    """The message of the refusal of ``text`` as ``parameter``, which must name the parameter first."""
    with pytest.raises(TimeRangeError) as caught:
        parse_time(text, parameter)
    error = caught.value
    assert isinstance(error, ServerTrackError)
    assert error.parameter == parameter
    assert error.message.startswith(f"{parameter}:"), error.message
    assert error.message.isprintable() and error.message.isascii(), error.message
    return error.message


# -- the accepted forms -----------------------------------------------------------


@pytest.mark.parametrize("text", [
    "2025-11-25T13:00:00Z",
    "2025-11-25T13:00:00+00:00",
    "2025-11-25T13:00:00-00:00",
    "2025-11-25t13:00:00z",
    "2025-11-25 13:00:00",
    "2025-11-25T13:00:00",
    "2025-11-25 13:00:00Z",
    "2025-11-25T14:00:00+01:00",
    "2025-11-25T18:30:00+05:30",
    "2025-11-25T08:00:00-05:00",
    "2025-11-26T00:59:00+11:59",
    "2025-11-25T13:00:00.000Z",
    "2025-11-25T13:00:00.000000000+00:00",
    "1764075600",
    "1764075600.0",
    "01764075600",
])
def test_every_spelling_of_one_instant_is_the_same_number(text: str) -> None:
    assert T13 == 1_764_075_600
    assert parse_time(text, "from") == T13


@pytest.mark.parametrize("iso, epoch", [
    ("2025-11-25T13:00:00.25Z", "1764075600.25"),
    ("2025-11-25T13:00:00.1Z", "1764075600.1"),
    ("2025-11-25 13:00:00.123456789", "1764075600.123456789"),
    ("2025-11-25T14:00:00.7+01:00", "1764075600.7"),
])
def test_fractional_seconds_agree_across_forms(iso: str, epoch: str) -> None:
    assert parse_time(iso, "to") == parse_time(epoch, "to") == float(epoch)


@settings(max_examples=300)
@given(
    moment=st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
    offset_minutes=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    form=st.sampled_from(["T", " ", "Z", "offset"]),
)
def test_any_instant_in_any_form_reads_as_datetime_reads_it(
    moment: datetime.datetime, offset_minutes: int, form: str
) -> None:
    utc = moment.replace(tzinfo=UTC)
    expected = utc.timestamp()
    if form == "offset":
        zone = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
        text = utc.astimezone(zone).isoformat()
    elif form == "Z":
        text = utc.isoformat().replace("+00:00", "Z")
    else:
        text = moment.isoformat(sep=form)
    assert parse_time(text, "from") == expected
    whole = (utc - datetime.datetime(1970, 1, 1, tzinfo=UTC)) // datetime.timedelta(seconds=1)
    epoch_text = f"{whole}" + (f".{moment.microsecond:06d}" if moment.microsecond else "")
    assert parse_time(epoch_text, "from") == expected


# -- bounds and calendars ------------------------------------------------------------


def test_the_bounds_are_the_years_1970_to_9999() -> None:
    assert parse_time("1970-01-01T00:00:00Z", "from") == 0
    assert parse_time("0", "from") == 0
    assert parse_time("-0", "from") == 0
    assert parse_time("9999-12-31T23:59:59Z", "to") == reference("9999-12-31T23:59:59+00:00") == 253_402_300_799
    assert parse_time("253402300799.999", "to") == 253_402_300_799.999
    for text in ("1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00", "-1", "-0.5", "253402300800",
                 "9999-12-31T23:59:59-00:01", "0000-01-01T00:00:00Z", "99999999999999999999"):
        message = refusal(text)
        assert "1970" in message and "9999" in message, message


def test_leap_days_exist_only_in_leap_years() -> None:
    assert parse_time("2028-02-29T12:00:00Z", "from") == reference("2028-02-29T12:00:00+00:00")
    assert parse_time("2000-02-29 00:00:00", "from") == reference("2000-02-29T00:00:00+00:00")
    for text in ("2027-02-29T00:00:00Z", "2100-02-29 00:00:00", "2026-04-31T00:00:00Z"):
        assert "not a valid date" in refusal(text)


@pytest.mark.parametrize("text", [
    "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z", "2025-11-25T24:00:00Z",
    "2025-11-25T13:60:00Z", "2025-11-25T23:59:60Z",
])
def test_fields_out_of_their_range_are_refused(text: str) -> None:
    assert "not a valid date" in refusal(text)


@pytest.mark.parametrize("text", ["2025-11-25T13:00:00+24:00", "2025-11-25T13:00:00-00:60"])
def test_offsets_beyond_a_day_are_refused(text: str) -> None:
    assert "offset" in refusal(text)


# -- what is not a time -------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "yesterday", "now", "2025-11-25", "13:00:00", "2025-11-25T13:00Z", "2025-11-25T13Z", "2026/11/25 13:00:00",
    "25-11-2026 13:00:00", "2025-11-25T13:00:00.Z", "2025-11-25T13:00:00.1234567890Z", "2025-11-25T13:00:00+0100",
    "2025-11-25T13:00:00+01", "2025-11-25T13:00:00 Z", "2025-11-25  13:00:00", "1e9", "1E9", "+1764075600",
    "0x10", "1764075600.", ".5", "1,764,075,600", "1_764_075_600", "inf", "nan", "NaN", "Infinity",
    "1764075600.1234567890", "１７６４０７５６００", "١٧٦٤٠٧٥٦٠٠", "2025-11-25T13:00:00ZZ",
])
def test_other_forms_are_refused_naming_the_accepted_ones(text: str) -> None:
    message = refusal(text, "to")
    assert "not a time" in message and "ISO-8601" in message and "epoch seconds" in message, message


@pytest.mark.parametrize("text", [
    " 1764075600", "1764075600 ", "\t1764075600", "1764075600\n", "2025-11-25T13:00:00Z ", " 2025-11-25 13:00:00",
    "2025-11-25\x0013:00:00", "1764075600\r\n", "17640\x1b[2J75600", "1764075600\u202e", "\u00a01764075600",
])
def test_spaces_and_control_characters_are_refused_and_shown_escaped(text: str) -> None:
    message = refusal(text)
    for char in text:
        if not char.isprintable() or char == "\u00a0":
            assert char not in message
    if "\x00" in text:
        assert "\\x00" in message
    if "\x1b" in text:
        assert "\\x1b" in message
    if "\u202e" in text:
        assert "\\u202e" in message


def test_an_empty_value_is_refused() -> None:
    assert "empty" in refusal("", "to")


def test_a_plus_read_as_a_space_gets_a_hint() -> None:
    assert "%2B" in refusal("2025-11-25T14:00:00 01:00")


def test_a_long_value_is_refused_before_parsing_and_cut_in_the_message() -> None:
    message = refusal("1" * 10_000)
    assert "too long" in message and len(message) < 400


# -- query strings ----------------------------------------------------------------


def test_query_values_are_taken_once_and_exactly_as_sent() -> None:
    assert query_value({}, "from") is None
    assert query_value({"from": [b""]}, "from") == ""
    assert query_value({"from": [b" 12 "]}, "from") == " 12 "
    with pytest.raises(TimeRangeError) as twice:
        query_value({"from": [b"1", b"2"]}, "from")
    assert twice.value.parameter == "from" and "2 times" in twice.value.message
    with pytest.raises(TimeRangeError) as binary:
        query_value({"to": [b"\xff\xfe"]}, "to")
    assert binary.value.message.startswith("to:") and "UTF-8" in binary.value.message


def test_a_range_query_reads_from_to_and_step() -> None:
    query = range_query({"from": [b"2025-11-25T13:00:00Z"], "to": [b"1764079200"], "step": [b"hour"]})
    assert query == RangeQuery(T13, T13 + HOUR, "hour")
    assert range_query({}) == RangeQuery(None, None, None)
    assert range_query({"step": [b"hour"]}, with_step=False).step is None


@pytest.mark.parametrize("step", ["day", "Minute", "HOUR", "", "minutes", "60", "minute "])
def test_an_unknown_step_is_refused(step: str) -> None:
    with pytest.raises(TimeRangeError) as caught:
        range_query({"step": [step.encode()]})
    assert caught.value.parameter == "step" and caught.value.message.startswith("step:")
    assert "minute or hour" in caught.value.message


def test_a_bad_time_names_its_parameter() -> None:
    for parameter in ("from", "to"):
        with pytest.raises(TimeRangeError) as caught:
            range_query({parameter: [b"soon"]})
        assert caught.value.parameter == parameter


# -- bucket plans: /servers/{name}/loads ---------------------------------------------------

NOW = T13 + 17.5  # mid-minute


def plan_of(
    start: float | None, stop: float | None, step: str | None = None, now: float = NOW
) -> tuple[str, int, int, int]:
    plan = loads_plan(RangeQuery(start, stop, step), now)
    return plan.step, plan.width, plan.first_bucket, plan.count


def test_from_equal_to_is_one_bucket() -> None:
    assert plan_of(T13 + 30, T13 + 30) == ("minute", MINUTE, int(T13 // MINUTE), 1)
    assert plan_of(T13 + 30, T13 + 30, "hour") == ("hour", HOUR, int(T13 // HOUR), 1)


def test_buckets_are_those_starting_from_the_floor_of_from_to_to() -> None:
    # from 13:00:30 to 13:02:00: buckets 13:00, 13:01, 13:02 (13:02 starts exactly at to)
    assert plan_of(T13 + 30, T13 + 120) == ("minute", MINUTE, int(T13 // MINUTE), 3)
    # to 13:01:59.9: 13:00 and 13:01
    assert plan_of(T13, T13 + 119.9)[3] == 2


def test_step_defaults_to_minute_up_to_exactly_24_hours_then_hour() -> None:
    assert plan_of(T13, T13 + DAY) == ("minute", MINUTE, int(T13 // MINUTE), 24 * 60 + 1)
    assert plan_of(T13, T13 + DAY + 1) == ("hour", HOUR, int(T13 // HOUR), 25)
    assert plan_of(T13, T13 + DAY + 1, "minute")[:2] == ("minute", MINUTE)
    assert plan_of(T13, T13 + 60, "hour")[:2] == ("hour", HOUR)


@pytest.mark.parametrize("step, width", [("minute", MINUTE), ("hour", HOUR)])
def test_at_most_10000_buckets(step: str, width: int) -> None:
    assert MAX_BUCKETS == 10_000
    assert plan_of(T13, T13 + 9_999 * width, step)[3] == 10_000
    assert plan_of(T13 + width - 1, T13 + 9_999 * width, step)[3] == 10_000
    with pytest.raises(TimeRangeError) as caught:
        plan_of(T13, T13 + 10_000 * width, step)
    assert "10,001" in caught.value.message and "10,000" in caught.value.message
    assert caught.value.message.startswith("from/to:")


def test_from_after_to_is_refused() -> None:
    with pytest.raises(TimeRangeError) as caught:
        plan_of(T13 + 1, T13)
    assert caught.value.parameter == "from" and "after to" in caught.value.message
    with pytest.raises(TimeRangeError) as later:
        plan_of(NOW + 0.5, None)
    assert "now" in later.value.message and "2025-11-25T13:00:18Z" in later.value.message


def test_to_defaults_to_now_and_from_to_the_window_ending_there() -> None:
    minute_now = int(NOW // MINUTE)
    assert plan_of(T13 - 600, None) == ("minute", MINUTE, int((T13 - 600) // MINUTE), 11)
    assert plan_of(None, None) == ("minute", MINUTE, minute_now - 59, 60)
    assert plan_of(None, T13 + 3 * HOUR + 5) == ("minute", MINUTE, int((T13 + 3 * HOUR) // MINUTE) - 59, 60)
    assert plan_of(None, None, "hour") == ("hour", HOUR, int(NOW // HOUR) - 23, 24)


@settings(max_examples=300)
@given(start=st.integers(0, 4_000_000_000), span=st.integers(0, 700 * DAY), fraction=st.floats(0, 0.999))
def test_the_plan_covers_exactly_the_buckets_the_specification_names(start: int, span: int, fraction: float) -> None:
    begin, end = start + fraction, start + span + fraction
    step = "minute" if end - begin <= DAY else "hour"
    width = MINUTE if step == "minute" else HOUR
    first, last = int(begin) // width, int(end) // width
    count = last - first + 1
    if count > MAX_BUCKETS:
        with pytest.raises(TimeRangeError):
            plan_of(begin, end)
        return
    assert plan_of(begin, end) == (step, width, first, count)


# -- summaries and node snapshots ------------------------------------------------------


def summary_of(start: float | None, stop: float | None) -> tuple[str, int, int]:
    plan = summary_plan(RangeQuery(start, stop, None), NOW)
    return plan.step, plan.first_bucket, plan.count


def test_a_summary_adds_minutes_up_to_10000_then_hours() -> None:
    assert summary_of(T13, T13 + 9_999 * MINUTE) == ("minute", int(T13 // MINUTE), 10_000)
    start = T13 + 30 * MINUTE
    # 10,001 minute buckets: hour buckets, from the hour holding from to the hour holding to
    assert summary_of(start, start + 10_000 * MINUTE) == (
        "hour", int(start // HOUR), int((start + 10_000 * MINUTE) // HOUR) - int(start // HOUR) + 1)
    assert summary_of(T13, T13 + 9_999 * HOUR)[2] == 10_000
    with pytest.raises(TimeRangeError):
        summary_of(T13, T13 + 10_000 * HOUR)
    assert summary_of(None, None) == ("minute", int(NOW // MINUTE) - 59, 60)
    with pytest.raises(TimeRangeError):
        summary_of(T13, T13 - 1)


def test_snapshot_spans_are_whole_seconds() -> None:
    assert seconds_span(RangeQuery(T13 + 0.5, T13 + 10.5, None), NOW) == (T13 + 1, T13 + 10)
    assert seconds_span(RangeQuery(T13, T13, None), NOW) == (T13, T13)
    first, last = seconds_span(RangeQuery(T13 + 0.25, T13 + 0.75, None), NOW)
    assert first > last  # no whole second inside
    assert seconds_span(RangeQuery(None, None, None), NOW) == (int(NOW) - HOUR + 1, int(NOW))
    assert seconds_span(RangeQuery(T13 - 5, None, None), NOW) == (T13 - 5, int(NOW))
    with pytest.raises(TimeRangeError) as caught:
        seconds_span(RangeQuery(T13 + 1, T13, None), NOW)
    assert caught.value.parameter == "from"
