"""bench/loadgen.py's ``--steps`` mode: commands from a pipe, probe frames, phases on one connection."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from loadgen import ProbeFrames, read_commands, run_steps, server_name

from servertrack.common import NameCache, Sample
from servertrack.common.node_messages import decode_message


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    try:
        os.close(write_end)
    except OSError:
        pass


def test_commands_are_read_a_line_at_a_time_until_eof(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.write(write_end, b'{"rate": 10, "seconds": 1}\n\nnot json\n[1, 2]\n{"rate": 20, "seconds": 2}\n{"rate"')
    os.close(write_end)
    commands = list(read_commands(read_end))
    assert commands[0] == {"rate": 10, "seconds": 1} and commands[-1] == {"rate": 20, "seconds": 2}
    assert [("error" in c) for c in commands] == [False, True, True, False]  # the torn last line is dropped


def test_quit_ends_the_commands(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.write(write_end, b'{"rate": 1, "seconds": 1}\n{"quit": true}\n{"rate": 2, "seconds": 1}\n')
    assert list(read_commands(read_end)) == [{"rate": 1, "seconds": 1}]


def test_a_stop_request_ends_the_wait_for_a_command(pipe: tuple[int, int]) -> None:
    read_end, _ = pipe
    assert list(read_commands(read_end, should_stop=lambda: True)) == []


def test_probe_frames_are_valid_samples_with_their_own_seq() -> None:
    probe = ProbeFrames("peer-probe.bench")
    now = time.time()
    names = NameCache()
    first, second = (decode_message(probe.frame(now + k * 0.1), now, names) for k in range(2))
    assert isinstance(first, Sample) and isinstance(second, Sample)
    assert (first.fqdn, first.seq, second.seq) == ("peer-probe.bench", 0, 1)
    assert first.ts == pytest.approx(now) and first.ips == ["10.255.255.254"]


def test_phases_share_one_connection_and_every_seq_carries_on() -> None:
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    emitted: list[dict] = []
    frames: list[bytes] = []
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 100_000)
        port = sub.bind_to_random_port("tcp://127.0.0.1")
        commands = [{"rate": 20_000, "seconds": 0.05}, {"rate": -1, "seconds": 1}, {"rate": 20_000, "seconds": 0.05}]
        sender = threading.Thread(target=run_steps, args=(f"tcp://127.0.0.1:{port}", 7, iter(commands), emitted.append),
                                  kwargs={"first": 3, "warmup": 0.5, "probe": "peer-probe.bench"})  # fmt: skip
        sender.start()
        # The SUB sends its subscription only when it is used: keep receiving while the sender runs.
        while sender.is_alive() or sub.poll(500):
            if sub.poll(50):
                frames.append(sub.recv())
        sender.join()
    finally:
        sub.close(linger=0)
        context.term()
    ready, one, refused, two = emitted
    assert ready["ready"] is True and "error" in refused
    assert one["sent"] == two["sent"] == 1_000 and one["target_rate"] == 20_000
    now = time.time()
    names = NameCache()
    samples = [decode_message(frame, now, names) for frame in frames]
    seqs: dict[str, list[int]] = {}
    for sample in samples:
        assert isinstance(sample, Sample)
        seqs.setdefault(sample.fqdn, []).append(sample.seq)
    assert set(seqs) == {server_name(i) for i in range(3, 10)} | {"peer-probe.bench"}
    probes = [s.ts for s in samples if isinstance(s, Sample) and s.fqdn == "peer-probe.bench"]
    assert probes == one["probe_ts"] + two["probe_ts"] and len(probes) >= 2
    for name, numbers in seqs.items():
        assert numbers == list(range(numbers[-1] - len(numbers) + 1, numbers[-1] + 1)), name  # no gap, no restart
    # Warm-up frames (server 3) sent before the subscription arrived are gone: the rest all came.
    assert len(frames) > 2_000 + len(probes)
    # Round-robin over 7 servers: 2,000 frames are 285 or 286 each (server 3 also sent the warm-up).
    assert all(len(seqs[server_name(i)]) in (285, 286) for i in range(4, 10))
