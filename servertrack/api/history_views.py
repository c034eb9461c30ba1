"""JSON shapes of the range queries (``?from=&to=``), built in one pass from what the history reader answers.

Pure: no Tornado, no I/O. Buckets have the windows' shape (``views.window_buckets``), written
straight from the arrays (``window_json.bucket_list``);
``from`` and ``to`` of a bucket answer are the starts of its first and last
bucket, and ``kept_from`` is present only when the range reaches back before
the history kept (see ``store.interface.RangeAnswer``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from ..common.buckets import iso_utc
from ..common.time_range import BucketPlan
from .node_views import load_summary
from .window_json import bucket_list

if TYPE_CHECKING:
    from ..store.interface import RangeAnswer


def _range_fields(plan: BucketPlan, answer: RangeAnswer | None) -> dict[str, Any]:
    """``from`` and ``to`` (the starts of the first and last bucket), and ``kept_from`` if the answer has it."""
    fields: dict[str, Any] = {"from": iso_utc(plan.first_start), "to": iso_utc(plan.last_start)}
    if answer is not None and answer.kept_from is not None:
        fields["kept_from"] = iso_utc(answer.kept_from)
    return fields


def range_loads(name: str, plan: BucketPlan, answer: RangeAnswer) -> dict[str, Any]:
    """The body of ``GET /servers/{name}/loads?from=&to=&step=``:
    ``{"server", "step", "from", "to", "buckets": [...], "kept_from"?}``, the buckets already JSON (an
    ``orjson.Fragment``, the text of ``views.window_buckets``)."""
    body: dict[str, Any] = {"server": name, "step": plan.step}
    body.update(_range_fields(plan, answer))
    body["buckets"] = orjson.Fragment(bucket_list(answer.window))
    return body


def _figures(plan: BucketPlan, answer: RangeAnswer | None) -> dict[str, Any]:
    """``samples`` and the sample-weighted ``cpu``/``ram`` figures over every bucket of the answer."""
    summary = load_summary("", plan.step, None if answer is None else answer.window, None)
    return {"samples": summary["samples"], "cpu": summary["cpu"], "ram": summary["ram"]}


def range_summary(name: str, plan: BucketPlan, answer: RangeAnswer | None) -> dict[str, Any]:
    """The body of ``GET /servers/{name}/summary?from=&to=``: ``{"server", "from", "to", "step", "samples",
    "cpu": {"avg", "min", "max"}, "ram": {...}, "kept_from"?}``, loads null without samples; ``step`` says
    which buckets were added up (their edges are the summary's)."""
    body: dict[str, Any] = {"server": name}
    body.update(_range_fields(plan, answer))
    body["step"] = plan.step
    body.update(_figures(plan, answer))
    return body


def node_range_summary(name: str, plan: BucketPlan, answer: RangeAnswer | None, uptime: int | None) -> dict[str, Any]:
    """The body of ``GET /nodes/{id}/summary?from=&to=``: the server summary's fields under the node's
    ``name``, and ``uptime_seconds`` as in the window form."""
    body: dict[str, Any] = {"name": name}
    body.update(_range_fields(plan, answer))
    body["step"] = plan.step
    body.update(_figures(plan, answer))
    body["uptime_seconds"] = uptime
    return body


def history_key(ts: int) -> str:
    """A snapshot's key in a node history: ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def section_history(snapshots: list[tuple[int, dict[str, Any]]], section: str) -> dict[str, Any]:
    """The body of ``GET /nodes/{id}/cpu?from=&to=`` (or ``/memory``): ``{"YYYY-MM-DD HH:MM:SS": {that
    section}, ...}`` in the order given (oldest first); a snapshot without the section is left out."""
    history: dict[str, Any] = {}
    for ts, sections in snapshots:
        value = sections.get(section)
        if value is not None:
            history[history_key(ts)] = value
    return history
