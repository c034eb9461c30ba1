"""The control channel's flags and defaults: ``serve --control``, ``agent --control``, ``SERVERTRACK_CONTROL``,
the address derived next to the ingest one, and ``nodes --state paused``."""

from __future__ import annotations

import socket
import subprocess

import pytest

from servertrack.cli import CommandLineError, parse
from servertrack.common.settings import EnvironmentDefaults, control_endpoint_for
from tests.conftest import servertrack_command, subprocess_env


@pytest.mark.parametrize(
    ("ingest", "control"),
    [
        ("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557"),
        ("tcp://0.0.0.0:7000", "tcp://0.0.0.0:7001"),
        ("tcp://*:5556", "tcp://*:5557"),
        ("tcp://[::1]:5556", "tcp://[::1]:5557"),
        ("tcp://collector:5556", "tcp://collector:5557"),
        ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),  # any free port: the control port is any free port too
        ("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"),
        ("ipc:///run/servertrack/ingest", "ipc:///run/servertrack/ingest.control"),
    ],
)
def test_the_control_address_is_the_port_after_the_ingest_port(ingest: str, control: str) -> None:
    assert control_endpoint_for(ingest) == control


@pytest.mark.parametrize("endpoint", ["tcp://h:65535", "udp://h:1", "tcp://h", "ipc://"])
def test_no_control_address_can_be_derived_from_some_addresses(endpoint: str) -> None:
    with pytest.raises(ValueError, match="--control"):
        control_endpoint_for(endpoint)


def test_an_agent_cannot_guess_the_port_of_an_ingest_on_any_port() -> None:
    with pytest.raises(ValueError, match="--control"):
        control_endpoint_for("tcp://127.0.0.1:*", connect=True)


def test_serve_control_defaults_to_derived_and_takes_a_flag() -> None:
    assert parse(["serve"], EnvironmentDefaults()).control is None  # derived when the socket is bound
    args = parse(["serve", "--control", "tcp://0.0.0.0:6000"], EnvironmentDefaults())
    assert args.control == "tcp://0.0.0.0:6000"


def test_agent_control_is_derived_from_the_collector_address() -> None:
    assert parse(["agent", "--name", "n1"], EnvironmentDefaults()).control == "tcp://127.0.0.1:5557"
    args = parse(["agent", "--name", "n1", "--collector", "tcp://collector:7000"], EnvironmentDefaults())
    assert args.control == "tcp://collector:7001"
    args = parse(["agent", "--name", "n1", "--control", "tcp://collector:9000"], EnvironmentDefaults())
    assert args.control == "tcp://collector:9000"


def test_servertrack_control_sets_the_default_for_both_commands() -> None:
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_CONTROL": "tcp://10.0.0.1:6001"})
    assert parse(["serve"], env).control == "tcp://10.0.0.1:6001"
    assert parse(["agent", "--name", "n1"], env).control == "tcp://10.0.0.1:6001"
    assert parse(["agent", "--name", "n1", "--control", "tcp://h:1"], env).control == "tcp://h:1"


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--control", "http://127.0.0.1:5557"],
        ["serve", "--control", "5557"],
        ["serve", "--control", "tcp://127.0.0.1:70000"],
        ["agent", "--name", "n1", "--control", "tcp://h:x"],
        ["agent", "--name", "n1", "--collector", "tcp://127.0.0.1:*"],  # nothing to derive the control port from
        ["agent", "--name", "n1", "--collector", "tcp://h:65535"],
    ],
)
def test_bad_control_addresses_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(CommandLineError):
        parse(argv, EnvironmentDefaults())


def test_a_bad_servertrack_control_is_a_usage_error() -> None:
    with pytest.raises(CommandLineError):
        parse(["serve"], EnvironmentDefaults.from_environ({"SERVERTRACK_CONTROL": "nonsense"}))


def test_nodes_can_list_paused_nodes() -> None:
    assert parse(["nodes", "--state", "paused"], EnvironmentDefaults()).state == "paused"


def test_serve_on_a_busy_control_port_exits_2_with_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            servertrack_command("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*",
                                "--control", f"tcp://127.0.0.1:{port}"),
            env=subprocess_env(), capture_output=True, text=True, timeout=30,
        )
    assert done.returncode == 2
    assert done.stderr.startswith("servertrack: error: cannot bind control socket") and done.stderr.count("\n") == 1
    assert f"tcp://127.0.0.1:{port}" in done.stderr
