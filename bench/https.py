"""Single-sample POSTs over plain HTTP and over HTTPS, on the same box in the same run.

Target
    None to meet: the figure is the HTTPS / HTTP ratio of the request rate (and of
    the service's CPU time per request), to say what TLS costs a single-POST client.

How
    Two ``servertrack serve`` processes (``--store memory``), both with
    ``--write-token`` (the trusted setup: only TLS differs), one of them with
    ``--tls-cert`` / ``--tls-key`` (a self-signed EC P-256 certificate for
    127.0.0.1 made with ``openssl`` in a temporary directory). A client process
    (this script with ``--client``) keeps ``--connections`` keep-alive
    connections open, one thread each, and sends ``POST /servers/NAME/loads``
    with one sample per request, waiting for each 202 before the next (a closed
    loop, like wrk). Handshakes happen once per connection, before measuring:
    the figure is the steady cost of TLS records, not of handshakes.
    Each of ``--runs`` rounds measures HTTP then HTTPS for ``--seconds`` each
    (after ``--warmup`` seconds unmeasured); figures are medians over rounds.
    The service's CPU time (psutil) over each run gives its CPU per request,
    which the client's share of the two cores does not blur.

Usage
    python bench/https.py                       # 3 rounds x 10 s, 8 connections
    python bench/https.py --seconds 5 --runs 1  # a quick look
Exit status 2 if openssl is missing.
"""

from __future__ import annotations

import harness  # first: puts this checkout on sys.path

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

TOKEN = "5e" * 32
MAX_SECONDS = 60.0
MAX_CONNECTIONS = 64


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for IP 127.0.0.1 and its key, in ``directory``."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=servertrack bench",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return cert, key


# -- the client (a process of its own: --client) ------------------------------------------------------


def _connect(url: str, ca: str | None) -> socket.socket:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if url.startswith("https://"):
        return ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=host)
    return sock


def _request(index: int) -> bytes:
    body = b'{"cpu":%d.5,"ram":%d.25}' % (index % 100, (index * 7) % 100)
    return (b"POST /servers/srv-%04d.bench/loads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (index % 1000, TOKEN.encode(), len(body), body))


def _answer(sock: socket.socket, buffer: bytearray) -> int:
    """Read one response from ``sock`` (``buffer`` keeps what follows it); its status."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the service")
        buffer += chunk
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < end + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the service")
        buffer += chunk
    status = int(head[9:12])
    del buffer[:end + 4 + length]
    return status


def run_client(url: str, connections: int, warmup: float, seconds: float, ca: str | None) -> dict[str, Any]:
    """Drive ``url`` from ``connections`` threads; the 202s counted over ``seconds`` after ``warmup``."""
    requests = [_request(index) for index in range(1000)]
    sockets = [_connect(url, ca) for _ in range(connections)]
    counts = [0] * connections
    failures = [0] * connections
    measuring = threading.Event()
    stopping = threading.Event()

    def drive(slot: int) -> None:
        sock, buffer, index = sockets[slot], bytearray(), slot
        while not stopping.is_set():
            sock.sendall(requests[index % len(requests)])
            index += connections
            status = _answer(sock, buffer)
            if measuring.is_set():
                if status == 202:
                    counts[slot] += 1
                else:
                    failures[slot] += 1

    threads = [threading.Thread(target=drive, args=(slot,), daemon=True) for slot in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    measuring.set()
    print("measuring", flush=True)
    started, cpu_started = time.monotonic(), time.process_time()
    time.sleep(seconds)
    measuring.clear()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    stopping.set()
    for thread in threads:
        thread.join(10)
    for sock in sockets:
        sock.close()
    return {"ok": sum(counts), "failed": sum(failures), "seconds": elapsed, "client_cpu": cpu}


# -- the benchmark ------------------------------------------------------------------------------------


def measure(service: harness.Service, args: argparse.Namespace, ca: str | None) -> tuple[float, float]:
    """One run against ``service``: (2xx requests/s, service CPU µs per request)."""
    argv = [harness.PYTHON, os.path.abspath(__file__), "--client", service.url, "--connections",
            str(args.connections), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if ca is not None:
        argv += ["--ca", ca]
    with harness.Process(argv, name="https client") as client:
        line = client.read_line(args.warmup + 2)  # "measuring" once the warmup is over
        cpu_started = service.cpu_seconds()
        line = client.read_line(args.seconds + 30)
        cpu = service.cpu_seconds() - cpu_started
    result = json.loads(line)
    rate = result["ok"] / result["seconds"]
    print(f"    {service.url:<28} {harness.fmt(rate)} requests/s, {result['failed']} not 2xx, service "
          f"{harness.fmt(cpu / max(1, result['ok']) * 1e6)} µs CPU/request, client {result['client_cpu']:.1f} s CPU")
    return rate, cpu / max(1, result["ok"]) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (at most 60)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--runs", type=int, default=3, help="rounds (HTTP then HTTPS each); at most 10")
    parser.add_argument("--connections", type=int, default=8, help=f"keep-alive connections (at most {MAX_CONNECTIONS})")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.seconds = min(max(args.seconds, 1.0), MAX_SECONDS)
    args.warmup = min(max(args.warmup, 0.0), 10.0)
    args.runs = min(max(args.runs, 1), 10)
    args.connections = min(max(args.connections, 1), MAX_CONNECTIONS)
    if args.client is not None:
        if not args.client.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
            raise SystemExit("the client only talks to 127.0.0.1")
        print(json.dumps(run_client(args.client, args.connections, args.warmup, args.seconds, args.ca)), flush=True)
        return 0
    if shutil.which("openssl") is None:
        print("openssl is missing (apt-get install -y openssl)", file=sys.stderr)
        return 2
    harness.print_header(f"HTTP vs HTTPS: single-sample POSTs, {args.connections} keep-alive connections")
    with tempfile.TemporaryDirectory(prefix="servertrack-https-") as directory:
        cert, key = make_certificate(directory)
        token = os.path.join(directory, "write.token")
        with open(token, "w") as file:
            file.write(TOKEN + "\n")
        trusted = ["--write-token", token]
        with harness.Service(flags=trusted) as plain, \
                harness.Service(flags=[*trusted, "--tls-cert", cert, "--tls-key", key]) as tls:
            rates: dict[str, list[float]] = {"http": [], "https": []}
            cpus: dict[str, list[float]] = {"http": [], "https": []}
            for run in range(1, args.runs + 1):
                print(f"  run {run}:")
                for label, service, ca in (("http", plain, None), ("https", tls, cert)):
                    rate, cpu = measure(service, args, ca)
                    rates[label].append(rate)
                    cpus[label].append(cpu)
    for label in ("http", "https"):
        harness.print_runs(f"{label} requests/s", rates[label], "requests/s")
        harness.print_runs(f"{label} service CPU", cpus[label], "µs/request")
    rate_ratio = harness.median(rates["https"]) / harness.median(rates["http"])
    cpu_ratio = harness.median(cpus["https"]) / harness.median(cpus["http"])
    print(f"  HTTPS / HTTP: {rate_ratio:.2f} x the request rate, {cpu_ratio:.2f} x the service's CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
