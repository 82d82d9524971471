"""The traffic log's batches (hub/registry/traffic.py): written once a second, or at once
when BATCH_MAX hops wait, and no faster than once a second while Redis is away."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import redis.asyncio as aioredis

from hub.registry import traffic
from hub.registry.store import Keys
from hub.registry.traffic import BATCH_MAX, Exchange, TrafficLog
from tests.support import eventually


def hop(n: int) -> Exchange:
    return Exchange(
        at=time.time(), direction="in", method="GET", path=f"/ocpi/2.3.0/locations/{n}",
        platform="emsp", sender="DE/MSA", http_status=200, ocpi_status=1000,
    )  # fmt: skip


async def test_a_full_batch_is_written_without_waiting_for_the_second(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy hub holds BATCH_MAX hops at most before writing them: here the once-a-second
    write is a minute away, and the batch is written all the same."""
    monkeypatch.setattr(traffic, "FLUSH_SECONDS", 60.0)
    log = TrafficLog(redis, retention=3600, max_entries=200_000)
    task = asyncio.ensure_future(log.run())
    try:
        await asyncio.sleep(0)  # the writer waits for its batch
        for n in range(BATCH_MAX):
            log.record(hop(n))

        async def written() -> bool:
            return int(await redis.get(Keys.traffic_hops) or 0) == BATCH_MAX

        await eventually(written, seconds=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_redis_away_is_tried_again_once_a_second_at_most(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full batch that cannot be written does not make the writer try again at once, in
    a loop: it waits FLUSH_SECONDS between attempts."""
    monkeypatch.setattr(traffic, "FLUSH_SECONDS", 0.2)
    log = TrafficLog(redis, retention=3600, max_entries=200_000)
    attempts: list[float] = []

    async def away() -> None:
        attempts.append(time.monotonic())
        log.record(hop(len(attempts)))  # hops keep coming meanwhile, onto a full batch
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(log, "flush", away)
    for n in range(2 * BATCH_MAX):
        log.record(hop(n))
    task = asyncio.ensure_future(log.run())
    try:

        async def tried_thrice() -> bool:
            return len(attempts) >= 3

        await eventually(tried_thrice, seconds=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    first = attempts[:3]  # (cancelling makes one more, at once: the hops of a stopping hub)
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert min(gaps) >= 0.2 * 0.9, gaps
