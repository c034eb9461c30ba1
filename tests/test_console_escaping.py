"""Hostile text from the API cannot drive the terminal: every remote string is printed escaped.

Each text field of the valid shapes the CLI tests use gets a payload that would set the window
title, return the carriage, forge a line, end a C string and turn the line around; the rendered
output must hold none of it raw, keep its line count, and show the escapes instead.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from typing import Any

import pytest

from servertrack import console
from servertrack.console import ApiUnreachable, fetch_json, render_loads, render_node, render_nodes
from tests.test_cli import LOADS, NODE, NODE_LIST, STATS

HOSTILE = "\x1b]0;pwned\x07" + "\r" + "\n" + "\x00" + "\u202e"
ESCAPED = ["\\x1b]0;pwned\\x07", "\\x0d", "\\x0a", "\\x00", "\\u202e"]
COLOURS = {"online": "32", "stale": "33", "offline": "31"}

LOAD_WINDOW: dict[str, Any] = {
    "server": "web-01.example", "last_seen": "2026-11-25T14:20:01Z",
    "minutes": [
        {"start": "2026-11-25T14:19:00Z", "samples": 60, "cpu": {"avg": 22.5, "min": 1.0, "max": 97.5},
         "ram": {"avg": 40.0, "min": 39.0, "max": 41.0}},
        {"start": "2026-11-25T14:20:00Z", "samples": 0, "cpu": None, "ram": None},
    ],
    "hours": [
        {"start": "2026-11-25T14:00:00Z", "samples": 1200, "cpu": {"avg": 20.0, "min": 0.5, "max": 99.0},
         "ram": {"avg": 41.0, "min": 38.0, "max": 44.0}},
    ],
}


def poisoned(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """``value`` with the payload around every string inside it (but those under a key in ``keep``)."""
    if isinstance(value, str):
        return HOSTILE + value + HOSTILE
    if isinstance(value, list):
        return [poisoned(item, keep) for item in value]
    if isinstance(value, dict):
        return {key: item if key in keep else poisoned(item, keep) for key, item in value.items()}
    return value


def assert_inert(text: str) -> None:
    """Nothing but printable characters and line breaks, once the renderer's own colour codes are removed."""
    for state, code in COLOURS.items():
        text = text.replace(f"\x1b[{code}m{state}\x1b[0m", state)
    unprintable = sorted({char for char in text if not char.isprintable() and char != "\n"})
    assert unprintable == [], unprintable


def assert_escaped(text: str) -> None:
    for escape in ESCAPED:
        assert escape in text, escape


@pytest.mark.parametrize("colour", [False, True])
def test_a_hostile_node_list(colour: bool) -> None:
    clean, hostile = render_nodes(NODE_LIST, colour), render_nodes(poisoned(NODE_LIST), colour)
    assert_inert(hostile)
    assert "\x1b" not in hostile  # no state is a known one: nothing is coloured
    assert hostile.count("\n") == clean.count("\n")
    assert_escaped(hostile)
    assert "\\x1b]0;pwned\\x07\\x0d\\x0a\\x00\\u202edb-01.example" in hostile.splitlines()[1]


def test_a_hostile_node_list_still_colours_its_states() -> None:
    hostile = render_nodes(poisoned(NODE_LIST, keep=frozenset({"state"})), colour=True)
    assert_inert(hostile)
    assert hostile.count("\x1b") == 2 * len(NODE_LIST["nodes"])  # only the colour codes, one pair a state
    assert "\x1b[31moffline\x1b[0m" in hostile and "\x1b[32monline\x1b[0m" in hostile
    assert hostile.count("\n") == render_nodes(NODE_LIST).count("\n")
    assert_escaped(hostile)


@pytest.mark.parametrize("colour", [False, True])
def test_a_hostile_node_with_its_stats(colour: bool) -> None:
    clean = render_node(NODE, STATS, LOADS, colour)
    hostile = render_node(poisoned(NODE), poisoned(STATS), poisoned(LOADS), colour)
    assert_inert(hostile)
    assert "\x1b" not in hostile
    assert hostile.count("\n") == clean.count("\n")
    assert_escaped(hostile)
    lines = hostile.splitlines()
    prefix = "".join(ESCAPED)
    for field in ("/dev/vda1", "ext4", "eth0", "postgres", "java", "root", "Linux 6.1.0", "x86_64", "0.2.0",
                  "10.0.0.5", "2026-11-20T10:00:00Z", "2026-11-25T14:20:00Z", "1h"):
        assert any(prefix + field + prefix in line for line in lines), field


def test_a_hostile_node_state_is_not_coloured_but_escaped() -> None:
    hostile = render_node(poisoned(NODE, keep=frozenset({"name"})), None, poisoned(LOADS), colour=True)
    assert_inert(hostile)
    first = hostile.splitlines()[0]
    assert first.startswith("web-01.example  \\x1b]0;pwned\\x07\\x0d\\x0a\\x00\\u202eonline\\x1b]0;pwned")
    assert hostile.count("\n") == render_node(NODE, None, LOADS).count("\n")


def test_numbers_sent_as_hostile_strings_are_escaped_too() -> None:
    process = {**STATS["processes"]["top_cpu"][0], "pid": HOSTILE}
    nic = {**STATS["network"][0], "rx_errors": HOSTILE, "tx_drops": HOSTILE}
    stats = {**STATS, "network": [nic], "processes": {**STATS["processes"], "count": HOSTILE, "top_cpu": [process]}}
    hostile = render_node(NODE, stats, {**LOADS, "samples": HOSTILE})
    assert_inert(hostile)
    assert hostile.count("\n") == render_node(NODE, STATS, LOADS).count("\n")
    assert_escaped(hostile)
    window = {**LOAD_WINDOW, "hours": [{**LOAD_WINDOW["hours"][0], "samples": HOSTILE}]}
    assert_inert(render_loads(window))


def test_a_hostile_server_window() -> None:
    clean, hostile = render_loads(LOAD_WINDOW), render_loads(poisoned(LOAD_WINDOW))
    assert_inert(hostile)
    assert "\x1b" not in hostile
    assert hostile.count("\n") == clean.count("\n")
    assert_escaped(hostile)
    assert hostile.splitlines()[0].startswith("\\x1b]0;pwned\\x07\\x0d\\x0a\\x00\\u202eweb-01.example")


def test_the_clean_server_window_is_unchanged() -> None:
    assert render_loads(LOAD_WINDOW).splitlines()[:5] == [
        "web-01.example  (last seen 2026-11-25T14:20:01Z)",
        "",
        "Last 60 minutes",
        "  start (UTC)      samples     cpu    min    max      ram    min    max",
        "  14:19                 60    22.5    1.0   97.5     40.0   39.0   41.0  cpu ####................",
    ]


@pytest.mark.parametrize("command", ["show", "nodes", "node"])
def test_a_hostile_api_error_message_is_printed_escaped(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "fetch_json", lambda base_url, path, trust=None: (409, {"error": "refused" + HOSTILE}))
    out, err = io.StringIO(), io.StringIO()
    if command == "show":
        assert console.show_server("http://127.0.0.1:9", "web-01", out) == 1
        printed = out.getvalue()
    elif command == "nodes":
        assert console.list_nodes("http://127.0.0.1:9", None, out, err) == 1
        printed = err.getvalue()
    else:
        assert console.show_node("http://127.0.0.1:9", "web-01", out, err) == 1
        printed = err.getvalue()
    assert printed == "servertrack: refused" + "".join(ESCAPED) + "\n"


def test_a_hostile_unreachable_reason_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url: str, timeout: float, **_: Any) -> Any:
        raise urllib.error.URLError("certificate names evil" + HOSTILE)

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(ApiUnreachable) as raised:
        fetch_json("http://127.0.0.1:9", "/nodes")
    message = str(raised.value)
    assert message.isprintable() and message.endswith("evil" + "".join(ESCAPED))
