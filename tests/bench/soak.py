"""``python -m tests.bench.soak``: ten minutes of mixed traffic against one hub, looking for
errors and leaks rather than throughput (``make soak``; not part of ``make test``).

One ``python -m hub serve`` process (``ALIVE_INTERVAL`` 5 s) on an embedded Redis of its
own, the fake platforms of ``tests.bench.platforms`` in a process of their own, and one more
fake CPO platform in a third process that is stopped and started again on the same port
every 30-60 s. The load client is this process (aiohttp), paced well below saturation:

- routed GETs and PUTs between eMSPs and CPOs (about 240 req/s);
- routed GETs to the platform that goes up and down (10 req/s): 4003/4002 are the expected
  answers while it is down and for a few seconds after it is back, and are counted apart;
- broadcasts: a CPO PUTs a Location with OCPI-to = the hub (2 per second), and the report
  under ``/admin/broadcasts/{id}`` must finish with every receiver delivered;
- GET All walks (3 a minute), following Link to the end.

Every loop stops at a request count or at the deadline, whichever comes first, and every
request and wait has a timeout. Unexpected: any HTTP 5xx, any status code other than the
one expected for that request, any exception in the load client, a broadcast report that
does not finish, a walk that comes back short outside an outage, and any line of the hub's
log (at INFO, the hub's default) at level error, or not JSON. Hub RSS is compared between
the end of a warm-up period (caches, pools and allocator arenas fill in the first minute)
and the end of the traffic; open sockets and threads come from /proc (the hub exposes no
count of its asyncio tasks), Redis keys from DBSIZE and a SCAN matched against
``hub.registry.store.SCHEMA``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis

from hub.logs import configure_logging
from hub.redis_server import EmbeddedRedis
from hub.registry.store import spec_of
from tests.bench import data
from tests.bench.load import REQUEST_TIMEOUT
from tests.bench.platforms import LIST_SIZE
from tests.bench.procs import (
    ADMIN_TOKEN,
    PYTHON,
    Registered,
    Role,
    Service,
    cpu_seconds,
    free_port,
    memory_kb,
    register,
    settle,
    start_hub,
    start_platforms,
)
from tests.bench.report import code_version, machine

ALIVE_INTERVAL = 5.0  # HUB_ALIVE_INTERVAL of the soak hub: still-alive checks every few seconds
HUB_ID = ("NL", "HUB")  # the hub's own party (OCPI-to of broadcasts and GET All)
FLAP_PARTY = ("NL", "CPF")
# After the flapping platform is back: routed requests may still meet a connection the hub
# opened before; GET All leaves the party out until a still-alive check finds it CONNECTED.
ROUTED_GRACE = 5.0
WALK_GRACE = 2 * ALIVE_INTERVAL + 5.0
REPORT_WITHIN = 15.0  # seconds for a broadcast report to finish
WALK_WITHIN = 60.0  # seconds for one GET All walk
MAX_PAGES = 50
OBJECT_IDS = 50  # pushes cycle through this many ids: the open-routing index stays bounded
SAMPLE_EVERY = 5.0
EXAMPLES = 10
MB = 1024.0

# Stable platforms (in the fake-platforms process) and their parties.
PLATFORMS: dict[str, list[Role]] = {
    "cpo1": [("NL", "CPA", "CPO"), ("NL", "CPB", "CPO")],
    "cpo2": [("NL", "CPC", "CPO")],
    "emsp1": [("DE", "MSA", "EMSP"), ("DE", "MSB", "EMSP")],
    "emsp2": [("DE", "MSC", "EMSP")],
}
FLAP_NAME = "flap"

# Requests per second of each paced kind, and what it is.
RATES: dict[str, float] = {
    "get_location": 100,
    "put_location": 60,
    "put_token": 40,
    "get_tokens": 40,
    "flap_get": 10,
    "broadcast": 2,
}
WALK_EVERY = 20.0  # seconds between GET All walks
KINDS = {
    "get_location": "routed GET Location, eMSP -> CPO",
    "put_location": "routed PUT Location 2 kB, CPO -> eMSP",
    "put_token": "routed PUT Token, eMSP -> CPO",
    "get_tokens": "routed GET Tokens list, CPO -> eMSP",
    "flap_get": "routed GET Location, eMSP -> flapping CPO",
    "broadcast": "PUT Location, CPO -> hub (broadcast)",
    "getall_page": "GET All page, eMSP -> hub",
    "admin": "GET /admin/broadcasts/{id}",
}


# -- counting ----------------------------------------------------------------------------------


@dataclass
class Kind:
    sent: int = 0
    ok: int = 0
    expected: Counter[str] = field(default_factory=Counter)  # status code -> count
    unexpected: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, of every answer

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "sent": self.sent,
            "ok": self.ok,
            "expected_failures": dict(self.expected),
            "unexpected": self.unexpected,
            "rate_per_s": round(self.sent / seconds, 1) if seconds else 0.0,
            "p50_ms": round(_percentile(lat, 50) * 1000, 2),
            "p99_ms": round(_percentile(lat, 99) * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 1) if lat else math.nan,
        }


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


class Tally:
    def __init__(self, began: float) -> None:
        self.began = began
        self.kinds: dict[str, Kind] = {k: Kind() for k in KINDS}
        self.reasons: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []
        self.events: Counter[str] = Counter()  # broadcasts finished, walks complete, ...

    def problem(self, kind: str, reason: str, detail: str = "") -> None:
        self.reasons[f"{kind}: {reason}"] += 1
        if kind in self.kinds:
            self.kinds[kind].unexpected += 1
        if len(self.examples) < EXAMPLES:
            at = round(time.monotonic() - self.began, 1)
            self.examples.append({"at_s": at, "kind": kind, "reason": reason, "detail": detail})

    @property
    def unexpected(self) -> int:
        return sum(self.reasons.values())


class Envelope(msgspec.Struct):
    """What the load client reads of an answer; ``data`` stays undecoded."""

    status_code: int | None = None
    status_message: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_envelope = msgspec.json.Decoder(Envelope)
_list = msgspec.json.Decoder(list[msgspec.Raw] | None)


@functools.cache
def location_body(object_id: str, country_code: str, party_id: str) -> bytes:
    return data.encode(data.location(object_id, 2, country_code, party_id))


@functools.cache
def token_body(uid: str, country_code: str, party_id: str) -> bytes:
    return data.encode(data.token(uid, country_code, party_id))


@dataclass
class Answer:
    status: int
    envelope: Envelope
    headers: Mapping[str, str]  # case-insensitive
    next_url: str | None


# -- the platform that goes up and down --------------------------------------------------------


@dataclass
class Outage:
    down: float  # monotonic time the stop began
    up: float | None = None  # monotonic time it answered again


class Flapper:
    """Stops the flapping platform's process and starts it again on the same port."""

    def __init__(self, workdir: Path, rng: random.Random) -> None:
        self.workdir = workdir
        self.rng = rng
        self.port = free_port()
        self.service = start_platforms(workdir, self.port, FLAP_NAME)
        self.outages: list[Outage] = []

    def excused(self, sent: float, answered: float, grace: float) -> bool:
        """A failure of a request (sent..answered) overlapping an outage or its grace."""
        for outage in self.outages:
            end = outage.up + grace if outage.up is not None else math.inf
            if sent <= end and answered >= outage.down:
                return True
        return False

    async def run(self, deadline: float) -> None:
        first = True
        while True:
            # The first outage comes early, so that a one-minute run sees one too.
            up_for = self.rng.uniform(15, 25) if first else self.rng.uniform(30, 60)
            down_for = self.rng.uniform(8, 15)
            first = False
            if time.monotonic() + up_for + down_for + ROUTED_GRACE > deadline:
                return  # no outage that would outlast the traffic
            await asyncio.sleep(up_for)
            outage = Outage(time.monotonic())
            self.outages.append(outage)
            await stop_async(self.service)
            await asyncio.sleep(down_for)
            # Started from this thread: PR_SET_PDEATHSIG follows the thread that forks.
            self.service = Service(
                FLAP_NAME,
                [PYTHON, "-m", "tests.bench.platforms", str(self.port)],
                self.port,
                self.workdir,
                {},
            )
            await wait_listening(self.service)
            outage.up = time.monotonic()

    def summary(self, since: float) -> list[dict[str, float | None]]:
        """Each outage as seconds since ``since`` (the start of the traffic)."""
        return [
            {
                "down_at_s": round(o.down - since, 1),
                "up_at_s": round(o.up - since, 1) if o.up is not None else None,
            }
            for o in self.outages
        ]


STOP_WITHIN = 10.0  # seconds after SIGTERM before SIGKILL
START_WITHIN = 30.0  # seconds for the flapping platform to listen again


async def stop_async(service: Service) -> None:
    """SIGTERM by pid, SIGKILL after STOP_WITHIN, without blocking the event loop."""
    process = service.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_WITHIN):
            await _exited(service)
    except TimeoutError:
        process.kill()
        await _exited(service)


async def _exited(service: Service) -> None:
    while True:
        if service.process.poll() is not None:
            return
        await asyncio.sleep(0.02)


async def wait_listening(service: Service) -> None:
    """Until the service accepts a connection on its port (bounded by START_WITHIN)."""
    try:
        async with asyncio.timeout(START_WITHIN):
            while True:
                if service.process.poll() is not None:
                    raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", service.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
    except TimeoutError:
        raise RuntimeError(f"{service.name} did not start again:\n{service.log_tail()}") from None


# -- what /proc says about the hub -------------------------------------------------------------

TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def fd_census(pid: int, hub_port: int, peers: Mapping[int, str]) -> dict[str, Any]:
    """The hub's open file descriptors by kind, its TCP sockets by state (established ones
    split into inbound, to the hub's port, and outbound by the port they lead to, named in
    ``peers``), and its unix sockets (Redis)."""
    kinds: Counter[str] = Counter()
    inodes: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed in between
        if target.startswith("socket:["):
            kinds["socket"] += 1
            inodes.add(target[len("socket:[") : -1])
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon_inode"] += 1
        else:
            kinds["file"] += 1
    tcp: Counter[str] = Counter()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)
            for line in lines:
                cols = line.split()
                if cols[9] not in inodes:
                    continue
                state = TCP_STATES.get(cols[3], cols[3])
                if state == "ESTABLISHED":
                    local_port = int(cols[1].rsplit(":", 1)[1], 16)
                    remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                    if local_port == hub_port:
                        state = "in from clients"
                    else:
                        state = f"out to {peers.get(remote_port, remote_port)}"
                tcp[state] += 1
    unix = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/unix") as lines:
        next(lines)
        unix = sum(1 for line in lines if line.split()[6] in inodes)
    with open(f"/proc/{pid}/status") as status:
        threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    return {
        "fds": sum(kinds.values()),
        "by_kind": dict(kinds),
        "sockets": kinds["socket"],
        "tcp": dict(sorted(tcp.items())),
        "unix": unix,
        "threads": threads,
    }


async def redis_census(client: aioredis.Redis) -> dict[str, Any]:
    """DBSIZE, and every key matched to its SCHEMA pattern; keys of a pattern that should
    expire but carry no TTL are counted apart."""
    size = await client.dbsize()
    per: Counter[str] = Counter()
    expiring: list[tuple[str, bytes]] = []
    async for key in client.scan_iter(count=1000):
        spec = spec_of(key.decode())
        pattern = spec.pattern if spec is not None else "(outside SCHEMA)"
        per[pattern] += 1
        if spec is not None and spec.expires:
            expiring.append((pattern, key))
    no_ttl: Counter[str] = Counter()
    for start in range(0, len(expiring), 500):
        chunk = expiring[start : start + 500]
        async with client.pipeline(transaction=False) as pipe:
            for _, key in chunk:
                pipe.ttl(key)
            ttls = await pipe.execute()
        for (pattern, _), ttl in zip(chunk, ttls, strict=True):
            if ttl == -1:
                no_ttl[pattern] += 1
    return {"dbsize": size, "per_pattern": dict(sorted(per.items())), "no_ttl": dict(no_ttl)}


def scan_log(path: Path) -> dict[str, Any]:
    """Levels of the hub's JSON log lines, warnings by event, error lines and non-JSON lines."""
    levels: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    errors: list[str] = []
    not_json: list[str] = []
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return {"unreadable": str(exc)}
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = data.decode(line.encode())
        if not isinstance(entry, dict):
            not_json.append(line)
            continue
        level = str(entry.get("level", "?")).lower()
        levels[level] += 1
        if level == "warning":
            warnings[str(entry.get("event", "?"))] += 1
        elif level in ("error", "critical", "exception", "fatal"):
            errors.append(line)
    return {
        "levels": dict(levels),
        "warnings_by_event": dict(warnings.most_common()),
        "errors": errors,
        "not_json": not_json,
    }


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    warmup: float
    idle: float
    seed: int
    rate: float  # scales every rate


@dataclass
class Sample:
    t: float  # seconds since the traffic began
    rss_mb: float
    fds: int
    sockets: int
    threads: int
    cpu_s: float
    load1: float  # the machine's load average: other work shows here


class Soak:
    def __init__(self, options: Options, workdir: Path) -> None:
        self.o = options
        self.workdir = workdir
        self.rng = random.Random(options.seed)
        self._services: list[Service] = []
        self._redis: EmbeddedRedis | None = None
        self._sessions: list[aiohttp.ClientSession] = []
        self.flapper: Flapper | None = None
        self.samples: list[Sample] = []
        self.dbsize_samples: list[tuple[float, int]] = []
        self.checks: set[asyncio.Task[None]] = set()
        self.lags: list[float] = []  # the load client's event-loop lag, seconds

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Soak:
        try:
            self._redis = EmbeddedRedis(self.workdir / "redis")
            self.redis_url = self._redis.start()
            self.platforms = self.keep(start_platforms(self.workdir))
            self.flapper = Flapper(self.workdir, self.rng)
            # INFO, the hub's default: a line per request, as in operation.
            env = {"HUB_ALIVE_INTERVAL": str(ALIVE_INTERVAL), "HUB_LOG_LEVEL": "INFO"}
            self.hub = self.keep(start_hub("hub", self.workdir, self.redis_url, env=env))
            self.redis = aioredis.Redis.from_url(self.redis_url)
            self.admin = self._session(16)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self._sessions:
            with contextlib.suppress(Exception):
                await session.close()
        if hasattr(self, "redis"):
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        for service in reversed(self._services):  # the hub first
            service.stop()
        if self.flapper is not None:
            self.flapper.service.stop()
        if self._redis is not None:
            self._redis.stop()

    def keep(self, service: Service) -> Service:
        self._services.append(service)
        return service

    def _session(self, limit: int) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            skip_auto_headers=("User-Agent",),
        )
        self._sessions.append(session)
        return session

    def pids(self) -> list[int]:
        assert self.flapper is not None
        return [self.hub.pid, self.platforms.pid, self.flapper.service.pid]

    # -- set-up ----------------------------------------------------------------------------

    async def setup(self) -> None:
        """Register every platform through the credentials handshake; wait until idle."""
        assert self.flapper is not None
        self.registered: dict[str, Registered] = {}
        for name, roles in PLATFORMS.items():
            self.registered[name] = await register(
                self.admin, self.hub.url, self.platforms.url, name, roles
            )
        self.flap = await register(
            self.admin, self.hub.url, self.flapper.service.url, FLAP_NAME, [(*FLAP_PARTY, "CPO")]
        )
        self.http = {name: self._session(64) for name in self.registered}
        self.owner: dict[tuple[str, str], str] = {
            (cc, pid): name for name, roles in PLATFORMS.items() for cc, pid, _ in roles
        }
        self.cpos = [(cc, pid) for cc, pid, role in _roles() if role == "CPO"]
        self.emsps = [(cc, pid) for cc, pid, role in _roles() if role == "EMSP"]
        await settle(self.pids())  # ClientInfo pushes of the registrations

    # -- requests --------------------------------------------------------------------------

    async def send(
        self,
        kind: str,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None = None,
        flapping: bool = False,
    ) -> Answer | None:
        """One OCPI request, classified: 1000 is ok; 4002/4003 from the flapping platform
        around an outage are expected; anything else is a problem. None unless ok."""
        counts = self.tally.kinds[kind]
        counts.sent += 1
        sent = time.monotonic()
        try:
            async with session.request(method, url, headers=headers, data=body) as response:
                raw = await response.read()
                status = response.status
                answer_headers = response.headers.copy()
                following = response.links.get("next")
        except Exception as exc:
            self.tally.problem(kind, f"client exception {type(exc).__name__}", f"{url}: {exc}")
            return None
        answered = time.monotonic()
        counts.latencies.append(answered - sent)
        try:
            envelope: Envelope | None = _envelope.decode(raw)
        except msgspec.DecodeError:
            envelope = None
        code = envelope.status_code if envelope is not None else None
        if status >= 500:
            self.tally.problem(kind, f"HTTP {status}", f"{method} {url}: {raw[:300]!r}")
        elif envelope is None or code is None:
            self.tally.problem(kind, "not an OCPI envelope", f"HTTP {status} {raw[:300]!r}")
        elif status == 200 and code == 1000:
            counts.ok += 1
            next_url = str(following["url"]) if following else None
            return Answer(status, envelope, answer_headers, next_url)
        elif flapping and code in (4002, 4003) and self._excused(sent, answered, ROUTED_GRACE):
            counts.expected[str(code)] += 1
        else:
            message = envelope.status_message
            self.tally.problem(kind, f"status {code} (HTTP {status})", f"{method} {url}: {message}")
        return None

    def _excused(self, sent: float, answered: float, grace: float) -> bool:
        assert self.flapper is not None
        return self.flapper.excused(sent, answered, grace)

    def _headers(self, name: str, sender: tuple[str, str], receiver: tuple[str, str]) -> dict:
        registered = self.flap if name == FLAP_NAME else self.registered[name]
        return registered.hub_headers(sender, receiver)

    async def get_location(self, n: int) -> None:
        emsp = self.emsps[n % len(self.emsps)]
        cpo = self.cpos[n // len(self.emsps) % len(self.cpos)]
        name = self.owner[emsp]
        url = f"{self.hub.url}/ocpi/2.3.0/locations/sender/LOC{n % OBJECT_IDS}"
        await self.send("get_location", self.http[name], "GET", url, self._headers(name, emsp, cpo))

    async def put_location(self, n: int) -> None:
        cpo = self.cpos[n % len(self.cpos)]
        emsp = self.emsps[n // len(self.cpos) % len(self.emsps)]
        name = self.owner[cpo]
        object_id = f"LOC{n % OBJECT_IDS}"
        url = f"{self.hub.url}/ocpi/2.3.0/locations/receiver/{cpo[0]}/{cpo[1]}/{object_id}"
        body = location_body(object_id, *cpo)
        headers = {**self._headers(name, cpo, emsp), "Content-Type": "application/json"}
        await self.send("put_location", self.http[name], "PUT", url, headers, body)

    async def put_token(self, n: int) -> None:
        emsp = self.emsps[n % len(self.emsps)]
        cpo = self.cpos[n // len(self.emsps) % len(self.cpos)]
        name = self.owner[emsp]
        uid = f"TOK{n % OBJECT_IDS}"
        url = f"{self.hub.url}/ocpi/2.3.0/tokens/receiver/{emsp[0]}/{emsp[1]}/{uid}"
        body = token_body(uid, *emsp)
        headers = {**self._headers(name, emsp, cpo), "Content-Type": "application/json"}
        await self.send("put_token", self.http[name], "PUT", url, headers, body)

    async def get_tokens(self, n: int) -> None:
        cpo = self.cpos[n % len(self.cpos)]
        emsp = self.emsps[n // len(self.cpos) % len(self.emsps)]
        name = self.owner[cpo]
        url = f"{self.hub.url}/ocpi/2.3.0/tokens/sender?offset=0&limit=10"
        await self.send("get_tokens", self.http[name], "GET", url, self._headers(name, cpo, emsp))

    async def flap_get(self, n: int) -> None:
        emsp = self.emsps[n % len(self.emsps)]
        name = self.owner[emsp]
        url = f"{self.hub.url}/ocpi/2.3.0/locations/sender/LOC{n % OBJECT_IDS}"
        headers = self._headers(name, emsp, FLAP_PARTY)
        await self.send("flap_get", self.http[name], "GET", url, headers, flapping=True)

    async def broadcast(self, n: int) -> None:
        cpo = self.cpos[n % len(self.cpos)]
        name = self.owner[cpo]
        object_id = f"BC{n % OBJECT_IDS}"
        url = f"{self.hub.url}/ocpi/2.3.0/locations/receiver/{cpo[0]}/{cpo[1]}/{object_id}"
        body = location_body(object_id, *cpo)
        headers = {**self._headers(name, cpo, HUB_ID), "Content-Type": "application/json"}
        answer = await self.send("broadcast", self.http[name], "PUT", url, headers, body)
        if answer is None:
            return
        words = str(answer.envelope.status_message).split()
        if len(words) != 3 or words[0] != "broadcast" or words[2] != "accepted":
            self.tally.problem("broadcast", "no broadcast id in the answer", str(answer.envelope))
            return
        task = asyncio.ensure_future(self.check_report(words[1]))
        self.checks.add(task)
        task.add_done_callback(self.checks.discard)

    async def check_report(self, broadcast_id: str) -> None:
        """Poll the report until it is finished: every eMSP party delivered with 1xxx."""
        deadline = time.monotonic() + REPORT_WITHIN
        url = f"{self.hub.url}/admin/broadcasts/{broadcast_id}"
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        counts = self.tally.kinds["admin"]
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            counts.sent += 1
            began = time.monotonic()
            try:
                async with self.admin.get(url, headers=headers) as response:
                    status = response.status
                    raw = await response.read()
            except Exception as exc:
                self.tally.problem("admin", f"client exception {type(exc).__name__}", str(exc))
                return
            counts.latencies.append(time.monotonic() - began)
            report = data.decode(raw)
            if status != 200 or not isinstance(report, dict):
                self.tally.problem("admin", f"HTTP {status}", f"{url}: {raw[:300]!r}")
                return
            counts.ok += 1
            if not report.get("finished"):
                continue
            deliveries = report.get("deliveries") or []
            failed = [d for d in deliveries if not 1000 <= (d.get("status_code") or 0) < 2000]
            if report.get("receivers") != len(self.emsps) or len(deliveries) != len(self.emsps):
                detail = f"{broadcast_id}: receivers {report.get('receivers')}, {len(deliveries)}"
                self.tally.problem("broadcast", "report with the wrong receivers", detail)
            elif failed:
                self.tally.problem("broadcast", "delivery failed", f"{broadcast_id}: {failed}")
            else:
                self.tally.events["broadcast reports finished, all delivered"] += 1
                self.tally.events["broadcast deliveries"] += len(deliveries)
            return
        self.tally.problem(
            "broadcast", f"report not finished within {REPORT_WITHIN:g} s", broadcast_id
        )

    async def walk(self, n: int) -> None:
        """GET All of Locations by an eMSP, following Link rel=next to the end."""
        emsp = self.emsps[n % len(self.emsps)]
        name = self.owner[emsp]
        headers = self._headers(name, emsp, HUB_ID)
        url: str | None = f"{self.hub.url}/ocpi/2.3.0/locations/sender?limit=100"
        began = time.monotonic()
        objects = pages = 0
        total: int | None = None
        skipped: list[str] = []
        while url is not None:
            if pages >= MAX_PAGES or time.monotonic() > began + WALK_WITHIN:
                self.tally.problem("getall_page", "walk did not end", f"after {pages} pages")
                return
            answer = await self.send("getall_page", self.http[name], "GET", url, headers)
            if answer is None:
                return  # counted by send
            pages += 1
            try:
                objects += len(_list.decode(answer.envelope.data) or [])
            except msgspec.DecodeError:
                self.tally.problem("getall_page", "data is not a list", url)
                return
            if total is None:
                total = int(answer.headers.get("X-Total-Count", "-1"))
            message = answer.envelope.status_message
            if message:
                skipped.append(str(message))
            url = answer.next_url
        ended = time.monotonic()
        stable = LIST_SIZE * len(self.cpos)
        full = stable + LIST_SIZE  # with the flapping CPO's list
        flap = "/".join(FLAP_PARTY)
        if objects == full and total == full and not skipped:
            self.tally.events["GET All walks complete"] += 1
        elif (
            total in (stable, full)
            and stable <= objects <= full
            and all(_skipped_parties(m) == {flap} for m in skipped)
            and self._excused(began, ended, WALK_GRACE)
        ):
            self.tally.events["GET All walks without the flapping CPO (outage)"] += 1
        else:
            detail = f"{objects} objects, X-Total-Count {total}, {pages} pages, skipped {skipped}"
            self.tally.problem("getall_page", "walk incomplete", detail)
        self.tally.events["GET All objects"] += objects

    # -- pacing ----------------------------------------------------------------------------

    async def paced(
        self, rate: float, request: Callable[[int], Awaitable[None]], deadline: float
    ) -> None:
        """``rate`` requests per second from a few workers, each on its own schedule (no
        catching up in bursts when late), until ``deadline`` or the count is reached."""
        workers = max(1, math.ceil(rate / 4))  # 250 ms per request before one falls behind
        period = workers / rate
        limit = int(rate * self.o.seconds * 1.05) + workers
        numbers = itertools.count()

        async def worker(first: float) -> None:
            due = first
            while True:
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(min(due, deadline) - now)
                if time.monotonic() >= deadline:
                    return
                n = next(numbers)
                if n >= limit:
                    return
                try:
                    await request(n)
                except Exception as exc:  # a fault of the load client itself
                    self.tally.problem("client", type(exc).__name__, traceback.format_exc(-3))
                due = max(due + period, time.monotonic() - period)

        start = time.monotonic()
        await asyncio.gather(*(worker(start + i * period / workers) for i in range(workers)))

    async def sampler(self, deadline: float) -> None:
        while True:
            self.sample()
            now = time.monotonic()
            if now >= deadline:
                return
            if not self.dbsize_samples or now - self.dbsize_samples[-1][0] >= 30:
                self.dbsize_samples.append((now, await self.redis.dbsize()))
            await asyncio.sleep(min(SAMPLE_EVERY, deadline - now))

    def census(self) -> dict[str, Any]:
        assert self.flapper is not None
        peers = {self.platforms.port: "platforms", self.flapper.port: FLAP_NAME}
        return fd_census(self.hub.pid, self.hub.port, peers)

    async def lag_monitor(self, deadline: float) -> None:
        """How late the load client's own loop wakes up: a busy client shows here, and its
        latencies then include its own queueing."""
        while time.monotonic() < deadline:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            self.lags.append(time.monotonic() - before - 0.1)

    def sample(self) -> Sample:
        census = self.census()
        one = Sample(
            t=round(time.monotonic() - self.traffic_began, 1),
            rss_mb=round(memory_kb(self.hub.pid)["VmRSS"] / MB, 2),
            fds=census["fds"],
            sockets=census["sockets"],
            threads=census["threads"],
            cpu_s=round(cpu_seconds(self.hub.pid), 2),
            load1=os.getloadavg()[0],
        )
        self.samples.append(one)
        return one

    # -- the whole soak --------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        assert self.flapper is not None
        await self.setup()
        before = {
            "rss_mb": round(memory_kb(self.hub.pid)["VmRSS"] / MB, 2),
            "fds": self.census(),
            "redis": await redis_census(self.redis),
        }
        self.traffic_began = time.monotonic()
        self.tally = Tally(self.traffic_began)
        client_cpu = time.process_time()
        deadline = self.traffic_began + self.o.seconds
        loops = [
            self.paced(rate * self.o.rate, getattr(self, kind), deadline)
            for kind, rate in RATES.items()
        ]
        loops.append(self.paced(1 / WALK_EVERY, self.walk, deadline))
        print(
            f"traffic for {self.o.seconds:.0f} s: "
            + ", ".join(f"{k} {r * self.o.rate:g}/s" for k, r in RATES.items())
            + f", a GET All walk every {WALK_EVERY:g} s; the '{FLAP_NAME}' platform goes "
            "down every 30-60 s",
            flush=True,
        )
        warm = self.traffic_began + self.o.warmup
        await asyncio.gather(
            *loops,
            self.flapper.run(deadline),
            self.sampler(deadline),
            self.lag_monitor(deadline),
            self._warm(warm),
        )
        client_cpu = time.process_time() - client_cpu
        traffic_seconds = time.monotonic() - self.traffic_began
        # Broadcast reports still being checked: each is bounded by REPORT_WITHIN.
        if self.checks:
            await asyncio.wait(set(self.checks), timeout=REPORT_WITHIN + REQUEST_TIMEOUT + 5)
            for task in list(self.checks):
                task.cancel()
                self.tally.problem("broadcast", "report check did not end", "")
        end = {
            "rss_mb": round(memory_kb(self.hub.pid)["VmRSS"] / MB, 2),
            "fds": self.census(),
            "cpu_s": cpu_seconds(self.hub.pid),
            "client_cpu_s": client_cpu,
        }
        for session in self.http.values():
            await session.close()
        print(f"traffic done; {self.o.idle:.0f} s idle (keep-alive connections expire)", flush=True)
        idle_samples = []
        idle_until = time.monotonic() + self.o.idle
        while time.monotonic() < idle_until:
            await asyncio.sleep(min(SAMPLE_EVERY, idle_until - time.monotonic()))
            census = self.census()
            idle_samples.append(
                {"t": round(time.monotonic() - self.traffic_began, 1)}
                | {k: census[k] for k in ("sockets", "tcp", "unix")}
            )
        idle = {
            "rss_mb": round(memory_kb(self.hub.pid)["VmRSS"] / MB, 2),
            "fds": self.census(),
            "redis": await redis_census(self.redis),
        }
        idle["samples"] = idle_samples
        return self._result(before, end, idle, traffic_seconds)

    async def _warm(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        self.warm_rss = self.sample().rss_mb

    def _result(
        self, before: dict[str, Any], end: dict[str, Any], idle: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        assert self.flapper is not None
        log = scan_log(self.hub.log_path)
        for line in log.get("errors", []):
            self.tally.problem("hub log", "line at level error", line[:500])
        for line in log.get("not_json", []):
            self.tally.problem("hub log", "line not JSON", line[:500])
        start_rss = self.warm_rss
        growth = (end["rss_mb"] - start_rss) / start_rss * 100
        after_warm = [s for s in self.samples if s.t >= self.o.warmup]
        slope = _slope([(s.t, s.rss_mb) for s in after_warm]) * 60
        hub_cpu = (end["cpu_s"] - self.samples[0].cpu_s) / seconds * 100
        unexpected = self.tally.unexpected
        return {
            "traffic_seconds": round(seconds, 1),
            "kinds": {k: c.summary(seconds) for k, c in self.tally.kinds.items()},
            "events": dict(self.tally.events),
            "flap_outages": len(self.flapper.outages),
            "flap_down_seconds": round(
                sum((o.up or o.down) - o.down for o in self.flapper.outages), 1
            ),
            "unexpected_errors": unexpected,
            "unexpected_by_reason": dict(self.tally.reasons),
            "unexpected_examples": self.tally.examples,
            "hub_rss_mb": {
                "before_traffic": before["rss_mb"],
                "start": start_rss,
                "start_is": f"after {self.o.warmup:g} s of traffic (warm-up)",
                "end": end["rss_mb"],
                "after_idle": idle["rss_mb"],
                "peak_sampled": max(s.rss_mb for s in self.samples),
                "growth_pct": round(growth, 2),
                "growth_from_before_traffic_pct": round(
                    (end["rss_mb"] - before["rss_mb"]) / before["rss_mb"] * 100, 2
                ),
                "slope_after_warmup_mb_per_min": round(slope, 3),
            },
            "hub_cpu_pct_of_one_core": round(hub_cpu, 1),
            "load_client": {
                "cpu_pct_of_one_core": round(end["client_cpu_s"] / seconds * 100, 1),
                "loop_lag_ms": {
                    "p50": round(_percentile(sorted(self.lags), 50) * 1000, 1),
                    "p99": round(_percentile(sorted(self.lags), 99) * 1000, 1),
                    "max": round(max(self.lags, default=0.0) * 1000, 1),
                },
            },
            "load_average_1min": {
                "min": min(s.load1 for s in self.samples),
                "max": max(s.load1 for s in self.samples),
            },
            "hub_fds": {"start": before["fds"], "end": end["fds"], "after_idle": idle["fds"]},
            "hub_sockets_while_idle": idle["samples"],
            "asyncio_tasks": "not measured: the hub exposes no count; threads and fds only",
            "redis": {
                "start": before["redis"],
                "end": idle["redis"],
                "dbsize_samples": [
                    (round(t - self.traffic_began, 1), n) for t, n in self.dbsize_samples
                ],
            },
            "hub_log": {k: v for k, v in log.items() if k not in ("errors", "not_json")}
            | {"error_lines": len(log.get("errors", [])), "not_json": len(log.get("not_json", []))},
            "goals": {
                "unexpected errors = 0": unexpected == 0,
                "hub RSS growth < 10 %": growth < 10,
            },
            "outages": self.flapper.summary(self.traffic_began),
            "samples": [asdict(s) for s in self.samples],
        }


def _skipped_parties(message: str) -> set[str]:
    """The parties a GET All page names as skipped ("skipped NL/CPF: reason; ...")."""
    return set(re.findall(r"(?:^skipped |; )([A-Z]{2}/[A-Z0-9]{3}): ", message))


def _roles() -> list[Role]:
    return [role for roles in PLATFORMS.values() for role in roles]


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (per second); 0 with fewer than two points."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / den if den else 0.0


# -- the report --------------------------------------------------------------------------------


def print_summary(result: dict[str, Any]) -> None:
    kinds = result["kinds"]
    print()
    header = (
        f"{'kind':<13} {'what':<42} {'sent':>8} {'req/s':>7} {'ok':>8} "
        f"{'expected':>14} {'unexp.':>6} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for kind, row in kinds.items():
        expected = ", ".join(f"{c}: {n}" for c, n in sorted(row["expected_failures"].items()))
        print(
            f"{kind:<13} {KINDS[kind]:<42} {row['sent']:>8} {row['rate_per_s']:>7} "
            f"{row['ok']:>8} {expected or '-':>14} {row['unexpected']:>6} "
            f"{row['p50_ms']:>7} {row['p99_ms']:>7}"
        )
    print("-" * len(header))
    client = result["load_client"]
    load = result["load_average_1min"]
    print(
        f"traffic {result['traffic_seconds']:.0f} s; hub CPU "
        f"{result['hub_cpu_pct_of_one_core']}% of one core; load client CPU "
        f"{client['cpu_pct_of_one_core']}%, its loop lag p50/p99/max {client['loop_lag_ms']} ms; "
        f"machine load average {load['min']:.2f}-{load['max']:.2f}"
    )
    print(
        f"flapping platform: {result['flap_outages']} outages, "
        f"{result['flap_down_seconds']:.0f} s down in all"
    )
    for event, n in result["events"].items():
        print(f"  {event}: {n}")
    rss = result["hub_rss_mb"]
    print(
        f"hub RSS: {rss['before_traffic']} MB before traffic, {rss['start']} MB {rss['start_is']}, "
        f"{rss['end']} MB at the end ({rss['growth_pct']:+.1f} %; "
        f"{rss['growth_from_before_traffic_pct']:+.1f} % from before traffic), "
        f"{rss['after_idle']} MB after idle; peak {rss['peak_sampled']} MB; "
        f"slope after warm-up {rss['slope_after_warmup_mb_per_min']:+.3f} MB/min"
    )
    for label, fds in result["hub_fds"].items():
        print(
            f"hub fds {label:<10} {fds['fds']:>4} (sockets {fds['sockets']}: tcp {fds['tcp']}, "
            f"unix {fds['unix']}; {fds['by_kind']}), threads {fds['threads']}"
        )
    print(f"asyncio tasks: {result['asyncio_tasks']}")
    redis = result["redis"]
    print(f"Redis DBSIZE: {redis['start']['dbsize']} at start, {redis['end']['dbsize']} at the end")
    patterns = sorted(set(redis["start"]["per_pattern"]) | set(redis["end"]["per_pattern"]))
    for pattern in patterns:
        was = redis["start"]["per_pattern"].get(pattern, 0)
        now = redis["end"]["per_pattern"].get(pattern, 0)
        print(f"  {pattern:<40} {was:>6} -> {now:>6}")
    if redis["end"]["no_ttl"]:
        print(f"  keys that should expire but have no TTL: {redis['end']['no_ttl']}")
    log = result["hub_log"]
    print(f"hub log: levels {log.get('levels')}, warnings {log.get('warnings_by_event')}")
    print(f"unexpected errors: {result['unexpected_errors']}")
    for reason, n in result["unexpected_by_reason"].items():
        print(f"  {n:>6}  {reason}")
    for example in result["unexpected_examples"]:
        print(
            f"  e.g. at {example['at_s']} s, {example['kind']}: {example['reason']}: "
            f"{example['detail'][:300]}"
        )
    for goal, met in result["goals"].items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")


# -- main --------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of traffic")
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds of traffic before the start RSS is taken (at most a quarter of the run)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=70.0,
        help="idle seconds before the last count (the hub drops idle keep-alive connections "
        "after 30 s, on a cleanup pass that runs every 30 s)",
    )
    parser.add_argument("--rate", type=float, default=1.0, help="scale every request rate")
    parser.add_argument("--seed", type=int, default=1, help="seed of the outage schedule")
    parser.add_argument("--out", type=Path, default=Path("bench-results/soak.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive")
    return args


async def _main(soak: Soak) -> dict[str, Any]:
    # SIGTERM ends the run like Ctrl-C: every process started is stopped by its pid.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with soak:
        return await soak.run()


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    seconds = args.minutes * 60
    options = Options(
        seconds=seconds,
        warmup=min(args.warmup, seconds / 4),
        idle=args.idle,
        seed=args.seed,
        rate=args.rate,
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hub-soak-"))
    configure_logging("WARNING", "console")
    info = machine()
    load_at_start = os.getloadavg()
    print(
        f"hub soak: {info['nproc']} cores, {info['cpu_model']}, Python {info['python']}; "
        f"{args.minutes:g} min of traffic; load average {load_at_start[0]:.2f}; "
        f"work dir {workdir}",
        flush=True,
    )
    soak = Soak(options, workdir)
    try:
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(_main(soak))
        else:
            result = uvloop.run(_main(soak))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\nsoak interrupted; every process stopped; logs in {workdir}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print(f"soak failed; every process stopped; logs in {workdir}", file=sys.stderr)
        return 1
    header: dict[str, Any] = {
        "started": started,
        "wall_seconds": round(time.monotonic() - began, 1),
        "load_average_at_start_and_end": [load_at_start, os.getloadavg()],
        "machine": info,
        "code": code_version(),
        "command": "make soak",
        "load_generator": "the harness's own aiohttp client (tests/bench/soak.py), paced",
        "options": vars(args) | {"out": str(args.out), "warmup_used": options.warmup},
        "settings": {"HUB_ALIVE_INTERVAL": ALIVE_INTERVAL, "rates_per_s": RATES},
    }
    result = header | result
    print_summary(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results written to {args.out}; wall time {result['wall_seconds']:.0f} s")
    if args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
