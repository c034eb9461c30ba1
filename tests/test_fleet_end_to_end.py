"""Two real collectors on one real three-master Redis Cluster: one fleet.

Each ``serve`` has its own data dir and collector id; samples reach one or
the other (HTTP posts here, agents in ``test_collectors_end_to_end``), and
every read route of either answers for every server, from its rings plus
what the other shared. A server that moves between them in the middle of a
minute is counted once, every sample; a collector killed leaves its data
readable; a Redis master killed and restarted is survived and caught up.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servertrack.common.rendezvous import chosen_index
from servertrack.store.redis_store import (
    READ_SOCKET_TIMEOUT_SECONDS,
    SILENT_NODE_SECONDS,
)
from tests.redis_servers import RedisClusterServers, started_cluster
from tests.test_end_to_end import Service, http, running_service, spawned, wait_for

SHARE_EVERY = "0.2"
WAIT_SECONDS = 30.0  # bounds, not durations: each wait ends on the event (a loaded machine is slow)


@contextlib.contextmanager
def collector(url: str, data_dir: Path, collector_id: str, *flags: str) -> Iterator[Service]:
    """A ``serve`` of the fleet on Redis ``url``."""
    with running_service("--store", url, "--data-dir", str(data_dir), "--collector-id", collector_id,
                         "--share-every", SHARE_EVERY, *flags) as service:
        yield service


def post_samples(service: Service, name: str, stamps: list[float], cpu: float = 10.0) -> None:
    items = [{"server": name, "cpu": cpu + index, "ram": 50.0, "ts": ts} for index, ts in enumerate(stamps)]
    status, body = http("POST", f"{service.url}/loads", items)
    assert status == 202, body


def loads(service: Service, name: str) -> dict[str, Any]:
    status, body = http("GET", f"{service.url}/servers/{name}/loads")
    assert status == 200, body
    return body


def samples_shown(service: Service, name: str) -> int | None:
    """The samples of ``name``'s minute window on ``service``, None while it does not know ``name`` (a sample
    posted waits for the next batch; one of another collector, for its share)."""
    status, body = http("GET", f"{service.url}/servers/{name}/loads")
    return counted(body, "minutes") if status == 200 else None


def counted(body: dict[str, Any], window: str) -> int:
    return sum(bucket["samples"] for bucket in body[window])


def recent_stamps(count: int) -> list[float]:
    """``count`` timestamps one second apart in the current minute, ending now (at least one second into it)."""
    now = time.time()
    if now % 60 < count + 1:  # too close to the minute's start: wait for room in it
        time.sleep(count + 1 - now % 60)
        now = time.time()
    return [now - count + 1 + index for index in range(count)]


def raw(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_every_read_route_of_either_collector_answers_for_the_other_ones_servers(
        redis_cluster_url: str, tmp_path: Path) -> None:
    with collector(redis_cluster_url, tmp_path / "a", "col-a") as a, \
            collector(redis_cluster_url, tmp_path / "b", "col-b") as b:
        post_samples(a, "alpha.example", recent_stamps(4))
        post_samples(b, "beta.example", recent_stamps(3), cpu=60.0)
        for here, there, name, samples in ((a, b, "beta.example", 3), (b, a, "alpha.example", 4)):
            wait_for(lambda here=here, name=name, samples=samples:
                     http("GET", f"{here.url}/servers/{name}/loads")[0] == 200
                     and counted(loads(here, name), "minutes") == samples, WAIT_SECONDS, f"{name} on the other")
            mine, theirs = loads(here, name), loads(there, name)
            for window in ("minutes", "hours"):
                assert [bucket for bucket in mine[window]] == [bucket for bucket in theirs[window]], window
            assert counted(mine, "hours") == samples
            # the same answer on every route that reads a server's windows
            for route in (f"/servers/{name}/seconds", f"/servers/{name}/summary", f"/perf/{name}/last_minute",
                          f"/perf/{name}/last_hour", f"/perf/{name}/last_day", f"/server/{name}"):
                status_here, body_here = raw(here.url + route)
                status_there, body_there = raw(there.url + route)
                assert status_here == status_there == 200, (route, body_here)
                if route.endswith("/seconds"):
                    assert sum(second["samples"] for second in json.loads(body_here)["seconds"]) == samples
                else:
                    assert body_here == body_there, route
            # a range read of the other's server
            start = int(time.time() // 3600) * 3600
            status, ranged = http("GET", f"{here.url}/servers/{name}/loads?from={start}&to={start + 3599}")
            assert status == 200 and counted(ranged, "buckets") == samples, ranged
        for service in (a, b):
            status, listing = http("GET", f"{service.url}/servers")
            assert [entry["server"] for entry in listing["servers"]] == ["alpha.example", "beta.example"]
            status, fleet = http("GET", f"{service.url}/fleet")
            assert status == 200 and [row["name"] for row in fleet["rows"]] == ["alpha.example", "beta.example"]
            for row in fleet["rows"]:  # the other collector's server has its sparkline too
                assert row["spark"] is not None and any(value is not None for value in row["spark"]["cpu"]), row
            assert http("GET", f"{service.url}/servers/nobody.example/loads")[0] == 404
            status, stats = http("GET", f"{service.url}/stats")
            assert stats["store"]["collector"] in ("col-a", "col-b") and stats["store"]["shares"] > 0


def test_a_server_that_moves_mid_minute_is_counted_once_every_sample(redis_cluster_url: str, tmp_path: Path) -> None:
    with collector(redis_cluster_url, tmp_path / "a", "col-a") as a, \
            collector(redis_cluster_url, tmp_path / "b", "col-b") as b:
        stamps = recent_stamps(6)
        post_samples(a, "mover.example", stamps[:4])  # its first four seconds at a
        time.sleep(0.5)
        post_samples(b, "mover.example", stamps[4:])  # then b, the same minute
        for service in (a, b):
            wait_for(lambda service=service: samples_shown(service, "mover.example") == 6, WAIT_SECONDS,
                     "all six samples on both")
            body = loads(service, "mover.example")
            assert body["minutes"][-1]["samples"] == 6 and counted(body, "hours") == 6
            minute = body["minutes"][-1]
            assert minute["cpu"]["min"] == 10.0 and minute["cpu"]["max"] == 13.0  # min of mins, max of maxes
        time.sleep(1.0)  # more shares: still six, never twelve
        assert counted(loads(a, "mover.example"), "minutes") == counted(loads(b, "mover.example"), "minutes") == 6


def test_a_killed_collectors_data_stay_readable(redis_cluster_url: str, tmp_path: Path) -> None:
    with collector(redis_cluster_url, tmp_path / "a", "col-a") as a:
        with collector(redis_cluster_url, tmp_path / "b", "col-b") as b:
            post_samples(b, "orphan.example", recent_stamps(3))
            wait_for(lambda: http("GET", f"{a.url}/servers/orphan.example/loads")[0] == 200
                     and counted(loads(a, "orphan.example"), "minutes") == 3, WAIT_SECONDS, "b's share")
            b.process.send_signal(signal.SIGKILL)
            b.process.wait(5)
        body = loads(a, "orphan.example")
        assert counted(body, "minutes") == 3 and counted(body, "hours") == 3
        _, listing = http("GET", f"{a.url}/servers")
        assert "orphan.example" in [entry["server"] for entry in listing["servers"]]


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterServers]:
    """A cluster of its own (a master of it is killed), persistent so a restarted master has its data."""
    with started_cluster("servertrack-redis-kill-", persistent=True) as cluster:
        yield cluster


def test_a_redis_master_killed_and_restarted_is_survived_and_caught_up(
        own_cluster: RedisClusterServers, tmp_path: Path) -> None:
    with collector(own_cluster.url, tmp_path / "a", "col-a") as a, \
            collector(own_cluster.url, tmp_path / "b", "col-b") as b:
        post_samples(b, "steady.example", recent_stamps(2))
        wait_for(lambda: http("GET", f"{a.url}/servers/steady.example/loads")[0] == 200, WAIT_SECONDS, "b's share")
        victim = own_cluster.nodes[0]
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(5)
        victim.process = None
        wait_for(lambda: http("GET", f"{b.url}/healthz")[1].get("store") == "failing", WAIT_SECONDS,
                 "b to see the store failing")
        post_samples(b, "steady.example", [time.time()])  # ingest goes on in memory
        assert http("GET", f"{b.url}/healthz")[0] == 200 and http("GET", f"{a.url}/healthz")[0] == 200
        victim.start()
        for service in (a, b):
            wait_for(lambda service=service: http("GET", f"{service.url}/healthz")[1].get("store") == "ok",
                     WAIT_SECONDS, "the store to be ok again")
        wait_for(lambda: counted(loads(a, "steady.example"), "hours") == 3, WAIT_SECONDS, "the catch-up on a")
        assert counted(loads(b, "steady.example"), "hours") == 3


def test_a_redis_master_gone_silent_holds_fleet_reads_for_a_second_or_two_not_for_its_timeouts(
        own_cluster: RedisClusterServers, tmp_path: Path) -> None:
    """A master that stops answering without closing its connections (a host gone silent; here SIGSTOP):
    the first fleet read of a server whose keys it holds gives up after about two read timeouts (the
    writer's timeout and retries held it ~20 s), the next ones do not wait for the node at all while it
    stays silent, each answered from the collector's own part; both parts come back once it answers."""
    name = "quiet.example"
    probe = own_cluster.nodes[0].client()
    slot = int(probe.execute_command("CLUSTER KEYSLOT", f"st:{{{name}}}:known"))
    port = next(int(entry[2][1]) for entry in probe.execute_command("CLUSTER SLOTS")
                if int(entry[0]) <= slot <= int(entry[1]))
    victim = next(node for node in own_cluster.nodes if node.port == port)
    assert victim.process is not None
    with collector(own_cluster.url, tmp_path / "a", "col-a") as a, \
            collector(own_cluster.url, tmp_path / "b", "col-b") as b:
        stamps = recent_stamps(3)
        post_samples(a, name, stamps[:1])
        post_samples(b, name, stamps[1:])
        wait_for(lambda: samples_shown(a, name) == 3, WAIT_SECONDS, "b's part on a")
        victim.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            first = counted(loads(a, name), "minutes")
            waited = time.monotonic() - started
            started = time.monotonic()
            second = counted(loads(a, name), "minutes")
            then = time.monotonic() - started
        finally:
            victim.process.send_signal(signal.SIGCONT)
        assert first == 1 and second == 1  # a's own part: b's is on the silent node
        assert waited < 2 * READ_SOCKET_TIMEOUT_SECONDS + 3.0, waited
        if then < SILENT_NODE_SECONDS:  # still silent for the readers (the first read may have taken long)
            assert then < READ_SOCKET_TIMEOUT_SECONDS, then  # it did not wait for the node
        assert http("GET", f"{a.url}/stats")[1]["store"]["read_failures"] >= 2
        wait_for(lambda: samples_shown(a, name) == 3, WAIT_SECONDS, "both parts again on a")


def names_picking(collectors: list[str]) -> list[str]:
    """One agent name that rendezvous hashing sends to each of ``collectors``, in their order."""
    picked: dict[int, str] = {}
    for number in range(200):
        name = f"fleet-node-{number:03}.local"
        picked.setdefault(chosen_index(name, collectors), name)
        if len(picked) == len(collectors):
            return [picked[index] for index in range(len(collectors))]
    raise AssertionError("no name for each collector")


def node_state(service: Service, name: str) -> str | None:
    status, body = http("GET", f"{service.url}/nodes/{name}")
    return body.get("state") if status == 200 else None


def test_agents_split_across_collectors_are_every_collectors_nodes_and_pause_from_either(
        redis_cluster_url: str, tmp_path: Path) -> None:
    with collector(redis_cluster_url, tmp_path / "a", "col-a") as a, \
            collector(redis_cluster_url, tmp_path / "b", "col-b") as b:
        collectors = [a.ingest, b.ingest]
        names = names_picking(collectors)
        agents = [spawned("agent", "--collector", ",".join(collectors), "--control", f"{a.control},{b.control}",
                          # a second apart: "online" (seen within three intervals) holds through the other
                          # collector's share and refresh even on a loaded machine
                          "--name", name, "--interval", "1", "--stats-every", "1", stdout=subprocess.DEVNULL)
                  for name in names]
        with agents[0], agents[1]:
            for service in (a, b):  # each collector knows both nodes: its own and the other's
                for name in names:
                    wait_for(lambda service=service, name=name: node_state(service, name) == "online",
                             WAIT_SECONDS, f"{name} online on {service.url}")
            for service in (a, b):
                _, listing = http("GET", f"{service.url}/nodes")
                assert [entry["name"] for entry in listing["nodes"]] == sorted(names)
                status, cluster = http("GET", f"{service.url}/cluster/nodes")
                assert status == 200 and len(cluster) >= 1
                _, fleet = http("GET", f"{service.url}/fleet")
                assert {row["name"] for row in fleet["rows"] if row.get("node", True)} >= set(names)
            for here, other in ((a, names[1]), (b, names[0])):  # each collector reads the other's node
                wait_for(lambda here=here, other=other: http("GET", f"{here.url}/nodes/{other}/cpu")[0] == 200,
                         WAIT_SECONDS, f"{other}'s snapshot on {here.url}")
                status, detail = http("GET", f"{here.url}/nodes/{other}")
                assert status == 200 and detail["name"] == other and detail["cpu_count"] >= 1, detail
                status, summary = http("GET", f"{here.url}/nodes/{other}/summary")
                assert status == 200 and summary["samples"] > 0, summary
                assert http("GET", f"{here.url}/nodes/{other}/processes")[0] == 200
            theirs = names[1]  # b's node, paused through a
            status, body = http("POST", f"{a.url}/nodes/{theirs}/pause")
            assert status == 200, body
            wait_for(lambda: node_state(b, theirs) == "paused", WAIT_SECONDS, "b to pause its node")
            wait_for(lambda: node_state(a, theirs) == "paused", WAIT_SECONDS, "a to see it paused")
            assert node_state(a, names[0]) == "online"  # a's own node untouched
            status, body = http("POST", f"{a.url}/nodes/{theirs}/resume")
            assert status == 200, body
            wait_for(lambda: node_state(b, theirs) == "online", WAIT_SECONDS, "b to resume its node")


@pytest.fixture
def replicated_cluster() -> Iterator[RedisClusterServers]:
    """Three masters with a replica each (a master killed is failed over to its replica)."""
    with started_cluster("servertrack-redis-failover-", replicas=1) as cluster:
        yield cluster


def test_a_redis_master_failed_over_to_its_replica_is_survived(
        replicated_cluster: RedisClusterServers, tmp_path: Path) -> None:
    with collector(replicated_cluster.url, tmp_path / "a", "col-a") as a, \
            collector(replicated_cluster.url, tmp_path / "b", "col-b") as b:
        post_samples(b, "steady.example", recent_stamps(2))
        wait_for(lambda: http("GET", f"{a.url}/servers/steady.example/loads")[0] == 200
                 and counted(loads(a, "steady.example"), "minutes") == 2, WAIT_SECONDS, "b's share")
        time.sleep(0.5)  # the replicas have it (replication is asynchronous)
        client = replicated_cluster.client()
        try:
            master = client.get_node_from_key("st:{steady.example}:s")
        finally:
            client.close()
        victim = next(node for node in replicated_cluster.nodes if node.port == master.port)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(5)
        victim.process = None
        post_samples(b, "steady.example", [time.time()])  # while the replica takes over: into memory
        def hours_of(service: Service) -> int:  # 503 while the slot has no master
            status, body = http("GET", f"{service.url}/servers/steady.example/loads")
            return counted(body, "hours") if status == 200 else -1

        for service in (a, b):  # the replica is master now: the store is ok again, without the old master
            try:
                wait_for(lambda service=service: hours_of(service) == 3, WAIT_SECONDS,
                         f"the third sample on {service.url} after the failover")
            except AssertionError:
                seen = (service is a, hours_of(a), hours_of(b), http("GET", f"{a.url}/stats")[1]["store"],
                        http("GET", f"{b.url}/stats")[1]["store"])
                b.process.send_signal(signal.SIGUSR1)  # b's threads, for what a stuck share waits on
                time.sleep(0.5)
                b.process.kill()
                b.process.wait(5)
                raise AssertionError((seen, b.process.stderr.read()[-8000:] if b.process.stderr else "")) from None
            wait_for(lambda service=service: http("GET", f"{service.url}/healthz")[1].get("store") == "ok",
                     WAIT_SECONDS, f"{service.url}'s store writes to go on")
