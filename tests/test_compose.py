"""docker-compose.yml and Dockerfile, checked without a container engine.

Every service's command is run through the real CLI parser, and the wiring
(addresses, ports, names, entry point, build context) is checked on the parsed
values, so a typo in a flag, a port or a host name fails here and not at
``docker compose up``.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import tornado.httputil
import yaml

from servertrack.api.app import make_app
from servertrack.api.handlers import HealthHandler
from servertrack.cli import CommandLineError, build_parser, parse
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.inventory import AgentInventory
from servertrack.common.settings import EnvironmentDefaults
from servertrack.common.stats import IngestStats

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR_HTTP_PORT = 8080
_TCP_ENDPOINT = re.compile(r"tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+|\*)\Z")


# --------------------------------------------------------------------------- loading


def _document(compose_file: str = "docker-compose.yml") -> dict[str, Any]:
    """A compose file at the repository root, parsed (YAML anchors and ``<<`` merges resolved)."""
    document = yaml.safe_load((ROOT / compose_file).read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


def _services(compose_file: str = "docker-compose.yml") -> dict[str, dict[str, Any]]:
    return _document(compose_file)["services"]


def _argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "every service needs a command (the image's ENTRYPOINT is `servertrack`)"
    argv = shlex.split(command) if isinstance(command, str) else command
    assert all(isinstance(arg, str) for arg in argv), f"non-string argument in {argv!r} (quote numbers in YAML)"
    return argv


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _parsed(service: dict[str, Any]):
    """The service's command as the real CLI sees it, with the service's own SERVERTRACK_* environment."""
    return parse(_argv(service), defaults=EnvironmentDefaults.from_environ(_environment(service)))


def _endpoint(text: str) -> tuple[str, str]:
    match = _TCP_ENDPOINT.match(text)
    assert match is not None, f"{text!r} is not tcp://HOST:PORT"
    return match["host"], match["port"]


def _published(service: dict[str, Any]) -> dict[int, int]:
    """``ports`` as {container port: host port}, short ("[IP:]HOST:CONTAINER[/tcp]") or long syntax."""
    mapping = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            assert entry.get("protocol", "tcp") == "tcp"
            mapping[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        text = str(entry)
        spec, _, protocol = text.partition("/")
        assert protocol in ("", "tcp"), text
        parts = spec.rsplit(":", 2)
        container = int(parts[-1])
        mapping[container] = int(parts[-2]) if len(parts) >= 2 else container
    return mapping


def _depends_on(service: dict[str, Any]) -> set[str]:
    depends = service.get("depends_on") or []
    return set(depends) if isinstance(depends, list) else set(depends)


def _roles() -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """(collector service name, collector service, {agent service name: service})."""
    services = _services()
    by_command: dict[str, dict[str, dict[str, Any]]] = {}
    for name, service in services.items():
        by_command.setdefault(_parsed(service).command, {})[name] = service
    collectors = by_command.get("serve", {})
    assert len(collectors) == 1, f"expected exactly one collector (serve), got {sorted(collectors)}"
    [(collector_name, collector)] = collectors.items()
    return collector_name, collector, by_command.get("agent", {})


# --------------------------------------------------------------------------- compose


def test_one_collector_and_three_agents_and_nothing_else() -> None:
    services = _services()
    commands = sorted(_parsed(service).command for service in services.values())
    assert commands == ["agent", "agent", "agent", "serve"]
    collector_name, _, agents = _roles()
    assert collector_name == "collector"
    assert sorted(agents) == ["agent-1", "agent-2", "agent-3"]


@pytest.mark.parametrize("service_name", sorted(_services()))
def test_every_command_parses_with_the_real_cli(service_name: str) -> None:
    service = _services()[service_name]
    try:
        args = _parsed(service)
    except CommandLineError as error:  # pragma: no cover - the failure message is the point
        pytest.fail(f"{service_name}: `servertrack {' '.join(_argv(service))}` is rejected: {error}")
    assert args.command in ("serve", "agent")
    assert service.get("build") is not None or service.get("image"), f"{service_name} has no image to run"


def test_the_parser_used_here_does_reject_bad_flags() -> None:
    # Guard for the test above: a typo in a compose command would be caught.
    with pytest.raises(CommandLineError):
        parse(["agent", "--colector", "tcp://collector:5556"], defaults=EnvironmentDefaults())
    with pytest.raises(CommandLineError):
        parse(["serve", "--port", "80800"], defaults=EnvironmentDefaults())


def test_collector_listens_on_all_interfaces_and_publishes_8080() -> None:
    _, collector, _ = _roles()
    args = _parsed(collector)
    assert args.host == "0.0.0.0"
    ingest_host, ingest_port = _endpoint(args.ingest)
    assert ingest_host in ("0.0.0.0", "*"), f"ingest binds {ingest_host}: other containers cannot reach it"
    assert ingest_port.isdigit(), "agents need a fixed ingest port to connect to"
    published = _published(collector)
    assert published.get(args.port) == COLLECTOR_HTTP_PORT, f"HTTP port {args.port} is not published as 8080: {published}"


def test_agents_point_at_the_collector_service_and_its_ingest_port() -> None:
    collector_name, collector, agents = _roles()
    _, ingest_port = _endpoint(_parsed(collector).ingest)
    for name, service in agents.items():
        host, port = _endpoint(_parsed(service).collector)
        assert host == collector_name, f"{name} connects to {host!r}, not the collector service"
        assert port == ingest_port, f"{name} connects to port {port}, the collector binds {ingest_port}"
        assert collector_name in _depends_on(service), f"{name} does not depend on {collector_name}"


def test_agent_names_are_explicit_and_distinct() -> None:
    _, _, agents = _roles()
    names = []
    for name, service in agents.items():
        # Without --name (or SERVERTRACK_NAME) an agent reports the container's random hostname.
        explicit = build_parser(EnvironmentDefaults.from_environ(_environment(service))).parse_args(_argv(service))
        assert explicit.name is not None, f"{name} has no --name"
        names.append(explicit.name)
    assert len(names) == 3
    assert len(set(names)) == len(names), f"agent names repeat: {names}"


def test_collector_healthcheck_queries_healthz_on_the_http_port() -> None:
    _, collector, _ = _roles()
    healthcheck = collector.get("healthcheck")
    assert healthcheck, "the collector has no healthcheck"
    test = healthcheck["test"]
    command = " ".join(test[1:]) if isinstance(test, list) else test
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL")
    urls = re.findall(r"https?://[^\s'\"]+", command)
    assert len(urls) == 1, command
    url = urlsplit(urls[0])
    assert url.hostname in ("127.0.0.1", "localhost")
    assert url.port == _parsed(collector).port
    # The path is a real route of the API (not the catch-all 404 handler).
    app = make_app(Aggregator(max_servers=1), PendingBatch(), AgentInventory(max_agents=1), IngestStats())
    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine("GET", url.path, "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": url.netloc}),
    )
    assert app.find_handler(request).handler_class is HealthHandler


# --------------------------------------------------------------------------- Dockerfile


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends in a line continuation"
    return instructions


def _resolve(workdir: PurePosixPath, path: str) -> PurePosixPath:
    joined = workdir / path
    parts: list[str] = []
    for part in joined.parts[1:]:
        if part == "..":
            parts and parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath("/", *parts)


def test_the_collectors_history_lives_on_a_named_volume_at_the_images_data_dir() -> None:
    envs = [arguments for keyword, arguments in _instructions() if keyword == "ENV"]
    data_dir = next(word.split("=", 1)[1] for arguments in envs for word in shlex.split(arguments)
                    if word.startswith("SERVERTRACK_DATA_DIR="))
    volumes = [arguments for keyword, arguments in _instructions() if keyword == "VOLUME"]
    assert volumes and data_dir in json.loads(volumes[-1])
    _, collector, _ = _roles()
    parsed = parse(_argv(collector), defaults=EnvironmentDefaults.from_environ(
        {**_environment(collector), "SERVERTRACK_DATA_DIR": data_dir}))
    assert parsed.store == "sqlite" and parsed.data_dir == data_dir
    mounts = {str(entry).split(":")[1]: str(entry).split(":")[0] for entry in collector.get("volumes") or []}
    assert data_dir in mounts, "the collector's data dir must be a volume, or a new container forgets everything"
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert mounts[data_dir] in (document.get("volumes") or {}), "a named volume, declared at the top level"


def test_dockerfile_base_image_and_entrypoint() -> None:
    instructions = _instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert froms and froms[0].split()[0] == "python:3.11-slim"
    entrypoints = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    # Exec form, so signals (SIGTERM from `docker stop`) reach servertrack itself, not a shell.
    assert json.loads(entrypoints[-1]) == ["servertrack"]


def test_dockerfile_installs_the_copied_project() -> None:
    workdir = PurePosixPath("/")
    copied_context_to: PurePosixPath | None = None
    installed_from: PurePosixPath | None = None
    for keyword, arguments in _instructions():
        if keyword == "WORKDIR":
            workdir = _resolve(workdir, arguments)
        elif keyword in ("COPY", "ADD"):
            words = [word for word in shlex.split(arguments) if not word.startswith("--")]
            *sources, destination = words
            if "." in sources or "./" in sources:
                copied_context_to = _resolve(workdir, destination)
        elif keyword == "RUN":
            for command in re.split(r"&&|;", arguments):
                words = shlex.split(command)
                if "pip" in [PurePosixPath(word).name for word in words[:3]] + words[:3] and "install" in words:
                    targets = [word for word in words[words.index("install") + 1 :] if not word.startswith("-")]
                    if "." in targets:
                        assert "--no-cache-dir" in words, "pip install without --no-cache-dir bloats the image"
                        installed_from = workdir
    assert copied_context_to is not None, "the build context is never copied into the image"
    assert installed_from is not None, "no `pip install .` in the Dockerfile"
    assert installed_from == copied_context_to, f"pip installs {installed_from}, the project is in {copied_context_to}"


def test_the_servertrack_console_script_exists() -> None:
    # ENTRYPOINT ["servertrack"] relies on the console script that `pip install .` creates.
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(
        line.replace(" ", "").split("=", 1)
        for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    module, _, function = scripts["servertrack"].partition(":")
    imported = __import__(module, fromlist=[function])
    assert callable(getattr(imported, function))


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches everything below a directory."""
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        if pattern.startswith("./"):
            pattern = pattern[2:]
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        parts = path.split("/")
        prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    ignore = ROOT / ".dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    needed = ["pyproject.toml", "setup.cfg"]
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    long_description = config["metadata"].get("long_description", "")
    needed += [name.strip() for name in long_description.removeprefix("file:").split(",")] if long_description.startswith("file:") else []
    needed += sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "servertrack").rglob("*.py"))
    assert any(path.startswith("servertrack/") for path in needed)
    dropped = [path for path in needed if _dockerignore_excludes(patterns, path)]
    assert not dropped, f".dockerignore drops files the image build needs: {dropped}"
    # And the checker itself does exclude things (so the check above can fail).
    assert _dockerignore_excludes(patterns, ".git/HEAD")
