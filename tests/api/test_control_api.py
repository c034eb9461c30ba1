"""Pause and resume over HTTP, against a live server: ``POST /nodes/{id}/pause|resume`` and the compatible
``GET|POST /start|/stop``; what they publish, what they answer, and what they refuse (changing nothing)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
from hypothesis import given
from hypothesis import strategies as st
from live_api import HTTP_EXAMPLES, SERVER_MAX_BODY, LiveApi, assert_json_error, quote, register

from servertrack.api import make_app
from servertrack.common.nodes import Node
from tests.conftest import FakeClock


class RecordingControl:
    """Stands in for the collector's control channel: records what would be published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []

    def assert_state(self, node: Node) -> bool:
        self.sent.append((node.name, node.paused))
        return True

    def publish_all(self, paused: bool) -> bool:
        self.sent.append(("*", paused))
        return True

    def counters(self) -> dict[str, Any]:
        return {"published": len(self.sent)}


class ControlApi(LiveApi):
    """The live API, served with a recording control channel."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.control = RecordingControl()

    async def _start(self) -> None:
        self._io_loop = tornado.ioloop.IOLoop.current()
        app = make_app(self.aggregator, self.batch, self.inventory, self.stats, self.names, self.clock, self.nodes,
                       control=self.control)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self._server = tornado.httpserver.HTTPServer(app, max_body_size=SERVER_MAX_BODY)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._client = tornado.httpclient.AsyncHTTPClient(force_instance=True)

    def paused(self) -> dict[str, bool]:
        """Whether each node is meant to be paused."""
        return {node.name: node.paused for node, _ in self.nodes.nodes()}


@pytest.fixture
def capi(clock: FakeClock) -> Any:
    api = ControlApi(clock)
    api.start()
    register(api, "web-01", ["10.0.0.5"])
    register(api, "web-02", ["10.0.0.6", "10.0.0.9"])
    register(api, "db-01", ["10.0.0.9"])  # shares 10.0.0.9 with web-02
    yield api
    api.close()


def unchanged(api: ControlApi) -> tuple[dict[str, bool], int]:
    return api.paused(), len(api.control.sent)


# -- POST /nodes/{id}/pause and /resume ----------------------------------------------------------


def test_pause_records_the_desired_state_publishes_it_and_answers_the_node(capi: ControlApi) -> None:
    reply = capi.request("POST", "/nodes/web-01/pause")
    assert reply.status == 200, reply.raw
    body = reply.json
    assert body["name"] == "web-01" and body["paused"] is True
    assert body["state"] == "online"  # until the agent's hello says it is paused
    assert set(capi.get("/nodes/web-01").json) == set(body)
    assert capi.control.sent == [("web-01", True)]
    assert capi.paused() == {"db-01": False, "web-01": True, "web-02": False}
    assert capi.get("/nodes/web-01").json["paused"] is True


def test_resume_by_ip_address(capi: ControlApi) -> None:
    capi.request("POST", "/nodes/web-01/pause")
    reply = capi.request("POST", "/nodes/10.0.0.5/resume")
    assert reply.status == 200 and reply.json["name"] == "web-01" and reply.json["paused"] is False
    assert capi.control.sent == [("web-01", True), ("web-01", False)]


def test_a_paused_agent_reads_paused_in_the_inventory(capi: ControlApi) -> None:
    capi.request("POST", "/nodes/web-02/pause")
    capi.nodes.hello("web-02", ["10.0.0.6"], dict(capi.nodes.get("web-02").info), paused=True)  # type: ignore[union-attr]
    assert [entry["name"] for entry in capi.get("/nodes?state=paused").json["nodes"]] == ["web-02"]
    assert capi.get("/nodes/web-02").json["state"] == "paused"
    assert {entry["name"] for entry in capi.get("/nodes?state=online").json["nodes"]} == {"web-01", "db-01"}


def test_an_empty_json_object_body_is_taken_and_its_keys_ignored(capi: ControlApi) -> None:
    assert capi.request("POST", "/nodes/web-01/pause", "{}").status == 200
    assert capi.request("POST", "/nodes/web-01/resume", '{"why": "maintenance"}').status == 200


@pytest.mark.parametrize(
    ("node", "status", "fragment"),
    [
        ("ghost", 404, "unknown node"),
        ("10.9.9.9", 404, "no node has address"),
        ("10.0.0.9", 409, "several nodes"),
        ("bad name", 400, "neither a node name"),
        ("a" * 300, 400, "neither"),
        ("%1b[2J", 400, "neither"),
        ("%00", 400, "neither"),
        ("-", 400, "neither"),
        ("...", 400, "neither"),
        ("1.2.3", 404, "unknown node"),  # a name: not an IPv4 address
    ],
)
@pytest.mark.parametrize("action", ["pause", "resume"])
def test_a_bad_or_unknown_node_is_a_json_error_and_changes_nothing(capi: ControlApi, node: str, status: int,
                                                                   fragment: str, action: str) -> None:
    before = unchanged(capi)
    path = f"/nodes/{node if '%' in node else quote(node)}/{action}"
    assert_json_error(capi.request("POST", path), status, fragment)
    assert unchanged(capi) == before


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ("[]", None, 400),
        ('"pause"', None, 400),
        ("null", None, 400),
        ("{", None, 400),
        ("NaN", None, 400),
        ("{}", {"Content-Type": "text/plain"}, 415),
        ("x=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        (json.dumps({"pad": "x" * 2000}), None, 413),
    ],
)
def test_a_bad_body_is_refused_and_changes_nothing(capi: ControlApi, body: str, headers: dict[str, str] | None,
                                                   status: int) -> None:
    before = unchanged(capi)
    assert_json_error(capi.request("POST", "/nodes/web-01/pause", body, headers), status)
    assert_json_error(capi.request("POST", "/stop", body, headers), status)
    assert unchanged(capi) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_pause_and_resume_take_post_only(capi: ControlApi, method: str) -> None:
    before = unchanged(capi)
    body = "{}" if method in ("PUT", "PATCH") else None
    assert_json_error(capi.request(method, "/nodes/web-01/pause", body), 405, method)
    assert unchanged(capi) == before


@pytest.mark.parametrize("path", ["/nodes/web-01/pause/", "/nodes/web-01/pause/now", "/nodes/web-01/halt",
                                  "/nodes//pause", "/stop/", "/stopp", "/stop/web-01"])
def test_near_miss_paths_are_404(capi: ControlApi, path: str) -> None:
    before = unchanged(capi)
    assert_json_error(capi.request("POST", path), 404)
    assert unchanged(capi) == before


# -- GET | POST /start and /stop -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_stop_pauses_every_node_and_start_resumes_them(capi: ControlApi, method: str) -> None:
    reply = capi.request(method, "/stop")
    assert reply.status == 200 and reply.content_type == "application/json"
    assert reply.json == {"status": "stopped", "nodes": ["db-01", "web-01", "web-02"]}
    assert capi.paused() == {"db-01": True, "web-01": True, "web-02": True}
    assert capi.control.sent == [("*", True)]  # one message reaches every connected agent
    reply = capi.request(method, "/start")
    assert reply.json == {"status": "started", "nodes": ["db-01", "web-01", "web-02"]}
    assert capi.paused() == {"db-01": False, "web-01": False, "web-02": False}
    assert capi.control.sent == [("*", True), ("*", False)]


def test_stop_with_no_node_known_still_tells_connected_agents(clock: FakeClock) -> None:
    api = ControlApi(clock)
    api.start()
    try:
        assert api.get("/stop").json == {"status": "stopped", "nodes": []}
        assert api.control.sent == [("*", True)]
    finally:
        api.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_stop_and_start_one_node(capi: ControlApi, method: str) -> None:
    assert capi.request(method, "/stop?node=Web-02").json == {"status": "stopped", "nodes": ["web-02"]}
    assert capi.request(method, "/stop?node=10.0.0.5").json == {"status": "stopped", "nodes": ["web-01"]}
    assert capi.paused() == {"db-01": False, "web-01": True, "web-02": True}
    assert capi.request(method, "/start?node=web-02").json == {"status": "started", "nodes": ["web-02"]}
    assert capi.control.sent == [("web-02", True), ("web-01", True), ("web-02", False)]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("node=ghost", 404),
        ("node=10.9.9.9", 404),
        ("node=10.0.0.9", 409),
        ("node=", 400),
        ("node=%20web-01", 400),
        ("node=web-01&node=web-02", 400),
        ("node=bad%0aname", 400),
        ("node=" + "a" * 300, 400),
        ("node=%ff", 400),
    ],
)
@pytest.mark.parametrize("path", ["/stop", "/start"])
def test_a_bad_or_unknown_node_parameter_is_a_json_error(capi: ControlApi, query: str, status: int, path: str) -> None:
    before = unchanged(capi)
    assert_json_error(capi.get(f"{path}?{query}"), status)
    assert unchanged(capi) == before


def test_other_query_parameters_are_ignored(capi: ControlApi) -> None:
    assert capi.get("/stop?force=1").json["status"] == "stopped"


# -- browsers: a page of another site cannot pause the fleet -------------------------------------


@pytest.mark.parametrize("path", ["/stop", "/start", "/stop?node=web-01"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},
        {"Sec-Fetch-Site": "cross-site"},  # an <img src> or a link: no Origin, but the browser says where from
        {"Sec-Fetch-Site": "same-site"},  # another port of this host is another origin
        {"Sec-Fetch-Site": "cross-site", "Origin": "SAME"},
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_cross_site_control_request_is_403_and_changes_nothing(capi: ControlApi, path: str,
                                                                 headers: dict[str, str], method: str) -> None:
    headers = {key: (f"http://127.0.0.1:{capi.port}" if value == "SAME" else value) for key, value in headers.items()}
    before = unchanged(capi)
    assert_json_error(capi.request(method, path, None, headers), 403)
    assert_json_error(capi.request("POST", "/nodes/web-01/pause", None, headers), 403)
    assert unchanged(capi) == before
    assert capi.counters()["http_refused"] == {"bad_origin": 2}


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": "SAME"}])
def test_same_origin_and_typed_in_requests_are_served(capi: ControlApi, headers: dict[str, str]) -> None:
    headers = {key: (f"http://127.0.0.1:{capi.port}" if value == "SAME" else value) for key, value in headers.items()}
    assert capi.request("GET", "/stop", None, headers).status == 200
    assert capi.request("POST", "/nodes/web-01/resume", None, headers).status == 200


@pytest.mark.parametrize("path", ["/stop", "/nodes/web-01/pause"])
def test_a_foreign_host_is_403(capi: ControlApi, path: str) -> None:
    before = unchanged(capi)
    assert_json_error(capi.request("POST", path, None, {"Host": "evil.example"}), 403, "host")
    assert unchanged(capi) == before


# -- counters ------------------------------------------------------------------------------------


def test_stats_show_the_control_channel_counters(capi: ControlApi) -> None:
    capi.request("POST", "/nodes/web-01/pause")
    capi.get("/stop")
    assert capi.get("/stats").json["control"] == {"published": 2}


def test_an_api_without_a_control_channel_records_and_counts_unsent(api: LiveApi) -> None:
    register(api, "web-01")
    assert api.request("POST", "/nodes/web-01/pause").json["paused"] is True
    assert api.get("/stop").status == 200
    assert api.get("/stats").json["control"] == {"published": 0, "pause": 0, "resume": 0, "unsent": 2,
                                                 "heartbeats": 0}


# -- fuzz ----------------------------------------------------------------------------------------


@HTTP_EXAMPLES
@given(raw=st.text(min_size=1, max_size=80), action=st.sampled_from(["pause", "resume"]))
def test_any_node_id_gets_a_json_answer_never_a_500(capi: ControlApi, raw: str, action: str) -> None:
    reply = capi.request("POST", f"/nodes/{quote(raw)}/{action}")
    assert reply.status in (200, 400, 404, 409), (raw, reply.status, reply.raw)
    assert reply.content_type == "application/json"
    reply = capi.get(f"/stop?node={quote(raw)}")
    assert reply.status in (200, 400, 404, 409), (raw, reply.status, reply.raw)
    assert reply.content_type == "application/json"
