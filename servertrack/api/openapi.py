"""``GET /openapi.json``: an OpenAPI 3.1 document of every route, native and compatible.

``ROUTES`` describes each route, keyed by its pattern exactly as ``app.py``
(and ``cluster_handlers.cluster_routes``) spell it: the name of each free path
segment and, per method, its query parameters, body and answer. The document
is built from the application's own routing table: a group of literals
(``(cpu|memory)``) becomes one path per literal, a free group (``([^/]+)``)
a ``{name}``, an optional final slash is dropped. Security comes from the
handler classes themselves (``NEEDS_TOKEN``, ``STATE_CHANGING_METHODS``), so
a write is documented as needing the write token exactly when it does.
``tests/api/test_openapi.py`` fails on any route the table lacks, any entry
that names no route, and any method documented but not implemented (or the
reverse).
"""

from __future__ import annotations

import itertools
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import tornado.routing
import tornado.web

from .. import __version__
from ..common.fleet import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, MAX_TEXT, SORT_KEYS
from ..common.nodes import NODE_STATES
from ..common.protocol import MAX_NAME_LENGTH
from .handlers import DEFAULT_PAGE, MAX_PAGE, JsonHandler
from .load_bodies import MAX_BATCH_ITEMS
from .node_handlers import DEFAULT_SUMMARY_WINDOW, SUMMARY_WINDOWS
from .perf_views import PERF_MODES

__all__ = ["ROUTES", "Operation", "Route", "build_document", "path_templates", "route_table", "OpenApiHandler"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NUMBER = {"type": "number"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_LOAD = {"type": "number", "minimum": 0, "maximum": 100}
_OBJECT = {"type": "object"}  # a shape documented in the README (node sections, snapshots)
# A server or node name as protocol.normalize_name takes it: its characters, at least one letter or digit
# (one name that reads as an IPv4 address, such as 10.0.0.5, is refused too, which a pattern cannot say).
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]*[A-Za-z0-9][A-Za-z0-9._-]*$", "maxLength": MAX_NAME_LENGTH,
         "description": "1 to 253 of A-Z a-z 0-9 . _ - with a letter or digit, compared without case"}
_ADDRESS = {"oneOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
_NODE_ID = {"anyOf": [_NAME, _ADDRESS], "description": "a node's name or IP address"}


def _object(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _nullable(name: str) -> dict[str, Any]:
    return {"oneOf": [_ref(name), {"type": "null"}]}


SCHEMAS: dict[str, Any] = {
    "Error": _object(("error",), error={"type": "string", "minLength": 1}),
    "Accepted": _object(("accepted",), accepted={"type": "integer", "minimum": 0}),
    "Sample": _object(("cpu", "ram"), cpu=_LOAD, ram=_LOAD,
                      ts={"type": "number", "description": "epoch seconds; default: when it is received"}),
    "BatchSample": {"allOf": [_ref("Sample"), _object(("server",), server=_NAME)]},
    "MinMaxAvg": _object(("avg", "min", "max"), avg=_NUMBER, min=_NUMBER, max=_NUMBER),
    "Bucket": _object(("start", "samples", "cpu", "ram"), start=_TIME, samples={"type": "integer"},
                      cpu=_nullable("MinMaxAvg"), ram=_nullable("MinMaxAvg")),
    "SecondBucket": _object(("start", "samples", "cpu", "ram"), start=_TIME, samples={"type": "integer"},
                            cpu=_NULLABLE_NUMBER, ram=_NULLABLE_NUMBER),
    "ServerLoads": {"description": "the windows (no from/to/step) or a range (from, to or step given)",
                    "oneOf": [
                        _object(("server", "minutes", "hours"), server={"type": "string"},
                                last_seen={"type": ["string", "null"]},
                                minutes={"type": "array", "items": _ref("Bucket")},
                                hours={"type": "array", "items": _ref("Bucket")}),
                        _object(("server", "step", "from", "to", "buckets"), server={"type": "string"},
                                step={"enum": ["minute", "hour"]}, **{"from": _TIME, "to": _TIME},
                                kept_from=_TIME, buckets={"type": "array", "items": _ref("Bucket")})]},
    "ServerSeconds": _object(("server", "seconds"), server={"type": "string"}, last_seen={"type": ["string", "null"]},
                             seconds={"type": "array", "items": _ref("SecondBucket")}),
    "ServerSummary": _object(("server", "from", "to", "step", "samples"), server={"type": "string"},
                             step={"enum": ["minute", "hour"]}, samples={"type": "integer"},
                             cpu=_nullable("MinMaxAvg"), ram=_nullable("MinMaxAvg"),
                             **{"from": _TIME, "to": _TIME}),
    "ServerPage": _object(("servers", "next_after"), servers={"type": "array", "items": _OBJECT},
                          next_after={"type": ["string", "null"], "description": "give as ?after= for the next page"}),
    "Metrics": {"type": "string", "description": "Prometheus text exposition format 0.0.4 (see the README's "
                                                 "Prometheus section)"},
    "Health": _object(("status",), status={"const": "ok"}, store={"type": "string"}),
    "Stats": _object(("received", "applied", "dropped", "lost", "kinds"), received={"type": "integer"},
                     applied={"type": "integer"}, dropped={"type": "object",
                                                           "additionalProperties": {"type": "integer"}},
                     lost={"type": "integer"}, servers={"type": "integer"}, nodes={"type": "integer"},
                     pending={"type": "integer"}, kinds=_OBJECT, http_refused=_OBJECT),
    "Node": _object(("name", "state"), name={"type": "string"}, hostname={"type": ["string", "null"]},
                    state={"enum": list(NODE_STATES)}, last_seen={"type": ["string", "null"]},
                    ips={"type": "array", "items": {"type": "string"}}),
    "NodeList": _object(("nodes",), nodes={"type": "array", "items": _ref("Node")}),
    "NodeDetail": {"allOf": [_ref("Node"), _object(
        boottime=_NULLABLE_NUMBER, boot_time={"type": ["string", "null"]}, uptime=_NULLABLE_NUMBER,
        loadavg={"type": ["array", "null"]}, cpu_usage_percent={"type": ["array", "null"]},
        memory_usage_percent=_NULLABLE_NUMBER, paused={"type": "boolean"})]},
    "Hello": _object(("name", "ip"), name=_NAME, ip={"type": "array", "items": _ADDRESS},
                     hostname={"type": "string"}, boot_time=_NUMBER, os={"type": "string"},
                     platform={"type": "string"}, cpu_count={"type": "integer"}, memory_total={"type": "integer"},
                     agent_version={"type": "string"}, interval=_NUMBER),
    "ClusterHello": _object(("ip",), ip={"oneOf": [_ADDRESS, {"type": "array", "items": _ADDRESS, "maxItems": 32}]},
                            hostname={"type": "string"}, name={"type": "string"}, boottime=_NUMBER,
                            boot_time=_NUMBER),
    "Snapshot": {**_OBJECT, "description": "the snapshot shape of the README (cpu, memory, disks, network, processes)"},
    "Section": {**_OBJECT, "description": "one section of the node's latest snapshot"},
    "SnapshotHistory": {"type": "object", "description": "one entry per kept snapshot, keyed YYYY-MM-DD HH:MM:SS (UTC)",
                        "additionalProperties": _OBJECT},
    "Process": _object(("pid",), pid={"type": "integer"}, name={"type": "string"}, user={"type": ["string", "null"]},
                       status={"type": "string"}, cpu_percent=_NUMBER, rss={"type": "integer"},
                       memory_percent=_NUMBER, create_time=_NUMBER, cmdline={"type": "string"}),
    "Pids": {"type": "array", "items": {"type": "integer"}, "maxItems": 40},
    "NodeSummary": {**_OBJECT, "description": "min/max/avg cpu and ram over the window or range, uptime"},
    "FleetControl": _object(("status", "nodes"), status={"enum": ["stopped", "started"]},
                            nodes={"type": "array", "items": {"type": "string"}}),
    "PerfEntry": _object(("cpuload", "memload", "interval", "samples", "time"), cpuload=_NULLABLE_NUMBER,
                         memload=_NULLABLE_NUMBER, interval={"enum": [1, 60, 3600]}, samples={"type": "integer"},
                         time={"type": "string", "description": "bucket start in UTC, no zone suffix"}),
    "PerfForm": _object(("cpuload", "memload"), cpuload=_LOAD, memload=_LOAD),
    "ServerHistory": _object(("last_60_minutes", "last_24_hours"), last_60_minutes=_OBJECT, last_24_hours=_OBJECT),
    "GetStats": _object(("current_stat", "past_stat"), current_stat={"type": ["object", "null"]}, past_stat=_OBJECT),
    "Addresses": {"type": "array", "items": {"type": "string"}},
    "FleetRow": _object(("name", "node", "state", "last_seen", "cpu", "ram", "spark"), name={"type": "string"},
                        node={"type": "boolean", "description": "an agent reports it (else: loads over HTTP only)"},
                        state={"enum": list(NODE_STATES)}, last_seen={"type": ["string", "null"]},
                        cpu={**_LOAD, "type": ["number", "null"], "description": "its newest second of the last 60"},
                        ram={**_LOAD, "type": ["number", "null"]},
                        spark={"oneOf": [{"type": "null"}, _object(
                            ("start", "step", "cpu", "ram"), start=_TIME, step={"const": 60},
                            cpu={"type": "array", "items": _NULLABLE_NUMBER, "minItems": 60, "maxItems": 60},
                            ram={"type": "array", "items": _NULLABLE_NUMBER, "minItems": 60, "maxItems": 60})]}),
    "FleetPage": _object(("now", "total", "matched", "offset", "limit", "sort", "order", "states", "rows"),
                         now=_TIME, total={"type": "integer"}, matched={"type": "integer"},
                         offset={"type": "integer"}, limit={"type": "integer"}, sort={"enum": list(SORT_KEYS)},
                         order={"enum": ["asc", "desc"]},
                         states=_object(tuple(NODE_STATES), **{state: {"type": "integer"} for state in NODE_STATES}),
                         rows={"type": "array", "items": _ref("FleetRow")}),
    "Html": {"type": "string", "description": "the dashboard's page"},
    "UiFile": {"type": "string", "description": "a file of the dashboard (script, styles, chart library, icon)"},
    "Document": {**_OBJECT, "description": "this OpenAPI document"},
}

QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "from": {"description": "range start: ISO-8601, YYYY-MM-DD HH:MM:SS (UTC) or epoch seconds",
             "schema": {"type": "string"}},
    "to": {"description": "range end (default: now), as from", "schema": {"type": "string"}},
    "step": {"description": "bucket width (default: minute up to 24 h, else hour)",
             "schema": {"enum": ["minute", "hour"]}},
    "limit": {"description": "page size",
              "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}},
    "after": {"description": "the next_after of the previous page (a server name)", "schema": _NAME},
    "state": {"description": "only the nodes in this state",
              "schema": {"enum": list(NODE_STATES)}},
    "window": {"description": "the live window (not with from/to)", "schema": {"enum": list(SUMMARY_WINDOWS), "default": DEFAULT_SUMMARY_WINDOW}},
    "q": {"description": "only the entries whose name contains this", "schema": {"type": "string", "maxLength": MAX_TEXT}},
    "fleet_name": {"name": "name", "description": "only the entry of exactly this name", "schema": {"type": "string"}},
    "fleet_state": {"name": "state", "description": "only the entries in this state",
                    "schema": {"enum": list(NODE_STATES)}},
    "min_cpu": {"description": "only the entries whose current cpu is at least this",
                "schema": {"type": "number", "minimum": 0, "maximum": 100}},
    "min_ram": {"description": "only the entries whose current ram is at least this",
                "schema": {"type": "number", "minimum": 0, "maximum": 100}},
    "sort": {"description": "sort key (ties in name order; entries without a value last)",
             "schema": {"enum": list(SORT_KEYS), "default": "name"}},
    "order": {"description": "default: asc by name, desc by anything else", "schema": {"enum": ["asc", "desc"]}},
    "offset": {"description": "entries to skip", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                                                            "default": 0}},
    "fleet_limit": {"name": "limit", "description": "page size",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
    "node": {"description": "a node's name or IP address (optional while exactly one node is known, or for "
                            "/start and /stop: every node)", "schema": _NODE_ID},
}

ERROR_TEXTS = {400: "invalid request", 401: "no valid token (WWW-Authenticate: Bearer)", 403: "foreign Host or Origin",
               404: "unknown server, node or path", 405: "method not allowed", 409: "an address several nodes share",
               413: "body too large", 415: "wrong Content-Type",
               503: "queue or registry full, or the store cannot be read now (a range, or another collector's "
                    "server or node in a fleet)"}


@dataclass(frozen=True)
class Operation:
    """One method of a route: its answer, parameters and body."""

    summary: str
    response: str  # the name of the schema of the 2xx answer
    status: int = 200
    query: tuple[str, ...] = ()
    body: str | None = None  # the name of the schema of the JSON (or, with form, form-encoded) body
    form: bool = False
    errors: tuple[int, ...] = (400, 404)
    media: str = "application/json"  # the answer's media type
    # Where a route's literal group has choices, the paths that take ``query`` by their last segment
    # (None: all of them); the others take no query parameter.
    query_on: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Route:
    """A route of ``app.py``: the name of each free path segment and its operations by method."""

    tag: str
    names: tuple[str, ...]
    operations: dict[str, Operation] = field(default_factory=dict)


_RANGE = ("from", "to", "step")
_WRITE = (400, 404, 413, 415, 503)
_NODE_READ = (400, 404, 409)
# What the /cluster routes share with the native ones (their handlers are the native ones by address).
_NODE_WRITES = {
    "PUT": Operation("store a node's snapshot", "NodeDetail", body="Snapshot", errors=(*_WRITE, 409)),
    "DELETE": Operation("forget a node (its load history stays)", "Empty", 204, errors=_NODE_READ)}
_PROCESS_IDS = {"GET": Operation("the pids the latest snapshot holds", "Pids", errors=_NODE_READ)}
_PROCESS = {"GET": Operation("one process of the latest snapshot", "Process", errors=_NODE_READ)}

ROUTES: dict[str, Route] = {
    r"/servers/([^/]+)/loads": Route("servers", ("name",), {
        "GET": Operation("a server's minute and hour windows, or a range with from/to/step", "ServerLoads",
                         query=_RANGE),
        "POST": Operation("record one sample", "Accepted", 202, body="Sample", errors=_WRITE)}),
    r"/servers/([^/]+)/summary": Route("servers", ("name",), {
        "GET": Operation("min/max/avg over a range (default: the last 60 minutes)", "ServerSummary",
                         query=("from", "to"))}),
    r"/servers/([^/]+)/seconds": Route("servers", ("name",), {
        "GET": Operation("a server's last 60 seconds", "ServerSeconds")}),
    r"/loads": Route("servers", (), {
        "POST": Operation("record many samples, all or nothing (at most 10,000)", "Accepted", 202,
                          body="BatchSamples", errors=(400, 413, 415, 503))}),
    r"/servers": Route("servers", (), {
        "GET": Operation("known servers sorted by name, paged", "ServerPage", query=("limit", "after"),
                         errors=(400,))}),
    r"/fleet": Route("servers", (), {
        "GET": Operation("every server and node: filtered, sorted and paged here, with current loads and 60-minute "
                         "sparklines (the dashboard's fleet view)", "FleetPage",
                         query=("q", "fleet_name", "fleet_state", "min_cpu", "min_ram", "sort", "order", "offset", "fleet_limit"),
                         errors=(400,))}),
    r"/": Route("dashboard", (), {
        "GET": Operation("the web dashboard (never needs a token: the page asks for it)", "Html", errors=(),
                         media="text/html"),
        "HEAD": Operation("the headers of GET", "Empty", errors=())}),
    r"/ui/(.*)": Route("dashboard", ("path",), {
        "GET": Operation("a file of the dashboard", "UiFile", errors=(404,), media="application/octet-stream"),
        "HEAD": Operation("the headers of GET", "Empty", errors=(404,))}),
    r"/healthz": Route("service", (), {"GET": Operation("the process is up (never needs a token)", "Health",
                                                        errors=())}),
    r"/stats": Route("service", (), {"GET": Operation("ingest counters", "Stats", errors=())}),
    r"/metrics": Route("service", (), {"GET": Operation("the same figures in the Prometheus text format", "Metrics",
                                                       errors=(), media="text/plain; version=0.0.4")}),
    r"/openapi\.json": Route("service", (), {"GET": Operation("this document", "Document", errors=())}),
    r"/nodes": Route("nodes", (), {
        "GET": Operation("the node inventory", "NodeList", query=("state",), errors=(400,)),
        "POST": Operation("register or refresh a node (a hello)", "NodeDetail", 201, body="Hello",
                          errors=(400, 409, 413, 415, 503))}),
    r"/nodes/([^/]+)": Route("nodes", ("id",), {
        "GET": Operation("a node's summary, by name or IP address", "NodeDetail", errors=_NODE_READ), **_NODE_WRITES}),
    r"/nodes/([^/]+)/(cpu|memory|disks|network|processes)": Route("nodes", ("id",), {
        "GET": Operation("a section of the latest snapshot; cpu and memory take a range (from/to)",
                         "SectionOrHistory", query=("from", "to"), query_on=("cpu", "memory"),
                         errors=_NODE_READ)}),
    r"/nodes/([^/]+)/processes/([^/]+)": Route("nodes", ("id", "pid"), {
        "GET": Operation("one of the top processes", "Process", errors=_NODE_READ)}),
    r"/nodes/([^/]+)/proc": Route("nodes", ("id",), _PROCESS_IDS),
    r"/nodes/([^/]+)/proc/([^/]+)": Route("nodes", ("id", "pid"), _PROCESS),
    r"/nodes/([^/]+)/summary": Route("nodes", ("id",), {
        "GET": Operation("min/max/avg cpu and ram over a window or a range", "NodeSummary",
                         query=("window", "from", "to"), errors=_NODE_READ)}),
    r"/nodes/([^/]+)/(pause|resume)": Route("control", ("id",), {
        "POST": Operation("pause or resume a node's agent (body: empty or a JSON object)", "NodeDetail",
                          errors=(400, 404, 409, 413, 415))}),
    r"/(start|stop)": Route("control", (), {
        "GET": Operation("pindrop's call: resume or pause every node, or ?node= (changes state)", "FleetControl",
                         query=("node",), errors=_NODE_READ),
        "POST": Operation("resume or pause every node, or ?node=", "FleetControl", query=("node",),
                          errors=(*_NODE_READ, 413, 415))}),
    r"/perf/([^/]+)/?": Route("perf", ("name",), {
        "GET": Operation("always a 404 naming the modes: read /perf/{name}/{mode}", "Error", 404, errors=(400,)),
        "POST": Operation("one sample, stamped with its receive time (the final slash is optional)", "Accepted",
                          202, body="PerfForm", form=True, errors=_WRITE)}),
    r"/perf/([^/]+)/([^/]+)": Route("perf", ("name", "mode"), {
        "GET": Operation("one window of a server, oldest first", "PerfEntries")}),
    r"/server/([^/]+)/?": Route("server", ("name",), {
        "GET": Operation("a server's 60 minute and 24 hour averages", "ServerHistory"),
        "POST": Operation("record one sample (the native POST)", "Accepted", 202, body="Sample", errors=_WRITE)}),
    r"/get_stats": Route("pindrop", (), {
        "GET": Operation("pindrop's one-machine stats; past_stat over a range with from/to", "GetStats",
                         query=("node", "from", "to"), errors=_NODE_READ)}),
    r"/cluster/nodes": Route("cluster", (), {
        "GET": Operation("each node's first non-loopback address", "Addresses", errors=()),
        "POST": Operation("register or refresh a node (201 with Location if new, 200 if known)", "NodeDetail",
                          201, body="ClusterHello", errors=(400, 409, 413, 415, 503))}),
    r"/cluster/nodes/([^/]+)": Route("cluster", ("ip",), {
        "GET": Operation("a node's summary, by IP address", "NodeDetail", errors=_NODE_READ), **_NODE_WRITES}),
    r"/cluster/nodes/([^/]+)/(cpu|memory)": Route("cluster", ("ip",), {
        "GET": Operation("a section of the latest snapshot, or its history with from/to", "SectionOrHistory",
                         query=("from", "to"), errors=_NODE_READ)}),
    r"/cluster/nodes/([^/]+)/proc": Route("cluster", ("ip",), _PROCESS_IDS),
    r"/cluster/nodes/([^/]+)/proc/([^/]+)": Route("cluster", ("ip", "pid"), _PROCESS),
    r"/cluster/([^/]+)/(cpu|memory)": Route("cluster", ("ip",), {
        "GET": Operation("the transcript's history call (a missing from: an hour before to)", "SnapshotHistory",
                         query=("from", "to"), errors=_NODE_READ)}),
}

SCHEMAS.update({
    "BatchSamples": {"type": "array", "items": _ref("BatchSample"), "maxItems": MAX_BATCH_ITEMS},
    "PerfEntries": {"type": "array", "items": _ref("PerfEntry")},
    "SectionOrHistory": {"oneOf": [_ref("Section"), _ref("SnapshotHistory")]},
})
_PATH_SCHEMAS = {"pid": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                 "mode": {"enum": list(PERF_MODES)}, "name": _NAME, "id": _NODE_ID, "ip": _ADDRESS}

_GROUP = re.compile(r"\(([^()]*)\)")
_LITERALS = re.compile(r"[A-Za-z_]+(\|[A-Za-z_]+)*")


def path_templates(pattern: str, names: tuple[str, ...]) -> list[str]:
    """The OpenAPI paths of a route pattern: one per choice of its literal groups (``(cpu|memory)``), each
    free group the ``{name}`` of ``names`` in order; an optional final slash (``/?``) is dropped."""
    pieces = _GROUP.split(pattern.removesuffix("/?"))
    literals, groups = pieces[0::2], pieces[1::2]
    free = iter(names)
    choices = [group.split("|") if _LITERALS.fullmatch(group) else ["{" + next(free) + "}"] for group in groups]
    if next(free, None) is not None:
        raise ValueError(f"{pattern}: more names than free segments: {names}")
    literals = [re.sub(r"\\(.)", r"\1", literal) for literal in literals]  # /openapi\.json
    return ["".join(part for pair in itertools.zip_longest(literals, chosen, fillvalue="") for part in pair)
            for chosen in itertools.product(*choices)]


def route_table(app: tornado.web.Application) -> Iterator[tuple[str, type[tornado.web.RequestHandler]]]:
    """``(pattern, handler class)`` of every route of ``app``, in order (the pattern without its final ``$``)."""
    for rule in app.wildcard_router.rules:
        if isinstance(rule.matcher, tornado.routing.PathMatches) and isinstance(rule.target, type):
            yield rule.matcher.regex.pattern.removesuffix("$"), rule.target


def _operation(template: str, method: str, operation: Operation, route: Route,
               handler: type[tornado.web.RequestHandler]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(name, {"type": "string"})}
        for name in route.names]
    # a key of QUERY_PARAMETERS may name another parameter (two routes' ``state`` or ``limit`` differ)
    if operation.query_on is None or template.rsplit("/", 1)[-1] in operation.query_on:
        parameters += [{"name": name, "in": "query", "required": False, **QUERY_PARAMETERS[name]}
                       for name in operation.query]
    answer: dict[str, Any] = {"description": operation.summary}
    if operation.response != "Empty":
        answer["content"] = {operation.media: {"schema": _ref(operation.response)}}
    responses: dict[str, Any] = {str(operation.status): answer}
    errors = set(operation.errors) | {403}
    if {"from", "to"} & set(operation.query):  # a range reads the store: a 503 while it cannot be read
        errors.add(503)
    if method == "GET" and route.names and route.tag in ("servers", "nodes", "cluster", "perf", "server"):
        errors.add(503)  # a fleet reads another collector's server or node from the store
    security: list[dict[str, list[str]]] = [{}]
    if getattr(handler, "NEEDS_TOKEN", False):
        writes = method in getattr(handler, "STATE_CHANGING_METHODS", ())
        errors.add(401)
        security = [{}, {"bearer": []}]
        token = "the write token (--write-token)" if writes else "the read or write token (--read-token)"
        description = f"Needs {token} when serve has it."
    else:
        description = "Never needs a token."
    for status in sorted(errors):
        responses[str(status)] = {"description": ERROR_TEXTS[status], "content": {
            "application/json": {"schema": _ref("Error")}}}
    document: dict[str, Any] = {
        "operationId": method.lower() + "_" + (re.sub(r"[^A-Za-z0-9]+", "_", template).strip("_") or "root"),
        "summary": operation.summary, "description": description, "tags": [route.tag],
        "security": security, "responses": responses}
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        media = "application/x-www-form-urlencoded" if operation.form else "application/json"
        document["requestBody"] = {"required": True, "content": {media: {"schema": _ref(operation.body)}}}
    return document


def build_document(app: tornado.web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes that ``ROUTES`` describes."""
    paths: dict[str, Any] = {}
    for pattern, handler in route_table(app):
        route = ROUTES.get(pattern)
        if route is None:
            continue  # the test of the table fails on it
        for template in path_templates(pattern, route.names):
            paths[template] = {method.lower(): _operation(template, method, operation, route, handler)
                               for method, operation in route.operations.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ServerTrack", "version": __version__,
                 "description": "Fleet-load monitor: the native API and the earlier monitors' APIs. Every error is "
                                "a JSON {\"error\": \"...\"}. Write requests carry Content-Type application/json "
                                "(/perf: application/x-www-form-urlencoded)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "serve --write-token (writes, and GET /start|/stop) and --read-token (reads)"}}},
    }


_DOCUMENTS: weakref.WeakKeyDictionary[tornado.web.Application, bytes] = weakref.WeakKeyDictionary()


class OpenApiHandler(JsonHandler):
    """``GET /openapi.json``: this application's OpenAPI document (a read like any other)."""

    def get(self) -> None:
        document = _DOCUMENTS.get(self.application)
        if document is None:
            document = _DOCUMENTS[self.application] = orjson.dumps(build_document(self.application))
        self.set_status(200)
        self.finish(document)
