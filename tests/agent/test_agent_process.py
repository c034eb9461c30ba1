"""End to end: a real ``python -m servertrack agent`` process, a SUB socket bound by the test, real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from agent_doubles import checkout_env, servertrack_command, unused_tcp_port

from servertrack.common.node_messages import decode_message
from servertrack.common.protocol import NameCache, Sample

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 15.0  # generous: the machine may be shared and busy
STOP_SECONDS = 2.0


@pytest.fixture
def spawn(tmp_path) -> Iterator:
    """Start servertrack processes (cwd outside the checkout); kill and reap any still running at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            servertrack_command(*args),
            cwd=tmp_path,
            env=checkout_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def _stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    """Send ``signum``; return (exit code, stderr), failing if the process outlives STOP_SECONDS."""
    process.send_signal(signum)
    began = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=STOP_SECONDS + 1.0)
    except subprocess.TimeoutExpired:
        pytest.fail(f"agent still running {STOP_SECONDS + 1.0} s after {signal.Signals(signum).name}")
    assert time.monotonic() - began < STOP_SECONDS
    return process.returncode, stderr.decode(errors="replace")


def _zmq_threads(pid: int) -> int:
    """How many of the process's threads are libzmq's background threads (named ``ZMQbg/...``)."""
    count = 0
    for task in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            count += task.read_text().startswith("ZMQbg")
        except OSError:  # the thread ended meanwhile
            pass
    return count


def _wait_until_running_zmq(process: subprocess.Popen) -> None:
    """Wait until the agent is past its imports and inside run_agent: its ZeroMQ context has threads."""
    if not Path("/proc/self/task").is_dir():  # pragma: no cover - not Linux: fall back on patience
        time.sleep(2.0)
        return
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode(errors="replace")
        if _zmq_threads(process.pid):
            return
        time.sleep(0.05)
    pytest.fail("agent did not open its ZeroMQ socket in time")


def test_agent_publishes_hello_samples_snapshots_then_bye_on_sigterm(spawn, zmq_context) -> None:
    sub = zmq_context.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        port = sub.bind_to_random_port("tcp://127.0.0.1")
        agent = spawn("agent", "--collector", f"tcp://127.0.0.1:{port}", "--name", "e2e-agent", "--interval", "0.2",
                      "--stats-every", "2")

        frames: list[bytes] = []
        deadline = time.monotonic() + STARTUP_SECONDS
        while len(frames) < 6 and time.monotonic() < deadline:
            if sub.poll(100):
                frames.append(sub.recv())
            assert agent.poll() is None, agent.communicate()[1].decode(errors="replace")
        assert len(frames) >= 6, f"only {len(frames)} frames within {STARTUP_SECONDS} s"

        returncode, stderr = _stop(agent, signal.SIGTERM)
        while sub.poll(500):  # the bye leaves before the agent exits
            frames.append(sub.recv())
    finally:
        sub.close(linger=0)

    names = NameCache()
    messages = [decode_message(frame, time.time(), names) for frame in frames]
    assert {message.fqdn for message in messages} == {"e2e-agent"}
    kinds = [type(message).__name__ for message in messages]
    assert "NodeHello" in kinds and "NodeSnapshot" in kinds and kinds[-1] == "NodeBye", kinds
    seqs = [message.seq for message in messages]
    # PUB/SUB may lose the very first frames while the connection comes up (the collector
    # counts that gap), but from the first frame received on, nothing is missing.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[0] <= 4, f"first received seq {seqs[0]}: more than the start-up frames were lost"
    samples = [message for message in messages if isinstance(message, Sample)]
    assert all(earlier.ts < later.ts for earlier, later in zip(samples, samples[1:]))
    assert returncode == 0, stderr
    assert "Traceback" not in stderr


def test_agent_without_a_collector_keeps_running_and_stops_on_sigint(spawn) -> None:
    agent = spawn("agent", "--collector", f"tcp://127.0.0.1:{unused_tcp_port()}", "--name", "lonely", "--interval", "0.1")
    _wait_until_running_zmq(agent)
    time.sleep(1.0)
    assert agent.poll() is None, agent.communicate()[1].decode(errors="replace")

    returncode, stderr = _stop(agent, signal.SIGINT)
    assert returncode == 0, stderr
    assert "Traceback" not in stderr


def test_bad_interval_is_one_line_on_stderr_and_exit_code_2(tmp_path) -> None:
    result = subprocess.run(
        servertrack_command("agent", "--interval", "abc"),
        cwd=tmp_path,
        env=checkout_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("servertrack: error:")
    assert "--interval" in lines[0] and "abc" in lines[0]
    assert "Traceback" not in stderr
    assert result.stdout == b""
