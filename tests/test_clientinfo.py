"""HubClientInfo (mod_hub_client_info.asciidoc) end to end: states, pushes, list, still-alive."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from hub.registry.store import Keys
from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register, until
from tests.support import RunningHub, drained, several, token_header

CPO = [("NL", "CPA", "CPO")]
EMSP = [("DE", "MSA", "EMSP")]
WATCHER = [("BE", "WAT", "EMSP")]


async def pushed(redis: aioredis.Redis) -> None:
    """Until every queued ClientInfo change and initial sync has been pushed: after this,
    nothing queued so far can still arrive anywhere."""
    await drained(redis, Keys.clientinfo_queue, "push")


async def admin_parties(hub: RunningHub, http: aiohttp.ClientSession) -> dict[str, str]:
    async with http.get(f"{hub.url}/admin/parties", headers=hub.admin) as response:
        return {p["party_id"]: p["status"] for p in await response.json()}


async def test_push_on_registration(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """mod_hub_client_info "Push model": PUT {endpoint}/{country_code}/{party_id} to every
    connected party's platform, no routing headers (a configuration module)."""
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
    ):
        await register(hub, http, watcher)
        await pushed(redis)  # the watcher's initial sync ran before NL/CPA existed
        await register(hub, http, cpo)
        await until(lambda: watcher.status_of("NL", "CPA") == "CONNECTED")
        (push,) = [r for r in watcher.received if r.path.endswith("/NL/CPA")]
        assert push.method == "PUT"
        assert push.path == "/ocpi/2.3.0/hubclientinfo/receiver/NL/CPA"
        assert push.token in watcher.inbound_tokens
        assert not any(h.startswith("ocpi-") for h in push.headers)
        info = push.json()
        assert set(info) == {"party_id", "country_code", "role", "status", "last_updated"}
        assert (info["role"], info["status"]) == ("CPO", "CONNECTED")
        assert info["last_updated"].endswith("Z")
        await pushed(redis)
        assert cpo.status_of("NL", "CPA") is None, "never to the party's own platform"
        assert [r.path for r in watcher.received if r.path.endswith("/NL/CPA")] == [push.path]


async def test_initial_sync_of_a_new_platform(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    async with (
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
        FakePlatform("MSP Co", EMSP, ALL_MODULES) as emsp,
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        async with http.post(
            f"{hub.url}/admin/parties",
            json={"country_code": "FR", "party_id": "PLN", "role": "CPO", "name": "Soon"},
            headers=hub.admin,
        ) as response:
            assert response.status == 201
        await register(hub, http, watcher)
        await until(lambda: len({(i["party_id"]) for i in watcher.client_infos()}) == 3)
        await pushed(redis)  # its own party's push is queued apart from the sync
        assert {(i["party_id"], i["status"]) for i in watcher.client_infos()} == {
            ("CPA", "CONNECTED"),
            ("MSA", "CONNECTED"),
            ("PLN", "PLANNED"),
        }
        assert watcher.status_of("BE", "WAT") is None


async def test_suspended_on_unregister_and_admin_suspend(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
        FakePlatform("MSP Co", EMSP, ALL_MODULES) as emsp,
    ):
        await register(hub, http, watcher)
        await register(hub, http, cpo)
        emsp_id = await register(hub, http, emsp)
        async with http.delete(f"{hub.url}/ocpi/2.3.0/credentials", headers=cpo.hub_headers()):
            pass
        await until(lambda: watcher.status_of("NL", "CPA") == "SUSPENDED")
        async with http.delete(f"{hub.url}/admin/platforms/{emsp_id}", headers=hub.admin):
            pass
        await until(lambda: watcher.status_of("DE", "MSA") == "SUSPENDED")
        assert (await admin_parties(hub, http))["MSA"] == "SUSPENDED"


async def test_planned_party(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    """PLANNED: announced, never connected; requests to it answer 4003 without a network call."""
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", [("FR", "PLN", "CPO")], ALL_MODULES) as later,
    ):
        await register(hub, http, watcher)
        async with http.post(
            f"{hub.url}/admin/parties",
            json={"country_code": "fr", "party_id": "pln", "role": "CPO", "name": "Planned CPO"},
            headers=hub.admin,
        ) as response:
            assert response.status == 201
            assert (await response.json())["status"] == "PLANNED"
        async with http.post(
            f"{hub.url}/admin/parties",
            json={"country_code": "FR", "party_id": "PLN", "role": "CPO", "name": "Again"},
            headers=hub.admin,
        ) as response:
            assert response.status == 409
        await until(lambda: watcher.status_of("FR", "PLN") == "PLANNED")
        assert (await admin_parties(hub, http))["PLN"] == "PLANNED"

        headers = watcher.routed(("FR", "PLN"))
        async with http.get(f"{hub.url}/ocpi/2.3.0/locations/sender", headers=headers) as r:
            body = await r.json()
        assert body["status_code"] == 4003 and "PLANNED" in body["status_message"]

        await register(hub, http, later)  # the planned party connects
        await until(lambda: watcher.status_of("FR", "PLN") == "CONNECTED")
        async with http.get(
            f"{hub.url}/admin/parties/FR/PLN/CPO/history", headers=hub.admin
        ) as response:
            history = await response.json()
        assert [(h["previous"], h["status"]) for h in history] == [
            ("PLANNED", "CONNECTED"),
            (None, "PLANNED"),
        ]
        assert history[1]["cause"] == "announced by operator"


async def test_offline_and_back(hub_factory: HubFactory, http: aiohttp.ClientSession) -> None:
    """Still-alive: a silent platform that stops answering its versions endpoint goes OFFLINE
    within seconds (ALIVE_INTERVAL=1); when it answers again it is CONNECTED."""
    async with (
        hub_factory(alive_interval=1.0) as hub,
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
    ):
        await register(hub, http, watcher)
        await register(hub, http, cpo)
        await until(lambda: watcher.status_of("NL", "CPA") == "CONNECTED")
        port = int(cpo.url.rsplit(":", 1)[1])
        await cpo.stop()
        await until(lambda: watcher.status_of("NL", "CPA") == "OFFLINE", 8)
        assert (await admin_parties(hub, http))["CPA"] == "OFFLINE"

        # OFFLINE parties are still tried (they may be back): here it is down, so 4003.
        headers = watcher.routed(("NL", "CPA"))
        async with http.get(f"{hub.url}/ocpi/2.3.0/locations/sender", headers=headers) as r:
            assert (await r.json())["status_code"] == 4003

        await cpo.start(port)
        await until(lambda: watcher.status_of("NL", "CPA") == "CONNECTED", 8)
        assert (await admin_parties(hub, http))["CPA"] == "CONNECTED"
        async with http.get(f"{hub.url}/admin/parties/NL/CPA/CPO/history", headers=hub.admin) as r:
            history = await r.json()
        assert [h["status"] for h in history[:2]] == ["CONNECTED", "OFFLINE"]
        assert "still-alive check failed" in history[1]["cause"]
        # The checks went to the platform's versions endpoint, with the hub's token for it.
        checks = [r for r in cpo.received if r.path == "/ocpi/versions"]
        assert checks and all(r.token in cpo.inbound_tokens for r in checks)


async def test_request_from_an_offline_platform_brings_it_back(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with (
        hub_factory() as hub,
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
    ):
        await register(hub, http, watcher)
        cpo_id = await register(hub, http, cpo)
        await hub.runtime.writer.set_status(cpo_id, "OFFLINE", "test: marked offline")
        await until(lambda: watcher.status_of("NL", "CPA") == "OFFLINE")
        async with http.get(hub.versions_url, headers=cpo.hub_headers()) as response:
            assert response.status == 200
        await until(lambda: watcher.status_of("NL", "CPA") == "CONNECTED")


async def test_unreachable_receiver_is_evidence(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A forward that cannot connect (4003) triggers a still-alive check at once, even with
    the default ALIVE_INTERVAL of 300 seconds."""
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
    ):
        await register(hub, http, watcher)
        await register(hub, http, cpo)
        await cpo.stop()
        headers = watcher.routed(("NL", "CPA"))
        async with http.get(f"{hub.url}/ocpi/2.3.0/locations/sender", headers=headers) as r:
            assert (await r.json())["status_code"] == 4003
        await until(lambda: watcher.status_of("NL", "CPA") == "OFFLINE")


async def test_failed_push_is_retried(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
    ):
        await register(hub, http, watcher)
        failures = 2

        async def flaky(received: Received, request: web.Request) -> web.StreamResponse:
            nonlocal failures
            if failures:
                failures -= 1
                return ocpi(None, 3000, 500)
            return ocpi(None)

        watcher.client_info_handler = flaky
        await register(hub, http, cpo)
        await until(
            lambda: len([r for r in watcher.received if r.path.endswith("/NL/CPA")]) == 3, 8
        )
        assert failures == 0


async def test_get_list_paginated(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    """mod_hub_client_info "Sender interface": GET, paginated, no routing headers needed."""
    parties = [("NL", f"C{i:02d}", "CPO") for i in range(5)]
    async with (
        FakePlatform("Many", parties, ALL_MODULES) as many,
        FakePlatform("Reader", WATCHER, ALL_MODULES) as reader,
    ):
        await register(hub, http, many)
        await register(hub, http, reader)
        url = f"{hub.url}/ocpi/2.3.0/hubclientinfo?limit=2"
        async with http.get(url) as response:
            assert response.status == 401
        seen: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url:
            async with http.get(next_url, headers=reader.hub_headers()) as response:
                assert response.status == 200
                body = await response.json()
                assert response.headers["X-Total-Count"] == "6"
                assert response.headers["X-Limit"] == "2"
                link = response.headers.get("Link")
            seen += body["data"]
            next_url = link[1 : link.index(">")] if link else None
        assert len(seen) == 6 and {i["party_id"] for i in seen} == {p for _, p, _ in parties} | {
            "WAT"
        }
        stamps = [i["last_updated"] for i in seen]
        assert stamps == sorted(stamps)

        later = seen[-1]["last_updated"]
        async with http.get(
            f"{hub.url}/ocpi/2.3.0/hubclientinfo?date_from={later}", headers=reader.hub_headers()
        ) as response:
            assert [i["party_id"] for i in (await response.json())["data"]] == ["WAT"]
        async with http.get(
            f"{hub.url}/ocpi/2.3.0/hubclientinfo?date_to={seen[0]['last_updated']}",
            headers=reader.hub_headers(),
        ) as response:
            assert (await response.json())["data"] == []
        for bad in ("date_from=yesterday", "offset=%C2%B2", "limit=-1"):
            async with http.get(
                f"{hub.url}/ocpi/2.3.0/hubclientinfo?{bad}", headers=reader.hub_headers()
            ) as response:
                assert response.status == 200, bad
                assert (await response.json())["status_code"] == 2001, bad


@pytest.mark.parametrize("count", [2, 3])
async def test_processes_push_each_change_once(
    hub_factory: HubFactory, http: aiohttp.ClientSession, redis: aioredis.Redis, count: int
) -> None:
    async with (
        several(hub_factory, count) as hubs,
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
        FakePlatform("MSP Co", EMSP, ALL_MODULES) as emsp,
    ):
        # Each change is pushed before the next is made: a push sends the status as it is
        # when it runs, so a CONNECTED push overtaken by the DELETE would say SUSPENDED.
        await register(hubs[0], http, watcher)
        await pushed(redis)
        await register(hubs[1], http, cpo)
        await pushed(redis)
        await register(hubs[-1], http, emsp)
        await pushed(redis)
        suspend = f"{hubs[-1].url}/ocpi/2.3.0/credentials"
        async with http.delete(suspend, headers=cpo.hub_headers()):
            pass
        await until(lambda: watcher.status_of("NL", "CPA") == "SUSPENDED")
        await pushed(redis)
        pushes = [(i["party_id"], i["status"]) for i in watcher.client_infos()]
        assert sorted(pushes) == [("CPA", "CONNECTED"), ("CPA", "SUSPENDED"), ("MSA", "CONNECTED")]


async def test_operator_and_platform_agree(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
        FakePlatform("MSP Co", EMSP, ALL_MODULES) as emsp,
    ):
        for platform in (watcher, cpo, emsp):
            await register(hub, http, platform)
        async with http.delete(f"{hub.url}/ocpi/2.3.0/credentials", headers=emsp.hub_headers()):
            pass
        await until(lambda: watcher.status_of("DE", "MSA") == "SUSPENDED")
        operator = await admin_parties(hub, http)
        assert {
            p: watcher.status_of(*(("NL", p) if p == "CPA" else ("DE", p))) for p in ("CPA", "MSA")
        } == {p: operator[p] for p in ("CPA", "MSA")}
        async with http.get(
            f"{hub.url}/ocpi/2.3.0/hubclientinfo", headers=token_header(watcher.hub_token)
        ) as r:
            listed = {i["party_id"]: i["status"] for i in (await r.json())["data"]}
        assert {p: listed[p] for p in ("CPA", "MSA")} == {p: operator[p] for p in ("CPA", "MSA")}


async def test_party_dropped_by_a_credentials_update_is_suspended(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """mod_hub_client_info "Push model": an invalidated ClientInfo is pushed as SUSPENDED."""
    async with (
        FakePlatform("Watcher", WATCHER, ALL_MODULES) as watcher,
        FakePlatform("CPO Co", [*CPO, ("NL", "CPX", "CPO")], ALL_MODULES) as cpo,
    ):
        await register(hub, http, watcher)
        await register(hub, http, cpo)
        await until(lambda: watcher.status_of("NL", "CPX") == "CONNECTED")
        cpo.parties = CPO  # the platform no longer hosts NL/CPX
        token_b = "fake-b-update"
        cpo.inbound_tokens.add(token_b)
        async with http.put(
            f"{hub.url}/ocpi/2.3.0/credentials",
            json=cpo.credentials(token_b),
            headers=cpo.hub_headers(),
        ) as response:
            assert (await response.json())["status_code"] == 1000
        await until(lambda: watcher.status_of("NL", "CPX") == "SUSPENDED")
        assert (await admin_parties(hub, http))["CPX"] == "SUSPENDED"
        await pushed(redis)  # every push the update queued: CPA's status was not among them
        assert watcher.status_of("NL", "CPA") == "CONNECTED"
