"""Unknown paths (404) and wrong methods (405): JSON errors like every other error."""

from __future__ import annotations

import pytest

from live_api import LiveApi, assert_json_error


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/ui"),  # "/" is the dashboard's page
        ("GET", "/ui/nope.js"),
        ("GET", "/nope"),
        ("GET", "/servers/web-01"),
        ("GET", "/servers/web-01/loads/extra"),
        ("GET", "/servers//loads"),
        ("GET", "/server/web-01/loads"),
        ("GET", "/healthz/"),
        ("POST", "/nope"),
        ("DELETE", "/nope"),
    ],
)
def test_an_unknown_path_is_a_json_404(seeded_api: LiveApi, method: str, path: str) -> None:
    before = seeded_api.state()
    assert_json_error(seeded_api.request(method, path), 404)
    assert seeded_api.state() == before


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/servers/seed-01/loads"),
        ("PUT", "/servers/seed-01/loads"),
        ("PATCH", "/servers/seed-01/loads"),
        ("GET", "/loads"),
        ("DELETE", "/loads"),
        ("PUT", "/loads"),
        ("POST", "/servers"),
        ("DELETE", "/servers"),
        ("POST", "/healthz"),
        ("POST", "/stats"),
        ("DELETE", "/stats"),
    ],
)
def test_a_method_a_route_does_not_support_is_a_json_405(seeded_api: LiveApi, method: str, path: str) -> None:
    body = '{"cpu": 1, "ram": 2}' if method in ("PUT", "PATCH") else None
    before = seeded_api.state()
    assert_json_error(seeded_api.request(method, path, body), 405, method)
    assert seeded_api.state() == before


def test_a_method_unknown_to_http_is_a_json_405(seeded_api: LiveApi) -> None:
    assert_json_error(seeded_api.request("PROPFIND", "/servers/seed-01/loads"), 405)


def test_a_405_names_the_methods_the_route_allows(seeded_api: LiveApi) -> None:
    """RFC 9110: a 405 carries ``Allow``; it lists exactly the methods ``/openapi.json`` documents for the path
    (found by schemathesis: TRACE /stats was a 405 without it)."""
    paths = seeded_api.get("/openapi.json").json["paths"]
    values = {"{pid}": "1", "{mode}": "last_minute"}
    for template, operations in paths.items():
        path = template
        for name, value in values.items():
            path = path.replace(name, value)
        path = "/".join("seed-01" if part.startswith("{") else part for part in path.split("/"))
        reply = seeded_api.request("TRACE", path)
        assert_json_error(reply, 405, "TRACE")
        allowed = sorted(method.strip() for method in reply.headers.get("Allow", "").split(","))
        assert allowed == sorted(method.upper() for method in operations), (template, reply.headers.get("Allow"))
    assert seeded_api.request("DELETE", "/stats").headers["Allow"] == "GET"
