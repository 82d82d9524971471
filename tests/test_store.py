"""The hub's Redis client: a cancelled command ends its task, so every loop can be stopped."""

from __future__ import annotations

import asyncio
import random

from hub.registry.store import connect

ROUNDS = 300


async def test_cancelled_commands_always_end_their_task(redis_url: str) -> None:
    """Shutdown cancels the hub's background loops (work queues, still-alive checks) while
    they wait on Redis. A client that loses even one of those cancels keeps a loop running
    and the process never exits. redis-py 8 with its default socket timeout lost 27 of 60
    cancels in this loop."""
    client = connect(redis_url)
    rng = random.Random(7)

    stopped = False

    async def busy() -> None:
        while not stopped:
            async with client.pipeline(transaction=True) as pipe:
                pipe.get("{hub}:probe").hgetall("{hub}:probe-hash")
                await pipe.execute()
            await client.hgetall("{hub}:probe-hash")

    lost_at = None
    try:
        for round_ in range(ROUNDS):
            task = asyncio.create_task(busy())
            await asyncio.sleep(rng.random() * 0.003)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=1)
            if not done:  # the cancel was lost: let the loop end by itself
                lost_at = round_
                stopped = True
                await task
                break
    finally:
        await client.aclose()
    assert lost_at is None, f"cancel {lost_at + 1} of {ROUNDS} was lost"
