"""The delivery engine end to end: order, coalescing, staleness, failures and dead letters.

transport_and_format "Broadcast Push": the hub sends the push on to every receiver, from =
the hub. "Offline behaviour": messages SHOULD NOT be queued; a receiver re-syncs by GET, so a
delivery older than DELIVERY_MAX_AGE is not sent but kept as a dead letter. "PATCH": fields
left out stay, which is what lets the hub merge waiting pushes of one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register, until
from tests.support import REDIS_MODE, HubClient, eventually
from tests.test_serve import HubProcess

HUB = ("NL", "HUB")
LOC = "/NL/CPA/LOC1"
EVSE = LOC + "/E1"
ADMIN = "a" * 40


def stamp(n: int) -> str:
    return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z"


@dataclass
class Receiver:
    """A fake eMSP that holds the EVSE's state as its pushes build it, and every status it
    was told in the order it was told."""

    platform: FakePlatform
    delay: tuple[float, float] = (0.0, 0.0)
    failing: bool = False
    blocked: asyncio.Event | None = None
    state: dict[str, Any] = field(default_factory=dict)
    told: list[tuple[str, str]] = field(default_factory=list)  # (last_updated, status)

    def __post_init__(self) -> None:
        self.platform.handler = self.answer

    async def answer(self, received: Received, request: web.Request) -> web.StreamResponse:
        if received.method not in ("PUT", "PATCH"):
            return ocpi(None)
        if self.blocked is not None:
            await self.blocked.wait()
        if self.delay[1]:
            await asyncio.sleep(random.uniform(*self.delay))
        if self.failing:
            return web.Response(status=503, text="down for maintenance")
        body = received.json()
        self.state = body if received.method == "PUT" else {**self.state, **body}
        self.told.append((body["last_updated"], body.get("status", "")))
        return ocpi(None)

    @property
    def status(self) -> str | None:
        return self.state.get("status")


async def push(
    http: aiohttp.ClientSession, hub: HubClient, cpo: FakePlatform, method: str, body: Any
) -> str:
    """A Broadcast Push of the EVSE through ``hub``; returns the broadcast id."""
    url = hub.endpoint("locations", "RECEIVER") + EVSE
    headers = {**cpo.routed(HUB), "X-Correlation-ID": uuid.uuid4().hex}
    async with http.request(method, url, json=body, headers=headers) as response:
        answer = await response.json()
    assert answer["status_code"] == 1000, answer
    return str(answer["status_message"].split()[1])


async def admin(http: aiohttp.ClientSession, hub: HubClient, method: str, path: str) -> Any:
    async with http.request(method, hub.url + path, headers=hub.admin) as response:
        return response.status, await response.json()


async def finished(
    http: aiohttp.ClientSession, hub: HubClient, broadcast_id: str, seconds: float = 15.0
) -> dict[str, Any]:
    """The broadcast's report once every receiver platform is done with it."""
    report: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal report
        _, report = await admin(http, hub, "GET", f"/admin/broadcasts/{broadcast_id}")
        return bool(report.get("finished"))

    await eventually(check, seconds)
    return report


def evse(status: str, n: int) -> dict[str, Any]:
    return {"uid": "E1", "evse_id": "NL*CPA*E1", "status": status, "last_updated": stamp(n)}


def never_older_after_newer(told: list[tuple[str, str]]) -> bool:
    return all(a[0] < b[0] for a, b in itertools.pairwise(told))


@contextlib.asynccontextmanager
async def processes(
    tmp_path: Any, redis_url: str, count: int, **env: str
) -> AsyncIterator[list[HubProcess]]:
    settings = {
        "HUB_REDIS_URL": redis_url,
        "HUB_REDIS_MODE": REDIS_MODE,
        "HUB_ADMIN_TOKEN": ADMIN,
        **env,
    }
    hubs = [HubProcess(tmp_path / f"hub{n}", 0, **settings) for n in range(count)]
    try:
        for hub in hubs:
            await asyncio.to_thread(hub.start)
        yield hubs
    finally:
        for hub in hubs:
            if hub.process is not None and hub.process.poll() is None:
                await asyncio.to_thread(hub.stop)


@dataclass
class Pair:
    hub: HubClient
    cpo: FakePlatform
    msp: FakePlatform
    msp_id: str


@contextlib.asynccontextmanager
async def cpo_and_msp(
    hub_factory: HubFactory, http: aiohttp.ClientSession, **settings: Any
) -> AsyncIterator[Pair]:
    """One hub (with ``settings``), a CPO and an eMSP registered with it."""
    async with (
        hub_factory(**settings) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        await register(hub, http, cpo)
        yield Pair(hub, cpo, msp, await register(hub, http, msp))


STATUSES = ["AVAILABLE", "CHARGING", "BLOCKED", "OUTOFORDER"]


@pytest.mark.parametrize("count", [2, 3])
async def test_a_status_storm_reaches_slow_receivers_in_order_through_processes(
    redis: aioredis.Redis, redis_url: str, http: aiohttp.ClientSession, tmp_path: Any, count: int
) -> None:
    """A PUT and 50 PATCHes of one EVSE, sent through the hub processes in turn, to two
    receivers that answer slowly: each ends with the last status, never hears an older
    status after a newer one, hears the PUT first (a PATCH never overtakes it), and gets
    fewer requests than pushes because waiting ones were merged."""
    async with (
        processes(tmp_path, redis_url, count) as hubs,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp_a,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as msp_b,
    ):
        clients = [HubClient(h.url, ADMIN) for h in hubs]
        for platform in (cpo, msp_a, msp_b):
            await register(clients[0], http, platform)  # type: ignore[arg-type]
        receivers = [Receiver(msp_a, delay=(0.02, 0.06)), Receiver(msp_b, delay=(0.01, 0.08))]
        ids = [await push(http, clients[1], cpo, "PUT", evse("AVAILABLE", 0))]
        for n in range(1, 51):
            patch = {"status": STATUSES[n % 4], "last_updated": stamp(n)}
            ids.append(await push(http, clients[n % count], cpo, "PATCH", patch))
        last = STATUSES[50 % 4]
        await until(lambda: all(r.state.get("last_updated") == stamp(50) for r in receivers), 30)
        reports = [await finished(http, clients[0], i) for i in ids]
        for receiver in receivers:
            assert receiver.status == last and receiver.state["uid"] == "E1"
            assert never_older_after_newer(receiver.told), receiver.told
            assert receiver.platform.calls()[0].method == "PUT", "a PATCH overtook the PUT"
            assert len(receiver.told) < 51
        coalesced = sum(r["coalesced"] for r in reports)
        delivered = sum(r["delivered"] for r in reports)
        assert delivered == sum(len(r.told) for r in receivers)
        assert delivered + coalesced == 2 * 51, "every push reached both receivers once"
        merged = [d for r in reports for d in r["deliveries"] if d["pushes"] > 1]
        assert merged and all(d["status_code"] == 1000 for d in merged)


async def test_a_process_killed_mid_delivery_leaves_no_stale_replay(
    redis_url: str, http: aiohttp.ClientSession, tmp_path: Any, hub_factory: HubFactory
) -> None:
    """The process delivering AVAILABLE dies with the request in flight; CHARGING is
    accepted meanwhile. The process that takes over sends the newest state once (the PUT
    with CHARGING applied), and never AVAILABLE alone after it."""
    async with (
        processes(tmp_path, redis_url, 1, HUB_BROADCAST_CLAIM_IDLE="1") as (doomed,),
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        first = HubClient(doomed.url, ADMIN)
        for platform in (cpo, msp):
            await register(first, http, platform)  # type: ignore[arg-type]
        gate = asyncio.Event()
        Receiver(msp, blocked=gate)
        put = await push(http, first, cpo, "PUT", evse("AVAILABLE", 0))
        await until(lambda: len(msp.calls(method="PUT")) == 1)
        await asyncio.to_thread(doomed.stop, 9)  # SIGKILL while the PUT is in flight
        msp.received.clear()
        async with hub_factory(broadcast_claim_idle=1.0) as survivor:
            patch = await push(
                http, survivor, cpo, "PATCH", {"status": "CHARGING", "last_updated": stamp(1)}
            )
            gate.set()
            report = await finished(http, survivor, patch)
            assert (await finished(http, survivor, put))["coalesced"] == 1
        # What the hub sent after the kill: the newest state, once.
        (sent,) = msp.calls()
        assert sent.method == "PUT" and sent.json() == evse("CHARGING", 1)
        assert report["deliveries"][0]["pushes"] == 2


async def test_a_failing_receiver_gets_dead_letters_and_a_replay_brings_it_up_to_date(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """Retried DELIVERY_RETRIES times with backoff, then a dead letter; the replay sends the
    latest state the hub holds (the PUT with every later PATCH applied)."""
    async with (
        hub_factory(delivery_retries=2, delivery_backoff=0.05) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as healthy,
    ):
        for platform in (cpo, msp, healthy):
            await register(hub, http, platform)
        receiver, other = Receiver(msp, failing=True), Receiver(healthy)
        put = await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0))
        report = await finished(http, hub, put)
        assert report["delivered"] == 1 and report["dead"] == 1
        failed = next(d for d in report["deliveries"] if d["party_id"] == "MSA")
        assert failed["http_status"] == 503 and failed["status_code"] == 4000
        assert len(msp.calls(method="PUT")) == 3, "the first try and two retries"
        patch = await push(
            http, hub, cpo, "PATCH", {"status": "CHARGING", "last_updated": stamp(1)}
        )
        await finished(http, hub, patch)

        status, letters = await admin(http, hub, "GET", "/admin/dead-letters?receiver=DE/MSA")
        assert status == 200 and [(x["method"], x["reason"]) for x in letters] == [
            ("PATCH", "failed"),
            ("PUT", "failed"),
        ]
        assert letters[1]["attempts"] == 3 and letters[1]["broadcasts"] == [put]
        assert letters[1]["path"] == "/NL/CPA/LOC1/E1" and letters[1]["module"] == "locations"
        _, none = await admin(http, hub, "GET", "/admin/dead-letters?receiver=DE/MSB")
        _, other_module = await admin(http, hub, "GET", "/admin/dead-letters?module=tokens")
        _, too_young = await admin(http, hub, "GET", "/admin/dead-letters?older_than=3600")
        assert none == [] and other_module == [] and too_young == []
        status, wrong = await admin(http, hub, "GET", "/admin/dead-letters?older_than=soon")
        assert status == 400 and "older_than" in wrong["error"]

        receiver.failing = False
        msp.received.clear()
        status, replay = await admin(
            http, hub, "POST", f"/admin/dead-letters/{letters[1]['id']}/replay"
        )
        assert status == 200, replay
        assert receiver.state == evse("CHARGING", 1) and other.state == evse("CHARGING", 1)
        (sent,) = msp.calls()
        assert sent.method == "PUT" and sent.headers["ocpi-to-party-id"] == "MSA"
        (outcome,) = replay["replays"]
        assert outcome["delivered"] == 1 and outcome["receivers"] == 1
        assert len(healthy.calls()) == 2, "the replay goes to the dead letter's receiver only"
        status, missing = await admin(http, hub, "POST", "/admin/dead-letters/1-1/replay")
        assert status == 404 and "unknown dead letter" in missing["error"]


async def test_a_refusal_is_not_retried(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A 2xxx answer is the receiver refusing this content: sending it again would be
    refused again, so it is a dead letter at once."""
    async with cpo_and_msp(hub_factory, http, delivery_retries=3, delivery_backoff=0.01) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp

        async def refuse(received: Received, request: web.Request) -> web.StreamResponse:
            return ocpi(None, 2001, 400)

        msp.handler = refuse
        report = await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0)))
        assert report["dead"] == 1 and len(msp.calls()) == 1
        _, (letter,) = await admin(http, hub, "GET", "/admin/dead-letters")
        assert letter["reason"] == "refused" and letter["status_code"] == 2001


async def test_a_retry_that_succeeds_is_a_delivery(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with cpo_and_msp(hub_factory, http, delivery_retries=3, delivery_backoff=0.01) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp
        receiver = Receiver(msp, failing=True)
        original = receiver.answer

        async def flaky(received: Received, request: web.Request) -> web.StreamResponse:
            receiver.failing = len(msp.calls(method="PUT")) <= 2
            return await original(received, request)

        msp.handler = flaky
        report = await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0)))
        assert report["delivered"] == 1 and report["dead"] == 0
        assert len(msp.calls(method="PUT")) == 3 and receiver.status == "AVAILABLE"
        _, backlog = await admin(http, hub, "GET", "/admin/deliveries")
        (row,) = [b for b in backlog if b["platform_id"] == pair.msp_id]
        assert (row["delivered"], row["failed"], row["dead"], row["waiting"]) == (1, 2, 0, 0)
        assert row["oldest_waiting_s"] is None


async def test_failures_in_a_row_check_the_receiver_at_once(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """After DELIVERY_FAILURES_CHECK failures in a row the still-alive check runs at once
    (ALIVE_INTERVAL is an hour here); a receiver that is down is marked OFFLINE, and later
    pushes leave it out ("Offline behaviour": it re-syncs by GET once back)."""
    async with cpo_and_msp(
        hub_factory,
        http,
        delivery_retries=1,
        delivery_backoff=0.01,
        delivery_failures_check=2,
        alive_interval=3600,
    ) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp

        async def down(received: Received, request: web.Request) -> web.StreamResponse:
            return web.Response(status=502)

        msp.handler = msp.versions_handler = down
        await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0)))

        async def offline() -> bool:
            _, parties = await admin(http, hub, "GET", "/admin/parties")
            return any(p["party_id"] == "MSA" and p["status"] == "OFFLINE" for p in parties)

        await eventually(offline, 5)
        msp.received.clear()
        report = await finished(
            http,
            hub,
            await push(http, hub, cpo, "PATCH", {"status": "CHARGING", "last_updated": stamp(1)}),
        )
        assert report["receivers"] == 0 and report["deliveries"] == []
        assert msp.calls(method="PATCH") == []


async def test_a_delivery_older_than_the_max_age_is_not_sent(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """The receiver holds the first delivery past DELIVERY_MAX_AGE; the push that waited
    behind it is too old by then: a dead letter, not a request."""
    async with cpo_and_msp(hub_factory, http, delivery_max_age=0.5) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp
        gate = asyncio.Event()
        Receiver(msp, blocked=gate)
        put = await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0))
        await until(lambda: len(msp.calls()) == 1)
        patch = await push(
            http, hub, cpo, "PATCH", {"status": "CHARGING", "last_updated": stamp(1)}
        )

        async def aged() -> bool:  # the PATCH waits past DELIVERY_MAX_AGE behind the held PUT
            _, (row,) = await admin(http, hub, "GET", "/admin/deliveries")
            return bool(row["oldest_waiting_s"] and row["oldest_waiting_s"] > 0.6)

        await eventually(aged)
        gate.set()
        assert (await finished(http, hub, put))["delivered"] == 1
        report = await finished(http, hub, patch)
        assert report["dead"] == 1 and report["deliveries"] == []
        assert [c.method for c in msp.calls()] == ["PUT"]
        _, (letter,) = await admin(http, hub, "GET", "/admin/dead-letters")
        assert letter["reason"] == "stale" and letter["attempts"] == 0


async def test_a_push_identical_to_the_last_delivered_is_dropped(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with cpo_and_msp(hub_factory, http) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp
        Receiver(msp)
        await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0)))
        again = await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0)))
        assert again["dropped"] == 1 and again["delivered"] == 0
        newer = await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 1)))
        assert newer["delivered"] == 1
        assert len(msp.calls(method="PUT")) == 2


async def test_identical_pushes_are_sent_when_the_setting_is_off(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with cpo_and_msp(hub_factory, http, delivery_drop_identical=False) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp
        Receiver(msp)
        for _ in range(2):
            await finished(http, hub, await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0)))
        assert len(msp.calls(method="PUT")) == 2


async def test_backlog_shows_what_waits_for_a_slow_receiver(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with cpo_and_msp(hub_factory, http) as pair:
        hub, cpo, msp = pair.hub, pair.cpo, pair.msp
        gate = asyncio.Event()
        Receiver(msp, blocked=gate)
        await push(http, hub, cpo, "PUT", evse("AVAILABLE", 0))
        await until(lambda: len(msp.calls()) == 1)
        last = await push(http, hub, cpo, "PATCH", {"status": "CHARGING", "last_updated": stamp(1)})
        _, backlog = await admin(http, hub, "GET", "/admin/deliveries")
        (row,) = [b for b in backlog if b["platform_id"] == pair.msp_id]
        assert row["waiting"] == 2 and row["oldest_waiting_s"] >= 0
        gate.set()
        await finished(http, hub, last)
        _, backlog = await admin(http, hub, "GET", "/admin/deliveries")
        (row,) = [b for b in backlog if b["platform_id"] == pair.msp_id]
        assert (row["waiting"], row["delivered"], row["oldest_waiting_s"]) == (0, 2, None)


@pytest.mark.parametrize("count", [2, 3])
async def test_each_receiver_platform_is_delivered_by_one_process(
    redis: aioredis.Redis, redis_url: str, http: aiohttp.ClientSession, tmp_path: Any, count: int
) -> None:
    """Leases split the receiver platforms between processes: each platform's lease is
    held by exactly one of them, and the processes hold as many each."""
    async with (
        processes(tmp_path, redis_url, count, HUB_BROADCAST_CLAIM_IDLE="1") as hubs,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        contextlib.AsyncExitStack() as stack,
    ):
        client = HubClient(hubs[0].url, ADMIN)
        await register(client, http, cpo)  # type: ignore[arg-type]
        for n in range(6):
            msp = await stack.enter_async_context(
                FakePlatform(f"MSP {n}", [("DE", f"M{n:02d}", "EMSP")], ALL_MODULES)
            )
            await register(client, http, msp)  # type: ignore[arg-type]
        await finished(http, client, await push(http, client, cpo, "PUT", evse("AVAILABLE", 0)))

        async def holders() -> list[bytes | None]:
            keys = [k async for k in redis.scan_iter("{hub}:delivery-lease:*")]
            return [await redis.get(k) for k in keys]

        async def shared() -> bool:
            held = await holders()
            return len(held) == 6 and len(set(held)) == count

        await eventually(shared, 10)
        held = await holders()
        assert len(held) == 6 and sorted(held.count(o) for o in set(held)) == [6 // count] * count
