"""Open Routing Requests (transport_and_format, "Open Routing Request"): no OCPI-to headers,
the hub decides the receiver from what it has seen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import ALL_MODULES, FakePlatform, register, until
from tests.support import RunningHub


@pytest.fixture
async def platforms(
    hub: RunningHub, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[FakePlatform, ...]]:
    async with (
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo_a,
        FakePlatform("CPO B", [("NL", "CPB", "CPO")], ALL_MODULES) as cpo_b,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp_a,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as emsp_b,
    ):
        for platform in (cpo_a, cpo_b, emsp_a, emsp_b):
            await register(hub, http, platform)
        yield cpo_a, cpo_b, emsp_a, emsp_b


async def call(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    sender: FakePlatform,
    method: str,
    module: str,
    interface: str,
    suffix: str,
    body: Any = None,
    to: tuple[str, str] | None = None,
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    headers = sender.routed(to)
    url = f"{hub.url}/ocpi/2.3.0/{module}/{interface}{suffix}"
    async with http.request(method, url, json=body, headers=headers) as response:
        return response, await response.json()


async def test_get_of_a_known_location_reaches_its_owner(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    cpo_a, cpo_b, emsp_a, _ = platforms
    await call(
        hub,
        http,
        cpo_b,
        "PUT",
        "locations",
        "receiver",
        "/NL/CPB/LOC7",
        {"id": "LOC7"},
        ("DE", "MSA"),
    )
    await until(lambda: bool(emsp_a.calls()))
    cpo_b.received.clear()
    response, body = await _retry_until_learned(
        lambda: call(hub, http, emsp_a, "GET", "locations", "sender", "/LOC7")
    )
    assert body["status_code"] == 1000
    (got,) = cpo_b.calls()
    assert got.path == "/ocpi/2.3.0/locations/sender/LOC7"
    # Open request, hub to receiving platform: TO = the receiving party, FROM = the requester.
    assert (got.headers["ocpi-to-country-code"], got.headers["ocpi-to-party-id"]) == ("NL", "CPB")
    assert (got.headers["ocpi-from-party-id"]) == "MSA"
    assert (response.headers["OCPI-from-party-id"], response.headers["OCPI-to-party-id"]) == (
        "CPB",
        "MSA",
    )
    assert cpo_a.calls() == []


async def _retry_until_learned(make_call):  # the index is written just after the push answer
    for _ in range(50):
        response, body = await make_call()
        if body["status_code"] != 4001:
            return response, body
        import asyncio

        await asyncio.sleep(0.02)
    return response, body


async def test_token_authorize_reaches_the_owning_emsp(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    cpo_a, _, emsp_a, emsp_b = platforms
    await call(
        hub,
        http,
        emsp_b,
        "PUT",
        "tokens",
        "receiver",
        "/DE/MSB/UID9",
        {"uid": "UID9"},
        ("NL", "CPA"),
    )
    emsp_b.received.clear()
    _, body = await _retry_until_learned(
        lambda: call(
            hub, http, cpo_a, "POST", "tokens", "sender", "/UID9/authorize", {"location_id": "L"}
        )
    )
    assert body["status_code"] == 1000
    assert [c.path for c in emsp_b.calls()] == ["/ocpi/2.3.0/tokens/sender/UID9/authorize"]
    assert emsp_a.calls() == []


async def test_command_routed_by_its_location(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    cpo_a, _, emsp_a, _ = platforms
    await call(
        hub,
        http,
        cpo_a,
        "PUT",
        "locations",
        "receiver",
        "/NL/CPA/LOC3",
        {"id": "LOC3"},
        ("DE", "MSA"),
    )
    cpo_a.received.clear()
    command = {"location_id": "LOC3", "response_url": f"{emsp_a.url}/r/1", "token": {"uid": "U"}}
    _, body = await _retry_until_learned(
        lambda: call(hub, http, emsp_a, "POST", "commands", "receiver", "/START_SESSION", command)
    )
    assert body["status_code"] == 1000
    assert [c.path for c in cpo_a.calls()] == ["/ocpi/2.3.0/commands/receiver/START_SESSION"]


async def test_session_push_follows_the_session(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    """A session's later pushes go to the eMSP its first push named; the eMSP's charging
    preferences go back to the CPO."""
    cpo_a, _, emsp_a, emsp_b = platforms
    await call(
        hub, http, cpo_a, "PUT", "sessions", "receiver", "/NL/CPA/S1", {"id": "S1"}, ("DE", "MSB")
    )
    emsp_b.received.clear()
    _, body = await _retry_until_learned(
        lambda: call(hub, http, cpo_a, "PATCH", "sessions", "receiver", "/NL/CPA/S1", {"kwh": 2})
    )
    assert body["status_code"] == 1000
    assert [c.method for c in emsp_b.calls()] == ["PATCH"] and emsp_a.calls() == []
    cpo_a.received.clear()
    _, body = await call(
        hub, http, emsp_b, "PUT", "sessions", "sender", "/S1/charging_preferences", {}
    )
    assert body["status_code"] == 1000 and len(cpo_a.calls()) == 1


async def test_cdr_routed_by_its_token(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    cpo_a, _, _, emsp_b = platforms
    cdr = {"id": "CDR1", "cdr_token": {"uid": "U", "country_code": "DE", "party_id": "MSB"}}
    _, body = await call(hub, http, cpo_a, "POST", "cdrs", "receiver", "", cdr)
    assert body["status_code"] == 1000 and len(emsp_b.calls()) == 1


async def test_unknown_push_is_broadcast(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    cpo_a, cpo_b, emsp_a, emsp_b = platforms
    _, body = await call(hub, http, cpo_a, "PUT", "tariffs", "receiver", "/NL/CPA/T1", {"id": "T1"})
    assert body["status_code"] == 1000 and "broadcast" in body["status_message"]
    await until(lambda: bool(emsp_a.calls()) and bool(emsp_b.calls()))
    assert cpo_b.calls() == []


async def test_undeterminable_get_is_4001(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    _, _, emsp_a, _ = platforms
    _, body = await call(hub, http, emsp_a, "GET", "locations", "sender", "/NOWHERE")
    assert body["status_code"] == 4001 and "location NOWHERE" in body["status_message"]
    _, body = await call(hub, http, emsp_a, "PUT", "sessions", "receiver", "/DE/MSA/S9", {})
    assert body["status_code"] == 4001


async def test_id_known_from_two_owners_is_not_guessed(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    cpo_a, cpo_b, emsp_a, _ = platforms
    for cpo, party in ((cpo_a, "CPA"), (cpo_b, "CPB")):
        await call(
            hub,
            http,
            cpo,
            "PUT",
            "locations",
            "receiver",
            f"/NL/{party}/SAME",
            {"id": "SAME"},
            ("DE", "MSA"),
        )
    for _ in range(50):
        _, body = await call(hub, http, emsp_a, "GET", "locations", "sender", "/SAME")
        if "more than one party" in (body.get("status_message") or ""):
            break
        import asyncio

        await asyncio.sleep(0.02)
    assert body["status_code"] == 4001 and "more than one party" in body["status_message"]


async def test_session_id_of_two_cpos_is_not_guessed(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    """Session ids are unique per CPO only: one pushed by two CPOs is ambiguous."""
    cpo_a, cpo_b, emsp_a, _ = platforms
    for cpo, party in ((cpo_a, "CPA"), (cpo_b, "CPB")):
        await call(
            hub, http, cpo, "PUT", "sessions", "receiver", f"/NL/{party}/1234", {}, ("DE", "MSA")
        )
    for _ in range(50):
        _, body = await call(
            hub, http, emsp_a, "PUT", "sessions", "sender", "/1234/charging_preferences", {}
        )
        if "more than one party" in (body.get("status_message") or ""):
            break
        import asyncio

        await asyncio.sleep(0.02)
    assert body["status_code"] == 4001 and "session 1234" in body["status_message"]
