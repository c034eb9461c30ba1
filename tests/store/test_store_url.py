"""``--store``'s URLs parsed without I/O: what is accepted, what each refusal says, and that ``describe``
gives back a URL that parses to the same target (hypothesis, over generated targets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servertrack.store.store_url import DEFAULT_PORT, RedisTarget, parse_store


def test_plain_kinds_are_kept_as_they_are() -> None:
    assert parse_store("sqlite") == "sqlite" and parse_store("memory") == "memory"


@pytest.mark.parametrize(("text", "expected"), [
    ("redis://127.0.0.1:6390/3", RedisTarget(False, False, (("127.0.0.1", 6390),), 3)),
    ("redis://cache.internal", RedisTarget(False, False, (("cache.internal", DEFAULT_PORT),), 0)),
    ("redis://cache.internal:7000/", RedisTarget(False, False, (("cache.internal", 7000),), 0)),
    ("rediss://reader@[::1]:6380/0", RedisTarget(False, True, (("::1", 6380),), 0, "reader")),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
     RedisTarget(True, False, (("10.0.0.1", 7000), ("10.0.0.2", 7001)), 0)),
    ("rediss+cluster://a:7000", RedisTarget(True, True, (("a", 7000),), 0)),
])
def test_redis_urls(text: str, expected: RedisTarget) -> None:
    assert parse_store(text) == expected


def test_describe_never_shows_a_password_and_names_the_db() -> None:
    assert RedisTarget(False, False, (("127.0.0.1", 6379),)).describe() == "redis://127.0.0.1:6379/0"
    assert RedisTarget(True, True, (("::1", 7000), ("b", 7001))).describe() == "rediss+cluster://[::1]:7000,b:7001"
    assert parse_store("redis://reader@h").kind == "redis"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "says"), [
    ("postgres://db", "expected sqlite, memory, redis://"),
    ("sqlite3", "expected sqlite, memory"),
    ("redis://", "no host"),
    ("redis://:secret@host:6379", "no password in the --store URL"),
    ("redis://user:secret@host/0", "use --store-password-file"),
    ("redis://host:0", "port in the --store URL must be from 1 to 65535"),
    ("redis://host:99999", "port in the --store URL must be from 1 to 65535"),
    ("redis://host:port", "expected HOST:PORT"),
    ("redis://host/16", "DB in the --store URL must be a number from 0 to 15"),
    ("redis://host/x", "DB in the --store URL must be a number"),
    ("redis://a:1,b:2", "use redis+cluster://"),
    ("redis+cluster://a:1/2", "only DB 0"),
    ("redis://host?db=1", "no query or fragment"),
    ("redis://bad host", "expected HOST:PORT"),
    ("redis://us er@host", "user name in the --store URL"),
])
def test_refusals_say_what_is_wrong_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as raised:
        parse_store(text)
    message = str(raised.value)
    assert says in message and "\n" not in message
    assert "secret" not in message


_hosts = st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
                   .filter(lambda host: not host.endswith("-")),
                   st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
_targets = st.builds(lambda cluster, tls, hosts, db, user: RedisTarget(cluster, tls, tuple(hosts) if cluster
                                                                       else tuple(hosts[:1]), 0 if cluster else db,
                                                                       user),
                     st.booleans(), st.booleans(),
                     st.lists(st.tuples(_hosts, st.integers(1, 65535)), min_size=1, max_size=4),
                     st.integers(0, 15), st.none() | st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True))


@given(_targets)
def test_a_described_target_parses_back_to_itself(target: RedisTarget) -> None:
    assert parse_store(target.describe()) == target
