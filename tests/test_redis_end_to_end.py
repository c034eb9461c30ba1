"""End to end, ``serve --store redis://...``: real ``servertrack serve`` processes on a real Redis. A
restart on the same Redis with an *empty* data dir comes back with the history, nodes, pauses and snapshot
history (so they come from Redis, not from the local log or checkpoints); a password comes from a file and
a wrong or missing one or a Redis that is not there is one line on stderr and exit code 2, and
the ready line names the store without any password."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.conftest import servertrack_command, subprocess_env
from tests.node_fixtures import stats_body
from tests.redis_servers import RedisServer, free_port, need_redis_server
from tests.test_end_to_end import (
    START_SECONDS,
    Service,
    http,
    read_line,
    spawned,
    wait_for,
)

NAME = "redis-e2e.example"
HELLO = {"name": NAME, "hostname": NAME, "ip": ["10.9.8.7"], "boot_time": 1_790_000_000, "os": "Linux",
         "platform": "x86_64", "cpu_count": 2, "memory_total": 2**30, "agent_version": "test", "interval": 1.0}


@contextlib.contextmanager
def redis_service(*flags: str) -> Iterator[tuple[Service, dict[str, str]]]:
    """A real ``serve`` with ``flags`` on free ports, and the fields of its ready line; killed on exit."""
    with spawned("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*", *flags) as process:
        fields = dict(part.split("=", 1) for part in read_line(process, START_SECONDS).split()[2:])
        yield Service(process, fields["http"], fields["ingest"], fields.get("control", "")), fields


def serve_refusals(*runs: tuple[str, ...]) -> list[tuple[int, str]]:
    """``serve`` with each of ``runs``' flags, all at once (each is expected to exit at once): the exit
    codes and stderr."""
    processes = [subprocess.Popen(servertrack_command("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*",
                                                      *flags), env=subprocess_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for flags in runs]
    results = []
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        results.append((process.returncode, stderr))
    return results


def yesterday_late() -> int:
    """A second of the last hour of yesterday (UTC) that serve still accepts (at most 24 h old): its day is
    closed, so the hour ring hands the sample to the store at once, as a delta block. In the last minutes
    of a day that second would be too old: wait for midnight then (bounded, rare)."""
    now = time.time()
    if now % 86_400 > 86_400 - 180:
        time.sleep(86_400 - now % 86_400 + 1)
        now = time.time()
    return int(now - now % 86_400) - 120


def test_a_restart_on_the_same_redis_with_an_empty_data_dir_comes_back_with_the_history(
        tmp_path: Path, redis_url: str) -> None:
    late = yesterday_late()
    with redis_service("--store", redis_url, "--data-dir", str(tmp_path / "first"),
                       "--snapshot-every", "1s") as (service, ready):
        assert ready["store"] == redis_url
        store = http("GET", f"{service.url}/stats")[1]["store"]
        assert store["backend"] == "redis" and store["store"] == "ok" and store["url"] == redis_url
        assert http("POST", f"{service.url}/nodes", HELLO)[0] in (200, 201)
        assert http("POST", f"{service.url}/nodes/{NAME}/pause")[0] == 200
        snapshot_at = time.time()
        assert http("PUT", f"{service.url}/nodes/{NAME}", {"ts": snapshot_at, **stats_body()})[0] == 200
        # first a sample now (the server's rings move to today, closing yesterday), then late ones
        assert http("POST", f"{service.url}/loads", [{"server": NAME, "cpu": 1.0, "ram": 1.0}])[0] == 202
        wait_for(lambda: http("GET", f"{service.url}/servers/{NAME}/loads")[0] == 200, 10, "the first sample")
        loads = [{"server": NAME, "ts": late + index, "cpu": 20.0 + index, "ram": 30.0} for index in range(5)]
        assert http("POST", f"{service.url}/loads", loads)[0] == 202
        client = redis.Redis.from_url(redis_url)
        try:  # the snapshot history and the late hour's block are in Redis
            wait_for(lambda: client.exists(f"st:{{{NAME}}}:snaps", f"st:{{{NAME}}}:h:{late // 86_400}") == 2, 10,
                     "the snapshot and the late hour kept")
        finally:
            client.close()
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(30) == 0
    with redis_service("--store", redis_url, "--data-dir", str(tmp_path / "second")) as (again, _):
        hour = http("GET", f"{again.url}/servers/{NAME}/loads?from={late - late % 3600}&to={late}&step=hour")
        node = http("GET", f"{again.url}/nodes/{NAME}")
        cpu = http("GET", f"{again.url}/nodes/{NAME}/cpu?from={int(snapshot_at) - 5}&to={int(snapshot_at) + 5}")
    assert hour[0] == 200, hour
    assert [bucket["samples"] for bucket in hour[1]["buckets"]] == [5]
    assert hour[1]["buckets"][0]["cpu"]["min"] == 20.0 and hour[1]["buckets"][0]["cpu"]["max"] == 24.0
    assert node[0] == 200 and node[1]["paused"] is True and "10.9.8.7" in node[1]["ips"]
    assert cpu[0] == 200 and list(cpu[1].values()) == [stats_body()["cpu"]], cpu


def test_the_password_comes_from_a_file_and_a_wrong_one_is_one_line(tmp_path: Path) -> None:
    need_redis_server()
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", None, password="s3cret-redis-pw").start()
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("s3cret-redis-pw\n")
    wrong.write_text("not-the-password\n")
    try:
        refused, missing, nobody = serve_refusals(
            ("--store", server.url, "--data-dir", str(tmp_path / "a"), "--store-password-file", str(wrong)),
            ("--store", server.url, "--data-dir", str(tmp_path / "b")),
            ("--store", f"redis://127.0.0.1:{free_port()}/0", "--data-dir", str(tmp_path / "d")))
        with redis_service("--store", server.url, "--data-dir", str(tmp_path / "c"),
                           "--store-password-file", str(right)) as (service, ready):
            assert http("GET", f"{service.url}/stats")[1]["store"]["store"] == "ok"
            assert ready["store"] == server.url == f"redis://127.0.0.1:{server.port}/0"
            assert all("s3cret" not in str(part) for part in (*service.process.args, *ready.values()))
    finally:
        server.stop()
    for (code, stderr), says in ((refused, "invalid username-password pair"),
                                 (missing, "it needs a password: give it with --store-password-file"),
                                 (nobody, "Connection refused")):
        assert code == 2, (code, stderr)
        assert stderr.startswith("servertrack: error: ") and stderr.count("\n") == 1, stderr
        assert says in stderr and "Traceback" not in stderr and "s3cret" not in stderr, stderr
    assert f"cannot use the Redis store {server.url}" in refused[1]
