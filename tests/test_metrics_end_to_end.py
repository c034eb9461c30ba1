"""End to end: a real Prometheus scrapes a real ``servertrack serve``'s ``GET /metrics`` (with the read token)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.test_end_to_end import http, running_service

READ_TOKEN = "d6" * 32
PROMETHEUS_SECONDS = 20.0
SAMPLES = 7
EXPORTED = 5  # serve --export-servers 5: the first five of the SAMPLES servers by name


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, token: str | None = None) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of ``GET url``."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@contextlib.contextmanager
def prometheus(directory: Path, target: str, token_file: Path) -> Iterator[str]:
    """Debian's ``prometheus`` scraping ``target`` every second with the bearer token; yields its URL."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed (.ci/run installs it: apt-get install prometheus)"
    port = free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: servertrack\n"
        f"    authorization:\n      credentials_file: {token_file}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def query(prometheus_url: str, promql: str) -> list[dict[str, object]]:
    """The instant vector of ``promql`` (empty while Prometheus is not up or has not scraped)."""
    try:
        status, _, body = get(f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    except OSError:
        return []
    if status != 200:
        return []
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


def test_prometheus_scrapes_our_series_with_the_read_token(tmp_path: Path) -> None:
    """Prometheus scrapes /metrics with the read token: the service's series, and (``--export-servers``) each
    server's load, the first EXPORTED servers by name, with the rest counted as not exported."""
    token_file = tmp_path / "read.token"
    token_file.write_text(READ_TOKEN)
    token_file.chmod(0o600)
    with running_service("--read-token", str(token_file), "--export-servers", str(EXPORTED)) as service:
        samples = [{"server": f"web-{number:02}", "cpu": 10.0 + number, "ram": 20.5 + number}
                   for number in reversed(range(SAMPLES))]
        assert http("POST", f"{service.url}/loads", samples) == (202, {"accepted": SAMPLES})
        status, _, _ = get(f"{service.url}/metrics")
        assert status == 401  # a read like the others
        status, content_type, body = get(f"{service.url}/metrics", READ_TOKEN)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), (status, content_type)
        assert b'servertrack_received_total{kind="sample"} 7.0' in body
        target = service.url.removeprefix("http://")
        with prometheus(tmp_path, target, token_file) as prometheus_url:
            deadline = time.monotonic() + PROMETHEUS_SECONDS
            received: list[dict[str, object]] = []
            while time.monotonic() < deadline:
                received = query(prometheus_url, 'servertrack_received_total{kind="sample"}')
                if received and received[0]["value"][1] == str(SAMPLES):  # type: ignore[index]
                    break
                time.sleep(0.2)
            log = (tmp_path / "prometheus.log").read_text()
            assert received and received[0]["value"][1] == str(SAMPLES), (received, log[-2000:])  # type: ignore[index]
            assert received[0]["metric"] == {"__name__": "servertrack_received_total", "job": "servertrack",  # type: ignore[index]
                                             "instance": target, "kind": "sample"}
            # the applier ran (once a second) before the scrape that saw every sample applied
            wait = time.monotonic() + 5
            while time.monotonic() < wait and not query(prometheus_url, f"servertrack_servers == {SAMPLES}"):
                time.sleep(0.2)
            assert query(prometheus_url, f"servertrack_servers == {SAMPLES}")
            assert query(prometheus_url, f'servertrack_applied_total{{kind="sample"}} == {SAMPLES}')
            assert query(prometheus_url, "servertrack_batch_apply_seconds_count >= 1")
            assert query(prometheus_url, 'servertrack_http_request_seconds_count{route="/loads",method="POST"} == 1')
            assert query(prometheus_url, 'servertrack_http_request_seconds_count{route="/metrics",method="GET"} >= 1')
            assert query(prometheus_url, 'servertrack_http_refused_total{reason="unauthorized"} == 1')
            assert query(prometheus_url, 'up{job="servertrack"} == 1')
            # the per-server gauges: the servers' own values, as Prometheus stored them
            for series, base in (("servertrack_server_cpu_percent", 10.0), ("servertrack_server_ram_percent", 20.5)):
                loads = {result["metric"]["server"]: float(result["value"][1])  # type: ignore[index]
                         for result in query(prometheus_url, series)}
                assert loads == {f"web-{number:02}": base + number for number in range(EXPORTED)}, series
            assert query(prometheus_url, f"servertrack_servers_not_exported == {SAMPLES - EXPORTED}")
