"""Still-alive checks (mod_hub_client_info, "Still alive check").

A platform that has sent nothing for ALIVE_INTERVAL seconds gets a GET on its versions
endpoint: failure marks its parties OFFLINE, a later success (or any request from it) marks
them CONNECTED; either change is pushed as ClientInfo. A lease in Redis makes one process check
a platform at a time, and each platform's checks fall at its own point in the interval, so
checks are spread over time. A request the forwarder could not deliver (4003) triggers a check
at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import zlib

import aiohttp
import redis.asyncio as aioredis
from yarl import URL

from hub.background.tasks import cancel_and_wait
from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import ConnectionStatus, Version
from hub.onboarding.client import PlatformClient
from hub.registry.records import Platform, PlatformState
from hub.registry.registry import Registry
from hub.registry.store import Keys
from hub.registry.traffic import AliveCheck, Exchange, TrafficLog, elapsed_ms
from hub.registry.writer import RegistryWriter

log = get_logger(__name__)


class AliveChecker:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: Registry,
        writer: RegistryWriter,
        session: aiohttp.ClientSession,
        settings: Settings,
        traffic: TrafficLog,
    ) -> None:
        self.redis = redis
        self.traffic = traffic
        self.registry = registry
        self.writer = writer
        self.session = session
        self.interval = settings.alive_interval
        self.timeout = min(settings.forward_timeout, max(self.interval, 1.0))
        self._checking: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _offset(self, platform_id: str) -> float:
        """Where in the interval this platform's checks fall (stable, spread evenly)."""
        return (zlib.crc32(platform_id.encode()) % 1000) / 1000 * self.interval * 0.2

    async def run(self) -> None:
        tick = min(1.0, self.interval / 4)
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("still-alive round failed", error=str(exc))
            await asyncio.sleep(tick)

    async def _round(self) -> None:
        snapshot = await self.registry.snapshot()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(Keys.last_seen).hgetall(Keys.alive_checked)
            seen_raw, checked_raw = await pipe.execute()
        seen = {k.decode(): float(v) for k, v in seen_raw.items()}
        checked = {k.decode(): float(v) for k, v in checked_raw.items()}
        moment = time.time()
        for platform in snapshot.platforms.values():
            if platform.state != PlatformState.REGISTERED or not platform.versions_url:
                continue
            last = max(seen.get(platform.id, 0.0), checked.get(platform.id, 0.0))
            last = max(last, platform.updated.timestamp())
            if moment >= last + self.interval + self._offset(platform.id):
                self.check_soon(platform)

    def check_soon(self, platform: Platform) -> None:
        """Check in the background unless this process is checking it already."""
        if platform.id in self._checking:
            return
        self._checking.add(platform.id)
        # A fresh context: the check is not part of the request that may have asked for it,
        # so its log lines do not carry that request's ids.
        task = asyncio.get_running_loop().create_task(
            self.check(platform), context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def check(self, platform: Platform) -> None:
        lease = Keys.alive_lease(platform.id)
        ttl_ms = int((self.timeout + 5) * 1000)  # outlives one check, not a crashed process
        try:
            if not await self.redis.set(lease, "1", nx=True, px=ttl_ms):
                return  # another process is checking it right now
            try:
                await self._check(platform)
            finally:
                await self.redis.delete(lease)
        finally:
            self._checking.discard(platform.id)

    async def _check(self, platform: Platform) -> None:
        """GET the platform's versions endpoint: OFFLINE on failure, CONNECTED on success;
        the outcome goes to its still-alive history and the traffic log."""
        await self.redis.hset(Keys.alive_checked, platform.id, str(time.time()))
        client = PlatformClient(
            self.session, platform.token_b or "", platform.raw_token, self.timeout
        )
        url = platform.versions_url or ""
        hop = Exchange(
            at=time.time(),
            direction="out",
            method="GET",
            path=URL(url).path,
            platform=platform.id,
            module="versions",
        )
        began = time.perf_counter()
        try:
            await client.call("GET", url, list[Version])
        except OcpiError as exc:
            hop.error = exc.message  # not reached, whatever the reason: not available
            await self._checked(platform, hop, began, exc.message)
            cause = f"still-alive check failed: {exc.message}"
            await self.writer.set_status(platform.id, ConnectionStatus.OFFLINE, cause)
            return
        hop.ocpi_status, hop.http_status = 1000, 200
        await self._checked(platform, hop, began, "answered")
        cause = "still-alive check answered"
        await self.writer.set_status(platform.id, ConnectionStatus.CONNECTED, cause)

    async def _checked(self, platform: Platform, hop: Exchange, began: float, detail: str) -> None:
        hop.latency_ms = elapsed_ms(began)
        self.traffic.record(hop)
        check = AliveCheck(hop.at, hop.error is None, hop.latency_ms, detail)
        await self.traffic.checked(platform.id, check)

    async def stop(self, grace: float) -> None:
        await cancel_and_wait(self._tasks, grace)
