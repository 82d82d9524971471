"""The cross-process work queue on a real Redis: once per entry, takeover, no endless retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from hub.background.workqueue import MAX_ATTEMPTS, Fields, WorkQueue
from tests.support import drained


@contextlib.asynccontextmanager
async def consuming(*queues: WorkQueue) -> AsyncIterator[None]:
    """Run the queues' consumer loops for the block, then cancel them."""
    tasks = [asyncio.create_task(queue.run()) for queue in queues]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def waiting(redis: aioredis.Redis, consumers: int) -> None:
    """Until ``consumers`` clients are blocked in XREADGROUP, i.e. every consumer loop has
    started and waits for new entries; for at most 5 s."""
    for _ in range(250):
        if (await redis.info("clients"))["blocked_clients"] >= consumers:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {consumers} consumers waiting")


async def test_each_entry_runs_once_across_consumers(redis: aioredis.Redis) -> None:
    seen: list[bytes] = []

    async def handle(fields: Fields) -> None:
        seen.append(fields[b"n"])

    queues = [WorkQueue(redis, "{hub}:test-queue", "g", handle, 5.0) for _ in range(3)]
    async with consuming(*queues):
        await waiting(redis, 3)  # all three compete for the entries
        for n in range(30):
            await redis.xadd("{hub}:test-queue", {"n": str(n)})
        # Drained: every entry handled and deleted, none pending with any consumer, so no
        # consumer can be handed one again; a second run of an entry has already happened.
        await drained(redis, "{hub}:test-queue", "g")
    assert sorted(int(n) for n in seen) == list(range(30))
    assert await redis.xlen("{hub}:test-queue") == 0


async def test_failing_entry_is_given_up_after_max_attempts(redis: aioredis.Redis) -> None:
    attempts = 0

    async def always_fails(fields: Fields) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("cannot do this")

    queue = WorkQueue(redis, "{hub}:test-poison", "g", always_fails, 0.05)
    async with consuming(queue):
        await redis.xadd("{hub}:test-poison", {"n": "1"})  # the group starts at id 0
        await drained(redis, "{hub}:test-poison", "g")
    assert await redis.xlen("{hub}:test-poison") == 0, "dropped, not retried forever"
    assert attempts == MAX_ATTEMPTS


async def test_entry_cut_off_by_a_stop_is_finished_by_another_consumer(
    redis: aioredis.Redis,
) -> None:
    """A process that stops mid-handler leaves its entry pending, never acknowledged: another
    consumer claims it once it has been idle for ``claim_idle`` and handles it."""
    started = asyncio.Event()
    finished: list[bytes] = []

    async def hangs(fields: Fields) -> None:
        started.set()
        await asyncio.Event().wait()

    async def handle(fields: Fields) -> None:
        finished.append(fields[b"n"])

    stopping = WorkQueue(redis, "{hub}:test-stop", "g", hangs, 0.3)
    async with consuming(stopping):
        await redis.xadd("{hub}:test-stop", {"n": "7"})
        await asyncio.wait_for(started.wait(), 5)
    await stopping.stop(grace=1)
    assert await redis.xlen("{hub}:test-stop") == 1, "still there for another consumer"

    async with consuming(WorkQueue(redis, "{hub}:test-stop", "g", handle, 0.3)):
        await drained(redis, "{hub}:test-stop", "g")
    assert finished == [b"7"]
    assert await redis.xlen("{hub}:test-stop") == 0
