"""Background work that must run once across every hub process, and survive one dying.

Entries go into a Redis Stream; every process consumes it in one consumer group, so each
entry goes to one process. An entry stays pending until its handler finishes; while a handler
runs, its process keeps the entry claimed, and an entry left idle (its process died) for
``claim_idle`` seconds is claimed and handled by another process. A process runs at most
``batch`` handlers at once, and an entry that failed ``MAX_ATTEMPTS`` times is dropped with
an error in the log rather than retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from hub.background.tasks import cancel_and_wait
from hub.logs import get_logger

log = get_logger(__name__)

Fields = dict[bytes, bytes]
Handler = Callable[[Fields], Awaitable[None]]
MAX_ATTEMPTS = 5


class WorkQueue:
    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        group: str,
        handle: Handler,
        claim_idle: float,
        batch: int = 16,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.handle = handle
        self.claim_idle = claim_idle
        self.batch = batch
        self.consumer = uuid.uuid4().hex
        self._running: set[asyncio.Task[None]] = set()

    async def _create_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: another process made it
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)

    async def run(self) -> None:
        """Consume until cancelled: entries other processes left idle first, then new ones."""
        await self._create_group()
        idle_ms = int(self.claim_idle * 1000)
        while True:
            free = self.batch - len(self._running)
            if free <= 0:
                await asyncio.sleep(0.05)
                continue
            try:
                _next, claimed, *_ = await self.redis.xautoclaim(
                    self.stream, self.group, self.consumer, idle_ms, "0-0", count=free
                )
                entries = await self._drop_failing([(i, f) for i, f in claimed if f])
                if not entries:
                    answer = await self.redis.xreadgroup(
                        self.group, self.consumer, {self.stream: ">"}, count=free, block=500
                    )
                    entries = answer[0][1] if answer else []
                for entry_id, fields in entries:
                    task = asyncio.create_task(self._process(entry_id, fields))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost the group (restarted without data)
                    await self._create_group()
                    continue
                log.warning("work queue unavailable", stream=self.stream, error=str(exc))
                await asyncio.sleep(1)
            except Exception as exc:
                log.warning("work queue unavailable", stream=self.stream, error=str(exc))
                await asyncio.sleep(1)

    async def _drop_failing(
        self, entries: list[tuple[bytes, Fields]]
    ) -> list[tuple[bytes, Fields]]:
        """Claimed entries that already failed MAX_ATTEMPTS times are given up on."""
        kept = []
        for entry_id, fields in entries:
            pending = await self.redis.xpending_range(
                self.stream, self.group, min=entry_id, max=entry_id, count=1
            )
            attempts = pending[0]["times_delivered"] if pending else 0
            if attempts <= MAX_ATTEMPTS:
                kept.append((entry_id, fields))
                continue
            log.error(
                "work given up after repeated failures", stream=self.stream, fields=str(fields)
            )
            await self._finish(entry_id)
        return kept

    async def _finish(self, entry_id: bytes) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def _process(self, entry_id: bytes, fields: Fields) -> None:
        heartbeat = asyncio.create_task(self._keep_claimed(entry_id))
        try:
            await self.handle(fields)
            await self._finish(entry_id)
        except Exception:
            log.exception("work failed; another process will retry it", stream=self.stream)
        finally:
            heartbeat.cancel()

    async def _keep_claimed(self, entry_id: bytes) -> None:
        """While handling, keep the entry from looking idle to other processes; a failed
        beat is retried at the next one rather than ending the heartbeat."""
        while True:
            await asyncio.sleep(self.claim_idle / 3)
            try:
                await self.redis.xclaim(
                    self.stream, self.group, self.consumer, 0, [entry_id], justid=True
                )
            except Exception as exc:
                log.warning("work heartbeat failed", stream=self.stream, error=str(exc))

    async def stop(self, grace: float) -> None:
        """Cancel the handlers; their entries stay pending for another process to claim."""
        await cancel_and_wait(self._running, grace)
