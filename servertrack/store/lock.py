"""The data directory's lock: one ``serve`` per data directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..common.errors import ServerTrackError

LOCK_NAME = "servertrack.lock"


class DataDirLocked(ServerTrackError):
    """Another process holds the data directory."""


class DataDirLock:
    """An exclusive ``flock`` on ``DIR/servertrack.lock``, held while the store is open.

    The kernel drops the lock when the process dies, however it dies, so a
    ``kill -9`` never leaves a stale lock behind. The file names the holder's pid.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``DataDirLocked`` naming the holder."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(descriptor)
            raise DataDirLocked(f"data directory {self.path.parent} is in use by pid {holder} "
                                f"(one serve per data directory; pass another --data-dir)") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
