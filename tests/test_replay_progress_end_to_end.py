"""A restart that replays a non-trivial log says how far it is on stderr: a real ``serve --store sqlite``
killed with ``kill -9`` before any checkpoint, then started again on the same data directory."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from tests.test_durable_end_to_end import applied, durable_service
from tests.test_end_to_end import http, wait_for

SERVERS = 2_000
ROUNDS = 10  # 20,000 samples, applied in many chunks


def test_a_restart_replaying_the_log_prints_its_progress_and_totals(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with durable_service(data_dir) as service:  # the first checkpoint is 60 s away: everything stays in the log
        now = time.time()
        sent = 0
        for first in range(0, ROUNDS, 5):
            loads = [{"server": f"replay-{index:04d}.example", "cpu": (index + round_) % 100, "ram": 50.0,
                      "ts": now - round_} for round_ in range(first, first + 5) for index in range(SERVERS)]
            assert http("POST", f"{service.url}/loads", loads)[0] == 202
            sent += len(loads)
        wait_for(lambda: applied(service.url) == sent, 10, "every sample applied")
        wait_for(lambda: http("GET", f"{service.url}/stats")[1]["store"]["log"]["queued_jobs"] == 0, 10,
                 "every chunk written to the log")
        service.process.send_signal(signal.SIGKILL)
        service.process.wait()
        assert service.process.stderr is not None
        assert "replay" not in service.process.stderr.read()  # a first start has no log to replay
    with durable_service(data_dir) as restarted:
        recovery = http("GET", f"{restarted.url}/stats")[1]["store"]["recovery"]
        restarted.process.send_signal(signal.SIGTERM)
        assert restarted.process.wait(30) == 0
        assert restarted.process.stderr is not None
        log = restarted.process.stderr.read().splitlines()
    assert recovery["replayed_samples"] == sent and recovery["replayed_chunks"] > 1, recovery
    progress = [line for line in log if line.startswith("servertrack: replaying the log: ")]
    assert progress, log
    assert re.fullmatch(r"servertrack: replaying the log: \d{1,3}% \([0-9.]+k? of 20\.0k samples, \d+\.\d s\)",
                        progress[0]), progress
    assert len(progress) <= 1 + recovery["seconds"]  # at most a line a second after the first
    final = [line for line in log if line.startswith("servertrack: replayed the log: ")]
    assert len(final) == 1 and re.fullmatch(
        rf"servertrack: replayed the log: 20\.0k samples in {recovery['replayed_chunks']} chunks, \d+\.\d s",
        final[0]), final
    assert log.index(final[0]) > log.index(progress[-1])
