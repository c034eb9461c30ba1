"""Control messages: what the collector tells agents (pause, resume, alive) over the control channel.

The channel runs the other way from ingest: the collector binds a PUB
socket, every agent connects a SUB socket. A message is two ZeroMQ frames,
``[topic, payload]``:

- ``topic`` is the addressed node's canonical name, or ``*`` for every node,
  terminated by a NUL byte (``b"web-01\\0"``, ``b"*\\0"``). ZeroMQ matches
  subscriptions by prefix, so without the terminator an agent subscribed to
  ``web`` would also get what is meant for ``web-01``; a name never holds a
  NUL or a ``*``, so each topic is exactly one node (or all of them).
- ``payload`` is a msgpack map, at most ``MAX_CONTROL_BYTES``:
  ``{"v": 1, "kind": "pause" | "resume", "node": NAME | "*", "ts": float}``;
  ``node`` repeats the topic (a payload whose ``node`` is not its topic is
  refused: a relay cannot re-address it), ``ts`` is when the collector sent
  it (epoch seconds, informative: the agent's clock may differ). Unknown keys
  are ignored.

Kinds:

- ``pause`` and ``resume`` (commands): the addressed agent stops or restarts
  sampling.
- ``alive`` (a heartbeat, ``HEARTBEAT_SECONDS`` apart): always for every
  node, topic ``*\\0``, payload ``{"v": 1, "kind": "alive", "node": "*",
  "ts": float}``; it asks nothing. An agent given several collectors listens
  to every one's control channel and counts a collector silent for its
  ``--failover-after`` as down (see ``agent.collector_choice``). An ``alive``
  addressed to one node is refused (``bad_topic``).

Decoding is validation, with the limits and refusal reasons of the ingest
protocol (``InvalidSample``: ``too_large``, ``not_msgpack``, ``not_a_map``,
``missing_field``, ``bad_version``, ``unknown_kind``, ``bad_name``,
``bad_type``, ``out_of_range``) plus ``bad_frame`` (not two frames) and
``bad_topic``. Nothing is ever unpickled or evaluated.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from .errors import InvalidSample
from .protocol import MAX_NAME_LENGTH, normalize_name

CONTROL_VERSION = 1
PAUSE, RESUME, ALIVE = "pause", "resume", "alive"
COMMAND_KINDS = (PAUSE, RESUME)
CONTROL_KINDS = (*COMMAND_KINDS, ALIVE)
# The collector says it is alive this often: twice a second, so that even the shortest
# ``agent --failover-after`` (1 s) spans two heartbeats and a late one is not a dead collector.
HEARTBEAT_SECONDS = 0.5
ALL_NODES = "*"
TOPIC_END = b"\0"
# A control payload is ~60 bytes plus the name (at most 253): 1 KiB leaves room for unknown keys.
MAX_CONTROL_BYTES = 1024
MAX_TOPIC_BYTES = MAX_NAME_LENGTH + len(TOPIC_END)
# 9999-12-31T23:59:59Z, as for every time the service shows.
MAX_CONTROL_TS = 253_402_300_799.0
_NUMBER_TYPES = (int, float)
_UNPACK_LIMITS = dict(
    raw=False,
    max_str_len=MAX_CONTROL_BYTES,
    max_bin_len=MAX_CONTROL_BYTES,
    max_array_len=16,
    max_map_len=16,
    max_ext_len=MAX_CONTROL_BYTES,
)


class ControlMessage(NamedTuple):
    """One decoded control message: ``kind`` is ``pause``, ``resume`` or ``alive``; ``node`` a canonical name or
    ``*`` (always ``*`` for ``alive``)."""

    kind: str
    node: str
    ts: float

    @property
    def paused(self) -> bool:
        """The state the message asks for."""
        return self.kind == PAUSE

    @property
    def command(self) -> bool:
        """Whether the message asks something of the agent (pause or resume; not a heartbeat)."""
        return self.kind in COMMAND_KINDS


def control_topic(node: str) -> bytes:
    """The topic of messages for ``node`` (a canonical name, or ``*``): its ASCII bytes and a NUL."""
    return node.encode("ascii") + TOPIC_END


def encode_control(paused: bool, node: str, ts: float) -> list[bytes]:
    """The two frames ``[topic, payload]`` asking ``node`` (canonical name or ``*``) to pause or resume."""
    kind = PAUSE if paused else RESUME
    payload = msgpack.packb({"v": CONTROL_VERSION, "kind": kind, "node": node, "ts": float(ts)}, use_bin_type=True)
    return [control_topic(node), payload]


def encode_alive(ts: float) -> list[bytes]:
    """The two frames ``[b"*\\0", payload]`` of a heartbeat: the collector is alive at ``ts``."""
    payload = msgpack.packb({"v": CONTROL_VERSION, "kind": ALIVE, "node": ALL_NODES, "ts": float(ts)},
                            use_bin_type=True)
    return [control_topic(ALL_NODES), payload]


def decode_control(frames: list[bytes]) -> ControlMessage:
    """Decode and validate one control message (its ZeroMQ frames); raise ``InvalidSample`` if bad."""
    if len(frames) != 2:
        raise InvalidSample("bad_frame", f"a control message is 2 frames (topic, payload), got {len(frames)}")
    topic, payload = frames
    if len(topic) > MAX_TOPIC_BYTES or len(payload) > MAX_CONTROL_BYTES:
        raise InvalidSample("too_large", f"control message of {len(topic)} + {len(payload)} bytes exceeds "
                                         f"{MAX_TOPIC_BYTES} + {MAX_CONTROL_BYTES}")
    message = _unpack(payload)
    for key in ("v", "kind", "node", "ts"):
        if key not in message:
            raise InvalidSample("missing_field", f"control message lacks required key {key!r}", key)
    version = message["v"]
    if type(version) is not int or version != CONTROL_VERSION:
        raise InvalidSample("bad_version", f"unsupported control version {_shown(version)}", "v")
    kind = message["kind"]
    if type(kind) is not str or kind not in CONTROL_KINDS:
        raise InvalidSample("unknown_kind", f"unknown control kind {_shown(kind)}", "kind")
    node = message["node"]
    if node != ALL_NODES:
        node = normalize_name(node)
        if node != message["node"]:  # the collector sends canonical names only
            raise InvalidSample("bad_name", f"control node {_shown(message['node'])} is not a canonical name", "node")
        if kind == ALIVE:
            raise InvalidSample("bad_topic", f"an alive message is for every node (*), not {node!r}", "node")
    if topic != control_topic(node):
        raise InvalidSample("bad_topic", f"topic {_shown(topic)} does not address node {node!r}", "node")
    ts = message["ts"]
    if type(ts) not in _NUMBER_TYPES:
        raise InvalidSample("bad_type", "ts must be a number (epoch seconds)", "ts")
    if not 0.0 <= ts <= MAX_CONTROL_TS:  # also false for NaN
        raise InvalidSample("out_of_range", f"ts must be between 0 and {MAX_CONTROL_TS:.0f}", "ts")
    return ControlMessage(kind, node, float(ts))


def _unpack(payload: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(payload, **_UNPACK_LIMITS)
    except ValueError as error:
        if "exceeds max_" in str(error):  # msgpack's own words for a decoder limit
            raise InvalidSample("too_large", f"control payload holds more than the decoder allows: {error}") from None
        raise InvalidSample("not_msgpack", f"control payload is not valid msgpack: {error}") from None
    except (TypeError, msgpack.UnpackException) as error:
        raise InvalidSample("not_msgpack", f"control payload is not valid msgpack: {error}") from None
    if type(message) is not dict:
        raise InvalidSample("not_a_map", f"control payload must be a msgpack map, not {type(message).__name__}")
    return message


def _shown(value: object) -> str:
    """``value`` for an error message: short, and never raw bytes of unknown content."""
    if isinstance(value, (str, bytes)) and len(value) <= 64:
        return repr(value)
    return type(value).__name__
