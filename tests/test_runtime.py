"""Shutdown of one hub process: it ends, whatever its background tasks do."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from tests.conftest import HubFactory


async def test_stop_ends_even_when_a_task_swallows_its_cancel(
    hub_factory: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A library that loses a cancel (redis-py 8 under Python 3.11 did) must not keep the
    process from exiting: the task is logged and left behind after the grace period."""
    released = asyncio.Event()

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # a library that lost the cancel
            await asyncio.sleep(3600)
        await released.wait()

    async with hub_factory() as hub:
        hub.runtime.stop_grace = 0.2
        hub.runtime.spawn(stubborn())
        await asyncio.sleep(0)
        with caplog.at_level(logging.WARNING):
            await asyncio.wait_for(hub.stop(), 5)
    released.set()
    assert hub.task.done() and hub.task.exception() is None
    assert any("ignored its cancel" in record.getMessage() for record in caplog.records)
