"""In-process cost of one window GET (``/servers/NAME/loads``, ``/seconds``, ``/perf``) at 100,000 servers.

No target: the per-request figures behind the HTTP latency of ``http_api.py``
(c) and (d), measured without sockets so that a change to the view, the
encoder or the handler shows by itself.

How
    One ``Aggregator(max_servers=200000)`` (as ``serve`` makes it) is filled
    for ``--servers`` servers through its own ``apply``, at an injected
    clock: a sample in each of the last 23 hours, three in each of the last
    59 minutes (so averages have the digits real ones have) and one in each
    of the last 60 seconds; every window shown is full. Then, in ``--rounds``
    rounds, each step below runs ``--calls`` times on servers drawn at
    random (the same draws for every step), the steps interleaved so that
    noise from other processes falls on all of them alike:

    - ``read``: the windows read from the rings (``aggregator.windows(name)``,
      minutes and hours), what every form below includes;
    - ``dicts``: the reference view, one dict per bucket, and ``orjson.dumps``
      (``views.server_loads``: the handler's path before issue 10);
    - ``encoded``: the view the handler sends now, bucket lists written from
      the arrays (``views.encoded_server_loads``, ``window_json``), and
      ``orjson.dumps``; skipped in a checkout without it;
    - ``handler``: the whole Tornado request as the HTTP server drives it
      (``app.start_request``, the request line and headers handed over, the
      handler run as a task on the loop, the response written to a
      connection that keeps it), without a socket;
    - the same for ``/servers/NAME/seconds`` and ``/perf/NAME/last_hour``.

    Figures: per step, microseconds per call as the median over rounds of
    each round's mean, and the fastest round. Before the rounds, the
    encoded and reference bodies of a few servers are checked to be the
    same bytes.

Usage
    python bench/query_cost.py                       # 100,000 servers, 15 rounds of 2,000 calls
    python bench/query_cost.py --servers 20000 --rounds 5 --calls 500
"""

from __future__ import annotations  # noqa: I001 (harness must come first)

import harness  # first: puts this checkout on sys.path

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
import tornado.httputil
import tornado.web
from tornado.httputil import HTTPHeaders, RequestStartLine

from servertrack.api import make_app, perf_views, views
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.stats import IngestStats

NOW = 1_800_001_830.25  # 30 min 30 s into an hour


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def filled_aggregator(servers: int, seed: int = 11) -> tuple[Aggregator, list[str], FakeClock]:
    """An aggregator whose second, minute and hour windows are full for every one of ``servers``."""
    clock = FakeClock(NOW - 86_400)
    aggregator = Aggregator(max_servers=200_000, clock=clock)
    names = [f"srv-{i:06d}.bench.example" for i in range(servers)]
    rng = np.random.default_rng(seed)

    def apply(ts: float, per_server: int = 1) -> None:
        count = servers * per_server
        stamps = ts + rng.uniform(0.0, 0.9, count)
        loads = np.round(rng.uniform(0.0, 100.0, (2, count)), 2)
        clock.now = ts + 1.0
        result = aggregator.apply(names * per_server, stamps, loads[0], loads[1])
        if result.applied != count:
            raise RuntimeError(f"applied {result.applied} of {count}")

    hour = NOW // 3600 * 3600
    for back in range(23, 0, -1):
        apply(hour - back * 3600 + 120.0)
    minute = NOW // 60 * 60
    for back in range(59, 0, -1):
        apply(minute - back * 60 + 5.0, per_server=3)
    for back in range(59, -1, -1):
        apply(NOW // 1 - back)
    clock.now = NOW
    return aggregator, names, clock


class KeptResponse(tornado.httputil.HTTPConnection):
    """The connection side of one request: keeps what the handler writes, resolves ``done`` on finish."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.status = 0
        self.done = asyncio.get_running_loop().create_future()

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        pass

    def set_max_body_size(self, max_body_size: int) -> None:
        pass

    def write_headers(self, start_line: Any, headers: HTTPHeaders, chunk: bytes | None = None) -> Awaitable[None]:
        self.status = start_line.code
        return self.write(chunk or b"")

    def write(self, chunk: bytes) -> Awaitable[None]:
        self.chunks.append(chunk)
        written = asyncio.get_running_loop().create_future()
        written.set_result(None)
        return written

    def finish(self) -> None:
        self.done.set_result(None)


async def handle(app: tornado.web.Application, path: str) -> KeptResponse:
    """One GET through the application, as ``HTTP1ServerConnection`` hands it over."""
    response = KeptResponse()
    delegate = app.start_request(None, response)  # type: ignore[arg-type]
    delegate.headers_received(RequestStartLine("GET", path, "HTTP/1.1"), HTTPHeaders({"Host": "127.0.0.1:8080"}))
    delegate.finish()
    await response.done
    return response


def steps(aggregator: Aggregator, app: tornado.web.Application) -> dict[str, Callable[[str], Any]]:
    """Every measured step, by label: a function of one server name (a coroutine function for handlers)."""
    windows = aggregator.windows

    def read(name: str) -> None:
        shown = windows(name)
        assert shown is not None
        _ = (shown.minutes, shown.hours)  # each read from the rings when first asked for

    out: dict[str, Callable[[str], Any]] = {
        "read (windows from the rings)": read,
        "loads: dicts + orjson.dumps": lambda name: orjson.dumps(views.server_loads(windows(name))),  # type: ignore[arg-type]
    }
    if hasattr(views, "encoded_server_loads"):
        out["loads: encoded + orjson.dumps"] = lambda name: orjson.dumps(views.encoded_server_loads(windows(name)))  # type: ignore[arg-type]
    out["loads: handler"] = lambda name: handle(app, f"/servers/{name}/loads")
    out["seconds: dicts + orjson.dumps"] = lambda name: orjson.dumps(views.server_seconds(windows(name)))  # type: ignore[arg-type]
    if hasattr(views, "encoded_server_seconds"):
        out["seconds: encoded + orjson.dumps"] = lambda name: orjson.dumps(views.encoded_server_seconds(windows(name)))  # type: ignore[arg-type]
    out["seconds: handler"] = lambda name: handle(app, f"/servers/{name}/seconds")
    out["perf last_hour: dicts + orjson.dumps"] = lambda name: orjson.dumps(perf_views.perf_window(windows(name), "last_hour"))  # type: ignore[arg-type]
    if hasattr(perf_views, "encoded_perf_window"):
        out["perf last_hour: encoded + orjson.dumps"] = lambda name: orjson.dumps(perf_views.encoded_perf_window(windows(name), "last_hour"))  # type: ignore[arg-type]
    out["perf last_hour: handler"] = lambda name: handle(app, f"/perf/{name}/last_hour")
    return out


def check_same_bytes(aggregator: Aggregator, names: list[str]) -> None:
    """The encoded bodies are the reference bodies, byte for byte."""
    if not hasattr(views, "encoded_server_loads"):
        return
    for name in names:
        shown = aggregator.windows(name)
        assert shown is not None
        pairs = [(views.server_loads(shown), views.encoded_server_loads(shown)),
                 (views.server_seconds(shown), views.encoded_server_seconds(shown))]
        pairs += [(perf_views.perf_window(shown, mode), perf_views.encoded_perf_window(shown, mode))
                  for mode in perf_views.PERF_MODES]
        for reference, encoded in pairs:
            if orjson.dumps(reference) != orjson.dumps(encoded):
                raise RuntimeError(f"encoded body of {name} differs from the reference")


async def measure(aggregator: Aggregator, names: list[str], clock: FakeClock, rounds: int, calls: int
                  ) -> dict[str, list[float]]:
    """Microseconds per call of every step, one figure per round."""
    app = make_app(aggregator, PendingBatch(), AgentInventory(200_000), IngestStats(), clock=clock)
    measured = steps(aggregator, app)
    for label, step in measured.items():  # warm up, and check that the handlers answer 200
        result = step(names[0])
        if asyncio.iscoroutine(result):
            response = await result
            if response.status != 200:
                raise RuntimeError(f"{label}: status {response.status}: {b''.join(response.chunks)[-300:]!r}")
    rng = random.Random(5)
    per_round: dict[str, list[float]] = {label: [] for label in measured}
    for _ in range(rounds):
        draws = [rng.choice(names) for _ in range(calls)]
        for label, step in measured.items():
            handler = label.endswith("handler")
            started = time.perf_counter()
            if handler:
                for name in draws:
                    await step(name)
            else:
                for name in draws:
                    step(name)
            per_round[label].append((time.perf_counter() - started) / calls * 1e6)
    return per_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=100_000, help="servers filled (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default %(default)s)")
    parser.add_argument("--calls", type=int, default=2_000, help="calls of each step per round (default %(default)s)")
    args = parser.parse_args()
    harness.print_header("Window GET cost in-process")
    started = time.perf_counter()
    aggregator, names, clock = filled_aggregator(args.servers)
    print(f"  filled {args.servers:,} servers (every window full) in {time.perf_counter() - started:.1f} s")
    check_same_bytes(aggregator, random.Random(3).sample(names, min(50, len(names))))
    per_round = asyncio.run(measure(aggregator, names, clock, args.rounds, args.calls))
    print(f"  microseconds per call, {args.rounds} rounds of {args.calls:,} calls (random servers):")
    for label, figures in per_round.items():
        print(f"    {label:42s} median {harness.median(figures):7.1f}   fastest round {min(figures):7.1f}")
    print(f"  reproduce: {harness.reproduce_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
