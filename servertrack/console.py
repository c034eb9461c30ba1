"""The API's client commands: ``servertrack show`` (a server's windows), ``nodes`` (the node
inventory), ``node`` (one node's summary and latest stats) and ``pause`` / ``resume``, fetched over
HTTP and printed for a terminal. Fetching goes through ``servertrack.client`` (its paths, its
requests and errors), in ``fetch_json`` for reads; everything printed comes from pure ``render_*``
functions.

Every string from the API is hostile until shown otherwise: each value printed goes through
``_text`` (or ``_table``, which does the same for every cell), so a control character in it is
printed as a visible escape (``\\x1b``) instead of reaching the terminal. Only the colour codes
of ``_paint_state`` and the renderer's own line breaks are written raw.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TextIO

from .client import (
    ClientError,
    ServerTrackClient,
    ServerUnreachable,
    Trust,
    node_path,
    node_section_path,
    nodes_path,
    server_loads_path,
    summary_path,
)
from .common.errors import ServerTrackError
from .common.text import escape_unprintable
from .sparklines import Glyphs, sparkline

REQUEST_TIMEOUT_SECONDS = 5.0
BAR_WIDTH = 20
TOP_PROCESSES_SHOWN = 10
PER_CPU_SHOWN = 32
COMMAND_WIDTH = 60
NODE_SECTIONS = ("cpu", "memory", "disks", "network", "processes")
_STATE_COLOURS = {"online": "32", "paused": "36", "stale": "33", "offline": "31"}  # ANSI green, cyan, yellow, red


class ApiUnreachable(ServerTrackError):
    """The API at the given URL did not answer."""


NO_TRUST = Trust()
# Said after the API's own message when it answers 401.
TOKEN_HINT = "(pass --token FILE, or set SERVERTRACK_TOKEN to the token)"


def fetch_json(base_url: str, path: str, trust: Trust = NO_TRUST) -> tuple[int, Any]:
    """``(status, body)`` of ``GET {base_url}{path}`` (``path`` already URL-quoted), sent with ``trust``'s
    token and CA.

    An HTTP error status is returned with its JSON body (or ``{"error": reason}``);
    raise ``ApiUnreachable`` if there is no HTTP answer at all, or no JSON one.
    """
    client = ServerTrackClient.trusting(base_url, trust, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        return client.request("GET", path)
    except ServerUnreachable as error:
        # the reason can quote the server (a TLS certificate's names, say): escaped like its answers
        raise ApiUnreachable(f"cannot reach {base_url}: {escape_unprintable(error.reason)}") from None
    except ClientError as error:
        if error.status is None or error.status < 400:  # an answer, but not JSON
            raise ApiUnreachable(f"cannot reach {base_url}: {escape_unprintable(error.message)}") from None
        return error.status, error.body if error.body is not None else {"error": error.message}


def _error_message(status: int, body: Any) -> str:
    """The API's ``{"error": ...}`` message (escaped), or the bare status; how to send a token after a 401."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = _text(body["error"])
    else:
        message = f"HTTP {status}"
    return _hinted(status, message)


def _hinted(status: int | None, message: str) -> str:
    """``message``, followed after a 401 by how to send a token."""
    return f"{message} {TOKEN_HINT}" if status == 401 else message


def _bar(percent: float) -> str:
    filled = round(percent / 100 * BAR_WIDTH)
    return "#" * filled + "." * (BAR_WIDTH - filled)


def _row(label: str, bucket: dict[str, Any]) -> str:
    label = _text(label)
    if not bucket["samples"]:
        return f"  {label:<16} {0:>7}  {'-':>6} {'-':>6} {'-':>6}   {'-':>6} {'-':>6} {'-':>6}"
    cpu, ram = bucket["cpu"], bucket["ram"]
    return (
        f"  {label:<16} {_text(bucket['samples']):>7}  {cpu['avg']:6.1f} {cpu['min']:6.1f} {cpu['max']:6.1f}"
        f"   {ram['avg']:6.1f} {ram['min']:6.1f} {ram['max']:6.1f}  cpu {_bar(cpu['avg'])}"
    )


def _window_figures(buckets: Sequence[dict[str, Any]], key: str) -> str:
    """``now`` (the newest bucket with samples), min, sample-weighted avg and max of ``key`` over ``buckets``."""
    full = [bucket for bucket in buckets if bucket["samples"] and bucket.get(key) is not None]
    if not full:
        return "no samples"
    samples = sum(bucket["samples"] for bucket in full)
    average = sum(bucket[key]["avg"] * bucket["samples"] for bucket in full) / samples
    low = min(bucket[key]["min"] for bucket in full)
    high = max(bucket[key]["max"] for bucket in full)
    return f"now {full[-1][key]['avg']:5.1f}  min {low:5.1f}  avg {average:5.1f}  max {high:5.1f}"


def _spark_lines(title: str, buckets: Sequence[dict[str, Any]], glyphs: Glyphs) -> list[str]:
    """A window's cpu and ram as sparklines (a gap for a bucket without samples), with their figures."""
    lines = [title]
    for key in ("cpu", "ram"):
        values = [bucket[key]["avg"] if bucket["samples"] and bucket.get(key) is not None else None
                  for bucket in buckets]
        lines.append(f"  {key}  |{sparkline(values, glyphs)}|  {_window_figures(buckets, key)}")
    return lines


def render_loads(body: dict[str, Any], glyphs: Glyphs | None = None) -> str:
    """The windows of one server as a readable table (UTC times, newest last), after their sparklines
    (cpu and ram on a 0-100 scale, one character a bucket) when ``glyphs`` says how to draw them."""
    header = f"  {'start (UTC)':<16} {'samples':>7}  {'cpu':>6} {'min':>6} {'max':>6}   {'ram':>6} {'min':>6} {'max':>6}"
    lines = [f"{_text(body['server'])}  (last seen {_text(body.get('last_seen', '?'))})", ""]
    if glyphs is not None:
        lines += _spark_lines("Last 60 minutes, a character a minute (0-100 %, ' ' no samples)", body["minutes"],
                              glyphs)
        lines += _spark_lines("Last 24 hours, a character an hour", body["hours"], glyphs)
        lines.append("")
    lines += ["Last 60 minutes", header]
    lines += [_row(bucket["start"][11:16], bucket) for bucket in body["minutes"]]
    lines += ["", "Last 24 hours", header]
    lines += [_row(bucket["start"][:16].replace("T", " "), bucket) for bucket in body["hours"]]
    return "\n".join(lines) + "\n"


def show_server(base_url: str, name: str, out: TextIO, trust: Trust = NO_TRUST, glyphs: Glyphs | None = None,
                as_json: bool = False, err: TextIO | None = None) -> int:
    """Print server ``name``'s windows (with sparklines drawn in ``glyphs`` if given), or with ``as_json``
    the API's answer as one JSON document (ASCII, for scripts); return the exit code (1 if the API
    refused: its message on ``err`` with ``as_json``, else on ``out``)."""
    status, body = fetch_json(base_url, server_loads_path(name), trust)
    if status != 200:
        (err if as_json and err is not None else out).write(f"servertrack: {_error_message(status, body)}\n")
        return 1
    if as_json:
        out.write(json.dumps(body, ensure_ascii=True) + "\n")  # escapes every control character too
        return 0
    out.write(render_loads(body, glyphs))
    return 0


# -- servertrack nodes / node -------------------------------------------------------


def wants_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour only a terminal, and only if ``NO_COLOR`` is unset or empty (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) and not environ.get("NO_COLOR")


def _paint_state(state: str, colour: bool) -> str:
    code = _STATE_COLOURS.get(state)
    return f"\x1b[{code}m{state}\x1b[0m" if colour and code is not None else state


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    paint: Callable[[int, str], str] | None = None,
) -> list[str]:
    """Aligned columns, two spaces apart; ``paint(column, cell)`` may decorate a cell (padding is
    computed on the plain text, so ANSI codes do not break the alignment). Every cell is escaped
    (``_text``) before it is measured and painted."""
    shown_header = [_text(cell) for cell in header]
    shown_rows = [[_text(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(shown_header, *shown_rows)]

    def line(cells: Sequence[str], painted: bool) -> str:
        parts = []
        for index, (cell, width) in enumerate(zip(cells, widths)):
            padding = " " * (width - len(cell))
            shown = paint(index, cell) if painted and paint is not None else cell
            parts.append(padding + shown if index in right else shown + padding)
        return "  ".join(parts).rstrip()

    return [line(shown_header, False)] + [line(row, True) for row in shown_rows]


def _text(value: Any) -> str:
    """``value`` as text to print: ``-`` for None, else ``str(value)`` with every non-printable
    character escaped (the one place remote text is made safe for a terminal)."""
    return "-" if value is None else escape_unprintable(str(value))


def _size(value: Any) -> str:
    """Bytes for a human: ``512 B``, ``1.5 KiB``, ``16.0 GiB``."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(amount) < 1024 or unit == "PiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _duration(seconds: Any) -> str:
    """``3d 04:05:06`` or ``04:05:06``."""
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def render_nodes(body: dict[str, Any], colour: bool = False) -> str:
    """The node inventory (``GET /nodes``) as a table; states coloured if ``colour``."""
    nodes = body["nodes"]
    if not nodes:
        return "no nodes\n"
    rows = [  # every cell is escaped by _table
        [node["name"], node["state"], node["last_seen"], _text(node.get("hostname")), ", ".join(node["ips"]) or "-"]
        for node in nodes
    ]
    lines = _table(["NAME", "STATE", "LAST SEEN (UTC)", "HOSTNAME", "IPS"], rows,
                   paint=lambda column, cell: _paint_state(cell, colour) if column == 1 else cell)
    return "\n".join(lines) + "\n"


def _load_line(loads: dict[str, Any] | None) -> str:
    if loads is None or not loads["samples"]:
        return "no samples"
    cpu, ram = loads["cpu"], loads["ram"]
    count = loads["samples"]
    return (f"{_text(count)} sample{'' if count == 1 else 's'},"
            f" cpu avg {cpu['avg']:.1f} % (min {cpu['min']:.1f}, max {cpu['max']:.1f}),"
            f" ram avg {ram['avg']:.1f} % (min {ram['min']:.1f}, max {ram['max']:.1f})")


def _node_lines(node: dict[str, Any], loads: dict[str, Any] | None, colour: bool) -> list[str]:
    system = node.get("os")
    if system is not None and node.get("platform"):
        system = f"{system} ({node['platform']})"
    cpus = node.get("cpu_count")
    hardware = f"{_text(cpus)} CPU{'' if cpus == 1 else 's'}, {_size(node.get('memory_total'))} memory"
    interval = node.get("interval")
    agent = _text(node.get("agent_version")) + ("" if interval is None else f", every {interval:g} s")
    window = _text(loads["window"]) if loads is not None else "1h"
    return [
        f"{_text(node['name'])}  {_paint_state(_text(node['state']), colour)}  (last seen {_text(node['last_seen'])})",
        f"  {'hostname':<13}{_text(node.get('hostname'))}",
        f"  {'addresses':<13}{_text(', '.join(node.get('ips') or []) or '-')}",
        f"  {'system':<13}{_text(system)}, {hardware}",
        f"  {'agent':<13}{agent}",
        f"  {'booted':<13}{_text(node.get('boot_time'))}, up {_duration(node.get('uptime_seconds'))}",
        f"  {'loads (' + window + ')':<13}{_load_line(loads)}",
    ]


def _cpu_lines(stats: dict[str, Any]) -> list[str]:
    cpu = stats["cpu"]
    times = cpu["times_percent"]
    frequency = "" if cpu.get("freq_mhz") is None else f"  {cpu['freq_mhz']:.0f} MHz"
    per_cpu = " ".join(_percent(value) for value in cpu["per_cpu"][:PER_CPU_SHOWN])
    if len(cpu["per_cpu"]) > PER_CPU_SHOWN:
        per_cpu += f" ... ({len(cpu['per_cpu'])} CPUs)"
    memory, swap = stats["memory"], stats["swap"]
    lines = [
        f"  {'cpu':<13}{_percent(cpu['percent'])} %  user {_percent(times['user'])}  system "
        f"{_percent(times['system'])}  iowait {_percent(times['iowait'])}  idle {_percent(times['idle'])}{frequency}",
        f"  {'per cpu':<13}{per_cpu or '-'}",
        f"  {'load':<13}{' '.join(f'{value:.2f}' for value in cpu['load_avg'])}",
        f"  {'memory':<13}{_percent(memory['percent'])} %  {_size(memory['used'])} used of {_size(memory['total'])},"
        f" {_size(memory['available'])} available",
        f"  {'swap':<13}{_percent(swap['percent'])} %  {_size(swap['used'])} used of {_size(swap['total'])}",
    ]
    disk_io = stats.get("disk_io")
    if disk_io is not None:
        lines.append(
            f"  {'disk i/o':<13}read {_size(disk_io['read_bytes_per_s'])}/s ({disk_io['read_ops_per_s']:.1f} ops/s),"
            f" write {_size(disk_io['write_bytes_per_s'])}/s ({disk_io['write_ops_per_s']:.1f} ops/s)"
        )
    return lines


def _disk_lines(disks: list[dict[str, Any]]) -> list[str]:
    rows = [[disk["mountpoint"], disk["device"], disk["fstype"], _size(disk["used"]), _size(disk["total"]),
             _percent(disk["percent"])] for disk in disks]
    return ["  " + line for line in _table(["MOUNT", "DEVICE", "TYPE", "USED", "SIZE", "USE %"], rows, {3, 4, 5})]


def _network_lines(interfaces: list[dict[str, Any]]) -> list[str]:
    rows = [[nic["interface"], f"{_size(nic['rx_bytes_per_s'])}/s", f"{_size(nic['tx_bytes_per_s'])}/s",
             f"{nic['rx_packets_per_s']:.1f}", f"{nic['tx_packets_per_s']:.1f}",
             f"{nic['rx_errors']}/{nic['tx_errors']}", f"{nic['rx_drops']}/{nic['tx_drops']}"] for nic in interfaces]
    header = ["INTERFACE", "RX", "TX", "RX PKT/S", "TX PKT/S", "ERRORS RX/TX", "DROPS RX/TX"]
    return ["  " + line for line in _table(header, rows, {1, 2, 3, 4, 5, 6})]


def _process_lines(processes: list[dict[str, Any]]) -> list[str]:
    rows = []
    for process in processes[:TOP_PROCESSES_SHOWN]:
        command = _text(process["cmdline"] or process["name"])  # escaped first: the cut is on what is shown
        if len(command) > COMMAND_WIDTH:
            command = command[:COMMAND_WIDTH - 3] + "..."
        rows.append([str(process["pid"]), _text(process.get("user")), _percent(process["cpu_percent"]),
                     _percent(process["memory_percent"]), _size(process["rss"]), process["name"], command])
    header = ["PID", "USER", "CPU %", "MEM %", "RSS", "NAME", "COMMAND"]
    return ["  " + line for line in _table(header, rows, {0, 2, 3, 4})]


def render_node(
    node: dict[str, Any], stats: dict[str, Any] | None, loads: dict[str, Any] | None = None, colour: bool = False
) -> str:
    """One node for a terminal: ``node`` is ``GET /nodes/{id}``, ``loads`` its ``/summary`` (or None) and
    ``stats`` its latest snapshot (the sections of ``/cpu``, ``/memory``, ``/disks``, ``/network`` and
    ``/processes`` together), or None if it has sent none."""
    lines = _node_lines(node, loads, colour)
    if stats is None:
        return "\n".join([*lines, "", "No stats received yet."]) + "\n"
    lines += ["", f"Latest stats ({_text(node.get('stats_at') or '?')})", *_cpu_lines(stats)]
    lines += ["", "Disks", *(_disk_lines(stats["disks"]) if stats["disks"] else ["  none"])]
    lines += ["", "Network", *(_network_lines(stats["network"]) if stats["network"] else ["  none"])]
    processes = stats["processes"]
    lines += ["", f"Processes: {_text(processes['count'])} in total"]
    for title, key in (("Top by CPU", "top_cpu"), ("Top by memory", "top_memory")):
        lines += ["", title, *(_process_lines(processes[key]) if processes[key] else ["  none"])]
    return "\n".join(lines) + "\n"


def list_nodes(base_url: str, state: str | None, out: TextIO, err: TextIO, colour: bool = False,
               trust: Trust = NO_TRUST) -> int:
    """Print the node inventory (only nodes in ``state`` if given); return the exit code (1 if the API refused)."""
    status, body = fetch_json(base_url, nodes_path(state), trust)
    if status != 200:
        err.write(f"servertrack: {_error_message(status, body)}\n")
        return 1
    out.write(render_nodes(body, colour))
    return 0


def show_node(base_url: str, node_id: str, out: TextIO, err: TextIO, colour: bool = False,
              trust: Trust = NO_TRUST) -> int:
    """Print one node (by name or IP address) with its latest stats; return the exit code (1 if the API refused)."""
    status, node = fetch_json(base_url, node_path(node_id), trust)
    if status != 200:
        err.write(f"servertrack: {_error_message(status, node)}\n")
        return 1
    name = node["name"]  # by name from here on: an IP may be shared
    fetches = [("loads", summary_path(name, "1h"))]
    if node.get("stats_at") is not None:
        fetches += [(section, node_section_path(name, section)) for section in NODE_SECTIONS]
    answers: dict[str, dict[str, Any]] = {}
    for key, path in fetches:
        status, body = fetch_json(base_url, path, trust)
        if status != 200:
            err.write(f"servertrack: {_error_message(status, body)}\n")
            return 1
        answers[key] = body
    stats = snapshot_of(answers) if node.get("stats_at") is not None else None
    out.write(render_node(node, stats, answers["loads"], colour))
    return 0


def set_paused(base_url: str, node_id: str, paused: bool, out: TextIO, err: TextIO, trust: Trust = NO_TRUST) -> int:
    """Pause (or resume) one node, by name or IP address, and print ``paused NAME (state: STATE)``;
    return the exit code (1 if the API refused or could not be reached, its message on ``err``)."""
    client = ServerTrackClient.trusting(base_url, trust, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        node = client.pause(node_id) if paused else client.resume(node_id)
    except ClientError as error:
        err.write(f"servertrack: {_hinted(error.status, _text(error.message))}\n")
        return 1
    if not isinstance(node, dict):
        err.write(f"servertrack: unexpected answer from {_text(base_url)}\n")
        return 1
    done = "paused" if paused else "resumed"
    out.write(f"{done} {_text(node.get('name', node_id))} (state: {_text(node.get('state'))})\n")
    return 0


def snapshot_of(sections: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The stats snapshot put back together from the bodies of ``/cpu``, ``/memory``, ``/disks``,
    ``/network`` and ``/processes`` (``cpu`` and ``processes`` show their fields directly)."""
    snapshot: dict[str, Any] = {}
    for section in NODE_SECTIONS:
        fields = {key: value for key, value in sections[section].items() if key not in ("name", "stats_at")}
        if section in ("cpu", "processes"):
            snapshot[section] = fields
        else:
            snapshot.update(fields)
    return snapshot
