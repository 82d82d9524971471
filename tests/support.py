"""Running a real hub for a test: uvicorn on 127.0.0.1, a real Redis, real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn

from hub.config import Settings, load_settings
from hub.web.app import create_app

ADMIN_TOKEN = "test-admin-token"


def token_header(token: str, raw: bool = False) -> dict[str, str]:
    value = token if raw else base64.b64encode(token.encode()).decode()
    return {"Authorization": f"Token {value}"}


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
        return self.app.state.runtime

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
