"""escape_unprintable and escape_and_cut, by example and against a naive reference model."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from servertrack.common.text import escape_and_cut, escape_unprintable


def reference_escape(text: str) -> str:
    """The naive model: every character on its own, printable ones kept, the others spelled out."""
    out = []
    for char in text:
        code = ord(char)
        if char.isprintable():
            out.append(char)
        elif code < 0x100:
            out.append("\\x%02x" % code)
        elif code < 0x10000:
            out.append("\\u%04x" % code)
        else:
            out.append("\\U%08x" % code)
    return "".join(out)


def reference_cut(text: str, max_bytes: int) -> str:
    """The naive model of the cut: the longest prefix of ``text`` whose escaped form fits."""
    for end in range(len(text), -1, -1):
        escaped = reference_escape(text[:end])
        if len(escaped.encode("utf-8")) <= max_bytes:
            return escaped
    raise AssertionError("the empty prefix always fits")


# Every code point, lone surrogates included (hypothesis leaves them out unless asked).
any_text = st.text(st.characters(exclude_categories=()))


@pytest.mark.parametrize("raw, shown", [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("evil\x1b[2J", "evil\\x1b[2J"),
    ("a\r\nb\tc\x00", "a\\x0d\\x0ab\\x09c\\x00"),
    ("\x7f\x80\x9f", "\\x7f\\x80\\x9f"),
    ("\xa0no-break", "\\xa0no-break"),
    ("abc\u202edef", "abc\\u202edef"),
    ("\u2028\u2029", "\\u2028\\u2029"),
    ("\ud800", "\\ud800"),  # a lone surrogate (an undecodable file name)
    ("\U000e0001tag", "\\U000e0001tag"),
    ("back\\slash\n", "back\\slash\\x0a"),  # a literal backslash stays as it is
    ("é 日本 ü", "é 日本 ü"),
])
def test_unprintable_characters_become_visible_escapes(raw: str, shown: str) -> None:
    assert escape_unprintable(raw) == shown
    assert escape_unprintable(shown) == shown


def test_printable_text_is_returned_as_the_same_object() -> None:
    text = "web-01.example 日本 back\\slash"
    assert escape_unprintable(text) is text
    assert escape_unprintable("") == ""
    assert escape_and_cut(text, 1000) is text


def test_cut_to_a_byte_bound_never_splits_a_character_or_an_escape() -> None:
    assert escape_and_cut("abcdef", 4) == "abcd"
    assert escape_and_cut("ééé", 5) == "éé"  # 2 bytes each: the third would need 6
    assert escape_and_cut("ab\x1bcd", 5) == "ab"  # "\x1b" is 4 bytes: not cut to "\x1"
    assert escape_and_cut("ab\x1bcd", 6) == "ab\\x1b"
    assert escape_and_cut("ab\x1bcd", 7) == "ab\\x1bc"
    assert escape_and_cut("\u202e", 5) == ""
    assert escape_and_cut("\u202e", 6) == "\\u202e"
    assert escape_and_cut("a\U000e0001", 10) == "a"
    assert escape_and_cut("x", 0) == "" and escape_and_cut("x", -1) == ""


def test_a_huge_input_is_read_only_as_far_as_the_bound() -> None:
    assert escape_and_cut("\x00" * 10**6, 64) == "\\x00" * 16
    assert escape_and_cut("a" * 10**6, 64) == "a" * 64


@given(any_text)
@example("\x1b]0;pwned\x07\r\n\x00\u202e")
def test_escaping_matches_the_reference_and_is_always_printable(text: str) -> None:
    escaped = escape_unprintable(text)
    assert escaped == reference_escape(text)
    assert escaped.isprintable()
    if text.isprintable():
        assert escaped is text
    assert escape_unprintable(escaped) == escaped


@given(any_text, st.integers(0, 80))
@example("日本\x1b語", 7)
def test_cut_fits_the_bound_is_printable_and_matches_the_reference(text: str, max_bytes: int) -> None:
    cut = escape_and_cut(text, max_bytes)
    assert cut.isprintable()
    assert len(cut.encode("utf-8")) <= max_bytes
    assert cut == reference_cut(text, max_bytes)
    assert escape_unprintable(text).startswith(cut)


def test_ascii_escaped_quotes_a_client_value_cut_and_in_ascii() -> None:
    from servertrack.common.text import ascii_escaped

    assert ascii_escaped("web-01", 64) == "web-01"
    assert ascii_escaped("a\nb\x00\u202e\xe9", 64) == "a\\nb\\x00\\u202e\\xe9"
    assert ascii_escaped("x" * 100, 64) == "x" * 64
