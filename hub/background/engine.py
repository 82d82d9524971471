"""The delivery engine: one worker per receiver platform across every hub process.

Each receiver platform's deliveries are leased to one process at a time (a Redis key with
an expiry, renewed while the process lives). Processes take an even share of the
platforms: a process joining takes leases as others give back the ones beyond their share,
and a process that dies stops renewing, so its leases pass to the others after
BROADCAST_CLAIM_IDLE seconds. One blocking read on the stream per process wakes its workers
when a push arrives from any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import random
import time
import uuid

import msgspec
import redis.asyncio as aioredis

from hub.background.delivery import Cursor, ReceiverWorker, Services
from hub.background.pushlog import stream_id
from hub.background.tasks import cancel_and_wait
from hub.logs import get_logger
from hub.registry.store import Keys

log = get_logger(__name__)

# KEYS: leases; ARGV[1]: owner, ARGV[2]: milliseconds. Returns the leases no longer held.
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('PEXPIRE', key, ARGV[2])
    else
        table.insert(lost, key)
    end
end
return lost
"""

# KEYS[1]: a lease; ARGV[1]: owner. Given back only by its holder.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Backlog(msgspec.Struct):
    """One receiver platform's delivery figures (GET /admin/deliveries)."""

    platform_id: str
    waiting: int  # pushes accepted that its worker has not gone through yet
    oldest_waiting_s: float | None  # age of the oldest of them
    delivered: int
    failed: int  # attempts that failed (a delivery may be tried several times)
    coalesced: int
    dropped: int
    skipped: int
    dead: int


class DeliveryEngine:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.redis: aioredis.Redis = services.redis
        self.lease = services.settings.broadcast_claim_idle
        self.tick = min(1.0, self.lease / 3)
        self.owner = uuid.uuid4().hex
        self.workers: dict[str, ReceiverWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._trimmed_at = 0.0
        self._releasing: set[asyncio.Task[None]] = set()
        self._early = asyncio.Event()  # a round before the tick: new receiver platforms
        self._platforms = 0  # receiver platforms at the last round

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch())
        try:
            while True:
                try:
                    await self._round()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("delivery leases unavailable", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.tick):
                        await self._early.wait()
                self._early.clear()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _round(self) -> None:
        """Renew, take and give back leases so this process holds its share."""
        moment = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(Keys.delivery_workers, {self.owner: moment})
            pipe.zremrangebyscore(Keys.delivery_workers, "-inf", moment - 3 * self.lease)
            pipe.zcard(Keys.delivery_workers)
            pipe.hkeys(Keys.delivery_cursors)
            _, _, processes, raw = await pipe.execute()
        platforms = [p.decode() for p in raw]
        self._platforms = len(platforms)
        for platform_id, task in list(self._tasks.items()):
            if task.done():
                self._ended(platform_id)
        held = list(self.workers)
        if held:
            keys = [Keys.delivery_lease(p) for p in held]
            lost = await self._renew(keys=keys, args=[self.owner, int(self.lease * 1000)])
            for key in lost:
                platform_id = key.decode().removeprefix(Keys.delivery_lease(""))
                self.workers[platform_id].lost = True
                self._tasks[platform_id].cancel()
                log.warning("delivery lease lost", platform_id=platform_id)
        share = math.ceil(len(platforms) / max(1, processes))
        active = [p for p, w in self.workers.items() if not (w.lost or w.retiring)]
        if len(active) > share:
            for platform_id in active[share:]:
                self.workers[platform_id].retiring = True
                self.workers[platform_id].wake.set()
        elif len(active) < share:
            free = [p for p in platforms if p not in self.workers]
            random.shuffle(free)
            await self._take(free[: share - len(active)])
        cursors = [w.cursor.entry for w in self.workers.values() if w.cursor is not None]
        if cursors:
            self.services.log.forget_through(min(cursors, key=stream_id))
        if moment - self._trimmed_at > 5:
            self._trimmed_at = moment
            await self._trim()

    async def _take(self, platforms: list[str]) -> None:
        if not platforms:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for platform_id in platforms:
                pipe.set(
                    Keys.delivery_lease(platform_id), self.owner, nx=True, px=int(self.lease * 1000)
                )
            taken = await pipe.execute()
        for platform_id, ok in zip(platforms, taken, strict=True):
            if ok:
                self._start(platform_id)

    def _start(self, platform_id: str) -> None:
        worker = ReceiverWorker(platform_id, self.owner, self.services)
        self.workers[platform_id] = worker
        # A fresh context: deliveries are not part of the request that started the engine.
        self._tasks[platform_id] = asyncio.get_running_loop().create_task(
            worker.run(), name=f"deliveries to {platform_id}", context=contextvars.Context()
        )

    def _ended(self, platform_id: str) -> None:
        worker = self.workers.pop(platform_id)
        task = self._tasks.pop(platform_id)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "delivery worker failed", platform_id=platform_id, error=str(task.exception())
            )
        if not worker.lost:
            release = asyncio.get_running_loop().create_task(self._give_back(platform_id))
            self._releasing.add(release)
            release.add_done_callback(self._releasing.discard)

    async def _give_back(self, platform_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._release(keys=[Keys.delivery_lease(platform_id)], args=[self.owner])

    async def _watch(self) -> None:
        """Wake this process's workers when any process accepts a push."""
        block = max(10, int(min(1.0, self.services.settings.redis_timeout / 2) * 1000))
        last = b"$"
        while True:
            try:
                got = await self.redis.xread({Keys.pushes: last}, count=1, block=block)
                if not got:
                    continue
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.xrevrange(Keys.pushes, count=1).hlen(Keys.delivery_cursors)
                    newest, platforms = await pipe.execute()
                last = newest[0][0] if newest else got[0][1][-1][0]
                self.notify(new_receivers=platforms != self._platforms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery wake-ups unavailable", error=str(exc))
                await asyncio.sleep(1.0)

    def notify(self, new_receivers: bool = False) -> None:
        """A push accepted here: this process's workers look at once, and a platform that
        never received before gets its worker now rather than at the next round."""
        for worker in self.workers.values():
            worker.wake.set()
        if new_receivers:
            self._early.set()

    async def _trim(self) -> None:
        """Pushes every receiver platform is done with leave the stream."""
        lowest = await self.redis.zrange(Keys.delivery_cursor_times, 0, 0, withscores=True)
        if lowest:
            await self.redis.xtrim(Keys.pushes, minid=f"{int(lowest[0][1])}-0")
        else:  # no receiver at all: keep only what a platform registering now might get
            horizon = int((time.time() - self.services.settings.delivery_max_age) * 1000)
            await self.redis.xtrim(Keys.pushes, minid=f"{max(0, horizon)}-0")

    async def backlog(self) -> list[Backlog]:
        """Per receiver platform: what waits, how old it is, and what was done."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(Keys.delivery_cursors).get(Keys.push_count)
            cursors_raw, count = await pipe.execute()
        cursors = {k.decode(): Cursor.parse(v) for k, v in cursors_raw.items()}
        ids = sorted(cursors)
        async with self.redis.pipeline(transaction=False) as pipe:
            for platform_id in ids:
                pipe.xrange(Keys.pushes, min=f"({cursors[platform_id].entry}", count=1)
                pipe.hgetall(Keys.delivery_stats(platform_id))
            answers = await pipe.execute()
        moment = time.time()
        rows = []
        for n, platform_id in enumerate(ids):
            nxt, stats = answers[2 * n], answers[2 * n + 1]
            oldest = None
            if nxt:
                oldest = round(max(0.0, moment - int(nxt[0][0].split(b"-")[0]) / 1000), 3)
            figures = {k.decode(): int(v) for k, v in stats.items()}
            rows.append(
                Backlog(
                    platform_id=platform_id,
                    waiting=max(0, int(count or 0) - cursors[platform_id].number),
                    oldest_waiting_s=oldest,
                    **{
                        f: figures.get(f, 0)
                        for f in ("delivered", "failed", "coalesced", "dropped", "skipped", "dead")
                    },
                )
            )
        return rows

    async def stop(self, grace: float) -> None:
        """Workers stop where they are; their leases are given back so that another
        process goes on at once (the cursor is where the last recorded batch left it)."""
        await cancel_and_wait(self._tasks.values(), grace)
        held = list(self.workers)
        self.workers.clear()
        self._tasks.clear()
        with contextlib.suppress(Exception):
            for platform_id in held:
                await self._release(keys=[Keys.delivery_lease(platform_id)], args=[self.owner])
            await self.redis.zrem(Keys.delivery_workers, self.owner)
