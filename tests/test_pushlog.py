"""The delivery workers' shared view of the pushes stream (hub/background/pushlog.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from hub.background.broadcast import Job, encode_job
from hub.background.pushlog import PushLog
from hub.ocpi.models import Role
from hub.registry.store import Keys


def job(n: int) -> Job:
    return Job(
        id=f"b{n}",
        module="locations",
        method="PATCH",
        suffix=f"/NL/CPA/LOC{n}",
        query="",
        body=b"{}",
        content_type="application/json",
        sender=("NL", "CPA"),
        sender_role=Role.CPO,
        sender_platform="p",
        correlation_id="c",
        accepted=datetime.now(UTC),
    )


async def add(redis: aioredis.Redis, n: int) -> str:
    entry = await redis.xadd(Keys.pushes, {"n": n, "job": encode_job(job(n))})
    return str(entry.decode())


async def test_every_push_accepted_before_a_read_is_in_it(redis: aioredis.Redis) -> None:
    log = PushLog(redis)
    first = await add(redis, 1)
    assert [e.number for e in await log.after("0-0", 10)] == [1]
    await add(redis, 2)
    await add(redis, 3)
    assert [e.number for e in await log.after(first, 10)] == [2, 3]
    assert [e.number for e in await log.after(first, 1)] == [2], "count caps the batch"
    assert [e.job.id for e in await log.after(first, 10)] == ["b2", "b3"]


async def test_forgotten_entries_are_read_from_redis_again(redis: aioredis.Redis) -> None:
    """A worker behind what the process still holds (one that just took a receiver over)
    reads Redis itself; the held stretch is unchanged."""
    log = PushLog(redis)
    ids = [await add(redis, n) for n in range(1, 5)]
    assert len(await log.after("0-0", 10)) == 4
    log.forget_through(ids[1])
    assert [e.number for e in log.entries] == [3, 4]
    assert [e.number for e in await log.after("0-0", 10)] == [1, 2, 3, 4]
    assert [e.number for e in await log.after(ids[2], 10)] == [4]
    assert [e.number for e in log.entries] == [3, 4]
