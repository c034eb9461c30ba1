"""The web dashboard at fleet scale: first render and a filter round trip in headless Chromium.

A real serve holding ``--servers`` servers (``--minutes`` minutes of history each, so every row has a
sparkline) and ``--nodes`` hello-only nodes; Debian's chromium driven by Playwright opens the page and
reads the page's own performance marks:

- first render: from navigation start to the first page of rows drawn (``fleet-rendered``);
- filter round trip: from the keystroke (``filter-input``) to the filtered rows drawn, the page's 150 ms
  typing pause included (and, apart, without it);
- ``GET /fleet`` alone, from urllib: the server's part of each.

Goal: <= 1 s each at 100,000 servers. ``python bench/dashboard.py --servers 100000 --runs 3``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import urllib.request

from harness import Service, http_json, median, print_header, print_runs, verdict

TARGET_MS = 1000.0
BATCH = 10_000  # POST /loads' limit per request
FILTER_PAUSE_MS = 150.0  # app.js FILTER_DELAY_MS
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
HELLO = {"hostname": "bench", "boot_time": 0.0, "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2,
         "memory_total": 2**34, "agent_version": "0.2.0", "interval": 1.0}


def fill(service: Service, servers: int, minutes: int, nodes: int) -> None:
    """Every server gets one sample a minute for ``minutes`` minutes (the last one now), loads spread 0-99."""
    now = time.time()
    names = [f"srv-{number:06}.bench" for number in range(servers)]
    for minute in range(minutes - 1, -1, -1):
        ts = now - minute * 60
        for start in range(0, servers, BATCH):
            body = [{"server": name, "cpu": float((start + offset) * 7 % 100), "ram": float((start + offset) % 90),
                     "ts": ts} for offset, name in enumerate(names[start:start + BATCH])]
            status, _ = http_json("POST", service.url + "/loads", body)
            assert status == 202, status
        service.wait_for(lambda stats: stats["pending"] == 0, 60)
    for number in range(nodes):
        status, _ = http_json("POST", service.url + "/nodes", {"name": f"node-{number:05}.bench", **HELLO,
                                                                "boot_time": now - 3600})
        assert status == 201, status
    service.wait_for(lambda stats: stats["servers"] == servers and stats["pending"] == 0, 60)


def fleet_get_ms(url: str, query: str, gets: int = 10) -> float:
    """Median milliseconds of ``GET /fleet?query`` (the body read in full)."""
    times = []
    for _ in range(gets):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/fleet?{query}", timeout=30) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def page_timings(browser, url: str, needle: str) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """First render, filter round trip and the round trip less the typing pause, in ms, in a fresh page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#fleet-rows tr", timeout=30_000)
        first = page.evaluate("performance.getEntriesByName('fleet-rendered')[0].startTime")
        page.fill("#filter-name", needle)
        page.locator(f'#fleet-rows tr[data-name^="{needle}"]').first.wait_for(timeout=30_000)
        page.wait_for_selector(f'#fleet-rows tr:not([data-name^="{needle}"])', state="detached", timeout=30_000)
        marks = page.evaluate("[performance.getEntriesByName('filter-input').at(-1).startTime,"
                              " performance.getEntriesByName('fleet-rendered').at(-1).startTime]")
        round_trip = marks[1] - marks[0]
        return first, round_trip, round_trip - FILTER_PAUSE_MS
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=100_000)
    parser.add_argument("--minutes", type=int, default=10, help="minutes of history per server (default 10)")
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("no chromium: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    print_header(f"dashboard at {args.servers:,} servers ({args.minutes} min of history) and {args.nodes:,} nodes")
    firsts, trips, trips_less_pause, gets = [], [], [], {}
    with Service(max_servers=max(200_000, args.servers + args.nodes)) as service:
        started = time.monotonic()
        fill(service, args.servers, args.minutes, args.nodes)
        print(f"filled in {time.monotonic() - started:.0f} s")
        for label, query in (("default page (sort=cpu desc)", "sort=cpu&order=desc&limit=50"),
                             ("name filter", "q=srv-0123&sort=cpu&order=desc&limit=50"),
                             ("state filter", "state=stale&sort=name&limit=50")):
            gets[label] = fleet_get_ms(service.url, query)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                for run in range(args.runs):
                    # a prefix 100 servers share, a different one each run (so no answer is a repeat)
                    needle = f"srv-{(run + 1) * args.servers // (args.runs + 1):06}"[:-2]
                    first, trip, less = page_timings(browser, service.url, needle)
                    firsts.append(first)
                    trips.append(trip)
                    trips_less_pause.append(less)
            finally:
                browser.close()
    for label, value in gets.items():
        print(f"GET /fleet, {label}: median {value:.1f} ms")
    print_runs("first render", firsts, "ms")
    print_runs("filter round trip (typing pause included)", trips, "ms")
    print_runs("filter round trip less the 150 ms pause", trips_less_pause, "ms")
    first_ok = verdict("first render", median(firsts), TARGET_MS, "ms", higher_is_better=False)
    trip_ok = verdict("filter round trip", median(trips), TARGET_MS, "ms", higher_is_better=False)
    return 0 if first_ok and trip_ok else 1


if __name__ == "__main__":
    sys.exit(main())
