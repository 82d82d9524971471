"""Roaming agreements: under ``routing_policy = "agreements"`` two parties exchange traffic
only under an agreement in force, in every scenario the hub routes.

Two CPOs (NL/CPA, NL/CPB) and two eMSPs (DE/MSA, DE/MSB); CPA and MSA have an agreement for
every module, CPB and MSB one for locations only. Nothing else may pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register, until
from tests.support import RunningHub
from tests.test_cli import hub_cli

CPA, CPB, MSA, MSB = ("NL", "CPA"), ("NL", "CPB"), ("DE", "MSA"), ("DE", "MSB")


@dataclass
class Contracts:
    hub: RunningHub
    http: aiohttp.ClientSession
    cpo_a: FakePlatform
    cpo_b: FakePlatform
    emsp_a: FakePlatform
    emsp_b: FakePlatform

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, f"{self.hub.url}{path}", json=body, headers=self.hub.admin
        ) as response:
            return response.status, await response.json()

    async def agree(self, a: tuple[str, str], b: tuple[str, str], **extra: Any) -> dict:
        body = {
            "parties": [
                {"country_code": a[0], "party_id": a[1]},
                {"country_code": b[0], "party_id": b[1]},
            ],
            **extra,
        }
        status, agreement = await self.admin("POST", "/admin/agreements", body)
        assert status == 201, agreement
        return agreement

    async def call(
        self,
        sender: FakePlatform,
        to: tuple[str, str] | None,
        method: str,
        module: str,
        interface: str,
        suffix: str = "",
        body: Any = None,
    ) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
        url = self.hub.endpoint(module, interface) + suffix
        async with self.http.request(method, url, json=body, headers=sender.routed(to)) as r:
            return r, await r.json()

    def clear(self) -> None:
        for platform in (self.cpo_a, self.cpo_b, self.emsp_a, self.emsp_b):
            platform.received.clear()


@contextlib.asynccontextmanager
async def contracts_on(hub: RunningHub, http: aiohttp.ClientSession) -> AsyncIterator[Contracts]:
    async with (
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo_a,
        FakePlatform("CPO B", [("NL", "CPB", "CPO")], ALL_MODULES) as cpo_b,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp_a,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as emsp_b,
    ):
        world = Contracts(hub, http, cpo_a, cpo_b, emsp_a, emsp_b)
        await world.agree(CPA, MSA)
        await world.agree(CPB, MSB, modules=["locations"])
        for platform in (cpo_a, cpo_b, emsp_a, emsp_b):
            await register(hub, http, platform)
        await drained_client_info(hub)
        world.clear()
        yield world


async def drained_client_info(hub: RunningHub) -> None:
    """ClientInfo pushes are queued work: wait until every one has been pushed."""
    from tests.support import drained

    await drained(hub.runtime.redis, "{hub}:clientinfo-queue", "push")


@pytest.fixture
async def world(hub_factory: HubFactory, http: aiohttp.ClientSession) -> AsyncIterator[Contracts]:
    async with (
        hub_factory(routing_policy="agreements") as hub,
        contracts_on(hub, http) as contracts,
    ):
        yield contracts


async def test_direct_requests_pass_only_under_an_agreement(world: Contracts) -> None:
    """A party without an agreement is refused with 4001 naming the missing agreement, and
    nothing is forwarded; an agreement limited to modules covers those only."""
    _, body = await world.call(world.emsp_a, CPA, "GET", "locations", "SENDER", "/L1")
    assert body["status_code"] == 1000
    _, body = await world.call(world.emsp_a, CPB, "GET", "locations", "SENDER", "/L1")
    assert body["status_code"] == 4001 and "no roaming agreement" in body["status_message"]
    assert world.cpo_b.calls() == []
    _, body = await world.call(world.emsp_b, CPB, "GET", "locations", "SENDER", "/L1")
    assert body["status_code"] == 1000
    _, body = await world.call(world.emsp_b, CPB, "GET", "sessions", "SENDER")
    assert body["status_code"] == 4001 and "for sessions" in body["status_message"]
    assert [c.path for c in world.cpo_b.calls()] == ["/ocpi/2.3.0/locations/sender/L1"]


async def test_broadcast_reaches_only_entitled_receivers(world: Contracts) -> None:
    """The report lists the parties without an agreement as not entitled, not as failures."""
    _, body = await world.call(
        world.cpo_a, ("NL", "HUB"), "PUT", "locations", "RECEIVER", "/NL/CPA/LOC1", {"id": "1"}
    )
    broadcast_id = body["status_message"].split()[1]
    for _ in range(250):
        _, report = await world.admin("GET", f"/admin/broadcasts/{broadcast_id}")
        if report.get("finished"):
            break
        await asyncio.sleep(0.02)
    assert report.get("finished"), "the broadcast did not finish in 5 s"
    assert [d["party_id"] for d in report["deliveries"]] == ["MSA"]
    assert report["not_entitled"] == ["DE/MSB"] and report["receivers"] == 1
    assert world.emsp_b.calls() == [] and len(world.emsp_a.calls()) == 1


async def test_get_all_merges_only_entitled_data_owners(world: Contracts) -> None:
    world.cpo_a.handler = _list_of("A")
    world.cpo_b.handler = _list_of("B")
    _, body = await world.call(world.emsp_a, ("NL", "HUB"), "GET", "locations", "SENDER")
    assert [o["id"] for o in body["data"]] == ["A"]
    assert world.cpo_b.calls() == []


def _list_of(name: str) -> Any:
    async def handler(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi([{"id": name}], **{"X-Total-Count": "1"})

    return handler


async def test_open_routing_considers_only_entitled_owners(world: Contracts) -> None:
    """An id the index knows from a party the requester has no agreement with is not routed
    there; real-time authorization asks only the entitled eMSPs."""
    _, body = await world.call(
        world.cpo_b, MSB, "PUT", "locations", "RECEIVER", "/NL/CPB/LOCB", {"id": "LOCB"}
    )
    assert body["status_code"] == 1000
    for _ in range(50):  # the index is written just after the push was answered
        _, body = await world.call(world.emsp_b, None, "GET", "locations", "SENDER", "/LOCB")
        if body["status_code"] == 1000:
            break
        await asyncio.sleep(0.02)
    assert body["status_code"] == 1000
    world.clear()
    _, body = await world.call(world.emsp_a, None, "GET", "locations", "SENDER", "/LOCB")
    assert body["status_code"] == 4001
    assert world.cpo_b.calls() == []

    _, body = await world.call(world.cpo_a, None, "POST", "tokens", "SENDER", "/RF1/authorize")
    assert [len(world.emsp_a.calls()), len(world.emsp_b.calls())] == [1, 0]


async def test_hub_links_keep_working_after_the_agreement_ends(world: Contracts) -> None:
    """A next page handed out under an agreement is the rest of that request: it works."""

    async def paged(received: Received, request: web.Request) -> web.StreamResponse:
        link = f'<{world.cpo_a.url}/ocpi/2.3.0/locations/sender?offset=1>; rel="next"'
        return ocpi([{"id": "L0"}], Link=link)

    world.cpo_a.handler = paged
    response, body = await world.call(world.emsp_a, CPA, "GET", "locations", "SENDER")
    link = response.headers["Link"]
    _, agreements = await world.admin("GET", "/admin/agreements?party=DEMSA")
    (agreement,) = agreements
    assert (await world.admin("DELETE", f"/admin/agreements/{agreement['id']}"))[0] == 200
    _, body = await world.call(world.emsp_a, CPA, "GET", "locations", "SENDER")
    assert body["status_code"] == 4001
    async with world.http.get(link[1 : link.index(">")], headers=world.emsp_a.hub_headers()) as r:
        assert (await r.json())["status_code"] == 1000


async def test_client_info_per_viewer(world: Contracts) -> None:
    """mod_hub_client_info: a party with no agreement with the viewer is shown PLANNED; an
    agreement that starts makes both parties see each other as they are, at once."""
    hub = world.hub
    assert await _listed_status(world, world.emsp_a, CPB) == "PLANNED"
    assert await _listed_status(world, world.emsp_a, CPA) == "CONNECTED"
    async with world.http.get(
        f"{hub.url}/ocpi/2.3.0/credentials", headers=world.emsp_a.hub_headers()
    ) as response:
        roles = (await response.json())["data"]["roles"]
    assert {r["party_id"] for r in roles} == {"HUB", "CPA"}, "only the parties it may reach"

    agreement = await world.agree(CPB, MSA)
    await drained_client_info(hub)
    assert world.emsp_a.status_of(*CPB) == "CONNECTED"
    assert world.cpo_b.status_of(*MSA) == "CONNECTED"
    assert await _listed_status(world, world.emsp_a, CPB) == "CONNECTED"
    assert world.emsp_b.status_of(*CPB) == "CONNECTED", "each viewer as it sees the party"

    await world.admin("DELETE", f"/admin/agreements/{agreement['id']}")
    await drained_client_info(hub)
    assert world.emsp_a.status_of(*CPB) == "PLANNED"
    assert world.cpo_b.status_of(*MSA) == "PLANNED"


async def _listed_status(world: Contracts, viewer: FakePlatform, party: tuple[str, str]) -> str:
    url = f"{world.hub.url}/ocpi/2.3.0/hubclientinfo"
    async with world.http.get(url, headers=viewer.hub_headers()) as response:
        rows = (await response.json())["data"]
    return next(r["status"] for r in rows if (r["country_code"], r["party_id"]) == party)


async def test_agreement_ends_by_its_validity_window(world: Contracts) -> None:
    """valid_until passes: requests are refused from then on, and the ClientInfo of both
    parties is pushed again (each now sees the other PLANNED)."""
    until_moment = datetime.now(UTC) + timedelta(seconds=1.5)
    await world.agree(CPB, MSA, valid_until=until_moment.isoformat())
    await drained_client_info(world.hub)
    _, body = await world.call(world.emsp_a, CPB, "GET", "locations", "SENDER", "/L1")
    assert body["status_code"] == 1000
    assert world.emsp_a.status_of(*CPB) == "CONNECTED"
    await asyncio.sleep(max(0.0, (until_moment - datetime.now(UTC)).total_seconds()))
    _, body = await world.call(world.emsp_a, CPB, "GET", "locations", "SENDER", "/L1")
    assert body["status_code"] == 4001
    await until(lambda: world.emsp_a.status_of(*CPB) == "PLANNED", 5)
    await until(lambda: world.cpo_b.status_of(*MSA) == "PLANNED", 5)


async def test_a_second_hub_process_sees_a_change_within_a_second(
    world: Contracts, hub_factory: HubFactory
) -> None:
    async with hub_factory(routing_policy="agreements") as other:
        url = other.endpoint("locations", "SENDER") + "/L1"
        headers = world.emsp_a.routed(CPB)
        async with world.http.get(url, headers=headers) as response:
            assert (await response.json())["status_code"] == 4001
        await world.agree(CPB, MSA)
        began = time.monotonic()
        while True:
            async with world.http.get(url, headers=headers) as response:
                if (await response.json())["status_code"] == 1000:
                    break
            assert time.monotonic() - began < 1.0, "not seen within a second"
            await asyncio.sleep(0.02)


async def test_admin_api_validates_and_explains(world: Contracts) -> None:
    same = {"parties": [{"country_code": "NL", "party_id": "CPA"}] * 2}
    assert (await world.admin("POST", "/admin/agreements", same))[0] == 422
    backwards = {
        "parties": [
            {"country_code": "NL", "party_id": "CPA"},
            {"country_code": "DE", "party_id": "MSB"},
        ],
        "valid_from": "2030-01-02T00:00:00Z",
        "valid_until": "2030-01-01T00:00:00Z",
    }
    assert (await world.admin("POST", "/admin/agreements", backwards))[0] == 422
    assert (await world.admin("DELETE", "/admin/agreements/nope"))[0] == 404
    status, listed = await world.admin("GET", "/admin/agreements?party=NLCPB")
    assert status == 200 and [a["modules"] for a in listed] == [["locations"]]

    status, why = await world.admin(
        "GET", "/admin/routes/explain?from=DEMSA&to=NLCPB&module=locations"
    )
    assert status == 200 and why["routed"] is False and why["policy"] == "agreements"
    assert "no roaming agreement" in why["reasons"][0]
    status, why = await world.admin(
        "GET", "/admin/routes/explain?from=DEMSB&to=NLCPB&module=locations"
    )
    assert why["routed"] is True and why["agreement"] == listed[0]["id"]
    assert [p["status"] for p in why["to"]] == ["CONNECTED"]


async def test_open_policy_needs_no_agreement(hub: RunningHub, http: aiohttp.ClientSession):
    """routing_policy = open (the default): every party reaches every other."""
    async with contracts_on(hub, http) as world:
        _, body = await world.call(world.emsp_a, CPB, "GET", "sessions", "SENDER")
        assert body["status_code"] == 1000


async def test_cli_manages_agreements_and_imports_a_csv(world: Contracts, tmp_path: Path) -> None:
    """Operators keep contracts in spreadsheets: `hub agreements import` takes a CSV."""
    sheet = tmp_path / "contracts.csv"
    sheet.write_text(
        "party,other,modules,valid_from,valid_until\n"
        "NLCPA,DEMSB,locations;tariffs,,\n"
        "NL/CPB,DE/MSA,,2030-01-01T00:00:00Z,\n"
    )
    imported = await hub_cli(world.hub, "agreements", "import", str(sheet))
    assert imported.returncode == 0 and "imported 2 agreements" in imported.stdout
    listed = await hub_cli(world.hub, "agreements", "list", "--party", "DEMSB", "--json")
    rows = json.loads(listed.stdout)
    assert sorted(r["modules"] for r in rows) == [["locations"], ["locations", "tariffs"]]
    added = await hub_cli(world.hub, "agreements", "add", "NLCPA", "DEMSB", "--json")
    agreement = json.loads(added.stdout)
    removed = await hub_cli(world.hub, "agreements", "remove", agreement["id"])
    assert removed.returncode == 0 and agreement["id"] in removed.stdout
