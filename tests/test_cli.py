"""The command line: flags, environment defaults, and one-line errors with exit code 2."""

from __future__ import annotations

import http.server
import io
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from servertrack.cli import CommandLineError, main, parse
from servertrack.console import render_node, render_nodes, wants_colour
from servertrack.common.settings import EnvironmentDefaults
from tests.conftest import servertrack_command, subprocess_env
from tests.node_fixtures import HELLO_INFO, process_entry, stats_body
from tests.test_end_to_end import http as send
from tests.test_end_to_end import running_service


def test_serve_defaults() -> None:
    args = parse(["serve"], EnvironmentDefaults())
    assert (args.host, args.port, args.ingest, args.max_servers) == ("127.0.0.1", 8080, "tcp://127.0.0.1:5556", 200_000)


def test_serve_flags() -> None:
    args = parse(["serve", "--host", "0.0.0.0", "--port", "0", "--ingest", "tcp://*:7000", "--max-servers", "5"],
                 EnvironmentDefaults())
    assert (args.host, args.port, args.ingest, args.max_servers) == ("0.0.0.0", 0, "tcp://*:7000", 5)


def test_environment_sets_defaults_and_flags_win() -> None:
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_PORT": "9000", "SERVERTRACK_INTERVAL": "2.5",
                                            "SERVERTRACK_COLLECTOR": "tcp://collector:5556"})
    assert parse(["serve"], env).port == 9000
    assert parse(["serve", "--port", "9001"], env).port == 9001
    agent = parse(["agent", "--name", "N1"], env)
    assert (agent.collector, agent.interval, agent.name) == ("tcp://collector:5556", 2.5, "n1")


def test_bad_environment_value_is_a_usage_error() -> None:
    with pytest.raises(CommandLineError):
        parse(["serve"], EnvironmentDefaults.from_environ({"SERVERTRACK_PORT": "eighty"}))


def test_export_servers_takes_an_optional_cap_from_the_flag_or_the_environment() -> None:
    assert parse(["serve"], EnvironmentDefaults()).export_servers is None  # off
    assert parse(["serve", "--export-servers", "--port", "0"], EnvironmentDefaults()).export_servers == 10_000
    assert parse(["serve", "--export-servers", "25"], EnvironmentDefaults()).export_servers == 25
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_EXPORT_SERVERS": "7"})
    assert parse(["serve"], env).export_servers == 7
    for bad in ("0", "-1", "ten"):
        with pytest.raises(CommandLineError, match="servers exported"):
            parse(["serve", "--export-servers", bad], EnvironmentDefaults())


def test_share_every_and_collector_id_are_bounded_and_read_from_the_environment() -> None:
    args = parse(["serve"], EnvironmentDefaults())
    assert args.share_every == 1.0 and args.collector_id is None  # an id is made and kept in the data dir
    args = parse(["serve", "--share-every", "0.1", "--collector-id", "col-a"], EnvironmentDefaults())
    assert args.share_every == 0.1 and args.collector_id == "col-a"
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_SHARE_EVERY": "60", "SERVERTRACK_COLLECTOR_ID": "b-2"})
    assert (parse(["serve"], env).share_every, parse(["serve"], env).collector_id) == (60.0, "b-2")
    for bad in ("0.09", "60.5", "0", "nan", "-1", "soon"):
        with pytest.raises(CommandLineError, match="--share-every"):
            parse(["serve", "--share-every", bad], EnvironmentDefaults())
    for bad in ("", "Col-A", "-a", "a/b", "a" * 33, "a b", "\x00"):
        with pytest.raises(CommandLineError, match="collector id"):
            parse(["serve", f"--collector-id={bad}"], EnvironmentDefaults())


def test_agent_defaults_to_this_hosts_fqdn() -> None:
    fqdn = socket.getfqdn().lower()
    args = parse(["agent"], EnvironmentDefaults())
    assert args.name == fqdn and args.interval == 1.0


def test_show_and_demo_flags() -> None:
    show = parse(["show", "Web-01", "--url", "http://127.0.0.1:9"], EnvironmentDefaults())
    assert (show.name, show.url) == ("web-01", "http://127.0.0.1:9")
    demo = parse(["demo", "--agents", "5", "--port", "0"], EnvironmentDefaults())
    assert (demo.agents, demo.port) == (5, 0)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["launch"],
        ["serve", "--port", "70000"],
        ["serve", "--port", "http"],
        ["serve", "--ingest", "5556"],
        ["serve", "--ingest", "http://127.0.0.1:5556"],
        ["serve", "--max-servers", "0"],
        ["serve", "--unknown"],
        ["agent", "--collector", "tcp://127.0.0.1"],
        ["agent", "--collector", "tcp://127.0.0.1:5556,"],
        ["agent", "--collector", "tcp://127.0.0.1:5556,tcp://127.0.0.1:5556"],
        ["agent", "--collector", ",".join(f"tcp://127.0.0.1:{port}" for port in range(6000, 6065))],
        ["agent", "--collector", "tcp://a:5556,tcp://b:5556", "--control", "tcp://a:5557"],
        ["agent", "--interval", "abc"],
        ["agent", "--coll", "tcp://127.0.0.1:5556"],
        ["agent", "--interval", "0"],
        ["agent", "--name", "bad name"],
        ["demo", "--agents", "-1"],
        ["show"],
        ["show", "web", "--url", "127.0.0.1:8080"],
    ],
)
def test_bad_flags_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("servertrack: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_show_with_unreachable_api_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert main(["show", "web-01", "--url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("servertrack: error: cannot reach") and err.count("\n") == 1


def test_serve_on_a_busy_port_exits_2_with_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            servertrack_command("serve", "--port", str(port), "--ingest", "tcp://127.0.0.1:*"),
            env=subprocess_env(), capture_output=True, text=True, timeout=30,
        )
    assert done.returncode == 2
    assert done.stderr.startswith("servertrack: error: cannot listen") and done.stderr.count("\n") == 1


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(servertrack_command("--version"), env=subprocess_env(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("servertrack ")


# -- servertrack nodes / node ------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")

NODE_LIST: dict[str, Any] = {"nodes": [
    {"name": "db-01.example", "hostname": "db-01", "state": "offline", "last_seen": "2026-11-25T14:00:00Z",
     "ips": ["10.0.0.6"]},
    {"name": "web-01.example", "hostname": "web-01", "state": "online", "last_seen": "2026-11-25T14:20:01Z",
     "ips": ["10.0.0.5", "fd00::2"]},
    {"name": "zmq-only", "hostname": None, "state": "stale", "last_seen": "2026-11-25T14:19:00Z", "ips": []},
]}

NODE: dict[str, Any] = {
    "name": "web-01.example", "hostname": "web-01", "state": "online", "last_seen": "2026-11-25T14:20:01Z",
    "ips": ["10.0.0.5", "fd00::2"], "boottime": 1_795_168_800.0, "boot_time": "2026-11-20T10:00:00Z",
    "uptime_seconds": 447_601,
    "os": "Linux 6.1.0", "platform": "x86_64", "cpu_count": 2, "memory_total": 16 * 2**30,
    "agent_version": "0.2.0", "interval": 1.0, "loadavg": [0.5, 0.4, 0.3], "cpu_usage_percent": [20.0, 30.0],
    "memory_usage_percent": 37.5, "stats_at": "2026-11-25T14:20:00Z",
}

LOADS: dict[str, Any] = {
    "name": "web-01.example", "window": "1h", "samples": 120, "cpu": {"avg": 22.25, "min": 1.0, "max": 97.5},
    "ram": {"avg": 40.0, "min": 39.0, "max": 41.0}, "uptime_seconds": 447_601,
}


def _process(pid: int, name: str, cpu: float, rss: int, cmdline: str) -> dict[str, Any]:
    return process_entry(pid, name=name, cpu_percent=cpu, rss=rss, memory_percent=1.5, create_time=1_790_000_000.0,
                         cmdline=cmdline)


STATS: dict[str, Any] = stats_body(
    disk_io={"read_bytes_per_s": 1536.0, "write_bytes_per_s": 0.0, "read_ops_per_s": 3.0, "write_ops_per_s": 0.0},
    network=[{"interface": "eth0", "rx_bytes_per_s": 2.5 * 2**20, "tx_bytes_per_s": 512.0,
              "rx_packets_per_s": 100.0, "tx_packets_per_s": 20.0, "rx_errors": 1, "tx_errors": 0,
              "rx_drops": 3, "tx_drops": 0}],
    processes={"count": 312,
               "top_cpu": [_process(4242, "postgres", 97.5, 900 * 2**20, "postgres: writer " + "x" * 100)],
               "top_memory": [_process(77, "java", 3.0, 4 * 2**30, "")]},
)


def test_nodes_and_node_flags() -> None:
    listed = parse(["nodes"], EnvironmentDefaults(url="http://127.0.0.1:9"))
    assert (listed.command, listed.url, listed.state) == ("nodes", "http://127.0.0.1:9", None)
    assert parse(["nodes", "--state", "stale", "--url", "http://h:1"], EnvironmentDefaults()).state == "stale"
    assert parse(["node", "Web-01.Example"], EnvironmentDefaults()).name == "web-01.example"
    assert parse(["node", "10.0.0.5"], EnvironmentDefaults()).name == "10.0.0.5"
    assert parse(["node", "FD00:0::2", "--url", "http://h:1"], EnvironmentDefaults()).name == "fd00::2"


@pytest.mark.parametrize("argv", [
    ["nodes", "--state", "up"],
    ["nodes", "--state", "ONLINE"],
    ["nodes", "--url", "ftp://h"],
    ["nodes", "extra"],
    ["node"],
    ["node", "bad name"],
    ["node", "fd00:::2"],
    ["node", "web-01", "--state", "online"],
])
def test_bad_nodes_flags_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("servertrack: error: ") and err.count("\n") == 1


def test_the_inventory_table() -> None:
    assert render_nodes(NODE_LIST) == (
        "NAME            STATE    LAST SEEN (UTC)       HOSTNAME  IPS\n"
        "db-01.example   offline  2026-11-25T14:00:00Z  db-01     10.0.0.6\n"
        "web-01.example  online   2026-11-25T14:20:01Z  web-01    10.0.0.5, fd00::2\n"
        "zmq-only        stale    2026-11-25T14:19:00Z  -         -\n"
    )
    assert render_nodes({"nodes": []}) == "no nodes\n"


def test_the_inventory_table_colours_states_only_when_asked() -> None:
    plain, coloured = render_nodes(NODE_LIST), render_nodes(NODE_LIST, colour=True)
    assert "\x1b" not in plain
    assert ANSI.sub("", coloured) == plain  # colour codes do not shift the columns
    assert "\x1b[31moffline\x1b[0m" in coloured.splitlines()[1]
    assert "\x1b[32monline\x1b[0m" in coloured.splitlines()[2]
    assert "\x1b[33mstale\x1b[0m" in coloured.splitlines()[3]
    assert "\x1b" not in coloured.splitlines()[0]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty, environ, expected", [
    (True, {}, True),
    (True, {"NO_COLOR": ""}, True),  # https://no-color.org: set *and non-empty* disables colour
    (True, {"NO_COLOR": "1"}, False),
    (False, {}, False),
    (False, {"NO_COLOR": "1"}, False),
])
def test_colour_only_on_a_terminal_without_no_color(tty: bool, environ: dict[str, str], expected: bool) -> None:
    assert wants_colour(_Stream(tty), environ) is expected


def test_a_node_with_its_latest_stats() -> None:
    text = render_node(NODE, STATS, LOADS)
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "web-01.example  online  (last seen 2026-11-25T14:20:01Z)"
    for expected in [
        "  addresses    10.0.0.5, fd00::2",
        "  system       Linux 6.1.0 (x86_64), 2 CPUs, 16.0 GiB memory",
        "  agent        0.2.0, every 1 s",
        "  booted       2026-11-20T10:00:00Z, up 5d 04:20:01",
        "  loads (1h)   120 samples, cpu avg 22.2 % (min 1.0, max 97.5), ram avg 40.0 % (min 39.0, max 41.0)",
        "Latest stats (2026-11-25T14:20:00Z)",
        "  cpu          25.0 %  user 20.0  system 5.0  iowait 0.0  idle 75.0  2400 MHz",
        "  per cpu      20.0 30.0",
        "  load         0.50 0.40 0.30",
        "  memory       37.5 %  6.0 GiB used of 16.0 GiB, 10.0 GiB available",
        "  swap         0.0 %  0 B used of 1.0 GiB",
        "  disk i/o     read 1.5 KiB/s (3.0 ops/s), write 0 B/s (0.0 ops/s)",
        "  MOUNT  DEVICE     TYPE      USED       SIZE  USE %",
        "  /      /dev/vda1  ext4  30.0 GiB  100.0 GiB   30.0",
        "Processes: 312 in total",
    ]:
        assert expected in lines, expected
    network = lines[lines.index("Network") + 2]
    assert network.split() == ["eth0", "2.5", "MiB/s", "512", "B/s", "100.0", "20.0", "1/0", "3/0"]
    top_cpu = lines[lines.index("Top by CPU") + 2]
    assert top_cpu.split()[:6] == ["4242", "root", "97.5", "1.5", "900.0", "MiB"]
    assert top_cpu.endswith("...") and len(top_cpu.split("postgres: writer")[1]) <= 60
    top_memory = lines[lines.index("Top by memory") + 2]
    assert top_memory.split()[-3:] == ["GiB", "java", "java"]  # no command line: the name stands in


def test_a_node_without_stats_or_hello() -> None:
    bare = {**NODE, **{key: None for key in ("hostname", "boottime", "boot_time", "uptime_seconds", "os", "platform",
                                             "cpu_count", "memory_total", "agent_version", "interval",
                                             "loadavg", "cpu_usage_percent", "memory_usage_percent",
                                             "stats_at")}, "ips": [], "state": "stale"}
    text = render_node(bare, None, {**LOADS, "samples": 0, "cpu": None, "ram": None}, colour=True)
    assert "\x1b[33mstale\x1b[0m" in text
    assert "  addresses    -" in text and "  booted       -, up -" in text and "  loads (1h)   no samples" in text
    assert text.endswith("\nNo stats received yet.\n")
    assert "sample," in render_node(NODE, None, {**LOADS, "samples": 1})


@pytest.mark.parametrize("argv", [["nodes"], ["nodes", "--state", "offline"], ["node", "web-01"],
                                  ["node", "fd00::2"]])
def test_nodes_with_unreachable_api_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert main([*argv, "--url", f"http://127.0.0.1:{port}"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("servertrack: error: cannot reach") and captured.err.count("\n") == 1
    assert captured.out == ""


class _CannedApi(http.server.BaseHTTPRequestHandler):
    """Answers GETs from ``answers``: path (with query) -> (status, JSON body); anything else is a JSON 404."""

    answers: dict[str, tuple[int, Any]] = {}
    requested: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.requested.append(self.path)
        status, body = self.answers.get(self.path, (404, {"error": f"no such endpoint: {self.path}"}))
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def canned_api() -> Iterator[str]:
    """A stand-in for the API on 127.0.0.1 answering ``_CannedApi.answers``; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CannedApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _CannedApi.requested = []
    _CannedApi.answers = {
        "/nodes": (200, NODE_LIST),
        "/nodes?state=stale": (200, {"nodes": NODE_LIST["nodes"][2:]}),
        "/nodes/fd00%3A%3A2": (200, NODE),
        "/nodes/web-01.example": (200, NODE),
        "/nodes/web-01.example/summary?window=1h": (200, LOADS),
        "/nodes/web-01.example/cpu": (200, {"name": "web-01.example", "stats_at": NODE["stats_at"],
                                            **STATS["cpu"]}),
        "/nodes/web-01.example/memory": (200, {"name": "web-01.example", "stats_at": NODE["stats_at"],
                                               "memory": STATS["memory"], "swap": STATS["swap"]}),
        "/nodes/web-01.example/disks": (200, {"name": "web-01.example", "stats_at": NODE["stats_at"],
                                              "disks": STATS["disks"], "disk_io": STATS["disk_io"]}),
        "/nodes/web-01.example/network": (200, {"name": "web-01.example", "stats_at": NODE["stats_at"],
                                                "network": STATS["network"]}),
        "/nodes/web-01.example/processes": (200, {"name": "web-01.example", "stats_at": NODE["stats_at"],
                                                  **STATS["processes"]}),
        "/nodes/10.0.0.9": (409, {"error": "address 10.0.0.9 belongs to several nodes: a, b"}),
    }
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_nodes_prints_the_inventory(canned_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "--url", canned_api]) == 0
    captured = capsys.readouterr()
    assert captured.out == render_nodes(NODE_LIST) and captured.err == ""  # not a terminal: no colour
    assert main(["nodes", "--state", "stale", "--url", canned_api]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("zmq-only")


def test_node_prints_the_summary_and_the_latest_stats(canned_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", "fd00::2", "--url", canned_api]) == 0
    captured = capsys.readouterr()
    assert captured.out == render_node(NODE, STATS, LOADS) and captured.err == ""
    # looked up by address once, then by name
    assert _CannedApi.requested[0] == "/nodes/fd00%3A%3A2"
    assert all(path.startswith("/nodes/web-01.example/") for path in _CannedApi.requested[1:])


@pytest.mark.parametrize("argv, message", [
    (["node", "missing"], "no such endpoint: /nodes/missing"),
    (["node", "10.0.0.9"], "address 10.0.0.9 belongs to several nodes: a, b"),
])
def test_node_refused_by_the_api_exits_1_with_its_message(
    canned_api: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([*argv, "--url", canned_api]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"servertrack: {message}\n" and captured.out == ""


def test_node_whose_stats_vanish_midway_exits_1(canned_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    del _CannedApi.answers["/nodes/web-01.example/network"]
    assert main(["node", "web-01.example", "--url", canned_api]) == 1
    assert capsys.readouterr().err.startswith("servertrack: ")


def test_a_paused_node_is_coloured_apart_from_online_and_stale() -> None:
    listing = {"nodes": [{"name": "web-02", "hostname": None, "state": "paused", "last_seen": "2026-11-25T14:20:01Z",
                          "ips": []}]}
    coloured = render_nodes(listing, colour=True)
    assert "\x1b[36mpaused\x1b[0m" in coloured.splitlines()[1]
    assert ANSI.sub("", coloured) == render_nodes(listing)


# -- servertrack pause / resume NAME: against a real serve (POST /nodes/{id}/pause and /resume) ----------


def test_pause_and_resume_flags() -> None:
    for action in ("pause", "resume"):
        args = parse([action, "Node01.Example.", "--url", "http://h:1"], EnvironmentDefaults())
        assert (args.command, args.name, args.url) == (action, "node01.example", "http://h:1")
        assert parse([action, "FD00:0::2"], EnvironmentDefaults(url="http://127.0.0.1:9")).name == "fd00::2"


@pytest.mark.parametrize("argv", [
    ["pause"], ["resume"], ["pause", "bad name"], ["pause", "a", "b"], ["resume", "fd00:::2"],
    ["pause", "web-01", "--url", "ftp://h"], ["resume", "web-01", "--state", "online"], ["pause", "-" * 3],
])
def test_bad_pause_flags_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("servertrack: error: ") and err.count("\n") == 1


@pytest.fixture(scope="module")
def live_service() -> Iterator[str]:
    """A real ``servertrack serve`` knowing ``node01.example`` (10.0.0.5, by POST /nodes); yields its URL."""
    with running_service() as service:
        status, _ = send("POST", f"{service.url}/nodes", {"name": "node01.example", "ip": ["10.0.0.5"], **HELLO_INFO})
        assert status == 201
        yield service.url


def node_paused(url: str, name: str) -> bool:
    status, body = send("GET", f"{url}/nodes/{name}")
    assert status == 200
    return bool(body["paused"])


PAUSE_LINE = re.compile(r"(paused|resumed) node01\.example \(state: (online|paused|stale|offline)\)\n")


def test_pause_then_resume_a_node_by_name_and_by_address(live_service: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pause", "node01.example", "--url", live_service]) == 0
    captured = capsys.readouterr()
    assert PAUSE_LINE.fullmatch(captured.out) and captured.out.startswith("paused ") and captured.err == ""
    assert node_paused(live_service, "node01.example")
    assert main(["resume", "10.0.0.5", "--url", live_service]) == 0  # the line names the node, not the address
    captured = capsys.readouterr()
    assert PAUSE_LINE.fullmatch(captured.out) and captured.out.startswith("resumed ") and captured.err == ""
    assert not node_paused(live_service, "node01.example")


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pausing_an_unknown_node_exits_1_with_the_apis_message(
    live_service: str, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    assert main([action, "nope.example", "--url", live_service]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("servertrack: ") and "nope.example" in captured.err
    assert captured.err.count("\n") == 1
    assert main([action, "10.9.9.9", "--url", live_service]) == 1
    assert "10.9.9.9" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pausing_with_an_unreachable_api_exits_1(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert main([action, "node01.example", "--url", f"http://127.0.0.1:{port}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"servertrack: cannot reach http://127.0.0.1:{port}")
    assert captured.err.count("\n") == 1


class _HostilePause(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a node detail whose name and state carry terminal escapes."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        raw = json.dumps({"name": "evil\x1b]0;pwned\x07\r\nx", "state": "online\x1b[2J", "paused": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_the_pause_line_shows_remote_text_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostilePause)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert main(["pause", "evil", "--url", f"http://127.0.0.1:{server.server_address[1]}"]) == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    out = capsys.readouterr().out
    assert out == "paused evil\\x1b]0;pwned\\x07\\x0d\\x0ax (state: online\\x1b[2J)\n"


def test_an_agent_given_several_collectors_publishes_to_its_rendezvous_pick() -> None:
    collectors = [f"tcp://127.0.0.1:{port}" for port in (5556, 6556, 7556)]
    chosen = {}
    for number in range(60):
        args = parse(["agent", "--name", f"node-{number:02}", "--collector", " , ".join(collectors)],
                     EnvironmentDefaults())
        assert args.collectors == collectors and args.collector in collectors
        assert args.control == args.collector[:-4] + str(int(args.collector[-4:]) + 1)  # the port after it
        chosen[f"node-{number:02}"] = args.collector
    assert set(chosen.values()) == set(collectors)  # the agents spread over all three
    # the same agent with a collector less: it stays unless its own collector is the one gone
    for name, collector in chosen.items():
        fewer = [candidate for candidate in collectors if candidate != collectors[0]]
        moved = parse(["agent", "--name", name, "--collector", ",".join(fewer)], EnvironmentDefaults()).collector
        assert moved == collector or collector == collectors[0]
    # --control as a list: the same place as the collector chosen
    args = parse(["agent", "--name", "node-07", "--collector", ",".join(collectors),
                  "--control", "tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3"], EnvironmentDefaults())
    assert args.control == f"tcp://127.0.0.1:{collectors.index(args.collector) + 1}"



def test_failover_after_defaults_to_3_s_takes_1_to_600_and_its_environment_variable() -> None:
    collectors = "tcp://127.0.0.1:5556,tcp://127.0.0.1:6556"
    args = parse(["agent", "--name", "n1", "--collector", collectors], EnvironmentDefaults())
    assert args.failover_after == 3.0
    assert args.controls == ["tcp://127.0.0.1:5557", "tcp://127.0.0.1:6557"]  # every collector's, derived
    for value, seconds in (("1", 1.0), ("600", 600.0), ("2.5", 2.5)):
        assert parse(["agent", "--failover-after", value], EnvironmentDefaults()).failover_after == seconds
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_FAILOVER_AFTER": "10"})
    assert parse(["agent"], env).failover_after == 10.0
    assert parse(["agent", "--failover-after", "4"], env).failover_after == 4.0


@pytest.mark.parametrize("value", ["0.99", "0", "-1", "600.01", "1e9", "nan", "inf", "three", ""])
def test_failover_after_out_of_bounds_is_one_line_and_exit_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--failover-after", value]) == 2
    err = capsys.readouterr().err
    assert err == f"servertrack: error: argument --failover-after: failover-after (seconds) must be a number from 1 " \
                  f"to 600, got {value!r}\n"


def test_a_bad_failover_after_in_the_environment_is_a_usage_error() -> None:
    with pytest.raises(CommandLineError, match="failover-after"):
        parse(["agent"], EnvironmentDefaults.from_environ({"SERVERTRACK_FAILOVER_AFTER": "0.5"}))


def test_the_agents_help_tells_of_failover() -> None:
    result = subprocess.run([*servertrack_command(), "agent", "--help"], capture_output=True, text=True, timeout=30,
                            env={**subprocess_env(), "COLUMNS": "400"})  # no line broken inside a flag's name
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--failover-after SECONDS" in text and "silent for --failover-after" in text
    assert "they share one key pair" in text
