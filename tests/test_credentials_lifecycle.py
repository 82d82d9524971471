"""The credentials lifecycle: token rotation without lock-out, suspension that tells the
platform, and each platform's audit trail of credentials events.

credentials.asciidoc, "Updating to a newer version" / "PUT Method" (a PUT gives the platform
a new token C) and "Unregistering" ("Both parties must end any automated communication").
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, ocpi, register, until
from tests.support import RunningHub, eventually, token_header


async def put_credentials(
    http: aiohttp.ClientSession, hub: RunningHub, platform: FakePlatform, token: str
) -> dict[str, Any]:
    token_b = "fake-b-" + secrets.token_hex(8)
    platform.inbound_tokens.add(token_b)
    async with http.put(
        f"{hub.url}/ocpi/2.3.0/credentials",
        json=platform.credentials(token_b),
        headers=token_header(token),
    ) as response:
        return dict(await response.json())


async def versions_status(http: aiohttp.ClientSession, hub: RunningHub, token: str) -> int:
    async with http.get(hub.versions_url, headers=token_header(token)) as response:
        return response.status


async def events_of(http: aiohttp.ClientSession, hub: RunningHub, platform_id: str) -> Any:
    async with http.get(
        f"{hub.url}/admin/platforms/{platform_id}/events", headers=hub.admin
    ) as response:
        return await response.json()


async def test_the_old_token_works_until_the_new_one_is_used(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A PUT whose answer the platform never got leaves it with the old token: that token
    keeps working (the platform retries its PUT with it); once the platform calls with the
    new token, the old one is refused at once."""
    async with FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo:
        await register(hub, http, cpo)
        old = cpo.hub_token
        assert old is not None
        lost = await put_credentials(http, hub, cpo, old)  # the answer "lost": not used
        assert lost["status_code"] == 1000
        assert await versions_status(http, hub, old) == 200, "still valid: no lock-out"
        retried = await put_credentials(http, hub, cpo, old)
        new = retried["data"]["token"]
        assert retried["status_code"] == 1000 and new != lost["data"]["token"]
        assert await versions_status(http, hub, new) == 200

        async def old_refused() -> bool:  # retired by a registry write, off the request path
            return await versions_status(http, hub, old) == 401

        await eventually(old_refused, 5)
        assert await versions_status(http, hub, lost["data"]["token"]) == 401


async def test_the_old_token_dies_when_the_grace_period_ends(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with (
        hub_factory(rotation_grace=0.3) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
    ):
        await register(hub, http, cpo)
        old = cpo.hub_token or ""
        assert (await put_credentials(http, hub, cpo, old))["status_code"] == 1000
        assert await versions_status(http, hub, old) == 200

        async def old_refused() -> bool:
            return await versions_status(http, hub, old) == 401

        await eventually(old_refused, 5)  # once ROTATION_GRACE (0.3 s) is over
        async with http.get(hub.versions_url, headers=token_header(old)) as response:
            answer = await response.json()
        assert "replaced by a credentials update" in answer["status_message"]


async def test_suspension_tells_the_platform_and_every_event_is_recorded(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo:
        platform_id = await register(hub, http, cpo)
        old = cpo.hub_token or ""
        assert (await put_credentials(http, hub, cpo, old))["status_code"] == 1000
        async with http.delete(
            f"{hub.url}/admin/platforms/{platform_id}", headers=hub.admin
        ) as response:
            assert response.status == 200
        await until(
            lambda: bool(
                cpo.calls(path_prefix=cpo.credentials_url.removeprefix(cpo.url), method="DELETE")
            )
        )
        (told,) = cpo.calls(path_prefix="/ocpi/2.3.0/credentials", method="DELETE")
        assert told.token is not None
        events: list[dict[str, Any]] = []

        async def suspend_recorded() -> bool:
            nonlocal events
            events = await events_of(http, hub, platform_id)
            return bool(events) and events[0]["event"] == "suspend"

        for _ in range(100):
            if await suspend_recorded():
                break
            await __import__("asyncio").sleep(0.02)
        assert [(e["event"], e["initiator"], e["outcome"]) for e in events] == [
            ("suspend", "operator", "ok"),
            ("update", "platform", "ok"),
            ("register", "platform", "ok"),
        ]
        assert events[0]["detail"] == "DELETE credentials answered"
        assert events[2]["version"] == "2.3.0"
        assert "fake-" not in str(events), "never a token"


async def test_a_failed_registration_is_recorded_with_its_reason(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with FakePlatform(
        "Old", [("DE", "MSA", "EMSP")], ALL_MODULES, versions=["2.1.1"], version="2.2.1"
    ) as old:
        created = await hub.create_platform(http, "Old")
        answer = await old.register(http, hub.versions_url, created["token_a"])
        assert answer["status_code"] == 3002
        (event,) = await events_of(http, hub, created["id"])
        assert event["event"] == "register" and event["initiator"] == "platform"
        assert "no mutual OCPI version" in event["outcome"]


def accepting_updates(platform: FakePlatform, drop_first: bool = False) -> list[str]:
    """The platform as credentials Receiver of the hub's PUT: it takes the hub's new token,
    gives a new token B, and keeps the old B working (its own grace). With ``drop_first``
    it applies the first PUT and then drops the connection: the answer is lost."""
    issued: list[str] = []

    async def update(received: Any, request: Any) -> Any:
        body = received.json()
        platform.hub_token = body["token"]
        platform.hub_credentials = body
        token_b = "fake-b-" + secrets.token_hex(8)
        platform.inbound_tokens.add(token_b)
        issued.append(token_b)
        if drop_first and len(issued) == 1:
            request.transport.close()
        return ocpi(platform.credentials(token_b))

    platform.credentials_handler = update
    return issued


async def test_the_hub_rotates_a_platforms_tokens(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """POST /admin/platforms/{id}/rotate: PUT to the platform's credentials endpoint with
    a new token for it; the hub calls it with the token from its answer from then on."""
    async with (
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        platform_id = await register(hub, http, cpo)
        await register(hub, http, msp)
        old = cpo.hub_token or ""
        issued = accepting_updates(cpo)
        async with http.post(
            f"{hub.url}/admin/platforms/{platform_id}/rotate", headers=hub.admin
        ) as response:
            assert response.status == 200, await response.text()
        assert cpo.hub_token != old and len(issued) == 1
        (put,) = cpo.calls(path_prefix="/ocpi/2.3.0/credentials", method="PUT")
        assert put.token != issued[0], "the PUT goes with the old token B"
        assert await versions_status(http, hub, old) == 200, "the old C works until..."
        assert await versions_status(http, hub, cpo.hub_token or "") == 200  # ... the new one

        async def old_refused() -> bool:
            return await versions_status(http, hub, old) == 401

        await eventually(old_refused, 5)
        cpo.received.clear()
        async with http.get(
            f"{hub.url}/ocpi/2.3.0/locations/sender/L1", headers=msp.routed(("NL", "CPA"))
        ) as response:
            assert (await response.json())["status_code"] == 1000
        (forwarded,) = cpo.calls()
        assert forwarded.token == issued[0], "the hub calls it with its new token B"
        events = await events_of(http, hub, platform_id)
        assert (events[0]["event"], events[0]["initiator"], events[0]["outcome"]) == (
            "rotate",
            "operator",
            "ok",
        )


async def test_a_rotation_whose_answer_is_lost_keeps_both_sides_working(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """The platform applies the hub's PUT and drops the connection: the hub keeps its old
    token B, its new token C stays valid (the platform took it), and it sends the PUT
    again; the second answer completes the rotation."""
    async with (
        hub_factory(rotation_retry=0.05) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
    ):
        platform_id = await register(hub, http, cpo)
        issued = accepting_updates(cpo, drop_first=True)
        async with http.post(
            f"{hub.url}/admin/platforms/{platform_id}/rotate", headers=hub.admin
        ) as response:
            assert response.status == 200, await response.text()
        puts = cpo.calls(path_prefix="/ocpi/2.3.0/credentials", method="PUT")
        assert len(puts) == 2 and len(issued) == 2
        assert puts[0].token == puts[1].token, "both tries with the old token B"
        assert puts[0].json()["token"] == puts[1].json()["token"], "the same new token C"
        assert await versions_status(http, hub, cpo.hub_token or "") == 200


async def test_a_rotation_that_fails_is_reported_and_changes_nothing_else(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with (
        hub_factory(rotation_retry=0.01) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
    ):
        platform_id = await register(hub, http, cpo)
        old = cpo.hub_token or ""

        async def refuse(received: Any, request: Any) -> Any:
            return ocpi(None, 2001, 400)

        cpo.credentials_handler = refuse
        async with http.post(
            f"{hub.url}/admin/platforms/{platform_id}/rotate", headers=hub.admin
        ) as response:
            answer = await response.json()
            assert response.status == 502, answer
        assert await versions_status(http, hub, old) == 200
        (event, *_) = await events_of(http, hub, platform_id)
        assert event["event"] == "rotate" and event["outcome"] != "ok"


NO_CLIENTINFO = tuple(m for m in ALL_MODULES if m[0] != "hubclientinfo")


def parties_in(put: Any) -> set[str]:
    return {f"{r['country_code']}/{r['party_id']}" for r in put.json()["roles"]}


async def test_roles_are_kept_current_for_a_230_platform_without_clientinfo(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """credentials (2.3.0): a hub lists the parties reachable through it in roles. A
    platform that takes no HubClientInfo gets a credentials update when they change, at
    most once per ROLES_UPDATE_INTERVAL: two parties joining within one interval make one
    update. One that takes ClientInfo is left alone."""
    async with (
        hub_factory(roles_update_interval=1.0) as hub,
        FakePlatform("Plain", [("NL", "CPA", "CPO")], NO_CLIENTINFO) as plain,
        FakePlatform("Informed", [("NL", "CPI", "CPO")], ALL_MODULES) as informed,
    ):
        await register(hub, http, plain)
        await register(hub, http, informed)
        accepting_updates(plain)
        accepting_updates(informed)

        def puts(platform: FakePlatform) -> list[Any]:
            return platform.calls(path_prefix="/ocpi/2.3.0/credentials", method="PUT")

        async with FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as b:
            await register(hub, http, b)
            await until(lambda: any("DE/MSB" in parties_in(p) for p in puts(plain)), 10)
            async with (
                FakePlatform("MSP C", [("DE", "MSC", "EMSP")], ALL_MODULES) as c,
                FakePlatform("MSP D", [("DE", "MSD", "EMSP")], ALL_MODULES) as d,
            ):
                await register(hub, http, c)
                await register(hub, http, d)
                await until(lambda: any("DE/MSD" in parties_in(p) for p in puts(plain)), 10)
                first, second = puts(plain)
                assert "DE/MSC" not in parties_in(first)
                assert {"DE/MSC", "DE/MSD"} <= parties_in(second), "one update for both"
                assert puts(informed) == []
        # The updates carry new tokens under the grace rule: the platform keeps working.
        assert await versions_status(http, hub, plain.hub_token or "") == 200


async def test_scheduled_rotation(hub_factory: HubFactory, http: aiohttp.ClientSession) -> None:
    """ROTATION_INTERVAL: every platform's tokens are rotated that often (here 0.5 s)."""
    async with (
        hub_factory(rotation_interval=0.5, roles_update_interval=0) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
    ):
        platform_id = await register(hub, http, cpo)
        first = cpo.hub_token
        accepting_updates(cpo)
        await until(lambda: cpo.hub_token != first, 10)

        async def recorded() -> bool:
            events = await events_of(http, hub, platform_id)
            return any(e["event"] == "rotate" and e["initiator"] == "hub" for e in events)

        await eventually(recorded, 5)
        assert await versions_status(http, hub, cpo.hub_token or "") == 200


async def test_a_platform_that_took_an_unanswered_update_keeps_working(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """Every answer to the hub's PUT is lost, so the rotation fails; the platform took the
    new token all the same. It works, and its first call with it retires the old one."""
    async with (
        hub_factory(rotation_retry=0.01) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
    ):
        platform_id = await register(hub, http, cpo)
        old = cpo.hub_token or ""

        async def apply_then_drop(received: Any, request: Any) -> Any:
            cpo.hub_token = received.json()["token"]
            request.transport.close()
            return ocpi(None)

        cpo.credentials_handler = apply_then_drop
        async with http.post(
            f"{hub.url}/admin/platforms/{platform_id}/rotate", headers=hub.admin
        ) as response:
            assert response.status == 502
        taken = cpo.hub_token or ""
        assert taken != old
        assert await versions_status(http, hub, old) == 200, "not yet used: both work"
        assert await versions_status(http, hub, taken) == 200

        async def old_refused() -> bool:
            return await versions_status(http, hub, old) == 401

        await eventually(old_refused, 5)
        assert await versions_status(http, hub, taken) == 200


async def test_a_suspension_during_a_rotation_stands(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    async with FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo:
        platform_id = await register(hub, http, cpo)
        issued = accepting_updates(cpo)
        answer_update = cpo.credentials_handler
        assert answer_update is not None

        async def suspended_meanwhile(received: Any, request: Any) -> Any:
            if received.method == "PUT":
                async with http.delete(
                    f"{hub.url}/admin/platforms/{platform_id}", headers=hub.admin
                ) as response:
                    assert response.status == 200
            return await answer_update(received, request)

        cpo.credentials_handler = suspended_meanwhile
        async with http.post(
            f"{hub.url}/admin/platforms/{platform_id}/rotate", headers=hub.admin
        ) as response:
            assert response.status == 409
        assert issued
        async with http.get(f"{hub.url}/admin/platforms/{platform_id}", headers=hub.admin) as r:
            assert (await r.json())["state"] == "SUSPENDED"
        assert await versions_status(http, hub, cpo.hub_token or "") == 401


async def test_a_token_whose_grace_ended_never_comes_back(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    # The grace is long enough for the last check to fall inside the second token's own,
    # even on a loaded machine.
    async with (
        hub_factory(rotation_grace=1.5) as hub,
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
    ):
        await register(hub, http, cpo)
        first = cpo.hub_token or ""
        second = (await put_credentials(http, hub, cpo, first))["data"]["token"]

        async def first_refused() -> bool:
            return await versions_status(http, hub, first) == 401

        await eventually(first_refused, 5)
        third = await put_credentials(http, hub, cpo, second)
        assert third["status_code"] == 1000, "a second update right after: no 409"
        assert await versions_status(http, hub, first) == 401
        assert await versions_status(http, hub, second) == 200  # in its own grace


async def test_an_answered_rotation_keeps_the_platforms_new_token(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """The platform answers the PUT (it holds the hub's new token and has issued a new one),
    then its versions cannot be read: the rotation fails, but the hub calls it with the
    token from its answer from then on, not with the one it replaced."""
    async with (
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        platform_id = await register(hub, http, cpo)
        await register(hub, http, msp)
        issued = accepting_updates(cpo)
        answer_update = cpo.credentials_handler
        assert answer_update is not None

        async def unreadable_versions(received: Any, request: Any) -> Any:
            return ocpi(None, 3000, 500)

        async def answered_then_unreadable(received: Any, request: Any) -> Any:
            cpo.versions_handler = unreadable_versions
            return await answer_update(received, request)

        cpo.credentials_handler = answered_then_unreadable
        async with http.post(
            f"{hub.url}/admin/platforms/{platform_id}/rotate", headers=hub.admin
        ) as response:
            assert response.status == 502
        (new_b,) = issued
        cpo.received.clear()
        async with http.get(
            f"{hub.url}/ocpi/2.3.0/locations/sender/L1", headers=msp.routed(("NL", "CPA"))
        ) as response:
            assert (await response.json())["status_code"] == 1000
        (forwarded,) = cpo.calls()
        assert forwarded.token == new_b
