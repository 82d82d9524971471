"""Shared fixtures: one real Redis server per session, a clean database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from hub.logs import configure_logging
from hub.redis_server import EmbeddedRedis
from hub.registry.client import connect
from tests.support import REDIS_MODE, RunningHub, running_hub


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("INFO", "console")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HUB_TEST_REDIS_URL (e.g. Debian's redis-server in CI) or the hub's own launcher."""
    external = os.environ.get("HUB_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # The hub's own client: test loops must stop when cancelled.
    client = connect(redis_url, mode=REDIS_MODE)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


HubFactory = Callable[..., AbstractAsyncContextManager[RunningHub]]


@pytest.fixture
def hub_factory(redis: aioredis.Redis, redis_url: str, tmp_path: Any) -> HubFactory:
    """Start extra hubs on the same Redis (several hub processes), each with overrides."""
    counter = iter(range(1000))

    def start(**overrides: Any) -> AbstractAsyncContextManager[RunningHub]:
        data_dir = tmp_path / f"hub{next(counter)}"
        return running_hub(redis_url, str(data_dir), **overrides)

    return start


@pytest.fixture
async def hub(hub_factory: HubFactory) -> AsyncIterator[RunningHub]:
    async with hub_factory() as running:
        yield running
