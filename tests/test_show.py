"""``servertrack show``: sparklines of the minute and hour windows (Unicode and ASCII), gaps for empty
buckets, the figures beside them, ``--json`` for scripts; rendering tested pure, the command end to end."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from servertrack.cli import main
from servertrack.console import render_loads
from servertrack.sparklines import ASCII, UNICODE
from tests.conftest import servertrack_command, subprocess_env
from tests.test_console_escaping import HOSTILE, assert_inert, poisoned
from tests.test_end_to_end import http, running_service, wait_for


def bucket(start: str, samples: int, cpu: float | None = None, ram: float | None = None) -> dict[str, Any]:
    if not samples:
        return {"start": start, "samples": 0, "cpu": None, "ram": None}
    assert cpu is not None and ram is not None
    return {"start": start, "samples": samples, "cpu": {"avg": cpu, "min": cpu - 1, "max": cpu + 1},
            "ram": {"avg": ram, "min": ram, "max": ram}}


WINDOW: dict[str, Any] = {
    "server": "web-01.example", "last_seen": "2026-11-25T14:20:01Z",
    "minutes": [bucket("2026-11-25T14:17:00Z", 2, 10.0, 40.0), bucket("2026-11-25T14:18:00Z", 0),
                bucket("2026-11-25T14:19:00Z", 1, 95.0, 60.0), bucket("2026-11-25T14:20:00Z", 0)],
    "hours": [bucket("2026-11-25T13:00:00Z", 0), bucket("2026-11-25T14:00:00Z", 3, 50.0, 50.0)],
}


def test_unicode_sparklines_have_gaps_for_empty_buckets_and_the_window_figures() -> None:
    lines = render_loads(WINDOW, UNICODE).splitlines()
    assert lines[:8] == [
        "web-01.example  (last seen 2026-11-25T14:20:01Z)",
        "",
        "Last 60 minutes, a character a minute (0-100 %, ' ' no samples)",
        "  cpu  |▁ █ |  now  95.0  min   9.0  avg  38.3  max  96.0",  # avg weighted: (2*10 + 95) / 3
        "  ram  |▄ ▅ |  now  60.0  min  40.0  avg  46.7  max  60.0",
        "Last 24 hours, a character an hour",
        "  cpu  | ▅|  now  50.0  min  49.0  avg  50.0  max  51.0",
        "  ram  | ▅|  now  50.0  min  50.0  avg  50.0  max  50.0",
    ]
    assert lines[8:10] == ["", "Last 60 minutes"]  # the table follows, as without sparklines
    assert lines[9:] == render_loads(WINDOW).splitlines()[2:]


def test_ascii_sparklines_are_ascii_only_and_a_window_without_samples_says_so() -> None:
    empty = {**WINDOW, "minutes": [bucket("2026-11-25T14:20:00Z", 0)] * 3}
    text = render_loads(empty, ASCII)
    assert text.isascii()
    lines = text.splitlines()
    assert lines[3] == "  cpu  |   |  no samples"
    assert lines[6] == "  cpu  | =|  now  50.0  min  49.0  avg  50.0  max  51.0"


def test_hostile_names_stay_inert_with_sparklines() -> None:
    hostile = render_loads(poisoned(WINDOW), UNICODE)
    assert_inert(hostile)
    assert "\x1b" not in hostile and HOSTILE not in hostile
    assert hostile.count("\n") == render_loads(WINDOW, UNICODE).count("\n")


def test_show_json_and_show_in_the_c_locale_end_to_end(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with running_service() as service:
        now = time.time()
        loads = [{"server": "spark-01", "cpu": (index * 13) % 100 + 0.5, "ram": 42.0, "ts": now - index * 120}
                 for index in range(10)]
        assert http("POST", f"{service.url}/loads", loads)[0] == 202
        wait_for(lambda: http("GET", f"{service.url}/servers/spark-01/loads")[0] == 200, 5, "the samples applied")

        assert main(["show", "spark-01", "--url", service.url, "--json"]) == 0
        printed = capsys.readouterr()
        assert printed.err == ""
        body = json.loads(printed.out)  # one JSON document, nothing else on stdout
        assert body == http("GET", f"{service.url}/servers/spark-01/loads")[1]
        assert len(body["minutes"]) == 60 and len(body["hours"]) == 24
        assert sum(item["samples"] for item in body["minutes"]) == 10
        assert main(["show", "nope", "--url", service.url, "--json"]) == 1
        printed = capsys.readouterr()
        assert printed.out == "" and "unknown server" in printed.err
        monkeypatch.setenv("LC_ALL", "C.UTF-8")
        assert main(["show", "spark-01", "--url", service.url]) == 0  # capsys's stdout encodes UTF-8
        assert any(char in capsys.readouterr().out for char in "▁▂▃▄▅▆▇█")
        assert main(["show", "spark-01", "--url", service.url, "--ascii"]) == 0
        assert capsys.readouterr().out.isascii()

        def show(**env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(servertrack_command("show", "spark-01", "--url", service.url), check=False,
                                  env={**subprocess_env(), **env}, capture_output=True, text=True, timeout=30)

        plain = show(LANG="C", LC_ALL="C")  # a real process: its stdout's encoding is set at its start
        assert plain.returncode == 0 and plain.stdout.isascii(), plain.stdout
        assert "  cpu  |" in plain.stdout and "#" in plain.stdout
