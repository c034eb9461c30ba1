"""The command line: flags, environment defaults, and one-line errors with exit code 2."""

from __future__ import annotations

import socket
import subprocess

import pytest

from servertrack.cli import CommandLineError, main, parse
from servertrack.common.settings import EnvironmentDefaults
from tests.conftest import servertrack_command, subprocess_env


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
