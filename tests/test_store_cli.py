"""The store's flags: kinds, data directory, durations, their bounds and their environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from servertrack.cli import CommandLineError, parse
from servertrack.common.settings import EnvironmentDefaults, parse_duration


def test_serve_defaults_to_sqlite_with_the_documented_retention() -> None:
    args = parse(["serve"], EnvironmentDefaults())
    assert args.store == "sqlite" and args.data_dir is None
    assert (args.keep_minutes, args.keep_hours, args.keep_snapshots) == (7 * 86_400, 400 * 86_400, 7 * 86_400)
    assert (args.snapshot_every, args.checkpoint_every) == (60, 60)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43_200), ("7d", 604_800),
                                               ("2w", 1_209_600), ("3", 259_200), ("1.5h", 5400), (" 7d ", 604_800)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7 d", "7x", "-1d", "1e3s", "7dd", "١٢h", "7d\n1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_flags_and_environment() -> None:
    args = parse(["serve", "--store", "memory", "--data-dir", "/srv/st", "--keep-minutes", "36h",
                  "--keep-hours", "2w", "--snapshot-every", "10s", "--checkpoint-every", "5m"], EnvironmentDefaults())
    assert (args.store, args.data_dir, args.keep_minutes, args.keep_hours) == ("memory", "/srv/st", 129_600, 1_209_600)
    assert (args.snapshot_every, args.checkpoint_every) == (10, 300)
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_STORE": "memory", "SERVERTRACK_DATA_DIR": "/d",
                                            "SERVERTRACK_KEEP_HOURS": "30d"})
    args = parse(["serve"], env)
    assert (args.store, args.data_dir, args.keep_hours) == ("memory", "/d", 2_592_000)


@pytest.mark.parametrize("argv", [
    ["serve", "--store", "redis"],
    ["serve", "--keep-minutes", "59m"],          # retention: at least an hour
    ["serve", "--keep-hours", "101y"],
    ["serve", "--keep-hours", "40000d"],         # beyond 100 years
    ["serve", "--snapshot-every", "0s"],
    ["serve", "--checkpoint-every", "2d"],       # at most a day
    ["serve", "--data-dir", ""],
    ["serve", "--snapshot-every", "soon"],
])
def test_bad_store_flags_are_one_line_errors(argv: list[str]) -> None:
    with pytest.raises(CommandLineError):
        parse(argv, EnvironmentDefaults())


def test_redis_store_flags(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("pa ss\nignored\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    args = parse(["serve", "--store", "rediss://cache:6380/2", "--store-password-file", str(password),
                  "--store-ca", str(ca)], EnvironmentDefaults())
    assert (args.store, args.store_password, args.store_ca) == ("rediss://cache:6380/2", "pa ss", str(ca))
    args = parse(["serve", "--store", "redis+cluster://a:7000,b:7001"], EnvironmentDefaults())
    assert args.store == "redis+cluster://a:7000,b:7001" and args.store_password is None
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_STORE": "redis://r:6379/0",
                                            "SERVERTRACK_STORE_PASSWORD_FILE": str(password)})
    args = parse(["serve"], env)
    assert (args.store, args.store_password) == ("redis://r:6379/0", "pa ss")


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", "--store", "redis://h:6379/99"], "DB in the --store URL"),
    (["serve", "--store", "redis://u:pw@h"], "use --store-password-file"),
    (["serve", "--store", "redis+cluster://"], "no host"),
    (["serve", "--store", "redis://h", "--store-password-file", "/nonexistent/pw"], "cannot read password file"),
    (["serve", "--store", "sqlite", "--store-password-file", "PASSWORD"], "are for a redis://"),
])
def test_bad_redis_flags_are_one_line_errors(argv: list[str], says: str, tmp_path: Path) -> None:
    argv = [str(tmp_path / "pw") if part == "PASSWORD" else part for part in argv]
    (tmp_path / "pw").write_text("x\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(CommandLineError) as raised:
        parse(argv, EnvironmentDefaults())
    assert says in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(CommandLineError, match="is empty"):
        parse(["serve", "--store", "redis://h", "--store-password-file", str(empty)], EnvironmentDefaults())
