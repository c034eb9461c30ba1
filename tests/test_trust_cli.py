"""The trust flags of the command line: token files and variables, TLS files, the per-client cap."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from servertrack.cli import CommandLineError, main, parse
from servertrack.common.settings import EnvironmentDefaults, ServeSettings
from tests.conftest import servertrack_command, subprocess_env

TOKEN = "a3" * 32


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    path = tmp_path / "write.token"
    path.write_text(f"\n  {TOKEN}  \n")
    return path


def test_token_files_are_read_stripped(token_path: Path) -> None:
    args = parse(["serve", "--write-token", str(token_path), "--read-token", str(token_path)], EnvironmentDefaults())
    assert (args.write_token, args.read_token) == (TOKEN, TOKEN)
    assert parse(["show", "web", "--token", str(token_path)], EnvironmentDefaults()).token == TOKEN


def test_without_flags_or_variables_nothing_needs_a_token() -> None:
    args = parse(["serve"], EnvironmentDefaults())
    assert (args.write_token, args.read_token, args.tls_cert, args.tls_key) == (None, None, None, None)
    assert args.max_connections_per_client == 256
    assert parse(["nodes"], EnvironmentDefaults()).token is None


def test_the_variables_hold_the_tokens_themselves_and_a_flag_wins(token_path: Path) -> None:
    other = "b4" * 32
    env = EnvironmentDefaults.from_environ({"SERVERTRACK_WRITE_TOKEN": other, "SERVERTRACK_READ_TOKEN": other,
                                            "SERVERTRACK_TOKEN": f" {other}\n",
                                            "SERVERTRACK_MAX_CONNECTIONS_PER_CLIENT": "7"})
    args = parse(["serve"], env)
    assert (args.write_token, args.read_token, args.max_connections_per_client) == (other, other, 7)
    assert parse(["serve", "--write-token", str(token_path)], env).write_token == TOKEN
    assert parse(["pause", "n1"], env).token == other
    assert parse(["pause", "n1", "--token", str(token_path)], env).token == TOKEN


def test_a_short_token_in_a_variable_is_a_usage_error() -> None:
    with pytest.raises(CommandLineError, match="SERVERTRACK_WRITE_TOKEN: a token needs at least 16"):
        parse(["serve"], EnvironmentDefaults.from_environ({"SERVERTRACK_WRITE_TOKEN": "secret"}))


@pytest.mark.parametrize(
    "content, fragment",
    [(b"", "is empty"), (b" \n\t", "is empty"), (b"short\n", "at least 16"), (b"\xff" * 20, "only letters"),
     (b"0123456789abcdef 0123456789abcdef", "only letters"), (b"a" * 5000, "too long")],
    ids=["empty", "blank", "short", "binary", "two-words", "huge"],
)
def test_a_bad_token_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, fragment: str,
) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    for argv in (["serve", "--write-token", str(path)], ["serve", "--read-token", str(path)],
                 ["nodes", "--token", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("servertrack: error: ") and err.count("\n") == 1 and fragment in err, err


@pytest.mark.parametrize("argv", [["serve", "--write-token", "/nonexistent/token"], ["nodes", "--token", "/"],
                                  ["show", "web", "--ca", "/nonexistent/ca.pem"],
                                  ["serve", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"]])
def test_an_unreadable_file_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("servertrack: error: ") and err.count("\n") == 1 and "cannot read" in err, err


@pytest.mark.parametrize("flag", ["--tls-cert", "--tls-key"])
def test_tls_needs_both_files(token_path: Path, flag: str) -> None:
    with pytest.raises(CommandLineError, match="--tls-cert and --tls-key go together"):
        parse(["serve", flag, str(token_path)], EnvironmentDefaults())


def test_an_https_url_is_taken() -> None:
    assert parse(["show", "web", "--url", "https://monitor.example:8443"], EnvironmentDefaults()).url.startswith("https")


def test_serve_with_an_unusable_certificate_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    done = subprocess.run(
        servertrack_command("serve", "--port", "0", "--ingest", "tcp://127.0.0.1:*",
                            "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")),
        env=subprocess_env(), capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("servertrack: error: cannot use --tls-cert") and done.stderr.count("\n") == 1


def test_the_settings_do_not_show_their_tokens() -> None:
    settings = ServeSettings(write_token=TOKEN, read_token=TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in repr(EnvironmentDefaults(write_token=TOKEN, read_token=TOKEN, token=TOKEN))
