"""`hub serve` as an operator runs it: a real process with its embedded Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REDIS_MODE, token_header


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HubProcess:
    def __init__(
        self, data_dir: Path, port: int = 0, args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.args = args
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"hub-{self.port}.log"
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("HUB_REDIS_URL", "HUB_REDIS_MODE")
        }
        self.env = {
            **inherited,
            "HUB_DATA_DIR": str(data_dir),
            "HUB_PORT": str(self.port),
            "HUB_LOG_FORMAT": "json",
            "HUB_OUTBOUND_ALLOW": "loopback",  # fake platforms listen on 127.0.0.1
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", *self.args], env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                urllib.request.urlopen(f"{self.url}/ocpi/versions", timeout=1)
            except urllib.error.HTTPError:
                return self  # 401: up and answering
            except OSError:
                time.sleep(0.05)
        self.process.kill()  # never leave a hub behind a failed test
        self.process.wait()
        raise AssertionError("hub did not start:\n" + self.log_path.read_text())

    def redis_pid(self) -> int:
        for line in self.log_lines():
            if line.get("event") == "embedded redis started":
                return int(line["pid"])
        raise AssertionError("no embedded redis in the log")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(30)


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_hub_and_its_redis(tmp_path: Path, sig: int) -> None:
    hub = HubProcess(tmp_path / "data").start()
    redis_pid = hub.redis_pid()
    hub.stop(sig)
    assert _gone(redis_pid), "embedded redis left running"


def test_killed_hub_leaves_no_redis(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()
    redis_pid = hub.redis_pid()
    hub.stop(signal.SIGKILL)
    assert _gone(redis_pid)


def test_restart_keeps_issued_token_a_and_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hub = HubProcess(data).start()
    admin_token = (data / "admin_token").read_text().strip()
    generated = [line for line in hub.log_lines() if line.get("admin_token")]
    assert generated and generated[0]["admin_token"] == admin_token  # shown once at first start
    created = hub.call(
        "POST", "/admin/platforms", {"Authorization": f"Bearer {admin_token}"}, {"name": "CPO"}
    )
    hub.stop()

    again = HubProcess(data, port=hub.port).start()
    try:
        answer = again.call("GET", "/ocpi/versions", token_header(created["token_a"]))
        assert answer["data"][0]["version"] == "2.3.0"
        assert not [
            line for line in again.log_lines()[len(hub.log_lines()) :] if "admin_token" in line
        ]
    finally:
        again.stop()


def test_json_log_lines_carry_request_correlation_and_platform(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", HUB_ADMIN_TOKEN="admin-" + "x" * 32).start()
    try:
        created = hub.call(
            "POST", "/admin/platforms", {"Authorization": "Bearer admin-" + "x" * 32}, {"name": "A"}
        )
        headers = {
            **token_header(created["token_a"]),
            "X-Request-ID": "req-42",
            "X-Correlation-ID": "corr-42",
        }
        hub.call("GET", "/ocpi/versions", headers)
    finally:
        hub.stop()
    lines = [line for line in hub.log_lines() if line.get("request_id") == "req-42"]
    assert lines, "no log line for the request"
    assert all(line["correlation_id"] == "corr-42" for line in lines)
    assert any(line.get("platform_id") == created["id"] for line in lines)
    started = [line for line in hub.log_lines() if line.get("event") == "hub starting"]
    assert started[0]["versions_url"] == f"{hub.url}/ocpi/versions"


def test_with_redis_url_no_embedded_server_starts(tmp_path: Path, redis_url: str) -> None:
    hub = HubProcess(tmp_path / "data", HUB_REDIS_URL=redis_url, HUB_REDIS_MODE=REDIS_MODE).start()
    try:
        assert not any(line.get("event") == "embedded redis started" for line in hub.log_lines())
        assert not (tmp_path / "data" / "redis.sock").exists()
    finally:
        hub.stop()


def test_tokens_never_reach_the_log(tmp_path: Path) -> None:
    """README, Security: tokens and Authorization values are never logged (the generated
    admin token aside, printed once at first start; here the token is given, not generated)."""
    admin = "admin-" + "y" * 32
    hub = HubProcess(tmp_path / "data", HUB_ADMIN_TOKEN=admin).start()
    try:
        created = hub.call("POST", "/admin/platforms", {"Authorization": f"Bearer {admin}"},
                           {"name": "A"})  # fmt: skip
        hub.call("GET", "/ocpi/versions", token_header(created["token_a"]))
        with pytest.raises(urllib.error.HTTPError):
            hub.call("GET", "/ocpi/versions", token_header("wrong-" + created["token_a"]))
    finally:
        hub.stop()
    text = hub.log_path.read_text()
    assert "request" in text  # the calls were logged
    encoded = token_header(created["token_a"])["Authorization"].split()[1]
    for secret in (admin, created["token_a"], encoded):
        assert secret not in text


def test_metrics_of_every_worker_summed(tmp_path: Path) -> None:
    """``--workers 2``: whichever worker a scrape reaches, /metrics counts the requests
    both served (prometheus-client's multiprocess mode). A worker counts its requests with
    each traffic batch, within a second (FLUSH_SECONDS); the one a scrape reaches counts
    its own at once."""
    token = "admin-" + "x" * 32
    admin = {"Authorization": f"Bearer {token}"}
    files = tmp_path / "metrics"
    files.mkdir()
    hub = HubProcess(
        tmp_path / "data",
        args=("--workers", "2"),
        HUB_ADMIN_TOKEN=token,
        PROMETHEUS_MULTIPROC_DIR=str(files),
    ).start()
    try:
        created = hub.call("POST", "/admin/platforms", admin, {"name": "CPO"})
        sent = 0
        # New connections until both workers have served some (the kernel picks one each).
        while len(_serving(hub)) < 2 and sent < 400:
            hub.call("GET", "/ocpi/versions", token_header(created["token_a"]))
            sent += 1
        assert len(_serving(hub)) == 2, "one worker served everything"

        def counted() -> list[float]:
            request = urllib.request.Request(hub.url + "/metrics", headers=admin)
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
            return [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "hub_requests_total"
                and sample.labels == {**sample.labels, "module": "versions", "ocpi_status": "1000"}
            ]

        deadline = time.monotonic() + 10
        while counted() != [float(sent)] and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = [value for _ in range(20) for value in counted()]
        assert counts == [float(sent)] * 20
        assert len(list(files.glob("counter_*.db"))) == 2
    finally:
        hub.stop()


def _serving(hub: HubProcess) -> set[int]:
    """The worker processes whose log shows an answered versions request."""
    return {
        line["process"]
        for line in hub.log_lines()
        if line.get("event") == "request"
        and line.get("status") == 200
        and line.get("path") == "/ocpi/versions"
    }
