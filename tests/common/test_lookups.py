"""Looking up many keys of one dict at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servertrack.common.lookups import values_of, values_or_none

MAPPING = {"a": 1, "b": 2, "c": 3}


def test_every_length_gives_a_sequence_of_the_values_in_order() -> None:
    assert list(values_of(MAPPING, [])) == []  # type: ignore[arg-type]
    assert list(values_of(MAPPING, ["b"])) == [2]  # type: ignore[arg-type]  # one key: still a sequence
    assert list(values_of(MAPPING, ["c", "a", "c"])) == [3, 1, 3]  # type: ignore[arg-type]


def test_a_missing_key_gives_none_or_none_in_its_place() -> None:
    assert values_of(MAPPING, ["a", "zz"]) is None
    assert values_of(MAPPING, ["zz"]) is None
    assert values_or_none(MAPPING, ["a", "zz", "c"]) == [1, None, 3]
    assert values_or_none(MAPPING, ["zz"]) == [None]
    assert values_or_none(MAPPING, []) == []


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=20))
def test_the_same_as_one_get_per_key(keys: list[str]) -> None:
    assert values_or_none(MAPPING, keys) == [MAPPING.get(key) for key in keys]
    found = values_of(MAPPING, keys)
    assert (list(found) if found is not None else None) == (
        [MAPPING[key] for key in keys] if all(key in MAPPING for key in keys) else None)
