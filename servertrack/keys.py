"""Key files: ``servertrack keys generate`` and reading the key files the collector and agents are given.

The files are ZeroMQ certificates, as ``zmq.auth.create_certificates`` writes
them: ``NAME.key`` holds the public key (give it to the other side: the
collector's to every agent, each agent's into the collector's
``--allowed-agents`` directory) and ``NAME.key_secret`` both keys (keep it on
its host; written with mode 0600).
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth

from .common.agent_keys import KeyPair
from .common.errors import ServerTrackError


class KeyFileError(ServerTrackError):
    """A key file that cannot be written or read."""


def generate_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair ``NAME.key`` and ``NAME.key_secret`` into ``directory`` (created if missing,
    mode 0700); return their paths. Never overwrites: ``KeyFileError`` if either exists."""
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq has no CURVE support")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} exists: not overwritten (remove it, or choose another --name)")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        old_mask = os.umask(0o077)  # the secret file is never readable by others, not even for an instant
        try:
            written_public, written_secret = zmq.auth.create_certificates(directory, name)
        finally:
            os.umask(old_mask)
        os.chmod(written_secret, 0o600)
        os.chmod(written_public, 0o644)
    except OSError as error:
        raise KeyFileError(f"cannot write keys into {directory}: {error}") from None
    return Path(written_public), Path(written_secret)


def read_key_pair(path: Path) -> KeyPair:
    """The key pair in a secret key file (``NAME.key_secret``); ``KeyFileError`` if it holds no secret key."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key: pass the NAME.key_secret file")
    return KeyPair(public, secret)


def read_public_key(path: Path) -> bytes:
    """The public key in a key file (``NAME.key``, or a secret one); ``KeyFileError`` if it holds none."""
    return _load(path)[0]


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise KeyFileError(f"cannot read key file {path}: {error}") from None
    if public is None or len(public) != 40:
        raise KeyFileError(f"{path} holds no CURVE public key")
    return public, secret
