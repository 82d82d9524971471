"""The processes a bench run starts (Redis, fake platforms, bare forwarder, hubs), all on
127.0.0.1, and the credentials handshake that puts a platform into a hub's registry.

Every child dies with the bench (PR_SET_PDEATHSIG) and is stopped by its own pid, so an
interrupted run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.platforms import authorization, token_b, version_of

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "bench-admin-" + "x" * 24
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: the kernel ends it if the bench dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """A child process answering HTTP on a loopback port."""

    def __init__(
        self, name: str, args: Sequence[str], port: int, log_dir: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(args),
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        """Until ``path`` answers at all (a 401 counts: the server is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.url + path, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_platforms(log_dir: Path, port: int | None = None, name: str = "platforms") -> Service:
    """The fake platforms on ``port`` (a free one by default): the soak starts one on the same
    port again after stopping it, so that the URLs the hub registered stay valid."""
    port = port or free_port()
    service = Service(name, [PYTHON, "-m", "tests.bench.platforms", str(port)], port, log_dir, {})
    service.wait_ready("/bench/ping")
    return service


def start_bare(log_dir: Path, upstream: str) -> Service:
    port = free_port()
    service = Service(
        "bare", [PYTHON, "-m", "tests.bench.bare", str(port), upstream], port, log_dir, {}
    )
    service.wait_ready("/")
    return service


def hub_env(port: int, data_dir: Path, redis_url: str) -> dict[str, str]:
    return {
        "HUB_HOST": "127.0.0.1",
        "HUB_PORT": str(port),
        "HUB_DATA_DIR": str(data_dir),
        "HUB_REDIS_URL": redis_url,
        "HUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_LOG_FORMAT": "json",
        "HUB_FORWARD_TIMEOUT": "10",
        "HUB_OUTBOUND_ALLOW": "loopback",  # every platform of the bench is on 127.0.0.1
        # The load clients send far more than any platform may (the default limit is 200/s
        # per platform): a limit never met keeps the limiter, and its cost, in the figures.
        "HUB_RATE_LIMIT_PER_SECOND": "1000000",
        "HUB_RATE_LIMIT_BURST": "1000000",
    }


def start_hub(
    name: str,
    log_dir: Path,
    redis_url: str,
    workers: int = 1,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    """``python -m hub serve`` (or ``command``) on a free port, sharing ``redis_url``;
    ``env`` adds or overrides settings (``HUB_ALIVE_INTERVAL``, ...)."""
    port = free_port()
    data_dir = log_dir / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    args = list(command or [PYTHON, "-m", "hub", "serve"])
    if workers > 1:
        args += ["--workers", str(workers)]
    settings = hub_env(port, data_dir, redis_url) | (env or {})
    service = Service(name, args, port, log_dir, settings)
    service.wait_ready("/ocpi/versions", timeout=60)
    return service


def _children(pid: int) -> list[int]:
    """Child processes (uvicorn's workers), from /proc/PID/task/*/children."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                out += [int(c) for c in children.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children, in seconds."""
    total = 0.0
    for one in (pid, *_children(pid)):
        try:
            with open(f"/proc/{one}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def settle(
    pids: Sequence[int], busy: float = 0.1, window: float = 0.5, limit: float = 120.0
) -> tuple[bool, float]:
    """Wait until no process uses more than ``busy`` of a core over ``window`` seconds:
    background work (ClientInfo pushes after a registration, a broadcast's deliveries) must
    not run into the next measurement. Returns (settled, seconds waited); bounded."""
    began = time.monotonic()
    while True:
        before = {pid: cpu_seconds(pid) for pid in pids}
        await asyncio.sleep(window)
        used = max((cpu_seconds(pid) - before[pid]) / window for pid in pids)
        waited = time.monotonic() - began
        if used <= busy:
            return True, waited
        if waited >= limit:
            return False, waited


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a peak belongs to one scenario."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


# -- the credentials handshake ---------------------------------------------------------------

Role = tuple[str, str, str]  # (country_code, party_id, role)


@dataclass
class Registered:
    """A platform registered with a hub: how to call the hub as it, and how to call it."""

    name: str
    hub_token: str  # token C
    url: str  # the platform's base URL on the fake
    roles: list[Role]

    def hub_headers(self, sender: tuple[str, str], receiver: tuple[str, str]) -> dict[str, str]:
        return {
            "Authorization": authorization(self.hub_token),
            **routing(sender, receiver),
        }

    def direct_headers(self, sender: tuple[str, str], receiver: tuple[str, str]) -> dict[str, str]:
        """What a caller that reached this platform without the hub would send it."""
        return {"Authorization": authorization(token_b(self.name)), **routing(sender, receiver)}

    def endpoint(self, module: str, interface: str) -> str:
        return f"{self.url}/ocpi/{version_of(self.name)}/{module}/{interface}"


def routing(sender: tuple[str, str], receiver: tuple[str, str]) -> dict[str, str]:
    return {
        "OCPI-from-country-code": sender[0],
        "OCPI-from-party-id": sender[1],
        "OCPI-to-country-code": receiver[0],
        "OCPI-to-party-id": receiver[1],
        "X-Request-ID": "bench-request",
        "X-Correlation-ID": "bench-correlation",
    }


async def register(
    http: aiohttp.ClientSession, hub_url: str, platforms_url: str, name: str, roles: list[Role]
) -> Registered:
    """credentials.asciidoc, platform as Sender: admin creates it, then versions, details and
    POST credentials with token A; the hub fetches our endpoints with token B."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.post(f"{hub_url}/admin/platforms", json={"name": name}, headers=admin) as r:
        created = await _json(r, 201)
    token_a = {"Authorization": authorization(created["token_a"])}
    async with http.get(created["versions_url"], headers=token_a) as r:
        versions = (await _json(r))["data"]
    details_url = next(v["url"] for v in versions if v["version"] == version_of(name))
    async with http.get(details_url, headers=token_a) as r:
        endpoints = (await _json(r))["data"]["endpoints"]
    credentials_url = next(e["url"] for e in endpoints if e["identifier"] == "credentials")
    url = f"{platforms_url}/p/{name}"
    body = {
        "token": token_b(name),
        "url": f"{url}/ocpi/versions",
        "roles": [
            {
                "role": role,
                "party_id": party_id,
                "country_code": country_code,
                "business_details": {"name": f"{name} {party_id}"},
            }
            for country_code, party_id, role in roles
        ],
    }
    async with http.post(credentials_url, json=body, headers=token_a) as r:
        answer = await _json(r)
    if answer.get("status_code") != 1000:
        raise RuntimeError(f"registration of {name} failed: {answer}")
    return Registered(name, answer["data"]["token"], url, roles)


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    if response.status != status:
        text = await response.text()
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {text}")
    return await response.json()


def party_ids(count: int, start: int = 0) -> list[str]:
    """``count`` distinct 3-character party ids (base 36), upper case."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for n in range(start, start + count):
        out.append(digits[n // 1296 % 36] + digits[n // 36 % 36] + digits[n % 36])
    return out
