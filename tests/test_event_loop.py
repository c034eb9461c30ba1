"""The event loop serve runs on: uvloop when installed and asked for (or auto), asyncio otherwise."""

from __future__ import annotations

import importlib
import time

import msgpack
import pytest
import zmq

from servertrack.cli import CommandLineError, parse
from servertrack.common.settings import EnvironmentDefaults
from servertrack.event_loop import EventLoopUnavailable, loop_factory, run
from tests.test_end_to_end import http, running_service, stop, wait_for


def test_auto_takes_uvloop_when_it_imports_and_asyncio_never_does() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)
    name, factory = loop_factory("auto")
    assert name == "uvloop" and factory is not None
    assert loop_factory("uvloop")[0] == "uvloop"

    async def answer() -> str:
        import asyncio
        return type(asyncio.get_running_loop()).__module__

    assert run(answer(), "uvloop").startswith("uvloop")
    assert run(answer(), "asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def missing_uvloop(name: str, package: str | None = None) -> object:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", missing_uvloop)
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(EventLoopUnavailable, match="not installed"):
        loop_factory("uvloop")
    with pytest.raises(ValueError, match="unknown event loop"):
        loop_factory("tokio")


def test_the_flag_and_its_variable() -> None:
    assert parse(["serve"], EnvironmentDefaults()).event_loop == "asyncio"
    assert parse(["serve", "--event-loop", "asyncio"], EnvironmentDefaults()).event_loop == "asyncio"
    assert parse(["serve"], EnvironmentDefaults.from_environ({"SERVERTRACK_EVENT_LOOP": "uvloop"})).event_loop == "uvloop"
    with pytest.raises(CommandLineError):
        parse(["serve", "--event-loop", "tokio"], EnvironmentDefaults())


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_serve_ingests_and_answers_on_either_loop(choice: str) -> None:
    with running_service("--event-loop", choice) as service:
        context = zmq.Context()
        publisher = context.socket(zmq.PUB)
        publisher.setsockopt(zmq.LINGER, 0)
        publisher.connect(service.ingest)
        try:
            def sent_and_seen() -> bool:
                publisher.send(msgpack.packb({"v": 1, "fqdn": "loop-1", "ts": time.time(), "ip": [],
                                              "cpu": 12.5, "ram": 50.0, "seq": 0}))
                return http("GET", service.url + "/servers/loop-1/loads")[0] == 200

            wait_for(sent_and_seen, 10, "a sample to be applied")
            status, body = http("GET", service.url + "/servers/loop-1/loads")
            assert status == 200 and body["minutes"][-1]["cpu"]["max"] == 12.5
        finally:
            publisher.close()
            context.term()
        assert stop(service.process) == 0
