"""``servertrack top``'s screen, pure: sorting, the layout within the terminal's size, hostile text,
an ASCII-only terminal; and ``FleetFeed`` against a stub client (one bounded page of ``GET /fleet`` in the
chosen order, an unreachable API that keeps the last rows)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.cli import main, parse
from servertrack.client import ClientError, ServerTrackClient, ServerUnreachable
from servertrack.common.settings import EnvironmentDefaults
from servertrack.fleet_feed import FleetFeed
from servertrack.fleet_top import (
    FleetRow,
    FleetView,
    columns,
    fit,
    render_top,
    sorted_rows,
)
from tests.test_console_escaping import ESCAPED, HOSTILE


def row(name: str, cpu: float | None, ram: float | None = 10.0, state: str | None = "online") -> FleetRow:
    return FleetRow(name, state, cpu, ram, "2026-12-03T12:00:00Z")


FLEET = (row("db-01", 20.0, 90.0), row("web-01", 75.5, 30.0), row("idle-01", None, None, None),
         row("app-01", 75.5, 50.0))
VIEW = FleetView(FLEET, more=False, fetched_at="12:00:01", limit=50)


def names(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines[3:]]


def test_rows_are_sorted_by_cpu_then_ram_or_name() -> None:
    assert [r.name for r in sorted_rows(FLEET, "cpu")] == ["app-01", "web-01", "db-01", "idle-01"]  # ties by name
    assert [r.name for r in sorted_rows(FLEET, "ram")] == ["db-01", "app-01", "web-01", "idle-01"]
    assert [r.name for r in sorted_rows(FLEET, "name")] == ["app-01", "db-01", "idle-01", "web-01"]


def test_the_screen_at_120_by_30() -> None:
    lines = render_top(VIEW, "cpu", 120, 30, "http://127.0.0.1:8080", "12:00:02")
    assert lines[0] == ("servertrack top  http://127.0.0.1:8080  12:00:02 UTC  every 2 s  sort: cpu  "
                        "(c cpu  m ram  n name  q quit)")
    assert lines[1] == "all 4 servers"
    assert lines[2] == "NAME      STATE     CPU %   RAM %  LAST SEEN (UTC)"
    assert lines[3] == "app-01    online     75.5    50.0  2026-12-03T12:00:00Z"
    assert lines[6] == "idle-01   -             -       -  2026-12-03T12:00:00Z"
    assert names(lines) == ["app-01", "web-01", "db-01", "idle-01"]
    assert len(lines) == 7


def test_rows_beyond_the_screen_are_not_made_and_a_tiny_terminal_is_cut() -> None:
    fleet = tuple(row(f"server-{index:05d}", index % 100) for index in range(10_000))
    lines = render_top(FleetView(fleet, more=True, fetched_at="12:00:01", total=250_000, sorted_by="cpu"), "cpu",
                       20, 5)
    assert len(lines) == 5 and all(len(line) <= 20 for line in lines)
    assert lines[3].startswith("server-~  ")  # the name's column shrinks to 8 first
    view = FleetView(fleet, more=True, fetched_at="12:00:01", total=250_000, sorted_by="cpu")
    assert render_top(view, "cpu", 200, 5)[1] == "the first 10000 servers of 250,000 by cpu"
    # the key just changed: the page on screen is still the old order's until the refresh lands
    assert render_top(view, "ram", 200, 5)[1] == "the first 10000 servers of 250,000 by cpu; reading by ram..."
    assert render_top(VIEW, "cpu", 0, 5) == render_top(VIEW, "cpu", 80, 0) == []
    assert render_top(VIEW, "cpu", 80, 2)[1].startswith("all 4")


def test_an_empty_fleet_and_an_unreachable_api() -> None:
    assert render_top(FleetView(fetched_at="12:00:00"), "cpu", 80, 10)[1:] == [
        "no servers", "NAME      STATE     CPU %   RAM %  LAST SEEN (UTC)"]
    assert render_top(FleetView(), "cpu", 80, 10)[1] == "reading the API..."
    down = FleetView(FLEET, problem="cannot reach http://127.0.0.1:9: [Errno 111] Connection refused",
                     fetched_at="11:59:59")
    lines = render_top(down, "name", 200, 10, interval=2.0)
    assert lines[1] == ("API unreachable: cannot reach http://127.0.0.1:9: [Errno 111] Connection refused "
                        "(retrying every 2 s; last read 11:59:59 UTC)")
    assert names(lines) == ["app-01", "db-01", "idle-01", "web-01"]  # the last rows read stay shown


def test_hostile_text_is_escaped_and_keeps_the_layout() -> None:
    hostile = FleetView((FleetRow("web" + HOSTILE, "online" + HOSTILE, 1.0, 2.0, HOSTILE),), problem=HOSTILE)
    lines = render_top(hostile, "cpu", 400, 10, url="http://x" + HOSTILE)
    text = "\n".join(lines)
    assert len(lines) == 4 and all(line.isprintable() for line in lines)
    for escape in ESCAPED:
        assert escape in text
    cut = render_top(hostile, "cpu", 60, 10)
    assert all(line.isprintable() and len(line) <= 60 for line in cut)
    assert cut[3].split()[0].endswith("~")  # a name wider than its column is cut, and says so


def test_wide_and_non_ascii_names() -> None:
    view = FleetView((row("сервер-01", 5.0), row("服务器-01", 9.0)), fetched_at="12:00:00")
    lines = render_top(view, "cpu", 30, 10)
    assert all(columns(line) <= 30 for line in lines)
    assert lines[3].startswith("服务器-~  online")
    plain = render_top(view, "cpu", 200, 10, ascii_only=True)
    assert all(line.isascii() for line in plain)
    assert plain[3].startswith("\\u670d\\u52a1\\u5668-01")
    assert fit("服务器", 5) == "服务" and fit("abc", 0) == ""


ROWS = st.builds(FleetRow, st.text(max_size=40), st.one_of(st.none(), st.text(max_size=10)),
                 st.one_of(st.none(), st.floats(0, 100)), st.one_of(st.none(), st.floats(0, 100)),
                 st.one_of(st.none(), st.text(max_size=25)))


@settings(max_examples=40, deadline=None)
@given(st.lists(ROWS, max_size=30), st.sampled_from(["cpu", "ram", "name"]), st.integers(0, 200),
       st.integers(0, 40), st.booleans())
def test_any_fleet_fits_any_terminal(rows: list[FleetRow], key: str, width: int, height: int,
                                     ascii_only: bool) -> None:
    lines = render_top(FleetView(tuple(rows), fetched_at="12:00:00"), key, width, height, ascii_only=ascii_only)
    assert len(lines) <= height and len(lines) <= len(rows) + 3
    assert all(columns(line) <= width and line.isprintable() for line in lines)
    if ascii_only:
        assert all(line.isascii() for line in lines)
    if width >= 120 and height >= len(rows) + 3:  # room for all: every row, in order
        values = [r.cpu if key == "cpu" else r.ram for r in sorted_rows(rows, key)] if key != "name" else []
        assert len(lines) == len(rows) + 3
        present = [value for value in values if value is not None]
        assert present == sorted(present, reverse=True)


class StubClient:
    """``ServerTrackClient.call`` answered from a dict of path -> body (an exception is raised)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.paths: list[str] = []

    def call(self, method: str, path: str) -> Any:
        assert method == "GET"
        self.paths.append(path)
        answer = self.answers.get(path, ClientError(404, "not found"))
        if isinstance(answer, Exception):
            raise answer
        return answer


def fleet_page(*entries: dict[str, Any], matched: int | None = None) -> dict[str, Any]:
    return {"total": 9, "matched": len(entries) if matched is None else matched, "rows": list(entries)}


def test_the_feed_reads_one_page_of_the_fleet_in_its_sort_order() -> None:
    stub = StubClient({
        "/fleet?sort=cpu&order=desc&limit=2": fleet_page(
            {"name": "b", "state": "online", "cpu": 30.0, "ram": 40.0, "last_seen": "T2"},
            {"name": "a", "state": "stale", "cpu": None, "ram": None, "last_seen": "T1"}, matched=7),
        "/fleet?sort=name&order=asc&limit=2": fleet_page(
            {"name": "a", "state": "stale", "cpu": True, "ram": "40", "last_seen": None}),
    })
    feed = FleetFeed(cast(ServerTrackClient, stub), limit=2, clock=lambda: 43_200.0)
    view = feed.read()
    assert view == FleetView((FleetRow("b", "online", 30.0, 40.0, "T2"), FleetRow("a", "stale", None, None, "T1")),
                             more=True, problem=None, fetched_at="12:00:00", limit=2, total=7, sorted_by="cpu")
    feed.set_sort("name")
    view = feed.read()  # a boolean or a string is no load
    assert view.rows == (FleetRow("a", "stale", None, None, None),) and not view.more and view.sorted_by == "name"
    assert stub.paths == ["/fleet?sort=cpu&order=desc&limit=2", "/fleet?sort=name&order=asc&limit=2"]
    with pytest.raises(ValueError):
        feed.set_sort("disk")


def test_an_unreachable_api_is_a_problem_that_keeps_the_last_rows() -> None:
    path = "/fleet?sort=cpu&order=desc&limit=5"
    stub = StubClient({path: fleet_page({"name": "a", "cpu": 5.0, "ram": 6.0})})
    feed = FleetFeed(cast(ServerTrackClient, stub), limit=5, interval=0.01)
    feed._view = feed.read()  # what the refresh thread keeps
    stub.answers[path] = ServerUnreachable("cannot reach http://x: refused", "http://x", "refused")
    down = feed.read()
    assert down.problem == "cannot reach http://x: refused" and down.rows == feed._view.rows
    stub.answers[path] = ClientError(401, "a token is needed\x1b[2J")
    assert feed.read().problem == "HTTP 401: a token is needed\\x1b[2J"
    stub.answers[path] = ["not", "an", "object"]
    assert feed.read().problem == "HTTP 200: GET /fleet did not answer a page of rows"


def test_the_refresh_thread_publishes_views_until_stopped() -> None:
    stub = StubClient({"/fleet?sort=cpu&order=desc&limit=5": fleet_page()})
    feed = FleetFeed(cast(ServerTrackClient, stub), limit=5, interval=0.01)
    feed.start()
    try:
        assert feed.wait_changed(5.0)
        assert feed.latest().fetched_at is not None and feed.latest().rows == ()
    finally:
        feed.stop()


def test_top_without_a_terminal_or_with_a_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--url", "http://127.0.0.1:9"]) == 2  # pytest's stdin and stdout are no terminal
    assert capsys.readouterr().err == ("servertrack: error: top needs a terminal (for a script: GET /fleet, or "
                                       "servertrack show NAME --json)\n")
    for flags in (["--limit", "0"], ["--limit", "501"], ["--interval", "0.01"], ["--interval", "soon"]):
        assert main(["top", *flags]) == 2
        assert capsys.readouterr().err.startswith("servertrack: error: argument --")
    args = parse(["top"], EnvironmentDefaults())
    assert (args.interval, args.limit) == (2.0, 50)
