"""Rendezvous hashing: every agent agrees, agents spread evenly, and a change of the collector list moves
only the agents that must move."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.common.rendezvous import chosen_index, weight

ENDPOINTS = st.lists(st.integers(1024, 65535).map(lambda port: f"tcp://10.0.0.1:{port}"), min_size=1, max_size=8,
                     unique=True)
NAMES = st.lists(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True), min_size=1, max_size=50, unique=True)


def picks(names: list[str], collectors: list[str]) -> dict[str, str]:
    return {name: collectors[chosen_index(name, collectors)] for name in names}


@settings(max_examples=100)
@given(NAMES, ENDPOINTS, st.integers(0, 7))
def test_removing_a_collector_moves_only_its_agents(names: list[str], collectors: list[str], gone: int) -> None:
    if len(collectors) < 2:
        return
    removed = collectors[gone % len(collectors)]
    before = picks(names, collectors)
    after = picks(names, [collector for collector in collectors if collector != removed])
    for name in names:
        assert after[name] == before[name] or before[name] == removed


@settings(max_examples=100)
@given(NAMES, ENDPOINTS, st.integers(1024, 65535))
def test_adding_a_collector_moves_only_the_agents_it_wins(names: list[str], collectors: list[str], port: int) -> None:
    added = f"tcp://10.0.0.2:{port}"
    before = picks(names, collectors)
    after = picks(names, [*collectors, added])
    for name in names:
        assert after[name] == before[name] or after[name] == added


@given(NAMES, ENDPOINTS)
def test_the_order_of_the_list_does_not_matter(names: list[str], collectors: list[str]) -> None:
    assert picks(names, collectors) == picks(names, list(reversed(collectors)))


def test_agents_spread_evenly_and_the_weight_is_the_same_everywhere() -> None:
    collectors = [f"tcp://collector-{number}:5556" for number in range(4)]
    counts = Counter(picks([f"node-{number:05}.example" for number in range(8000)], collectors).values())
    assert all(1800 <= count <= 2200 for count in counts.values()), counts  # 2000 each, +-10 %
    # BLAKE2b of the pair, big-endian: a fixed value, so agents on other machines and Pythons agree
    assert weight("tcp://a:5556", "web-01") == int.from_bytes(
        __import__("hashlib").blake2b(b"tcp://a:5556\0web-01", digest_size=8).digest(), "big")
    with pytest.raises(ValueError):
        chosen_index("web-01", [])
