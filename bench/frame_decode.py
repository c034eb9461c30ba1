"""In-process cost of decoding one frame or body: the general Python path ("before") against the
msgspec path ("after"), in µs per hello, snapshot, bye, control message and POST /loads sample.

How
    Frames are what the service receives: a fleet snapshot from
    ``bench/loadgen.py`` (the frames ``nodes.py`` sends: ~9.6 KB, 8-16 CPUs,
    3 disks, 3 interfaces, 2 x 20 processes; its counters written as 8-byte
    integers), the same stats as ``msgpack.packb`` writes them (an agent's
    frame), a hello, a bye, a control message (``encode_control``), and a
    ``POST /loads`` body of ``--samples`` samples (default 1,000) plus a
    single-sample body. For each, one run times ``--seconds`` (default 0.3 s)
    of back-to-back decodes per path, the garbage collector off (as
    ``timeit`` does: both paths allocate alike), and reports µs per frame (per
    sample for the batch body). Figures are medians over ``--runs`` runs
    (default 5), each run's value shown.

    before: ``node_messages.decode_general`` (the decoder as it was: unpack,
    then ``schema`` checks), ``control_messages.decode_control``,
    ``orjson.loads`` + ``handlers.checked_columns`` / ``_validated_load``.
    after: ``node_messages.decode_message`` (``node_frames`` first),
    ``load_bodies.load_columns``; for control messages a msgspec Struct of the
    same rules written here only to measure it (not adopted: see the output).

Usage
    PYTHONPATH=. python bench/frame_decode.py
    PYTHONPATH=. python bench/frame_decode.py --runs 9 --seconds 0.5
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import harness  # first: puts this checkout on sys.path
import loadgen
import msgspec
import orjson

from servertrack.api.handlers import _validated_load, checked_columns
from servertrack.api.load_bodies import load_columns
from servertrack.common.control_messages import (
    MAX_CONTROL_TS,
    ControlMessage,
    control_topic,
    decode_control,
    encode_control,
)
from servertrack.common.node_messages import (
    decode_general,
    decode_message,
    encode_bye,
    encode_snapshot,
)
from servertrack.common.protocol import NameCache, normalize_name


class _ControlFrame(msgspec.Struct, gc=False):
    """A control payload's rules as a Struct (measured only)."""

    v: Literal[1]
    kind: Literal["pause", "resume"]
    node: str
    ts: Annotated[int, msgspec.Meta(ge=0, le=int(MAX_CONTROL_TS))] | Annotated[
        float, msgspec.Meta(ge=0.0, le=MAX_CONTROL_TS)]


_decode_control_frame = msgspec.msgpack.Decoder(_ControlFrame).decode


def msgspec_control(frames: list[bytes]) -> ControlMessage:
    """What a msgspec control decoder would cost (the general decoder remains for anything refused)."""
    topic, payload = frames
    message = _decode_control_frame(payload)
    node = message.node if message.node == "*" else normalize_name(message.node)
    if node != message.node or topic != control_topic(node):
        raise ValueError("not canonical")
    return ControlMessage(message.kind, node, float(message.ts))


def per_call(work: Callable[[], Any], seconds: float) -> float:
    """µs per call of ``work`` over about ``seconds`` of back-to-back calls."""
    work()
    count = 1
    while True:  # calibrate: a batch of at least 20 ms
        started = time.perf_counter()
        for _ in range(count):
            work()
        took = time.perf_counter() - started
        if took >= 0.02:
            break
        count *= 2
    batches = max(1, int(seconds / took))
    started = time.perf_counter()
    for _ in range(batches * count):
        work()
    return (time.perf_counter() - started) / (batches * count) * 1e6


def cases(samples: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], int]]:
    """name -> (before, after, items per call)."""
    now = time.time()
    fleet = loadgen.FleetFactory(64)
    ticks = fleet.ticks(64, now)
    snapshot = bytes(next(frame for frame in ticks if len(frame) > 4096))
    agent_snapshot = encode_snapshot("node-00001.bench", now, 7, fleet.templates[1].stats)
    hello = fleet.hello(1, now)
    bye = encode_bye("node-00001.bench", now, 8)
    control = encode_control(True, "node-00001.bench", now)
    rng = random.Random(1)
    body = orjson.dumps([{"server": f"web-{i:05d}.example", "cpu": round(rng.uniform(0, 100), 2),
                          "ram": round(rng.uniform(0, 100), 2), "ts": now - rng.uniform(0, 5)} for i in range(samples)])
    single = orjson.dumps({"cpu": 12.5, "ram": 40.0, "ts": now})
    names = NameCache()
    ips = {}
    hello_message = decode_general(hello, now, names)
    ips[hello_message.fqdn] = hello_message.ips  # type: ignore[union-attr]
    known = ips.get
    for frame in (snapshot, agent_snapshot, hello, bye):
        assert decode_message(frame, now, names, known) == decode_general(frame, now, names, known)
    assert load_columns(body, now, names) == checked_columns(orjson.loads(body), now, names)
    assert msgspec_control(control) == decode_control(control)
    return {
        "snapshot (loadgen fleet frame)": (lambda: decode_general(snapshot, now, names, known),
                                           lambda: decode_message(snapshot, now, names, known), 1),
        "snapshot (as msgpack.packb writes it)": (lambda: decode_general(agent_snapshot, now, names, known),
                                                  lambda: decode_message(agent_snapshot, now, names, known), 1),
        "hello": (lambda: decode_general(hello, now, names, known), lambda: decode_message(hello, now, names, known), 1),
        "bye": (lambda: decode_general(bye, now, names, known), lambda: decode_message(bye, now, names, known), 1),
        "control message (agent side; after = not adopted)": (lambda: decode_control(control),
                                                              lambda: msgspec_control(control), 1),
        f"POST /loads body of {samples:,} samples, per sample": (
            lambda: checked_columns(orjson.loads(body), now, names), lambda: load_columns(body, now, names), samples),
        "single-sample POST body (orjson + checks; not changed)": (
            lambda: _validated_load(orjson.loads(single), now), lambda: _validated_load(orjson.loads(single), now), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per path, case and run")
    parser.add_argument("--samples", type=int, default=1000, help="samples in the POST /loads body")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or not 1 <= args.samples <= 10_000:
        parser.error("need --runs >= 1, --seconds > 0, 1 <= --samples <= 10000")
    harness.print_header("frame and body decoding, in process: before (general path) vs after (msgspec path)")
    table = cases(args.samples)
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in table}
    gc.disable()
    try:
        for _ in range(args.runs):
            for name, (before, after, items) in table.items():
                results[name][0].append(per_call(before, args.seconds) / items)
                results[name][1].append(per_call(after, args.seconds) / items)
    finally:
        gc.enable()
    print(f"  µs per frame (per sample for the batch body); median of {args.runs} runs [each run]")
    for name, (befores, afters) in results.items():
        slow, fast = harness.median(befores), harness.median(afters)
        shown = lambda values: " ".join(f"{value:.2f}" for value in values)
        print(f"  {name}:\n    before {slow:8.2f}  [{shown(befores)}]\n"
              f"    after  {fast:8.2f}  [{shown(afters)}]   x{slow / fast:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
