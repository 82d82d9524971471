"""The credentials handshake in both directions (credentials.asciidoc), end to end."""

from __future__ import annotations

import base64
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import HubFactory
from tests.fakes import FakePlatform, Received, ocpi
from tests.support import RunningHub, eventually, several, token_header

CPO = ("NL", "CPA", "CPO")
EMSP = ("DE", "MSA", "EMSP")


async def registered(
    hub: RunningHub, http: aiohttp.ClientSession, platform: FakePlatform
) -> dict[str, Any]:
    created = await hub.create_platform(http, platform.name)
    answer = await platform.register(http, hub.versions_url, created["token_a"])
    assert answer["status_code"] == 1000, answer
    return created


async def admin_get(hub: RunningHub, http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(f"{hub.url}{path}", headers=hub.admin) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def credentials_call(
    hub: RunningHub, http: aiohttp.ClientSession, method: str, token: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    url = f"{hub.url}/ocpi/2.3.0/credentials"
    async with http.request(method, url, json=body, headers=token_header(token)) as response:
        return response.status, await response.json()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ocpi/versions"


async def test_register_with_hub_as_receiver(hub: RunningHub, http: aiohttp.ClientSession):
    """credentials "Registration": the hub fetches versions/details with token B, answers C."""
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        created = await hub.create_platform(http, "CPO Co")
        answer = await cpo.register(http, hub.versions_url, created["token_a"])
        assert answer["http_status"] == 200 and answer["status_code"] == 1000
        creds = answer["data"]
        token_b = next(iter(t for t in cpo.inbound_tokens if t.startswith("fake-b-")))

        # The hub called the platform's versions and details with base64(token B).
        fetched = [(r.method, r.path) for r in cpo.received]
        assert fetched == [("GET", "/ocpi/versions"), ("GET", "/ocpi/2.3.0")]
        expected = "Token " + base64.b64encode(token_b.encode()).decode()
        assert all(r.headers["authorization"] == expected for r in cpo.received)
        assert all(r.headers.get("x-request-id") for r in cpo.received)
        assert all(r.headers["accept-encoding"] == "identity" for r in cpo.received)  # no gzip
        assert not any(r.headers.get("ocpi-to-party-id") for r in cpo.received)

        # The hub's credentials: token C, its versions URL, hub_party_id, roles (2.3.0).
        token_c = creds["token"]
        assert 1 <= len(token_c) <= 64 and all(0x21 <= ord(c) <= 0x7E for c in token_c)
        assert token_c != created["token_a"]
        assert creds["url"] == hub.versions_url
        assert creds["hub_party_id"] == "NLHUB"
        assert creds["roles"][0]["role"] == "OTHER"
        assert (creds["roles"][0]["country_code"], creds["roles"][0]["party_id"]) == ("NL", "HUB")

        # Token A is void; token C works.
        async with http.get(hub.versions_url, headers=token_header(created["token_a"])) as r:
            assert r.status == 401
        async with http.get(hub.versions_url, headers=token_header(token_c)) as r:
            assert r.status == 200

        platform = await admin_get(hub, http, f"/admin/platforms/{created['id']}")
        assert platform["state"] == "REGISTERED" and platform["version"] == "2.3.0"
        assert platform["versions_url"] == cpo.versions_url
        assert {
            "identifier": "locations",
            "role": "SENDER",
            "url": cpo.endpoint_url("locations", "SENDER"),
        } in platform["endpoints"]
        assert platform["roles"] == [{"role": "CPO", "country_code": "NL", "party_id": "CPA"}]


async def test_roles_list_parties_of_other_platforms(hub: RunningHub, http: aiohttp.ClientSession):
    """credentials "Credentials object" note: 2.3.0 hubs list the parties reachable through them."""
    async with (
        FakePlatform("CPO Co", [CPO, ("NL", "CPB", "CPO")]) as cpo,
        FakePlatform("MSP Co", [EMSP]) as emsp,
    ):
        await registered(hub, http, cpo)
        cpo_roles = {
            (r["country_code"], r["party_id"], r["role"]) for r in cpo.hub_credentials["roles"]
        }
        assert cpo_roles == {("NL", "HUB", "OTHER")}  # nobody else yet, never its own parties

        await registered(hub, http, emsp)
        emsp_roles = {
            (r["country_code"], r["party_id"], r["role"]) for r in emsp.hub_credentials["roles"]
        }
        assert emsp_roles == {("NL", "HUB", "OTHER"), CPO, ("NL", "CPB", "CPO")}
        named = {
            r["party_id"]: r["business_details"]["name"] for r in emsp.hub_credentials["roles"]
        }
        assert named["CPA"] == "CPO Co CPA"

        status, body = await credentials_call(hub, http, "GET", cpo.hub_token)
        assert status == 200 and body["data"]["token"] == cpo.hub_token
        assert {(r["country_code"], r["party_id"], r["role"]) for r in body["data"]["roles"]} == {
            ("NL", "HUB", "OTHER"),
            EMSP,
        }


async def test_connect_with_hub_as_sender(hub: RunningHub, http: aiohttp.ClientSession):
    """The hub as Sender: GET their versions with their token A, POST ours, keep their token C."""
    async with FakePlatform("MSP Co", [EMSP]) as emsp:
        created = await hub.create_platform(http, "MSP Co")
        token_a = emsp.issue_token_a()
        async with http.post(
            f"{hub.url}/admin/platforms/{created['id']}/connect",
            json={"versions_url": emsp.versions_url, "token_a": token_a},
            headers=hub.admin,
        ) as response:
            assert response.status == 200, await response.text()
            platform = await response.json()
        assert platform["state"] == "REGISTERED"
        assert platform["roles"] == [{"role": "EMSP", "country_code": "DE", "party_id": "MSA"}]

        expected = "Token " + base64.b64encode(token_a.encode()).decode()
        post = emsp.calls("/ocpi/2.3.0/credentials", "POST")
        assert len(post) == 1 and post[0].headers["authorization"] == expected
        sent = post[0].json()
        assert sent["hub_party_id"] == "NLHUB" and sent["url"] == hub.versions_url
        assert sent["roles"][0]["role"] == "OTHER"
        # The fake checked our versions with the token we handed it (inside the POST): it works.
        async with http.get(hub.versions_url, headers=emsp.hub_headers()) as r:
            assert r.status == 200
        status, body = await credentials_call(hub, http, "GET", emsp.hub_token)
        assert status == 200 and body["data"]["token"] == emsp.hub_token
        # The token A the hub issued for the other direction is void now.
        async with http.get(hub.versions_url, headers=token_header(created["token_a"])) as r:
            assert r.status == 401


async def test_405_rules(hub: RunningHub, http: aiohttp.ClientSession):
    """credentials POST/PUT/DELETE: 405 when (not yet) registered."""
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        created = await hub.create_platform(http, "CPO Co")
        for method in ("PUT", "DELETE", "GET"):
            status, body = await credentials_call(
                hub,
                http,
                method,
                created["token_a"],
                cpo.credentials("t") if method == "PUT" else None,
            )
            assert status == 405, method
            assert "register first" in body["status_message"]
        await cpo.register(http, hub.versions_url, created["token_a"])
        status, body = await credentials_call(
            hub, http, "POST", cpo.hub_token, cpo.credentials("t2")
        )
        assert status == 405
        assert "already registered" in body["status_message"]


async def test_failed_registration_codes_and_retry(hub: RunningHub, http: aiohttp.ClientSession):
    """3001 unreachable / not OCPI, 3002 no mutual version, 3003 missing endpoints; each leaves
    no half-registered platform and token A valid for the retry that then succeeds."""
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        created = await hub.create_platform(http, "CPO Co")
        token_a = created["token_a"]

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            status, answer = await credentials_call(hub, http, "POST", token_a, body)
            assert status == 200
            return answer

        cpo.inbound_tokens.add("tb")
        unreachable = {**cpo.credentials("tb"), "url": _closed_port_url()}
        answer = await post(unreachable)
        assert answer["status_code"] == 3001 and "failed" in answer["status_message"]

        async def html(received: Received, request: web.Request) -> web.StreamResponse:
            return web.Response(text="<html>hello</html>", content_type="text/html")

        cpo.versions_handler = html
        answer = await post(cpo.credentials("tb"))
        assert answer["status_code"] == 3001 and "OCPI envelope" in answer["status_message"]
        cpo.versions_handler = None

        cpo.versions = ["2.0", "2.1.1"]
        answer = await post(cpo.credentials("tb"))
        assert answer["status_code"] == 3002 and "2.1.1" in answer["status_message"]
        cpo.versions = ["2.3.0"]

        cpo.modules = []
        answer = await post(cpo.credentials("tb"))
        assert answer["status_code"] == 3003 and "no module" in answer["status_message"]

        cpo.modules = [("locations", "SENDER")]
        cpo.lists_credentials = False
        answer = await post(cpo.credentials("tb"))
        assert answer["status_code"] == 3003 and "credentials endpoint" in answer["status_message"]
        cpo.lists_credentials = True

        platform = await admin_get(hub, http, f"/admin/platforms/{created['id']}")
        assert platform["state"] == "PENDING" and platform["endpoints"] == []
        assert await admin_get(hub, http, "/admin/parties") == []

        answer = await cpo.register(http, hub.versions_url, token_a)
        assert answer["status_code"] == 1000


async def test_invalid_json_and_invalid_object(hub: RunningHub, http: aiohttp.ClientSession):
    """status_codes: not JSON -> HTTP 400; JSON but not a Credentials object -> 2001."""
    created = await hub.create_platform(http, "CPO Co")
    url = f"{hub.url}/ocpi/2.3.0/credentials"
    headers = {**token_header(created["token_a"]), "Content-Type": "application/json"}
    async with http.post(url, data=b'{"token": ', headers=headers) as response:
        assert response.status == 400
        body = await response.json()
        assert body["status_code"] == 2001 and "not valid JSON" in body["status_message"]
    async with http.post(
        url, json={"token": "x", "url": "http://127.0.0.1:1/"}, headers=headers
    ) as r:
        assert r.status == 200
        body = await r.json()
        assert body["status_code"] == 2001 and "roles" in body["status_message"]
    async with http.get(hub.versions_url, headers=token_header(created["token_a"])) as r:
        assert r.status == 200  # nothing consumed


async def test_rotation(hub: RunningHub, http: aiohttp.ClientSession):
    """credentials PUT: the hub re-fetches with the new token B; the old token C stops working
    once the new one is used (the grace rule: tests/test_credentials_lifecycle.py)."""
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        await registered(hub, http, cpo)
        old_c = cpo.hub_token
        cpo.received.clear()
        new_b = "fake-b-rotated"
        cpo.inbound_tokens = {new_b}
        status, body = await credentials_call(hub, http, "PUT", old_c, cpo.credentials(new_b))
        assert status == 200 and body["status_code"] == 1000, body
        new_c = body["data"]["token"]
        assert new_c != old_c
        assert {r.token for r in cpo.received} == {new_b}  # re-fetched with the new token B
        assert [r.path for r in cpo.received] == ["/ocpi/versions", "/ocpi/2.3.0"]
        async with http.get(hub.versions_url, headers=token_header(new_c)) as r:
            assert r.status == 200

        async def old_refused() -> bool:
            async with http.get(hub.versions_url, headers=token_header(old_c)) as r:
                return r.status == 401

        await eventually(old_refused, 5)


async def test_failed_rotation_keeps_old_state(hub: RunningHub, http: aiohttp.ClientSession):
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        created = await registered(hub, http, cpo)
        before = await admin_get(hub, http, f"/admin/platforms/{created['id']}")
        token_c = cpo.hub_token
        broken = {**cpo.credentials("fake-b-new"), "url": _closed_port_url()}
        status, body = await credentials_call(hub, http, "PUT", token_c, broken)
        assert status == 200 and body["status_code"] == 3001
        assert "failed" in body["status_message"]
        async with http.get(hub.versions_url, headers=token_header(token_c)) as r:
            assert r.status == 200
        after = await admin_get(hub, http, f"/admin/platforms/{created['id']}")
        assert after == before


async def test_unregister(hub: RunningHub, http: aiohttp.ClientSession):
    """credentials DELETE: tokens void, the platform's parties SUSPENDED."""
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        created = await registered(hub, http, cpo)
        status, body = await credentials_call(hub, http, "DELETE", cpo.hub_token)
        assert status == 200 and body["status_code"] == 1000
        async with http.get(hub.versions_url, headers=cpo.hub_headers()) as r:
            assert r.status == 401
        parties = await admin_get(hub, http, "/admin/parties")
        assert [(p["party_id"], p["status"], p["platform_id"]) for p in parties] == [
            ("CPA", "SUSPENDED", created["id"])
        ]


async def test_duplicate_party_refused(hub: RunningHub, http: aiohttp.ClientSession):
    """One party belongs to one platform: a second claim is 2001 naming it, nothing changes."""
    async with (
        FakePlatform("CPO Co", [CPO]) as cpo,
        FakePlatform("Copycat", [("DE", "NEW", "CPO"), CPO]) as copycat,
    ):
        await registered(hub, http, cpo)
        created = await hub.create_platform(http, "Copycat")
        answer = await copycat.register(http, hub.versions_url, created["token_a"])
        assert answer["status_code"] == 2001
        assert "NL/CPA/CPO" in answer["status_message"]
        platform = await admin_get(hub, http, f"/admin/platforms/{created['id']}")
        assert platform["state"] == "PENDING"
        parties = await admin_get(hub, http, "/admin/parties")
        assert [(p["party_id"], p["platform_id"]) for p in parties] == [
            ("CPA", (await admin_get(hub, http, "/admin/platforms"))[0]["id"])
        ]
        async with http.get(hub.versions_url, headers=token_header(created["token_a"])) as r:
            assert r.status == 200  # token A still valid

        # The same through connect: the hub undoes the registration it made at the platform.
        connect = await hub.create_platform(http, "Copycat 2")
        token_a = copycat.issue_token_a()
        async with http.post(
            f"{hub.url}/admin/platforms/{connect['id']}/connect",
            json={"versions_url": copycat.versions_url, "token_a": token_a},
            headers=hub.admin,
        ) as response:
            assert response.status == 409
            error = await response.json()
        assert error["status_code"] == 2001 and "NL/CPA/CPO" in error["error"]
        assert copycat.calls("/ocpi/2.3.0/credentials", "DELETE"), "registration undone"
        platform = await admin_get(hub, http, f"/admin/platforms/{connect['id']}")
        assert platform["state"] == "PENDING"


async def test_connect_failures_store_nothing(hub: RunningHub, http: aiohttp.ClientSession):
    async with FakePlatform("MSP Co", [EMSP]) as emsp:
        created = await hub.create_platform(http, "MSP Co")
        url = f"{hub.url}/admin/platforms/{created['id']}/connect"
        body = {"versions_url": _closed_port_url(), "token_a": "x"}
        async with http.post(url, json=body, headers=hub.admin) as response:
            assert response.status == 502
            assert (await response.json())["status_code"] == 3001

        async def refuse(received: Received, request: web.Request):
            return ocpi(None, 2001, message="no")

        emsp.credentials_handler = refuse
        token_a = emsp.issue_token_a()
        body = {"versions_url": emsp.versions_url, "token_a": token_a}
        async with http.post(url, json=body, headers=hub.admin) as response:
            assert response.status == 502
            assert (await response.json())["status_code"] == 3001
        before_tokens = len(emsp.calls("/ocpi/2.3.0/credentials", "POST"))
        assert before_tokens == 1
        sent_token = emsp.calls("/ocpi/2.3.0/credentials", "POST")[0].json()["token"]
        async with http.get(hub.versions_url, headers=token_header(sent_token)) as r:
            assert r.status == 401  # the token handed out for the failed attempt is void
        platform = await admin_get(hub, http, f"/admin/platforms/{created['id']}")
        assert platform["state"] == "PENDING"
        async with http.get(hub.versions_url, headers=token_header(created["token_a"])) as r:
            assert r.status == 200

        emsp.credentials_handler = None
        async with http.post(url, json=body, headers=hub.admin) as response:
            assert response.status == 200


async def test_legacy_raw_token(hub: RunningHub, http: aiohttp.ClientSession):
    """A per-platform setting makes the hub send the raw token instead of base64."""
    async with FakePlatform("Old MSP", [EMSP], raw_token=True) as emsp:
        created = await hub.create_platform(http, "Old MSP")
        async with http.patch(
            f"{hub.url}/admin/platforms/{created['id']}",
            json={"raw_token": True},
            headers=hub.admin,
        ) as response:
            assert response.status == 200 and (await response.json())["raw_token"] is True
        token_a = emsp.issue_token_a()
        async with http.post(
            f"{hub.url}/admin/platforms/{created['id']}/connect",
            json={"versions_url": emsp.versions_url, "token_a": token_a},
            headers=hub.admin,
        ) as response:
            assert response.status == 200, await response.text()
        assert {r.headers["authorization"] for r in emsp.calls("/ocpi/")} == {f"Token {token_a}"}


async def test_admin_suspend(hub: RunningHub, http: aiohttp.ClientSession):
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        created = await registered(hub, http, cpo)
        parties = await admin_get(hub, http, "/admin/parties")
        assert parties[0]["status"] == "CONNECTED" and parties[0]["last_seen"].endswith("Z")
        async with http.delete(
            f"{hub.url}/admin/platforms/{created['id']}", headers=hub.admin
        ) as response:
            assert response.status == 200
            assert (await response.json())["state"] == "SUSPENDED"
        async with http.get(hub.versions_url, headers=cpo.hub_headers()) as r:
            assert r.status == 401
        parties = await admin_get(hub, http, "/admin/parties")
        assert parties[0]["status"] == "SUSPENDED"
        async with http.delete(f"{hub.url}/admin/platforms/nope", headers=hub.admin) as r:
            assert r.status == 404


async def test_suspended_party_may_register_again(hub: RunningHub, http: aiohttp.ClientSession):
    """A suspended registration never comes back; the party may join under a new one."""
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        first = await registered(hub, http, cpo)
        await credentials_call(hub, http, "DELETE", cpo.hub_token)
        second = await registered(hub, http, cpo)
        parties = await admin_get(hub, http, "/admin/parties")
        assert [(p["platform_id"], p["status"]) for p in parties] == [(second["id"], "CONNECTED")]
        assert first["id"] != second["id"]


async def test_registration_survives_hub_restart(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        async with hub_factory() as hub:
            await registered(hub, http, cpo)
        async with hub_factory() as restarted:
            status, body = await credentials_call(restarted, http, "GET", cpo.hub_token)
            assert status == 200 and body["data"]["hub_party_id"] == "NLHUB"
            parties = await admin_get(restarted, http, "/admin/parties")
            assert [(p["party_id"], p["status"]) for p in parties] == [("CPA", "CONNECTED")]


@pytest.mark.parametrize("count", [2, 3])
async def test_hub_processes_see_writes_at_once(
    hub_factory: HubFactory, http: aiohttp.ClientSession, count: int
):
    """Caches are per process: a token issued through one hub works on the others at once,
    and a token voided through one is refused by the others."""
    async with several(hub_factory, count) as hubs, FakePlatform("CPO Co", [CPO]) as cpo:
        for hub in hubs:
            async with http.get(hub.versions_url, headers=token_header("warm-up")) as r:
                assert r.status == 401  # each has loaded its snapshot before the writes below
        created = await hubs[0].create_platform(http, "CPO Co")
        answer = await cpo.register(http, hubs[1].versions_url, created["token_a"])
        assert answer["status_code"] == 1000
        for hub in hubs:
            async with http.get(hub.versions_url, headers=cpo.hub_headers()) as r:
                assert r.status == 200
        await credentials_call(hubs[-1], http, "DELETE", cpo.hub_token)
        for hub in hubs:
            async with http.get(hub.versions_url, headers=cpo.hub_headers()) as r:
                assert r.status == 401


async def test_the_hubs_own_party_is_nobodys(hub: RunningHub, http: aiohttp.ClientSession):
    """OCPI-from = the hub means the hub itself (broadcasts): no platform may claim it."""
    async with FakePlatform("Impostor", [("NL", "HUB", "OTHER"), CPO]) as impostor:
        created = await hub.create_platform(http, "Impostor")
        answer = await impostor.register(http, hub.versions_url, created["token_a"])
        assert answer["status_code"] == 2001 and "NL/HUB" in answer["status_message"]
        assert await admin_get(hub, http, "/admin/parties") == []
