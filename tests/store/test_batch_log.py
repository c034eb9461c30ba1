"""The batch log: exact codec, framing, crash-torn tails, segments, I/O errors, sizes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.store import batch_log
from servertrack.store.batch_log import (
    MAX_RECORD_BYTES,
    SEGMENT_HEADER,
    BatchLog,
    CorruptRecord,
    LogReplay,
    LogVersionError,
    NameTable,
    decode_batch,
    encode_batch,
    read_segments,
)
from servertrack.store.records import LoggedBatch
from tests.conftest import subprocess_env

T0 = 1_800_000_000
FRAME = struct.Struct("<II")


def make_batch(batch_id: int, names: list[str], seconds: list[int] | None = None,
               cpu: list[int] | None = None, ram: list[int] | None = None) -> LoggedBatch:
    count = len(names)
    return LoggedBatch(
        batch_id=batch_id,
        applied_at=T0 + batch_id + 0.5,
        names=list(names),
        seconds=np.array(seconds if seconds is not None else [T0 + batch_id] * count, dtype=np.int64),
        cpu_fixed=np.array(cpu if cpu is not None else [(batch_id * 7 + i) % 10_000_001 for i in range(count)],
                           dtype=np.uint32),
        ram_fixed=np.array(ram if ram is not None else [1000 * ((batch_id + 3 * i) % 10_001) for i in range(count)],
                           dtype=np.uint32),
    )


def assert_same(got: LoggedBatch, want: LoggedBatch) -> None:
    assert got.batch_id == want.batch_id
    assert got.applied_at == want.applied_at or (got.applied_at != got.applied_at and want.applied_at != want.applied_at)
    assert got.names == want.names
    for column in ("seconds", "cpu_fixed", "ram_fixed"):
        have, expected = getattr(got, column), getattr(want, column)
        assert have.dtype == expected.dtype, column
        assert have.tolist() == expected.tolist(), column


def assert_all_same(got: list[LoggedBatch], want: list[LoggedBatch]) -> None:
    assert len(got) == len(want)
    for have, expected in zip(got, want):
        assert_same(have, expected)


def small_batches(count: int, first_id: int = 1) -> list[LoggedBatch]:
    """Batches of a few servers each, some names repeated across batches, some new."""
    return [make_batch(first_id + k, [f"web-{(k + i) % 7:02d}.example" for i in range(3 + k % 3)])
            for k in range(count)]


def read_all(directory: Path, first: int = 0) -> tuple[list[LoggedBatch], LogReplay]:
    replay = LogReplay()
    return list(read_segments(directory, first, replay)), replay


def record_ends(segment: bytes) -> list[int]:
    """Byte offsets where each record of a segment file ends (parsed by the documented framing)."""
    assert segment.startswith(SEGMENT_HEADER)
    ends, offset = [], len(SEGMENT_HEADER)
    while offset < len(segment):
        length, _ = FRAME.unpack_from(segment, offset)
        offset += FRAME.size + length
        ends.append(offset)
    assert offset == len(segment)
    return ends


# ---------------------------------------------------------------- codec

canonical_names = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,252}", fullmatch=True)
any_names = st.text(max_size=40)
uint32 = st.integers(0, 2**32 - 1)


@st.composite
def batches(draw: st.DrawFn, names: st.SearchStrategy[str]) -> LoggedBatch:
    pool = draw(st.lists(names, min_size=1, max_size=12, unique=True))
    count = draw(st.integers(0, 30))
    chosen = [draw(st.sampled_from(pool)) for _ in range(count)]
    if draw(st.booleans()):
        base = draw(st.integers(-(2**63), 2**63 - 1))
        seconds = [draw(st.integers(max(-(2**63), base - 2), min(2**63 - 1, base + 2))) for _ in chosen]
    else:
        seconds = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=count, max_size=count))
    def loads() -> list[int]:
        if draw(st.booleans()):  # 0.01 % resolution: the u16 path
            return draw(st.lists(st.integers(0, 10_000).map(lambda v: v * 1000), min_size=count, max_size=count))
        return draw(st.lists(uint32, min_size=count, max_size=count))
    return LoggedBatch(
        batch_id=draw(st.integers(0, 2**64 - 1)),
        applied_at=draw(st.floats(allow_nan=False)),
        names=chosen,
        seconds=np.array(seconds, dtype=np.int64),
        cpu_fixed=np.array(loads(), dtype=np.uint32),
        ram_fixed=np.array(loads(), dtype=np.uint32),
    )


@given(st.lists(st.one_of(batches(canonical_names), batches(any_names)), min_size=1, max_size=5))
def test_codec_round_trips_exactly_through_one_segment_table(logged: list[LoggedBatch]) -> None:
    writer, reader = NameTable(), NameTable()
    for batch in logged:
        payload = encode_batch(batch, writer)
        assert_same(decode_batch(payload, reader), batch)
        assert reader.names == writer.names  # both ends grow the same table
    assert sorted(writer.names) == sorted({name for batch in logged for name in batch.names})


def test_codec_round_trips_names_with_separators_and_surrogates() -> None:
    names = ["a\nb", "", "\n", "\ud800", "\udfff\ud800", "é", "\U0001f600", "\x00"]
    batch = make_batch(1, names + names[::-1])
    assert_same(decode_batch(encode_batch(batch, NameTable()), NameTable()), batch)


@pytest.mark.parametrize("spread", [0, 2, 300, 70_000, 2**40, 2**64 - 1])
def test_seconds_of_any_spread_round_trip(spread: int) -> None:
    low = -(2**63) if spread == 2**64 - 1 else T0
    seconds = [low + spread, low, low + spread // 3]
    batch = make_batch(1, ["a", "b", "c"], seconds=seconds)
    assert_same(decode_batch(encode_batch(batch, NameTable()), NameTable()), batch)


def test_name_indices_far_apart_round_trip() -> None:
    names = [f"s{i}" for i in range(70_000)]
    zigzag = [names[i // 2] if i % 2 == 0 else names[-1 - i // 2] for i in range(len(names))]
    writer, reader = NameTable(), NameTable()
    for batch in (make_batch(1, names), make_batch(2, zigzag), make_batch(3, names[::-1])):
        assert_same(decode_batch(encode_batch(batch, writer), reader), batch)


def test_a_name_costs_its_bytes_once_per_segment() -> None:
    table = NameTable()
    name = hashlib.sha512(b"server").hexdigest() + ".example"  # 136 characters zlib cannot shrink much
    first = encode_batch(make_batch(1, [name, "b"], cpu=[1, 2], ram=[3, 4]), table)
    second = encode_batch(make_batch(2, [name, "b"], cpu=[1, 2], ram=[3, 4]), table)
    assert len(first) - len(second) > 60
    assert table.names == [name, "b"]
    reader = NameTable()
    decode_batch(first, reader)
    assert decode_batch(second, reader).names == [name, "b"]


def test_encoding_refuses_bad_batches_and_leaves_the_table_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    table = NameTable()
    encode_batch(make_batch(1, ["a"]), table)
    ragged = make_batch(2, ["b", "c"])._replace(cpu_fixed=np.array([1], dtype=np.uint32))
    with pytest.raises(ValueError, match="one length"):
        encode_batch(ragged, table)
    with pytest.raises(ValueError):
        encode_batch(make_batch(-1, ["d"]), table)
    monkeypatch.setattr(batch_log, "MAX_RECORD_BYTES", 200)
    with pytest.raises(ValueError, match="more than 200"):
        encode_batch(make_batch(3, [f"new-{i}" for i in range(50)]), table)
    assert table.names == ["a"] and table.index == {"a": 0}


def test_max_record_size_is_64_mib() -> None:
    assert MAX_RECORD_BYTES == 64 * 1024 * 1024


def valid_payloads() -> list[bytes]:
    table = NameTable()
    return [encode_batch(batch, table) for batch in small_batches(3)] + [
        encode_batch(make_batch(9, [f"n{i}" for i in range(200)]), NameTable())]


@given(st.binary(max_size=300))
def test_decoding_garbage_raises_corrupt_record_only(garbage: bytes) -> None:
    table = NameTable()
    try:
        decode_batch(garbage, table)
    except CorruptRecord:
        assert len(table) == 0


@given(st.sampled_from(valid_payloads()), st.data())
def test_decoding_damaged_payloads_raises_corrupt_record_only(payload: bytes, data: st.DataObject) -> None:
    damaged = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    damaged = damaged[:cut] + data.draw(st.binary(max_size=8))
    table = NameTable()
    try:
        decoded = decode_batch(bytes(damaged), table)
    except CorruptRecord:
        assert len(table) == 0 and not table.index
    else:
        assert len(decoded.names) == decoded.seconds.size == decoded.cpu_fixed.size


def test_lying_lengths_are_refused_before_anything_is_allocated() -> None:
    header = batch_log._HEADER
    tiny = zlib.compress(b"\x00" * 10)
    claims = [
        # 2**24 samples whose columns claim to be compressed in a few bytes
        header.pack(1, 0.0, 2**24, 0, 0, 2, 3, 0b11110, 0, 0, 0, 0, len(tiny), len(tiny), len(tiny), len(tiny))
        + tiny * 4,
        # names claiming 256 MiB from 11 bytes
        header.pack(1, 0.0, 1, 1, 0, 0, 0, 0b00001, 0, 0, 2**28, len(tiny), 1, 1, 4, 4) + tiny + b"\x00" * 10,
        # more samples than a record may hold
        header.pack(1, 0.0, 2**32 - 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    ]
    # a section that inflates far beyond what the header says
    bomb = zlib.compress(b"\x00" * (1 << 24), 9)
    claims.append(header.pack(1, 0.0, 1, 1, 0, 0, 0, 0b00001, 0, 0, 5, len(bomb), 1, 1, 4, 4) + bomb + bytes(10))
    tracemalloc.start()
    try:
        for payload in claims:
            with pytest.raises(CorruptRecord):
                decode_batch(payload, NameTable())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_record_may_not_repeat_a_name_the_segment_has() -> None:
    table = NameTable()
    first = encode_batch(make_batch(1, ["a"]), table)
    reader = NameTable()
    decode_batch(first, reader)
    with pytest.raises(CorruptRecord):
        decode_batch(first, reader)  # the same record again brings "a" again
    assert reader.names == ["a"] and reader.index == {"a": 0}


# ---------------------------------------------------------------- framing and the log


def test_segment_file_is_header_then_length_crc_payload(tmp_path: Path) -> None:
    logged = small_batches(3)
    with BatchLog(tmp_path) as log:
        for batch in logged:
            log.append(batch)
    assert [path.name for path in tmp_path.iterdir()] == ["000000000001.log"]
    data = (tmp_path / "000000000001.log").read_bytes()
    assert data[:8] == SEGMENT_HEADER == b"STLOG\x00\x01\x00"
    table, offset = NameTable(), 8
    for batch in logged:
        length, crc = FRAME.unpack_from(data, offset)
        payload = data[offset + 8:offset + 8 + length]
        assert payload == encode_batch(batch, table)
        assert crc == zlib.crc32(payload)
        offset += 8 + length
    assert offset == len(data)


def test_an_appended_record_survives_kill_9_without_sync(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from tests.store.test_batch_log import small_batches\n"
        "from servertrack.store.batch_log import BatchLog\n"
        "log = BatchLog(Path(sys.argv[1]))\n"
        "for batch in small_batches(4): log.append(batch)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=subprocess_env(),
                           cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    got, replay = read_all(tmp_path)
    assert_all_same(got, small_batches(4))
    assert (replay.records, replay.torn_bytes, replay.corrupt_segments) == (4, 0, 0)


def test_records_are_readable_while_the_log_is_open(tmp_path: Path) -> None:
    log = BatchLog(tmp_path)
    log.append(small_batches(1)[0])
    got, _ = read_all(tmp_path)
    assert_all_same(got, small_batches(1))
    log.close()


def write_segments(directory: Path, groups: list[list[LoggedBatch]]) -> list[Path]:
    with BatchLog(directory) as log:
        for group in groups:
            for batch in group:
                log.append(batch)
            log.rotate()
    return sorted(directory.glob("*.log"))


def test_a_cut_anywhere_in_the_last_record_keeps_exactly_the_whole_records(tmp_path: Path) -> None:
    logged = small_batches(5)
    [path] = write_segments(tmp_path / "full", [logged])
    data = path.read_bytes()
    ends = record_ends(data)
    rng = np.random.default_rng(9)
    earlier = [int(cut) for cut in rng.integers(0, ends[-2], 40)]
    for attempt, cut in enumerate([*range(ends[-2], ends[-1] + 1), *earlier]):
        target = tmp_path / f"cut-{attempt}"
        target.mkdir()
        (target / path.name).write_bytes(data[:cut])
        got, replay = read_all(target)
        whole = sum(end <= cut for end in ends)
        assert_all_same(got, logged[:whole])
        header = len(SEGMENT_HEADER) if cut >= len(SEGMENT_HEADER) else 0  # a cut header is torn too
        last_good = ends[whole - 1] if whole else header
        assert replay.torn_bytes == cut - last_good, cut
        assert replay.corrupt_segments == 0


def test_a_torn_segment_ends_there_and_reading_goes_on_with_the_next(tmp_path: Path) -> None:
    first, second = small_batches(3), small_batches(2, first_id=10)
    paths = write_segments(tmp_path, [first, second])
    data = paths[0].read_bytes()
    ends = record_ends(data)
    paths[0].write_bytes(data[:ends[1] + 5])
    got, replay = read_all(tmp_path)
    assert_all_same(got, first[:2] + second)
    assert (replay.segments, replay.records, replay.torn_bytes, replay.corrupt_segments) == (2, 4, 5, 0)


def test_a_flipped_byte_drops_its_record_and_the_rest_of_its_segment(tmp_path: Path) -> None:
    first, second = small_batches(4), small_batches(2, first_id=10)
    paths = write_segments(tmp_path / "full", [first, second])
    data = paths[0].read_bytes()
    ends = record_ends(data)
    for position in range(ends[0] + FRAME.size, ends[1]):  # every byte of the second record's payload
        target = tmp_path / f"flip-{position}"
        target.mkdir()
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        (target / paths[0].name).write_bytes(bytes(damaged))
        shutil.copy(paths[1], target / paths[1].name)
        got, replay = read_all(target)
        assert_all_same(got, first[:1] + second)
        assert (replay.corrupt_segments, replay.torn_bytes) == (1, 0)
        assert replay.dropped_bytes == len(data) - ends[0]
        assert len(replay.problems) == 1 and paths[0].name in replay.problems[0]


@settings(max_examples=30)
@given(st.data())
def test_any_cut_of_a_crashed_log_reads_as_a_prefix_of_what_was_appended(tmp_path_factory: pytest.TempPathFactory,
                                                                         data: st.DataObject) -> None:
    directory = tmp_path_factory.mktemp("log")
    groups = [small_batches(data.draw(st.integers(1, 4)), first_id=10 * k) for k in range(data.draw(st.integers(1, 3)))]
    paths = write_segments(directory, groups)
    # the crash: the newest segment is cut at any byte
    last = paths[-1].read_bytes()
    cut = data.draw(st.integers(0, len(last)))
    paths[-1].write_bytes(last[:cut])
    got, replay = read_all(directory)
    kept = sum(end <= cut for end in record_ends(last))
    want = [batch for group in groups[:-1] for batch in group] + groups[-1][:kept]
    assert_all_same(got, want)
    assert replay.corrupt_segments == 0


def test_a_zero_filled_tail_reads_as_torn(tmp_path: Path) -> None:
    [path] = write_segments(tmp_path, [small_batches(2)])
    with path.open("ab") as file:
        file.write(bytes(100))
    got, replay = read_all(tmp_path)
    assert_all_same(got, small_batches(2))
    assert (replay.torn_bytes, replay.corrupt_segments) == (100, 0)


def test_foreign_files_and_versions(tmp_path: Path) -> None:
    write_segments(tmp_path, [small_batches(2)])
    (tmp_path / "notes.txt").write_text("not a segment")
    (tmp_path / "000000000002.log").write_bytes(b"")  # created, then the crash
    (tmp_path / "000000000003.log").write_bytes(b"STL")  # the header itself torn
    (tmp_path / "000000000004.log").write_bytes(b"GARBAGE!" + bytes(20))
    got, replay = read_all(tmp_path)
    assert_all_same(got, small_batches(2))
    assert (replay.segments, replay.corrupt_segments, replay.torn_bytes) == (4, 1, 3)
    (tmp_path / "000000000005.log").write_bytes(b"STLOG\x00\x02\x00")
    with pytest.raises(LogVersionError):
        read_all(tmp_path)
    assert list(read_segments(tmp_path / "missing", 0)) == []


def test_rotate_numbers_segments_and_replay_starts_where_rotate_said(tmp_path: Path) -> None:
    log = BatchLog(tmp_path)
    assert log.segments() == [] and log.current_segment is None
    before, after = small_batches(3), small_batches(2, first_id=20)
    for batch in before:
        log.append(batch)
    assert log.current_segment == 1
    first = log.rotate()
    assert first == 2 and log.rotate() == 2  # nothing appended in between: the same segment
    for batch in after:
        log.append(batch)
    assert log.segments() == [1, 2]
    got, _ = read_all(tmp_path, first)
    assert_all_same(got, after)  # what a checkpoint taken at rotate() leaves to replay
    with pytest.raises(ValueError):
        log.delete_before(3)  # segment 2 is still being written
    log.delete_before(first)
    assert log.segments() == [2]
    log.close()
    log.close()  # closing twice is harmless


def test_reopening_never_appends_to_an_old_segment(tmp_path: Path) -> None:
    write_segments(tmp_path, [small_batches(2)])
    (tmp_path / "000000000007.log").write_bytes(SEGMENT_HEADER)
    old = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with BatchLog(tmp_path) as log:
        assert log.rotate() == 8
        log.append(small_batches(1, first_id=50)[0])
        assert log.current_segment == 8
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.name in old} == old
    got, _ = read_all(tmp_path)
    assert_all_same(got, small_batches(2) + small_batches(1, first_id=50))


def test_every_segment_carries_its_own_names(tmp_path: Path) -> None:
    batch = make_batch(1, ["only-in-segment-one.example"])
    with BatchLog(tmp_path) as log:
        log.append(batch)
        log.rotate()
        log.append(batch._replace(batch_id=2))
    (tmp_path / "000000000001.log").unlink()
    got, _ = read_all(tmp_path)
    assert_all_same(got, [batch._replace(batch_id=2)])


def test_sync_and_counters(tmp_path: Path) -> None:
    log = BatchLog(tmp_path)
    log.sync()
    assert log.fsyncs == 0  # nothing written yet
    log.append(small_batches(1)[0])
    log.sync()
    assert log.fsyncs == 2  # the segment, and once the directory entry of the new file
    log.sync()
    assert log.fsyncs == 2  # nothing new to sync
    log.append(small_batches(2)[1])
    log.close()
    assert log.fsyncs == 3
    assert log.bytes_written == sum(path.stat().st_size for path in tmp_path.iterdir())


# ---------------------------------------------------------------- I/O errors


def test_an_unwritable_directory_raises_and_the_log_recovers(tmp_path: Path) -> None:
    # a directory replaced by a file: refused whatever the user (root ignores chmod)
    directory = tmp_path / "log"
    logged = small_batches(4)
    log = BatchLog(directory)
    log.append(logged[0])
    log.rotate()
    directory.rename(tmp_path / "aside")
    directory.write_text("in the way")
    with pytest.raises(OSError):
        log.append(logged[1])
    with pytest.raises(OSError):
        log.append(logged[1])
    directory.unlink()
    (tmp_path / "aside").rename(directory)
    log.append(logged[1])
    log.append(logged[2])
    log.close()
    got, replay = read_all(directory)
    assert_all_same(got, logged[:3])
    assert (replay.torn_bytes, replay.corrupt_segments) == (0, 0)


def test_a_read_only_directory_raises_eacces_when_not_root(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = BatchLog(directory)
    directory.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root writes anyway: the log must simply go on working
            log.append(small_batches(1)[0])
        else:
            with pytest.raises(PermissionError):
                log.append(small_batches(1)[0])
    finally:
        directory.chmod(0o700)
    log.append(small_batches(2)[1])
    log.close()
    got, _ = read_all(directory)
    assert got[-1].batch_id == 2


class FailingWrites:
    """``os.write`` that, once armed for an fd, writes part of a buffer and then fails (ENOSPC)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, partial: int) -> None:
        self.real = os.write
        self.partial = partial
        self.armed = False
        self.failures = 0
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if not self.armed or fd <= 2:
            return self.real(fd, data)
        if self.partial and len(data) > self.partial:
            written = self.real(fd, memoryview(data)[:self.partial])
            self.partial = 0  # the next call fails
            return written
        self.failures += 1
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("truncate_fails", [False, True])
def test_a_write_failing_mid_record_is_cut_off_and_the_next_append_starts_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, truncate_fails: bool) -> None:
    logged = small_batches(5)
    log = BatchLog(tmp_path)
    log.append(logged[0])
    log.append(logged[1])
    size = (tmp_path / "000000000001.log").stat().st_size
    written = log.bytes_written
    writes = FailingWrites(monkeypatch, partial=10)
    if truncate_fails:
        def refuse(fd: int, length: int) -> None:
            raise OSError(errno.EIO, "Input/output error")
        monkeypatch.setattr(os, "ftruncate", refuse)
    writes.armed = True
    with pytest.raises(OSError) as raised:
        log.append(logged[2])
    assert raised.value.errno == errno.ENOSPC
    assert log.current_segment is None  # that segment is done with
    writes.armed = False
    log.append(logged[3])
    log.append(logged[4])
    log.close()
    assert log.segments() == [1, 2]
    torn = 10 if truncate_fails else 0
    assert (tmp_path / "000000000001.log").stat().st_size == size + torn
    # every byte handed to the kernel counts, the 10 cut off again included
    assert log.bytes_written == written + 10 + (tmp_path / "000000000002.log").stat().st_size
    got, replay = read_all(tmp_path)
    assert_all_same(got, [logged[0], logged[1], logged[3], logged[4]])
    assert (replay.torn_bytes, replay.corrupt_segments) == (torn, 0)


def test_a_new_segment_whose_header_cannot_be_written_is_removed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log = BatchLog(tmp_path)
    writes = FailingWrites(monkeypatch, partial=0)
    writes.armed = True
    with pytest.raises(OSError):
        log.append(small_batches(1)[0])
    assert log.segments() == [] and writes.failures == 1
    writes.armed = False
    log.append(small_batches(1)[0])
    log.close()
    assert log.segments() == [2]  # a number once tried is never reused
    got, _ = read_all(tmp_path)
    assert_all_same(got, small_batches(1))


def test_a_failed_fsync_raises_and_the_next_append_starts_a_new_segment(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = BatchLog(tmp_path)
    logged = small_batches(2)
    log.append(logged[0])
    real_fsync = os.fsync
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        log.sync()
    monkeypatch.setattr(os, "fsync", real_fsync)
    log.append(logged[1])
    log.close()
    assert log.segments() == [1, 2]
    got, _ = read_all(tmp_path)
    assert_all_same(got, logged)


# ---------------------------------------------------------------- sizes and speed

FLEET = 100_000


def fleet_names() -> list[str]:
    return [f"node{i:06d}.dc{i % 7}.corp.example.com" for i in range(FLEET)]


def fleet_batch(batch_id: int, names: list[str], rng: np.random.Generator, shuffle: Callable[[int], np.ndarray]) -> LoggedBatch:
    """One second of a fleet: every server once, seconds equal +-1, loads random at 0.01 %."""
    order = shuffle(FLEET)
    return LoggedBatch(
        batch_id, T0 + batch_id + 0.5, [names[i] for i in order],
        np.full(FLEET, T0 + batch_id, dtype=np.int64) + rng.integers(-1, 2, FLEET),
        rng.integers(0, 10_001, FLEET).astype(np.uint32) * 1000,
        rng.integers(0, 10_001, FLEET).astype(np.uint32) * 1000,
    )


def sorted_ish(rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """Arrival order close to name order: each server moved by up to 16 places."""
    return lambda size: np.argsort(np.arange(size) + rng.integers(0, 16, size), kind="stable")


def test_sizes_of_a_fleet_second(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    names = fleet_names()
    table = NameTable()
    first = encode_batch(fleet_batch(1, names, rng, sorted_ish(rng)), table)
    second = encode_batch(fleet_batch(2, names, rng, sorted_ish(rng)), table)
    shuffled = encode_batch(fleet_batch(3, names, rng, rng.permutation), table)
    with capsys.disabled():
        print(f"\nbatch log bytes/sample at {FLEET} samples: first {len(first) / FLEET:.2f}, "
              f"later {len(second) / FLEET:.2f} (sorted-ish), {len(shuffled) / FLEET:.2f} (random order)")
    assert len(first) < 10 * FLEET
    assert len(second) < 5.5 * FLEET
    assert len(shuffled) < 8 * FLEET


def test_reading_sixty_fleet_seconds_is_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(6)
    names = fleet_names()
    table = NameTable()
    payloads = [encode_batch(fleet_batch(k, names, rng, sorted_ish(rng)), table) for k in range(1, 4)]
    with (tmp_path / "000000000001.log").open("wb") as file:
        file.write(SEGMENT_HEADER)
        for k in range(60):  # the first record with the names, then later records
            payload = payloads[min(k, 1 + k % 2)]
            file.write(FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
    started = time.perf_counter()
    samples = sum(batch.seconds.size for batch in read_segments(tmp_path, 0))
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nbatch log: read {samples} samples in {elapsed:.2f} s")
    assert samples == 60 * FLEET
    assert elapsed < 2.0


def test_generator_closed_early_closes_its_file(tmp_path: Path) -> None:
    write_segments(tmp_path, [small_batches(3)])
    reader = read_segments(tmp_path, 0)
    assert isinstance(reader, Generator)
    assert next(reader).batch_id == 1
    reader.close()  # filterwarnings=error would turn a leaked file into a failure
