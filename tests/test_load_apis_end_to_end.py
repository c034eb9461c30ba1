"""The earlier monitors' clients against a real ``servertrack serve``: ``/perf`` with urllib form posts,
``/server`` with JSON, and a real agent's samples read back through ``/perf/{host}/last_minute``.

The clients below are written from those APIs' contracts, as their users' scripts would be.
"""

from __future__ import annotations

import calendar
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.conftest import servertrack_command, subprocess_env
from tests.test_end_to_end import START_SECONDS, running_service, wait_for


class PerfClient:
    """The "threaded REST" monitor's client: form posts, JSON reads."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def report(self, host: str, cpuload: float, memload: float) -> tuple[int, Any]:
        data = urllib.parse.urlencode({"cpuload": cpuload, "memload": memload}).encode()
        return self._open(urllib.request.Request(f"{self.base_url}/perf/{host}/", data=data))  # urllib: a form POST

    def history(self, host: str, mode: str) -> tuple[int, Any]:
        return self._open(urllib.request.Request(f"{self.base_url}/perf/{host}/{mode}"))

    @staticmethod
    def _open(request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


class ServerClient:
    """The Tornado monitor's client: JSON both ways."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def report(self, name: str, cpu: float, ram: float) -> int:
        request = urllib.request.Request(f"{self.base_url}/server/{name}", data=json.dumps({"cpu": cpu, "ram": ram}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status

    def history(self, name: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.base_url}/server/{name}", timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


def test_the_perf_and_server_clients_work_against_a_real_service() -> None:
    with running_service() as service:
        perf, server = PerfClient(service.url), ServerClient(service.url)
        status, body = perf.report("web-01", 12.5, 40.0)
        assert 200 <= status < 300 and isinstance(body, dict)
        assert perf.report("web-01", 17.5, 60.0)[0] < 300
        assert 200 <= server.report("db-01", 30.0, 70.0) < 300

        def applied() -> bool:
            status, entries = perf.history("web-01", "last_hour")
            return status == 200 and sum(entry["samples"] for entry in entries) == 2  # the minute may turn between
        wait_for(applied, START_SECONDS, "the /perf samples applied")
        for mode, count, width in (("last_minute", 60, 1), ("last_hour", 60, 60), ("last_day", 24, 3600)):
            status, entries = perf.history("web-01", mode)
            assert status == 200 and len(entries) == count
            starts = [calendar.timegm(time.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S")) for entry in entries]
            assert starts == [starts[0] + index * width for index in range(count)]
            assert all(entry["interval"] == width for entry in entries)
            assert starts[-1] <= time.time() < starts[-1] + width + 5
            used = [entry for entry in entries if entry["samples"]]
            assert sum(entry["samples"] for entry in used) == 2
            assert sum(entry["cpuload"] * entry["samples"] for entry in used) == 30.0
            assert all(entry["cpuload"] is None and entry["memload"] is None for entry in entries if not entry["samples"])
        assert perf.history("nobody", "last_hour")[0] == 404
        status, error = perf.history("web-01", "last_year")
        assert status == 404 and set(error) == {"error"}
        bad = urllib.request.Request(f"{service.url}/perf/web-01/", data=b"cpuload=high&memload=1")
        status, error = PerfClient._open(bad)
        assert status == 400 and "cpuload" in error["error"]

        wait_for(lambda: server.history("db-01")[0] == 200, START_SECONDS, "the /server sample applied")
        status, body = server.history("db-01")
        assert len(body["last_60_minutes"]["cpu"]) == 60 and len(body["last_24_hours"]["ram"]) == 24
        recent = body["last_60_minutes"]["cpu"][-2:]  # the minute may have turned since the POST
        assert sorted(recent, key=lambda value: value is None) == [30.0, None]
        assert body["last_60_minutes"]["cpu"][:-2] == [None] * 58
        assert 70.0 in body["last_24_hours"]["ram"][-2:]
        assert server.history("nobody")[0] == 404


def test_an_agents_samples_fill_the_per_second_window() -> None:
    with running_service() as service:
        agent = subprocess.Popen(
            servertrack_command("agent", "--collector", service.ingest, "--name", "secs-node", "--interval", "0.25"),
            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            perf = PerfClient(service.url)

            def seconds_filled() -> bool:
                status, entries = perf.history("secs-node", "last_minute")
                return status == 200 and sum(1 for entry in entries if entry["samples"]) >= 3
            wait_for(seconds_filled, START_SECONDS, "three seconds with samples")
            _, entries = perf.history("secs-node", "last_minute")
            used = [entry for entry in entries if entry["samples"]]
            # four samples a second at --interval 0.25 (fewer in a partial second, or when a busy
            # machine makes the agent skip a tick), never more than five
            assert 2 <= max(entry["samples"] for entry in used) <= 5
            assert all(0 <= entry["cpuload"] <= 100 and 0 <= entry["memload"] <= 100 for entry in used)
        finally:
            agent.terminate()
            agent.wait(timeout=10)
            assert agent.stderr is not None
            agent.stderr.close()
