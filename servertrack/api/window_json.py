"""Bucket lists as JSON text, written straight from a window's arrays.

Every bucket of a window has the same layout: constant text (keys, braces,
commas) between a few values. So a list of buckets is written as a list of
pieces joined once, with no Python object per bucket:

- each value column is formatted by one ``orjson.dumps`` of its array
  (``OPT_SERIALIZE_NUMPY`` writes a float64 exactly as it writes the same
  Python float, and a NaN as ``null``), and split into one token per value;
- the tokens are slotted into a template of the pieces by slice assignment;
- the per-bucket text that depends only on where the window starts (the
  ``start`` or ``time`` of each bucket) is formatted once per window
  position and kept (``_start_pieces``): every request in the same minute
  shares it.

The text is the same, byte for byte, as ``orjson.dumps`` of the dicts the
reference views in ``views`` and ``perf_views`` build (the tests hold them
to it): same keys in the same order, the same numbers, ``null`` where a
bucket has no samples.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import orjson

from ..common.buckets import BucketWindow, bucket_starts
from ..common.seconds import SecondWindow

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# Windows of up to this many buckets keep their start pieces (the live windows: 60 seconds, 60 minutes,
# 24 hours, and ranges of a day of minutes); longer ranges format theirs each time.
_CACHED_BUCKETS = 1_440
_CACHED_WINDOWS = 64



class RowLayout:
    """The text of one row (a bucket): constant pieces, and ``None`` where a value goes."""

    def __init__(self, *pieces: bytes | None) -> None:
        self.template = [b"" if piece is None else piece for piece in pieces]
        self.slots = [at for at, piece in enumerate(pieces) if piece is None]

    def pieces(self, columns: Sequence[Sequence[bytes]]) -> list[bytes]:
        """The pieces of every row, row after row: ``columns[k][i]`` in slot ``k`` of row ``i``."""
        width = len(self.template)
        pieces = self.template * len(columns[0])
        for slot, column in zip(self.slots, columns):
            pieces[slot::width] = column
        return pieces


# A bucket with samples: its head (``{"start":"...","samples":``, see ``_start_pieces``), its sample
# count and its figures; a bucket without samples: its head, then ``_EMPTY_TAIL``.
_FILLED = RowLayout(None, None, b',"cpu":{"avg":', None, b',"min":', None, b',"max":', None,
                    b'},"ram":{"avg":', None, b',"min":', None, b',"max":', None, b"}}")
_EMPTY_TAIL = b'0,"cpu":null,"ram":null}'
_SECOND = RowLayout(None, None, b',"cpu":', None, b',"ram":', None, b"}")


def number_list(values: npt.NDArray[np.generic]) -> bytes:
    """A 1-D array as a JSON list, as orjson writes the same Python numbers (a float64 NaN as ``null``)."""
    return orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)


def number_tokens(values: npt.NDArray[np.generic]) -> list[bytes]:
    """Each value of a 1-D array as orjson writes it (a float64 NaN as ``null``), in order."""
    if values.size == 0:
        return []
    return number_list(values)[1:-1].split(b",")


def _format_start_pieces(kind: str, first: int, width: int, count: int) -> tuple[bytes, ...]:
    if kind == "head":  # what opens a bucket: ``[{"start":"...Z","samples":``, later ones after a comma
        pieces = [b',{"start":"%s","samples":' % start.encode() for start in bucket_starts(first, width, count)]
        pieces[0] = b"[" + pieces[0][1:]
    else:  # "time", what closes a /perf entry and opens the next: ``,"time":"..."},{"cpuload":``
        pieces = [b',"time":"%s"},{"cpuload":' % start.encode()
                  for start in bucket_starts(first, width, count, suffix="")]
        pieces[-1] = pieces[-1][:-len(b',{"cpuload":')] + b"]"
    return tuple(pieces)


_cached_start_pieces = functools.lru_cache(maxsize=_CACHED_WINDOWS)(_format_start_pieces)


def _start_pieces(kind: str, first: int, width: int, count: int) -> tuple[bytes, ...]:
    """The text of each of ``count`` buckets from bucket ``first`` that depends on its start only (``kind``
    ``head`` or ``time``, see ``_format_start_pieces``); kept for the windows last asked for."""
    if count > _CACHED_BUCKETS:
        return _format_start_pieces(kind, first, width, count)
    return _cached_start_pieces(kind, first, width, count)


def _filled_pieces(heads: Sequence[bytes], samples: npt.NDArray[np.uint32],
                   cells: Sequence[npt.NDArray[np.float64]]) -> list[bytes]:
    """The pieces of buckets that all have samples: ``heads``, ``samples`` and ``cells`` (cpu sum, min,
    max, ram sum, min, max) theirs."""
    cpu_sum, cpu_min, cpu_max, ram_sum, ram_min, ram_max = cells
    figures = (cpu_sum / samples, cpu_min, cpu_max, ram_sum / samples, ram_min, ram_max)
    return _FILLED.pieces([heads, number_tokens(samples), *map(number_tokens, figures)])


def bucket_list(window: BucketWindow) -> bytes:
    """The JSON of ``views.window_buckets(window)``: ``[{"start", "samples", "cpu": {"avg", "min", "max"},
    "ram": {...}}, ...]``, ``cpu`` and ``ram`` null in a bucket without samples."""
    samples = window.samples
    count = int(samples.size)
    if count == 0:
        return b"[]"
    heads = _start_pieces("head", window.first_bucket, window.width, count)
    cells = (window.cpu_sum, window.cpu_min, window.cpu_max, window.ram_sum, window.ram_min, window.ram_max)
    if samples.all():  # the common case: every bucket shown has samples
        pieces = _filled_pieces(heads, samples, cells)
    else:
        pieces = _mixed_pieces(heads, samples, cells, samples != 0)
    pieces.append(b"]")
    return b"".join(pieces)


def _mixed_pieces(heads: Sequence[bytes], samples: npt.NDArray[np.uint32], cells: Sequence[npt.NDArray[np.float64]],
                  filled: npt.NDArray[np.bool_]) -> list[bytes]:
    """The pieces of a window with empty buckets: one step per run of filled or empty buckets."""
    rows = np.flatnonzero(filled)
    filled_pieces: list[bytes] = []
    if rows.size:
        filled_pieces = _filled_pieces([heads[row] for row in rows.tolist()], samples[rows],
                                       [values[rows] for values in cells])
    per_bucket = len(_FILLED.template)
    edges = [0, *(np.flatnonzero(filled[1:] != filled[:-1]) + 1).tolist(), len(heads)]
    pieces: list[bytes] = []
    taken = 0  # filled buckets already placed
    for first, stop in pairwise(edges):
        if filled[first]:
            pieces += filled_pieces[per_bucket * taken:per_bucket * (taken + stop - first)]
            taken += stop - first
        else:
            empty = [_EMPTY_TAIL] * (2 * (stop - first))
            empty[0::2] = heads[first:stop]
            pieces += empty
    return pieces


def average_loads(sums: npt.NDArray[np.float64], samples: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """``sums / samples``, NaN (written ``null``) where there are no samples."""
    averages = np.full(sums.shape, np.nan)
    np.divide(sums, samples, out=averages, where=samples != 0)
    return averages


def second_list(window: SecondWindow) -> bytes:
    """The JSON of ``views.second_buckets(window)``: ``[{"start", "samples", "cpu", "ram"}, ...]``, the
    loads null in a second without samples."""
    samples = window.samples
    count = int(samples.size)
    if count == 0:
        return b"[]"
    empty = samples == 0
    cpu = np.where(empty, np.nan, window.cpu_avg)
    ram = np.where(empty, np.nan, window.ram_avg)
    heads = _start_pieces("head", window.first_second, 1, count)
    pieces = _SECOND.pieces([heads, number_tokens(samples), number_tokens(cpu), number_tokens(ram)])
    pieces.append(b"]")
    return b"".join(pieces)


@functools.lru_cache(maxsize=8)
def _perf_layout(width: int) -> RowLayout:
    """A ``/perf`` entry of buckets of ``width`` seconds, after its opening ``{"cpuload":`` (its time piece
    closes it and opens the next, see ``_format_start_pieces``)."""
    return RowLayout(None, b',"memload":', None, b',"interval":%d,"samples":' % width, None, None)


def perf_list(first_bucket: int, width: int, samples: npt.NDArray[np.generic], cpu: npt.NDArray[np.float64],
              ram: npt.NDArray[np.float64]) -> bytes:
    """The JSON of a ``/perf`` window: ``[{"cpuload", "memload", "interval", "samples", "time"}, ...]``,
    ``time`` the bucket's start without a zone suffix; ``cpu``/``ram`` NaN where a load is null."""
    count = int(samples.size)
    if count == 0:
        return b"[]"
    times = _start_pieces("time", first_bucket, width, count)
    pieces = _perf_layout(width).pieces([number_tokens(cpu), number_tokens(ram), number_tokens(samples), times])
    return b'[{"cpuload":' + b"".join(pieces)
