"""Ring checkpoints: format 2 round-trips exactly (widened arrays included, a crash during the image write
included); a checkpoint of format 1 (written by ServerTrack before the rings narrowed) is converted
exactly and rewritten in format 2; anything else is refused."""

from __future__ import annotations

import json
import struct
import tarfile
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest

from servertrack.common.aggregator import Aggregator
from servertrack.store import checkpoint
from servertrack.store.checkpoint import (
    MAGIC,
    REDO_NAME,
    V1_MAGIC,
    CorruptCheckpoint,
    load_checkpoint,
    write_checkpoint,
)
from tests.store.checkpoint_samples import CHUNKS, SERVERS, START, answers

DATA = Path(__file__).resolve().parent / "data"
NAMES = ["a", "b", "c"]


def fresh() -> Aggregator:
    return Aggregator(8, clock=lambda: START, closing=True)


def commit(aggregator: Aggregator, directory: Path, segment: int) -> None:
    write_checkpoint(directory, aggregator.export_changes(), segment, segment + 1, START)


def reloaded(directory: Path) -> Aggregator:
    aggregator = fresh()
    assert load_checkpoint(directory, aggregator) is not None
    return aggregator


def apply(aggregator: Aggregator, names: list[str], ts: float | np.ndarray, cpu: float, ram: float) -> None:
    count = len(names)
    aggregator.apply(names, np.broadcast_to(ts, count).astype(np.float64), np.full(count, cpu), np.full(count, ram),
                     chunk_id=1, now=START)
    aggregator.take_closed()


def busy(aggregator: Aggregator, rng: np.random.Generator, steps: int) -> None:
    for _ in range(steps):
        ts = START - rng.choice([0, 30, 600, 7200, 80_000]) + rng.uniform(0, 60, len(NAMES))
        aggregator.apply(NAMES, ts, np.round(rng.uniform(0, 100, 3), 5), np.round(rng.uniform(0, 100, 3), 2),
                         chunk_id=1, now=START)
        aggregator.take_closed()


def test_format_2_round_trips_through_partial_checkpoints_and_widening(tmp_path: Path) -> None:
    aggregator = fresh()
    rng = np.random.default_rng(11)
    busy(aggregator, rng, 20)
    commit(aggregator, tmp_path, 1)
    assert answers(reloaded(tmp_path), NAMES) == answers(aggregator, NAMES)
    busy(aggregator, rng, 3)
    commit(aggregator, tmp_path, 2)  # a partial checkpoint on top of the image
    assert answers(reloaded(tmp_path), NAMES) == answers(aggregator, NAMES)
    # a flood: count and sum high parts appear, then widen (past 2**40 units): new files, old ones go
    apply(aggregator, ["b"] * 450, START - 30, 100.0, 50.0)
    commit(aggregator, tmp_path, 3)
    assert (tmp_path / "minutes.cpu_sum_high.u1.cells").exists()
    apply(aggregator, ["b"] * 110_000, START - 30, 100.0, 50.0)
    commit(aggregator, tmp_path, 4)
    images = sorted(path.name for path in tmp_path.glob("*.cells"))
    assert "minutes.cpu_sum_high.u2.cells" in images and "minutes.cpu_sum_high.u1.cells" not in images
    assert "hours.count.u2.cells" in images and "hours.count_high.u1.cells" in images
    restored = reloaded(tmp_path)
    assert answers(restored, NAMES) == answers(aggregator, NAMES)
    assert {name: cells.dtype for name, cells in restored.named_rings()["minutes"].named_cells().items()} == {
        name: cells.dtype for name, cells in aggregator.named_rings()["minutes"].named_cells().items()}
    busy(aggregator, rng, 2)
    commit(aggregator, tmp_path, 5)
    assert answers(reloaded(tmp_path), NAMES) == answers(aggregator, NAMES)


def test_a_crash_while_a_widened_array_is_written_loses_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    aggregator = fresh()
    busy(aggregator, np.random.default_rng(3), 10)
    commit(aggregator, tmp_path, 1)
    apply(aggregator, ["a"] * 70_000, START - 5, 99.5, 0.5)
    writes = [0]
    original = checkpoint._pwrite_slots

    def dies_midway(*args: object, **kwargs: object) -> int:
        writes[0] += 1
        if writes[0] > 4:
            raise OSError("killed")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint, "_pwrite_slots", dies_midway)
    with pytest.raises(OSError, match="killed"):
        commit(aggregator, tmp_path, 2)  # committed (the redo file), images half written
    monkeypatch.setattr(checkpoint, "_pwrite_slots", original)
    assert answers(reloaded(tmp_path), NAMES) == answers(aggregator, NAMES)
    assert answers(reloaded(tmp_path), NAMES) == answers(aggregator, NAMES)  # loading wrote the images


def unpack_v1_fixture(directory: Path) -> Path:
    target = directory / "checkpoint"
    target.mkdir()
    with tarfile.open(DATA / "checkpoint_v1.tar.gz") as archive:
        archive.extractall(target, filter="data")
    return target


def test_a_format_1_checkpoint_is_converted_exactly_then_rewritten_in_format_2(tmp_path: Path) -> None:
    """The fixture was written by the code that wrote format 1 (see data/make_checkpoint_v1.py), with
    what that code's rings answered: the converted rings give the same answers, to the last unit."""
    directory = unpack_v1_fixture(tmp_path)
    expected = json.loads((DATA / "checkpoint_v1.json").read_text())
    assert (directory / REDO_NAME).read_bytes().startswith(V1_MAGIC)
    aggregator = fresh()
    info = load_checkpoint(directory, aggregator)
    assert info is not None and (info.log_segment, info.next_chunk, info.rows) == (CHUNKS, CHUNKS + 1, 4)
    assert answers(aggregator, SERVERS) == expected
    assert expected["60"]["flood.example"][0][1] == 700  # past the 8-bit count and a 32-bit sum
    minutes = aggregator.named_rings()["minutes"]
    assert {"count_high", "cpu_sum_high"} <= set(minutes.named_cells())  # 700 samples, 7e9 units
    assert "ram_sum_high" not in minutes.named_cells()  # 700 * 3,333,333 units fit 32 bits
    assert sorted(path.name for path in directory.glob("*.cells")) == sorted(
        f"{ring}.{name}.cells" for ring in ("minutes", "hours") for name in checkpoint.V1_ARRAYS)
    # every slot is due: the next checkpoint rewrites the rings in format 2 and drops format 1's files
    changes = aggregator.export_changes()
    assert all(ring.slots.size == ring.slot_count for ring in changes.rings.values())
    write_checkpoint(directory, changes, CHUNKS + 1, CHUNKS + 2, START)
    assert (directory / REDO_NAME).read_bytes().startswith(MAGIC)
    assert all(path.name.count(".") == 3 for path in directory.glob("*.cells"))
    assert answers(reloaded(directory), SERVERS) == expected


def test_a_format_1_checkpoint_is_converted_again_if_the_service_died_before_rewriting_it(tmp_path: Path) -> None:
    directory = unpack_v1_fixture(tmp_path)
    expected = json.loads((DATA / "checkpoint_v1.json").read_text())
    assert answers(reloaded(directory), SERVERS) == expected
    assert answers(reloaded(directory), SERVERS) == expected  # loading format 1 changed nothing on disk


def rewrite_meta(directory: Path, change: object) -> None:
    """Edit the redo file's header (with a valid checksum) as a buggy or foreign writer might."""
    data = (directory / REDO_NAME).read_bytes()
    (length,) = struct.unpack_from("<Q", data, 8)
    meta = msgpack.unpackb(data[16:16 + length])
    change(meta)  # type: ignore[operator]
    packed = msgpack.packb(meta)
    body = data[:8] + struct.pack("<Q", len(packed)) + packed + data[16 + length:-4]
    (directory / REDO_NAME).write_bytes(body + struct.pack("<I", zlib.crc32(body)))


def written(tmp_path: Path) -> Path:
    aggregator = fresh()
    busy(aggregator, np.random.default_rng(1), 5)
    commit(aggregator, tmp_path, 1)
    return tmp_path


@pytest.mark.parametrize(("change", "message"), [
    (lambda meta: meta["rings"]["hours"]["arrays"].update(cpu_sum_high="<f8"), "unknown layout"),
    (lambda meta: meta["rings"]["hours"]["arrays"].update(cpu_sum_high="|u1", count="<u4"), "unknown layout"),
    (lambda meta: meta["rings"]["minutes"]["arrays"].update(extremes="<u4"), "unknown layout"),
    (lambda meta: meta["rings"]["minutes"].update(head="<f8"), "unknown layout"),
    (lambda meta: meta["rings"]["minutes"].update(slot_count=60), "unknown layout"),
    (lambda meta: meta.update(version=3), "unknown layout"),
])
def test_a_format_2_checkpoint_of_another_layout_is_refused(tmp_path: Path, change: object, message: str) -> None:
    directory = written(tmp_path)
    rewrite_meta(directory, change)
    with pytest.raises(CorruptCheckpoint, match=message):
        load_checkpoint(directory, fresh())


def test_a_format_1_checkpoint_of_another_layout_is_refused(tmp_path: Path) -> None:
    directory = unpack_v1_fixture(tmp_path)
    rewrite_meta(directory, lambda meta: meta["rings"]["minutes"]["arrays"].update(count="<u2"))
    with pytest.raises(CorruptCheckpoint, match="unknown layout"):
        load_checkpoint(directory, fresh())


def test_a_newer_format_and_damage_are_refused(tmp_path: Path) -> None:
    directory = written(tmp_path)
    redo = directory / REDO_NAME
    data = redo.read_bytes()
    redo.write_bytes(MAGIC[:6] + b"\x00\x03" + data[8:])
    with pytest.raises(CorruptCheckpoint, match="newer"):
        load_checkpoint(directory, fresh())
    redo.write_bytes(data[:-40] + data[-4:])
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        load_checkpoint(directory, fresh())
    redo.write_bytes(b"something else entirely")
    with pytest.raises(CorruptCheckpoint, match="not a ServerTrack checkpoint"):
        load_checkpoint(directory, fresh())
