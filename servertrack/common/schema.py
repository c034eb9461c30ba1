"""A small declarative validator for the structured messages (node hello and stats snapshots).

A spec checks a decoded JSON/msgpack value and returns a cleaned copy: only
known keys, numbers as ``int``/``float`` (never ``bool``), every size
bounded. Anything else raises ``InvalidSample('bad_field')`` naming the path
of the offending value, e.g. ``stats.processes.top_cpu[3].pid``.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidSample

_NUMBER_TYPES = (int, float)


def _refuse(path: str, problem: str) -> InvalidSample:
    return InvalidSample("bad_field", f"{path}: {problem}", path)


class Spec:
    """A rule for one value; ``check`` returns the cleaned value or raises ``InvalidSample``."""

    optional = False

    def check(self, value: Any, path: str) -> Any:
        """Validate ``value`` found at ``path``."""
        raise NotImplementedError


class Number(Spec):
    """A finite number (an integer if ``integer``) within [low, high]; None allowed if ``optional``."""

    def __init__(self, low: float | None = 0.0, high: float | None = None, *, integer: bool = False,
                 optional: bool = False) -> None:
        self.low, self.high, self.integer, self.optional = low, high, integer, optional

    def check(self, value: Any, path: str) -> Any:
        if value is None and self.optional:
            return None
        if self.integer:
            if type(value) is not int:
                raise _refuse(path, "must be an integer")
        elif type(value) not in _NUMBER_TYPES or not math.isfinite(value):
            raise _refuse(path, "must be a finite number")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise _refuse(path, f"must be between {self.low} and {self.high}, got {value!r}")
        return value if self.integer else float(value)


class Text(Spec):
    """A string of at most ``max_length`` characters; None allowed if ``optional``."""

    def __init__(self, max_length: int = 256, *, optional: bool = False) -> None:
        self.max_length, self.optional = max_length, optional

    def check(self, value: Any, path: str) -> Any:
        if value is None and self.optional:
            return None
        if type(value) is not str:
            raise _refuse(path, "must be a string")
        if len(value) > self.max_length:
            raise _refuse(path, f"is longer than {self.max_length} characters")
        return value


class ListOf(Spec):
    """A list of at most ``max_items`` values matching ``item`` (``exactly`` fixes the length)."""

    def __init__(self, item: Spec, max_items: int, *, exactly: int | None = None, optional: bool = False) -> None:
        self.item, self.max_items, self.exactly, self.optional = item, max_items, exactly, optional

    def check(self, value: Any, path: str) -> Any:
        if value is None and self.optional:
            return None
        if type(value) is not list:
            raise _refuse(path, "must be a list")
        if self.exactly is not None and len(value) != self.exactly:
            raise _refuse(path, f"must have exactly {self.exactly} items")
        if len(value) > self.max_items:
            raise _refuse(path, f"has more than {self.max_items} items")
        item = self.item
        return [item.check(entry, f"{path}[{index}]") for index, entry in enumerate(value)]


class Record(Spec):
    """A map with these keys (all required unless their spec is optional); unknown keys are dropped."""

    def __init__(self, fields: dict[str, Spec], *, optional: bool = False) -> None:
        self.fields, self.optional = fields, optional

    def check(self, value: Any, path: str) -> Any:
        if value is None and self.optional:
            return None
        if type(value) is not dict:
            raise _refuse(path, "must be an object")
        cleaned: dict[str, Any] = {}
        for key, spec in self.fields.items():
            where = f"{path}.{key}" if path else key
            if key not in value:
                if spec.optional:
                    cleaned[key] = None
                    continue
                raise InvalidSample("missing_field", f"{where}: missing", where)
            cleaned[key] = spec.check(value[key], where)
        return cleaned
