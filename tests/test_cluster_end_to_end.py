"""End to end for the cluster-stats transcript's API: its own client, pointed at a real ``serve`` with
only its base URL changed to ``http://HOST:PORT/cluster``, and a real agent seen through it.

``TranscriptClient`` is written from the transcript's calls and the shapes the specification gives
(``GET /nodes`` a bare list of IP strings; ``/nodes/{ip}``, ``/cpu``, ``/memory``, ``/proc`` (a list
of pids), ``/proc/{pid}``; ``POST /nodes``, ``PUT`` and ``DELETE /nodes/{ip}``), not from the code.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.conftest import servertrack_command, subprocess_env
from tests.node_fixtures import process_entry, stats_body
from tests.test_end_to_end import START_SECONDS, Service, http, service, stop, wait_for

__all__ = ["service"]  # the fixture, shared with the core end-to-end tests


class TranscriptError(Exception):
    """The API answered an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class TranscriptClient:
    """The cluster-stats client: every call is relative to ``base_url``; errors raise ``TranscriptError``."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raise TranscriptError(error.code, json.load(error)) from None

    @staticmethod
    def _ip(ip: str) -> str:
        return urllib.parse.quote(ip, safe="")

    # the monitor side
    def nodes(self) -> list[str]:
        return self._call("GET", "/nodes")[1]

    def node(self, ip: str) -> dict[str, Any]:
        return self._call("GET", f"/nodes/{self._ip(ip)}")[1]

    def cpu(self, ip: str) -> dict[str, Any]:
        return self._call("GET", f"/nodes/{self._ip(ip)}/cpu")[1]

    def memory(self, ip: str) -> dict[str, Any]:
        return self._call("GET", f"/nodes/{self._ip(ip)}/memory")[1]

    def processes(self, ip: str) -> list[int]:
        return self._call("GET", f"/nodes/{self._ip(ip)}/proc")[1]

    def process(self, ip: str, pid: int) -> dict[str, Any]:
        return self._call("GET", f"/nodes/{self._ip(ip)}/proc/{pid}")[1]

    # the agent side
    def add_node(self, info: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._call("POST", "/nodes", info)

    def update_node(self, ip: str, stats: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/nodes/{self._ip(ip)}", stats)[1]

    def remove_node(self, ip: str) -> int:
        return self._call("DELETE", f"/nodes/{self._ip(ip)}")[0]


def _error_of(call: Any) -> TranscriptError:
    try:
        call()
    except TranscriptError as error:
        return error
    raise AssertionError("the call succeeded")


def test_the_transcript_client_works_with_only_its_base_url_changed(service: Service) -> None:
    client = TranscriptClient(f"{service.url}/cluster")
    assert client.nodes() == []
    status, node = client.add_node({"ip": "192.168.2.10", "hostname": "cluster-e2e", "boottime": 1_700_000_000.0,
                                    "os": "Linux 6.1", "cpu_count": 2})
    assert status == 201
    assert (node["name"], node["ips"], node["boottime"], node["loadavg"]) == (
        "cluster-e2e", ["192.168.2.10"], 1_700_000_000.0, None)
    assert client.add_node({"ip": ["192.168.2.9", "127.0.0.1"], "hostname": "cluster-e2e-2"})[0] == 201
    assert client.nodes() == ["192.168.2.9", "192.168.2.10"]

    top = [process_entry(4242, name="worker", status="sleeping"), process_entry(17)]
    stats = stats_body(processes={"count": 2, "top_cpu": top, "top_memory": top[::-1]})
    updated = client.update_node("192.168.2.10", stats)
    assert (updated["loadavg"], updated["cpu_usage_percent"], updated["memory_usage_percent"]) == (
        stats["cpu"]["load_avg"], stats["cpu"]["per_cpu"], stats["memory"]["percent"])

    node = client.node("192.168.2.10")
    assert type(node["boottime"]) is float and len(node["loadavg"]) == 3
    assert client.cpu("192.168.2.10")["per_cpu"] == stats["cpu"]["per_cpu"]
    assert client.memory("192.168.2.10")["memory"] == stats["memory"]
    assert client.processes("192.168.2.10") == [17, 4242]
    entry = client.process("192.168.2.10", 4242)
    assert (entry["pid"], entry["name"], entry["status"]) == (4242, "worker", "sleeping")
    assert {"cpu_percent", "memory_percent", "rss"} <= set(entry)

    # the same registry as the native API
    assert http("GET", f"{service.url}/nodes/cluster-e2e")[1] == node
    assert http("GET", f"{service.url}/nodes/cluster-e2e/proc")[1] == [17, 4242]

    # bad input: JSON errors with the status the specification gives
    assert _error_of(lambda: client.node("cluster-e2e")).status == 400  # a name is not an address
    assert _error_of(lambda: client.node("192.168.2.300")).status == 400
    assert _error_of(lambda: client.node("192.168.2.99")).status == 404
    assert _error_of(lambda: client.process("192.168.2.10", 999)).status == 404
    assert _error_of(lambda: client.processes("192.168.2.9")).status == 404  # no stats yet
    assert _error_of(lambda: client.add_node({"ip": "192.168.2.11"})).status == 400  # no hostname
    error = _error_of(lambda: client.update_node("192.168.2.10", {"cpu": "busy"}))
    assert error.status == 400 and "cpu" in error.body["error"]

    assert client.remove_node("192.168.2.10") == 204
    assert client.nodes() == ["192.168.2.9"]
    counters = http("GET", f"{service.url}/stats")[1]["kinds"]
    assert (counters["hello"]["applied"], counters["snapshot"]["applied"]) == (2, 1)
    assert (counters["hello"]["dropped"], counters["snapshot"]["dropped"]) == ({"missing_field": 1}, {"bad_field": 1})
    assert stop(service.process, signal.SIGTERM) == 0


def _first_non_loopback(ips: list[str]) -> str | None:
    return next((ip for ip in ips if not ipaddress.ip_address(ip).is_loopback), None)


def test_a_real_agent_is_read_through_the_transcript_api(service: Service) -> None:
    agent = subprocess.Popen(
        servertrack_command("agent", "--collector", service.ingest, "--name", "cluster-agent", "--interval", "0.2",
                            "--stats-every", "2", "--process-interval", "0"),
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        def snapshot_in() -> bool:
            status, body = http("GET", f"{service.url}/nodes/cluster-agent")
            return status == 200 and body["stats_at"] is not None
        wait_for(snapshot_in, START_SECONDS, "the agent's hello and first snapshot")
        native = http("GET", f"{service.url}/nodes/cluster-agent")[1]
        assert type(native["boottime"]) in (int, float) and len(native["loadavg"]) == 3
        assert len(native["cpu_usage_percent"]) >= 1 and 0 <= native["memory_usage_percent"] <= 100
        pids = http("GET", f"{service.url}/nodes/cluster-agent/proc")[1]
        assert pids and pids == sorted(set(pids)) and all(type(pid) is int for pid in pids)

        client = TranscriptClient(f"{service.url}/cluster")
        address = _first_non_loopback(native["ips"])
        if address is None:  # a host with loopback addresses only: the listing leaves the node out
            assert client.nodes() == []
        else:
            assert client.nodes() == [address]
            assert client.node(address)["name"] == "cluster-agent"

            def a_listed_process_reads_back() -> bool:  # a newer snapshot may drop a pid in between
                listed = client.processes(address)
                assert listed and all(type(pid) is int for pid in listed)
                try:
                    entry = client.process(address, listed[0])
                except TranscriptError as error:
                    assert error.status == 404
                    return False
                assert entry["pid"] == listed[0] and {"name", "status", "cpu_percent", "memory_percent"} <= set(entry)
                return True
            wait_for(a_listed_process_reads_back, START_SECONDS, "a listed process read back")
        assert stop(agent) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        if agent.stderr is not None:
            agent.stderr.close()
    assert stop(service.process, signal.SIGTERM) == 0
