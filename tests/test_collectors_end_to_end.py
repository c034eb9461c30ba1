"""Agents given several collectors: each real agent publishes to the one its name picks by rendezvous
hashing, and only there."""

from __future__ import annotations

import subprocess

from servertrack.common.rendezvous import chosen_index
from tests.test_end_to_end import (
    START_SECONDS,
    http,
    running_service,
    spawned,
    wait_for,
)


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
