"""The pushes stream as one process's delivery workers read it: fetched and decoded once.

Every receiver platform's worker reads every push (to find those for its parties). Read from
Redis by each worker, a push would cross the network and be decoded once per receiver
platform; here each process holds the stretch of the stream its workers have not all gone
past yet, appends what is new with one read, and forgets what every worker is done with.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from hub.background.broadcast import Job, decode_job
from hub.registry.store import Keys

FETCH = 10_000  # entries read from Redis at once
HELD = 200_000  # entries held at most; a worker further behind reads Redis itself


def stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Entry:
    id: str  # the stream entry id
    number: int  # the push's number: the order the hub accepted it in
    job: Job

    @property
    def key(self) -> tuple[int, int]:
        return stream_id(self.id)


class PushLog:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.start: tuple[int, int] | None = None  # every entry after this one is held
        self.entries: list[Entry] = []
        self.keys: list[tuple[int, int]] = []
        self._fetch_began = 0.0  # when the last read of new entries was sent
        self._lock = asyncio.Lock()

    async def after(self, cursor: str, count: int) -> list[Entry]:
        """Up to ``count`` pushes after ``cursor``, oldest first: every push accepted
        before the call is among them, or among the pushes after them."""
        key = stream_id(cursor)
        asked = time.monotonic()
        async with self._lock:
            if self.start is None or key < self.start:
                found = await self._read(cursor, count)
                if self.start is None:
                    self.start = key
                    self._add(found)
                return found
            # Workers woken by one push queue here; the read sent after they asked serves
            # them all.
            if self._fetch_began < asked:
                self._fetch_began = time.monotonic()
                newest = self.entries[-1].id if self.entries else _text(self.start)
                self._add(await self._read(newest, FETCH))
        first = bisect.bisect_right(self.keys, key)
        return self.entries[first : first + count]

    def forget_through(self, cursor: str) -> None:
        """Every local worker is past ``cursor``: those entries go (and the oldest beyond
        HELD)."""
        if self.start is None:
            return
        key = max(stream_id(cursor), self.start)
        cut = bisect.bisect_right(self.keys, key)
        cut = max(cut, len(self.entries) - HELD)
        if cut > 0:
            self.start = self.keys[cut - 1]
            del self.entries[:cut], self.keys[:cut]

    def _add(self, found: list[Entry]) -> None:
        for entry in found:
            if not self.keys or entry.key > self.keys[-1]:
                self.entries.append(entry)
                self.keys.append(entry.key)

    async def _read(self, after: str, count: int) -> list[Entry]:
        raw = await self.redis.xrange(Keys.pushes, min=f"({after}", count=count)
        return [
            Entry(entry_id.decode(), int(fields[b"n"]), decode_job(fields[b"job"]))
            for entry_id, fields in raw
        ]


def _text(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"
