"""schemathesis against a live ``servertrack serve --store memory``: every operation of its own
``GET /openapi.json``, reads and writes, with generated input the document calls valid and input it
calls invalid.

Each case must get no 5xx, and an answer the document describes: a documented status code, its content
type, its schema and headers. A throwaway server with ``--store memory``: the writes (samples, nodes,
``/stop``) persist nothing. Examples are bounded (``MAX_EXAMPLES`` an operation and mode) and
derandomized, so a run is the same every time, without shrinking: a failure is reported as found.

The operations are listed from ``openapi.ROUTES`` (what the document is built from; ``test_openapi``
holds it to the routes), so each is its own test; the schema itself is loaded from the live server.
schemathesis' own pytest plugin (``from_fixture``) does not run under pytest 9, so each test runs
Hypothesis on the operation's strategy (``as_strategy``) itself.

Not checked: ``positive_data_acceptance`` (that input valid by the document is accepted). The document
does not spell every rule a handler applies (a range's ``from`` before its ``to``, a node that must
exist, a snapshot's shape, which the README describes); such input is answered 400 or 404 with
``{"error": ...}`` naming the problem, which the checks here hold the service to.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.schemas import BaseSchema

from servertrack.api.openapi import _PATH_SCHEMAS as PATH_SCHEMAS
from servertrack.api.openapi import QUERY_PARAMETERS, ROUTES, path_templates
from tests.test_end_to_end import Service, running_service

MAX_EXAMPLES = 10
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
]
OPERATIONS = sorted((method, template) for pattern, route in ROUTES.items()
                    for template in path_templates(pattern, route.names) for method in route.operations)


def _negatable(method: str, template: str) -> bool:
    """Whether the operation has input the document calls invalid: a body, or a parameter constrained beyond
    "a string" (any string is a valid value of a plain string parameter, so there is nothing to break)."""
    [operation] = [operation for pattern, route in ROUTES.items() for path in path_templates(pattern, route.names)
                   for name, operation in route.operations.items() if (name, path) == (method, template)]
    path_names = {part[1:-1] for part in template.split("/") if part.startswith("{")}
    return (operation.body is not None or bool(path_names & set(PATH_SCHEMAS))
            or any(QUERY_PARAMETERS[name]["schema"] != {"type": "string"} for name in operation.query))


CASES = [pytest.param(method, path, mode, id=f"{method} {path} {mode}")
         for method, path in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or _negatable(method, path)]


@pytest.fixture(scope="module")
def live_service() -> Iterator[Service]:
    """One throwaway service for the whole module (nothing it is sent persists)."""
    with running_service("--store", "memory") as service:
        yield service


@pytest.fixture(scope="module")
def live_schema(live_service: Service) -> BaseSchema:
    """The service's own document, loaded from it; the cases go to the same service."""
    return schemathesis.openapi.from_url(f"{live_service.url}/openapi.json", timeout=10)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive session for every case (a connection a case would cost more than the case)."""
    with requests.Session() as shared:
        yield shared


def test_the_document_lists_the_operations_tested(live_schema: BaseSchema) -> None:
    """The live document has exactly the operations below (so none escapes the tests)."""
    live = sorted((method.upper(), path) for path, methods in live_schema.raw_schema["paths"].items()
                  for method in methods)
    assert live == OPERATIONS


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_operation_answers_as_documented(live_schema: BaseSchema, session: requests.Session, method: str,
                                               path: str, mode: GenerationMode) -> None:
    operation = live_schema[path][method]

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(session=session, checks=CHECKS, timeout=10)

    answers_as_documented()
