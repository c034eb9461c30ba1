"""The process's heap: give large freed buffers back to the system instead of keeping them.

glibc serves allocations above a threshold (128 KiB) with their own mmap and
unmaps them when freed, but it *raises* that threshold each time such a block
is freed, up to 32 MiB. After one burst of large frames (snapshots of up to
128 KiB, their copies and decoded parts) every later large buffer then comes
from the heap, and the freed ones stay resident: a flood of 6,000 snapshot
frames left ~80 KB of RSS per node behind with nothing stored. Fixing the
threshold at 64 KiB (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
raising off) returns them. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

MMAP_THRESHOLD_BYTES = 64 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_log = logging.getLogger("servertrack.memory")


def limit_heap_retention(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve allocations of ``threshold`` bytes and more with their own mappings, returned to the
    system when freed; True if the C library took the setting."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    taken = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    if not taken:
        _log.info("the C library refused mallopt(M_MMAP_THRESHOLD, %d)", threshold)
    return taken
