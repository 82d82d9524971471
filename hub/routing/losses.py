"""What was lost translating objects between OCPI versions: logged, and counted per platform
and field for the admin API (``GET /admin/platforms/{id}/losses``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from hub import metrics
from hub.logs import get_logger
from hub.registry.store import Keys

log = get_logger(__name__)


class Losses:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def record(
        self, platform_id: str, module: str, source: str, target: str, lost: list[str]
    ) -> None:
        """``platform_id`` got ``module`` objects in ``target`` without the fields ``lost``."""
        if not lost:
            return
        metrics.TRANSLATION_LOSSES.labels(module, target).inc(len(lost))
        log.info(
            "lost in translation",
            platform_id=platform_id,
            module=module,
            source=source,
            target=target,
            fields=lost,
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in lost:
                pipe.hincrby(Keys.losses(platform_id), f"{module}: {name}", 1)
            await pipe.execute()

    async def of(self, platform_id: str) -> dict[str, int]:
        counts = await self.redis.hgetall(Keys.losses(platform_id))
        return {k.decode(): int(v) for k, v in sorted(counts.items())}
