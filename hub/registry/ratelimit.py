"""Per-platform rate limits: one token bucket per platform in Redis, shared by every hub
process, spent locally in batches.

The hot path costs no Redis round trip. Each process takes tokens from the shared bucket a
batch at a time (one atomic script: refill by the time elapsed on Redis's own clock, then
take up to a batch) and spends them in memory. When a quarter of its batch is left it tops
it up in the background, so a busy platform's requests do not wait for Redis at all; only a
process whose batch ran out waits, for one call per platform however many requests wait.
When the shared bucket is empty the process refuses that platform's requests locally until
a batch has had time to refill, so a platform over its limit costs no Redis calls either.

Bound. Tokens are only ever spent after the shared bucket granted them, so over any window of
T seconds a platform is admitted at most ``burst + per_second * T`` requests, plus the tokens
processes took before the window and had not spent yet: a process never holds more than one
batch. With N processes: ``burst + per_second * T + N * batch``.

Redis unavailable (``StoreUnavailable``, or a refill slower than ``REFILL_WAIT``): requests
are not failed for it. Each process falls back to a bucket of its own with the same limit (so
N processes admit up to N times the limit) and tries Redis again after ``STORE_RETRY``.

Refused requests are answered 429 after a hold, paced per platform (``RateLimited``): a
client that floods the hub gets its refusals no faster than REFUSALS_PER_SECOND however many
connections it opens, so refusing it takes little of the time other platforms need.
"""

from __future__ import annotations

import asyncio
import math
import time

import redis.asyncio as aioredis

from hub.logs import get_logger
from hub.registry.records import Platform, RateLimit
from hub.registry.store import Keys

log = get_logger(__name__)

MAX_BATCH = 100  # tokens one process takes from the shared bucket at most
REFILL_WAIT = 0.5  # seconds a request waits for the shared bucket before limiting locally
STORE_RETRY = 1.0  # seconds of local-only limiting after Redis failed
LOG_INTERVAL = 10.0  # seconds between two "rate limited" log lines of one platform
# Refused requests (see RateLimited): each waits HOLD seconds at least for its 429, one
# platform's are answered REFUSALS_PER_SECOND at most (per process), none waits over HOLD_MAX.
HOLD = 0.5
REFUSALS_PER_SECOND = 20.0
HOLD_MAX = 10.0

# KEYS[1] the bucket; ARGV per_second, burst, tokens wanted, expiry in ms.
# Returns {tokens granted, tokens left (a decimal string)}. TIME is Redis's clock, the same
# for every hub process; scripts that read it before writing need effects replication, the
# only kind Redis 7 and Valkey have (and one call to switch it on for Redis 5 and 6).
TAKE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
elseif now > at then
  tokens = tokens + (now - at) * rate
end
if tokens > burst then tokens = burst end
local granted = math.floor(math.min(want, tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {granted, string.format('%.6f', tokens)}
"""


class RateLimited(Exception):
    """A platform sent more than its limit allows: HTTP 429 with Retry-After, answered after
    ``hold`` seconds.

    Refusing costs the hub little, but not nothing: the request is read and parsed all the
    same. A client that sends its next request as soon as it has an answer would make the
    hub refuse as fast as it can, taking the time of every other platform's requests. So one
    platform's refusals are paced: each waits HOLD at least, and they are answered at most
    REFUSALS_PER_SECOND, however many connections the platform opens (up to
    REFUSALS_PER_SECOND * HOLD_MAX requests waiting; beyond that each waits HOLD_MAX). A
    client that honours Retry-After (1 s at least) loses nothing by it."""

    def __init__(self, limit: RateLimit, retry_after: int, hold: float = 0.0) -> None:
        self.limit = limit
        self.retry_after = retry_after  # whole seconds, at least 1
        self.hold = hold
        self.message = f"rate limit of {limit.describe()} exceeded for this platform"
        super().__init__(self.message)


def batch_size(limit: RateLimit) -> int:
    """Tokens a process takes at once: small next to the burst (N processes holding a batch
    each overshoot little) and to one second of refill, and never above MAX_BATCH."""
    return max(1, min(limit.burst // 4, int(limit.per_second // 10), MAX_BATCH))


def expiry_ms(limit: RateLimit) -> int:
    """A bucket left alone this long is full again, the same as no key at all (or, for a
    limit that takes longer than a day to refill, a day: it starts full again then)."""
    return math.ceil(min(limit.burst / limit.per_second, 86_400.0) * 1000) + 1000


class _Bucket:
    """This process's share of one platform's bucket."""

    __slots__ = (
        "ahead",
        "batch",
        "blocked_until",
        "limit",
        "local_at",
        "local_tokens",
        "logged_at",
        "pending",
        "pending_since",
        "refusal_at",
        "refused",
        "retry_at",
        "tokens",
    )

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.batch = batch_size(limit)
        self.ahead = self.batch // 4  # tokens left when the next batch is fetched
        self.tokens = 0  # taken from the shared bucket, not spent yet
        self.blocked_until = 0.0  # the shared bucket was empty: refuse until then
        self.retry_at = 0.0  # when the shared bucket has one token again
        self.pending: asyncio.Future[None] | None = None  # the one refill in flight
        self.pending_since = 0.0
        self.local_tokens = float(limit.burst)  # the fallback bucket while Redis is away
        self.local_at = time.monotonic()
        self.refused = 0  # requests refused since the last log line
        self.refusal_at = 0.0  # when the next refusal may be answered
        self.logged_at = -math.inf


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, per_second: float, burst: int) -> None:
        self.default = RateLimit(per_second=per_second, burst=burst)
        self._take = redis.register_script(TAKE)
        self._buckets: dict[str, _Bucket] = {}
        self._store_down_until = 0.0

    def limit_of(self, platform: Platform) -> RateLimit | None:
        """The platform's own limit, else the hub's; None when it has none."""
        limit = platform.rate_limit if platform.rate_limit is not None else self.default
        return None if limit.unlimited else limit

    async def admit(self, platform: Platform) -> None:
        """Return if the platform may send one more request now, else raise RateLimited.
        Costs a dict look-up while this process holds tokens for the platform."""
        limit = self.limit_of(platform)
        if limit is None:
            return
        bucket = self._buckets.get(platform.id)
        if bucket is None or (bucket.limit is not limit and bucket.limit != limit):
            bucket = self._buckets[platform.id] = _Bucket(limit)
        if bucket.tokens > 0:
            bucket.tokens -= 1
            if bucket.tokens == bucket.ahead and bucket.ahead and bucket.pending is None:
                now = time.monotonic()
                if now >= bucket.blocked_until:  # else the shared bucket is empty anyway
                    self._start_refill(platform.id, bucket, now)
            return
        await self._wait_for_token(platform.id, bucket)

    async def _wait_for_token(self, platform_id: str, bucket: _Bucket) -> None:
        # Ends: each refill grants tokens, or blocks the bucket, or marks Redis down.
        while True:
            if bucket.tokens > 0:
                bucket.tokens -= 1
                return
            now = time.monotonic()
            if now < bucket.blocked_until:
                raise self._refused(platform_id, bucket, bucket.retry_at - now)
            if now < self._store_down_until:
                return self._take_locally(platform_id, bucket, now)
            pending = bucket.pending or self._start_refill(platform_id, bucket, now)
            left = bucket.pending_since + REFILL_WAIT - now
            if left <= 0:  # Redis is slow to answer: do not hold requests for it
                return self._take_locally(platform_id, bucket, now)
            await asyncio.wait([pending], timeout=left)

    def _start_refill(self, platform_id: str, bucket: _Bucket, now: float) -> asyncio.Future[None]:
        bucket.pending_since = now
        bucket.pending = asyncio.ensure_future(self._refill(platform_id, bucket))
        return bucket.pending

    async def _refill(self, platform_id: str, bucket: _Bucket) -> None:
        """Top this process's tokens up to a batch from the shared bucket. Never raises: a
        failure means limiting locally for a while."""
        limit = bucket.limit
        want = max(1, bucket.batch - bucket.tokens)
        try:
            granted, left = await self._take(
                keys=[Keys.rate(platform_id)],
                args=[repr(limit.per_second), limit.burst, want, expiry_ms(limit)],
            )
            granted, left = int(granted), float(left)
        except Exception as exc:  # StoreUnavailable above all; whatever it is, keep serving
            self._store_down_until = time.monotonic() + STORE_RETRY
            log.warning(
                "rate limits: the store cannot be used, limiting in this process only",
                error=str(exc) or type(exc).__name__,
            )
            return
        finally:
            bucket.pending = None
        now = time.monotonic()
        if granted > 0:
            bucket.tokens += granted
            return
        # Empty: refuse locally until a whole batch has refilled (no Redis call meanwhile);
        # the requester may come back once one token has.
        bucket.retry_at = now + (1 - left) / limit.per_second
        bucket.blocked_until = now + max(0.0, bucket.batch - left) / limit.per_second

    def _take_locally(self, platform_id: str, bucket: _Bucket, now: float) -> None:
        """The same limit on this process's own bucket, while the shared one is away."""
        limit = bucket.limit
        tokens = bucket.local_tokens + (now - bucket.local_at) * limit.per_second
        bucket.local_tokens = min(float(limit.burst), tokens)
        bucket.local_at = now
        if bucket.local_tokens >= 1:
            bucket.local_tokens -= 1
            return
        raise self._refused(platform_id, bucket, (1 - bucket.local_tokens) / limit.per_second)

    def _refused(self, platform_id: str, bucket: _Bucket, wait: float) -> RateLimited:
        bucket.refused += 1
        now = time.monotonic()
        if now - bucket.logged_at >= LOG_INTERVAL:
            log.warning(
                "platform over its rate limit",
                platform_id=platform_id,
                limit=bucket.limit.describe(),
                refused=bucket.refused,
            )
            bucket.logged_at = now
            bucket.refused = 0
        answer_at = min(max(now + HOLD, bucket.refusal_at), now + HOLD_MAX)
        bucket.refusal_at = max(bucket.refusal_at, answer_at + 1 / REFUSALS_PER_SECOND)
        retry_after = max(1, math.ceil(wait - (answer_at - now)))
        return RateLimited(bucket.limit, retry_after, answer_at - now)
