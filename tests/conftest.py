"""Fixtures shared by the whole suite: a controllable clock and the environment for subprocesses."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.redis_servers import redis_cluster, redis_cluster_url, redis_standalone, redis_url  # noqa: F401

# The suite runs on a shared 2-core machine: judge properties by their examples,
# not by how fast the machine happened to be.
settings.register_profile("servertrack", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("servertrack")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# 2027-01-15T08:00:00Z plus 17.25 s: mid-minute, so tests see both sides of a boundary.
EPOCH = 1_800_000_000.0 - (1_800_000_000 % 3600) + 17.25


class FakeClock:
    """A clock for injection: returns ``now`` until a test moves it."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward and return the new time."""
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock at ``EPOCH``."""
    return FakeClock()


def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m servertrack`` children: this checkout first on the path,
    no ``SERVERTRACK_*`` settings leaking in from the caller, and ``--store memory`` unless a test asks
    for a store (``--store sqlite --data-dir`` its own temporary directory): no test writes to a home."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SERVERTRACK_")}
    env["SERVERTRACK_STORE"] = "memory"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    if env.pop("PYTHONDONTWRITEBYTECODE", ""):
        # Without bytecode every child compiled the checkout's ~80 modules from source again (~0.15 s a
        # start, of ~0.4 s). The children cache it instead in one directory of this run, outside the
        # checkout (which stays free of __pycache__, as the caller asked), removed when the run ends.
        env["PYTHONPYCACHEPREFIX"] = _bytecode_cache()
    return env


@functools.cache
def _bytecode_cache() -> str:
    directory = tempfile.mkdtemp(prefix="servertrack-tests-pycache-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def servertrack_command(*args: str) -> list[str]:
    """argv that runs the servertrack CLI with this interpreter."""
    return [sys.executable, "-m", "servertrack", *args]


@pytest.fixture(autouse=True)
def _fsync_without_the_disk_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.fsync`` in this process checks its descriptor (``os.fstat``: EBADF on a closed one, as fsync
    would) but does not wait for the disk. What an fsync adds over a write survives only an OS crash or a
    power cut, which no test can cause; a killed process loses nothing the kernel already has. On the
    shared machine the flushes cost seconds (the retention test: 19 s of its 28 s). Children
    (``python -m servertrack``) and tests that patch ``os.fsync`` themselves are unaffected."""
    monkeypatch.setattr(os, "fsync", _checked_fsync)


def _checked_fsync(fd: int) -> None:
    os.fstat(fd)
