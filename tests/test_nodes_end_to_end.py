"""End to end for node inventory: a real agent says hello, is online, shows a real process, says bye."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import servertrack_command, subprocess_env
from tests.test_end_to_end import START_SECONDS, Service, http, service, stop, wait_for

__all__ = ["service"]  # the fixture, shared with the core end-to-end tests

MEMORY_HOG_MIB = 300


def test_hello_online_process_listed_then_bye_offline(service: Service) -> None:
    # A process that certainly ranks among the node's top 20 by memory.
    hog = subprocess.Popen([sys.executable, "-c",
                            f"import sys, time; block = b'x' * ({MEMORY_HOG_MIB} << 20); "
                            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"],
                           stdout=subprocess.PIPE, text=True)
    agent = subprocess.Popen(
        servertrack_command("agent", "--collector", service.ingest, "--name", "node-e2e", "--interval", "0.2",
                            "--stats-every", "2", "--process-interval", "0"),
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert hog.stdout is not None and hog.stdout.readline() == "ready\n"

        def online() -> bool:
            status, body = http("GET", f"{service.url}/nodes/node-e2e")
            return status == 200 and body["state"] == "online" and body["cpu_usage_percent"] is not None
        wait_for(online, START_SECONDS, "the agent's hello and first snapshot")
        node = http("GET", f"{service.url}/nodes/node-e2e")[1]
        assert node["cpu_count"] >= 1 and node["hostname"] and len(node["loadavg"]) == 3

        def hog_listed() -> bool:  # a scan may catch the hog before it has filled its memory
            status, body = http("GET", f"{service.url}/nodes/node-e2e/processes")
            return status == 200 and any(entry["pid"] == hog.pid and entry["rss"] >= MEMORY_HOG_MIB << 20
                                         for entry in body["top_memory"])
        wait_for(hog_listed, START_SECONDS, "the memory hog among the top processes")
        status, entry = http("GET", f"{service.url}/nodes/node-e2e/processes/{hog.pid}")
        assert status == 200 and entry["rss"] >= MEMORY_HOG_MIB << 20

        names = [entry["name"] for entry in http("GET", f"{service.url}/nodes?state=online")[1]["nodes"]]
        assert names == ["node-e2e"]
        assert stop(agent) == 0
        wait_for(lambda: http("GET", f"{service.url}/nodes/node-e2e")[1]["state"] == "offline", 5, "the bye")
        assert [entry["name"] for entry in http("GET", f"{service.url}/nodes?state=offline")[1]["nodes"]] == ["node-e2e"]
    finally:
        for process in (agent, hog):
            if process.poll() is None:
                process.kill()
            process.wait()
        if agent.stderr is not None:
            agent.stderr.close()
        if hog.stdout is not None:
            hog.stdout.close()
    assert stop(service.process, signal.SIGTERM) == 0
