"""AgentKeys: the allowed keys, revocation, and numbers that outlive a revocation."""

from __future__ import annotations

import pytest
import zmq

from servertrack.common.agent_keys import AgentKeys, KeyPair, is_z85_key


def _key() -> str:
    return zmq.curve_keypair()[0].decode("ascii")


def test_replacing_the_keys_tells_what_was_added_and_revoked() -> None:
    a, b, c = _key(), _key(), _key()
    keys = AgentKeys([a, b])
    assert len(keys) == 2 and a in keys and c not in keys
    assert keys.replace([b, c]) == ([c], [a])
    assert a not in keys.allowed and keys.allowed[b] == keys.number(b)
    assert keys.replace([b, c]) == ([], [])


def test_a_key_keeps_its_number_when_revoked_and_allowed_again() -> None:
    a, b = _key(), _key()
    keys = AgentKeys([a])
    number = keys.allowed[a]
    assert number >= 1  # 0 is nobody's
    keys.replace([b])
    keys.replace([a, b])
    assert keys.allowed[a] == number and keys.key(number) == a
    assert keys.key(0) is None and keys.key(999) is None


def test_a_text_that_is_not_a_key_is_refused_and_changes_nothing() -> None:
    a = _key()
    keys = AgentKeys([a])
    for bad in ("", "x" * 39, "x" * 41, "\x00" * 40, "é" * 40, a[:-1] + '"'):
        assert not is_z85_key(bad)
        with pytest.raises(ValueError):
            keys.replace([bad])
    assert list(keys.allowed) == [a]


def test_a_key_pair_never_shows_its_secret() -> None:
    public, secret = zmq.curve_keypair()
    assert secret.decode() not in repr(KeyPair(public, secret)) and public.decode() in repr(KeyPair(public, secret))
