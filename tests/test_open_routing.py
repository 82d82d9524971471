"""Open Routing Requests (transport_and_format, "Open Routing Request"): no OCPI-to headers,
the hub decides the receiver from what it has seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.conftest import HubFactory
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
    await hub.broadcasts_finished(http)  # all it will deliver: none to a CPO
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


# -- the index forgets: every id expires open_routing_ttl seconds after its last push -------


async def _key_appears(redis: aioredis.Redis, key: str, seconds: float = 5.0) -> None:
    """The index is written just after the push is answered (in the background)."""
    deadline = time.monotonic() + seconds
    while not await redis.exists(key):
        assert time.monotonic() < deadline, f"{key} was never written"
        await asyncio.sleep(0.02)


async def _push_location_and_session(
    hub: RunningHub, http: aiohttp.ClientSession, cpo: FakePlatform, location_id: str
) -> None:
    """A location and a session from NL/CPA to DE/MSA, routed directly (the index learns
    the location's owner and the session's CPO and eMSP)."""
    _, body = await call(
        hub, http, cpo, "PUT", "locations", "receiver", f"/NL/CPA/{location_id}",
        {"id": location_id}, ("DE", "MSA"),
    )  # fmt: skip
    assert body["status_code"] == 1000
    _, body = await call(
        hub, http, cpo, "PUT", "sessions", "receiver", "/NL/CPA/S5", {"id": "S5"}, ("DE", "MSA")
    )
    assert body["status_code"] == 1000


async def test_index_entries_expire_after_open_routing_ttl(
    hub_factory: HubFactory, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    """Code review: the index kept every session id ever pushed. Each id is now a key of
    its own with a time to live of OPEN_ROUTING_TTL seconds."""
    async with (
        hub_factory(open_routing_ttl=60) as hub,
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
    ):
        assert hub.settings.open_routing_ttl == 60
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        await _push_location_and_session(hub, http, cpo, "LOC5")
        await _key_appears(redis, "{hub}:route:locations:LOC5")
        await _key_appears(redis, "{hub}:route:sessions:S5")
        assert await redis.get("{hub}:route:locations:LOC5") == b"NL:CPA"
        assert await redis.hkeys("{hub}:route:sessions:S5") == [b"NL:CPA|DE:MSA"]
        for key in ("{hub}:route:locations:LOC5", "{hub}:route:sessions:S5"):
            ttl = await redis.ttl(key)
            assert 0 < ttl <= 60, (key, ttl)


async def test_expired_id_is_no_longer_routed(
    hub_factory: HubFactory, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    """With OPEN_ROUTING_TTL=1 the location is forgotten a second after its push: the key
    goes, and an open GET of it is 4001 again (the hub no longer knows its owner)."""
    async with (
        hub_factory(open_routing_ttl=1) as hub,
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        await _push_location_and_session(hub, http, cpo, "LOC6")
        key = "{hub}:route:locations:LOC6"
        await _key_appears(redis, key)
        assert 0 <= await redis.ttl(key) <= 1
        deadline = time.monotonic() + 5
        while await redis.exists(key) or await redis.exists("{hub}:route:sessions:S5"):
            assert time.monotonic() < deadline, "the index entries never expired"
            await asyncio.sleep(0.05)
        cpo.received.clear()
        _, body = await call(hub, http, emsp, "GET", "locations", "sender", "/LOC6")
        assert body["status_code"] == 4001 and "location LOC6" in body["status_message"]
        assert cpo.calls() == []


async def test_default_open_routing_ttl_is_30_days(
    hub: RunningHub,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    platforms: tuple[FakePlatform, ...],
) -> None:
    cpo_a = platforms[0]
    assert hub.settings.open_routing_ttl == 30 * 24 * 3600 == 2592000
    await _push_location_and_session(hub, http, cpo_a, "LOC7")
    for key in ("{hub}:route:locations:LOC7", "{hub}:route:sessions:S5"):
        await _key_appears(redis, key)
        ttl = await redis.ttl(key)
        assert 2592000 - 60 <= ttl <= 2592000, (key, ttl)


# -- sessions per CPO and receiver; real-time authorization of unknown tokens ---------------


async def test_session_pushed_to_two_receivers_routes_back_to_its_cpo(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    """mod_charging_profiles: a CPO forwards its sessions to the eMSP and to the SCSP it
    delegated smart charging to. Either receiver reaches the CPO without to-headers; the
    CPO itself must name which receiver it means."""
    cpo_a, cpo_b, emsp_a, emsp_b = platforms
    for receiver in (("DE", "MSA"), ("DE", "MSB")):
        _, body = await call(
            hub, http, cpo_a, "PUT", "sessions", "receiver", "/NL/CPA/S9", {"id": "S9"}, receiver
        )
        assert body["status_code"] == 1000
    for emsp in (emsp_a, emsp_b):
        cpo_a.received.clear()
        _, body = await _retry_until_learned(
            lambda emsp=emsp: call(
                hub, http, emsp, "PUT", "sessions", "sender", "/S9/charging_preferences", {}
            )
        )
        assert body["status_code"] == 1000
        assert [c.path for c in cpo_a.calls()] == [
            "/ocpi/2.3.0/sessions/sender/S9/charging_preferences"
        ]
    assert cpo_b.calls() == []
    _, body = await call(hub, http, cpo_a, "PATCH", "sessions", "receiver", "/NL/CPA/S9", {})
    assert body["status_code"] == 4001 and "more than one party" in body["status_message"]


def _authorize_answer(allowed: str | None) -> Any:
    """A token SENDER that answers POST authorize with ``allowed``, or 404 when None."""
    from aiohttp import web

    from tests.fakes import ocpi

    async def handler(received: Any, request: web.Request) -> web.StreamResponse:
        if allowed is None:
            return web.Response(status=404)
        return ocpi({"allowed": allowed, "token": {"uid": "X"}})

    return handler


async def _authorize(
    hub: RunningHub, http: aiohttp.ClientSession, cpo: FakePlatform, uid: str
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    return await call(hub, http, cpo, "POST", "tokens", "sender", f"/{uid}/authorize", {})


@pytest.mark.parametrize(
    ("msa", "msb", "http_status", "status_code", "winner"),
    [
        (None, "ALLOWED", 200, 1000, "MSB"),
        ("BLOCKED", None, 200, 1000, "MSA"),
        ("NOT_ALLOWED", "EXPIRED", 200, 1000, "MSB"),
        (None, None, 404, 2004, "HUB"),
    ],
    ids=["allowed-wins", "blocked-before-404", "expired-before-not-allowed", "all-404"],
)
async def test_authorize_of_an_unknown_token_asks_every_emsp(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    platforms: tuple[FakePlatform, ...],
    msa: str | None,
    msb: str | None,
    http_status: int,
    status_code: int,
    winner: str,
) -> None:
    """mod_tokens "Real-time authorization": a token that was never pushed is asked of every
    connected eMSP at once; ALLOWED wins, then the most informative answer; all unknown is
    HTTP 404 (mod_tokens, "POST Method"), with 2004 Unknown Token."""
    cpo_a, cpo_b, emsp_a, emsp_b = platforms
    emsp_a.handler, emsp_b.handler = _authorize_answer(msa), _authorize_answer(msb)
    response, body = await _authorize(hub, http, cpo_a, "RFID77")
    assert (response.status, body["status_code"]) == (http_status, status_code)
    assert response.headers["OCPI-from-party-id"] == winner
    for emsp in (emsp_a, emsp_b):
        asked = emsp.calls("/ocpi/2.3.0/tokens/sender")
        # An ALLOWED ends the round at once: the other eMSP may not have been reached yet.
        assert len(asked) == 1 or ("ALLOWED" in (msa, msb) and emsp.name != "MSP B")
        for call_ in asked:
            assert call_.path == "/ocpi/2.3.0/tokens/sender/RFID77/authorize"
            assert call_.headers["ocpi-from-party-id"] == "CPA"
    assert cpo_b.calls() == [], "CPOs are not asked"
    if winner == "MSB":
        assert body["data"]["allowed"] == msb
        emsp_a.received.clear()
        emsp_b.received.clear()
        _, again = await _authorize(hub, http, cpo_a, "RFID77")
        assert again["status_code"] == 1000
        assert emsp_a.calls() == [] and len(emsp_b.calls()) == 1, "the owner was learned"


async def test_authorize_of_an_ema_id_goes_to_the_emsp_it_names(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    """An eMA-ID (DE-MSB-C12345678-9) names its eMSP: only that one is asked."""
    cpo_a, _, emsp_a, emsp_b = platforms
    emsp_b.handler = _authorize_answer("ALLOWED")
    _, body = await _authorize(hub, http, cpo_a, "DE-MSB-C12345678-9")
    assert body["status_code"] == 1000 and body["data"]["allowed"] == "ALLOWED"
    assert emsp_a.calls() == [] and len(emsp_b.calls()) == 1


async def test_authorize_answers_by_its_deadline(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """An eMSP that does not answer cannot hold the charge point: by AUTHORIZE_DEADLINE the
    CPO gets 4002 (no eMSP recognised the token) and the silent eMSP is named in numbers."""
    from aiohttp import web

    async def silent(received: Any, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(10)
        raise AssertionError("never answers")

    async with (
        hub_factory(authorize_deadline=0.5, forward_timeout=5.0) as hub,
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as slow,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as unknowing,
    ):
        for platform in (cpo, slow, unknowing):
            await register(hub, http, platform)
        slow.handler, unknowing.handler = silent, _authorize_answer(None)
        began = time.perf_counter()
        _, body = await _authorize(hub, http, cpo, "RFID88")
        assert time.perf_counter() - began < 2.0
    assert body["status_code"] == 4002 and "1 of 2 did not answer" in body["status_message"]


async def test_booking_request_routed_by_its_location(
    hub: RunningHub, http: aiohttp.ClientSession, platforms: tuple[FakePlatform, ...]
) -> None:
    """mod_bookings: a BookingRequest POSTed to the CPO's Sender names the location; without
    to-headers it reaches the CPO that pushed that location."""
    cpo_a, cpo_b, emsp_a, _ = platforms
    await call(
        hub, http, cpo_a, "PUT", "locations", "receiver", "/NL/CPA/LOC9", {"id": "LOC9"},
        ("DE", "MSA"),
    )  # fmt: skip
    cpo_a.received.clear()
    _, body = await _retry_until_learned(
        lambda: call(hub, http, emsp_a, "POST", "bookings", "sender", "", {"location_id": "LOC9"})
    )
    assert body["status_code"] == 1000
    assert [c.path for c in cpo_a.calls()] == ["/ocpi/2.3.0/bookings/sender"]
    assert cpo_b.calls() == []
