"""``servertrack top`` on the terminal: curses draws ``fleet_top.render_top``'s lines, reads the keys and
follows resizes while ``fleet_feed.FleetFeed`` refreshes in the background.

curses (the standard library's) rather than raw ANSI over termios: it
owns the alternate screen, the cursor, raw keys, SIGWINCH (``KEY_RESIZE``)
and, through ``curses.wrapper``, puts the terminal back as it found it on
``q``, on Ctrl-C and on an exception alike; it only redraws the cells that
changed, which matters over a slow ssh link. The one cost: the screen's
text must be encodable in the locale's encoding, so an ASCII-only terminal
gets ASCII (``fleet_top.shown``).
"""

from __future__ import annotations

import curses
import signal
import time
from collections.abc import Callable
from typing import Any

from .fleet_feed import FleetFeed
from .fleet_top import render_top

KEY_POLL_SECONDS = 0.1
_SORT_KEYS = {ord("c"): "cpu", ord("C"): "cpu", ord("m"): "ram", ord("M"): "ram", ord("r"): "ram",
              ord("n"): "name", ord("N"): "name"}
_QUIT_KEYS = frozenset((ord("q"), ord("Q")))


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: leave through ``curses.wrapper``, which restores the terminal, with 128 + signum."""
    raise SystemExit(128 + signum)


def run_top(feed: FleetFeed, url: str, ascii_only: bool = False, clock: Callable[[], float] = time.time) -> int:
    """Show the fleet until ``q`` (or Ctrl-C, SIGTERM, SIGHUP); return the exit code. The terminal is
    restored whatever happens."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminated)
    feed.start()
    try:
        code: int = curses.wrapper(_screen_loop, feed, url, ascii_only, clock)
        return code
    finally:
        feed.stop()


def _draw(screen: Any, lines: list[str]) -> None:
    screen.erase()
    for row, line in enumerate(lines):
        attribute = curses.A_REVERSE if row == 2 else curses.A_BOLD if row == 1 and "unreachable" in line else 0
        try:
            screen.addstr(row, 0, line, attribute)
        except curses.error:  # the bottom-right cell: written, then the cursor cannot advance
            pass
    screen.refresh()


def _screen_loop(screen: Any, feed: FleetFeed, url: str, ascii_only: bool, clock: Callable[[], float]) -> int:
    try:
        curses.curs_set(0)
    except curses.error:  # a terminal without an invisible cursor
        pass
    screen.timeout(int(KEY_POLL_SECONDS * 1000))
    sort_key = "cpu"
    drawn_at = -1.0
    dirty = True
    while True:
        now = clock()
        if dirty or feed.wait_changed(0) or now - drawn_at >= 1.0:
            height, width = screen.getmaxyx()
            lines = render_top(feed.latest(), sort_key, width, height, url, time.strftime("%H:%M:%S", time.gmtime(now)),
                               feed.interval, ascii_only)
            _draw(screen, lines)
            drawn_at, dirty = now, False
        key = screen.getch()
        if key in _QUIT_KEYS:
            return 0
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            dirty = True
        elif key in _SORT_KEYS:
            sort_key = _SORT_KEYS[key]
            feed.set_sort(sort_key)  # the service sorts the whole fleet by it: refresh now
            dirty = True
