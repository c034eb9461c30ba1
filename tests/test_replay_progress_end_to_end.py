"""A restart that replays a non-trivial log says how far it is on stderr: the log a crashed service
leaves (chunks after the last checkpoint; here no checkpoint at all), written with the store's own
``BatchLog``, then a real ``serve --store sqlite`` started on that data directory."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import numpy as np

from servertrack.store.batch_log import BatchLog
from servertrack.store.records import LoggedBatch
from tests.test_durable_end_to_end import durable_service
from tests.test_end_to_end import http

SERVERS = 1_000
CHUNKS = 200  # 200,000 samples


def write_log(log_directory: Path, now: float) -> int:
    """``CHUNKS`` chunks of one sample per server each, a second apart, ending ``now``; return the samples."""
    names = [f"replay-{index:04d}.example" for index in range(SERVERS)]
    loads = np.arange(SERVERS, dtype=np.uint32) % 100 * 100_000  # fixed point: 1e-5 percent
    with BatchLog(log_directory) as log:
        for chunk in range(CHUNKS):
            second = int(now) - CHUNKS + chunk
            log.append(LoggedBatch(chunk + 1, second + 0.5, names, np.full(SERVERS, second, dtype=np.int64),
                                   loads, loads[::-1].copy()))
        log.sync()
    return SERVERS * CHUNKS


def test_a_restart_replaying_the_log_prints_its_progress_and_totals(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sent = write_log(data_dir / "log", time.time())
    with durable_service(data_dir) as restarted:
        recovery = http("GET", f"{restarted.url}/stats")[1]["store"]["recovery"]
        loads = http("GET", f"{restarted.url}/servers/replay-0007.example/loads")[1]
        restarted.process.send_signal(signal.SIGTERM)
        assert restarted.process.wait(30) == 0
        assert restarted.process.stderr is not None
        log = restarted.process.stderr.read().splitlines()
    assert (recovery["replayed_samples"], recovery["replayed_chunks"]) == (sent, CHUNKS), recovery
    assert sum(bucket["samples"] for bucket in loads["minutes"]) == CHUNKS  # the replay did reach the windows
    progress = [line for line in log if line.startswith("servertrack: replaying the log: ")]
    assert progress, log
    assert re.fullmatch(r"servertrack: replaying the log: 0% \(1\.0k of 200\.0k samples, \d+\.\d s\)",
                        progress[0]), progress  # the first chunk is told at once
    assert len(progress) <= 1 + recovery["seconds"]  # then at most a line a second
    for line in progress[1:]:
        assert re.fullmatch(r"servertrack: replaying the log: \d{1,3}% \([0-9.]+k of 200\.0k samples, \d+\.\d s\)",
                            line), line
    final = [line for line in log if line.startswith("servertrack: replayed the log: ")]
    assert len(final) == 1 and re.fullmatch(
        rf"servertrack: replayed the log: 200\.0k samples in {CHUNKS} chunks, \d+\.\d s", final[0]), log
    assert log.index(final[0]) > log.index(progress[-1])
