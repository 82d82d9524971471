"""Running a real hub for a test: uvicorn on 127.0.0.1, a real Redis, real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import uvicorn
from redis.exceptions import ResponseError

from hub.config import Settings, load_settings
from hub.web.app import create_app

ADMIN_TOKEN = "test-admin-token"
# The Redis the suite runs against: a standalone server unless CI points it at a cluster.
REDIS_MODE = os.environ.get("HUB_TEST_REDIS_MODE", "standalone")


def token_header(token: str, raw: bool = False) -> dict[str, str]:
    value = token if raw else base64.b64encode(token.encode()).decode()
    return {"Authorization": f"Token {value}"}


async def drained(redis: aioredis.Redis, stream: str, group: str, seconds: float = 10.0) -> None:
    """Until every entry of a work-queue stream has been handled: none left in the stream
    (a handled entry is XDEL'd with its XACK) and none pending in ``group``. Both are read in
    one transaction, so a handler still running keeps this waiting. A group not created yet
    (its consumers have not started) is not drained. Bounded in time."""
    deadline = asyncio.get_running_loop().time() + seconds
    state = "no group yet"
    while True:
        try:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xlen(stream)
                pipe.xpending(stream, group)
                length, pending = await pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        else:
            if length == 0 and pending["pending"] == 0:
                return
            state = f"{length} entries, {pending['pending']} pending in group {group}"
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{stream} not drained in {seconds:g} s: {state}")
        await asyncio.sleep(0.02)


class HubClient:
    """What a test needs to talk to a hub over HTTP, wherever that hub runs."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url
        self.admin_token = admin_token

    @property
    def versions_url(self) -> str:
        return f"{self.url}/ocpi/versions"

    def endpoint(self, module: str, role: str) -> str:
        return f"{self.url}/ocpi/2.3.0/{module}/{role.lower()}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def broadcasts_finished(self, http: aiohttp.ClientSession, seconds: float = 10.0) -> None:
        """Until every broadcast the hub lists (its newest hundred) is finished: each of its
        deliveries made, merged or given up. The barrier before asserting that a refused
        request reached no platform in the background: had the hub accepted it as a
        broadcast, it would be listed, and its deliveries made by then. Bounded."""

        async def finished() -> bool:
            async with http.get(f"{self.url}/admin/broadcasts", headers=self.admin) as response:
                assert response.status == 200, await response.text()
                return all(b["finished"] is not None for b in await response.json())

        await eventually(finished, seconds)

    async def create_platform(self, http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
        async with http.post(
            f"{self.url}/admin/platforms", json={"name": name}, headers=self.admin
        ) as response:
            assert response.status == 201, await response.text()
            return await response.json()


class RunningHub(HubClient):
    """A hub served in the test's own process (uvicorn on loopback)."""

    def __init__(self, settings: Settings, server: uvicorn.Server, task: asyncio.Task[Any]):
        super().__init__(settings.public_url, settings.admin_token)
        self.settings = settings
        self.server = server
        self.task = task
        self.app = server.config.app

    @property
    def runtime(self) -> Any:
        return self.app.runtime

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)


@contextlib.asynccontextmanager
async def running_hub(redis_url: str, data_dir: str, **overrides: Any) -> AsyncIterator[RunningHub]:
    """Start a hub on a free loopback port; settings are the defaults plus ``overrides``."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "public_url": "",
        "redis_url": redis_url,
        "redis_mode": REDIS_MODE,
        "data_dir": data_dir,
        "admin_token": ADMIN_TOKEN,
        "forward_timeout": 3.0,
        "outbound_allow": ("loopback",),  # fake platforms listen on 127.0.0.1
    }
    values.update(overrides)
    settings = load_settings(environ={}, **values)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    assert server.started, "hub did not start"
    hub = RunningHub(settings, server, task)
    try:
        yield hub
    finally:
        await hub.stop()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    """Wait for something the hub does in the background, asking ``check``; bounded."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while not await check():
        assert loop.time() < ends, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def several(
    factory: Callable[..., contextlib.AbstractAsyncContextManager[RunningHub]],
    count: int,
    **overrides: Any,
) -> AsyncIterator[list[RunningHub]]:
    """``count`` hub processes on one Redis, behaving as one hub."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(factory(**overrides)) for _ in range(count)]
