"""Real Redis servers for the tests: ``redis-server`` processes on free loopback ports, in temp dirs.

``RedisServer`` is one server (``--save '' --appendonly no`` unless a test
wants the data to outlive a restart); ``RedisClusterServers`` is three of
them as a cluster of three masters (``redis-cli --cluster create``), ready
once every node says ``cluster_state:ok``. The fixtures that start them
(``redis_url``, ``redis_cluster_url``, in ``tests/store/conftest.py`` and
the end-to-end tests) are session-scoped and empty the data between tests.
Without ``redis-server`` the tests skip, except under CI (``CI`` set),
where they fail: CI installs it (``.ci/run``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

START_SECONDS = 10.0


def need_redis_server() -> None:
    """Skip (fail under CI) when ``redis-server`` and ``redis-cli`` are not installed."""
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return
    message = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must have it")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_cluster_port() -> int:
    """A free port P for a cluster node: at most 55535, and its cluster bus port P + 10000 free too."""
    while True:
        port = random.randint(20_000, 55_535)
        try:
            with socket.socket() as low, socket.socket() as high:
                low.bind(("127.0.0.1", port))
                high.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port


class RedisServer:
    """One ``redis-server`` on 127.0.0.1 (see the module's docstring)."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str, persistent: bool = False,
                 password: str | None = None) -> None:
        self.directory = directory
        self.port = free_port() if port is None else port
        self.password = password
        self._extra = list(extra)
        self._persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self._persistent else \
            ["--appendonly", "no"]
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   *persistence, "--dir", str(self.directory), "--daemonize", "no", "--logfile",
                   str(self.directory / f"redis-{self.port}.log"), *self._extra]
        if self.password is not None:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, redis.ResponseError):  # ResponseError: "LOADING"
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.directory / f"redis-{self.port}.log"
                    raise RuntimeError(f"redis-server on port {self.port} did not start: "
                                       f"{log.read_text()[-2000:] if log.exists() else ''}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop it (SIGTERM; SIGKILL after 5 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client of DB 0 (close it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)


class RedisClusterServers:
    """Three masters as one Redis Cluster (see the module's docstring)."""

    def __init__(self, directory: Path, persistent: bool = False, replicas: int = 0) -> None:
        """``persistent``: each node keeps an append-only file (its own), so a node restarted has its data;
        ``replicas``: replicas per master (``--cluster-replicas``), so a master killed is failed over."""
        self.nodes = []
        self.replicas = replicas
        for index in range(3 * (1 + replicas)):
            port = free_cluster_port()
            self.nodes.append(RedisServer(directory, port, "--cluster-enabled", "yes", "--cluster-config-file",
                                          str(directory / f"nodes-{index}.conf"), "--cluster-node-timeout", "2000",
                                          *(["--appenddirname", f"aof-{port}"] if persistent else []),
                                          # a replica fails over however long its link was down (a loaded
                                          # machine delays replication)
                                          *(["--cluster-replica-validity-factor", "0"] if replicas else []),
                                          persistent=persistent))

    def start(self) -> RedisClusterServers:
        """Start the nodes, make them a cluster, wait for ``cluster_state:ok`` on each and, with replicas,
        for every replica's link to its master to be up (a replica that never synced does not fail over)."""
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + START_SECONDS
        for node in self.nodes:
            client = node.client()
            try:
                while client.execute_command("CLUSTER INFO").get("cluster_state") not in ("ok", b"ok"):
                    assert time.monotonic() < deadline, "the Redis cluster did not become ok"
                    time.sleep(0.05)
                while self.replicas:
                    replication = client.info("replication")
                    if replication.get("role") != "slave" or replication.get("master_link_status") == "up":
                        break
                    assert time.monotonic() < deadline, "a Redis replica did not sync with its master"
                    time.sleep(0.05)
            finally:
                client.close()
        return self

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def client(self) -> RedisCluster:
        """A new cluster client (close it)."""
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in self.nodes])

    def flush(self) -> None:
        """Empty every master."""
        for node in self.nodes:
            client = node.client()
            try:
                client.flushall()
            finally:
                client.close()


def temporary_directory(prefix: str) -> Path:
    """A new temp directory (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def redis_standalone() -> Iterator[RedisServer]:
    """One ``redis-server`` for the session (tests take it through ``redis_url``, which empties it)."""
    need_redis_server()
    directory = temporary_directory("servertrack-redis-")
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A three-master Redis Cluster for the session (tests take it through ``redis_cluster_url``)."""
    with started_cluster("servertrack-redis-cluster-") as cluster:
        yield cluster


@contextlib.contextmanager
def started_cluster(prefix: str, persistent: bool = False, replicas: int = 0) -> Iterator[RedisClusterServers]:
    """A ``RedisClusterServers`` of its own in a new temp directory (``prefix``), started; stopped and the
    directory removed on exit (skipped, failed under CI, without ``redis-server``)."""
    need_redis_server()
    directory = temporary_directory(prefix)
    cluster = RedisClusterServers(directory, persistent=persistent, replicas=replicas)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_standalone: RedisServer) -> str:
    """The session's Redis server, emptied before the test: ``redis://127.0.0.1:PORT/0``."""
    client = redis_standalone.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_standalone.url


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The session's Redis Cluster, emptied before the test: ``redis+cluster://...``."""
    redis_cluster.flush()
    return redis_cluster.url
