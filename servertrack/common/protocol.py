"""Wire protocol: one msgpack map per sample, and the validation shared by every entry point.

A frame is ``{"v": 1, "fqdn": str, "ts": float, "ip": [str], "cpu": float,
"ram": float, "seq": int}``, at most ``MAX_SAMPLE_FRAME_BYTES``. Unknown keys
are ignored; a missing or ill-typed required key makes the whole frame
invalid. ``decode_sample`` is on the hot
path of the collector (one call per received frame), so it is written as a
handful of dict lookups and type checks, with slow work (name and IP parsing)
cached.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

from .buckets import HOUR_SECONDS, HOURS_SHOWN
from .errors import InvalidSample

PROTOCOL_VERSION = 1
# v2 adds node messages ("kind": hello | bye | snapshot, see node_messages);
# a v1 frame, or a v2 frame of kind "sample", is a load sample.
NODE_PROTOCOL_VERSION = 2
# The largest frame of any kind: a stats snapshot at its bounds (see node_messages).
# Each kind has its own, smaller or equal, limit (``node_messages.FRAME_LIMITS``).
MAX_FRAME_BYTES = 128 * 1024
# A sample frame is ~100 bytes; 4 KiB leaves room for 32 IPs and unknown keys.
MAX_SAMPLE_FRAME_BYTES = 4 * 1024
MAX_NAME_LENGTH = 253
MAX_IPS = 32
MAX_IP_LENGTH = 64
MAX_SEQ = 2**64 - 1
MAX_FUTURE_SECONDS = 60.0
# A hello or bye carries no data placed at its time, only its agent's clock: it is accepted from an
# agent whose clock is off by up to this much either way, so that the skew shows (see ``check_clock``).
MAX_CLOCK_SKEW_SECONDS = 86_400.0
LOAD_MIN = 0.0
LOAD_MAX = 100.0
# The largest list and map a frame may hold (a snapshot's per-CPU list; a map of
# a few known keys plus unknown ones); beyond them the decoder stops: ``too_large``.
MAX_DECODED_ITEMS = 1024
MAX_DECODED_KEYS = 64

_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,%d}\Z" % MAX_NAME_LENGTH)
_HAS_LETTER_OR_DIGIT = re.compile(r"[a-z0-9]")
_DOTTED_DIGITS = re.compile(r"[0-9.]+")
_NUMBER_TYPES = frozenset((int, float))
_UNPACK_LIMITS = dict(
    raw=False,
    max_str_len=MAX_FRAME_BYTES,
    max_bin_len=MAX_FRAME_BYTES,
    max_array_len=MAX_DECODED_ITEMS,
    max_map_len=MAX_DECODED_KEYS,
    max_ext_len=MAX_FRAME_BYTES,
)


_HOUR = float(HOUR_SECONDS)
_OLDEST_HOUR = float(HOURS_SHOWN - 1)


def oldest_accepted(now: float) -> float:
    """The earliest timestamp a sample received at ``now`` may carry: the start of the oldest
    hour the hour window still shows (23 hours before the current one).

    A sample older than that would lie in no window, so it is refused rather
    than answered as accepted.
    """
    return (now // _HOUR - _OLDEST_HOUR) * _HOUR  # the same formula sample_from_map inlines


class Sample(NamedTuple):
    """One load sample as it crosses the wire (``fqdn`` already canonical once decoded)."""

    fqdn: str
    ts: float
    cpu: float
    ram: float
    seq: int
    ips: list[str]


def normalize_name(name: object) -> str:
    """Return the canonical (lower-case) server name, or raise ``InvalidSample('bad_name')``.

    Names are 1 to 253 characters of ``[A-Za-z0-9._-]`` with at least one
    letter or digit, compared without case; one trailing dot is dropped
    (``web-01.`` is ``web-01``, as in DNS). A name that reads as an IPv4
    address is refused: nodes are also looked up by address, and a node
    named ``10.0.0.5`` would take over the lookups of another node's IP.
    """
    if type(name) is not str or _NAME_PATTERN.match(name) is None:
        shown = name if isinstance(name, str) and len(name) <= 64 else type(name).__name__
        raise InvalidSample(
            "bad_name",
            f"server name {shown!r} is invalid: use 1 to {MAX_NAME_LENGTH} characters of A-Z a-z 0-9 . _ -",
            "name",
        )
    canonical = name.lower()
    if canonical == name:
        canonical = name  # one string object, not two, when the name is already canonical
    if canonical.endswith("."):
        canonical = canonical[:-1]
    if _HAS_LETTER_OR_DIGIT.search(canonical) is None:
        raise InvalidSample("bad_name", f"server name {name!r} is invalid: it has no letter or digit", "name")
    if _DOTTED_DIGITS.fullmatch(canonical) is not None and is_ip_address(canonical):
        raise InvalidSample(
            "bad_name", f"server name {name!r} is invalid: it reads as an IP address, not a name", "name"
        )
    return canonical


def is_ip_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address (at most ``MAX_IP_LENGTH`` characters)."""
    if len(text) > MAX_IP_LENGTH:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_load(value: object, field: str) -> float:
    """Return ``value`` as a float if it is a finite JSON/msgpack number in [0, 100].

    Booleans are refused even though Python treats them as ints.
    """
    if type(value) not in _NUMBER_TYPES:
        raise InvalidSample("bad_type", f"{field} must be a number, not {_type_name(value)}", field)
    if not LOAD_MIN <= value <= LOAD_MAX:  # type: ignore[operator]  # also false for NaN
        raise InvalidSample("out_of_range", f"{field} must be between 0 and 100, got {value!r}", field)
    return float(value)  # type: ignore[arg-type]


def check_timestamp(ts: object, now: float) -> float:
    """Return ``ts`` as a float if it lies within [``oldest_accepted(now)``, now + 60 s]."""
    if type(ts) not in _NUMBER_TYPES:
        raise InvalidSample("bad_type", f"ts must be a number (epoch seconds), not {_type_name(ts)}", "ts")
    oldest = oldest_accepted(now)
    if not oldest <= ts <= now + MAX_FUTURE_SECONDS:  # type: ignore[operator]
        shown = ts if type(ts) is float or abs(ts) < 10**20 else "a huge integer"  # type: ignore[arg-type]
        raise InvalidSample(
            "bad_timestamp",
            f"ts {shown!r} is outside the accepted range: from {oldest:.0f} (the oldest hour shown) "
            f"to 60 s ahead of {now:.3f}",
            "ts",
        )
    return float(ts)  # type: ignore[arg-type]


def check_clock(ts: object, now: float) -> float:
    """Return the ``ts`` of a hello or bye as a float if it lies within ``MAX_CLOCK_SKEW_SECONDS`` of
    ``now`` either way (samples and snapshots keep ``check_timestamp``'s window)."""
    if type(ts) not in _NUMBER_TYPES:
        raise InvalidSample("bad_type", f"ts must be a number (epoch seconds), not {_type_name(ts)}", "ts")
    if not now - MAX_CLOCK_SKEW_SECONDS <= ts <= now + MAX_CLOCK_SKEW_SECONDS:  # type: ignore[operator]
        shown = ts if type(ts) is float or abs(ts) < 10**20 else "a huge integer"  # type: ignore[arg-type]
        raise InvalidSample("bad_timestamp", f"ts {shown!r} is more than {MAX_CLOCK_SKEW_SECONDS:.0f} s from "
                                             f"{now:.3f}: the agent's clock is wrong", "ts")
    return float(ts)  # type: ignore[arg-type]


def check_seq(seq: object) -> int:
    """Return ``seq`` if it is an integer in [0, 2**64)."""
    if type(seq) is not int:
        raise InvalidSample("bad_type", f"seq must be an integer, not {_type_name(seq)}", "seq")
    if not 0 <= seq <= MAX_SEQ:
        raise InvalidSample("out_of_range", f"seq must be between 0 and 2**64-1, got {seq}", "seq")
    return seq


def check_ips(ips: object) -> list[str]:
    """Return ``ips`` if it is a list of at most 32 valid IPv4/IPv6 address strings."""
    if type(ips) is not list:
        raise InvalidSample("bad_type", f"ip must be a list of strings, not {_type_name(ips)}", "ip")
    if len(ips) > MAX_IPS:
        raise InvalidSample("out_of_range", f"ip lists at most {MAX_IPS} addresses, got {len(ips)}", "ip")
    for address in ips:
        if type(address) is not str or len(address) > MAX_IP_LENGTH:
            raise InvalidSample("bad_ip", f"ip entries must be address strings, got {_type_name(address)}", "ip")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidSample("bad_ip", f"{address!r} is not an IP address", "ip") from None
    return ips


DEFAULT_NAME_CACHE_LIMIT = 400_000


def name_cache_limit(max_servers: int) -> int:
    """How many raw names a service holding ``max_servers`` servers caches: every server's name
    in two spellings, plus room for newcomers; never more than the default."""
    return min(DEFAULT_NAME_CACHE_LIMIT, 2 * max_servers + 1024)


class NameCache:
    """Remembers which raw names were already validated, and their canonical form.

    Bounded: when full it starts over, so a flood of distinct names costs
    re-validation, never unbounded memory. Only valid names are kept; size it
    with ``name_cache_limit(max_servers)``.
    """

    __slots__ = ("_canonical", "_limit")

    def __init__(self, limit: int = DEFAULT_NAME_CACHE_LIMIT) -> None:
        self._canonical: dict[str, str] = {}
        self._limit = limit

    def canonical(self, name: object) -> str:
        """Return the canonical form of ``name``, validating it on first sight."""
        if type(name) is str:
            known = self._canonical.get(name)
            if known is not None:
                return known
        canonical = normalize_name(name)
        if len(self._canonical) >= self._limit:
            self._canonical.clear()
        self._canonical[name] = canonical  # type: ignore[index]
        return canonical


def encode_sample(sample: Sample) -> bytes:
    """Encode one sample as a protocol-v1 msgpack frame."""
    return msgpack.packb(
        {
            "v": PROTOCOL_VERSION,
            "fqdn": sample.fqdn,
            "ts": float(sample.ts),
            "ip": list(sample.ips),
            "cpu": float(sample.cpu),
            "ram": float(sample.ram),
            "seq": int(sample.seq),
        },
        use_bin_type=True,
    )


def unpack_frame(frame: bytes) -> dict[str, Any]:
    """The msgpack map in ``frame`` (size limits applied); raise ``InvalidSample`` otherwise.

    A frame over ``MAX_FRAME_BYTES``, or holding a list, map or string beyond
    the decoder's limits, is ``too_large``; bytes that are not one msgpack
    value are ``not_msgpack``.
    """
    if len(frame) > MAX_FRAME_BYTES:
        raise InvalidSample("too_large", f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        message = msgpack.unpackb(frame, **_UNPACK_LIMITS)
    except ValueError as error:
        if "exceeds max_" in str(error):  # msgpack's own words for a decoder limit
            raise InvalidSample("too_large", f"frame holds more than the decoder allows: {error}") from None
        raise InvalidSample("not_msgpack", f"frame is not valid msgpack: {error}") from None
    except (TypeError, msgpack.UnpackException) as error:
        raise InvalidSample("not_msgpack", f"frame is not valid msgpack: {error}") from None
    if type(message) is not dict:
        raise InvalidSample("not_a_map", f"frame must be a msgpack map, not {_type_name(message)}")
    return message


def decode_sample(
    frame: bytes,
    now: float,
    names: NameCache,
    known_ips: Callable[[str], list[str] | None] | None = None,
) -> Sample:
    """Decode and validate one sample frame received at ``now``; raise ``InvalidSample`` if it is bad.

    ``known_ips(name)`` may return the IP list last accepted for that server:
    an identical list is not parsed again.
    """
    sample = sample_from_map(unpack_frame(frame), now, names, known_ips)
    if len(frame) > MAX_SAMPLE_FRAME_BYTES:
        raise InvalidSample("too_large", f"sample frame of {len(frame)} bytes exceeds {MAX_SAMPLE_FRAME_BYTES}")
    return sample


def sample_from_map(
    message: dict[str, Any],
    now: float,
    names: NameCache,
    known_ips: Callable[[str], list[str] | None] | None = None,
) -> Sample:
    """Validate an unpacked sample message (see ``decode_sample``)."""
    try:
        version = message["v"]
        fqdn = message["fqdn"]
        ts = message["ts"]
        cpu = message["cpu"]
        ram = message["ram"]
        seq = message["seq"]
        ips = message["ip"]
    except KeyError as missing:
        raise InvalidSample("missing_field", f"frame lacks required key {missing}", str(missing.args[0])) from None
    if version != PROTOCOL_VERSION or type(version) is not int:
        if not (version == NODE_PROTOCOL_VERSION and type(version) is int and message.get("kind") == "sample"):
            raise InvalidSample("bad_version", f"unsupported protocol version {version!r}", "v")
    name = names._canonical.get(fqdn) if type(fqdn) is str else None  # inlined NameCache.canonical
    if name is None:
        name = names.canonical(fqdn)
    # Inline fast path of check_load/check_timestamp/check_seq; the slow calls give the error.
    if not (type(cpu) in _NUMBER_TYPES and LOAD_MIN <= cpu <= LOAD_MAX):
        check_load(cpu, "cpu")
    if not (type(ram) in _NUMBER_TYPES and LOAD_MIN <= ram <= LOAD_MAX):
        check_load(ram, "ram")
    # oldest_accepted(now), inlined: this runs once per received sample
    if not (type(ts) in _NUMBER_TYPES and (now // _HOUR - _OLDEST_HOUR) * _HOUR <= ts <= now + MAX_FUTURE_SECONDS):
        check_timestamp(ts, now)
    if not (type(seq) is int and 0 <= seq <= MAX_SEQ):
        check_seq(seq)
    if known_ips is None or known_ips(name) != ips:
        check_ips(ips)
    return Sample(name, ts, cpu, ram, seq, ips)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", list: "list", dict: "map", bytes: "bytes"}.get(
        type(value), type(value).__name__
    )
