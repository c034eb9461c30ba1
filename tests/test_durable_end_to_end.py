"""End to end, the durable store: real ``servertrack serve`` processes on one data directory, killed and
restarted; what was applied before a ``kill -9`` (and everything before a SIGTERM) is there afterwards,
bucket for bucket."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import zmq

from tests.conftest import servertrack_command, subprocess_env
from tests.node_fixtures import stats_body
from tests.test_end_to_end import Service, http, running_service, wait_for

NAMES = [f"durable-{index:02d}.example" for index in range(12)]


@contextlib.contextmanager
def durable_service(data_dir: Path, *flags: str) -> Iterator[Service]:
    """``serve --store sqlite --data-dir DATA_DIR`` on free ports; killed on exit if still running."""
    with running_service("--store", "sqlite", "--data-dir", str(data_dir), *flags) as service:
        assert http("GET", f"{service.url}/stats")[1]["store"]["data_dir"] == str(data_dir)
        yield service


def publish(endpoint: str, count: int, seq_start: int = 0) -> int:
    """Publish ``count`` rounds of one v1 sample per name over ZeroMQ; return the samples sent."""
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.connect(endpoint)
    time.sleep(0.3)  # PUB/SUB: let the subscription arrive before the first frame
    sent = 0
    try:
        for round_ in range(count):
            for index, name in enumerate(NAMES):
                load = (index * 7 + round_ * 3) % 100 + 0.25
                socket.send(msgpack.packb({"v": 1, "fqdn": name, "ts": time.time() - 5, "ip": ["10.0.0.1"],
                                           "cpu": load, "ram": 100 - load, "seq": seq_start + round_}))
                sent += 1
    finally:
        socket.close(linger=1000)
        context.term()
    return sent


def record_over_http(url: str, rounds: int) -> int:
    """POST ``rounds`` samples per name as one batch (202); return the samples accepted."""
    loads = [{"server": name, "cpu": (round_ * 11) % 100 + 0.5, "ram": 42.125}
             for round_ in range(rounds) for name in NAMES]
    status, _ = http("POST", f"{url}/loads", loads)
    assert status == 202
    return len(loads)


def applied(url: str) -> int:
    return int(http("GET", f"{url}/stats")[1]["applied"])


def history(url: str) -> dict[str, Any]:
    """Every server's minute and hour buckets over the last two hours / days, and its seconds."""
    now = int(time.time())
    answers: dict[str, Any] = {}
    for name in NAMES:
        minutes = http("GET", f"{url}/servers/{name}/loads?from={now - 7200}&to={now + 60}&step=minute")
        hours = http("GET", f"{url}/servers/{name}/loads?from={now - 2 * 86_400}&to={now + 60}&step=hour")
        seconds = http("GET", f"{url}/servers/{name}/seconds")
        assert minutes[0] == hours[0] == seconds[0] == 200, (minutes, hours, seconds)
        answers[name] = {
            "minutes": {bucket["start"]: bucket for bucket in minutes[1]["buckets"] if bucket["samples"]},
            "hours": {bucket["start"]: bucket for bucket in hours[1]["buckets"] if bucket["samples"]},
            "seconds": {bucket["start"]: bucket for bucket in seconds[1]["seconds"] if bucket["samples"]},
        }
    return answers


def total_samples(answers: dict[str, Any], key: str = "hours") -> int:
    return sum(bucket["samples"] for answer in answers.values() for bucket in answer[key].values())


def same_history(before: dict[str, Any], after: dict[str, Any]) -> None:
    for name in NAMES:
        for key in ("minutes", "hours"):
            assert after[name][key] == before[name][key], (name, key)
        # the seconds window moved on with the clock: every second still shown is the same
        shown = set(after[name]["seconds"]) & set(before[name]["seconds"])
        assert all(after[name]["seconds"][start] == before[name]["seconds"][start] for start in shown)


def test_kill_9_keeps_everything_applied_a_second_before(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with durable_service(data_dir, "--checkpoint-every", "1s") as service:
        sent = publish(service.ingest, 20) + record_over_http(service.url, 5)
        wait_for(lambda: applied(service.url) == sent, 10, "every sample applied")
        time.sleep(1.5)  # past the loss window: everything applied is in the log (and a checkpoint or two)
        sent += record_over_http(service.url, 1)  # answered 202, then the kill comes within the second
        before = history(service.url)
        service.process.send_signal(signal.SIGKILL)
        service.process.wait()
    with durable_service(data_dir) as restarted:
        after = history(restarted.url)
        health = http("GET", f"{restarted.url}/healthz")[1]
        store = http("GET", f"{restarted.url}/stats")[1]["store"]
    assert health["store"] == "ok"
    assert total_samples(before) >= sent - 12 * 1  # the last batch may still have been pending
    lost = total_samples(before) - total_samples(after)
    assert lost <= len(NAMES), f"lost {lost} samples, more than the last second's"
    if lost == 0:
        same_history(before, after)
    assert store["recovery"]["checkpoint_rows"] == len(NAMES)


def test_sigterm_loses_nothing_and_the_nodes_pauses_and_snapshots_come_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with durable_service(data_dir, "--snapshot-every", "1s") as service:  # a checkpoint only at the end
        hello = {"name": NAMES[0], "hostname": NAMES[0], "ip": ["10.1.2.3"], "boot_time": 1_790_000_000,
                 "os": "Linux", "platform": "x86_64", "cpu_count": 2, "memory_total": 2**30,
                 "agent_version": "test", "interval": 1.0}
        status, _ = http("POST", f"{service.url}/nodes", hello)
        assert status in (200, 201)
        assert http("POST", f"{service.url}/nodes/{NAMES[0]}/pause")[0] == 200
        snapshot_at = time.time()
        assert http("PUT", f"{service.url}/nodes/{NAMES[0]}", {"ts": snapshot_at, **stats_body()})[0] == 200
        wait_for(lambda: http("GET", f"{service.url}/stats")[1]["store"]["history"]["queued_jobs"] == 0
                 and time.time() > snapshot_at + 2.5, 10, "the snapshot kept")
        sent = publish(service.ingest, 10)
        wait_for(lambda: int(http("GET", f"{service.url}/stats")[1]["received"]) >= sent, 10, "samples received")
        sent += record_over_http(service.url, 3)  # still pending when the signal comes
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(30) == 0
    with durable_service(data_dir) as restarted:
        after = history(restarted.url)
        node = http("GET", f"{restarted.url}/nodes/{NAMES[0]}")
        cpu = http("GET", f"{restarted.url}/nodes/{NAMES[0]}/cpu?from={int(snapshot_at) - 5}&to={int(snapshot_at) + 5}")
        memory = http("GET", f"{restarted.url}/cluster/10.1.2.3/memory?from={int(snapshot_at) - 5}")
    assert total_samples(after) == sent
    assert cpu[0] == 200 and list(cpu[1].values()) == [stats_body()["cpu"]], cpu
    assert memory[0] == 200 and list(memory[1].values()) == [stats_body()["memory"]], memory
    assert total_samples(after, "minutes") == sent
    assert node[0] == 200 and node[1]["paused"] is True and "10.1.2.3" in node[1]["ips"]


def test_a_second_serve_on_the_same_data_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with durable_service(data_dir):
        done = subprocess.run(
            servertrack_command("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*", "--store", "sqlite",
                                "--data-dir", str(data_dir)),
            env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("servertrack: error: data directory") and "in use" in done.stderr
    assert done.stderr.count("\n") == 1


def test_a_store_of_a_newer_schema_is_refused_with_exit_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with durable_service(data_dir) as service:
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(30)
    with sqlite3.connect(data_dir / "history.sqlite3") as database:
        database.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    done = subprocess.run(
        servertrack_command("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*", "--store", "sqlite",
                            "--data-dir", str(data_dir)),
        env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "newer" in done.stderr or "version" in done.stderr


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "4m") -> Iterator[bool]:
    """A tmpfs of ``size`` at ``path`` when this process may mount one (True), else a plain directory (False)."""
    path.mkdir(parents=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def immutable(path: Path, on: bool) -> None:
    """``chattr -R +i``: nothing under ``path`` may be written, not even by root (EPERM), until undone."""
    subprocess.run(["chattr", "-R", "+i" if on else "-i", str(path)], check=True, capture_output=True)


def survive_a_failing_disk(service: Service, sent: int, breaks: Callable[[], object],
                           repairs: Callable[[], object]) -> int:
    """Break the disk, ingest on, see the store reported failing and the samples served from memory; repair it,
    see the store recover. Returns the samples sent."""
    breaks()
    sent += publish(service.ingest, 40, seq_start=1000)
    wait_for(lambda: applied(service.url) == sent, 10, "samples applied while the disk fails")
    wait_for(lambda: http("GET", f"{service.url}/healthz")[1]["store"] == "failing", 15,
             "healthz to report the failing store")
    stats = http("GET", f"{service.url}/stats")[1]
    assert stats["store"]["store"] == "failing"
    assert stats["store"]["log"]["failures"] + stats["store"]["history"]["failures"] > 0
    assert total_samples(history(service.url)) == sent  # served from memory meanwhile
    repairs()
    wait_for(lambda: http("GET", f"{service.url}/healthz")[1]["store"] == "ok", 20,
             "the store to recover once the disk is back")
    return sent


def stop_and_count_logged_failures(service: Service) -> int:
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(30) == 0
    log = service.process.stderr.read() if service.process.stderr else ""
    return log.count("write failed, retrying")


def test_a_full_disk_is_survived_reported_and_loses_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "disk"
    with small_filesystem(mount) as mounted:
        data_dir = mount / "data"
        filler = mount / "filler"

        def fill() -> None:
            if not mounted:  # no tmpfs here: an immutable directory (EPERM) stands in for ENOSPC
                immutable(data_dir, True)
                return
            with open(filler, "wb", buffering=0) as full:
                for size in (65536, 4096, 1):  # to the last byte
                    with contextlib.suppress(OSError):
                        while True:
                            full.write(b"\0" * size)

        def free() -> None:
            if mounted:
                filler.unlink()
            else:
                immutable(data_dir, False)

        with durable_service(data_dir, "--checkpoint-every", "1s") as service:
            sent = publish(service.ingest, 5)
            wait_for(lambda: applied(service.url) == sent, 10, "samples applied")
            sent = survive_a_failing_disk(service, sent, fill, free)
            assert stop_and_count_logged_failures(service) <= 2  # once a minute at most, per thread
        with durable_service(data_dir) as restarted:
            assert total_samples(history(restarted.url)) == sent


def test_a_read_only_data_dir_is_survived_reported_and_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with durable_service(data_dir, "--checkpoint-every", "1s") as service:
        sent = publish(service.ingest, 5)
        wait_for(lambda: applied(service.url) == sent, 10, "samples applied")
        try:
            sent = survive_a_failing_disk(service, sent, lambda: immutable(data_dir, True),
                                          lambda: immutable(data_dir, False))
        finally:
            immutable(data_dir, False)
        assert stop_and_count_logged_failures(service) <= 2
    with durable_service(data_dir) as restarted:
        assert total_samples(history(restarted.url)) == sent
