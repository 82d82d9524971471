"""The read side of the registry: this process's snapshot, kept current over pub/sub.

Each hub process keeps the whole registry as one ``Snapshot`` for the hot path: a request
costs no Redis round trip while the snapshot is current, and every process drops its
snapshot as soon as any process writes (``RegistryWriter`` bumps the generation and
publishes on ``Keys.channel``). While Redis cannot be reached, the last snapshot keeps
serving (tokens and parties as they were), and a reload is tried again every
``STALE_RETRY`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from hub.logs import get_logger
from hub.ocpi.auth import token_candidates
from hub.registry.client import StoreUnavailable
from hub.registry.records import (
    Agreement,
    PartyKey,
    PartyState,
    Platform,
    TokenKind,
    Transition,
    parse_party_field,
    party_field,
)
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys

log = get_logger(__name__)

HISTORY = 200  # transitions kept per party
MEMO = 100_000  # Authorization header values remembered per snapshot
STALE_RETRY = 1.0  # seconds between reload attempts while Redis is unavailable
TOUCH_INTERVAL = 1.0  # seconds between two last-seen writes for one platform

_platform = msgspec.json.Decoder(Platform)
_state = msgspec.json.Decoder(PartyState)
_transition = msgspec.json.Decoder(Transition)
_agreement = msgspec.json.Decoder(Agreement)

Authenticated = tuple[Platform, TokenKind]


class Registry:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._snapshot: Snapshot | None = None
        # Authorization header -> platform, for the current snapshot: a header seen before
        # costs one dict look-up (no base64, no hashing).
        self._by_header: dict[str, Authenticated] = {}
        self._last: Snapshot | None = None  # the newest loaded, current or not
        self._retry_at = 0.0  # while Redis is unavailable: no reload before this moment
        self._epoch = 0  # bumped by every invalidation
        self._loading: asyncio.Lock = asyncio.Lock()
        self._refresh: asyncio.Future[Snapshot] | None = None
        self._seen: dict[str, float] = {}

    @property
    def current(self) -> Snapshot | None:
        """The snapshot while it is current, without a wait: every request asks for it a
        few times, and ``or await self.snapshot()`` then costs nothing when it is there."""
        return self._snapshot

    async def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        async with self._loading:
            if self._snapshot is not None:
                return self._snapshot
            last = self._last
            if last is not None and time.monotonic() < self._retry_at:
                return last
            epoch = self._epoch
            try:
                loaded = await self._load()
            except StoreUnavailable as exc:
                if last is None:
                    raise
                self._retry_at = time.monotonic() + STALE_RETRY
                log.warning("registry unavailable: serving the last snapshot", error=str(exc))
                return last
            if epoch == self._epoch:  # no invalidation arrived while loading: keep it
                self._snapshot = loaded
            self._last = loaded
            return loaded

    async def recent(self) -> Snapshot:
        """The current snapshot, or the last one loaded even if a write made it stale: for
        questions a moment's staleness cannot spoil (which roles a party holds), without a
        reload after every write of a bulk import."""
        return self._snapshot or self._last or await self.snapshot()

    async def _load(self) -> Snapshot:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(Keys.generation).hgetall(Keys.platforms).hgetall(Keys.party_states)
            pipe.hgetall(Keys.agreements)
            generation, records, states, agreements = await pipe.execute()
        platforms = {key.decode(): _platform.decode(value) for key, value in records.items()}
        parties = {parse_party_field(k.decode()): _state.decode(v) for k, v in states.items()}
        by_id = {k.decode(): _agreement.decode(v) for k, v in agreements.items()}
        return Snapshot(int(generation or 0), platforms, parties, by_id)

    def invalidate(self) -> None:
        self._epoch += 1
        self._snapshot = None
        self._by_header = {}

    async def refresh_if_stale(self) -> Snapshot:
        """One round trip: reload when another process wrote since our snapshot was taken."""
        snapshot = await self.snapshot()
        generation = int(await self.redis.get(Keys.generation) or 0)
        if generation != snapshot.generation:
            self.invalidate()
            snapshot = await self.snapshot()
        return snapshot

    async def authenticate(self, header: str | None) -> Authenticated | None:
        """Authorization header -> platform.

        A token not in the snapshot waits for one check that the snapshot is current (a
        token issued through another process a moment ago works at once), shared by every
        miss that arrives meanwhile: no number of unknown tokens costs more than one Redis
        round trip at a time.
        """
        if not header:
            return None
        snapshot = self._snapshot or await self.snapshot()
        found = self._by_header.get(header)
        if found is not None:
            return found
        tokens = token_candidates(header)
        if not tokens:
            return None
        found = self._remember(header, snapshot, tokens)
        if found is not None:
            return found
        try:
            refreshed = await self._refreshed_after_now()
        except StoreUnavailable:
            return None  # answered from the snapshot we have
        return self._remember(header, refreshed, tokens)

    def _remember(
        self, header: str, snapshot: Snapshot, tokens: Sequence[str]
    ) -> Authenticated | None:
        for token in tokens:
            if found := snapshot.token(token):
                if snapshot is self._snapshot and len(self._by_header) < MEMO:
                    self._by_header[header] = found
                return found
        return None

    async def _refreshed_after_now(self) -> Snapshot:
        """A snapshot checked against Redis after this call began. One check runs at a time;
        callers that arrive while it runs wait for it, then share the next one."""
        current = self._refresh
        if current is not None and not current.done():
            await asyncio.wait([current])  # it may have begun before our token was issued
        upcoming = self._refresh
        if upcoming is None or upcoming.done() or upcoming is current:
            upcoming = self._refresh = asyncio.ensure_future(self.refresh_if_stale())
            upcoming.add_done_callback(_retrieve)
        return await asyncio.shield(upcoming)

    async def get(self, platform_id: str) -> Platform | None:
        return (await self.snapshot()).platforms.get(platform_id)

    def touch_due(self, platform_id: str) -> bool:
        """True at most once per TOUCH_INTERVAL per platform: time to record it was seen."""
        moment = time.time()
        if moment - self._seen.get(platform_id, 0.0) < TOUCH_INTERVAL:
            return False
        self._seen[platform_id] = moment
        return True

    async def touch(self, platform_id: str) -> None:
        """Record that a platform spoke to the hub (``last-seen``, for still-alive checks)."""
        await self.redis.hset(Keys.last_seen, platform_id, str(time.time()))

    async def last_seen(self) -> dict[str, float]:
        raw = await self.redis.hgetall(Keys.last_seen)
        return {key.decode(): float(value) for key, value in raw.items()}

    async def history(self, key: PartyKey) -> list[Transition]:
        raw = await self.redis.lrange(Keys.history(party_field(key)), 0, HISTORY - 1)
        return [_transition.decode(r) for r in raw]

    async def run_invalidation(self, ready: asyncio.Event | None = None) -> None:
        """Drop the snapshot whenever any process writes; reconnects until cancelled."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(Keys.channel)
                    self.invalidate()  # writes we missed while not subscribed
                    if ready is not None:
                        ready.set()
                    async for _message in pubsub.listen():
                        self.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: caches may be stale, start over
                self.invalidate()
                log.warning("registry invalidation channel lost", error=str(exc))
                await asyncio.sleep(0.5)


def _retrieve(future: asyncio.Future[Snapshot]) -> None:
    """A refresh whose waiters all left still has its error retrieved (and dropped)."""
    if not future.cancelled():
        future.exception()
