"""Real ``servertrack serve --curve-secret --allowed-agents`` and ``servertrack agent`` processes on 127.0.0.1.

An agent with an allowed key is heard; one with an unknown key, or with a wrong
collector key, is not (nothing stored, the refusal counted, the agent says why
and keeps running); a key removed from the directory stops flowing after
SIGHUP; an allowed agent sending under another agent's name is dropped as
``wrong_key``; ``keys generate`` writes a 0600 secret; plain ``serve`` warns.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import servertrack_command, subprocess_env
from tests.test_end_to_end import (
    START_SECONDS,
    Service,
    http,
    running_service,
    spawned,
    stop,
    wait_for,
)

AGENT_INTERVAL = "0.2"


def generate(directory: Path, name: str) -> tuple[Path, Path]:
    """``servertrack keys generate DIR --name NAME``: the public and secret key files."""
    done = subprocess.run(servertrack_command("keys", "generate", str(directory), "--name", name),
                          env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return directory / f"{name}.key", directory / f"{name}.key_secret"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    generate(root / "collector", "collector")
    allowed = root / "allowed"
    allowed.mkdir()
    for name in ("trusted", "revoked", "thief"):
        public, _ = generate(root / name, name)
        shutil.copy(public, allowed)
    generate(root / "stranger", "stranger")  # never allowed
    return root


@pytest.fixture(scope="module")
def service(keys: Path) -> Iterator[Service]:
    with running_service("--store", "memory", "--curve-secret", str(keys / "collector" / "collector.key_secret"),
                         "--allowed-agents", str(keys / "allowed")) as started:
        yield started


@contextlib.contextmanager
def agent(service: Service, keys: Path, key: str, name: str, collector_key: str = "collector") -> Iterator[
        subprocess.Popen[str]]:
    """A CURVE agent with key pair ``key``, trusting ``collector_key``'s public key as the collector's."""
    with spawned("agent", "--collector", service.ingest, "--control", service.control, "--name", name,
                 "--interval", AGENT_INTERVAL, "--curve-secret", str(keys / key / f"{key}.key_secret"),
                 "--collector-key", str(keys / collector_key / f"{collector_key}.key"),
                 stdout=subprocess.DEVNULL) as process:
        yield process


def samples_of(service: Service, name: str) -> int:
    status, body = http("GET", f"{service.url}/servers/{name}/loads")
    return sum(bucket["samples"] for bucket in body["minutes"]) if status == 200 else 0


def stats(service: Service) -> dict[str, Any]:
    status, body = http("GET", f"{service.url}/stats")
    assert status == 200
    return body


def stop_and_read(process: subprocess.Popen[str]) -> str:
    """Stop an agent that must still be running; its stderr."""
    assert process.poll() is None, "the agent exited"
    assert stop(process) == 0
    return process.stderr.read()  # type: ignore[union-attr]


def test_an_agent_with_an_allowed_key_is_heard_and_owns_its_name(service: Service, keys: Path) -> None:
    with agent(service, keys, "trusted", "trusted.example"):
        wait_for(lambda: samples_of(service, "trusted.example") >= 3, START_SECONDS, "the trusted agent's samples")
        status, node = http("GET", f"{service.url}/nodes/trusted.example")
        public = (keys / "trusted" / "trusted.key").read_text()
        assert status == 200 and node["agent_key"] in public
        assert node["clock_skew_seconds"] is not None and abs(node["clock_skew_seconds"]) < 5
    curve = stats(service)["curve"]
    assert curve["enabled"] and curve["allowed_keys"] == 3 and curve["handshakes"]["succeeded"] >= 2


def test_an_unknown_key_is_refused_counted_and_the_agent_says_so(service: Service, keys: Path) -> None:
    before = stats(service)["curve"]["handshakes"]["unknown_key"]
    with agent(service, keys, "stranger", "stranger.example") as process:
        wait_for(lambda: stats(service)["curve"]["handshakes"]["unknown_key"] > before, START_SECONDS,
                 "the refused handshake")
        time.sleep(0.5)  # several of its sample intervals
        assert samples_of(service, "stranger.example") == 0
        assert http("GET", f"{service.url}/nodes/stranger.example")[0] == 404
        log = stop_and_read(process)
    assert "refused this agent's key" in log and "Traceback" not in log


def test_a_wrong_collector_key_means_nothing_flows_and_the_agent_says_so(service: Service, keys: Path) -> None:
    before = stats(service)["curve"]["handshakes"]["failed"]
    with agent(service, keys, "trusted", "misled.example", collector_key="stranger") as process:
        wait_for(lambda: stats(service)["curve"]["handshakes"]["failed"] > before, START_SECONDS,
                 "the failed handshake")
        time.sleep(0.5)
        assert samples_of(service, "misled.example") == 0
        log = stop_and_read(process)
    assert "handshake with the collector failed" in log and "Traceback" not in log


def test_a_name_sent_under_another_key_is_dropped_as_wrong_key(service: Service, keys: Path) -> None:
    with agent(service, keys, "trusted", "owned.example"):
        wait_for(lambda: samples_of(service, "owned.example") >= 2, START_SECONDS, "the owner's samples")
        with agent(service, keys, "thief", "owned.example"):
            wait_for(lambda: stats(service)["dropped"].get("wrong_key", 0) >= 3, START_SECONDS, "wrong_key drops")
        _, node = http("GET", f"{service.url}/nodes/owned.example")
        assert node["agent_key"] in (keys / "trusted" / "trusted.key").read_text()
        assert node["dropped"]["wrong_key"] >= 3
    listed = {entry["name"]: entry["dropped"] for entry in stats(service)["agents_dropped"]}
    assert listed["owned.example"]["wrong_key"] >= 3


def test_a_revoked_key_stops_flowing_after_sighup(service: Service, keys: Path) -> None:
    with agent(service, keys, "revoked", "revoked.example"):
        wait_for(lambda: samples_of(service, "revoked.example") >= 2, START_SECONDS, "the agent's samples")
        reloads = stats(service)["curve"]["reloads"]
        (keys / "allowed" / "revoked.key").unlink()
        service.process.send_signal(signal.SIGHUP)
        wait_for(lambda: stats(service)["curve"]["reloads"] > reloads, START_SECONDS, "the reload")
        assert stats(service)["curve"]["allowed_keys"] == 2
        wait_for(lambda: stats(service)["dropped"].get("revoked_key", 0) >= 2, START_SECONDS, "revoked_key drops")
        time.sleep(1.2)  # the batch applied before the revocation is visible now
        kept = samples_of(service, "revoked.example")
        time.sleep(1.2)
        assert samples_of(service, "revoked.example") == kept
    assert service.process.poll() is None


def test_keys_generate_writes_a_secret_only_its_owner_reads_and_never_overwrites(tmp_path: Path) -> None:
    public, secret = generate(tmp_path / "keys", "node01")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and "secret-key" in secret.read_text()
    assert "secret-key" not in public.read_text()
    again = subprocess.run(servertrack_command("keys", "generate", str(tmp_path / "keys"), "--name", "node01"),
                           env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "not overwritten" in again.stderr


def test_serve_with_a_secret_but_no_allowed_agents_is_a_usage_error(keys: Path) -> None:
    done = subprocess.run(servertrack_command("serve", "--store", "memory", "--curve-secret",
                                              str(keys / "collector" / "collector.key_secret")),
                          env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--allowed-agents" in done.stderr


def test_plain_serve_warns_once_that_ingest_is_unauthenticated() -> None:
    with running_service("--store", "memory") as plain:
        assert stop(plain.process) == 0
        log = plain.process.stderr.read()  # type: ignore[union-attr]
    assert log.count("is unauthenticated and unencrypted") == 1


@pytest.mark.parametrize("command", [
    ["serve", "--store", "memory", "--curve-secret", "{keys}/collector/collector.key", "--allowed-agents", "{keys}/allowed"],
    ["serve", "--store", "memory", "--curve-secret", "{keys}/collector/collector.key_secret", "--allowed-agents",
     "{keys}/missing"],
    ["agent", "--name", "x.example", "--curve-secret", "{keys}/trusted/trusted.key_secret", "--collector-key",
     "{keys}/missing.key"],
    ["agent", "--name", "x.example", "--curve-secret", "{keys}/trusted/trusted.key_secret"],
])
def test_an_unusable_key_file_or_directory_is_one_line_and_exit_2(keys: Path, command: list[str]) -> None:
    done = subprocess.run(servertrack_command(*(part.format(keys=keys) for part in command)),
                          env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.startswith("servertrack: error: ") and done.stderr.count("\n") == 1


def test_a_names_owner_is_kept_across_a_restart(keys: Path, tmp_path: Path) -> None:
    flags = ("--store", "sqlite", "--data-dir", str(tmp_path / "data"), "--curve-secret",
             str(keys / "collector" / "collector.key_secret"), "--allowed-agents", str(keys / "allowed"))
    with running_service(*flags) as first:
        with agent(first, keys, "trusted", "persist.example"):
            wait_for(lambda: http("GET", f"{first.url}/nodes/persist.example")[0] == 200, START_SECONDS, "the node")
            wait_for(lambda: samples_of(first, "persist.example") >= 2, START_SECONDS, "its samples")
        assert stop(first.process) == 0
    with running_service(*flags) as second:
        with agent(second, keys, "thief", "persist.example"):
            wait_for(lambda: stats(second)["dropped"].get("wrong_key", 0) >= 2, START_SECONDS, "wrong_key drops")
        _, node = http("GET", f"{second.url}/nodes/persist.example")
        assert node["agent_key"] in (keys / "trusted" / "trusted.key").read_text()
