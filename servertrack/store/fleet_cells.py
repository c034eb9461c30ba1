"""The cells of a server's block hashes as the collectors of a fleet wrote them (pure: no I/O).

A block hash (``redis_store``) holds, per collector ``C``, its closed block
parts (``C/0`` the base, ``C/N`` deltas) and its live cells (``C/mI``: bucket
``I`` of the period, as of the collector's last share). An hours hash may
also hold provisional cells (``C/pI``): a collector does not share its
current hour's cell with every share (it changes with every sample, and the
minute cells of that hour, shared every time, say the same), only once the
hour is over and, meanwhile, once a minute as a provisional cell.

So the hour cells of a collector are, for each hour, the one of most samples
of: its live cell, its provisional cell and, for the current hour, for the
previous one until its cell is written, and for an hour it stopped in (a
provisional cell that no cell replaced: ``provisional_hours``), the sum of its
minute parts of that hour. Within an hour each of these holds a part of what
the next holds (a provisional cell is older than the minutes, the minutes
leave out what came more than an hour late, an hour's cell written early by
an agent ahead of time is older than the minutes), so the one of most samples
is the most complete. A period with closed parts of the collector (a day
gone, its base written) is read from those only: its live cells went with it.
"""

from __future__ import annotations

from collections.abc import Container

import numpy as np

from .fleet_directory import LIVE_CELL, LIVE_DTYPE, part_of_field
from .history_codec import (
    U32_TOP,
    BlockCells,
    empty_cells,
    fields_of,
    merge,
    merged_periods,
)
from .records import BUCKETS_PER_PERIOD, HOUR_WIDTH, MINUTE_WIDTH

_PER_HOUR = BUCKETS_PER_PERIOD[MINUTE_WIDTH]
_PER_DAY = BUCKETS_PER_PERIOD[HOUR_WIDTH]
_SAMPLES = np.dtype("<u4")


def stored_period_cells(parts: list[tuple[int, str, bytes]], per_period: int, first_period: int, spans: int,
                        where: str, leave_out: str | None) -> BlockCells:
    """The ``[spans, per_period]`` cells of periods ``first_period ..`` from the fields of their block hashes
    ``(period, field, value)``: block parts (``C/0``, ``C/N``) decoded and merged, live cells (``C/mI``)
    merged in; the fields of collector ``leave_out`` left out."""
    return split_period_cells(parts, per_period, first_period, spans, where, leave_out)[leave_out is not None]


def split_period_cells(parts: list[tuple[int, str, bytes]], per_period: int, first_period: int, spans: int,
                       where: str, own: str | None) -> tuple[BlockCells, BlockCells]:
    """``stored_period_cells`` of every collector, and of every collector but ``own`` (the same when
    ``own`` is None), each block decoded once."""
    rows: tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]]] = ([], [])  # others', own
    live: tuple[list[tuple[int, int, bytes]], list[tuple[int, int, bytes]]] = ([], [])
    for period, field, value in parts:
        collector, rest = part_of_field(field)
        mine = int(own is not None and collector == own)
        if rest.startswith("m"):
            index = int(rest[1:]) if rest[1:].isdigit() else -1
            if 0 <= index < per_period and len(value) == LIVE_CELL.size:
                live[mine].append((period - first_period, index, value))
        elif rest.isdigit():
            rows[mine].append((period, int(rest), value))
    others = _period_cells(rows[0], live[0], per_period, first_period, spans, where)
    if not rows[1] and not live[1]:
        return others, others
    return merge(others, _period_cells(rows[1], live[1], per_period, first_period, spans, where)), others


def _period_cells(rows: list[tuple[int, int, bytes]], live: list[tuple[int, int, bytes]], per_period: int,
                  first_period: int, spans: int, where: str) -> BlockCells:
    """Block parts ``(period, part, blob)`` decoded and merged, live cells ``(span, index, cell)`` merged in."""
    if not rows:
        return _live_block(live, spans, per_period)
    rows.sort()
    cells = merged_periods(rows, per_period, first_period, spans, where)
    return merge(cells, _live_block(live, spans, per_period)) if live else cells


def _live_block(live: list[tuple[int, int, bytes]], spans: int, per_period: int) -> BlockCells:
    """Live cells as one ``[spans, per_period]`` block (several collectors' cells of one bucket merged:
    counts and sums add, min of mins, max of maxes), in a few array operations."""
    out = empty_cells((spans, per_period))
    if not live:
        return out
    records = np.frombuffer(b"".join(value for _, _, value in live), dtype=LIVE_DTYPE)
    flat = np.fromiter((span * per_period + index for span, index, _ in live), dtype=np.int64, count=len(live))
    filled = records["samples"] > 0
    records, flat = records[filled], flat[filled]
    shape = (spans, per_period)
    if np.unique(flat).size == flat.size:  # one cell a bucket (one collector's): placed, nothing to merge
        for name, field in zip(LIVE_DTYPE.names or (), fields_of(out)):
            field.reshape(-1)[flat] = records[name]
        return out
    size = spans * per_period
    samples = np.zeros(size, dtype=np.int64)
    np.add.at(samples, flat, records["samples"])
    sums = {}
    for name in ("cpu_sum", "ram_sum"):
        sums[name] = np.zeros(size)
        np.add.at(sums[name], flat, records[name])
    extremes = {}
    for name in ("cpu_min", "ram_min"):
        extremes[name] = np.full(size, np.iinfo(np.uint32).max, dtype=np.uint32)
        np.minimum.at(extremes[name], flat, records[name])
        extremes[name][samples == 0] = 0
    for name in ("cpu_max", "ram_max"):
        extremes[name] = np.zeros(size, dtype=np.uint32)
        np.maximum.at(extremes[name], flat, records[name])
    return BlockCells(np.minimum(samples, np.iinfo(np.uint32).max).astype(np.uint32).reshape(shape),
                      sums["cpu_sum"].reshape(shape), sums["ram_sum"].reshape(shape),
                      extremes["cpu_min"].reshape(shape), extremes["cpu_max"].reshape(shape),
                      extremes["ram_min"].reshape(shape), extremes["ram_max"].reshape(shape))


def split_hour_cells(parts: list[tuple[int, str, bytes]], minutes_of: dict[int, list[tuple[str, bytes]]],
                     current: int, first_period: int, spans: int, where: str, own: str | None
                     ) -> tuple[BlockCells, BlockCells]:
    """``split_period_cells`` of hours hashes (``parts``: ``(day, field, value)``), with the current and
    previous hours of each collector added up from its minutes where those say more (``minutes_of``: the
    fields of the minutes hash of each such hour; see the module's docstring). An hour before ``current``
    whose cell a collector wrote (it does once the hour is over) is that cell: its minutes are not added
    up again (the closed minutes block would be decoded twice a read)."""
    closed: dict[str, list[tuple[int, int, bytes]]] = {}
    chosen: dict[str, dict[tuple[int, int], bytes]] = {}  # (span, index) -> cell, by collector
    provisional: list[tuple[str, tuple[int, int], bytes]] = []
    for period, field, value in parts:
        collector, rest = part_of_field(field)
        kind, number = rest[:1], rest[1:]
        if kind in ("m", "p"):
            index = int(number) if number.isdigit() else -1
            if 0 <= index < _PER_DAY and len(value) == LIVE_CELL.size:
                if kind == "m":
                    chosen.setdefault(collector, {})[period - first_period, index] = value
                else:
                    provisional.append((collector, (period - first_period, index), value))
        elif rest.isdigit():
            closed.setdefault(collector, []).append((period, int(rest), value))
    written = {collector: set(cells) for collector, cells in chosen.items()}  # the hours' own cells
    for collector, key, value in provisional:
        _keep_fuller(chosen.setdefault(collector, {}), key, value, ties=False)
    for hour, fields in minutes_of.items():
        day, index = divmod(hour, _PER_DAY)
        if not 0 <= day - first_period < spans:
            continue
        by_collector: dict[str, list[tuple[str, bytes]]] = {}
        for field, value in fields:
            collector, rest = part_of_field(field)
            by_collector.setdefault(collector, []).append((rest, value))
        for collector, minute_fields in by_collector.items():
            if any(period == day for period, _, _ in closed.get(collector, ())):
                continue  # its day is closed: the base holds the hour
            key = (day - first_period, index)
            if hour < current and key in written.get(collector, ()):
                continue
            cell = _hour_of_minutes(minute_fields, hour, where)
            if cell is not None:
                _keep_fuller(chosen.setdefault(collector, {}), key, cell)
    every: BlockCells | None = None
    others: BlockCells | None = None
    for collector in sorted(closed.keys() | chosen.keys()):
        live = [(span, index, value) for (span, index), value in chosen.get(collector, {}).items()]
        cells = _period_cells(closed.get(collector, []), live, _PER_DAY, first_period, spans, where)
        every = cells if every is None else merge(every, cells)
        if own is None or collector != own:
            others = cells if others is None else merge(others, cells)
    every = empty_cells((spans, _PER_DAY)) if every is None else every
    return every, (every if own is None else empty_cells((spans, _PER_DAY)) if others is None else others)


def provisional_hours(parts: list[tuple[int, str, bytes]], at_hand: Container[int] = ()) -> set[int]:
    """The hours (UTC hour numbers) of hours hashes' fields ``(day, field, value)`` (``split_hour_cells``'
    ``parts``) where a collector left a
    provisional cell that no cell of its own replaced, in a day it did not close: it stopped in that hour,
    and its minutes of the hour say more than that copy (up to a minute more; ``split_hour_cells`` adds
    them up when it is given them). Hours of ``at_hand`` (whose minutes are read anyway) are left out."""
    fields_of_day: dict[int, set[str]] = {}
    for day, field, _ in parts:
        fields_of_day.setdefault(day, set()).add(field)
    hours: set[int] = set()
    for day, fields in fields_of_day.items():
        for field in fields:
            if "/p" not in field:  # the common case, told without splitting the field
                continue
            collector, rest = part_of_field(field)
            index = rest[1:]
            if rest[:1] != "p" or not index.isdigit() or int(index) >= _PER_DAY:
                continue
            hour = day * _PER_DAY + int(index)
            if hour in at_hand or f"{collector}/m{index}" in fields:
                continue
            prefix = f"{collector}/"
            if any(other.startswith(prefix) and other[len(prefix):].isdigit() for other in fields):
                continue  # it closed the day: its base holds the hour
            hours.add(hour)
    return hours


def _keep_fuller(cells: dict[tuple[int, int], bytes], key: tuple[int, int], value: bytes, ties: bool = True
                 ) -> None:
    """Keep ``value`` at ``key`` unless the cell there has more samples (or as many, unless ``ties``)."""
    held = cells.get(key)
    if held is None:
        cells[key] = value
        return
    mine, theirs = (int.from_bytes(cell[:_SAMPLES.itemsize], "little") for cell in (value, held))
    if mine > theirs or (ties and mine == theirs):
        cells[key] = value


def _hour_of_minutes(fields: list[tuple[str, bytes]], hour: int, where: str) -> bytes | None:
    """One collector's minute parts of ``hour`` (its fields of the hour's minutes hash, without ``C/``) as
    one hour cell (``LIVE_CELL``); None if they hold no sample."""
    rows = [(hour, int(rest), value) for rest, value in fields if rest.isdigit()]
    live = [(int(rest[1:]), value) for rest, value in fields
            if rest[:1] == "m" and rest[1:].isdigit() and int(rest[1:]) < _PER_HOUR and len(value) == LIVE_CELL.size]
    if not rows and not live:
        return None
    if rows:
        cells = _period_cells(rows, [(0, index, value) for index, value in live], _PER_HOUR, hour, 1, where)
        samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max = (field.reshape(-1) for field in cells)
    else:  # the live cells alone (an open hour's, the common case): added up as they are
        records = np.frombuffer(b"".join(value for _, value in live), dtype=LIVE_DTYPE)
        samples, cpu_sum, ram_sum, cpu_min, cpu_max, ram_min, ram_max = (records[name] for name in
                                                                          LIVE_DTYPE.names or ())
    filled = samples > 0
    if not filled.any():
        return None
    record = np.zeros(1, dtype=LIVE_DTYPE)
    record["samples"] = min(int(samples.sum(dtype=np.int64)), U32_TOP)
    record["cpu_sum"], record["ram_sum"] = cpu_sum[filled].sum(), ram_sum[filled].sum()
    record["cpu_min"], record["ram_min"] = cpu_min[filled].min(), ram_min[filled].min()
    record["cpu_max"], record["ram_max"] = cpu_max[filled].max(), ram_max[filled].max()
    return record.tobytes()
