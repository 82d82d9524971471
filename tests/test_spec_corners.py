"""Corners of the 2.3.0 text a real ecosystem meets (spec audit, section 1): closed enums
outward, the Bookings identifier and interfaces, the ClientInfo list URL, Content-Type on
broadcasts, and platforms of one party that leave out OCPI-from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes import ALL_MODULES, FakePlatform, register, until
from tests.support import RunningHub

CPO = ("NL", "CPA", "CPO")
EMSP = ("DE", "MSA", "EMSP")
PTP = ("BE", "PTA", "PTP")


@pytest.fixture
async def network(
    hub: RunningHub, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[FakePlatform, FakePlatform, FakePlatform]]:
    async with (
        FakePlatform("MSP Co", [EMSP], ALL_MODULES) as emsp,
        FakePlatform("CPO Co", [CPO], ALL_MODULES) as cpo,
        FakePlatform("Pay Co", [PTP], ALL_MODULES) as ptp,
    ):
        for platform in (emsp, cpo, ptp):
            await register(hub, http, platform)
        yield emsp, cpo, ptp


async def test_ptp_party_goes_out_as_other(
    hub: RunningHub, http: aiohttp.ClientSession, network: tuple[FakePlatform, ...]
) -> None:
    """types "Role" is a closed enum without PTP: the hub's credentials roles, ClientInfo
    pushes and the ClientInfo list carry a PTP party as OTHER, never as PTP."""
    emsp, _, _ = network
    await until(lambda: emsp.status_of("BE", "PTA") == "CONNECTED")
    pushed = [c for c in emsp.client_infos() if c["party_id"] == "PTA"]
    assert pushed and {c["role"] for c in pushed} == {"OTHER"}
    async with http.get(f"{hub.url}/ocpi/2.3.0/credentials", headers=emsp.hub_headers()) as r:
        roles = (await r.json())["data"]["roles"]
    assert [r["role"] for r in roles if r["party_id"] == "PTA"] == ["OTHER"]
    assert "PTP" not in {r["role"] for r in roles}
    async with http.get(f"{hub.url}/ocpi/2.3.0/hubclientinfo", headers=emsp.hub_headers()) as r:
        listed = (await r.json())["data"]
    assert [c["role"] for c in listed if c["party_id"] == "PTA"] == ["OTHER"]


async def test_hubclientinfo_with_a_trailing_slash_is_the_list(
    hub: RunningHub, http: aiohttp.ClientSession, network: tuple[FakePlatform, ...]
) -> None:
    """The spec's examples write the ClientInfo URL with a trailing slash: same list, no
    redirect (which would point at whatever Host the request named)."""
    emsp, _, _ = network
    url = f"{hub.url}/ocpi/2.3.0/hubclientinfo/"
    async with http.get(url, headers=emsp.hub_headers(), allow_redirects=False) as response:
        assert response.status == 200
        body = await response.json()
    assert body["status_code"] == 1000
    assert {c["party_id"] for c in body["data"]} == {"MSA", "CPA", "PTA"}


async def test_broadcast_delivery_carries_content_type(
    hub: RunningHub, http: aiohttp.ClientSession, network: tuple[FakePlatform, ...]
) -> None:
    """transport_and_format "Request format": Content-Type SHALL be application/json for a
    request with a body, even when the sender left it out."""
    emsp, cpo, _ = network
    headers = cpo.routed(("NL", "HUB"))
    async with http.put(
        hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC1",
        data=b'{"id": "LOC1"}',
        headers=headers,
        skip_auto_headers=["Content-Type"],
    ) as response:
        assert (await response.json())["status_code"] == 1000
    await until(lambda: bool(emsp.calls("/ocpi/2.3.0/locations/receiver")))
    (delivered,) = emsp.calls("/ocpi/2.3.0/locations/receiver")
    assert delivered.headers["content-type"] == "application/json"
    assert delivered.body == b'{"id": "LOC1"}'


async def test_platform_of_one_party_may_leave_out_ocpi_from(
    hub: RunningHub, http: aiohttp.ClientSession, network: tuple[FakePlatform, ...]
) -> None:
    """transport_and_format "Message Routing Headers": the headers need not be in every
    request. A platform with one party can only mean that party: the hub fills it in."""
    emsp, cpo, _ = network
    headers = {**emsp.hub_headers(), "OCPI-to-country-code": "NL", "OCPI-to-party-id": "CPA"}
    async with http.get(hub.endpoint("locations", "SENDER") + "/LOC1", headers=headers) as r:
        body = await r.json()
        assert r.headers["OCPI-to-party-id"] == "MSA"
    assert body["status_code"] == 1000
    (got,) = cpo.calls("/ocpi/2.3.0/locations/sender")
    assert (got.headers["ocpi-from-country-code"], got.headers["ocpi-from-party-id"]) == (
        "DE",
        "MSA",
    )


async def test_platform_of_two_parties_must_name_the_sender(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with (
        FakePlatform("Two", [("NL", "CPA", "CPO"), ("NL", "CPB", "CPO")], ALL_MODULES) as two,
        FakePlatform("MSP Co", [EMSP], ALL_MODULES) as emsp,
    ):
        await register(hub, http, two)
        await register(hub, http, emsp)
        headers = {**two.hub_headers(), "OCPI-to-country-code": "DE", "OCPI-to-party-id": "MSA"}
        async with http.get(hub.endpoint("tokens", "SENDER"), headers=headers) as response:
            body = await response.json()
        assert body["status_code"] == 2001 and "OCPI-from" in body["status_message"]
        assert emsp.calls("/ocpi/2.3.0/tokens") == []


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_bookings_sender_takes_booking_changes(
    hub: RunningHub, http: aiohttp.ClientSession, network: tuple[FakePlatform, ...], method: str
) -> None:
    """mod_bookings "Booking Interface": the Sender takes PUT and PATCH of a booking."""
    emsp, cpo, _ = network
    url = hub.endpoint("bookings", "SENDER") + "/B1"
    async with http.request(method, url, json={"id": "B1"}, headers=emsp.routed(CPO[:2])) as r:
        assert r.status == 200 and (await r.json())["status_code"] == 1000
    (got,) = cpo.calls("/ocpi/2.3.0/bookings/sender")
    assert (got.method, got.path) == (method, "/ocpi/2.3.0/bookings/sender/B1")


async def test_odd_hub_party_id_of_a_platform_does_not_block_registration(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """credentials "Credentials object": hub_party_id is the peer's own business; the hub
    never uses it, so a value outside its CiString(5) form is let be."""
    async with FakePlatform("MSP Co", [EMSP], ALL_MODULES) as emsp:
        plain = emsp.credentials
        emsp.credentials = lambda token: {**plain(token), "hub_party_id": "NL-HUB-01"}  # type: ignore[method-assign]
        await register(hub, http, emsp)
