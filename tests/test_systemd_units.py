"""The systemd units in contrib/systemd: ``systemd-analyze verify`` clean, hardened, and exposure scores kept low.

``systemd-analyze`` comes with the ``systemd`` package, which ``.ci/run`` installs when it is missing, so
under CI (``CI=true``) these tests always run: there, a missing ``systemd-analyze`` is a failure. Outside
CI (a developer's machine without systemd) they are skipped with that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

UNITS = PROJECT_ROOT / "contrib" / "systemd"
SHIPPED_BINARY = "/opt/servertrack/bin/servertrack"
# The highest exposure `systemd-analyze security` may give each unit (0 safest, 10 worst). The agent must
# see every process and the node's devices' statistics, so it keeps a little more.
EXPOSURE_AT_MOST = {"servertrack.service": 2.0, "servertrack-agent.service": 2.5}
# Directives every unit must set, to these values exactly.
HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
    "EnvironmentFile": "-/etc/servertrack/servertrack.env",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
}


def systemd_analyze() -> str:
    """The path of ``systemd-analyze``; skipped without it, except under CI, where that fails."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing under CI: .ci/run installs the systemd package when it is")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); CI installs it and runs this")
    return binary


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's ``[Section]`` -> directive -> every value given (in order; a repeated key adds one).

    Comments and blank lines are skipped; the shipped units use no line continuations (asserted).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), f"line continuation in {line!r}"
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], {})
            continue
        assert current is not None and "=" in stripped, f"not a directive: {line!r}"
        key, value = stripped.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def runnable_copy(name: str, directory: Path) -> Path:
    """The shipped unit ``name`` written into ``directory`` with its ExecStart binary replaced by this
    interpreter's ``python -m servertrack`` (verify needs the binary to exist); nothing else changed."""
    shipped = (UNITS / name).read_text()
    assert shipped.count(SHIPPED_BINARY) == 1, f"{name} names {SHIPPED_BINARY} once, in ExecStart"
    [start] = [line for line in shipped.splitlines() if SHIPPED_BINARY in line]
    assert start.startswith(f"ExecStart={SHIPPED_BINARY} "), start
    local = f"{sys.executable} -m servertrack"
    copy = shipped.replace(SHIPPED_BINARY, local)
    assert copy.replace(local, SHIPPED_BINARY) == shipped  # the checked text is the shipped one
    path = directory / name
    path.write_text(copy)
    return path


@pytest.mark.parametrize("name", sorted(EXPOSURE_AT_MOST))
def test_unit_verifies_without_a_warning(name: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit and prints nothing (an unknown key is only a warning)."""
    binary = systemd_analyze()
    unit = runnable_copy(name, tmp_path)
    result = subprocess.run([binary, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_verify_reports_a_bad_directive(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is printed (as a warning, exit code 0)."""
    binary = systemd_analyze()
    unit = runnable_copy("servertrack.service", tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = subprocess.run([binary, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    assert "ProtectSytem" in result.stderr


@pytest.mark.parametrize("name", sorted(EXPOSURE_AT_MOST))
def test_unit_is_hardened(name: str) -> None:
    """Every hardening directive the README promises is set, and serve keeps its history in StateDirectory."""
    sections = directives((UNITS / name).read_text())
    service = sections["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{name}: {key}={service.get(key)}"
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["ProtectHome"] in (["yes"], ["read-only"])
    # the agent reads every process's /proc entries for its top-process lists
    if name == "servertrack-agent.service":
        assert service["ProtectProc"] == ["default"] and service["ProcSubset"] == ["all"]
        assert service["ExecStart"] == [f"{SHIPPED_BINARY} agent"]
    else:
        assert service["ProtectHome"] == ["yes"]
        assert service["StateDirectory"] == ["servertrack"]
        assert service["ExecStart"] == [f"{SHIPPED_BINARY} serve --data-dir /var/lib/servertrack"]
    assert int(service["LimitNOFILE"][0]) >= 4096
    assert float(service["TimeoutStopSec"][0]) > 0
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("name", sorted(EXPOSURE_AT_MOST))
def test_unit_exposure_is_low(name: str, tmp_path: Path) -> None:
    """``systemd-analyze security --offline=yes`` (systemd 250 and later) scores the unit at most its bound."""
    binary = systemd_analyze()
    unit = runnable_copy(name, tmp_path)
    result = subprocess.run([binary, "security", "--offline=yes", str(unit)], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+(?:\.\d+)?)", result.stdout)
    assert match is not None, result.stdout[-2000:]
    assert float(match.group(1)) <= EXPOSURE_AT_MOST[name], result.stdout
