"""``GET /openapi.json`` (``api.openapi``): the document covers exactly the application's routes and methods.

The routes are walked from ``make_app``'s own table (``request_fuzz.app_routes``), so a route added
without its entry in ``openapi.ROUTES`` (or an entry left behind by a removed route, or a method
documented but not implemented, or the reverse) fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import tornado.web
from hypothesis import example, given
from hypothesis import strategies as st
from openapi_spec_validator import validate

from live_api import LiveApi
from request_fuzz import app_routes

from servertrack.api import make_app
from servertrack.api.access_tokens import AccessTokens
from servertrack.api.openapi import ROUTES, OpenApiHandler, build_document, path_templates, route_table
from servertrack.api.request_policy import RequestPolicy
from servertrack.common.aggregator import Aggregator
from servertrack.common.batch import PendingBatch
from servertrack.common.errors import InvalidSample
from servertrack.common.protocol import is_ip_address, normalize_name
from servertrack.common.inventory import AgentInventory
from servertrack.common.stats import IngestStats

APP = make_app(Aggregator(1), PendingBatch(), AgentInventory(1), IngestStats())
DOCUMENT = build_document(APP)
ROUTE_METHODS = app_routes()
_TEMPLATE = re.compile(r"\{([^{}]+)\}")
NAME_SCHEMA = DOCUMENT["components"]["schemas"]["BatchSample"]["allOf"][1]["properties"]["server"]
NAME_PATTERN = re.compile(NAME_SCHEMA["pattern"].removesuffix("$") + r"\Z")  # ECMA's $ is Python's \Z


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert set(ROUTES) - set(ROUTE_METHODS) == set(), "documented routes that make_app lacks"
    assert set(ROUTE_METHODS) - set(ROUTES) == set(), "routes of make_app that openapi.ROUTES lacks"


@pytest.mark.parametrize("pattern", sorted(ROUTE_METHODS))
def test_the_documented_methods_are_the_implemented_ones(pattern: str) -> None:
    assert sorted(ROUTES[pattern].operations) == sorted(ROUTE_METHODS[pattern]), pattern
    for template in path_templates(pattern, ROUTES[pattern].names):
        assert sorted(DOCUMENT["paths"][template]) == sorted(method.lower() for method in ROUTE_METHODS[pattern])


def _first_route(path: str) -> str | None:
    """The pattern of the first route of the application that takes ``path`` (as Tornado routes it)."""
    for pattern, _handler in route_table(APP):
        if re.fullmatch(pattern, path):
            return pattern
    return None


def test_each_documented_path_is_routed_to_its_route_and_each_route_has_its_paths() -> None:
    documented: dict[str, str] = {}
    for pattern, route in ROUTES.items():
        for template in path_templates(pattern, route.names):
            assert template not in documented, (template, pattern, documented.get(template))
            documented[template] = pattern
            # and back: the template, a value in each parameter, is routed to this route and no earlier one
            example = _TEMPLATE.sub(lambda name: "web-01" if name[1] != "pid" else "42", template)
            assert _first_route(example) == pattern, (template, example)
    assert set(documented) == set(DOCUMENT["paths"])
    for pattern in ROUTE_METHODS:  # a route whose every literal choice is documented
        assert pattern in documented.values(), pattern


def test_literal_groups_become_one_path_each_and_free_groups_parameters() -> None:
    assert path_templates(r"/nodes/([^/]+)/(pause|resume)", ("id",)) == ["/nodes/{id}/pause", "/nodes/{id}/resume"]
    assert path_templates(r"/perf/([^/]+)/?", ("name",)) == ["/perf/{name}"]
    assert path_templates(r"/openapi\.json", ()) == ["/openapi.json"]
    with pytest.raises(ValueError):
        path_templates(r"/nodes/([^/]+)", ("id", "pid"))
    with pytest.raises(StopIteration):
        path_templates(r"/nodes/([^/]+)", ())


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return ([value["$ref"]] if "$ref" in value else []) + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def test_every_ref_resolves_and_every_path_parameter_is_declared() -> None:
    for ref in _refs(DOCUMENT):
        assert ref.startswith("#/components/schemas/") and ref.rpartition("/")[2] in DOCUMENT["components"]["schemas"]
    for template, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(_TEMPLATE.findall(template)), (method, template)


def test_errors_are_the_error_shape_and_tokens_are_documented_where_they_apply() -> None:
    for pattern, handler in route_table(APP):
        for template in path_templates(pattern, ROUTES[pattern].names):
            for method, operation in DOCUMENT["paths"][template].items():
                for status, answer in operation["responses"].items():
                    if int(status) >= 400:
                        assert answer["content"]["application/json"]["schema"] == {
                            "$ref": "#/components/schemas/Error"}, (method, template, status)
                needs_token = getattr(handler, "NEEDS_TOKEN")
                assert ("401" in operation["responses"]) is needs_token, (method, template)
                assert ({"bearer": []} in operation["security"]) is needs_token, (method, template)
                if needs_token and method.upper() in getattr(handler, "STATE_CHANGING_METHODS"):
                    assert "--write-token" in operation["description"], (method, template)
    assert "401" not in DOCUMENT["paths"]["/healthz"]["get"]["responses"]
    assert "--write-token" in DOCUMENT["paths"]["/stop"]["get"]["description"]  # pindrop's GET pauses
    assert DOCUMENT["paths"]["/openapi.json"]["get"]["security"] == [{}, {"bearer": []}]  # a normal read
    assert OpenApiHandler.NEEDS_TOKEN
    perf = DOCUMENT["paths"]["/perf/{name}"]["post"]["requestBody"]["content"]
    assert list(perf) == ["application/x-www-form-urlencoded"]
    assert list(DOCUMENT["paths"]["/loads"]["post"]["requestBody"]["content"]) == ["application/json"]


@given(st.one_of(st.from_regex(NAME_SCHEMA["pattern"]), st.text(alphabet="aZ09._-*: /\n\u00e9", max_size=12),
                 st.text(max_size=300)))
@example("a" * 253)
@example("a" * 254)
@example("a" * 253 + ".")
@example("10.0.0.5")
@example("10.0.0.5x")
@example("-._")
@example("web-01.")
def test_the_documented_name_rule_is_the_one_the_api_applies(text: str) -> None:
    """A name the document's pattern (and maxLength) allows is one ``normalize_name`` takes, bar the
    names that read as an IPv4 address, and the other way round (found by schemathesis: the document said
    only "a string", so valid-by-the-document names were refused)."""
    documented = NAME_PATTERN.search(text) is not None and len(text) <= NAME_SCHEMA["maxLength"]
    try:
        normalize_name(text)
    except InvalidSample:
        accepted = False
    else:
        accepted = True
    assert accepted == (documented and not is_ip_address(text.removesuffix("."))), text


def test_names_and_addresses_are_documented_where_the_api_checks_them() -> None:
    parameters = {(parameter["in"], parameter["name"]): parameter["schema"]
                  for operation in (operation for path in DOCUMENT["paths"].values() for operation in path.values())
                  for parameter in operation.get("parameters", [])}
    assert parameters[("path", "name")] == NAME_SCHEMA and parameters[("query", "after")] == NAME_SCHEMA
    assert NAME_SCHEMA in parameters[("path", "id")]["anyOf"] and NAME_SCHEMA in parameters[("query", "node")]["anyOf"]
    assert parameters[("path", "ip")]["oneOf"] == [{"type": "string", "format": "ipv4"},
                                                  {"type": "string", "format": "ipv6"}]
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["Hello"]["properties"]["name"] == NAME_SCHEMA
    assert schemas["Hello"]["properties"]["ip"]["items"] == parameters[("path", "ip")]
    assert schemas["BatchSample"]["allOf"][1]["properties"]["server"] == NAME_SCHEMA


def test_a_range_is_documented_only_for_the_sections_that_keep_history() -> None:
    """from/to on /nodes/{id}/disks, network and processes are a 400 (history is kept for cpu and memory
    only), so the document gives them no query parameters (found by schemathesis)."""
    for section in ("cpu", "memory", "disks", "network", "processes"):
        operation = DOCUMENT["paths"][f"/nodes/{{id}}/{section}"]["get"]
        query = [parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "query"]
        assert query == (["from", "to"] if section in ("cpu", "memory") else []), section


def test_openapi_json_is_served(api: LiveApi) -> None:
    reply = api.get("/openapi.json")
    assert reply.status == 200 and reply.content_type == "application/json"
    served = reply.json
    assert served["openapi"] == "3.1.0"
    assert set(served["paths"]) == set(DOCUMENT["paths"])
    assert api.get("/openapi.json").raw == reply.raw  # built once per application
    assert api.get("/openapiXjson").status == 404


def test_with_a_read_token_openapi_json_is_a_normal_read(api: LiveApi) -> None:
    read, write = "r" * 8 + "0123456789abcdef", "w" * 8 + "0123456789abcdef"
    assert api._server is not None
    app = api._server.request_callback
    assert isinstance(app, tornado.web.Application)
    app.settings["policy"] = RequestPolicy(tokens=AccessTokens.of(write=write, read=read))
    refused = api.get("/openapi.json")
    assert refused.status == 401 and set(refused.json) == {"error"}
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    for token in (read, write):
        reply = api.request("GET", "/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 200 and reply.json["openapi"] == "3.1.0"
