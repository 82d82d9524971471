"""OCPI 2.2.1 platforms through the same hub: versions, negotiation, credentials per version.

Citations from the ``2.2.1`` tag unless marked 2.3.0 (``v2.3.0-bookings``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes import ALL_MODULES, FakePlatform, ocpi, register, until
from tests.support import RunningHub, token_header
from tests.test_delivery import finished

MODULES_221 = tuple(m for m in ALL_MODULES if m[0] not in ("bookings", "payments"))


def cpo_221(name: str = "CPO 221", versions: tuple[str, ...] = ("2.2.1",)) -> FakePlatform:
    return FakePlatform(
        name, [("NL", "CPA", "CPO")], MODULES_221, versions=list(versions), version="2.2.1"
    )


async def platform_record(hub: RunningHub, http: aiohttp.ClientSession, name: str) -> Any:
    async with http.get(f"{hub.url}/admin/platforms", headers=hub.admin) as response:
        return next(p for p in await response.json() if p["name"] == name)


async def test_a_221_only_platform_registers_at_221(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """credentials "Credentials object" (2.2.1): "A Hub SHALL only reports itself as role:
    Hub. A Hub SHALL NOT report all the other connected parties as a role on the platform";
    2.2.1 has no hub_party_id."""
    async with (
        FakePlatform("MSP", [("DE", "MSA", "EMSP")], ALL_MODULES) as other,
        cpo_221() as cpo,
    ):
        await register(hub, http, other)
        await register(hub, http, cpo)
        answer = cpo.hub_credentials
        assert answer is not None and "hub_party_id" not in answer
        assert answer["roles"] == [
            {
                "role": "HUB",
                "business_details": {"name": "OCPI Roaming Hub"},
                "party_id": "HUB",
                "country_code": "NL",
            }
        ]
        record = await platform_record(hub, http, "CPO 221")
        assert record["version"] == "2.2.1"
        assert {e["url"] for e in record["endpoints"]} >= {cpo.credentials_url}
        assert all("/ocpi/2.2.1/" in e["url"] for e in record["endpoints"])
        # The 2.3.0 platform sees the 2.2.1 platform's party like any other.
        async with http.get(
            f"{hub.url}/ocpi/2.3.0/credentials", headers=other.hub_headers()
        ) as response:
            roles = (await response.json())["data"]["roles"]
        assert ("CPA", "CPO") in {(r["party_id"], r["role"]) for r in roles}


async def test_a_platform_offering_both_registers_at_the_version_it_called(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with FakePlatform(
        "Both", [("DE", "MSA", "EMSP")], ALL_MODULES, versions=["2.2.1", "2.3.0"]
    ) as both:
        await register(hub, http, both)
        assert (await platform_record(hub, http, "Both"))["version"] == "2.3.0"
        assert both.hub_credentials is not None and both.hub_credentials["hub_party_id"] == "NLHUB"


async def test_no_mutual_version_is_3002(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    """status_codes "3002": unsupported version."""
    async with FakePlatform(
        "Old", [("DE", "MSA", "EMSP")], ALL_MODULES, versions=["2.1.1"], version="2.2.1"
    ) as old:
        created = await hub.create_platform(http, "Old")
        answer = await old.register(http, hub.versions_url, created["token_a"])
        assert answer["status_code"] == 3002
        assert "2.1.1" in answer["status_message"]


async def test_a_put_on_the_other_versions_endpoint_switches_the_version(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """credentials "PUT Method": "A PUT will switch to the version that contains this
    credentials endpoint if it's different from the current version"; "Updating to a newer
    version". Its new token works on both trees."""
    async with (
        FakePlatform("MSP", [("DE", "MSA", "EMSP")], ALL_MODULES) as other,
        cpo_221(versions=("2.2.1", "2.3.0")) as cpo,
    ):
        await register(hub, http, other)
        await register(hub, http, cpo)
        assert (await platform_record(hub, http, "CPO 221"))["version"] == "2.2.1"
        cpo.version = "2.3.0"
        cpo.modules = ALL_MODULES
        token_b = "fake-b-" + secrets.token_hex(16)
        cpo.inbound_tokens.add(token_b)
        async with http.put(
            f"{hub.url}/ocpi/2.3.0/credentials",
            json=cpo.credentials(token_b),
            headers=cpo.hub_headers(),
        ) as response:
            answer = await response.json()
        assert answer["status_code"] == 1000, answer
        assert answer["data"]["hub_party_id"] == "NLHUB"
        assert ("MSA", "EMSP") in {(r["party_id"], r["role"]) for r in answer["data"]["roles"]}
        record = await platform_record(hub, http, "CPO 221")
        assert record["version"] == "2.3.0"
        assert all("/ocpi/2.3.0/" in e["url"] for e in record["endpoints"])
        token_c = answer["data"]["token"]
        for version in ("2.2.1", "2.3.0"):
            async with http.get(
                f"{hub.url}/ocpi/{version}/credentials", headers=token_header(token_c)
            ) as response:
                got = await response.json()
            assert got["status_code"] == 1000 and got["data"]["hub_party_id"] == "NLHUB"


async def test_a_221_hub_peer_is_recorded_not_routed(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """types "Role" (2.2.1) has HUB: a peer hub names itself so. The hub keeps it as that
    platform's identity; it is not a party anyone can route to."""
    async with cpo_221("Peer hub") as peer:
        peer.parties = [("DE", "PHB", "HUB"), ("DE", "CPX", "CPO")]
        await register(hub, http, peer)
        record = await platform_record(hub, http, "Peer hub")
        assert record["peer_hub"] == {"country_code": "DE", "party_id": "PHB"}
        assert [r["party_id"] for r in record["roles"]] == ["CPX"]
        async with http.get(f"{hub.url}/admin/parties", headers=hub.admin) as response:
            parties = {p["party_id"] for p in await response.json()}
        assert "PHB" not in parties and "CPX" in parties


async def test_role_hub_from_a_230_platform_is_refused(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """types "Role" (2.3.0) has no HUB: a 2.3.0 hub lists the parties it reaches."""
    async with FakePlatform("Hub 230", [("DE", "PHB", "HUB")], ALL_MODULES) as peer:
        created = await hub.create_platform(http, "Hub 230")
        answer = await peer.register(http, hub.versions_url, created["token_a"])
        assert answer["status_code"] == 2001 and "role HUB" in answer["status_message"]


async def test_connect_picks_the_newest_mutual_version(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """The hub as Sender (admin connect) registers in the newest version both speak; a
    2.2.1 platform gets the HUB-only credentials."""
    async with cpo_221() as cpo:

        async def accept(received: Any, request: Any) -> Any:
            cpo.hub_credentials = received.json()
            cpo.hub_token = cpo.hub_credentials["token"]
            token_c = "fake-c-" + secrets.token_hex(8)
            cpo.inbound_tokens.add(token_c)
            return ocpi(cpo.credentials(token_c))

        cpo.credentials_handler = accept
        created = await hub.create_platform(http, "CPO 221")
        async with http.post(
            f"{hub.url}/admin/platforms/{created['id']}/connect",
            json={"versions_url": cpo.versions_url, "token_a": cpo.issue_token_a()},
            headers=hub.admin,
        ) as response:
            assert response.status == 200, await response.text()
            connected = await response.json()
        assert connected["version"] == "2.2.1"
        assert cpo.hub_credentials is not None
        assert [r["role"] for r in cpo.hub_credentials["roles"]] == ["HUB"]
        assert "hub_party_id" not in cpo.hub_credentials


async def test_clientinfo_reaches_a_221_platform_on_its_221_endpoint(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A 2.2.1 platform learns the parties only through HubClientInfo, so it is pushed."""
    async with cpo_221() as cpo, FakePlatform("MSP", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp:
        await register(hub, http, cpo)
        await register(hub, http, msp)
        # status_of reads what arrived under /ocpi/2.2.1/hubclientinfo/ (its CLIENT_INFO).
        await until(lambda: cpo.status_of("DE", "MSA") == "CONNECTED")


async def test_two_221_platforms_route_byte_for_byte_on_the_221_tree(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """Routing headers and scenarios are the same in both versions; same version on both
    ends, the body goes through as it came."""
    async with (
        cpo_221() as cpo,
        FakePlatform(
            "MSP 221", [("DE", "MSA", "EMSP")], MODULES_221, versions=["2.2.1"], version="2.2.1"
        ) as msp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, msp)
        raw = b'{"id": "LOC1",  "country_code":"NL", "party_id": "CPA", "x": 1.50}'

        async def answer(received: Any, request: Any) -> Any:
            return web.Response(
                body=b'{"data": ' + raw + b', "status_code": 1000, "timestamp": '
                b'"2026-01-01T00:00:00Z"}',
                content_type="application/json",
            )

        cpo.handler = answer
        async with http.get(
            f"{hub.url}/ocpi/2.2.1/locations/sender/NL/CPA/LOC1",
            headers=msp.routed(("NL", "CPA")),
        ) as response:
            body = await response.read()
        assert raw in body
        (got,) = cpo.calls()
        assert got.path == "/ocpi/2.2.1/locations/sender/NL/CPA/LOC1"


def msp_221(name: str = "MSP 221", party: str = "MSB") -> FakePlatform:
    return FakePlatform(
        name, [("DE", party, "EMSP")], MODULES_221, versions=["2.2.1"], version="2.2.1"
    )


@contextlib.asynccontextmanager
async def mixed(
    hub: RunningHub, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[FakePlatform, ...]]:
    """A CPO and an eMSP of each version, registered: (2.2.1 CPO, 2.3.0 CPO, 2.3.0 eMSP,
    2.2.1 eMSP)."""
    async with (
        cpo_221() as old_cpo,
        FakePlatform("CPO 230", [("NL", "CPN", "CPO")], ALL_MODULES) as new_cpo,
        FakePlatform("MSP 230", [("DE", "MSA", "EMSP")], ALL_MODULES) as new_msp,
        msp_221() as old_msp,
    ):
        for platform in (old_cpo, new_cpo, new_msp, old_msp):
            await register(hub, http, platform)
        yield old_cpo, new_cpo, new_msp, old_msp


async def routed(
    http: aiohttp.ClientSession,
    hub: RunningHub,
    sender: FakePlatform,
    method: str,
    path: str,
    to: tuple[str, str] | None,
    body: Any = None,
) -> dict[str, Any]:
    url = f"{hub.url}/ocpi/{sender.version}/{path}"
    async with http.request(method, url, json=body, headers=sender.routed(to)) as response:
        return dict(await response.json())


async def test_locations_go_up_from_221_but_not_down_from_230(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """2.3.0 Locations add fields and open enums: a 2.2.1 Location is a valid 2.3.0 one,
    so it is relayed as it is; a 2.3.0 Location is not yet translated for a 2.2.1 reader,
    so the hub refuses (4000) rather than pass on what that reader cannot read."""
    async with mixed(hub, http) as (old_cpo, new_cpo, new_msp, old_msp):
        up = await routed(http, hub, new_msp, "GET", "locations/sender/NL/CPA/L1", ("NL", "CPA"))
        assert up["status_code"] == 1000
        assert [c.path for c in old_cpo.calls()] == ["/ocpi/2.2.1/locations/sender/NL/CPA/L1"]
        down = await routed(http, hub, old_msp, "GET", "locations/sender/NL/CPN/L1", ("NL", "CPN"))
        assert down["status_code"] == 4000
        assert "speaks OCPI 2.3.0" in down["status_message"]
        assert "locations objects differ" in down["status_message"]
        assert new_cpo.calls() == []


async def test_a_broadcast_leaves_out_receivers_it_cannot_reach_in_their_version(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with mixed(hub, http) as (old_cpo, new_cpo, new_msp, old_msp):
        location = {"id": "L1", "country_code": "NL", "party_id": "CPA"}
        answer = await routed(
            http, hub, old_cpo, "PUT", "locations/receiver/NL/CPA/L1", ("NL", "HUB"), location
        )
        report = await finished_report(http, hub, answer)
        assert {d["party_id"] for d in report["deliveries"]} == {"MSA", "MSB"}
        assert [c.path for c in old_msp.calls()] == ["/ocpi/2.2.1/locations/receiver/NL/CPA/L1"]
        assert [c.path for c in new_msp.calls()] == ["/ocpi/2.3.0/locations/receiver/NL/CPA/L1"]

        location = {"id": "L2", "country_code": "NL", "party_id": "CPN"}
        answer = await routed(
            http, hub, new_cpo, "PUT", "locations/receiver/NL/CPN/L2", ("NL", "HUB"), location
        )
        report = await finished_report(http, hub, answer)
        assert {d["party_id"] for d in report["deliveries"]} == {"MSA"}
        (left_out,) = report["not_translated"]
        assert left_out.startswith("DE/MSB: locations objects differ")
        assert [c.path for c in old_msp.calls()] == ["/ocpi/2.2.1/locations/receiver/NL/CPA/L1"]


async def finished_report(
    http: aiohttp.ClientSession, hub: RunningHub, answer: dict[str, Any]
) -> dict[str, Any]:
    assert answer["status_code"] == 1000, answer
    return await finished(http, hub, answer["status_message"].split()[1])


async def test_get_all_names_a_data_owner_of_another_version_it_cannot_read(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """mod_tariffs prices differ between the versions: a 2.3.0 eMSP's GET All over a 2.2.1
    and a 2.3.0 CPO gets the 2.3.0 CPO's list, with the 2.2.1 one named as left out (4000,
    as for a data owner that failed)."""
    async with (
        cpo_221() as old_cpo,
        FakePlatform("CPO 230", [("NL", "CPN", "CPO")], ALL_MODULES) as new_cpo,
        FakePlatform("MSP 230", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        for platform in (old_cpo, new_cpo, msp):
            await register(hub, http, platform)

        async def tariffs(received: Any, request: Any) -> Any:
            return ocpi([{"id": "T1"}], **{"X-Total-Count": "1", "X-Limit": "100"})

        new_cpo.handler = tariffs
        answer = await routed(http, hub, msp, "GET", "tariffs/sender", ("NL", "HUB"))
        assert answer["status_code"] == 4000
        assert answer["data"] == [{"id": "T1"}]
        assert "NL/CPA: speaks OCPI 2.2.1" in answer["status_message"]
        assert old_cpo.calls() == []


async def test_a_custom_command_does_not_go_to_a_221_cpo(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """mod_commands (2.2.1): CommandType is a closed enum; START_SESSION goes as it is."""
    async with (
        cpo_221() as cpo,
        FakePlatform("MSP 230", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, msp)

        async def accepted(received: Any, request: Any) -> Any:
            return ocpi({"result": "ACCEPTED", "timeout": 30})

        cpo.handler = accepted
        start = {"response_url": f"{msp.url}/cb/1", "token": {"uid": "U1"}, "location_id": "L1"}
        answer = await routed(
            http, hub, msp, "POST", "commands/receiver/START_SESSION", ("NL", "CPA"), start
        )
        assert answer["status_code"] == 1000 and answer["data"]["result"] == "ACCEPTED"
        custom = await routed(
            http, hub, msp, "POST", "commands/receiver/CHARGE_FASTER", ("NL", "CPA"), start
        )
        assert custom["status_code"] == 4000
        assert "CHARGE_FASTER does not exist in OCPI 2.2.1" in custom["status_message"]
        assert [c.path for c in cpo.calls()] == ["/ocpi/2.2.1/commands/receiver/START_SESSION"]


async def test_an_operator_can_hand_out_a_221_only_versions_url(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{hub.url}/admin/platforms", json={"name": "Strict", "version": "2.2.1"}, headers=hub.admin
    ) as response:
        created = await response.json()
    assert created["versions_url"] == f"{hub.url}/ocpi/versions/2.2.1"
    async with cpo_221("Strict") as cpo:
        answer = await cpo.register(http, created["versions_url"], created["token_a"])
        assert answer["status_code"] == 1000
    async with http.post(
        f"{hub.url}/admin/platforms", json={"name": "X", "version": "2.1.1"}, headers=hub.admin
    ) as response:
        assert response.status == 422
