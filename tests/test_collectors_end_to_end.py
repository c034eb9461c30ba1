"""Agents given several collectors: each real agent publishes to the one its name picks by rendezvous
hashing, and only there; when that collector dies it publishes to the other, and back when it returns."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from servertrack.common.rendezvous import chosen_index
from tests.test_end_to_end import (
    START_SECONDS,
    Service,
    http,
    running_service,
    spawned,
    wait_for,
)

# --failover-after 1 and heartbeats twice a second: a move takes 1 to 1.5 s, its samples 0.2 s more.
MOVE_SECONDS = 8.0


def samples_of(url: str, name: str) -> int:
    status, body = http("GET", f"{url}/servers/{name}/loads")
    return sum(bucket["samples"] for bucket in body["minutes"]) if status == 200 else 0


def test_each_agent_publishes_to_its_rendezvous_pick_only() -> None:
    with running_service("--store", "memory") as first, running_service("--store", "memory") as second:
        services = [first, second]
        collectors = [service.ingest for service in services]
        # one name that picks each collector (the pick depends on the ports, so search for them)
        names = {}
        for number in range(100):
            name = f"spread-{number:02}.local"
            names.setdefault(chosen_index(name, collectors), name)
            if len(names) == 2:
                break
        assert len(names) == 2
        agents = [spawned("agent", "--collector", ",".join(collectors), "--name", names[index], "--interval", "0.2",
                          "--stats-every", "0", stdout=subprocess.DEVNULL) for index in (0, 1)]
        with agents[0] as agent_a, agents[1] as agent_b:
            for index, service in enumerate(services):
                wait_for(lambda url=service.url, name=names[index]: samples_of(url, name) >= 3, START_SECONDS,
                         f"{names[index]}'s samples on its collector")
            for index, service in enumerate(services):
                assert samples_of(service.url, names[1 - index]) == 0  # never on the other one
                assert http("GET", f"{service.url}/nodes/{names[1 - index]}")[0] == 404
            for agent in (agent_a, agent_b):
                agent.terminate()
                _, errors = agent.communicate(timeout=5)
                assert "its pick of 2 collectors by rendezvous hashing" in errors


def node_known(url: str, name: str) -> bool:
    return http("GET", f"{url}/nodes/{name}")[0] == 200


@contextlib.contextmanager
def serving_at(killed: Service) -> Iterator[Service]:
    """A new ``serve --store memory`` on the HTTP, ingest and control ports of ``killed``."""
    port = str(urlsplit(killed.url).port)
    deadline = time.monotonic() + START_SECONDS
    while True:  # the ports are free once the kill has closed them; retry briefly if not yet
        with spawned("serve", "--store", "memory", "--port", port, "--ingest", killed.ingest,
                     "--control", killed.control) as process:
            line = process.stdout.readline() if process.stdout is not None else ""  # the ready line, or EOF
            if line.startswith("servertrack serving"):
                fields = dict(part.split("=", 1) for part in line.split()[2:])
                yield Service(process, fields["http"], fields["ingest"], fields["control"])
                return
        assert time.monotonic() < deadline, f"no serve on the ports of {killed.url}"
        time.sleep(0.2)


def test_an_agent_moves_to_the_other_collector_when_its_own_dies_and_back_when_it_returns() -> None:
    with running_service("--store", "memory") as first, running_service("--store", "memory") as second:
        services = [first, second]
        collectors = [service.ingest for service in services]
        name = "failover-01.local"
        picked = services[chosen_index(name, collectors)]
        other = services[1 - services.index(picked)]
        with spawned("agent", "--collector", ",".join(collectors), "--control",
                     ",".join(service.control for service in services), "--name", name, "--interval", "0.2",
                     "--stats-every", "0", "--failover-after", "1", stdout=subprocess.DEVNULL) as agent:
            wait_for(lambda: samples_of(picked.url, name) >= 2 and node_known(picked.url, name), START_SECONDS,
                     "the agent's samples and hello at its pick")
            assert samples_of(other.url, name) == 0
            assert http("GET", f"{other.url}/stats")[1]["control"]["heartbeats"] >= 1

            picked.process.send_signal(signal.SIGKILL)
            picked.process.wait(5)
            wait_for(lambda: samples_of(other.url, name) >= 2, MOVE_SECONDS, "the agent's samples at the other")
            wait_for(lambda: node_known(other.url, name), MOVE_SECONDS, "the agent's hello at the other")

            with serving_at(picked) as returned:
                wait_for(lambda: samples_of(returned.url, name) >= 2 and node_known(returned.url, name),
                         MOVE_SECONDS, "the agent's samples back at its pick")
                time.sleep(1.2)  # what reached the other before the move is applied within its once-a-second batch
                before = samples_of(other.url, name)
                time.sleep(0.6)  # three intervals: nothing more reaches the other one
                assert samples_of(other.url, name) <= before + 1  # one may have been on its way
                assert agent.poll() is None
                agent.terminate()
                _, errors = agent.communicate(timeout=5)
        lines = errors.splitlines()
        assert any(f"collector {picked.ingest} silent for" in line and f"publishing to {other.ingest}" in line
                   for line in lines), errors
        assert any(f"collector {picked.ingest} is heard again; publishing to {picked.ingest}" in line
                   for line in lines), errors
        assert "Traceback" not in errors
