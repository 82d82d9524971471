"""The traffic log's batches (hub/registry/traffic.py): written once a second, or at once
when BATCH_MAX hops wait, no faster than once a second while Redis is away, and a batch
Redis refused written whole by the next write."""

from __future__ import annotations

import asyncio
import itertools
import time

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from hub.registry import traffic
from hub.registry.quality import MINUTE
from hub.registry.store import Keys
from hub.registry.traffic import BATCH_MAX, Exchange, TrafficFilter, TrafficLog
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


def out_hop(n: int) -> Exchange:
    return Exchange(
        at=time.time(), direction="out", method="GET", path=f"/cpo/locations/{n}",
        platform="cpo", sender="DE/MSA", receiver="NL/CPA", module="locations",
        http_status=200, ocpi_status=1000, latency_ms=12.5,
    )  # fmt: skip


async def test_a_batch_redis_refused_is_written_once_by_the_next_write(
    redis: aioredis.Redis,
) -> None:
    """A write Redis refuses (here: out of memory) leaves its hops and the quality and usage
    counts they add waiting, in front of what comes after: the next write carries each of
    them once, neither lost nor counted twice."""
    log = TrafficLog(redis, retention=3600, max_entries=200_000)
    for n in range(3):
        log.record(hop(n))
        log.record(out_hop(n))
    await redis.config_set("maxmemory", 1)  # the default policy, noeviction, refuses writes
    try:
        with pytest.raises(ResponseError, match="maxmemory"):
            await log.flush()
    finally:
        await redis.config_set("maxmemory", 0)
    log.record(hop(3))
    await log.flush()
    entries = await log.recent(TrafficFilter(), limit=100)
    assert [e.hop.path for e in reversed(entries)] == [
        *(h for n in range(3) for h in (f"/ocpi/2.3.0/locations/{n}", f"/cpo/locations/{n}")),
        "/ocpi/2.3.0/locations/3",
    ]
    day = (await log.quality("cpo"))[0]
    assert (day.attempts, day.availability) == (3, 1.0)
    usage = await log.usage(["DE/MSA", "NL/CPA"])
    assert (usage["DE/MSA"].requests_5m, usage["NL/CPA"].requests_5m) == (4, 3)


async def test_counts_waiting_for_redis_keep_the_newest_minutes_within_the_cap(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While Redis is away, the counts waiting for it are capped like the hops: beyond
    PENDING_MAX distinct counts, those of the two newest minutes stay."""
    monkeypatch.setattr(traffic, "PENDING_MAX", 10)
    log = TrafficLog(redis, retention=3600, max_entries=200_000)
    first = int(time.time() // MINUTE) - 10
    for minute in range(first, first + 6):
        for party in ("DE/MSA", "DE/MSB", "DE/MSC"):
            log.record(msgspec.structs.replace(hop(0), at=minute * MINUTE + 1, sender=party))
    log.count()  # 18 distinct counts, over the cap
    await log.flush()
    written = [m - first for m in range(first, first + 6) if await redis.exists(Keys.usage(m))]
    assert written == [4, 5]
