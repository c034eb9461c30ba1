"""The fast path of a ``POST /loads`` body: decoded and checked in C by a declared schema.

A body is a JSON list of at most ``MAX_BATCH_ITEMS`` samples
``{"server": name, "cpu": load, "ram": load, "ts": epoch seconds}`` (``ts``
optional: the receive time). ``LoadItem`` is such a sample exactly (no unknown
keys; loads within [0, 100]; ``ts`` a number when present), decoded by
msgspec's JSON decoder in one C call: ~0.4 µs a sample with the Python checks
left (names, the ``ts`` window), against ~1.3 µs for ``orjson.loads`` and the
general checks. Whatever it does not accept (any invalid item, an unknown key,
a ``ts`` of null, a body that is not such a list) goes to the handler's general
path, which decides exactly as before and answers the same status and message:
the fast path only accepts bodies the general path accepts, with the same
values (a JSON integer load is the same float either way, ``-0`` included).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..common.errors import InvalidSample
from ..common.protocol import (
    LOAD_MAX,
    LOAD_MIN,
    MAX_FUTURE_SECONDS,
    NameCache,
    oldest_accepted,
)

MAX_BATCH_ITEMS = 10_000

Load = Annotated[float, msgspec.Meta(ge=LOAD_MIN, le=LOAD_MAX)]


class LoadItem(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One sample of a ``POST /loads`` body as clients send it."""

    server: str
    cpu: Load
    ram: Load
    ts: float | msgspec.UnsetType = msgspec.UNSET  # absent: the receive time


_decode = msgspec.json.Decoder(Annotated[list[LoadItem], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]).decode
BODY_REFUSED = (msgspec.ValidationError, msgspec.DecodeError)
Columns = tuple[list[str], list[float], list[float], list[float]]


def load_columns(body: bytes, now: float, names: NameCache) -> Columns | None:
    """The samples of ``body`` received at ``now`` as columns (canonical names, ts, cpu, ram) when every
    one is valid and plain; None when the general path must decide (it may still be valid). Never raises."""
    try:
        items = _decode(body)
    except BODY_REFUSED:
        return None
    if not items:
        return [], [], [], []
    try:
        servers = [names.canonical(item.server) for item in items]
    except InvalidSample:
        return None
    stamps = [now if item.ts is msgspec.UNSET else item.ts for item in items]
    if min(stamps) < oldest_accepted(now) or max(stamps) > now + MAX_FUTURE_SECONDS:  # type: ignore[type-var]
        return None
    return servers, stamps, [item.cpu for item in items], [item.ram for item in items]  # type: ignore[return-value]
