"""Each platform's credentials events (register, update, version switch, unregister,
suspend, rotate): when, who started it, what came of it. Never a token. The newest
``KEEP`` per platform are kept, for ``GET /admin/platforms/{id}/events``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from hub.registry.store import Keys

KEEP = 200

Initiator = Literal["platform", "operator", "hub"]


class PlatformEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    at: datetime
    event: str  # register, update, version switch, unregister, suspend, rotate
    initiator: Initiator
    outcome: str  # "ok", or what went wrong
    version: str | None = None  # the OCPI version after the event
    detail: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(PlatformEvent).decode


class PlatformEvents:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def record(self, platform_id: str, event: PlatformEvent) -> None:
        key = Keys.platform_events(platform_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, _encode(event)).ltrim(key, 0, KEEP - 1)
            await pipe.execute()

    async def of(self, platform_id: str) -> list[PlatformEvent]:
        """Newest first."""
        return [
            _decode(raw)
            for raw in await self.redis.lrange(Keys.platform_events(platform_id), 0, -1)
        ]
