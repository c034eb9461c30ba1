"""Per-second rates from cumulative counters (disk I/O, network): pure logic, no psutil.

Counters such as "bytes received" only grow; a rate is the growth between two
readings divided by the time between them. Two things make a counter go down:

- a **wrap**: a fixed-width counter (32- or 64-bit) passed its limit and
  started again from zero. Recognised when the previous value was close to
  the limit and the wrapped delta (``limit - previous + current``) is small
  (at most a quarter of the limit); the limit is ``2**32`` when the previous
  value fits in 32 bits, else ``2**64``.
- a **reset**: the counter's owner was re-created (an interface removed and
  added again, a driver reloaded, the node rebooted). What happened between
  the two readings is unknown, so the rate is ``0.0`` for that interval
  rather than a guess; the next interval is measured from the new value.

A key (an interface, a disk) seen for the first time has no previous reading:
``CounterRates.update`` reports ``None`` for it, and the caller chooses what
that means (zero rates for a new interface, no disk I/O figure at all on the
first snapshot). Keys absent from a reading are forgotten, so the state never
outgrows the current set of keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

WRAP_32 = 2**32
WRAP_64 = 2**64
# A decrease counts as a wrap only if the wrapped delta is at most limit // _WRAP_WINDOW:
# a quarter of the range (1 GiB of a 32-bit byte counter) is far more than one sampling
# interval moves on a link that still uses 32-bit counters, and a reset of a large
# counter almost never lands that close to the limit.
_WRAP_WINDOW = 4

Counters = Mapping[str, int]
Rates = dict[str, float]


def counter_delta(previous: int, current: int) -> int | None:
    """How much a counter grew from ``previous`` to ``current``; ``None`` for a reset.

    A decrease is a 32-bit or 64-bit wrap when the wrapped delta is small (see the
    module docstring), otherwise a reset. Never negative.
    """
    if current >= previous:
        return current - previous
    if current < 0 or previous < 0:
        return None
    limit = WRAP_32 if previous < WRAP_32 else WRAP_64
    if previous >= limit:
        return None
    wrapped = limit - previous + current
    return wrapped if wrapped <= limit // _WRAP_WINDOW else None


MIN_INTERVAL_SECONDS = 1e-6


def counter_rates(previous: Counters, current: Counters, elapsed: float) -> Rates:
    """Per-second rate of every counter in ``current`` since ``previous``, ``elapsed`` seconds earlier.

    A counter missing from ``previous``, a reset, or an ``elapsed`` that is not a
    real interval (under a microsecond, or not finite: a rate over it would be
    meaningless or infinite) gives ``0.0``. Rates are never negative.
    """
    valid_interval = MIN_INTERVAL_SECONDS <= elapsed and math.isfinite(elapsed)
    rates: Rates = {}
    for name, value in current.items():
        before = previous.get(name)
        delta = counter_delta(before, value) if before is not None and valid_interval else None
        rates[name] = delta / elapsed if delta is not None else 0.0
    return rates


class CounterRates:
    """Remembers the last reading of every key and turns each new reading into per-second rates.

    >>> rates = CounterRates()
    >>> rates.update(10.0, {"eth0": {"rx": 1000}})
    {'eth0': None}
    >>> rates.update(12.0, {"eth0": {"rx": 5000}})
    {'eth0': {'rx': 2000.0}}
    """

    def __init__(self) -> None:
        self._previous: dict[str, tuple[float, dict[str, int]]] = {}

    def update(self, timestamp: float, readings: Mapping[str, Counters]) -> dict[str, Rates | None]:
        """Feed one reading of every current key at ``timestamp``; rates since each key's previous reading.

        A key seen for the first time maps to ``None`` (no previous reading). Keys
        not in ``readings`` are forgotten; a key that comes back later is new again.
        """
        result: dict[str, Rates | None] = {}
        state: dict[str, tuple[float, dict[str, int]]] = {}
        for key, counters in readings.items():
            known = self._previous.get(key)
            if known is None:
                result[key] = None
            else:
                then, before = known
                result[key] = counter_rates(before, counters, timestamp - then)
            state[key] = (timestamp, dict(counters))
        self._previous = state
        return result

    def keys(self) -> frozenset[str]:
        """The keys whose last reading is remembered (those of the latest ``update``)."""
        return frozenset(self._previous)

    def clear(self) -> None:
        """Forget every reading: the next ``update`` sees every key for the first time."""
        self._previous = {}
