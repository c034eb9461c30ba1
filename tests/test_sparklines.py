"""Sparklines against a naive reference: one character a bucket, a gap where None, levels monotonic
in the value; the choice of glyphs from the stream's encoding and the locale."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.sparklines import (
    ASCII,
    ASCII_LEVELS,
    GAP,
    UNICODE,
    UNICODE_LEVELS,
    glyphs_for,
    level,
    plain_locale,
    sparkline,
)

PERCENT = st.floats(0.0, 100.0)
BUCKETS = st.lists(st.one_of(st.none(), PERCENT), max_size=100)


def reference_level(value: float) -> int:
    """Eight equal steps of 12.5 %, 100 % in the top one."""
    return min(7, math.floor(value / 12.5))


@settings(max_examples=50)
@given(BUCKETS, st.sampled_from([UNICODE, ASCII]))
def test_one_character_a_bucket_and_a_gap_exactly_where_none(values: list[float | None], glyphs: object) -> None:
    assert glyphs in (UNICODE, ASCII)
    line = sparkline(values, glyphs)  # type: ignore[arg-type]
    assert len(line) == len(values)
    for char, value in zip(line, values):
        if value is None:
            assert char == GAP
        else:
            assert char == glyphs.levels[reference_level(value)]  # type: ignore[attr-defined]
            assert char != GAP


@settings(max_examples=50)
@given(PERCENT, PERCENT)
def test_the_mapping_is_monotonic(first: float, second: float) -> None:
    low, high = sorted((first, second))
    assert level(low, 8) <= level(high, 8)
    line = sparkline([low, high])
    assert UNICODE_LEVELS.index(line[0]) <= UNICODE_LEVELS.index(line[1])


def test_the_scale_is_fixed_zero_to_hundred_and_clamped() -> None:
    assert sparkline([0.0, 12.4, 12.5, 50.0, 99.9, 100.0]) == "▁▁▂▅██"
    assert sparkline([0.0, 100.0, None, 50.0], ASCII) == "_# ="
    assert sparkline([3.0, 3.0, 3.0]) == "▁▁▁"  # a flat low line stays low (no autoscale)
    assert sparkline([-5.0, 250.0, math.nan]) == "▁█▁"
    assert sparkline([]) == ""
    assert ASCII.ascii and not UNICODE.ascii and GAP not in ASCII_LEVELS + UNICODE_LEVELS


def test_the_c_locale_and_an_ascii_stream_get_ascii() -> None:
    utf8 = {"LANG": "en_US.UTF-8"}
    assert glyphs_for("utf-8", utf8) is UNICODE
    assert glyphs_for("utf-8", utf8, force_ascii=True) is ASCII
    assert glyphs_for("ascii", utf8) is ASCII
    assert glyphs_for("latin-1", utf8) is ASCII
    assert glyphs_for(None, utf8) is ASCII
    assert glyphs_for("no-such-codec", utf8) is ASCII
    for environ in ({"LANG": "C"}, {"LC_ALL": "POSIX", "LANG": "en_US.UTF-8"}, {"LC_CTYPE": "C"},
                    {"LANG": "C", "LC_CTYPE": "C.UTF-8"}):  # the last: Python's own coercion of a C locale
        assert plain_locale(environ), environ
        assert glyphs_for("utf-8", environ) is ASCII
    for environ in ({}, {"LANG": "de_DE.UTF-8"}, {"LC_ALL": "C.UTF-8", "LANG": "C"},
                    {"LC_CTYPE": "en_US.UTF-8", "LANG": "C"}):
        assert not plain_locale(environ), environ
