"""The Redis store on real Redis (a server and a three-master cluster, ``tests.redis_servers``): every key
it writes has a TTL, every key of a server is in that server's slot, a range is read in one round trip,
and Redis going down while the collector ingests is counted, survived and caught up with, nothing lost."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis.cluster import key_slot
from redis.connection import Connection
from redis.exceptions import ResponseError

from servertrack.common.errors import ServerTrackError
from servertrack.common.periods import HistoryBlocks
from servertrack.store import Retention, Store, durable, make_store, worker
from servertrack.store.redis_keys import slot_tag
from servertrack.store.redis_store import RedisHistory
from tests.node_fixtures import HELLO_INFO, stats_body
from tests.redis_servers import RedisServer, free_port, need_redis_server
from tests.store.test_recovery import FakeClock
from tests.store.test_store_contract import START, Monitor

NAMES = ["web-1", "web-2", "db-1"]


def factory(url: str) -> Callable[[Path, Retention, FakeClock], Store]:
    return lambda directory, retention, clock: make_store(url, str(directory), retention, clock)


def run_fleet(monitor: Monitor, clock: FakeClock, minutes: int, late: bool = True) -> int:
    """``minutes`` minutes of one sample a minute per name (hours and a day close), node records and
    snapshots, and (``late``) samples ten minutes late (after an hour closed: delta parts). Returns the samples applied."""
    monitor.nodes.hello("web-1", ["10.0.0.1"], dict(HELLO_INFO), paused=False)
    applied = 0
    for step in range(minutes):
        for name in NAMES:
            monitor.batch.add(name, clock.now, float(step % 100), 40.0)
            applied += 1
        if late and step % 40 == 39:
            monitor.batch.add("db-1", clock.now - 600, 99.0, 99.0)
            applied += 1
        if step % 30 == 0:
            monitor.nodes.record_stats("web-1", stats_body(), clock.now, clock.now)
        monitor.apply()
        clock.now += 60
    return applied


def all_keys(clients: list[Any]) -> dict[str, Any]:
    """Every key on every node, with the client of the node holding it."""
    found: dict[str, Any] = {}
    for client in clients:
        for key in client.scan_iter(count=1000):
            found[key.decode()] = client
    return found


def wait_drained(monitor: Monitor, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while monitor.store.health()["history"]["queued_jobs"]:
        assert time.monotonic() < deadline, "the history queue did not drain"
        time.sleep(0.02)


def sharing_pair(target: Any, now: list[float]) -> tuple[Any, RedisHistory, RedisHistory, Any]:
    """A sharing aggregator of ten servers on clock ``now``, a writer (collector a) and a reader (b) of
    ``target`` (a week of minutes, 400 days of hours), and an empty ``LiveShare``."""
    from servertrack.common.aggregator import Aggregator
    from servertrack.store.live_share import LiveShare
    from servertrack.store.redis_store import connect

    aggregator = Aggregator(10, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    keep = {60: 7 * 86_400.0, 3600: 400 * 86_400.0}
    writer = RedisHistory(connect(target), keep, 7 * 86_400.0, lambda: now[0], collector="a")
    reader = RedisHistory(connect(target), keep, 7 * 86_400.0, lambda: now[0], collector="b")
    return aggregator, writer, reader, LiveShare()


@pytest.fixture(params=["redis", "redis+cluster"])
def redis_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[Any]]]:
    """A Redis store URL, emptied, and a client per node (closed after)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        servers = [request.getfixturevalue("redis_standalone")]
    else:
        url = request.getfixturevalue("redis_cluster_url")
        servers = request.getfixturevalue("redis_cluster").nodes
    clients = [server.client() for server in servers]
    try:
        yield url, clients
    finally:
        for client in clients:
            client.close()


def test_every_key_has_a_ttl_and_every_key_of_a_server_is_in_its_slot(
        redis_target: tuple[str, list[Any]], tmp_path: Path) -> None:
    url, clients = redis_target
    clock = FakeClock(START)
    monitor = Monitor(factory(url), tmp_path, clock)
    try:
        run_fleet(monitor, clock, 150)
        wait_drained(monitor)
        keys = all_keys(clients)  # the index of delta parts is trimmed by the checkpoint at close
    finally:
        monitor.close()  # the agents' last seqs are written then
    keys.update(all_keys(clients))
    # a server's keys: st:{NAME}:KIND[:PERIOD]; the fleet-wide ones: st:KIND[:COLLECTOR]
    kinds = {key.split("}:")[1].split(":")[0] if "}" in key else key.split(":")[1] for key in keys}
    # (``st:deltas:C`` lives from a delta part to the next checkpoint: when present, it is checked too)
    assert {"m", "h", "s", "known", "node", "snaps", "nodes", "meta", "agent-seqs", "dir", "collectors"} <= kinds, \
        sorted(keys)
    parts = {field for key, client in keys.items() if ":m:" in key for field in client.hkeys(key)}
    assert any(part.endswith(b"/0") for part in parts) and len(parts) > 1  # bases, deltas, live cells
    for key, client in keys.items():
        ttl = client.ttl(key)
        assert ttl > 0, (key, ttl)  # -1: a key without TTL
    by_server: dict[str, set[int]] = {}
    for key, client in keys.items():
        tag = slot_tag(key)
        if tag != key:
            slot = key_slot(key.encode())
            assert slot == key_slot(tag.encode()) == client.execute_command("CLUSTER KEYSLOT", key) \
                if len(clients) > 1 else slot == key_slot(tag.encode())
            by_server.setdefault(tag, set()).add(id(client))
    assert set(by_server) == set(NAMES)
    assert all(len(nodes) == 1 for nodes in by_server.values())  # one server, one node
    if len(clients) > 1:  # the three servers are spread over the cluster
        assert len({key_slot(name.encode()) for name in NAMES}) == 3


def test_a_range_is_read_in_one_round_trip(redis_target: tuple[str, list[Any]], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, clients = redis_target
    clock = FakeClock(START)
    monitor = Monitor(factory(url), tmp_path, clock)
    try:
        run_fleet(monitor, clock, 200, late=False)
        wait_drained(monitor)
        reader = monitor.store.open_reader()
        # once first: the readers' client opens its connection to the node (the handshake is not the read)
        reader.read_range("web-2", 60, int(START // 3600) * 60 - 60, 6 * 60)
        sent: list[int] = []
        real_send = Connection.send_packed_command

        reading = threading.get_ident()

        def counted(self: Connection, command: Any, check_health: bool = True) -> None:
            if threading.get_ident() == reading:  # not the store's thread, finishing its last job
                sent.append(1)
            real_send(self, command, check_health)

        before = [client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0) for client in clients]
        monkeypatch.setattr(Connection, "send_packed_command", counted)
        cells = reader.read_range("web-2", 60, int(START // 3600) * 60 - 60, 6 * 60)  # six hours: six hashes
        monkeypatch.undo()
        after = [client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0) for client in clients]
    finally:
        monitor.close()
    assert cells is not None and int(cells.samples.sum()) > 120  # closed hours came back from Redis
    assert len(sent) == 1  # one write to one socket: one round trip
    assert sorted(b - a for a, b in zip(before, after) if b != a) == [6]  # every HGETALL on one node


def test_redis_down_then_back_is_counted_survived_and_caught_up_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_redis_server()
    monkeypatch.setattr(worker, "RETRY_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(worker, "RETRY_MOST_SECONDS", 0.1)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", None, persistent=True).start()  # its data outlives a restart
    clock = FakeClock(START)
    try:
        monitor = Monitor(factory(server.url), tmp_path / "data", clock)
        try:
            applied = run_fleet(monitor, clock, 30, late=False)
            wait_drained(monitor)
            assert monitor.store.health()["store"] == "ok"
            server.stop()
            applied += run_fleet(monitor, clock, 120, late=False)  # two hours close while Redis is down
            deadline = time.monotonic() + 10
            while monitor.store.health()["history"]["failures"] < 3:
                assert time.monotonic() < deadline, monitor.store.health()
                time.sleep(0.02)
            body = monitor.store.health()
            assert body["store"] == "failing"
            assert body["history"]["queued_jobs"] > 0 and body["history"]["refused"] == 0
            assert "Connection refused" in body["history"]["last_error"] or "Error" in body["history"]["last_error"]
            windows = monitor.aggregator.windows("web-1")
            assert windows is not None and int(windows.hours.samples.sum()) == 150  # ingest went on in memory
            server.start()
            deadline = time.monotonic() + 10
            while monitor.store.health()["store"] != "ok" or monitor.store.health()["history"]["queued_jobs"]:
                assert time.monotonic() < deadline, monitor.store.health()
                time.sleep(0.02)
            first_minute = int(START // 60)
            ranged = asyncio.run(monitor.history.loads("web-1", 60, first_minute, 150))
            assert ranged is not None and ranged.window.samples.tolist() == [1] * 150
        finally:
            monitor.close()
        # from Redis alone (a fresh data dir, so another collector id): the hours that closed while it was
        # down (22:00, 23:00) are there, every sample, and the open 00:00 hour as the first one shared it
        again = Monitor(factory(server.url), tmp_path / "fresh", clock)
        try:
            reader = again.store.open_reader()
            for name in NAMES:
                kept = reader.read_range(name, 60, first_minute, 150)
                assert kept is not None and kept.samples.tolist() == [1] * 150, name
            assert applied == 150 * len(NAMES)
        finally:
            again.close()
    finally:
        server.stop()


def one_block(name: str, period: int, part: int, samples: int, cpu: float) -> HistoryBlocks:
    """A block of ``name``'s hour ``period``: ``samples`` samples of load ``cpu`` in its first minute."""
    counts = np.zeros((1, 60), np.uint32)
    counts[0, 0] = samples
    fixed = np.zeros((1, 60), np.uint32)
    fixed[0, 0] = int(cpu * 100_000)
    return HistoryBlocks(60, [name], np.array([period]), np.array([part]), counts, counts * cpu, counts * cpu,
                         fixed, fixed, fixed, fixed)


def test_a_base_replaces_its_parts_and_a_crash_drops_the_parts_its_log_lost(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    history = RedisHistory(client, {60: 7 * 86_400.0, 3600: 400 * 86_400.0}, 7 * 86_400.0, lambda: START)
    period = int(START // 3600) - 2
    try:
        first = period * 60
        history.write_blocks(one_block("web-1", period, 0, 10, 5.0))
        history.write_blocks(one_block("web-1", period, 7, 1, 50.0))  # late samples: chunks 7 and 9
        history.write_blocks(one_block("web-1", period, 9, 2, 1.0))
        cells = history.read_cells("web-1", 60, first, 60)
        assert (int(cells.samples[0]), int(cells.cpu_min[0]), int(cells.cpu_max[0])) == (13, 100_000, 5_000_000)
        assert history.drop_parts_after(8) == 1  # the log ended with chunk 8: part 9 goes, 7 stays
        assert int(history.read_cells("web-1", 60, first, 60).samples[0]) == 11
        history.forget_parts_before(8)  # a checkpoint covers chunk 7: never dropped now
        assert client.zcard("st:deltas:c") == 0 and history.drop_parts_after(0) == 0
        other = RedisHistory(client, {60: 7 * 86_400.0, 3600: 400 * 86_400.0}, 7 * 86_400.0, lambda: START,
                             collector="other")
        other.write_blocks(one_block("web-1", period, 0, 3, 5.0))  # another collector's part of the hour
        history.write_blocks(one_block("web-1", period, 0, 4, 5.0))  # a base again: replaces its own parts
        assert int(history.read_cells("web-1", 60, first, 60).samples[0]) == 4 + 3
        assert sorted(client.hkeys(f"st:{{web-1}}:m:{period}")) == [b"c/0", b"other/0"]
        assert history.read_range("nobody", 60, first, 60) is None and history.has_server("web-1")
    finally:
        history.close()


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA (``ca.pem``) and a certificate for 127.0.0.1 it signed (``server.pem``, ``server.key``)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca")
    openssl("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def test_rediss_checks_the_server_against_the_store_ca(tmp_path: Path) -> None:
    need_redis_server()
    ca, certificate, key = make_certificates(tmp_path)
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                                "--tls-cert-file", str(certificate), "--tls-key-file", str(key),
                                "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://127.0.0.1:{port}/0"
    retention = Retention()
    try:
        deadline = time.monotonic() + 10
        while True:
            probe = make_store(url, str(tmp_path / "probe"), retention, time.time, ca_file=str(ca))
            try:
                probe.open()
                break
            except ServerTrackError:
                assert time.monotonic() < deadline and process.poll() is None, "redis-server with TLS did not start"
                time.sleep(0.05)
        asyncio.run(probe.close())
        clock = FakeClock(START)
        monitor = Monitor(lambda directory, kept, clock: make_store(url, str(directory), kept, clock,
                                                                   ca_file=str(ca)), tmp_path / "data", clock)
        try:
            run_fleet(monitor, clock, 70, late=False)
            wait_drained(monitor)
            cells = monitor.store.open_reader().read_range("web-1", 60, int(START // 60), 30)
            assert cells is not None and cells.samples.tolist() == [1] * 30  # 22:30 to 23:00, closed
        finally:
            monitor.close()
        untrusted = make_store(url, str(tmp_path / "other"), retention, time.time)  # the system's CAs
        with pytest.raises(ServerTrackError) as raised:
            untrusted.open()
        assert f"cannot use the Redis store {url}" in str(raised.value) and "\n" not in str(raised.value)
        assert "certificate" in str(raised.value).lower()
    finally:
        process.terminate()
        process.wait(5)


def test_a_stop_while_redis_is_down_is_caught_up_by_the_next_start(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    need_redis_server()
    monkeypatch.setattr(worker, "RETRY_MOST_SECONDS", 0.1)
    monkeypatch.setattr(durable, "CLOSE_TIMEOUT_SECONDS", 1.0)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", None, persistent=True).start()
    clock = FakeClock(START)
    try:
        monitor = Monitor(factory(server.url), tmp_path / "data", clock)
        try:
            run_fleet(monitor, clock, 20, late=False)
            wait_drained(monitor)
            server.stop()
            run_fleet(monitor, clock, 60, late=False)  # the 22:00 hour closes while Redis is down
        finally:
            monitor.close()  # gives up the queue after CLOSE_TIMEOUT_SECONDS: no last checkpoint
        with pytest.raises(ServerTrackError, match="cannot"):  # a start needs Redis
            Monitor(factory(server.url), tmp_path / "data", clock)
        server.start()
        again = Monitor(factory(server.url), tmp_path / "data", clock)  # replays the log, writes the blocks again
        try:
            kept = again.store.open_reader().read_range("web-1", 60, int(START // 60), 80)
            assert kept is not None and kept.samples.tolist() == [1] * 30 + [0] * 50  # 22:30-23:00 closed
            windows = again.aggregator.windows("web-1")
            assert windows is not None and int(windows.hours.samples.sum()) == 80
        finally:
            again.close()
    finally:
        server.stop()


def test_the_queue_stays_within_its_cap_while_redis_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_redis_server()
    cap = 64 * 1024
    monkeypatch.setattr(durable, "STORE_QUEUE_BYTES", cap)
    monkeypatch.setattr(durable, "CLOSE_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(worker, "RETRY_MOST_SECONDS", 0.1)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    clock = FakeClock(START)
    monitor = Monitor(factory(server.url), tmp_path / "data", clock)
    try:
        server.stop()
        seen: list[int] = []
        for _ in range(4):  # hours close, snapshots and checkpoints queue up: more than the cap holds
            run_fleet(monitor, clock, 60, late=False)
            seen.append(monitor.store.health()["history"]["queued_bytes"])
        # failing once the worker's first attempt has failed (a refused connection is retried by the client
        # first: on a loaded machine the applies above can all run before that)
        deadline = time.monotonic() + 10
        while monitor.store.health()["store"] != "failing":
            assert time.monotonic() < deadline, monitor.store.health()
            time.sleep(0.02)
        body = monitor.store.health()
        assert body["store"] == "failing" and body["history"]["refused"] > 0  # refused, counted, not grown
        assert 0 < max(seen) <= cap
        windows = monitor.aggregator.windows("web-1")
        assert windows is not None and int(windows.hours.samples.sum()) == 240  # ingest went on in memory
    finally:
        monitor.close()
        server.stop()


def test_a_share_reads_back_on_another_collector_cell_for_cell(redis_target: tuple[str, list[Any]]) -> None:
    """What one collector shares (``write_share``) is what another reads of it (``read_fleet`` leaving
    itself out): every open minute and hour cell (the current hour's summed from its minutes) and every
    second of each server, over more servers than one script call takes, on every node; the keys it writes
    carry TTLs; a later share replaces a cell."""
    from servertrack.common.aggregator import Aggregator
    from servertrack.store.live_share import LiveShare
    from servertrack.store.redis_store import connect
    from servertrack.store.store_url import parse_store

    url, clients = redis_target
    target = parse_store(url)
    assert not isinstance(target, str)
    now = [START]
    aggregator = Aggregator(2_000, clock=lambda: now[0], closing=True)
    aggregator.sharing = True
    names = [f"srv-{index:04d}" for index in range(1_200)]  # over two calls per node
    rng = np.random.default_rng(7)
    for second in range(3):  # three seconds, the third a minute later: two minutes of one hour
        at = START + (60 if second == 2 else second)
        aggregator.apply(names, np.full(len(names), at), rng.uniform(0, 100, len(names)),
                         rng.uniform(0, 100, len(names)), chunk_id=second + 1)
    now[0] = START + 61
    keep = {60: 7 * 86_400.0, 3600: 400 * 86_400.0}
    writer = RedisHistory(connect(target), keep, 7 * 86_400.0, lambda: now[0], collector="a")
    reader = RedisHistory(connect(target), keep, 7 * 86_400.0, lambda: now[0], collector="b")
    try:
        share = LiveShare()
        share.add(aggregator.take_shared())
        writer.write_share(share.take(), None, len(names))
        for name in names[::97] + [names[-1]]:
            windows = aggregator.windows(name)
            assert windows is not None
            minutes, hours, seconds = windows.minutes, windows.hours, windows.seconds
            spans = [(60, minutes.first_bucket, len(minutes.samples)), (3600, hours.first_bucket, len(hours.samples))]
            splits, shared_seconds = reader.reader().read_fleet(name, spans, "b")
            for split, window in zip(splits, (minutes, hours)):
                assert split is not None
                others = split[1]  # every collector's but the reader's own: the writer's cells alone
                assert others.samples.tolist() == window.samples.tolist(), name
                assert np.allclose(others.cpu_sum, window.cpu_sum) and np.allclose(others.ram_sum, window.ram_sum)
            held = {second: samples for second, samples, _, _ in shared_seconds if second >= seconds.first_second}
            expected = {seconds.first_second + offset: int(count)
                        for offset, count in enumerate(seconds.samples.tolist()) if count}
            assert held == expected, name
        keys = all_keys(clients)
        written = [key for key in keys if key.startswith("st:{srv-")]
        assert len(written) == 3 * len(names)  # per server: its minutes' and hours' block hashes, its seconds
        assert all(keys[key].ttl(key) > 0 for key in written)
        assert len({id(keys[key]) for key in written}) == len(clients)  # spread over every node
        # a later sample: the next share replaces the minute's cell, and only sends what changed
        aggregator.apply([names[0]], [START + 60.5], [100.0], [100.0], chunk_id=9)
        share.add(aggregator.take_shared())
        entries = share.take()
        assert len(entries.minutes.names) == 1 and len(entries.hours.names) == 0  # the current hour: held back
        writer.write_share(entries, None, len(names))
        splits, _ = reader.reader().read_fleet(names[0], [(60, int(START // 60) + 1, 1)], "b")
        assert splits[0] is not None and splits[0][1].samples.tolist() == [2]
        assert splits[0][0].samples.tolist() == [2]  # every collector's: the reader has none of its own
        # the reader's own part is left out of "all but own", counted in "all"
        assert reader.reader().read_fleet(names[0], [(60, int(START // 60) + 1, 1)], "a")[0][0][1].samples.tolist() \
            == [0]
    finally:
        for client in clients:
            client.flushall()
        writer.close()
        reader.close()


def test_the_current_hour_is_summed_from_the_minutes_and_shared_once_it_is_over(
        redis_target: tuple[str, list[Any]]) -> None:
    """A share leaves the current hour's cell out (a provisional copy once a minute): another collector
    reads that hour, and the previous one, as the writer's minutes add up; once the hour is over the next
    share writes its cell and deletes the provisional one; two hours later the cell alone answers. A
    collector gone mid-hour leaves a provisional cell up to a minute behind its last share: that hour is
    read from its minutes, however long ago."""
    from servertrack.common.aggregator import Aggregator
    from servertrack.store.live_share import LiveShare
    from servertrack.store.redis_store import connect
    from servertrack.store.store_url import parse_store

    url, clients = redis_target
    target = parse_store(url)
    assert not isinstance(target, str)
    hour = int(START // 3600)
    now = [START]
    aggregator, writer, reader, share = sharing_pair(target, now)
    keep = {60: 7 * 86_400.0, 3600: 400 * 86_400.0}

    def shared(at: float, *samples: tuple[str, float, float]) -> None:
        now[0] = at
        for chunk, (name, ts, cpu) in enumerate(samples, start=1):
            aggregator.apply([name], [ts], [cpu], [cpu], chunk_id=int(at) * 10 + chunk)
        share.add(aggregator.take_shared())
        writer.write_share(share.take(), None, 1)

    def hours_read(name: str) -> dict[int, tuple[int, float]]:
        split = reader.reader().read_split(name, 3600, hour - 2, 5, "b")
        assert split is not None
        others = split[1]
        return {others.first_bucket + offset: (int(count), round(float(cpu), 6)) for offset, (count, cpu)
                in enumerate(zip(others.samples.tolist(), others.cpu_sum.tolist())) if count}

    day_key, index = f"st:{{web}}:h:{hour // 24}", hour % 24

    def day_fields() -> set[str]:
        for client in clients:
            try:
                fields = client.hkeys(day_key)
            except ResponseError:  # a cluster node that does not hold the slot: MOVED
                continue
            if fields:
                return {field.decode() for field in fields}
        return set()

    stopped = RedisHistory(connect(target), keep, 7 * 86_400.0, lambda: now[0], collector="c")
    try:
        # collector c shares a sample of "gone" mid-hour, and one more in the same minute (no new
        # provisional copy: that one holds the first only), then stops for good
        gone = Aggregator(10, clock=lambda: now[0], closing=True)
        gone.sharing = True
        gone_share = LiveShare()
        for chunk, (ts, cpu) in enumerate([(START, 70.0), (START + 1, 30.0)], start=1):
            now[0] = ts
            gone.apply(["gone"], [ts], [cpu], [cpu], chunk_id=chunk)
            gone_share.add(gone.take_shared())
            stopped.write_share(gone_share.take(), None, 1)
        shared(START, ("web", START, 10.0))
        shared(START + 1, ("web", START + 1, 20.0))  # the same minute: no provisional cell again
        assert day_fields() == {f"a/p{index}"}  # the hour's cell is not shared, its provisional copy is
        assert hours_read("web") == {hour: (2, 30.0)}  # the minutes, added up
        shared(START + 60, ("web", START + 60, 30.0))  # a new minute: a new provisional cell
        assert hours_read("web") == {hour: (3, 60.0)}
        next_hour = (hour + 1) * 3600.0
        now[0] = next_hour + 30
        assert hours_read("web") == {hour: (3, 60.0)}  # the previous hour: its minutes still
        assert hours_read("gone") == {hour: (2, 100.0)}
        shared(next_hour + 30, ("web", next_hour + 30, 40.0))  # the hour is over: its cell is shared
        assert f"a/m{index}" in day_fields() and f"a/p{index}" not in day_fields()
        assert hours_read("web") == {hour: (3, 60.0), hour + 1: (1, 40.0)}
        now[0] = next_hour + 2 * 3600 + 30  # two hours later: no minutes read for those hours
        assert hours_read("web") == {hour: (3, 60.0), hour + 1: (1, 40.0)}  # its cell; the next one's provisional
        # c's hour holds only its provisional copy (1 sample): the hour it stopped in is read from its
        # minutes, as its last share left them
        assert hours_read("gone") == {hour: (2, 100.0)}
    finally:
        for client in clients:
            client.flushall()
        writer.close()
        reader.close()
        stopped.close()


def test_the_shared_directory_lists_every_node_when_it_is_built_in_parts(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory's node columns are filled in parts (the loop turns between two): with parts of two
    nodes, all five nodes are listed with their addresses."""
    from servertrack.store.fleet_directory import decode_directory

    monkeypatch.setattr(durable, "SHARE_PART_NODES", 2)
    clock = FakeClock(START)
    monitor = Monitor(factory(redis_url), tmp_path, clock)
    client = redis.Redis.from_url(redis_url)
    try:
        names = [f"node-{index}" for index in range(5)]
        for index, name in enumerate(names):
            monitor.nodes.hello(name, [f"10.0.0.{index + 1}"], dict(HELLO_INFO), paused=False)
            monitor.batch.add(name, clock.now, 10.0, 20.0)
        monitor.batch.add("plain-server", clock.now, 10.0, 20.0)
        clock.now += 2  # a share is due
        monitor.apply()
        wait_drained(monitor)
        directory = decode_directory(client.get(f"st:dir:{monitor.store.collector}"))
        listed = dict(zip(directory.table.names, directory.ips))
        assert listed == {**{name: [f"10.0.0.{index + 1}"] for index, name in enumerate(names)}, "plain-server": []}
        assert directory.table.is_node.tolist() == [True] * 5 + [False]
    finally:
        monitor.close()
        client.flushall()
        client.close()


def test_a_share_after_a_slot_moved_goes_to_the_slots_new_node(tmp_path: Path) -> None:
    """A share writes to nodes' own connections; when a server's slot moves to another master, the share
    that meets the old node fails, the cluster's slots are asked for again, and its retry writes there. A
    read (also on the node's own connection) that meets the old node is answered through the cluster."""
    from servertrack.store.store_url import parse_store
    from tests.redis_servers import started_cluster

    with started_cluster("servertrack-redis-move-") as cluster:
        target = parse_store(cluster.url)
        assert not isinstance(target, str)
        now = [START]
        aggregator, writer, reader, share = sharing_pair(target, now)
        clients = [node.client() for node in cluster.nodes]
        try:
            aggregator.apply(["mover"], [START], [10.0], [10.0], chunk_id=1)
            share.add(aggregator.take_shared())
            writer.write_share(share.take(), None, 1)
            minute = [(60, int(START // 60), 1)]
            assert reader.reader().read_fleet("mover", minute, "b")[0][0][1].samples.tolist() == [1]  # type: ignore[index]
            slot = key_slot(b"st:{mover}:known")
            ids = {client.execute_command("CLUSTER MYID").decode(): client for client in clients}
            owner_id = next(node_id for node_id, client in ids.items()  # the node holding the share's keys
                            if client.execute_command("CLUSTER COUNTKEYSINSLOT", slot))
            source = ids[owner_id]
            dest_id, dest = next((node_id, client) for node_id, client in ids.items() if node_id != owner_id)
            dest.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", owner_id)
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dest_id)
            keys = source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
            assert keys
            port = dest.connection_pool.connection_kwargs["port"]
            source.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)
            for client in clients:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", dest_id)
            assert reader.reader().read_fleet("mover", minute, "b")[0][0][1].samples.tolist() == [1]  # type: ignore[index]
            aggregator.apply(["mover"], [START + 1], [30.0], [30.0], chunk_id=2)
            share.add(aggregator.take_shared())
            entries = share.take()
            with pytest.raises(redis.RedisError):  # MOVED: the writer still held the old node
                writer.write_share(entries, None, 1)
            writer.write_share(entries, None, 1)  # the retry, as the store's worker makes it
            splits, _ = reader.reader().read_fleet("mover", [(60, int(START // 60), 1)], "b")
            assert splits[0] is not None and splits[0][1].samples.tolist() == [2]
            assert dest.hexists("st:{mover}:s", "a/" + str(int(START + 1) % 64))
        finally:
            for client in clients:
                client.close()
            writer.close()
            reader.close()
