"""``servertrack demo``: a monitoring service and N local agents, in one command."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from .common.settings import ServeSettings
from .service import Monitor
from .shutdown import stop_on_signals

AGENT_STOP_SECONDS = 2.0


async def _start_agent(endpoint: str, control: str, name: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "servertrack", "agent", "--collector", endpoint, "--control", control, "--name", name
    )


async def _stop_agent(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), AGENT_STOP_SECONDS)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def run_demo(agents: int, port: int, stop: asyncio.Event | None = None) -> int:
    """Serve on 127.0.0.1:``port`` with ``agents`` local agents until Ctrl-C; return the exit code."""
    with stop_on_signals(stop if stop is not None else asyncio.Event()) as stopping:
        monitor = Monitor(ServeSettings(host="127.0.0.1", port=port, ingest="tcp://127.0.0.1:*"))
        await monitor.start()
        names = [f"demo-{index:02d}.local" for index in range(1, agents + 1)]
        processes: list[asyncio.subprocess.Process] = []
        try:
            for name in names:
                processes.append(await _start_agent(monitor.ingest_endpoint, monitor.control_endpoint, name))
            url = monitor.http_url
            print(f"ServerTrack demo: API on {url}, ingest on {monitor.ingest_endpoint}", flush=True)
            print(f"  {len(names)} agents: {', '.join(names) or '(none)'} (samples appear within ~2 s)")
            print(f"  dashboard: {url}/")
            print(f"  servers:  curl {url}/servers")
            if names:
                print(f"  loads:    curl {url}/servers/{names[0]}/loads")
                print(f"  terminal: servertrack show {names[0]} --url {url}")
            print(f"  record:   curl -X POST -H 'Content-Type: application/json' -d '{{\"cpu\": 12.5, \"ram\": 40}}' {url}/servers/my-box/loads")
            print(f"  counters: curl {url}/stats")
            print("  open mode, for a local demo: no agent keys, no HTTP token, plain HTTP, all on 127.0.0.1 "
                  "(see the README's Trust sections to run it on a network)")
            print("Press Ctrl-C to stop.", flush=True)
            await stopping.wait()
        finally:
            await asyncio.gather(*(_stop_agent(process) for process in processes))
            await monitor.stop()
    return 0
