"""Shared helpers for the ServerTrack benchmarks (not a benchmark itself).

- ``Service``: start a real ``python -m servertrack serve`` subprocess on
  127.0.0.1 (random ports), parse its ready line, poll ``/stats``, read its
  RSS and CPU time with psutil, stop it (SIGTERM, then kill).
- ``Process``: the same start/stop discipline for any helper subprocess
  (load generator, agent).
- ``http_json``: tiny HTTP client for 127.0.0.1 that never uses a proxy.
- ``median``, ``percentile``, ``verdict``, ``reproduce_command``: how every script reports.

Every subprocess is started with ``REPO`` on ``PYTHONPATH`` and the same
interpreter as the benchmark, and every start is paired with a stop in a
``finally`` (the classes are context managers).

Import it before ``servertrack``: it puts this checkout on ``sys.path``.
"""

from __future__ import annotations

import json
import math
import os
import re
import selectors
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
PYTHON = sys.executable
if REPO not in sys.path:  # the benchmarks import servertrack from this checkout
    sys.path.insert(0, REPO)
READY_PATTERN = re.compile(r"servertrack serving http=(\S+) ingest=(\S+)")
STOP_GRACE_SECONDS = 5.0

# Never send benchmark traffic through a proxy: everything goes to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def child_env() -> dict[str, str]:
    """Environment for subprocesses: the repo importable, no proxies, no SERVERTRACK_* surprises."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVERTRACK_")}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


class Process:
    """A subprocess we own: started in ``__init__``, stopped (TERM, then KILL) by ``stop``."""

    def __init__(self, argv: Sequence[str], stdout: int | None = subprocess.PIPE, name: str = "") -> None:
        self.name = name or os.path.basename(argv[1] if len(argv) > 1 else argv[0])
        self._stderr = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            list(argv), cwd=REPO, env=child_env(), stdout=stdout, stderr=self._stderr, stdin=subprocess.DEVNULL
        )
        self.pid = self.popen.pid
        self.ps = psutil.Process(self.pid)

    def read_line(self, timeout: float) -> str:
        """One line of stdout, or raise ``RuntimeError`` after ``timeout`` seconds / on exit."""
        assert self.popen.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.popen.stdout, selectors.EVENT_READ)
        try:
            if not selector.select(timeout):
                raise RuntimeError(f"{self.name}: no output within {timeout:.0f} s\n{self.stderr_text()}")
        finally:
            selector.close()
        line = self.popen.stdout.readline().decode(errors="replace")
        if not line:
            self.popen.wait(timeout=2)
            raise RuntimeError(f"{self.name} exited (code {self.popen.returncode})\n{self.stderr_text()}")
        return line.strip()

    def stderr_text(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def wait(self, timeout: float) -> int | None:
        """Wait for the process to exit by itself; None if it is still running after ``timeout``."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Safe to call twice."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
            except ProcessLookupError:
                pass
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()
        return self.popen.returncode

    def rss(self) -> int:
        """Resident set size in bytes."""
        return self.ps.memory_info().rss

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Service(Process):
    """A real ``servertrack serve`` on 127.0.0.1 with random HTTP and ingest ports."""

    def __init__(self, max_servers: int = 200_000, ready_timeout: float = 30.0, flags: Sequence[str] = ()) -> None:
        argv = [
            PYTHON, "-m", "servertrack", "serve",
            "--host", "127.0.0.1", "--port", "0",
            "--ingest", "tcp://127.0.0.1:*", "--max-servers", str(max_servers),
            *([] if "--store" in flags else ["--store", "memory"]), *flags,
        ]  # fmt: skip
        super().__init__(argv, name="servertrack serve")
        try:
            line = self.read_line(ready_timeout)
            match = READY_PATTERN.search(line)
            if match is None:
                raise RuntimeError(f"unexpected ready line from serve: {line!r}")
        except BaseException:
            self.stop()
            raise
        self.url, self.ingest = match.group(1), match.group(2)
        host_port = self.url.split("://", 1)[1]
        self.host, self.port = host_port.rsplit(":", 1)[0], int(host_port.rsplit(":", 1)[1])
        if self.host != "127.0.0.1" or not self.ingest.startswith("tcp://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"service is not on 127.0.0.1: {line!r}")

    def __enter__(self) -> Service:
        return self

    def stats(self) -> dict[str, Any]:
        """``GET /stats``."""
        return http_json("GET", self.url + "/stats")[1]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, poll: float = 0.25) -> dict[str, Any]:
        """Poll ``/stats`` until ``predicate(stats)``; return the last stats (check the predicate again)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats) or time.monotonic() >= deadline:
                return stats
            time.sleep(poll)

    def wait_idle(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until nothing is pending and ``applied``/``received`` stop moving for one apply tick."""
        deadline = time.monotonic() + timeout
        previous = self.stats()
        while time.monotonic() < deadline:
            time.sleep(1.2)
            current = self.stats()
            if (
                current["pending"] == 0
                and current["applied"] == previous["applied"]
                and current["received"] == previous["received"]
            ):
                return current
            previous = current
        return previous


def http_json(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """Send ``body`` as JSON (if given) to a 127.0.0.1 URL; return ``(status, decoded JSON)``."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"benchmarks only talk to 127.0.0.1, not {url}")
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def loadgen_argv(endpoint: str, rate: int, servers: int, seconds: float, **options: Any) -> list[str]:
    """Command line of ``bench/loadgen.py`` printing one JSON result line (see loadgen.py)."""
    argv = [
        PYTHON, os.path.join(BENCH, "loadgen.py"), "--endpoint", endpoint,
        "--rate", str(rate), "--servers", str(servers), "--seconds", str(seconds), "--json",
    ]  # fmt: skip
    for key, value in options.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


def last_json_line(process: Process, timeout: float) -> dict[str, Any]:
    """Wait for ``process`` to exit by itself and return the last JSON line it printed."""
    if process.wait(timeout) is None:
        raise RuntimeError(f"{process.name} still running after {timeout:.0f} s")
    assert process.popen.stdout is not None
    lines = [line for line in process.popen.stdout.read().decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{process.name} printed no JSON result\n{process.stderr_text()}")
    return json.loads(lines[-1])


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def verdict(label: str, value: float, target: float, unit: str, higher_is_better: bool) -> bool:
    """Print ``label: value (target >= / <= target): met|NOT MET`` and return whether it is met."""
    met = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    print(f"  {label}: {fmt(value)} {unit}  (target {sign} {fmt(target)} {unit}): {'met' if met else 'NOT MET'}")
    return met


def fmt(value: float) -> str:
    """Numbers as people read them: 123,456 or 12.3 or 0.0123."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def print_runs(label: str, values: Sequence[float], unit: str) -> None:
    """``label per run: a, b, c unit; median m``."""
    shown = ", ".join(fmt(v) for v in values)
    print(f"  {label} per run: {shown} {unit}; median {fmt(median(values))} {unit}")


def reproduce_command() -> str:
    """The exact command that reproduces this run."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return f"cd {shlex.quote(REPO)} && PYTHONPATH=. {shlex.quote(PYTHON)} {shlex.join([script, *sys.argv[1:]])}"


def print_header(title: str) -> None:
    """Title, machine summary and the reproduce command."""
    load = os.getloadavg()
    print(f"== {title}")
    print(f"  machine: {psutil.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  reproduce: {reproduce_command()}")
