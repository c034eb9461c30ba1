"""Key names and expiry of the Redis store, without Redis: every key of a server hashes on the server's
name (one cluster slot), and a block expires exactly where the SQLite store's retention cuts (checked
against a naive model: the purge's ``period < (now - keep) // period_seconds``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.cluster import key_slot

from servertrack.store.redis_keys import (
    block_key,
    block_ttl,
    delta_member,
    known_key,
    node_key,
    parse_delta_member,
    slot_tag,
    snapshot_ttl,
    snapshots_key,
)

_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,40}", fullmatch=True)


@given(_names, st.integers(0, 10**7), st.integers(0, 10**6))
def test_every_key_of_a_server_is_in_the_slot_of_its_name(name: str, hour: int, day: int) -> None:
    keys = [block_key(name, 60, hour), block_key(name, 3600, day), known_key(name), node_key(name),
            snapshots_key(name)]
    assert {slot_tag(key) for key in keys} == {name}
    assert {key_slot(key.encode()) for key in keys} == {key_slot(name.encode())}
    assert len(set(keys)) == len(keys)


def test_key_names() -> None:
    assert block_key("web-01", 60, 500_000) == "st:{web-01}:m:500000"
    assert block_key("web-01", 3600, 20_000) == "st:{web-01}:h:20000"
    with pytest.raises(ValueError, match="60 or 3600"):
        block_key("web-01", 1, 0)
    with pytest.raises(ValueError, match="hash tag"):
        node_key("a}b")


@given(_names, st.sampled_from([60, 3600]), st.integers(0, 10**7), st.integers(1, 2**40))
def test_a_delta_member_parses_back(name: str, width: int, period: int, part: int) -> None:
    assert parse_delta_member(delta_member(name, width, period, part)) == (name, width, period, part)


@given(st.sampled_from([60, 3600]), st.integers(400_000, 600_000), st.integers(3600, 400 * 86_400),
       st.floats(1.7e9, 2.2e9))
def test_a_block_expires_where_the_sqlite_purge_cuts(width: int, period: int, keep: int, now: float) -> None:
    if width == 3600:
        period //= 24
    seconds = width * (60 if width == 60 else 24)
    ttl = block_ttl(width, period, keep, now)

    def purged(at: float) -> bool:  # the SQLite store's rule
        return period < int((at - keep) // seconds)

    if ttl <= 0:
        assert purged(now)
    else:
        assert not purged(now + ttl - 1) and purged(now + ttl)


def test_snapshot_ttl() -> None:
    assert snapshot_ttl(1000, 600.0, 1000.0) == 600 and snapshot_ttl(1000, 600.0, 1700.0) <= 0


def test_a_redis_older_than_7_is_refused_by_its_version() -> None:
    from servertrack.store.redis_store import version_problem

    assert version_problem("7.0.15") is None and version_problem("8.2.1") is None and version_problem("") is None
    problem = version_problem("6.2.14")
    assert problem is not None and "Redis 6.2.14" in problem and "7 or later" in problem
