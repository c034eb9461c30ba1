"""What a closed hour costs the Redis store, per server: commands, bytes on the wire, Redis memory.

Starts its own ``redis-server`` (``--save ''``, a free loopback port, a temp dir), writes one closed hour
of minute blocks for ``--servers`` servers (one sample a second, random loads) through
``RedisHistory.write_blocks`` as the store's thread does, and reports ``INFO commandstats`` per command,
``total_net_input_bytes`` and ``used_memory`` per server, ``MEMORY USAGE`` of one block key, the write's
wall time, and the mean time of a 25-hour range read of one server's minutes (``RedisReads.read_range``).

    python bench/redis_store_cost.py [--servers 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servertrack.common.periods import HistoryBlocks
from servertrack.store.redis_store import RedisHistory
from tests.redis_servers import RedisServer, need_redis_server

NOW = 1_800_000_000.0


def main() -> None:
    """Run the measurement once and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    need_redis_server()
    with tempfile.TemporaryDirectory(prefix="servertrack-redis-bench-") as directory:
        server = RedisServer(Path(directory)).start()
        try:
            measure(server, args.servers, args.reads)
        finally:
            server.stop()


def measure(server: RedisServer, count: int, reads: int) -> None:
    """Write one closed hour of ``count`` servers and read ``reads`` ranges back; print the figures."""
    client = redis.Redis(host="127.0.0.1", port=server.port)
    history = RedisHistory(client, {60: 7 * 86_400, 3600: 400 * 86_400}, 7 * 86_400, lambda: NOW, "bench")
    rng = np.random.default_rng(1)
    period = int(NOW // 3600) - 1
    cpu, ram = rng.uniform(0, 100, (count, 60)), rng.uniform(0, 100, (count, 60))
    names = [f"node{index:06d}.example" for index in range(count)]
    blocks = HistoryBlocks(60, names, np.full(count, period), np.zeros(count, np.int64),
                           np.full((count, 60), 60, np.uint32), cpu * 60, ram * 60,
                           (cpu * 0.9e5).astype(np.uint32), (cpu * 1e5).astype(np.uint32),
                           (ram * 0.9e5).astype(np.uint32), (ram * 1e5).astype(np.uint32))
    client.config_resetstat()
    wire, memory = client.info("stats")["total_net_input_bytes"], client.info("memory")["used_memory"]
    started = time.perf_counter()
    history.write_blocks(blocks)
    took = time.perf_counter() - started
    calls = {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()
             if name not in ("cmdstat_info", "cmdstat_config|resetstat")}
    wire = client.info("stats")["total_net_input_bytes"] - wire
    memory = client.info("memory")["used_memory"] - memory
    key = f"st:{{{names[0]}}}:m:{period}"
    print(f"closed hour of {count} servers written in {took:.3f} s; commands: {calls} "
          f"({sum(calls.values()) / count:.1f} a server)")
    print(f"per server: {wire / count:.0f} bytes on the wire, {memory / count:.0f} bytes of Redis memory; "
          f"one block key: MEMORY USAGE {client.memory_usage(key)} B, its part {client.hstrlen(key, '0')} B")
    reader = history.reader()
    started = time.perf_counter()
    for index in range(reads):
        reader.read_range(names[index % count], 60, period * 60 - 24 * 60, 25 * 60)
    print(f"a 25-hour range of one server's minutes: {(time.perf_counter() - started) / reads * 1000:.2f} ms")
    client.close()


if __name__ == "__main__":
    main()
