"""Influx line-protocol sender: N simulated servers POSTed in batches of 1,000 lines, paced.

What it does
    Opens ``--connections`` keep-alive HTTP/1.1 connections to a 127.0.0.1
    endpoint that takes InfluxDB line protocol (VictoriaMetrics' ``/write``)
    and sends ``--rate`` lines per second, round-robin over ``--servers``
    servers, in bodies of 1,000 lines (``POST /write?precision=ms``), at most
    one request outstanding per connection. One line is one report of one
    server, the same data as one ServerTrack sample::

        load,server=srv-000123.bench cpu=12.34,ram=56.78 1764079200123

    The names, loads and their order are those of ``bench/loadgen.py``
    (``server_name``, the same 1,024-value pool, the same per-server seq
    walk through it), timestamps are the send time in milliseconds.

How it stays cheap
    Every server's ``load,server=NAME cpu=`` prefix and every value's text
    are encoded once; a line is one concatenation of three pre-encoded parts
    and a body is one ``join`` with the batch's `` <ts>\\n`` tail, about
    0.5 us a line here (a ZeroMQ frame of ``loadgen.py`` costs about the same
    to build; its send costs more). A batch is sent as soon as its first line
    is due (``int(rate * elapsed) + 1000`` lines may have gone), so the sender
    runs at most one batch ahead of the schedule; it counts how long it waited
    with a batch due and every connection busy (the server pushing back) apart
    from its own CPU.

Probe
    With ``--probe NAME`` the next batch after every 0.1 s also carries one
    line of server NAME (``cpu=1,ram=1``, the batch's timestamp), so a
    benchmark can time from send to visible in queries; its timestamps are
    reported.

Modes
    python bench/influx_sender.py --url http://127.0.0.1:8428/write --rate 100000 --seconds 10
    python bench/influx_sender.py --url ... --steps --probe peer-probe.bench   # used by bench/peers.py:
        one JSON command a line on stdin ({"rate": R, "seconds": S}); prints
        {"ready": true} once connected and one JSON result line per command;
        the connections and every server's seq carry on between commands.
    python bench/influx_sender.py --self-test --seconds 5   # top speed into a sink that answers 204
    --rate 0 is unpaced. Each phase stops after ``seconds * 1.5 + 2`` s whatever
    happens; SIGTERM/SIGINT stop it (it still reports). Only 127.0.0.1 is allowed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from loadgen import MAX_STEP_SECONDS, PROBE_INTERVAL, read_commands, server_name

BATCH_LINES = 1_000
MEASUREMENT = "load"
UNPACED_LINES_PER_SECOND_CAP = 10_000_000  # the bound on lines when --rate 0
RESPONSE_DRAIN_SECONDS = 30.0  # the longest a phase waits for its last responses
RECV_BYTES = 65_536
_RAM = b",ram="


def line_prefix(name: str) -> bytes:
    """``load,server=NAME cpu=``: the constant start of every line of server ``name``.

    Names are simulated ``srv-000123.bench``: no character the line protocol
    would need escaped (space, comma, equals sign).
    """
    if any(c in name for c in " ,=\\\n\""):
        raise ValueError(f"server name needs escaping in line protocol: {name!r}")
    return f"{MEASUREMENT},server={name} cpu=".encode()


def format_value(value: float) -> bytes:
    """A float field as line protocol writes it (``12.34``; ``50.0`` for whole numbers)."""
    return repr(float(value)).encode()


def probe_line(name: str, ts_ms: int) -> bytes:
    """One line of the probe server at ``ts_ms`` (milliseconds)."""
    return line_prefix(name) + b"1,ram=1 %d\n" % ts_ms


class LineBatcher:
    """Line-protocol bodies for servers ``first .. first + count - 1``, keeping each server's seq."""

    def __init__(self, first: int, count: int, seed: int = 1) -> None:
        self.count = count
        self.prefixes = [line_prefix(server_name(i)) for i in range(first, first + count)]
        self.seq = [0] * count
        self.cursor = 0
        rng = random.Random(seed)  # the same pool as loadgen.FrameFactory
        loads = [round(rng.uniform(0.0, 100.0), 2) for _ in range(1024)]
        self.cpu_texts = [format_value(v) for v in loads]
        self.ram_texts = [_RAM + format_value(v) for v in loads]

    def body(self, size: int, ts_ms: int) -> bytes:
        """The next ``size`` lines (round-robin over the servers), all stamped ``ts_ms``."""
        prefixes, seqs, cpus, rams, count = self.prefixes, self.seq, self.cpu_texts, self.ram_texts, self.count
        cursor = self.cursor
        lines: list[bytes] = []
        append = lines.append
        for _ in range(size):
            seq = seqs[cursor]
            seqs[cursor] = seq + 1
            append(prefixes[cursor] + cpus[(cursor + seq) & 1023] + rams[(cursor * 7 + seq * 3 + 512) & 1023])
            cursor += 1
            if cursor == count:
                cursor = 0
        self.cursor = cursor
        tail = b" %d\n" % ts_ms
        return tail.join(lines) + tail


@dataclass
class Response:
    """One HTTP response read off a connection."""

    status: int
    close: bool  # the server will close the connection after it


def parse_response(buffer: bytes) -> tuple[Response, bytes] | None:
    """The first complete HTTP/1.1 response in ``buffer`` and the bytes after it, or None if incomplete.

    Handles ``Content-Length`` and ``Transfer-Encoding: chunked`` bodies (read
    and discarded); raises ``ValueError`` on something that is not HTTP.
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buffer) > 65_536:
            raise ValueError("response head over 64 KiB")
        return None
    lines = buffer[:head_end].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    length, chunked, close = 0, False, parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    body_start = head_end + 4
    if chunked:
        end = buffer.find(b"\r\n0\r\n\r\n", body_start - 2)
        if end < 0:
            return None
        return Response(status, close), buffer[end + 7 :]
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    if len(buffer) < body_start + length:
        return None
    return Response(status, close), buffer[body_start + length :]


class _Connection:
    """A keep-alive connection with at most one request outstanding."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.buffer = b""
        self.busy = False

    def close(self) -> None:
        self.sock.close()


class ConnectionPool:
    """``connections`` keep-alive connections POSTing to one path; counts statuses and errors."""

    def __init__(self, host: str, port: int, path: str, connections: int) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"the influx sender only talks to 127.0.0.1, not {host}")
        self.host, self.port = host, port
        self.head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/plain\r\n".encode()
        self.selector = selectors.DefaultSelector()
        self.idle: list[_Connection] = []
        self.busy = 0
        self.statuses: dict[int, int] = {}
        self.connection_errors = 0
        for _ in range(connections):
            self._open()

    def _open(self) -> None:
        conn = _Connection(self.host, self.port)
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        self.idle.append(conn)

    def _drop(self, conn: _Connection) -> None:
        # An idle connection the server closed (a keep-alive timeout) must leave the idle list too, or the
        # next post would write to its closed socket and drop it a second time.
        if conn in self.idle:
            self.idle.remove(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.close()
        if conn.busy:
            self.busy -= 1
        self._open()

    def post(self, body: bytes) -> None:
        """Send ``body`` on an idle connection (the caller checks ``self.idle`` first)."""
        conn = self.idle.pop()
        try:
            conn.sock.sendall(b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body))
        except OSError:
            self.connection_errors += 1
            self._drop(conn)
            return
        conn.busy = True
        self.busy += 1

    def wait(self, timeout: float) -> None:
        """Read what arrived within ``timeout`` seconds; connections whose answer is complete become idle."""
        for key, _ in self.selector.select(max(0.0, timeout)):
            conn: _Connection = key.data
            try:
                chunk = conn.sock.recv(RECV_BYTES)
            except OSError:
                chunk = b""
            if not chunk:
                self.connection_errors += 1
                self._drop(conn)
                continue
            conn.buffer += chunk
            try:
                parsed = parse_response(conn.buffer)
            except ValueError:
                self.connection_errors += 1
                self._drop(conn)
                continue
            if parsed is None:
                continue
            response, conn.buffer = parsed
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            conn.busy = False
            self.busy -= 1
            if response.close:
                self._drop(conn)
            else:
                self.idle.append(conn)

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


@dataclass
class PhaseResult:
    """One paced phase of the sender."""

    target_rate: int
    servers: int
    sent: int  # lines (probe lines apart)
    seconds: float  # from the first to the last request sent
    rate: float
    cpu_seconds: float
    cpu_percent: float  # of one core
    max_lag_seconds: float  # the most the sent count was ever behind the schedule
    server_wait_seconds: float  # time waited with a batch due and every connection busy
    drain_seconds: float  # after the last send, until every answer was in
    requests: int
    answered: int  # 2xx answers
    statuses: dict[str, int] = field(default_factory=dict)  # every other status, by code
    connection_errors: int = 0
    probe_ts: list[float] = field(default_factory=list)  # seconds (whole milliseconds, as sent)
    stopped_early: bool = False


def paced_phase(
    pool: ConnectionPool,
    batcher: LineBatcher,
    rate: int,
    seconds: float,
    should_stop: Callable[[], bool] = lambda: False,
    probe: str | None = None,
) -> PhaseResult:
    """Send ``rate`` lines/s (0 = as fast as the connections allow) for ``seconds``."""
    total = int(rate * seconds) if rate > 0 else int(UNPACED_LINES_PER_SECOND_CAP * seconds)
    hard_deadline = seconds * 1.5 + 2.0
    before = dict(pool.statuses), pool.connection_errors
    sent = requests = 0
    max_lag = server_wait = 0.0
    stopped = False
    probe_ts: list[float] = []
    cpu_start = time.process_time()
    start = time.monotonic()
    next_probe = start
    while sent < total:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= hard_deadline or should_stop() or (rate == 0 and elapsed >= seconds):
            stopped = rate > 0
            break
        if rate > 0:
            max_lag = max(max_lag, elapsed - sent / rate)
            due = min(total, int(rate * elapsed) + BATCH_LINES)
        else:
            due = total
        while due > sent and pool.idle:
            size = min(BATCH_LINES, total - sent)
            ts_ms = int(time.time() * 1000)
            body = batcher.body(size, ts_ms)
            if probe is not None and now >= next_probe:
                body += probe_line(probe, ts_ms)
                probe_ts.append(ts_ms / 1000)
                next_probe += PROBE_INTERVAL
            pool.post(body)
            sent += size
            requests += 1
        if due > sent:  # a batch is due and every connection is busy: the server holds us back
            waited = time.monotonic()
            pool.wait(0.01)
            server_wait += time.monotonic() - waited
            continue
        next_due = start + (sent - BATCH_LINES + 1) / rate if rate > 0 else now
        timeout = min(0.01, next_due - time.monotonic())
        if pool.busy:
            pool.wait(timeout)
        elif timeout > 0:
            time.sleep(timeout)
    end = time.monotonic()
    drain_deadline = end + RESPONSE_DRAIN_SECONDS
    while pool.busy and time.monotonic() < drain_deadline:
        pool.wait(0.05)
    drained = time.monotonic()
    cpu = time.process_time() - cpu_start
    elapsed = end - start
    statuses = {code: n - before[0].get(code, 0) for code, n in pool.statuses.items()}
    answered = sum(n for code, n in statuses.items() if 200 <= code < 300)
    return PhaseResult(
        target_rate=rate, servers=batcher.count, sent=sent, seconds=elapsed,
        rate=sent / elapsed if elapsed > 0 else 0.0, cpu_seconds=cpu,
        cpu_percent=100.0 * cpu / (drained - start) if drained > start else 0.0,
        max_lag_seconds=max_lag, server_wait_seconds=server_wait, drain_seconds=drained - end,
        requests=requests, answered=answered,
        statuses={str(code): n for code, n in statuses.items() if n and not 200 <= code < 300},
        connection_errors=pool.connection_errors - before[1], probe_ts=probe_ts, stopped_early=stopped,
    )  # fmt: skip


def split_url(url: str) -> tuple[str, int, str]:
    """``http://127.0.0.1:PORT/write`` -> host, port, path + ``?precision=ms``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"the influx sender only sends to http://127.0.0.1:PORT/..., not {url}")
    query = parts.query + ("&" if parts.query else "") + "precision=ms"
    return parts.hostname, parts.port, (parts.path or "/write") + "?" + query


def run_steps(
    url: str,
    servers: int,
    connections: int,
    commands: Iterable[dict],
    emit: Callable[[dict], None],
    first: int = 0,
    probe: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """The same connections for every command ``{"rate": R, "seconds": S}``; ``emit`` gets
    ``{"ready": true}`` once connected, then one ``PhaseResult`` (as a dict) or ``{"error": ...}``
    per command."""
    host, port, path = split_url(url)
    batcher = LineBatcher(first, servers)
    pool = ConnectionPool(host, port, path, connections)
    try:
        emit({"ready": True, "connections": connections})
        for command in commands:
            rate, seconds = command.get("rate"), command.get("seconds")
            if "error" in command or not isinstance(rate, int) or isinstance(rate, bool) or rate < 0 \
                    or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_STEP_SECONDS:
                emit({"error": command.get("error") or f"need rate >= 0 and 0 < seconds <= {MAX_STEP_SECONDS}"})
                continue
            emit(asdict(paced_phase(pool, batcher, rate, float(seconds), should_stop, probe)))
            if should_stop():
                break
    finally:
        pool.close()


_STOP = False


def _stop_requested() -> bool:
    return _STOP


def _request_stop(signum: int, frame: object) -> None:
    global _STOP
    _STOP = True


def _sink(ports: multiprocessing.Queue, seconds: float) -> None:
    """Self-test server: answers every request with 204 after reading its body; nothing else."""
    listener = socket.create_server(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    buffers: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                if key.data is None:
                    conn, _ = listener.accept()
                    selector.register(conn, selectors.EVENT_READ, True)
                    buffers[conn] = b""
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                chunk = conn.recv(1 << 20)
                if not chunk:
                    selector.unregister(conn)
                    conn.close()
                    buffers.pop(conn, None)
                    continue
                buffer = buffers[conn] + chunk
                while True:
                    head_end = buffer.find(b"\r\n\r\n")
                    if head_end < 0:
                        break
                    length = 0
                    for line in buffer[:head_end].split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(buffer) < head_end + 4 + length:
                        break
                    buffer = buffer[head_end + 4 + length :]
                    conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                buffers[conn] = buffer
    finally:
        selector.close()
        listener.close()


def self_test(seconds: float, rate: int, servers: int, connections: int) -> PhaseResult:
    """The sender into a sink process that only answers 204: its own top (or paced) speed."""
    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()
    sink = ctx.Process(target=_sink, args=(ports, seconds * 2 + 15.0), daemon=True)
    sink.start()
    try:
        port = ports.get(timeout=30)
        host, port, path = split_url(f"http://127.0.0.1:{port}/write")
        pool = ConnectionPool(host, port, path, connections)
        try:
            return paced_phase(pool, LineBatcher(0, servers), rate, seconds, _stop_requested)
        finally:
            pool.close()
    finally:
        sink.terminate()
        sink.join(timeout=5)
        if sink.is_alive():
            sink.kill()
            sink.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="line-protocol endpoint, http://127.0.0.1:PORT/write")
    parser.add_argument("--rate", type=int, default=100_000, help="lines per second, 0 = unpaced (default %(default)s)")
    parser.add_argument("--servers", type=int, default=100_000, help="distinct simulated servers (default %(default)s)")
    parser.add_argument("--first", type=int, default=0, help="index of the first server (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the phase (default %(default)s)")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections (default %(default)s)")
    parser.add_argument("--probe", metavar="NAME", help="also send server NAME's line every 0.1 s")
    parser.add_argument("--steps", action="store_true", help="take {rate, seconds} commands from stdin (see above)")
    parser.add_argument("--self-test", action="store_true", help="send into a local sink that answers 204")
    args = parser.parse_args(argv)
    if args.servers < 1 or args.first < 0 or args.rate < 0 or args.seconds <= 0 or args.connections < 1:
        parser.error("need --servers >= 1, --first >= 0, --rate >= 0, --seconds > 0, --connections >= 1")
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    if args.self_test:
        result = self_test(args.seconds, args.rate, args.servers, args.connections)
    elif not args.url:
        parser.error("--url is required (or use --self-test)")
    elif args.steps:
        run_steps(
            args.url, args.servers, args.connections, read_commands(sys.stdin.fileno(), _stop_requested),
            lambda result: print(json.dumps(result), flush=True), first=args.first, probe=args.probe,
            should_stop=_stop_requested,
        )  # fmt: skip
        return 0
    else:
        host, port, path = split_url(args.url)
        pool = ConnectionPool(host, port, path, args.connections)
        try:
            result = paced_phase(
                pool, LineBatcher(args.first, args.servers), args.rate, args.seconds, _stop_requested, args.probe
            )
        finally:
            pool.close()
    print(json.dumps(asdict(result)))
    per_line = result.cpu_seconds / result.sent * 1e6 if result.sent else float("nan")
    print(
        f"sent {result.sent:,} lines in {result.requests:,} requests in {result.seconds:.2f} s: "
        f"{result.rate:,.0f} lines/s (target {result.target_rate:,}); CPU {result.cpu_percent:.0f}% of one core, "
        f"{per_line:.2f} us a line; waited on the server {result.server_wait_seconds:.2f} s; "
        f"non-2xx {result.statuses or 0}, connection errors {result.connection_errors}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
