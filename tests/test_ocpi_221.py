"""OCPI 2.2.1 platforms through the same hub: versions, negotiation, credentials per version.

Citations from the ``2.2.1`` tag unless marked 2.3.0 (``v2.3.0-bookings``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
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
        assert answer["url"] == f"{hub.url}/ocpi/versions/2.2.1", "a closed VersionNumber enum"
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


@pytest.mark.parametrize("offered", [["2.3.0"], ["2.2.1", "2.3.0"]])
async def test_a_230_platform_registers_at_230(
    hub: RunningHub, http: aiohttp.ClientSession, offered: list[str]
) -> None:
    """Offering 2.3.0 only, or both and calling the 2.3.0 credentials endpoint."""
    async with FakePlatform("Both", [("DE", "MSA", "EMSP")], ALL_MODULES, versions=offered) as both:
        await register(hub, http, both)
        assert (await platform_record(hub, http, "Both"))["version"] == "2.3.0"
        assert both.hub_credentials is not None and both.hub_credentials["hub_party_id"] == "NLHUB"


async def test_a_221_only_platform_calling_the_230_endpoint_gets_221(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """3002 only when there is no mutual version: one that offers 2.2.1 only but POSTs to
    the 2.3.0 credentials endpoint is registered at 2.2.1, and answered in 2.2.1."""
    async with cpo_221() as cpo:
        created = await hub.create_platform(http, "CPO 221")
        token_b = "fake-b-" + secrets.token_hex(8)
        cpo.inbound_tokens.add(token_b)
        async with http.post(
            f"{hub.url}/ocpi/2.3.0/credentials",
            json=cpo.credentials(token_b),
            headers=token_header(created["token_a"]),
        ) as response:
            answer = await response.json()
        assert answer["status_code"] == 1000, answer
        assert [r["role"] for r in answer["data"]["roles"]] == ["HUB"]
        assert (await platform_record(hub, http, "CPO 221"))["version"] == "2.2.1"


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
        async with http.get(
            f"{hub.url}/admin/platforms/{record['id']}/events", headers=hub.admin
        ) as response:
            events = [e["event"] for e in await response.json()]
        assert events == ["version switch", "register"]
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


async def test_a_230_location_reaches_a_221_reader_without_its_230_fields(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """mod_locations: help_phone and an MCS connector do not exist in 2.2.1. The 2.2.1 eMSP
    gets the Location without them, told so in status_message; the loss is counted for its
    platform. last_updated is as the CPO sent it."""
    async with mixed(hub, http) as (old_cpo, new_cpo, new_msp, old_msp):
        location = {
            "id": "L1",
            "help_phone": "+31201234567",
            "evses": [
                {
                    "uid": "E1",
                    "connectors": [
                        {"id": "1", "standard": "IEC_62196_T2"},
                        {"id": "2", "standard": "MCS"},
                    ],
                }
            ],
            "last_updated": "2026-01-01T00:00:00Z",
        }

        async def answer(received: Any, request: Any) -> Any:
            return ocpi(location)

        new_cpo.handler = old_cpo.handler = answer
        down = await routed(http, hub, old_msp, "GET", "locations/sender/L1", ("NL", "CPN"))
        assert down["status_code"] == 1000
        assert down["data"] == {
            "id": "L1",
            "evses": [{"uid": "E1", "connectors": [{"id": "1", "standard": "IEC_62196_T2"}]}],
            "last_updated": "2026-01-01T00:00:00Z",
        }
        assert "translated to OCPI 2.2.1" in down["status_message"]
        assert "help_phone" in down["status_message"]
        same = await routed(http, hub, new_msp, "GET", "locations/sender/L1", ("NL", "CPN"))
        assert same["data"] == location
        record = await platform_record(hub, http, "MSP 221")
        async with http.get(
            f"{hub.url}/admin/platforms/{record['id']}/losses", headers=hub.admin
        ) as response:
            losses = await response.json()
        assert losses["locations: help_phone"] == 1
        assert losses["locations: evses[].connectors[] (one that cannot exist in OCPI 2.2.1)"] == 1


async def test_a_broadcast_reaches_each_receiver_in_its_version(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """One push, one body per receiver version; an EMAID token cannot exist in 2.2.1
    (mod_tokens "TokenType" is closed there), so the 2.2.1 CPO is left out of that one."""
    async with mixed(hub, http) as (old_cpo, new_cpo, new_msp, old_msp):
        location = {"id": "L2", "help_phone": "+3120", "last_updated": "2026-01-01T00:00:00Z"}
        answer = await routed(
            http, hub, new_cpo, "PUT", "locations/receiver/NL/CPN/L2", ("NL", "HUB"), location
        )
        report = await finished_report(http, hub, answer)
        assert {d["party_id"] for d in report["deliveries"]} == {"MSA", "MSB"}
        (to_old,) = old_msp.calls()
        (to_new,) = new_msp.calls()
        assert to_new.json() == location
        assert to_old.json() == {"id": "L2", "last_updated": "2026-01-01T00:00:00Z"}
        assert to_old.path == "/ocpi/2.2.1/locations/receiver/NL/CPN/L2"

        token = {"uid": "U1", "type": "EMAID", "last_updated": "2026-01-01T00:00:00Z"}
        answer = await routed(
            http, hub, new_msp, "PUT", "tokens/receiver/DE/MSA/U1", ("NL", "HUB"), token
        )
        report = await finished_report(http, hub, answer)
        assert [d["party_id"] for d in report["deliveries"]] == ["CPN"]
        assert report["dropped"] == 1
        assert old_cpo.calls(method="PUT") == []


async def finished_report(
    http: aiohttp.ClientSession, hub: RunningHub, answer: dict[str, Any]
) -> dict[str, Any]:
    assert answer["status_code"] == 1000, answer
    return await finished(http, hub, answer["status_message"].split()[1])


async def test_get_all_brings_every_tariff_in_the_requesters_version(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A 2.3.0 eMSP's GET All over a 2.2.1 and a 2.3.0 CPO: the 2.2.1 tariff comes as a
    2.3.0 one (tax_included NO: 2.2.1 prices are excl. VAT; min_price a PriceLimit)."""
    async with mixed(hub, http) as (old_cpo, new_cpo, msp, _):
        old_tariff = {
            "id": "T1", "currency": "EUR", "min_price": {"excl_vat": 1, "incl_vat": 1.21},
            "elements": [], "last_updated": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        new_tariff = {"id": "T2", "currency": "EUR", "tax_included": "YES", "elements": []}

        def answering(tariff: dict[str, Any]) -> Any:
            async def answer(received: Any, request: Any) -> Any:
                return ocpi([tariff], **{"X-Total-Count": "1", "X-Limit": "100"})

            return answer

        old_cpo.handler, new_cpo.handler = answering(old_tariff), answering(new_tariff)
        answer = await routed(http, hub, msp, "GET", "tariffs/sender", ("NL", "HUB"))
        assert answer["status_code"] == 1000, answer
        assert answer["data"] == [
            {
                "id": "T1", "currency": "EUR",
                "min_price": {"before_taxes": 1, "after_taxes": 1.21},
                "elements": [], "last_updated": "2026-01-01T00:00:00Z", "tax_included": "NO",
            },
            new_tariff,
        ]  # fmt: skip


async def test_sessions_and_cdrs_cross_with_their_prices_translated(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """types "Price class": 2.3.0 before_taxes/taxes to 2.2.1 excl_vat/incl_vat and back."""
    async with mixed(hub, http) as (old_cpo, new_cpo, new_msp, old_msp):
        vat = [{"name": "VAT", "amount": 2.1}]
        session = {
            "id": "S1",
            "total_cost": {"before_taxes": 10, "taxes": vat},
            "last_updated": "2026-01-01T00:00:00Z",
        }
        answer = await routed(
            http, hub, new_cpo, "PUT", "sessions/receiver/NL/CPN/S1", ("DE", "MSB"), session
        )
        assert answer["status_code"] == 1000, answer
        (got,) = old_msp.calls()
        assert got.json() == {
            "id": "S1",
            "total_cost": {"excl_vat": 10, "incl_vat": 12.1},
            "last_updated": "2026-01-01T00:00:00Z",
        }
        cdr = {"id": "C1", "total_cost": {"excl_vat": 5, "incl_vat": 6.05}, "booking_id": None}
        answer = await routed(http, hub, old_cpo, "POST", "cdrs/receiver", ("DE", "MSA"), cdr)
        assert answer["status_code"] == 1000, answer
        (got,) = new_msp.calls()
        assert got.json()["total_cost"] == {
            "before_taxes": 5,
            "taxes": [{"name": "VAT", "amount": 1.05}],
        }


async def test_a_token_a_221_cpo_cannot_hold_is_refused(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with mixed(hub, http) as (old_cpo, _, new_msp, _):
        token = {"uid": "U1", "type": "EMAID", "last_updated": "2026-01-01T00:00:00Z"}
        answer = await routed(
            http, hub, new_msp, "PUT", "tokens/receiver/DE/MSA/U1", ("NL", "CPA"), token
        )
        assert answer["status_code"] == 4000
        assert "EMAID does not exist in OCPI 2.2.1" in answer["status_message"]
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


STAMP = "2026-03-01T00:00:00Z"
# (module, path after the interface, what the sender sends, what a receiver of the other
# version gets), pushed from each version to the other. last_updated is never touched.
EXCHANGES = [
    (
        "locations", "locations/receiver/{cc}/{pid}/L1",
        {"id": "L1", "help_phone": "+3120", "last_updated": STAMP},
        {"2.2.1": {"id": "L1", "last_updated": STAMP},
         "2.3.0": {"id": "L1", "help_phone": "+3120", "last_updated": STAMP}},
    ),
    (
        "tariffs", "tariffs/receiver/{cc}/{pid}/T1",
        {"id": "T1", "currency": "EUR", "elements": [], "last_updated": STAMP,
         "min_price": {"excl_vat": 1, "incl_vat": 1.21}},
        {"2.3.0": {"id": "T1", "currency": "EUR", "elements": [], "last_updated": STAMP,
                   "min_price": {"before_taxes": 1, "after_taxes": 1.21}, "tax_included": "NO"}},
    ),
    (
        "tariffs", "tariffs/receiver/{cc}/{pid}/T2",
        {"id": "T2", "currency": "EUR", "elements": [], "last_updated": STAMP,
         "tax_included": "NO", "max_price": {"before_taxes": 5, "after_taxes": 6.05}},
        {"2.2.1": {"id": "T2", "currency": "EUR", "elements": [], "last_updated": STAMP,
                   "max_price": {"excl_vat": 5, "incl_vat": 6.05}}},
    ),
    (
        "tokens", "tokens/receiver/{cc}/{pid}/U1",
        {"uid": "U1", "type": "RFID", "last_updated": STAMP},
        {"2.2.1": {"uid": "U1", "type": "RFID", "last_updated": STAMP},
         "2.3.0": {"uid": "U1", "type": "RFID", "last_updated": STAMP}},
    ),
    (
        "sessions", "sessions/receiver/{cc}/{pid}/S1",
        {"id": "S1", "total_cost": {"excl_vat": 2, "incl_vat": 2.42}, "last_updated": STAMP},
        {"2.3.0": {"id": "S1", "last_updated": STAMP,
                   "total_cost": {"before_taxes": 2, "taxes": [{"name": "VAT", "amount": 0.42}]}}},
    ),
    (
        "cdrs", "cdrs/receiver",
        {"id": "C1", "booking_id": "B1", "last_updated": STAMP,
         "total_cost": {"before_taxes": 2, "taxes": [{"name": "VAT", "amount": 0.42}]}},
        {"2.2.1": {"id": "C1", "last_updated": STAMP,
                   "total_cost": {"excl_vat": 2, "incl_vat": 2.42}}},
    ),
    (
        "commands", "commands/receiver/STOP_SESSION",
        {"response_url": "https://emsp.example.com/cb/1", "session_id": "S1"},
        {"2.2.1": None, "2.3.0": None},  # the same in both: checked apart from response_url
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("module", "path", "sent", "got"),
    EXCHANGES,
    ids=[f"{e[0]}-{e[2].get('id', e[0])}" for e in EXCHANGES],
)
async def test_every_module_crosses_both_ways(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    module: str,
    path: str,
    sent: dict[str, Any],
    got: dict[str, Any],
) -> None:
    """Each pushed from a platform of one version to a party of the other, direct (OCPI-to
    naming it): what arrives is the object in the receiver's version."""
    async with mixed(hub, http) as (old_cpo, new_cpo, new_msp, old_msp):
        pairs = {"2.2.1": (new_cpo, old_msp), "2.3.0": (old_cpo, new_msp)}  # by target version
        if module in ("tokens", "commands"):
            pairs = {"2.2.1": (new_msp, old_cpo), "2.3.0": (old_msp, new_cpo)}
        for target, expected in got.items():
            sender, receiver = pairs[target]
            cc, pid = sender.parties[0][:2]
            to = receiver.parties[0][:2]
            body = {**sent, "response_url": f"{sender.url}/cb/1"} if module == "commands" else sent
            method = "POST" if module in ("cdrs", "commands") else "PUT"
            answer = await routed(http, hub, sender, method, path.format(cc=cc, pid=pid), to, body)
            assert answer["status_code"] == 1000, answer
            (arrived,) = receiver.calls()
            assert arrived.path.startswith(f"/ocpi/{target}/{module}/receiver")
            if expected is None:
                assert {k: v for k, v in arrived.json().items() if k != "response_url"} == {
                    k: v for k, v in body.items() if k != "response_url"
                }
            else:
                assert arrived.json() == expected
            receiver.received.clear()


async def test_next_pages_across_versions_are_translated_too(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """transport_and_format "Pagination": the next page of a direct GET list goes through a
    hub link; it is translated like the first page."""
    async with mixed(hub, http) as (_, new_cpo, _, old_msp):

        async def pages(received: Any, request: Any) -> Any:
            page = int(received.query.get("offset", "0"))
            location = {"id": f"L{page}", "help_phone": "+3120", "last_updated": STAMP}
            links = {}
            if page == 0:
                url = f"{new_cpo.url}/ocpi/2.3.0/locations/sender?offset=1&limit=1"
                links = {"Link": f'<{url}>; rel="next"'}
            return ocpi([location], **{"X-Total-Count": "2", "X-Limit": "1", **links})

        new_cpo.handler = pages
        url = f"{hub.url}/ocpi/2.2.1/locations/sender?limit=1"
        async with http.get(url, headers=old_msp.routed(("NL", "CPN"))) as response:
            first = await response.json()
            next_url = response.links["next"]["url"]
        assert first["data"] == [{"id": "L0", "last_updated": STAMP}]
        async with http.get(str(next_url), headers=old_msp.routed(("NL", "CPN"))) as response:
            second = await response.json()
        assert second["data"] == [{"id": "L1", "last_updated": STAMP}]
        assert "help_phone" in second["status_message"]
