"""The admin API: onboarding platforms without ever showing a stored token."""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis

from tests.support import RunningHub


async def test_admin_needs_bearer_token(hub: RunningHub, http: aiohttp.ClientSession):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token x"}):
        async with http.get(f"{hub.url}/admin/platforms", headers=headers) as response:
            assert response.status == 401
            assert "Bearer" in (await response.json())["error"]


async def test_create_platform_issues_token_a(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis
):
    created = await hub.create_platform(http, "Charge Co")
    assert set(created) == {"id", "name", "token_a", "versions_url"}
    assert created["versions_url"] == hub.versions_url
    token_a = created["token_a"]
    assert len(token_a) >= 43  # 32 random bytes, base64url
    assert all(0x21 <= ord(c) <= 0x7E for c in token_a)
    other = await hub.create_platform(http, "Other Co")
    assert other["token_a"] != token_a and other["id"] != created["id"]

    stored = b"".join(
        [k + v for k, v in (await redis.hgetall("{hub}:platforms")).items()]
        + [await redis.dump(k) or b"" for k in await redis.keys("*")]
    )
    assert token_a.encode() not in stored, "token A must be stored only as a hash"


async def test_list_platforms_never_shows_tokens(hub: RunningHub, http: aiohttp.ClientSession):
    created = await hub.create_platform(http, "Charge Co")
    async with http.get(f"{hub.url}/admin/platforms", headers=hub.admin) as response:
        assert response.status == 200
        text = await response.text()
    assert created["token_a"] not in text
    assert "token_hashes" not in text and "token_b" not in text
    listed = await response.json()
    assert [(p["id"], p["name"], p["state"]) for p in listed] == [
        (created["id"], "Charge Co", "PENDING")
    ]


async def test_create_platform_validates_input(hub: RunningHub, http: aiohttp.ClientSession):
    url = f"{hub.url}/admin/platforms"
    async with http.post(url, data=b"{bad", headers=hub.admin) as response:
        assert response.status == 400
    async with http.post(url, json={"name": ""}, headers=hub.admin) as response:
        assert response.status == 422
        assert "name" in (await response.json())["error"]
    async with http.get(url, headers=hub.admin) as response:
        assert await response.json() == []
