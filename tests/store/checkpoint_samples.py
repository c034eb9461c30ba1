"""The samples behind the format-1 checkpoint fixture (``data/make_checkpoint_v1.py``), and how its
answers are recorded: every bucket the minute and hour rings hold, exactly."""

from __future__ import annotations

import random
from typing import Any

from servertrack.common.aggregator import Aggregator

START = 1_800_000_000.0
SERVERS = ["a.example", "b.example", "c.example", "flood.example"]
CHUNKS = 60
FIRST_CHECKPOINT = 52  # a checkpoint after this chunk and after the last one


def v1_chunks() -> list[tuple[float, list[str], list[float], list[float], list[float]]]:
    """Chunks ``(applied at, names, ts, cpu, ram)`` over about 30 hours: late samples up to a day old,
    loads with 2 to 5 decimals, and one minute of one server flooded past every narrow counter (700
    samples of 100 %: a count past 255, sums past 2**32 units)."""
    rng = random.Random(20261202)
    chunks = []
    now = START
    for step in range(CHUNKS):
        # the last chunks come seconds apart: the second checkpoint is a partial one
        now += rng.choice([1, 7] if step > FIRST_CHECKPOINT else [1, 7, 59, 61, 600, 1800, 3599, 3601])
        names, ts, cpu, ram = [], [], [], []
        for _ in range(rng.randint(1, 40)):
            names.append(rng.choice(SERVERS[:3]))
            ts.append(now + rng.choice([0, -rng.uniform(0, 120), -rng.uniform(0, 86_000), rng.uniform(0, 60)]))
            cpu.append(round(rng.uniform(0, 100), rng.choice([2, 3, 5])))
            ram.append(round(rng.uniform(0, 100), rng.choice([2, 5])))
        if step == 40:
            names += [SERVERS[3]] * 700
            ts += [now - 0.5] * 700
            cpu += [100.0] * 700
            ram += [33.33333] * 700
        chunks.append((now, names, ts, cpu, ram))
    return chunks


def answers(aggregator: Aggregator, servers: list[str]) -> dict[str, Any]:
    """Per ring width and server, every bucket the ring holds with samples, as exact integers:
    ``[bucket, samples, cpu sum, ram sum, cpu min, cpu max, ram min, ram max]`` (1e-5 percent)."""
    out: dict[str, Any] = {}
    last = v1_chunks()[-1][0] + 120
    for width in (60, 3600):
        first = int((START - 90_000) // width)
        count = int(last // width) - first + 1
        per_server = {}
        for name in servers:
            read = aggregator.ring_range(name, width, first, count)
            assert read is not None
            window, held = read
            per_server[name] = [
                [first + i, int(window.samples[i])] + [round(float(values[i]) * 100_000) for values in window[3:]]
                for i in range(count) if held[i] and window.samples[i]]
        out[str(width)] = per_server
    return out
