"""End to end: real `servertrack serve` and `servertrack agent` processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import zmq

from tests.conftest import servertrack_command, subprocess_env

START_SECONDS = 15.0
STOP_SECONDS = 2.0


@dataclass
class Service:
    process: subprocess.Popen[str]
    url: str
    ingest: str
    control: str = ""


def http(method: str, url: str, body: object | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_line(process: subprocess.Popen[str], seconds: float) -> str:
    """The first stdout line of ``process``, or fail after ``seconds``."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(seconds)
    assert line and line[0], f"no ready line; stderr: {process.stderr.read() if process.poll() is not None else ''}"  # type: ignore[union-attr]
    return line[0]


def stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> int:
    """Send ``signum`` and return the exit code; fail if it takes over 2 s."""
    process.send_signal(signum)
    try:
        return process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"did not stop within {STOP_SECONDS} s")


@contextlib.contextmanager
def spawned(*args: str, stdout: int = subprocess.PIPE) -> Iterator[subprocess.Popen[str]]:
    """``servertrack ARGS`` as a child process (stderr piped); killed on exit if still running."""
    process = subprocess.Popen(servertrack_command(*args), env=subprocess_env(), stdout=stdout,
                               stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def running_service(*flags: str) -> Iterator[Service]:
    """A real ``servertrack serve`` on free ports of 127.0.0.1 with ``flags``; killed on exit."""
    with spawned("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*", *flags) as process:
        fields = dict(part.split("=", 1) for part in read_line(process, START_SECONDS).split()[2:])
        yield Service(process, fields["http"], fields["ingest"], fields.get("control", ""))


@pytest.fixture
def service() -> Iterator[Service]:
    with running_service() as started:
        yield started


def test_agent_samples_appear_over_http_and_both_stop_cleanly(service: Service) -> None:
    agent = subprocess.Popen(
        servertrack_command("agent", "--collector", service.ingest, "--name", "E2E-Node.local", "--interval", "0.2"),
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        def sampled() -> bool:
            status, body = http("GET", f"{service.url}/servers/e2e-node.local/loads")
            return status == 200 and sum(bucket["samples"] for bucket in body["minutes"]) >= 3
        wait_for(sampled, START_SECONDS, "agent samples over HTTP")
        status, body = http("GET", f"{service.url}/servers/e2e-node.local/loads")
        recent = [bucket for bucket in body["minutes"] if bucket["samples"]]
        assert all(0 <= bucket["cpu"]["min"] <= bucket["cpu"]["avg"] <= bucket["cpu"]["max"] <= 100 for bucket in recent)
        # every sample is in both windows: hour totals are over all of an hour's samples
        assert sum(bucket["samples"] for bucket in body["hours"]) == sum(bucket["samples"] for bucket in body["minutes"])
        status, listing = http("GET", f"{service.url}/servers")
        assert [entry["server"] for entry in listing["servers"]] == ["e2e-node.local"]
        assert all("127.0.0.1" != ip for ip in listing["servers"][0]["ips"])
        shown = subprocess.run(servertrack_command("show", "e2e-node.local", "--url", service.url),
                               env=subprocess_env(), capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0 and "e2e-node.local" in shown.stdout and "Last 24 hours" in shown.stdout
        assert stop(agent) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        agent.stderr.close()  # type: ignore[union-attr]
    assert stop(service.process) == 0


def test_garbage_frames_are_counted_and_service_keeps_serving(service: Service) -> None:
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.connect(service.ingest)
    try:
        def garbage_counted() -> bool:
            publisher.send(b"\x93not msgpack at all")
            publisher.send(msgpack.packb({"v": 1, "fqdn": "x", "cpu": "lots"}))
            return http("GET", f"{service.url}/stats")[1]["dropped"].get("not_msgpack", 0) >= 3
        wait_for(garbage_counted, START_SECONDS, "garbage to be counted")
        publisher.send(msgpack.packb({"v": 1, "fqdn": "after-garbage", "ts": time.time(), "ip": [],
                                      "cpu": 1.5, "ram": 2.5, "seq": 0}))
        wait_for(lambda: http("GET", f"{service.url}/servers/after-garbage/loads")[0] == 200, 5, "valid sample")
        stats = http("GET", f"{service.url}/stats")[1]
        assert stats["dropped"]["missing_field"] >= 1
        assert stats["applied"] >= 1 and stats["servers"] == 1
        assert http("GET", f"{service.url}/healthz") == (200, {"status": "ok", "store": "memory"})
    finally:
        publisher.close(linger=0)
        context.term()
    assert stop(service.process, signal.SIGINT) == 0


def test_loads_recorded_over_http_are_readable_within_a_second_or_so(service: Service) -> None:
    assert http("POST", f"{service.url}/servers/web-01/loads", {"cpu": 12.5, "ram": 40.0}) == (202, {"accepted": 1})
    assert http("POST", f"{service.url}/loads", [{"server": "web-02", "cpu": 1, "ram": 2}]) == (202, {"accepted": 1})
    recorded = time.monotonic()
    wait_for(lambda: http("GET", f"{service.url}/servers/web-02/loads")[0] == 200, 3, "HTTP samples")
    assert time.monotonic() - recorded < 2.0
    body = http("GET", f"{service.url}/servers/web-01/loads")[1]
    recorded_minutes = [bucket for bucket in body["minutes"] if bucket["samples"]]
    assert len(recorded_minutes) == 1 and recorded_minutes[0]["cpu"] == {"avg": 12.5, "min": 12.5, "max": 12.5}
    assert http("GET", f"{service.url}/servers/nobody/loads")[0] == 404
    assert stop(service.process) == 0


def test_sigusr1_prints_every_threads_stack_and_the_service_goes_on() -> None:
    with running_service("--store", "memory") as started:
        started.process.send_signal(signal.SIGUSR1)  # without its handler, SIGUSR1 ends a process
        # the dump is written by the signal handler as the signal arrives, before the next request is served
        wait_for(lambda: http("GET", f"{started.url}/healthz")[0] == 200, START_SECONDS, "serve after SIGUSR1")
        started.process.kill()
        started.process.wait(5)
        assert started.process.stderr is not None
        dump = started.process.stderr.read()
    assert "Current thread 0x" in dump and "most recent call first" in dump, dump[-2000:]
    assert "in _run_serve" in dump  # the loop's own stack, down to the serve command
