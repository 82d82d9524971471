"""The OCPI transport layer (transport_and_format.asciidoc) as every module sees it."""

from __future__ import annotations

import json
import logging
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, register
from tests.support import RunningHub, token_header


async def test_missing_token_is_401_with_envelope(hub: RunningHub, http: aiohttp.ClientSession):
    """transport_and_format "Authorization header": missing header -> HTTP 401."""
    async with http.get(hub.versions_url) as response:
        assert response.status == 401
        body = await response.json()
    assert body["status_code"] == 2000
    assert "Authorization" in body["status_message"]
    assert body["timestamp"].endswith("Z")
    assert "data" not in body


async def test_unknown_token_is_401(hub: RunningHub, http: aiohttp.ClientSession):
    async with http.get(hub.versions_url, headers=token_header("nope")) as response:
        assert response.status == 401
        assert (await response.json())["status_message"] == "unknown credentials token"


async def test_token_accepted_base64_and_raw(hub: RunningHub, http: aiohttp.ClientSession):
    """The spec requires base64(utf8(token)); raw tokens of 2.1.1/2.2 peers are accepted too."""
    token_a = (await hub.create_platform(http, "CPO"))["token_a"]
    for raw in (False, True):
        async with http.get(hub.versions_url, headers=token_header(token_a, raw)) as response:
            assert response.status == 200, raw
    async with http.get(hub.versions_url, headers={"Authorization": f"Bearer {token_a}"}) as r:
        assert r.status == 401  # another scheme is not a credentials token


async def test_request_and_correlation_ids_echoed(hub: RunningHub, http: aiohttp.ClientSession):
    """transport_and_format "Unique message IDs": the response carries the request's ids."""
    headers = {"X-Request-ID": "r-1", "X-Correlation-ID": "c-1"}
    async with http.get(hub.versions_url, headers=headers) as response:
        assert response.headers["X-Request-ID"] == "r-1"
        assert response.headers["X-Correlation-ID"] == "c-1"


async def test_ids_generated_when_absent(hub: RunningHub, http: aiohttp.ClientSession):
    async with http.get(f"{hub.url}/no/such/path") as response:
        request_id = response.headers["X-Request-ID"]
        correlation_id = response.headers["X-Correlation-ID"]
    assert uuid.UUID(request_id).version == 4
    assert uuid.UUID(correlation_id).version == 4
    assert request_id != correlation_id


async def test_unknown_path_is_404_envelope(hub: RunningHub, http: aiohttp.ClientSession):
    async with http.get(f"{hub.url}/ocpi/2.3.0/nothing") as response:
        assert response.status == 404
        body = await response.json()
    assert body["status_code"] == 2000 and "/ocpi/2.3.0/nothing" in body["status_message"]


async def test_wrong_method_is_405_envelope(hub: RunningHub, http: aiohttp.ClientSession):
    async with http.delete(hub.versions_url) as response:
        assert response.status == 405
        body = await response.json()
    assert "DELETE" in body["status_message"]


async def test_body_over_limit_is_413(hub_factory: HubFactory, http: aiohttp.ClientSession):
    """Declared Content-Length and a chunked body over MAX_BODY_BYTES both answer 413."""
    async with hub_factory(max_body_bytes=1024) as hub:
        created = await hub.create_platform(http, "CPO")
        url = f"{hub.url}/ocpi/2.3.0/credentials"
        async with http.post(url, data=b"x" * 2048, headers=token_header(created["token_a"])) as r:
            assert r.status == 413
            assert "1024" in (await r.json())["status_message"]

        async def chunks():
            for _ in range(4):
                yield b"y" * 512

        async with http.post(url, data=chunks(), headers=token_header(created["token_a"])) as r:
            assert r.status == 413
        async with http.post(f"{hub.url}/admin/platforms", data=chunks(), headers=hub.admin) as r:
            assert r.status == 413
        async with http.post(
            f"{hub.url}/admin/platforms", data=b"z" * 4096, headers=hub.admin
        ) as r:
            assert r.status == 413
        async with http.get(f"{hub.url}/admin/platforms", headers=hub.admin) as r:
            assert len(await r.json()) == 1  # the refused request created nothing


async def test_unexpected_error_is_500_without_traceback(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis
):
    """A corrupt registry record is a fault inside the hub: 500/3000, nothing internal leaks."""
    await redis.hset("{hub}:platforms", "broken", b"{not json")
    await redis.incr("{hub}:registry:generation")
    await redis.publish("{hub}:registry", "broken")
    hub.runtime.registry.invalidate()
    async with http.get(hub.versions_url, headers=token_header("any")) as response:
        assert response.status == 500
        body = await response.json()
        assert response.headers["X-Request-ID"]
    assert body["status_code"] == 3000
    assert body["status_message"] == "internal error in the hub"
    assert "Traceback" not in str(body)


async def test_a_requests_log_context_ends_with_it(
    hub: RunningHub, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A platform id bound while serving one request is not on the next one's log lines,
    on the same connection too: after a body large enough that uvicorn pauses reading, it
    runs the connection's next request in the context of the one before."""
    async with (
        FakePlatform("CPO Co", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP Co", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        body = json.dumps({"id": "LOC1", "pad": "x" * 300_000}).encode()
        url = hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC1"
        headers = {**cpo.routed(("DE", "MSA")), "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=1)  # one connection for both requests
        async with aiohttp.ClientSession(connector=connector) as one:
            with caplog.at_level(logging.INFO):
                async with one.put(url, data=body, headers=headers) as response:
                    assert response.status == 200
                async with one.get(f"{hub.url}/healthz") as response:
                    assert response.status == 200
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    served = [line for line in lines if line.get("event") == "request"]
    put = next(line for line in served if line.get("path", "").startswith("/ocpi/"))
    health = next(line for line in served if line.get("path") == "/healthz")
    assert put.get("platform_id"), "the routed request's line names its platform"
    assert "platform_id" not in health
