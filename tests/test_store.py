"""The hub's Redis client: a cancelled command ends its task, so every loop can be stopped."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from hub.registry.client import connect
from hub.registry.store import SCHEMA, spec_of
from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register
from tests.support import RunningHub
from tests.test_ocpi_221 import MODULES_221

ROUNDS = 300


async def test_cancelled_commands_always_end_their_task(redis_url: str) -> None:
    """Shutdown cancels the hub's background loops (work queues, still-alive checks) while
    they wait on Redis. A client that loses even one of those cancels keeps a loop running
    and the process never exits. redis-py 8 with its default socket timeout lost 27 of 60
    cancels in this loop."""
    client = connect(redis_url)
    rng = random.Random(7)

    stopped = False

    async def busy() -> None:
        while not stopped:
            async with client.pipeline(transaction=True) as pipe:
                pipe.get("{hub}:probe").hgetall("{hub}:probe-hash")
                await pipe.execute()
            await client.hgetall("{hub}:probe-hash")

    lost_at = None
    try:
        for round_ in range(ROUNDS):
            task = asyncio.create_task(busy())
            await asyncio.sleep(rng.random() * 0.003)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=1)
            if not done:  # the cancel was lost: let the loop end by itself
                lost_at = round_
                stopped = True
                await task
                break
    finally:
        await client.aclose()
    assert lost_at is None, f"cancel {lost_at + 1} of {ROUNDS} was lost"


# -- every key the hub writes is in hub.registry.store.SCHEMA -------------------------------

HUB = ("NL", "HUB")
LOCATIONS = [{"id": f"LOC{i}", "country_code": "NL", "party_id": "CPA"} for i in range(3)]


async def _key_appears(redis: aioredis.Redis, key: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await redis.exists(key):
        assert time.monotonic() < deadline, f"{key} was never written"
        await asyncio.sleep(0.02)


async def _finished_broadcast(
    hub: RunningHub, http: aiohttp.ClientSession, broadcast_id: str
) -> dict[str, Any]:
    url = f"{hub.url}/admin/broadcasts/{broadcast_id}"
    deadline = time.monotonic() + 5
    while True:
        async with http.get(url, headers=hub.admin) as response:
            report = await response.json()
        if report.get("finished"):
            return report
        assert time.monotonic() < deadline, f"broadcast not finished: {report}"
        await asyncio.sleep(0.02)


async def _request(
    http: aiohttp.ClientSession,
    sender: FakePlatform,
    method: str,
    url: str,
    to: tuple[str, str],
    body: Any = None,
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    async with http.request(method, url, json=body, headers=sender.routed(to)) as response:
        return response, await response.json()


async def _keys_as_they_are(redis: aioredis.Redis) -> tuple[dict[str, tuple[str, int]], set[str]]:
    """Every key with its Redis type and TTL in milliseconds (a rate bucket may have less
    than a second left), each read in one transaction; and the keys that went between SCAN
    and that read (a still-alive lease or a rate bucket that just expired)."""
    found: dict[str, tuple[str, int]] = {}
    gone: set[str] = set()
    async for raw in redis.scan_iter(count=1000):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.type(raw).pttl(raw)
            type_, ttl = await pipe.execute()
        key = raw.decode()
        if type_ == b"none":
            gone.add(key)
        else:
            found[key] = (type_.decode(), ttl)
    return found, gone


async def test_every_key_under_traffic_is_in_the_schema(
    hub_factory: HubFactory, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    """This pins the key table of hub/registry/store.py (SCHEMA). A hub with three
    platforms and every kind of traffic that writes to Redis (registration and ClientInfo,
    a broadcast push to a 2.2.1 platform too and one refused (a dead letter), pushes the
    open-routing index learns, a GET All walk, a next-page link
    and a response_url callback, a still-alive check in flight, roaming agreements and one
    that ends by its validity window, a dashboard session): then every key in Redis
    matches a spec, has the spec's Redis type, and carries a TTL where the spec says it
    expires; and every spec is seen, so traffic that no longer writes a key shows too."""
    async with (
        # A slow refill keeps each platform's rate bucket (which expires once full again)
        # in Redis until the scan; a burst of 1,000 leaves every request of the test through.
        hub_factory(
            alive_interval=2.0,
            routing_policy="agreements",
            rate_limit_per_second=1,
            rate_limit_burst=1000,
        ) as hub,
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
        # A 2.2.1 platform: what it gets is translated, and what is lost counted.
        FakePlatform(
            "Nav", [("BE", "NAV", "NSP")], MODULES_221, versions=["2.2.1"], version="2.2.1"
        ) as nsp,
    ):
        for other in (("DE", "MSA"), ("BE", "NAV")):
            await _agree(hub, http, ("NL", "CPA"), other)
        ending = datetime.now(UTC) + timedelta(seconds=1)
        edge = await _agree(hub, http, ("DE", "MSA"), ("BE", "NAV"), ending)
        ids = [await register(hub, http, platform) for platform in (cpo, emsp, nsp)]

        async def cpo_answers(received: Received, request: web.Request) -> web.StreamResponse:
            if received.path == "/ocpi/2.3.0/locations/sender":
                offset = int(received.query.get("offset", 0))
                limit = int(received.query.get("limit", 100))
                headers = {"X-Total-Count": str(len(LOCATIONS)), "X-Limit": "100"}
                if offset + limit < len(LOCATIONS):
                    following = f"offset={offset + limit}&limit={limit}"
                    headers["Link"] = f'<{cpo.url}{received.path}?{following}>; rel="next"'
                return ocpi(LOCATIONS[offset : offset + limit], **headers)
            if received.path.startswith("/ocpi/2.3.0/commands/"):
                return ocpi({"result": "ACCEPTED", "timeout": 30})
            return ocpi(None)

        cpo.handler = cpo_answers

        # A broadcast push (to = the hub), delivered to the eMSP and the NSP (without the
        # 2.3.0-only help_phone: a loss counted for the NSP's platform).
        _, body = await _request(
            http, cpo, "PUT", hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC1", HUB,
            {**LOCATIONS[1], "help_phone": "+3120"},
        )  # fmt: skip
        assert body["status_code"] == 1000 and "broadcast" in body["status_message"]
        report = await _finished_broadcast(hub, http, body["status_message"].split()[1])
        assert sorted(d["party_id"] for d in report["deliveries"]) == ["MSA", "NAV"]

        # One the NSP refuses: a dead letter.
        async def refuse(received: Received, request: web.Request) -> web.StreamResponse:
            return ocpi(None, 2001)

        nsp.handler = refuse
        _, body = await _request(
            http, cpo, "PUT", hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC2", HUB,
            LOCATIONS[2],
        )  # fmt: skip
        report = await _finished_broadcast(hub, http, body["status_message"].split()[1])
        assert report["dead"] == 1 and report["delivered"] == 1

        # A session pushed directly: the index learns its CPO and eMSP.
        _, body = await _request(
            http, cpo, "PUT", hub.endpoint("sessions", "RECEIVER") + "/NL/CPA/S1", ("DE", "MSA"),
            {"id": "S1"},
        )  # fmt: skip
        assert body["status_code"] == 1000
        await _key_appears(redis, "{hub}:route:sessions:S1")
        await _key_appears(redis, "{hub}:route:locations:LOC1")

        # GET All via the hub: a walk, and a next link that names it.
        response, body = await _request(
            http, emsp, "GET", hub.endpoint("locations", "SENDER") + "?limit=2", HUB
        )
        assert [o["id"] for o in body["data"]] == ["LOC0", "LOC1"]
        assert response.headers["X-Total-Count"] == "3"
        assert "walk=" in response.headers["Link"]

        # A direct GET: the CPO's next link becomes a hub link.
        response, body = await _request(
            http, emsp, "GET", hub.endpoint("locations", "SENDER") + "?limit=1", ("NL", "CPA")
        )
        assert [o["id"] for o in body["data"]] == ["LOC0"]
        assert response.headers["Link"].startswith(f"<{hub.url}/ocpi/hub/links/")

        # A command with a response_url: the CPO gets a hub callback instead.
        command = {"response_url": f"{emsp.url}/results/1", "location_id": "LOC1"}
        _, body = await _request(
            http, emsp, "POST", hub.endpoint("commands", "RECEIVER") + "/START_SESSION",
            ("NL", "CPA"), command,
        )  # fmt: skip
        assert body["data"] == {"result": "ACCEPTED", "timeout": 30}
        (delivered,) = cpo.calls("/ocpi/2.3.0/commands/")
        assert delivered.json()["response_url"].startswith(f"{hub.url}/ocpi/hub/callbacks/")

        # The agreement clock marks the edge of the one that ends (one process pushes it).
        await _key_appears(redis, f"{{hub}}:agreement-edge:{edge}:{int(ending.timestamp())}")

        # An operator signed in to the dashboard: a session.
        login = {"token": hub.admin_token}
        url = f"{hub.url}/dashboard/login"
        async with http.post(url, data=login, allow_redirects=False) as response:
            assert response.status == 303

        # The (silent) NSP's first still-alive check, answered: its history. It falls due
        # alive_interval after registration, so a quick run gets here before it.
        await _key_appears(redis, "{hub}:alive-history:" + ids[2])

        # Its next check, held while Redis is read: its lease is a key too. The hub gives
        # the check min(forward_timeout, alive_interval) = 2 s.
        checking, answer = asyncio.Event(), asyncio.Event()

        async def held(received: Received, request: web.Request) -> web.StreamResponse:
            checking.set()
            await answer.wait()
            return ocpi([{"version": v, "url": f"{nsp.url}/ocpi/{v}"} for v in nsp.versions])

        nsp.versions_handler = held
        try:
            await asyncio.wait_for(checking.wait(), 10)
            found, gone = await _keys_as_they_are(redis)
        finally:
            answer.set()

    specs = {key: spec_of(key) for key in found}
    assert sorted(key for key, spec in specs.items() if spec is None) == []  # none unknown
    known = {key: spec for key, spec in specs.items() if spec is not None}
    wrong_type = {
        key: (found[key][0], spec.type) for key, spec in known.items() if found[key][0] != spec.type
    }
    assert wrong_type == {}
    expiring = {key: found[key][1] for key, spec in known.items() if spec.expires}
    assert {key: ttl for key, ttl in expiring.items() if not ttl > 0} == {}
    # Only a still-alive lease may go while Redis is read (another platform's check ended).
    assert {key for key in gone if not key.startswith("{hub}:alive-lease:")} == set()
    assert all(ttl > 0 for key, (_, ttl) in found.items() if key.startswith("{hub}:rate:"))
    seen = {spec.pattern for spec in known.values()}
    assert [spec.pattern for spec in SCHEMA if spec.pattern not in seen] == []
    assert found["{hub}:alive-lease:" + ids[2]][0] == "string"  # the NSP's check, held


async def _agree(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    a: tuple[str, str],
    b: tuple[str, str],
    until: datetime | None = None,
) -> str:
    body: dict[str, Any] = {
        "parties": [
            {"country_code": a[0], "party_id": a[1]},
            {"country_code": b[0], "party_id": b[1]},
        ]
    }
    if until is not None:
        body["valid_until"] = until.isoformat()
    async with http.post(f"{hub.url}/admin/agreements", json=body, headers=hub.admin) as r:
        assert r.status == 201
        return (await r.json())["id"]
