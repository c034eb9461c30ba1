"""End to end: pause and resume a real ``servertrack agent`` through a real ``servertrack serve``, across
restarts of either side; and a real agent fed malformed control frames."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import zmq

from servertrack.common.control_messages import encode_control
from servertrack.common.node_messages import NodeHello, decode_message
from servertrack.common.protocol import NameCache, Sample
from tests.conftest import servertrack_command, subprocess_env
from tests.test_end_to_end import START_SECONDS, http, read_line, spawned, stop, wait_for

pytestmark = pytest.mark.e2e

INTERVAL = 0.2
NAME = "pause-e2e.local"


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    ingest: str
    control: str


@contextlib.contextmanager
def serving(*flags: str) -> Iterator[Served]:
    """A real ``servertrack serve`` (free ports unless ``flags`` name them); killed on exit if still running."""
    process = subprocess.Popen(
        servertrack_command("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*", *flags),
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        fields = dict(part.split("=", 1) for part in read_line(process, START_SECONDS).split()[2:])
        yield Served(process, fields["http"], fields["ingest"], fields["control"])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def agent(*flags: str) -> Iterator[subprocess.Popen[str]]:
    """A real ``servertrack agent`` named ``NAME`` sampling every ``INTERVAL``; killed on exit if still running."""
    with spawned("agent", "--name", NAME, "--interval", str(INTERVAL), *flags, stdout=subprocess.DEVNULL) as process:
        yield process


def counters(service: Served) -> dict[str, Any]:
    return http("GET", f"{service.url}/stats")[1]


def samples(service: Served) -> int:
    return counters(service)["kinds"]["sample"]["received"]


def node(service: Served) -> dict[str, Any] | None:
    status, body = http("GET", f"{service.url}/nodes/{NAME}")
    return body if status == 200 else None


def state_is(service: Served, state: str) -> bool:
    found = node(service)
    return found is not None and found["state"] == state


def port_of(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]


def test_pause_survives_restarts_of_either_side_and_resume_brings_samples_back() -> None:
    with serving() as first:
        with agent("--collector", first.ingest, "--control", first.control) as running:
            wait_for(lambda: samples(first) >= 3, START_SECONDS, "samples from the agent")
            assert state_is(first, "online")

            # pause: samples stop within 2 intervals, and the node reads "paused"
            status, body = http("POST", f"{first.url}/nodes/{NAME}/pause", {})
            paused_at = samples(first)
            assert status == 200 and body["paused"] is True, body
            wait_for(lambda: state_is(first, "paused"), 2.0, "state paused")
            time.sleep(4 * INTERVAL)
            after_pause = samples(first)
            assert after_pause - paused_at <= 2, "samples went on after the pause"
            time.sleep(5 * INTERVAL)
            assert samples(first) == after_pause
            assert counters(first)["control"]["pause"] >= 1

            # the collector restarts on the same ports: it learns from the next hello that the node is paused
            assert stop(first.process) == 0
            with serving("--port", port_of(first.url), "--ingest", first.ingest, "--control", first.control) as second:
                assert (second.url, second.ingest, second.control) == (first.url, first.ingest, first.control)
                wait_for(lambda: state_is(second, "paused"), START_SECONDS, "the paused node after the restart")
                assert node(second)["paused"] is True  # type: ignore[index]
                time.sleep(5 * INTERVAL)
                assert samples(second) == 0
                assert counters(second)["kinds"]["hello"]["applied"] >= 1

                # the agent restarts: the collector's desired state pauses it again at its first hello
                assert stop(running) == 0
                with agent("--collector", second.ingest, "--control", second.control) as restarted:
                    wait_for(lambda: counters(second)["control"]["pause"] >= 1, START_SECONDS, "the pause re-asserted")
                    wait_for(lambda: state_is(second, "paused"), START_SECONDS, "the restarted agent paused")
                    leaked = samples(second)
                    assert leaked <= 3  # at most the first samples before its first hello was answered
                    time.sleep(5 * INTERVAL)
                    assert samples(second) == leaked

                    # resume: samples flow again
                    status, body = http("POST", f"{second.url}/nodes/{NAME}/resume")
                    assert status == 200 and body["paused"] is False
                    wait_for(lambda: samples(second) >= leaked + 3, 5.0, "samples after the resume")
                    wait_for(lambda: state_is(second, "online"), 2.0, "state online")

                    # and the compatible API stops and starts the whole fleet
                    assert http("GET", f"{second.url}/stop")[1] == {"status": "stopped", "nodes": [NAME]}
                    wait_for(lambda: state_is(second, "paused"), 2.0, "paused by /stop")
                    assert http("POST", f"{second.url}/start?node={NAME}")[1] == {"status": "started",
                                                                                   "nodes": [NAME]}
                    wait_for(lambda: state_is(second, "online"), 2.0, "online after /start")
                    assert stop(restarted) == 0
                assert stop(second.process) == 0


def test_a_real_agent_drops_and_counts_malformed_control_frames_and_keeps_running() -> None:
    context = zmq.Context()
    ingest = context.socket(zmq.SUB)
    control = context.socket(zmq.XPUB)
    try:
        for socket in (ingest, control):
            socket.setsockopt(zmq.LINGER, 0)
        ingest.setsockopt(zmq.SUBSCRIBE, b"")
        ingest_port = ingest.bind_to_random_port("tcp://127.0.0.1")
        control_port = control.bind_to_random_port("tcp://127.0.0.1")
        names = NameCache()

        def received(seconds: float, samples: int | None = None) -> list[object]:
            """What the agent sends within ``seconds`` (or until ``samples`` samples have come)."""
            messages: list[object] = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and (
                    samples is None or sum(isinstance(message, Sample) for message in messages) < samples):
                if ingest.poll(20):
                    messages.append(decode_message(ingest.recv(), time.time(), names))
            return messages

        with agent("--collector", f"tcp://127.0.0.1:{ingest_port}", "--control", f"tcp://127.0.0.1:{control_port}",
                   "--stats-every", "0") as running:
            subscriptions = set()
            deadline = time.monotonic() + START_SECONDS
            while len(subscriptions) < 2:  # the agent's SUB is connected: what is sent now arrives
                assert time.monotonic() < deadline and running.poll() is None, "no control subscription"
                if control.poll(50):
                    subscriptions.add(control.recv())
            assert subscriptions == {b"\x01" + NAME.encode() + b"\0", b"\x01*\0"}

            garbage = [
                [NAME.encode() + b"\0", b"\xc1 not msgpack"],
                [NAME.encode() + b"\0", msgpack.packb([1, 2, 3])],
                [NAME.encode() + b"\0", msgpack.packb({"v": 1, "kind": "rm -rf", "node": NAME, "ts": 1.0})],
                [NAME.encode() + b"\0", msgpack.packb({"v": 9, "kind": "pause", "node": NAME, "ts": 1.0})],
                [NAME.encode() + b"\0", msgpack.packb({"v": 1, "kind": "pause", "node": "other", "ts": 1.0})],
                [b"*\0"],
                [NAME.encode() + b"\0", b"\x00" * 4096],
            ]
            for frames in garbage:
                control.send_multipart(frames)
            # it keeps sampling...
            assert sum(isinstance(message, Sample) for message in received(6 * INTERVAL, samples=3)) >= 3
            assert running.poll() is None
            # ...and still obeys a valid message
            control.send_multipart(encode_control(True, NAME, time.time()))
            after = received(6 * INTERVAL)
            assert any(isinstance(message, NodeHello) and message.paused for message in after)
            assert sum(isinstance(message, Sample) for message in after) <= 1
            assert stop(running, signal.SIGTERM) == 0
            stderr = running.stderr.read()  # type: ignore[union-attr]
    finally:
        ingest.close(linger=0)
        control.close(linger=0)
        context.term()

    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "control message" in line]
    # logged once when the first arrived (at most once a minute), and the whole count when stopping
    assert len(lines) == 2, stderr
    assert "dropped a malformed control message (not_msgpack" in lines[0]
    assert lines[1].endswith("bad_frame 1, bad_topic 1, bad_version 1, not_a_map 1, not_msgpack 1, too_large 1, "
                             "unknown_kind 1"), lines[1]
