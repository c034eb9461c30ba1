"""``servertrack show``: fetch a server's windows over HTTP and print them for a terminal."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from .common.errors import ServerTrackError

REQUEST_TIMEOUT_SECONDS = 5.0
BAR_WIDTH = 20


class ApiUnreachable(ServerTrackError):
    """The API at the given URL did not answer."""


def fetch_loads(base_url: str, name: str) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of ``GET /servers/{name}/loads``; raise ``ApiUnreachable`` if no answer."""
    url = f"{base_url.rstrip('/')}/servers/{urllib.parse.quote(name)}/loads"
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            body = json.load(error)
        except ValueError:
            body = {"error": error.reason}
        return error.code, body
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ApiUnreachable(f"cannot reach {base_url}: {reason}") from None


def _bar(percent: float) -> str:
    filled = round(percent / 100 * BAR_WIDTH)
    return "#" * filled + "." * (BAR_WIDTH - filled)


def _row(label: str, bucket: dict[str, Any]) -> str:
    if not bucket["samples"]:
        return f"  {label:<16} {0:>7}  {'-':>6} {'-':>6} {'-':>6}   {'-':>6} {'-':>6} {'-':>6}"
    cpu, ram = bucket["cpu"], bucket["ram"]
    return (
        f"  {label:<16} {bucket['samples']:>7}  {cpu['avg']:6.1f} {cpu['min']:6.1f} {cpu['max']:6.1f}"
        f"   {ram['avg']:6.1f} {ram['min']:6.1f} {ram['max']:6.1f}  cpu {_bar(cpu['avg'])}"
    )


def render_loads(body: dict[str, Any]) -> str:
    """The windows of one server as a readable table (UTC times, newest last)."""
    header = f"  {'start (UTC)':<16} {'samples':>7}  {'cpu':>6} {'min':>6} {'max':>6}   {'ram':>6} {'min':>6} {'max':>6}"
    lines = [f"{body['server']}  (last seen {body.get('last_seen', '?')})", "", "Last 60 minutes", header]
    lines += [_row(bucket["start"][11:16], bucket) for bucket in body["minutes"]]
    lines += ["", "Last 24 hours", header]
    lines += [_row(bucket["start"][:16].replace("T", " "), bucket) for bucket in body["hours"]]
    return "\n".join(lines) + "\n"


def show_server(base_url: str, name: str, out: TextIO) -> int:
    """Print server ``name``'s windows; return the exit code (1 if the API refused)."""
    status, body = fetch_loads(base_url, name)
    if status != 200:
        out.write(f"servertrack: {body.get('error', 'HTTP ' + str(status))}\n")
        return 1
    out.write(render_loads(body))
    return 0
