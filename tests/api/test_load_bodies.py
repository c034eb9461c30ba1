"""The C path of a ``POST /loads`` body (``load_bodies.load_columns``) against the general one
(``orjson.loads`` and ``handlers.checked_columns``): whatever body it takes, it gives the same columns,
float bits included; every other body it leaves to the general path, which answers as before."""

from __future__ import annotations

import json
import struct
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.api.handlers import ApiError, checked_columns
from servertrack.api.load_bodies import MAX_BATCH_ITEMS, load_columns
from servertrack.common.protocol import NameCache
from tests.conftest import EPOCH

NOW = EPOCH


def general(body: bytes) -> Any:
    try:
        return checked_columns(orjson.loads(body), NOW, NameCache())
    except orjson.JSONDecodeError:
        return ("refused", 400, "not_json")
    except ApiError as error:
        return ("refused", error.status_code, error.reason, error.message)


def bits(columns: Any) -> Any:
    names, *numbers = columns
    return names, [[struct.pack(">d", value) for value in column] for column in numbers]


def check(body: bytes) -> Any:
    """Decode ``body`` both ways; assert that what the fast path takes, the general path gives as well."""
    fast = load_columns(body, NOW, NameCache())
    expected = general(body)
    if fast is not None:
        assert not (isinstance(expected, tuple) and expected[0] == "refused"), (body[:200], expected)
        assert all(type(value) is float for column in fast[1:] for value in column)
        assert bits(fast) == bits(expected)
    return fast, expected


def sample(index: int = 0, **changes: Any) -> dict[str, Any]:
    return {"server": f"Web-{index:02d}.example", "cpu": 12.5, "ram": 40, "ts": NOW - index, **changes}


def test_a_plain_body_takes_the_fast_path_with_canonical_names_and_the_receive_time() -> None:
    body = orjson.dumps([sample(0), sample(1, ts=int(NOW)), {"server": "db-1", "cpu": 0, "ram": 100}])
    fast, _ = check(body)
    assert fast is not None
    assert fast == (["web-00.example", "web-01.example", "db-1"], [NOW, float(int(NOW)), NOW], [12.5, 12.5, 0.0],
                    [40.0, 40.0, 100.0])
    assert check(b"[]")[0] == ([], [], [], [])


def test_what_the_fast_path_leaves_to_the_general_path() -> None:
    for items in ([sample(extra=1)], [sample(ts=None)], [sample(cpu=100.5)], [sample(ram=True)],
                  [sample(cpu="1")], [sample(ts=NOW + 61)], [sample(ts=NOW - 86_400)], [sample(server="10.0.0.1")],
                  [sample(server="bad name")], [{"cpu": 1, "ram": 2}], [1], {"server": "x"},
                  [sample()] * (MAX_BATCH_ITEMS + 1)):
        fast, _ = check(orjson.dumps(items))
        assert fast is None, items
    for body in (b"", b"[", b"[1,]", b"\xef\xbb\xbf[]", b"[NaN]", b'[{"server": "a\\ud800", "cpu": 1, "ram": 1}]',
                 b'[{"server": "\xff", "cpu": 1, "ram": 1}]'):
        assert check(body)[0] is None, body


def test_numbers_read_the_same_both_ways() -> None:
    for text in ("-0", "-0.0", "0", "0e0", "1E2", "100", "100.0", "1e-400", "99.99999999999999999", "1e2",
                 "100.00000000000001", "100000000000000000000000", "5e-324"):
        body = b'[{"server": "a", "cpu": %s, "ram": %s, "ts": %s}]' % (text.encode(), text.encode(),
                                                                          repr(NOW).encode())
        check(body)
    fast, _ = check(b'[{"server": "a", "cpu": -0, "ram": -0.0}]')
    assert fast is not None and struct.pack(">d", fast[2][0]) == struct.pack(">d", 0.0)
    assert struct.pack(">d", fast[3][0]) == struct.pack(">d", -0.0)


def test_repeated_keys_keep_the_last_value_both_ways() -> None:
    fast, expected = check(b'[{"server": "a", "cpu": 1, "cpu": 2, "ram": 3, "server": "b"}]')
    assert fast is not None and fast[0] == ["b"] and fast[2] == [2.0]
    fast, expected = check(b'[{"server": "a", "cpu": "x", "cpu": 2, "ram": 3}]')  # the general path decides
    assert fast is None and expected[2] == [2.0]


NUMBER_TEXT = st.one_of(
    st.sampled_from(["-0", "-0.0", "0", "100", "100.0", "100.5", "-1", "1e2", "1e400", "NaN", "true", "null", '"1"',
                     "[]", "{}", repr(NOW), repr(NOW + 60.0), repr(NOW + 60.5), "1800000000", "1e100"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(0, 100).map(repr),
)
SERVER_TEXT = st.one_of(st.sampled_from(['"web-01"', '"Web-01."', '"10.0.0.1"', '"a b"', '""', "1", "null", '"é"',
                                         '"' + "a" * 254 + '"']),
                        st.text(max_size=10).map(json.dumps))
KEY = st.sampled_from(["server", "cpu", "ram", "ts", "extra"])


@st.composite
def bodies(draw: Any) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 4))):
        pairs = [("server", draw(SERVER_TEXT)), ("cpu", draw(NUMBER_TEXT)), ("ram", draw(NUMBER_TEXT))]
        if draw(st.booleans()):
            pairs.append(("ts", draw(NUMBER_TEXT)))
        for _ in range(draw(st.integers(0, 2))):  # repeated or unknown keys, or a key left out
            if draw(st.booleans()):
                pairs.append((draw(KEY), draw(NUMBER_TEXT | SERVER_TEXT)))
            elif pairs:
                pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        items.append("{" + ", ".join(f'"{key}": {value}' for key, value in pairs) + "}")
    return ("[" + ", ".join(items) + "]").encode()


@settings(max_examples=400, deadline=None)
@given(body=bodies())
def test_random_bodies_are_decoded_the_same_way(body: bytes) -> None:
    check(body)


def test_a_body_at_the_item_limit_takes_the_fast_path() -> None:
    items = [sample(i % 100) for i in range(MAX_BATCH_ITEMS)]
    fast, _ = check(orjson.dumps(items))
    assert fast is not None and len(fast[0]) == MAX_BATCH_ITEMS
