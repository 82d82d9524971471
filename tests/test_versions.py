"""The Versions module (version_information_endpoint.asciidoc)."""

from __future__ import annotations

import aiohttp

from hub.ocpi.models import FUNCTIONAL_MODULES
from tests.support import RunningHub, token_header


async def test_versions_lists_230_and_221_with_token_a(
    hub: RunningHub, http: aiohttp.ClientSession
):
    token_a = (await hub.create_platform(http, "CPO"))["token_a"]
    async with http.get(hub.versions_url, headers=token_header(token_a)) as response:
        assert response.status == 200
        body = await response.json()
    assert body["status_code"] == 1000
    assert body["data"] == [
        {"version": "2.3.0", "url": f"{hub.url}/ocpi/2.3.0/details"},
        {"version": "2.2.1", "url": f"{hub.url}/ocpi/2.2.1/details"},
    ]


async def test_a_versions_url_that_lists_221_only(hub: RunningHub, http: aiohttp.ClientSession):
    """2.2.1 "VersionNumber" is a closed enum: a strict 2.2.1 parser may refuse "2.3.0", so
    an operator can hand such a platform /ocpi/versions/2.2.1 instead."""
    token_a = (await hub.create_platform(http, "CPO"))["token_a"]
    async with http.get(f"{hub.url}/ocpi/versions/2.2.1", headers=token_header(token_a)) as r:
        assert (await r.json())["data"] == [
            {"version": "2.2.1", "url": f"{hub.url}/ocpi/2.2.1/details"}
        ]
    async with http.get(f"{hub.url}/ocpi/versions/2.4.0", headers=token_header(token_a)) as r:
        assert r.status == 404


async def test_221_details_list_only_221_modules(hub: RunningHub, http: aiohttp.ClientSession):
    """2.2.1 "ModuleID" is a closed enum without bookings and payments; custom modules "MAY
    only be sent to parties with which there is an agreement"."""
    token_a = (await hub.create_platform(http, "CPO"))["token_a"]
    async with http.get(f"{hub.url}/ocpi/2.2.1/details", headers=token_header(token_a)) as r:
        details = (await r.json())["data"]
    assert details["version"] == "2.2.1"
    endpoints = {(e["identifier"], e["role"]): e["url"] for e in details["endpoints"]}
    modules = {identifier for identifier, _ in endpoints}
    assert modules == {
        "cdrs", "chargingprofiles", "commands", "credentials", "hubclientinfo",
        "locations", "sessions", "tariffs", "tokens",
    }  # fmt: skip
    assert endpoints[("credentials", "SENDER")] == f"{hub.url}/ocpi/2.2.1/credentials"
    assert endpoints[("locations", "RECEIVER")] == f"{hub.url}/ocpi/2.2.1/locations/receiver"


async def test_the_221_tree_has_no_bookings(hub: RunningHub, http: aiohttp.ClientSession):
    token_a = (await hub.create_platform(http, "CPO"))["token_a"]
    async with http.get(
        f"{hub.url}/ocpi/2.2.1/bookings/sender", headers=token_header(token_a)
    ) as r:
        assert r.status == 404
    async with http.get(f"{hub.url}/ocpi/2.4.0/details", headers=token_header(token_a)) as r:
        assert r.status == 404


async def test_details_list_every_module_with_both_roles(
    hub: RunningHub, http: aiohttp.ClientSession
):
    """Details: credentials, hubclientinfo SENDER, and SENDER+RECEIVER of all 9 modules;
    Bookings also under "Booking", the identifier mod_bookings gives, at the same URLs."""
    token_a = (await hub.create_platform(http, "CPO"))["token_a"]
    async with http.get(f"{hub.url}/ocpi/2.3.0/details", headers=token_header(token_a)) as r:
        assert r.status == 200
        details = (await r.json())["data"]
    assert details["version"] == "2.3.0"
    endpoints = {(e["identifier"], e["role"]): e["url"] for e in details["endpoints"]}
    assert endpoints[("credentials", "SENDER")] == f"{hub.url}/ocpi/2.3.0/credentials"
    assert endpoints[("hubclientinfo", "SENDER")] == f"{hub.url}/ocpi/2.3.0/hubclientinfo"
    assert len(FUNCTIONAL_MODULES) == 9
    for module in FUNCTIONAL_MODULES:
        for role in ("SENDER", "RECEIVER"):
            assert endpoints[(module, role)] == hub.endpoint(module, role)
    for role in ("SENDER", "RECEIVER"):
        assert endpoints[("Booking", role)] == hub.endpoint("bookings", role)
    assert len(endpoints) == 2 + 18 + 2


async def test_details_need_a_token(hub: RunningHub, http: aiohttp.ClientSession):
    async with http.get(f"{hub.url}/ocpi/2.3.0/details") as response:
        assert response.status == 401
