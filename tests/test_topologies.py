"""The hub on Redis topologies beyond one server: a Sentinel-watched master failing over
while the hub routes and registers, and a Redis Cluster (the suites CI runs against one).

Marked ``topology``: they start Debian's redis-server (several of them), so they need it
installed; ``.ci/run`` installs it and runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from hub.registry.client import connect
from tests import redis_servers
from tests.fakes import FakePlatform, ocpi, register
from tests.support import REDIS_MODE, RunningHub, running_hub

pytestmark = [
    pytest.mark.topology,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
        reason="needs Debian's redis-server and redis-cli: apt-get install redis-server",
    ),
]
CPO, EMSP = ("NL", "CPA", "CPO"), ("DE", "MSA", "EMSP")


@pytest.fixture
def sentinel(tmp_path: Path):  # type: ignore[no-untyped-def]
    servers, url, ports = redis_servers.sentinel(tmp_path / "redis")
    try:
        yield url, ports
    finally:
        servers.stop()


async def _onboard(
    hub: RunningHub, http: aiohttp.ClientSession, platform: FakePlatform
) -> tuple[str, str, bool]:
    """Create ``platform`` (again while the hub answers 503: Redis failing over, as its
    Retry-After says) and register it once: its id, token A, and whether the hub
    confirmed the registration (1000) or answered 503 (then it may or may not stand)."""
    for _ in range(100):
        async with http.post(
            f"{hub.url}/admin/platforms", json={"name": platform.name}, headers=hub.admin
        ) as response:
            if response.status == 201:
                created = await response.json()
                break
            assert response.status == 503, await response.text()
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("the platform was never created")
    answer = await platform.register(http, hub.versions_url, created["token_a"])
    assert answer["status_code"] == 1000 or answer["http_status"] == 503, answer
    return created["id"], created["token_a"], answer["status_code"] == 1000


async def _state(hub: RunningHub, http: aiohttp.ClientSession, platform_id: str) -> str | None:
    async with http.get(f"{hub.url}/admin/platforms/{platform_id}", headers=hub.admin) as r:
        return (await r.json())["state"] if r.status == 200 else None


async def test_sentinel_failover_loses_no_registration(
    sentinel: tuple[str, list[int]], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A manual failover (SENTINEL FAILOVER) while the hub routes GETs and onboards
    platforms: every registration answered 1000 is in the new master, requests meet at
    most 503 with Retry-After meanwhile (never a 500), and the hub reconnects by itself."""
    url, (_, replica, *watchers) = sentinel
    async with (
        running_hub(
            url,
            str(tmp_path / "hub"),
            redis_mode="sentinel",
            redis_wait_replicas=1,
            redis_timeout=3.0,  # replicas get 1.5 s to confirm a registry change
        ) as hub,
        FakePlatform("CPO Co", [CPO]) as cpo,
        FakePlatform("MSP Co", [EMSP]) as emsp,
        contextlib.AsyncExitStack() as stack,
    ):
        cpo.handler = lambda received, request: _answer(ocpi({"id": "LOC1"}))
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        answers: list[int] = []
        stop, failed_over = asyncio.Event(), asyncio.Event()

        async def route() -> None:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                url = hub.endpoint("locations", "SENDER") + "/LOC1"
                async with http.get(url, headers=emsp.routed(CPO[:2])) as response:
                    answers.append(response.status)
                    if response.status == 503:
                        assert response.headers["Retry-After"] == "1"
                await asyncio.sleep(0.01)

        async def onboard() -> list[tuple[FakePlatform, str, str, bool]]:
            """Platforms one after the other, before, during and after the failover."""
            done, after = [], 0
            for n in range(60):
                platform = await stack.enter_async_context(
                    FakePlatform(f"MSP {n}", [("DE", f"M{n:02d}", "EMSP")])
                )
                done.append((platform, *await _onboard(hub, http, platform)))
                after += failed_over.is_set()
                if after == 3:
                    return done
            raise AssertionError("the failover did not end while platforms were onboarded")

        routing = asyncio.create_task(route())
        onboarding = asyncio.create_task(onboard())
        await asyncio.sleep(0)
        watcher = aioredis.Redis(port=watchers[0])
        assert await watcher.execute_command("SENTINEL", "FAILOVER", "hub")
        deadline = time.monotonic() + 30
        while int((await watcher.sentinel_get_master_addr_by_name("hub"))[1]) != replica:
            assert time.monotonic() < deadline, "no failover"
            await asyncio.sleep(0.05)
        failed_over.set()
        await watcher.aclose()
        onboarded = await onboarding
        before = len(answers)
        while len(answers) < before + 50:  # routing goes on on the new master
            assert not routing.done(), "routing stopped"
            await asyncio.sleep(0.05)
        stop.set()
        await routing

        assert set(answers) <= {200, 503}, sorted(set(answers))
        assert answers[-50:] == [200] * 50
        new_master = connect(f"redis://127.0.0.1:{replica}")
        try:
            role = await new_master.execute_command("ROLE")
            assert role[0] == b"master"
            stored = await new_master.hgetall("{hub}:platforms")
        finally:
            await new_master.aclose()
        confirmed = [platform_id for _, platform_id, _, ok in onboarded if ok]
        assert {i.encode() for i in confirmed} <= set(stored)  # none of them lost
        # A registration answered 503 either stood or left token A as it was: once Redis
        # has failed over, it is PENDING with token A valid again, or REGISTERED.
        for platform, platform_id, token_a, ok in onboarded:
            if not ok and await _state(hub, http, platform_id) == "PENDING":
                answer = await platform.register(http, hub.versions_url, token_a)
                assert answer["status_code"] == 1000, answer
        states = [await _state(hub, http, platform_id) for _, platform_id, _, _ in onboarded]
        assert states == ["REGISTERED"] * len(onboarded)


async def _answer(response: Any) -> Any:
    return response


async def test_cluster_has_three_masters_and_the_hub_keys_share_one_slot(
    redis: aioredis.Redis, hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """Run by CI against its three-master Redis Cluster (HUB_TEST_REDIS_MODE=cluster):
    the suites ran there for real, and every key the hub wrote carries the ``{hub}`` hash
    tag, so its transactions and scripts stay in one slot."""
    if REDIS_MODE != "cluster":
        pytest.skip("the suite runs against a standalone Redis (HUB_TEST_REDIS_MODE)")
    masters = [n for n in (await redis.cluster_nodes()).values() if "master" in n["flags"]]
    assert len(masters) == 3
    async with FakePlatform("CPO Co", [CPO]) as cpo:
        await register(hub, http, cpo)
    keys = [key async for key in redis.scan_iter("*")]
    assert keys and all(key.startswith(b"{hub}:") for key in keys)
    assert {redis.keyslot(key) for key in keys} == {redis.keyslot("{hub}")}
