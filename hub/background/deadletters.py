"""Dead letters: every delivery the hub finally did not make, kept for the operator.

A capped Redis stream (the newest ``DEAD_LETTERS``): the delivery engine adds to it in the
same atomic step that records a batch, the admin API lists and filters it, and a replay
sends the receiver the latest state the hub holds of the object.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import redis.asyncio as aioredis

from hub.ocpi.models import Role
from hub.registry.store import Keys

DEAD_LETTERS = 10_000


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: str = ""  # the stream entry id, filled in when read
    country_code: str  # the receiver
    party_id: str
    role: Role
    platform_id: str
    module: str
    method: str
    path: str  # the object URL after the module's endpoint
    reason: str  # "failed", "refused", "stale" or "blocked" (an earlier one in its lane failed)
    error: str | None
    status_code: int | None
    http_status: int | None
    attempts: int
    accepted: datetime  # the newest push it carried
    at: datetime
    broadcasts: list[str]  # the pushes it carried, oldest first

    @property
    def receiver(self) -> str:
        return f"{self.country_code}/{self.party_id}"

    @property
    def party_key(self) -> tuple[str, str, Role]:
        return (self.country_code, self.party_id, self.role)


encode_letter = msgspec.json.Encoder().encode
_letter = msgspec.json.Decoder(DeadLetter)


class DeadLetters:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def list(
        self,
        receiver: str | None = None,
        module: str | None = None,
        older_than: float | None = None,
        newer_than: float | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        """Newest first; ``receiver`` is "CC/PID" or a platform id, ages are seconds."""
        receiver = receiver.upper() if receiver and "/" in receiver else receiver
        found: list[DeadLetter] = []
        moment = datetime.now().timestamp()
        for entry_id, fields in await self.redis.xrevrange(Keys.dead_letters):
            letter = _read(entry_id, fields)
            age = moment - letter.at.timestamp()
            if (
                (receiver is None or receiver in (letter.platform_id, letter.receiver))
                and (module is None or module.lower() == letter.module)
                and (older_than is None or age >= older_than)
                and (newer_than is None or age <= newer_than)
            ):
                found.append(letter)
                if len(found) >= limit:
                    break
        return found

    async def get(self, letter_id: str) -> DeadLetter | None:
        try:
            entries = await self.redis.xrange(Keys.dead_letters, letter_id, letter_id, count=1)
        except aioredis.ResponseError:  # not a stream id
            return None
        return _read(*entries[0]) if entries else None

    async def count(self) -> int:
        return int(await self.redis.xlen(Keys.dead_letters))


def _read(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    return msgspec.structs.replace(_letter.decode(fields[b"letter"]), id=entry_id.decode())
