"""``servertrack top`` for real, in a tmux pane of 120x30 on its own tmux server: the fleet's rows
appear busiest first, the keys re-sort them, a resize is followed, ``q`` quits with the terminal
restored (the alternate screen left, the tty back in canonical mode with echo); an unreachable API is
said so on screen and ``q`` still quits."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import servertrack_command, subprocess_env
from tests.test_client import free_port
from tests.test_end_to_end import http, running_service, wait_for

WAIT_SECONDS = 10.0
# What the pane's shell prints once top has returned: its exit code, then the tty's canonical mode and echo
# flags as stty names them ("icanon" if on, "-icanon" if off).
AFTER_TOP = "; echo \"top exited $?\"; stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)'; echo done; sleep 60"


class Pane:
    """The one pane of a tmux server of our own (``tmux -S SOCKET``)."""

    def __init__(self, socket: Path) -> None:
        self.tmux = ["tmux", "-S", str(socket)]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.tmux, *args], check=True, capture_output=True, text=True, timeout=10).stdout

    def text(self) -> str:
        return self.run("capture-pane", "-p")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait_for(self, what: str) -> str:
        """The pane's text once it holds ``what``; fail (showing the pane) after ``WAIT_SECONDS``."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            text = self.text()
            if what in text:
                return text
            assert time.monotonic() < deadline, f"timed out waiting for {what!r} in the pane:\n{text}"
            time.sleep(0.05)


@contextlib.contextmanager
def tmux_pane(command: str, width: int = 120, height: int = 30) -> Iterator[Pane]:
    """``command`` (a shell line) in a detached tmux session of ``width`` x ``height`` on a tmux server of its
    own; the server is killed on exit."""
    directory = Path(tempfile.mkdtemp(prefix="st-tmux-"))  # short: a socket path is limited to ~100 bytes
    pane = Pane(directory / "sock")
    # curses takes LINES and COLUMNS over the terminal's own size: a test runner may have set them (xdist does)
    env = {key: value for key, value in subprocess_env().items()
           if key not in ("TMUX", "TMUX_PANE", "LINES", "COLUMNS")}
    subprocess.run([*pane.tmux, "-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y", str(height), command],
                   check=True, env=env, timeout=10)
    try:
        yield pane
    finally:
        subprocess.run([*pane.tmux, "kill-server"], check=False, capture_output=True, timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def table_names(lines: list[str]) -> list[str]:
    """The NAME cells of the rows under the header line."""
    header = next(index for index, line in enumerate(lines) if line.startswith("NAME "))
    return [line.split()[0] for line in lines[header + 1:] if line.strip()]


def top_command(url: str, *flags: str) -> str:
    return shlex.join(servertrack_command("top", "--url", url, "--interval", "0.3", *flags)) + AFTER_TOP


def assert_restored(pane: Pane, code: int = 0) -> None:
    text = pane.wait_for("\ndone\n")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[-4:] == [f"top exited {code}", "icanon", "echo", "done"], text  # canonical mode and echo are back on
    assert "LAST SEEN" not in text and "servertrack top" not in text, text  # the alternate screen is gone


def test_top_shows_the_fleet_busiest_first_resorts_resizes_and_quits_on_q() -> None:
    with running_service() as service:
        fleet = {"top-a.example": (10.0, 90.0), "top-b.example": (95.5, 5.0), "top-c.example": (50.0, 50.0),
                 "top-d.example": (1.0, 1.0)}
        loads = [{"server": name, "cpu": cpu, "ram": ram} for name, (cpu, ram) in fleet.items()]
        assert http("POST", f"{service.url}/loads", loads)[0] == 202
        # three rows a page: the service sorts the whole fleet, so the busiest are shown, not the first by name
        with tmux_pane(top_command(service.url, "--limit", "3")) as pane:  # started before the samples apply
            pane.wait_for("the first 3 servers of 4 by cpu")  # a refresh after the apply
            lines = pane.lines()
            assert lines[0].startswith(f"servertrack top  {service.url}")
            assert table_names(lines) == ["top-b.example", "top-c.example", "top-a.example"]
            # judged from its last sample as if it sampled every second: online, then stale
            assert lines[3].split()[1] in ("online", "stale") and lines[3].split()[2:4] == ["95.5", "5.0"]
            pane.run("send-keys", "m")
            pane.wait_for("the first 3 servers of 4 by ram")
            assert table_names(pane.lines()) == ["top-a.example", "top-c.example", "top-b.example"]
            pane.run("send-keys", "n")
            pane.wait_for("the first 3 servers of 4 by name")
            assert table_names(pane.lines()) == ["top-a.example", "top-b.example", "top-c.example"]
            pane.run("send-keys", "m")
            pane.wait_for("the first 3 servers of 4 by ram")
            pane.run("resize-window", "-x", "30", "-y", "5")
            wait_for(lambda: len(pane.lines()) == 5 and pane.lines()[3].startswith("top-a.e~"), WAIT_SECONDS,
                     "the screen redrawn at 30x5")
            assert all(len(line) <= 30 for line in pane.lines()) and table_names(pane.lines()) == ["top-a.e~", "top-c.e~"]
            pane.run("resize-window", "-x", "120", "-y", "30")
            pane.run("send-keys", "q")
            assert_restored(pane)


def test_top_says_the_api_is_unreachable_and_still_quits_on_q() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with tmux_pane(top_command(url)) as pane:
        text = pane.wait_for("API unreachable: cannot reach")
        assert "Connection refused" in text and "retrying every 0.3 s" in text
        pane.run("send-keys", "q")
        assert_restored(pane)


def test_sigterm_restores_the_terminal_too() -> None:
    with tmux_pane(top_command(f"http://127.0.0.1:{free_port()}")) as pane:
        pane.wait_for("API unreachable")
        shell = int(pane.run("list-panes", "-F", "#{pane_pid}").strip())
        top = subprocess.run(["pgrep", "-P", str(shell)], check=True, capture_output=True, text=True).stdout.split()
        assert len(top) == 1
        os.kill(int(top[0]), signal.SIGTERM)
        assert_restored(pane, 128 + signal.SIGTERM)
