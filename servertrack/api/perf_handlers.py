"""Handlers of the earlier monitors' load APIs, served from the same aggregator and batch as ``/servers``.

- ``/perf/{hostname}/`` (the "threaded REST" monitor): ``POST`` a form
  ``cpuload=..&memload=..``; ``GET /perf/{hostname}/{mode}`` lists the
  ``last_minute`` (seconds), ``last_hour`` (minutes) or ``last_day`` (hours).
- ``/server/{name}`` (the Tornado monitor): ``POST`` ``{"cpu", "ram"}`` as
  JSON; ``GET`` the minute and hour averages.

A sample is stamped with its receive time and queued like any other
(``handlers.queue_sample``); every error is a JSON body.
"""

from __future__ import annotations

import re
import urllib.parse

from ..common.errors import InvalidSample
from ..common.protocol import check_load
from ..common.text import ascii_escaped
from .handlers import ApiError, LoadsHandler, ServerLoadsHandler, queue_sample
from .perf_views import PERF_MODES, perf_window, server_history

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
PERF_FIELDS = ("cpuload", "memload")
MAX_FORM_FIELDS = 16
MAX_NUMBER_LENGTH = 64
MAX_FORM_BYTES = 4096  # a form of two numbers is well under this; the JSON APIs allow 1 MiB
_DECIMAL_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def form_loads(body: bytes) -> tuple[float, float]:
    """``(cpuload, memload)`` from a form body, or ``InvalidSample`` naming the field at fault.

    Each field must be given once, as a decimal number from 0 to 100; other
    fields are ignored.
    """
    try:
        pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict",
                                       max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise InvalidSample("bad_form", "form body must be ASCII, with other characters percent-encoded") from None
    except ValueError:
        raise InvalidSample("bad_form", f"form body has more than {MAX_FORM_FIELDS} fields") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in PERF_FIELDS:
            if key in values:
                raise InvalidSample("bad_form", f"{key} is given more than once", key)
            values[key] = value
    loads = []
    for key in PERF_FIELDS:
        if key not in values:
            raise InvalidSample("missing_field", f"missing field {key!r}: post cpuload=..&memload=..", key)
        text = values[key]
        if len(text) > MAX_NUMBER_LENGTH or _DECIMAL_NUMBER.fullmatch(text) is None:
            shown = ascii_escaped(text, MAX_NUMBER_LENGTH)
            raise InvalidSample("bad_type", f"{key} must be a number from 0 to 100, got {shown!r}", key)
        loads.append(check_load(float(text), key))
    return loads[0], loads[1]


class PerfHandler(LoadsHandler):
    """``POST /perf/{hostname}/``: one sample as a form; ``GET`` without a mode names the modes."""

    body_media_type = FORM_MEDIA_TYPE

    def get(self, raw_name: str) -> None:
        self.known_windows(raw_name, "host")
        raise ApiError(404, f"name a mode: /perf/{{hostname}}/{{{'|'.join(PERF_MODES)}}}")

    def post(self, raw_name: str) -> None:
        name = self.canonical_name(self.names, raw_name)
        if self.received_bytes > MAX_FORM_BYTES:
            raise ApiError(413, f"form body exceeds {MAX_FORM_BYTES} bytes", "too_large")
        try:
            cpu, ram = form_loads(b"".join(self.chunks))
        except InvalidSample as invalid:
            raise ApiError(400, invalid.message, invalid.reason) from None
        queue_sample(self.batch, self.stats, name, self.clock(), cpu, ram)
        self.write_json(202, {"accepted": 1})


class PerfWindowHandler(LoadsHandler):
    """``GET /perf/{hostname}/{mode}``: 60 seconds, 60 minutes or 24 hours of averages, oldest first."""

    MESSAGE_KINDS: dict[str, str] = {}  # read-only: a POST here is a 405, not a refused sample

    def get(self, raw_name: str, mode: str) -> None:
        if mode not in PERF_MODES:
            raise ApiError(404, f"unknown mode {ascii_escaped(mode, 64)!r}: use one of {', '.join(PERF_MODES)}")
        self.write_json(200, perf_window(self.known_windows(raw_name, "host"), mode))


class ServerHistoryHandler(ServerLoadsHandler):
    """``POST /server/{name}`` with ``{"cpu", "ram"}``; ``GET`` its minute and hour averages."""

    def get(self, raw_name: str) -> None:
        self.write_json(200, server_history(self.known_windows(raw_name)))
