"""docker-compose.cluster.yml, checked without a container engine.

Two collectors of one fleet on a three-node Redis Cluster, and three agents.
Every servertrack command is run through the real CLI parser and the wiring
between services (the store URL and the Redis nodes, the agents' collector
list and the collectors' ingest, ports, volumes, start order, the cluster's
creation) is checked on the parsed values. Each check is one function over
the parsed document, so the negative tests below can hand it a mutated copy
and see it fail.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from servertrack.cli import CommandLineError, parse
from servertrack.common.settings import EnvironmentDefaults
from servertrack.store.fleet_directory import check_collector_id
from servertrack.store.store_url import RedisTarget, parse_store
from tests.test_compose import (
    ROOT,
    _argv,
    _document,
    _endpoint,
    _environment,
    _instructions,
    _published,
)

COMPOSE_FILE = "docker-compose.cluster.yml"
REDIS_DEFAULT_PORT = 6379
REDIS_DATA_DIR = "/data"  # the official image's WORKDIR and VOLUME: nodes.conf and the AOF live there
CLUSTER_FLAGS = {"cluster-enabled": "yes", "appendonly": "yes", "cluster-preferred-endpoint-type": "hostname"}
CONDITION_ON = {"redis": {"service_healthy"}, "redis-init": {"service_completed_successfully"},
                "serve": {"service_started", "service_healthy"}}
Document = dict[str, Any]


# --------------------------------------------------------------------------- reading the document


@functools.cache
def _image_data_dir() -> str:
    """SERVERTRACK_DATA_DIR as the Dockerfile sets it."""
    return next(word.split("=", 1)[1] for keyword, arguments in _instructions() if keyword == "ENV"
                for word in shlex.split(arguments) if word.startswith("SERVERTRACK_DATA_DIR="))


def _is_redis(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).split(":")[0] == "redis"


def _parsed(service: dict[str, Any]) -> argparse.Namespace:
    """The command as the real CLI sees it in the image (its SERVERTRACK_DATA_DIR, then the service's env)."""
    environment = {"SERVERTRACK_DATA_DIR": _image_data_dir(), **_environment(service)}
    return _parsed_argv(tuple(_argv(service)), tuple(sorted(environment.items())))


@functools.cache
def _parsed_argv(argv: tuple[str, ...], environment: tuple[tuple[str, str], ...]) -> argparse.Namespace:
    try:
        return parse(list(argv), defaults=EnvironmentDefaults.from_environ(dict(environment)))
    except CommandLineError as error:
        raise AssertionError(f"`servertrack {shlex.join(argv)}` is rejected: {error}") from None


def _roles(document: Document) -> dict[str, dict[str, dict[str, Any]]]:
    """{"redis": nodes, "redis-init": one-shot, "serve": collectors, "agent": agents}, each {name: service}."""
    roles: dict[str, dict[str, dict[str, Any]]] = {"redis": {}, "redis-init": {}, "serve": {}, "agent": {}}
    for name, service in document["services"].items():
        if _is_redis(service):
            role = "redis" if _argv(service)[0] == "redis-server" else "redis-init"
        else:
            role = _parsed(service).command
        assert role in roles, f"{name}: unexpected `servertrack {role}`"
        roles[role][name] = service
    return roles


def _redis_options(service: dict[str, Any]) -> dict[str, str]:
    """``redis-server --name value ...`` as {name: value}."""
    argv = _argv(service)
    assert argv[0] == "redis-server", argv
    flags = argv[1:]
    assert len(flags) % 2 == 0 and all(flag.startswith("--") for flag in flags[::2]), f"not --name value pairs: {flags}"
    return {flag[2:]: value for flag, value in zip(flags[::2], flags[1::2])}


def _redis_port(service: dict[str, Any]) -> int:
    return int(_redis_options(service).get("port", REDIS_DEFAULT_PORT))


def _conditions(service: dict[str, Any]) -> dict[str, str]:
    """``depends_on`` as {service: condition}; the short (list) form means service_started."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """``volumes`` as {container path: source}, short ("SOURCE:TARGET[:MODE]") or long syntax."""
    mounts = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts[entry["target"]] = entry.get("source", "")
        else:
            source, _, rest = str(entry).partition(":")
            mounts[rest.split(":")[0] if rest else source] = source if rest else ""
    return mounts


def _init_script(service: dict[str, Any]) -> list[list[str]]:
    """redis-init's command as shell commands (words), split at ``||``, ``&&``, ``;`` and ``|``."""
    argv = _argv(service)
    script = argv[2] if argv[:2] == ["sh", "-c"] and len(argv) == 3 else shlex.join(argv)
    return [shlex.split(part) for part in re.split(r"\|\||&&|;|\|", script) if part.strip()]


def _raw_collector_list(service: dict[str, Any]) -> list[str]:
    """An agent's whole ``--collector`` list (parse() keeps it as ``collectors``, next to the one it picks)."""
    return list(_parsed(service).collectors)


# --------------------------------------------------------------------------- checks (each raises AssertionError)


def check_services(document: Document) -> None:
    roles = _roles(document)
    assert sorted(roles["redis"]) == ["redis-1", "redis-2", "redis-3"], sorted(roles["redis"])
    assert sorted(roles["redis-init"]) == ["redis-init"], sorted(roles["redis-init"])
    assert sorted(roles["serve"]) == ["collector-a", "collector-b"], sorted(roles["serve"])
    assert sorted(roles["agent"]) == ["agent-1", "agent-2", "agent-3"], sorted(roles["agent"])
    for name, service in {**roles["serve"], **roles["agent"]}.items():
        assert service.get("build") == "." and service.get("image") == "servertrack:local", f"{name}: image"


def check_redis_nodes(document: Document) -> None:
    for name, service in _roles(document)["redis"].items():
        assert service["image"] == "redis:7", f"{name}: image {service['image']!r}, not the official redis:7"
        options = _redis_options(service)
        for flag, value in CLUSTER_FLAGS.items():
            assert options.get(flag) == value, f"{name}: --{flag} is {options.get(flag)!r}, not {value!r}"
        announced = options.get("cluster-announce-hostname")
        assert announced == name, f"{name} announces the hostname {announced!r}: clients are redirected there"
        mounts = _mounts(service)
        assert mounts.get(REDIS_DATA_DIR) in (document.get("volumes") or {}), f"{name}: no named volume at /data"
        test = service.get("healthcheck", {}).get("test")
        words = test[1:] if isinstance(test, list) else shlex.split(str(test))
        assert "redis-cli" in words and "ping" in words, f"{name}: healthcheck {test!r} is not redis-cli ping"
        if "-p" in words:
            assert int(words[words.index("-p") + 1]) == _redis_port(service), f"{name}: healthcheck port"
    sources = [_mounts(service)[REDIS_DATA_DIR] for service in _roles(document)["redis"].values()]
    assert len(set(sources)) == len(sources), f"Redis nodes share a volume: {sources}"


def check_cluster_creation(document: Document) -> None:
    roles = _roles(document)
    nodes = {f"{name}:{_redis_port(service)}" for name, service in roles["redis"].items()}
    [init] = roles["redis-init"].values()
    assert init.get("restart", "no") == "no", "redis-init is one-shot"
    creates = [words for words in _init_script(init) if words[:3] == ["redis-cli", "--cluster", "create"]]
    assert len(creates) == 1, f"one `redis-cli --cluster create` in {_argv(init)}"
    words = creates[0][3:]
    addresses = []
    while words and not words[0].startswith("-"):
        addresses.append(words.pop(0))
    assert sorted(addresses) == sorted(nodes), f"the cluster is created of {addresses}, the nodes are {sorted(nodes)}"
    assert words[words.index("--cluster-replicas") + 1] == "0" and "--cluster-yes" in words, words
    for guard in (words for words in _init_script(init) if words[:1] == ["redis-cli"] and "-h" in words):
        host = guard[guard.index("-h") + 1]
        assert host in roles["redis"], f"redis-init checks the cluster on {host!r}, not one of its nodes"


def check_store(document: Document) -> None:
    roles = _roles(document)
    ports = {name: _redis_port(service) for name, service in roles["redis"].items()}
    urls = set()
    for name, service in roles["serve"].items():
        args = _parsed(service)
        target = parse_store(args.store)
        assert isinstance(target, RedisTarget) and target.cluster, f"{name}: --store {args.store} is not a cluster"
        for host, port in target.hosts:
            assert host in ports, f"{name}: --store names {host!r}, not a Redis service of {COMPOSE_FILE}"
            assert port == ports[host], f"{name}: --store names {host}:{port}, {host} listens on {ports[host]}"
        assert {host for host, _ in target.hosts} == set(ports), f"{name}: --store does not name every node"
        urls.add(target.describe())
    assert len(urls) == 1, f"the collectors are on different stores, so not one fleet: {urls}"


def check_collectors(document: Document) -> None:
    ids = []
    for name, service in _roles(document)["serve"].items():
        args = _parsed(service)
        assert args.collector_id is not None, f"{name}: no --collector-id"
        ids.append(check_collector_id(args.collector_id))
        assert "--share-every" in _argv(service) and args.share_every == 1.0, f"{name}: --share-every 1"
        assert args.host == "0.0.0.0", f"{name}: HTTP on {args.host}, unreachable from the host"
        host, port = _endpoint(args.ingest)
        assert host in ("0.0.0.0", "*") and port.isdigit(), f"{name}: ingest {args.ingest}"
        assert _conditions(service).get("redis-init") == "service_completed_successfully", \
            f"{name} may start before the cluster exists"
    assert len(set(ids)) == len(ids), f"collector ids repeat: {ids}"


def check_agents(document: Document) -> None:
    roles = _roles(document)
    ingests = sorted(f"tcp://{name}:{_endpoint(_parsed(service).ingest)[1]}" for name, service in roles["serve"].items())
    names = []
    for name, service in roles["agent"].items():
        assert "--name" in _argv(service), f"{name}: no --name (it would report the container's random hostname)"
        names.append(_parsed(service).name)
        listed = _raw_collector_list(service)
        assert sorted(listed) == ingests, f"{name} publishes to {listed}, the collectors ingest on {ingests}"
    assert len(set(names)) == len(names), f"agent names repeat: {names}"


def check_ports(document: Document) -> None:
    host_ports = []
    for name, service in document["services"].items():
        host_ports += _published(service).values()
    assert len(set(host_ports)) == len(host_ports), f"a host port is published twice: {sorted(host_ports)}"
    published = []
    for name, service in _roles(document)["serve"].items():
        port = _parsed(service).port
        assert port in _published(service), f"{name}: its HTTP port {port} is not published"
        published.append(_published(service)[port])
    assert sorted(published) == [8080, 8081], published


def check_collector_volumes(document: Document) -> None:
    data_dir = _image_data_dir()
    sources = []
    for name, service in _roles(document)["serve"].items():
        assert _parsed(service).data_dir == data_dir, f"{name}: --data-dir is not the image's {data_dir}"
        source = _mounts(service).get(data_dir)
        assert source in (document.get("volumes") or {}), f"{name}: no named top-level volume at {data_dir}"
        sources.append(source)
    assert len(set(sources)) == len(sources), f"collectors share a data volume (crash log, checkpoints): {sources}"
    others = {source for name, service in document["services"].items() if name not in _roles(document)["serve"]
              for source in _mounts(service).values()}
    assert not others & set(sources), f"a collector's data volume is mounted elsewhere too: {others & set(sources)}"


def check_depends_on(document: Document) -> None:
    roles = {name: role for role, services in _roles(document).items() for name in services}
    for name, service in document["services"].items():
        for target, condition in _conditions(service).items():
            assert target in roles, f"{name} depends on {target!r}, not a service of {COMPOSE_FILE}"
            assert condition in CONDITION_ON[roles[target]], f"{name} waits for {target} to be {condition}"
    [init] = (service for name, service in document["services"].items() if roles[name] == "redis-init")
    assert {name for name, condition in _conditions(init).items() if condition == "service_healthy"} == \
        {name for name, role in roles.items() if role == "redis"}, "redis-init must wait for every node's ping"


def check_healthchecks(document: Document) -> None:
    single = _document()["services"]["collector"]["healthcheck"]  # the one test_compose.py checks against the API
    for name, service in _roles(document)["serve"].items():
        healthcheck = service.get("healthcheck")
        assert healthcheck == single, f"{name}: healthcheck differs from docker-compose.yml's collector"
        urls = re.findall(r"https?://[^\s'\"]+", " ".join(healthcheck["test"][1:]))
        assert [re.search(r":(\d+)/", url)[1] for url in urls] == [str(_parsed(service).port)], urls  # type: ignore[index]


def check_header(_: Document) -> None:
    text = (ROOT / COMPOSE_FILE).read_text()
    header = text[: text.index("\n\n")]
    assert f"docker compose -f {COMPOSE_FILE} up --build" in header
    for name, service in _roles(_document(COMPOSE_FILE))["serve"].items():
        assert f"curl http://127.0.0.1:{_published(service)[_parsed(service).port]}/servers" in header, name


CHECKS: list[Callable[[Document], None]] = [
    check_services, check_redis_nodes, check_cluster_creation, check_store, check_collectors, check_agents,
    check_ports, check_collector_volumes, check_depends_on, check_healthchecks, check_header,
]


def check_all(document: Document) -> None:
    for check in CHECKS:
        check(document)


# --------------------------------------------------------------------------- the file as it is


@pytest.mark.parametrize("service_name", sorted(name for name, service in _document(COMPOSE_FILE)["services"].items()
                                                if not _is_redis(service)))
def test_every_servertrack_command_parses_with_the_real_cli(service_name: str) -> None:
    args = _parsed(_document(COMPOSE_FILE)["services"][service_name])  # AssertionError: the CLI's refusal
    assert args.command in ("serve", "agent")


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_cluster_file(check: Callable[[Document], None]) -> None:
    check(_document(COMPOSE_FILE))


# --------------------------------------------------------------------------- the checks can fail


def _replace(argv: list[str], old: str, new: str) -> list[str]:
    assert old in argv, (old, argv)
    return [new if word == old else word for word in argv]


def _command(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(service: dict[str, Any]) -> None:
        service["command"] = _replace(_argv(service), old, new)
    return mutate


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(service: dict[str, Any]) -> None:
        service[key] = value
    return mutate


STORE = "redis+cluster://redis-1:6379,redis-2:6379,redis-3:6379"
AGENTS = "tcp://collector-a:5556,tcp://collector-b:5556"
MUTATIONS = {
    "agent at a wrong port": ("agent-2", _command(AGENTS, "tcp://collector-a:5556,tcp://collector-b:5557"),
                              r"agent-2 publishes to"),
    "agent misses a collector": ("agent-3", _command(AGENTS, "tcp://collector-a:5556"), r"agent-3 publishes to"),
    "duplicate collector ids": ("collector-b", _command("col-b", "col-a"), r"collector ids repeat"),
    "invalid collector id": ("collector-a", _command("col-a", "Col_A"), r"--collector-id: a collector id is"),
    "misspelt flag": ("agent-1", _command("--collector", "--colector"), r"is rejected"),
    "store names no such node": ("collector-a", _command(STORE, STORE.replace("redis-3", "redis-4")),
                                 r"names 'redis-4', not a Redis service"),
    "store at a wrong port": ("collector-b", _command(STORE, STORE.replace("redis-2:6379", "redis-2:6380")),
                              r"redis-2 listens on 6379"),
    "announce hostname typo": ("redis-2", _command("redis-2", "redis-1"), r"redis-2 announces the hostname 'redis-1'"),
    "no cluster-enabled": ("redis-1", _command("--cluster-enabled", "--cluster-enable"), r"--cluster-enabled is None"),
    "init misses a node": ("redis-init", lambda service: service.update(command=[
        "sh", "-c", "redis-cli --cluster create redis-1:6379 redis-2:6379 --cluster-replicas 0 --cluster-yes"]),
        r"the cluster is created of"),
    "collector does not wait for redis-init": (
        "collector-a", _set("depends_on", {"redis-init": {"condition": "service_started"}}),
        r"waits for redis-init to be service_started|may start before the cluster exists"),
    "depends on a missing service": ("agent-1", _set("depends_on", ["collector"]), r"depends on 'collector'"),
    "shared data volume": ("collector-b", _set("volumes", ["collector-a-data:/var/lib/servertrack"]),
                           r"share a data volume"),
    "collector on a Redis node's volume": ("collector-b", _set("volumes", ["redis-2-data:/var/lib/servertrack"]),
                                           r"mounted elsewhere too"),
    "same host port twice": ("collector-b", _set("ports", ["8080:8080"]), r"published twice"),
}


@pytest.mark.parametrize("service_name, mutate, message", MUTATIONS.values(), ids=list(MUTATIONS))
def test_the_checks_catch_a_plausible_typo(service_name: str, mutate: Callable[[dict[str, Any]], None],
                                           message: str) -> None:
    document = json.loads(json.dumps(_document(COMPOSE_FILE)))  # a copy without YAML's shared anchors
    mutate(document["services"][service_name])
    with pytest.raises(AssertionError, match=message):
        check_all(document)
