"""End to end, a collector restarted under a running agent: a real ``serve --store sqlite`` on fixed ports,
stopped (SIGTERM, then SIGKILL) and started again on the same addresses while one real agent keeps sending
every 0.2 s. The agent is never restarted; its samples appear again within seconds; the minute window holds
the buckets from before (recovered from the store) and after, counted once; after a clean stop the gap is
counted as lost for the agent (what it sent is received or counted, exactly), after a crash it is not (the
collector cannot know the seq it had)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import servertrack_command, subprocess_env
from tests.test_client import free_port
from tests.test_end_to_end import Service, http, running_service, wait_for

AGENT = "restart-agent.test"
WAIT_SECONDS = 8.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@contextlib.contextmanager
def collector(data_dir: Path, ports: list[int]) -> Iterator[Service]:
    """``serve --store sqlite`` on the same HTTP, ingest and control ports every time."""
    http_port, ingest, control = ports
    with running_service("--port", str(http_port), "--ingest", f"tcp://127.0.0.1:{ingest}",
                         "--control", f"tcp://127.0.0.1:{control}", "--store", "sqlite",
                         "--data-dir", str(data_dir), "--checkpoint-every", "1s") as service:
        yield service


def minutes(url: str) -> dict[str, int]:
    """The agent's minute window: samples per bucket start, non-empty buckets only."""
    status, body = http("GET", f"{url}/servers/{AGENT}/loads")
    return {} if status != 200 else {bucket["start"]: bucket["samples"] for bucket in body["minutes"]
                                      if bucket["samples"]}


def node(url: str) -> dict[str, object]:
    status, body = http("GET", f"{url}/nodes/{AGENT}")
    return body if status == 200 else {}


def test_the_agent_outlives_two_restarts_and_the_window_goes_on(tmp_path: Path) -> None:
    data_dir, ports = tmp_path / "data", free_ports(3)
    agent = subprocess.Popen(servertrack_command("agent", "--collector", f"tcp://127.0.0.1:{ports[1]}",
                                                 "--control", f"tcp://127.0.0.1:{ports[2]}", "--name", AGENT,
                                                 "--interval", "0.2"),
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with collector(data_dir, ports) as service:
            wait_for(lambda: sum(minutes(service.url).values()) >= 10, WAIT_SECONDS, "the agent's samples")
            time.sleep(1.2)  # a checkpoint and an fsync of the log after them
            before = minutes(service.url)
            seq_before = node(service.url)["seq"]
            service.process.send_signal(signal.SIGTERM)
            assert service.process.wait(10) == 0
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with collector(data_dir, ports) as service:
                # the recovered buckets are there before the agent's next sample is applied
                recovered = minutes(service.url)
                assert sum(recovered.values()) >= sum(before.values()) - (6 if signum == signal.SIGKILL else 0)
                wait_for(lambda: sum(minutes(service.url).values()) > sum(recovered.values()), WAIT_SECONDS,
                         "the agent's samples after the restart")
                assert agent.poll() is None, "the agent kept running"
                time.sleep(1.2)
                after, detail = minutes(service.url), node(service.url)
                seq_after = detail["seq"]
                assert isinstance(seq_after, int) and isinstance(seq_before, int) and seq_after > seq_before
                # one window: every bucket from before is still there, none counted twice (the samples added
                # since the stop are at most the messages the agent sent since)
                assert set(before) <= set(after)
                assert all(after[start] >= count for start, count in before.items() if start in recovered)
                assert 0 < sum(after.values()) - sum(recovered.values()) <= seq_after - seq_before
                lost = detail["lost"]
                assert isinstance(lost, int)
                if signum == signal.SIGTERM:
                    # the last run stopped cleanly: its seqs came back and the gap was counted, for this agent
                    store = http("GET", f"{service.url}/stats")[1]
                    assert store["store"]["recovery"]["agent_seqs"] == 1
                    # every message the agent numbered since is received by the new collector or counted
                    # lost (those the old one had queued when it stopped included); ZeroMQ holds what the
                    # agent sends while disconnected, so the gap of a quick restart may well be 0
                    sent = seq_after - seq_before
                    assert lost == store["lost"] and sent - 5 <= store["received"] + lost <= sent
                    before = minutes(service.url)
                    seq_before = node(service.url)["seq"]
                    service.process.send_signal(signal.SIGKILL)  # the next round: a crash
                    service.process.wait(10)
                else:
                    # after a crash no seqs came back: the gap is not counted (nor what was counted before)
                    assert http("GET", f"{service.url}/stats")[1]["store"]["recovery"]["agent_seqs"] == 0
                    assert lost == 0
                    service.process.send_signal(signal.SIGTERM)
                    assert service.process.wait(10) == 0
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        agent.stderr.close()  # type: ignore[union-attr]
