"""``servertrack top``'s screen as text: the fleet's rows sorted and laid out for a terminal of a given
size; pure functions, no I/O (``fleet_feed`` fetches the rows, ``top_terminal`` draws them).

Every string from the API is hostile: names, states and times go through
``console._text`` (control characters shown as visible escapes) before they
are measured, and through ``backslashreplace`` too when the terminal is ASCII
only. A line never exceeds the terminal's width (wide characters count two
columns) and no more lines are made than the terminal has rows.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .console import _text

SORT_KEYS = ("cpu", "ram", "name")
KEYS_HELP = "c cpu  m ram  n name  q quit"
_FIXED = (("STATE", 7), ("CPU %", 6), ("RAM %", 6), ("LAST SEEN (UTC)", 20))
MIN_NAME_WIDTH = 8
CUT = "~"  # ends a name cut to its column


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One server as ``top`` shows it: ``cpu`` and ``ram`` its newest second with samples (None if the last
    60 s had none), ``state`` its node state (None for a server that only posts loads)."""

    name: str
    state: str | None
    cpu: float | None
    ram: float | None
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class FleetView:
    """What one refresh found: the first rows of ``GET /fleet`` sorted by ``sorted_by`` (``more``: the
    fleet has ``total`` entries, more than shown), ``problem`` when the API could not be read (``rows`` are
    then the last ones read), and ``fetched_at`` (``HH:MM:SS`` UTC) of the last successful refresh."""

    rows: tuple[FleetRow, ...] = ()
    more: bool = False
    problem: str | None = None
    fetched_at: str | None = None
    limit: int = 0
    total: int = 0
    sorted_by: str | None = None


def sorted_rows(rows: Sequence[FleetRow], key: str) -> list[FleetRow]:
    """``rows`` by ``key``: cpu or ram descending (no value last), or name ascending; ties by name."""
    if key == "name":
        return sorted(rows, key=lambda row: row.name)
    if key not in ("cpu", "ram"):
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, got {key!r}")

    def order(row: FleetRow) -> tuple[bool, float, str]:
        value = row.cpu if key == "cpu" else row.ram
        return (value is None, -(value or 0.0), row.name)

    return sorted(rows, key=order)


def columns(text: str) -> int:
    """The terminal columns ``text`` takes: East Asian wide and full-width characters two, others one."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns (never half a wide character)."""
    if width <= 0:
        return ""
    if columns(text) <= width:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        size = columns(char)
        if used + size > width:
            break
        kept.append(char)
        used += size
    return "".join(kept)


def shown(value: object, ascii_only: bool) -> str:
    """``value`` as ``console._text`` prints it, and ASCII only (``\\xe9``) if ``ascii_only``."""
    text = _text(value)
    return text.encode("ascii", "backslashreplace").decode("ascii") if ascii_only and not text.isascii() else text


def _cell(text: str, width: int) -> str:
    """``text`` in a column of ``width``: padded, or cut with ``CUT`` as its last character."""
    size = columns(text)
    if size > width:
        text = fit(text, width - 1) + CUT
        size = columns(text)
    return text + " " * (width - size)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:5.1f}"


def render_top(view: FleetView, sort_key: str, width: int, height: int, url: str = "", now: str = "",
               interval: float = 2.0, ascii_only: bool = False) -> list[str]:
    """The screen: a title line, a status line (the page shown, or why the API could not be read), the
    column header and as many rows as fit, sorted by ``sort_key``; at most ``height`` lines of at most
    ``width`` columns each."""
    if width <= 0 or height <= 0:
        return []
    title = f"servertrack top  {shown(url, ascii_only)}  {now} UTC  every {interval:g} s  sort: {sort_key}  " \
            f"({KEYS_HELP})"
    rows = sorted_rows(view.rows, sort_key)
    if view.problem is not None:
        since = f"; last read {view.fetched_at} UTC" if view.fetched_at else ""
        status = f"API unreachable: {shown(view.problem, ascii_only)} (retrying every {interval:g} s{since})"
    elif not rows:
        status = "no servers" if view.fetched_at else "reading the API..."
    else:
        count = f"{len(rows)} server{'' if len(rows) == 1 else 's'}"
        if not view.more:
            status = f"all {count}"
        elif view.sorted_by in (sort_key, None):
            status = f"the first {count} of {view.total:,} by {sort_key}"
        else:  # the key changed since this page was read: its refresh is on the way
            status = f"the first {count} of {view.total:,} by {view.sorted_by}; reading by {sort_key}..."
    names = [shown(row.name, ascii_only) for row in rows]
    fixed = sum(size + 2 for _, size in _FIXED)
    name_width = max([MIN_NAME_WIDTH, len("NAME"), *(columns(name) for name in names)])
    name_width = max(MIN_NAME_WIDTH, min(name_width, width - fixed))
    header = _cell("NAME", name_width) + "".join(
        "  " + (label.rjust(size) if label.endswith("%") else _cell(label, size)) for label, size in _FIXED)
    lines = [title, status, header]
    for row, name in zip(rows, names):
        if len(lines) >= height:
            break
        cells = [_cell(name, name_width), _cell(shown(row.state, ascii_only), 7), _percent(row.cpu).rjust(6),
                 _percent(row.ram).rjust(6), _cell(shown(row.last_seen, ascii_only), 20)]
        lines.append("  ".join(cells))
    return [fit(line.rstrip(), width) for line in lines[:height]]
