"""The bearer-token policy (``api.access_tokens``) and the token format (``common.tokens``), without I/O."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servertrack.api import access_tokens
from servertrack.api.access_tokens import AccessTokens, bearer_credential
from servertrack.common.tokens import MAX_TOKEN_CHARS, MIN_TOKEN_CHARS, token_problem

WRITE = "w" * 8 + "0123456789abcdef"
READ = "r" * 8 + "0123456789abcdef"
BOTH = AccessTokens.of(write=WRITE, read=READ)


def test_no_tokens_serve_everything() -> None:
    assert AccessTokens().refusal([], writes=True) is None
    assert AccessTokens().refusal([], writes=False) is None
    assert AccessTokens().writes_open


def test_a_write_token_guards_writes_only() -> None:
    tokens = AccessTokens.of(write=WRITE)
    assert tokens.refusal([], writes=False) is None
    refusal = tokens.refusal([], writes=True)
    assert refusal is not None and not refusal.invalid_token and "--write-token" in refusal.message
    assert refusal.challenge == 'Bearer realm="servertrack"'
    assert tokens.refusal([f"Bearer {WRITE}"], writes=True) is None
    assert not tokens.writes_open


def test_the_write_token_also_grants_reads_and_the_read_token_does_not_grant_writes() -> None:
    assert BOTH.refusal([f"Bearer {READ}"], writes=False) is None
    assert BOTH.refusal([f"Bearer {WRITE}"], writes=False) is None
    refusal = BOTH.refusal([f"Bearer {READ}"], writes=True)
    assert refusal is not None and refusal.invalid_token
    assert refusal.challenge == 'Bearer realm="servertrack", error="invalid_token"'
    refusal = BOTH.refusal([], writes=False)
    assert refusal is not None and "--read-token" in refusal.message


def test_a_read_token_alone_leaves_writes_open() -> None:
    tokens = AccessTokens.of(read=READ)
    assert tokens.refusal([], writes=True) is None and tokens.writes_open
    assert tokens.refusal([], writes=False) is not None


def test_tokens_are_compared_with_compare_digest_over_every_accepted_token(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        assert type(a) is bytes and type(b) is bytes
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(access_tokens.hmac, "compare_digest", spy)
    assert BOTH.refusal([f"Bearer {WRITE}"], writes=False) is None
    # both tokens compared (no early exit tells which matched), as digests of one length
    assert len(calls) == 2 and {len(a) for pair in calls for a in pair} == {32}
    calls.clear()
    assert BOTH.refusal([f"Bearer {WRITE}x"], writes=True) is not None
    assert len(calls) == 1


def test_the_tokens_are_not_in_the_repr() -> None:
    assert WRITE not in repr(BOTH) and "w" * 8 not in repr(BOTH)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([], None),  # no header
        (["Basic dXNlcjpwYXNz"], None),  # another scheme: as if none was sent
        (["Bearer"], b""),
        (["Bearer "], b""),
        ([f"Bearer {WRITE}"], WRITE.encode()),
        ([f"bearer {WRITE}"], WRITE.encode()),  # the scheme is case-insensitive
        ([f"BEARER \t  {WRITE}"], WRITE.encode()),  # 1*SP
        ([f"  Bearer {WRITE}  "], WRITE.encode()),
        ([f"Bearer {WRITE} extra"], b""),
        ([f"Bearer {WRITE},Bearer {WRITE}"], b""),  # two headers Tornado would join
        ([f"Bearer {WRITE}", f"Bearer {WRITE}"], b""),  # repeated Authorization headers
        ([f"Bearer {WRITE}\x00"], b""),
        ([f"Bearer {WRITE}\r\nX-Evil: 1"], b""),
        ([f"Bearer {WRITE[:-1]}é"], b""),  # non-ASCII (Tornado decodes headers as latin-1)
        ([f"Bearer {WRITE[:-1]}\u202e"], b""),
        (["Bearer " + "a" * (MAX_TOKEN_CHARS + 1)], b""),
        (["Bearer " + "a" * 100_000], b""),
        (["Bearer abc=="], b"abc=="),
        (["Bearer ab=c"], b""),
        (["Bearer\x00 " + WRITE], None),
    ],
)
def test_bearer_credentials_are_parsed_strictly(values: list[str], expected: bytes | None) -> None:
    assert bearer_credential(values) == expected


@pytest.mark.parametrize(
    "values",
    [[f"Bearer {WRITE}x"], [f"Bearer {WRITE[:-1]}"], ["Bearer "], [f"Bearer {WRITE}", f"Bearer {WRITE}"],
     [f"Bearer {WRITE}\x07"], ["Bearer " + "a" * 70_000]],
)
def test_a_wrong_or_malformed_bearer_token_is_an_invalid_token(values: list[str]) -> None:
    refusal = BOTH.refusal(values, writes=True)
    assert refusal is not None and refusal.invalid_token and WRITE not in refusal.message


@given(st.lists(st.text(max_size=300), max_size=3))
def test_any_authorization_header_is_answered_without_raising(values: list[str]) -> None:
    refusal = BOTH.refusal(values, writes=True)
    assert refusal is None or refusal.message  # never an exception, whatever is sent
    assert refusal is not None or values == [f"Bearer {WRITE}"] or values[0].strip().split()[-1] == WRITE


@pytest.mark.parametrize(
    "token, fragment",
    [
        ("", "at least"),
        ("a" * (MIN_TOKEN_CHARS - 1), "at least"),
        ("a" * (MAX_TOKEN_CHARS + 1), "at most"),
        ("0123456789abcdef 0123", "only letters"),
        ("0123456789abcdef\x00", "only letters"),
        ("0123456789abcdefé", "only letters"),
    ],
)
def test_unusable_tokens_are_named(token: str, fragment: str) -> None:
    problem = token_problem(token)
    assert problem is not None and fragment in problem


def test_openssl_style_tokens_are_usable() -> None:
    assert token_problem("a3" * 32) is None  # openssl rand -hex 32
    assert token_problem("q0vJ+/Zr9w3X2lY8mN1pQ4s=") is None  # openssl rand -base64 18
