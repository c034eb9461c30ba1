"""Sparklines: a window of percentages drawn as one character per bucket; pure functions, no I/O.

A bucket's value (0-100, a cpu or ram percentage) picks one of eight levels,
``▁▂▃▄▅▆▇█`` (or ``_.-:=+*#`` where the terminal cannot show the blocks), by
a fixed scale, not the window's own range: a flat 3 % line stays low. An
empty bucket (``None``: no samples, ``null`` in the API) is a gap, never a
zero: it is drawn as a space, which no level uses.

Whether the blocks can be shown is decided from the output stream's
encoding and the locale variables (``plain_locale``), with ``--ascii`` as the
operator's override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UNICODE_LEVELS = "▁▂▃▄▅▆▇█"
ASCII_LEVELS = "_.-:=+*#"
GAP = " "
_PLAIN_LOCALES = frozenset(("C", "POSIX"))


@dataclass(frozen=True, slots=True)
class Glyphs:
    """The characters a sparkline is drawn with: ``levels`` lowest first, and the ``gap`` of an empty bucket."""

    levels: str
    gap: str = GAP

    @property
    def ascii(self) -> bool:
        """True when every character is ASCII."""
        return (self.levels + self.gap).isascii()


UNICODE = Glyphs(UNICODE_LEVELS)
ASCII = Glyphs(ASCII_LEVELS)


def level(value: float, levels: int, low: float = 0.0, high: float = 100.0) -> int:
    """The level (``0`` to ``levels - 1``) of ``value`` on the scale ``low``-``high``: the scale cut into
    ``levels`` equal steps, values outside it clamped to the first or last (so NaN is the first)."""
    if not value > low:  # NaN too
        return 0
    if value >= high:
        return levels - 1
    return min(levels - 1, int((value - low) / (high - low) * levels))


def sparkline(values: Sequence[float | None], glyphs: Glyphs = UNICODE, low: float = 0.0,
              high: float = 100.0) -> str:
    """One character per value, oldest first: its level's glyph, or ``glyphs.gap`` for None."""
    levels = glyphs.levels
    count = len(levels)
    return "".join(glyphs.gap if value is None else levels[level(value, count, low, high)] for value in values)


def plain_locale(environ: Mapping[str, str]) -> bool:
    """True when the locale variables ask for the C / POSIX locale (plain ASCII).

    ``LC_ALL`` wins when set, then ``LC_CTYPE``, then ``LANG``. Python coerces
    a C locale to ``C.UTF-8`` at start (PEP 538) by setting ``LC_CTYPE``, so a
    ``LC_CTYPE`` of ``C.UTF-8`` under a ``LANG`` of C or POSIX counts as C.
    """
    every = environ.get("LC_ALL")
    if every:
        return every in _PLAIN_LOCALES
    ctype, lang = environ.get("LC_CTYPE"), environ.get("LANG")
    if ctype and not (ctype == "C.UTF-8" and lang in _PLAIN_LOCALES):
        return ctype in _PLAIN_LOCALES
    return lang in _PLAIN_LOCALES


def can_encode(text: str, encoding: str | None) -> bool:
    """True when ``text`` can be written to a stream of ``encoding`` (None: unknown, assume ASCII only)."""
    if encoding is None:
        return text.isascii()
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def glyphs_for(encoding: str | None, environ: Mapping[str, str], force_ascii: bool = False) -> Glyphs:
    """The blocks, unless ``force_ascii``, the locale is C / POSIX, or ``encoding`` cannot encode them."""
    if force_ascii or plain_locale(environ) or not can_encode(UNICODE_LEVELS, encoding):
        return ASCII
    return UNICODE
