"""Valid node messages for tests: a stats snapshot and its process entries, to vary per test."""

from __future__ import annotations

from typing import Any

PROCESS_STARTED = 1_799_999_900.0

# The fields of a hello (protocol v2), as an agent on a 4-CPU x86_64 Linux box sends them.
HELLO_INFO = {
    "hostname": "node01", "boot_time": PROCESS_STARTED - 3600.0, "os": "Linux 6.1.0", "platform": "x86_64",
    "cpu_count": 4, "memory_total": 16 * 2**30, "agent_version": "0.1.0", "interval": 1.0,
}


def process_entry(pid: int, **changes: Any) -> dict[str, Any]:
    """One entry of a top-process list."""
    entry = {"pid": pid, "name": "python3", "user": "root", "status": "running", "cpu_percent": 12.5,
             "rss": 50_000_000, "memory_percent": 0.3, "create_time": PROCESS_STARTED, "cmdline": "python3 -m x"}
    entry.update(changes)
    return entry


def stats_body(**changes: Any) -> dict[str, Any]:
    """A valid stats snapshot (``PUT /nodes/{name}``), top-level sections replaced by ``changes``."""
    snapshot: dict[str, Any] = {
        "cpu": {"percent": 25.0, "per_cpu": [20.0, 30.0], "load_avg": [0.5, 0.4, 0.3],
                "times_percent": {"user": 20.0, "system": 5.0, "idle": 75.0, "iowait": 0.0}, "freq_mhz": 2400.0,
                "times_seconds": {"user": 2498.32, "system": 526.52, "idle": 90185.2, "iowait": 12.25}},
        "memory": {"total": 16 * 2**30, "available": 10 * 2**30, "used": 6 * 2**30, "percent": 37.5,
                   "free": 9 * 2**30},
        "swap": {"total": 2**30, "used": 0, "percent": 0.0},
        "disks": [{"device": "/dev/vda1", "mountpoint": "/", "fstype": "ext4", "total": 100 * 2**30,
                   "used": 30 * 2**30, "free": 70 * 2**30, "percent": 30.0}],
        "disk_io": {"read_bytes_per_s": 1024.0, "write_bytes_per_s": 2048.0, "read_ops_per_s": 3.0,
                    "write_ops_per_s": 4.0, "read_count": 21075, "write_count": 38773, "read_bytes": 689047040,
                    "write_bytes": 1100665856},
        "network": [{"interface": "eth0", "rx_bytes_per_s": 10.0, "tx_bytes_per_s": 5.0, "rx_packets_per_s": 1.0,
                     "tx_packets_per_s": 1.0, "rx_errors": 0, "tx_errors": 0, "rx_drops": 0, "tx_drops": 0}],
        "processes": {"count": 120, "top_cpu": [process_entry(101), process_entry(102, cpu_percent=3.0)],
                      "top_memory": [process_entry(202, name="postgres", rss=900_000_000, memory_percent=5.5),
                                     process_entry(101)]},
    }
    snapshot.update(changes)
    return snapshot
