"""A small declarative validator for the structured messages (node hello and stats snapshots).

A spec checks a decoded JSON/msgpack value: only known keys are kept, numbers
must be ``int``/``float`` (never ``bool``) and every size is bounded.
Anything else raises ``InvalidSample('bad_field')`` naming the path of the
offending value, e.g. ``stats.processes.top_cpu[3].pid``.

Validation is on the collector's hot path (thousands of snapshots a second),
so a valid value is returned as it is, without a copy: a new container is
built only where unknown keys have to be dropped, and the path of a value is
only spelled out when it is wrong.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from .errors import InvalidSample

_NUMBER_TYPES = (int, float)


class _Refusal(Exception):
    """Raised inside a check; containers add their key on the way out to build the path."""

    def __init__(self, problem: str, reason: str = "bad_field") -> None:
        super().__init__(problem)
        self.problem = problem
        self.reason = reason
        self.parts: list[str] = []


class Spec:
    """A rule for one value."""

    optional = False

    def check(self, value: Any, path: str) -> Any:
        """``value`` (found at ``path``) if valid, cleaned of unknown keys; else raise ``InvalidSample``."""
        try:
            return self.clean(value)
        except _Refusal as refusal:
            where = path + "".join(reversed(refusal.parts))
            where = where.lstrip(".")
            if refusal.reason == "missing_field":
                raise InvalidSample("missing_field", f"{where}: missing", where) from None
            raise InvalidSample(refusal.reason, f"{where}: {refusal.problem}", where) from None

    def clean(self, value: Any) -> Any:
        """Validate ``value``; raise ``_Refusal`` (internal) if it is wrong."""
        raise NotImplementedError


class Number(Spec):
    """A finite number (an integer if ``integer``) within [low, high]; None allowed if ``optional``."""

    def __init__(self, low: float | None = 0.0, high: float | None = None, *, integer: bool = False,
                 optional: bool = False) -> None:
        self.low, self.high, self.integer, self.optional = low, high, integer, optional

    def clean(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if self.integer:
            if type(value) is not int:
                raise _Refusal("must be an integer")
        elif type(value) not in _NUMBER_TYPES or (type(value) is float and not math.isfinite(value)):
            raise _Refusal("must be a finite number")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise _Refusal(f"must be between {self.low} and {self.high}, got {value!r}")
        return value


class Text(Spec):
    """A printable string of at most ``max_length`` bytes of UTF-8; None allowed if ``optional``.

    Bytes, not characters, so the bounds of a message hold on the wire too.
    Printable as ``str.isprintable`` means it: no control characters (ESC, CR,
    LF, NUL...), no format or separator characters, so remote text cannot
    forge lines or drive a terminal that prints it.
    """

    def __init__(self, max_length: int = 256, *, optional: bool = False) -> None:
        self.max_length, self.optional = max_length, optional

    def clean(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if type(value) is not str:
            raise _Refusal("must be a string")
        if len(value) > self.max_length or (not value.isascii() and len(value.encode()) > self.max_length):
            raise _Refusal(f"is longer than {self.max_length} bytes")
        if not value.isprintable():
            raise _Refusal("holds a control or other unprintable character")
        return value


class ListOf(Spec):
    """A list of at most ``max_items`` values matching ``item`` (``exactly`` fixes the length)."""

    def __init__(self, item: Spec, max_items: int, *, exactly: int | None = None, optional: bool = False) -> None:
        self.item, self.max_items, self.exactly, self.optional = item, max_items, exactly, optional

    def clean(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if type(value) is not list:
            raise _Refusal("must be a list")
        if self.exactly is not None and len(value) != self.exactly:
            raise _Refusal(f"must have exactly {self.exactly} items")
        if len(value) > self.max_items:
            raise _Refusal(f"has more than {self.max_items} items")
        clean = self.item.clean
        index = 0
        try:
            cleaned = None
            for index, entry in enumerate(value):
                kept = clean(entry)
                if kept is not entry:
                    if cleaned is None:
                        cleaned = value[:index]
                if cleaned is not None:
                    cleaned.append(kept)
        except _Refusal as refusal:
            refusal.parts.append(f"[{index}]")
            raise
        return value if cleaned is None else cleaned


class Record(Spec):
    """A map with these keys (all required unless their spec is optional); unknown keys are dropped."""

    def __init__(self, fields: dict[str, Spec], *, optional: bool = False) -> None:
        self.fields, self.optional = fields, optional
        self._plan = [(key, spec, *_fast_check(spec)) for key, spec in fields.items()]

    def clean(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if type(value) is not dict:
            raise _Refusal("must be an object")
        # Only a value with extra keys, a missing optional key or a cleaned child needs a copy.
        changed = len(value) != len(self.fields)
        replaced: dict[str, Any] = {}
        key = ""
        try:
            for key, spec, kind, low, high in self._plan:
                if key not in value:
                    if not spec.optional:
                        raise _Refusal("missing", "missing_field")
                    replaced[key] = None
                    continue
                entry = value[key]
                # Inline checks for the common leaf values; anything else (or a failure) goes
                # through the spec itself, which gives the verdict and the message.
                kind_of_entry = type(entry)
                if kind == _FLOAT:
                    if (kind_of_entry is float or kind_of_entry is int) and low <= entry <= high:
                        continue
                elif kind == _INTEGER:
                    if kind_of_entry is int and low <= entry <= high:
                        continue
                elif kind == _TEXT:
                    if kind_of_entry is str and len(entry) <= high and entry.isascii() and entry.isprintable():
                        continue
                kept = spec.clean(entry)
                if kept is not entry:
                    replaced[key] = kept
        except _Refusal as refusal:
            refusal.parts.append(f".{key}")
            raise
        if not changed and not replaced:
            return value
        return {key: replaced[key] if key in replaced else value[key] for key in self.fields}


_OTHER, _FLOAT, _INTEGER, _TEXT = range(4)


def _fast_check(spec: Spec) -> tuple[int, float, float]:
    """How ``Record.clean`` may check a leaf inline: (kind, low, high)."""
    if isinstance(spec, Number):
        # bounds that also refuse NaN and infinities: every comparison with NaN is false
        low = -sys.float_info.max if spec.low is None else spec.low
        high = sys.float_info.max if spec.high is None else spec.high
        return (_INTEGER if spec.integer else _FLOAT), low, high
    if isinstance(spec, Text):
        return _TEXT, 0, spec.max_length
    return _OTHER, 0, 0
