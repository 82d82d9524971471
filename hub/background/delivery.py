"""Delivering accepted pushes to one receiver platform, in order, merged, never stale.

One worker per receiver platform runs in the whole hub at a time (the engine's lease). It
reads the ``pushes`` stream after its cursor in batches; for each of the platform's parties
that receives a push it groups the pushes by object (a lane, hub/background/coalesce.py) and
folds each lane into the fewest deliveries. Lanes go out in parallel (at most
DELIVERY_CONCURRENCY), each lane's deliveries one after the other. The batch's outcomes,
its dead letters and the cursor move are then recorded in one atomic step, and only while
the lease is still this process's.

A process that dies mid-batch leaves the cursor where it was: the next owner reads the same
pushes again, together with every push accepted since, and folds them into the newest state;
nothing older than what was already delivered is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import redis.asyncio as aioredis

from hub import metrics
from hub.background.broadcast import REPORT_TTL, Delivery, Job
from hub.background.coalesce import Step, fold, lane_of
from hub.background.deadletters import DEAD_LETTERS, DeadLetter, encode_letter
from hub.background.pushlog import PushLog
from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.body import BadJson, status_code_of
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.headers import routing_headers
from hub.ocpi.models import ConnectionStatus, InterfaceRole
from hub.ocpi.status import StatusCode
from hub.ocpi.translation import Untranslatable, translate
from hub.registry.policy import Policy
from hub.registry.records import Party, PartyKey, Platform, party_field
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys
from hub.routing.crossing import level, translated
from hub.routing.decide import opposite_roles
from hub.routing.forwarder import Forwarder
from hub.routing.losses import Losses
from hub.routing.modules import module_facts
from hub.routing.urls import join_url

log = get_logger(__name__)

# Pushes taken at once. A worker that falls behind takes all that waits (up to this), so the
# more it has to catch up on, the more of it merges: a receiver needs one delivery per object
# per batch, however many pushes the batch holds.
BATCH = 5000
SENT_MEMORY = 100_000  # (party, object) digests kept per platform to drop identical pushes

# KEYS: lease, cursors, cursor times, stats, dead letters, then (report, deliveries) per
# broadcast in the batch. ARGV: owner, platform id, cursor, cursor ms, report TTL, now (ISO),
# stats (JSON), dead-letter cap, per-broadcast [counts, deliveries] (JSON), dead letters.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
for f, v in pairs(cjson.decode(ARGV[7])) do redis.call('HINCRBY', KEYS[4], f, v) end
for i = 10, #ARGV do
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 'letter', ARGV[i])
end
for i, update in ipairs(cjson.decode(ARGV[9])) do
    local report, deliveries = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
    if redis.call('EXISTS', report) == 1 then
        for f, v in pairs(update[1]) do redis.call('HINCRBY', report, f, v) end
        local any = false
        for f, v in pairs(update[2]) do
            redis.call('HSET', deliveries, f, v)
            any = true
        end
        if any then redis.call('EXPIRE', deliveries, ARGV[5]) end
        if redis.call('HDEL', report, 'p:' .. ARGV[2]) == 1 then
            if redis.call('HINCRBY', report, 'waiting', -1) <= 0 then
                redis.call('HSET', report, 'finished', ARGV[6])
            end
        end
    end
end
return 1
"""

_encode = msgspec.json.Encoder().encode

Receiving = tuple[Party, str, bool]  # a party, its endpoint URL, whether it is CONNECTED
Chosen = dict[tuple[object, ...], list[Receiving]]  # per kind of push, within one batch


@dataclass
class Cursor:
    """The last push this platform is done with: its stream id and its number."""

    entry: str
    number: int

    @classmethod
    def parse(cls, raw: bytes) -> Cursor:
        entry, number = raw.decode().split()
        return cls(entry, int(number))

    def __str__(self) -> str:
        return f"{self.entry} {self.number}"

    @property
    def ms(self) -> int:
        return int(self.entry.split("-")[0])


@dataclass
class Outcomes:
    """What one batch did, to be recorded at once."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    deliveries: dict[str, dict[str, str]] = field(default_factory=dict)
    letters: list[bytes] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)

    def seen(self, broadcast_id: str) -> None:
        self.counts.setdefault(broadcast_id, Counter())

    def count(self, jobs: list[Job], outcome: str) -> None:
        for job in jobs:
            self.counts[job.id][outcome] += 1
        self.stats[outcome] += len(jobs)

    def made(self, step: Step[Job], party: Party, delivery: Delivery) -> None:
        """A delivery was sent: its record goes to the newest push it carried."""
        self.deliveries.setdefault(step.newest.id, {})[party_field(party.key)] = _encode(
            delivery
        ).decode()


@dataclass
class Services:
    redis: aioredis.Redis
    registry: Registry
    forwarder: Forwarder
    settings: Settings
    policy: Policy
    hub_party: tuple[str, str]
    on_failing: Callable[[Platform], None]  # many failures in a row: check it is alive
    # Deliveries this process has in flight, all receivers together: beyond a few dozen the
    # event loop queues the platforms' own requests behind them (the storm bench answered
    # PATCHes in 0.5 s with 800 in flight), and waiting pushes merge instead.
    in_flight: asyncio.Semaphore
    log: PushLog
    losses: Losses


class ReceiverWorker:
    """Delivers to one platform while this process holds its lease."""

    def __init__(self, platform_id: str, owner: str, services: Services) -> None:
        self.platform_id = platform_id
        self.owner = owner
        self.services = services
        self.redis = services.redis
        self.settings = services.settings
        self.wake = asyncio.Event()
        self.retiring = False  # give the lease back after the batch in hand
        self.lost = False  # the lease went to another process
        self.cursor: Cursor | None = None
        self.slots = asyncio.Semaphore(self.settings.delivery_concurrency)
        self.failures_in_a_row = 0
        self.sent: OrderedDict[tuple[PartyKey, str], bytes] = OrderedDict()
        self._commit = self.redis.register_script(_COMMIT)

    async def run(self) -> None:
        raw = await self.redis.hget(Keys.delivery_cursors, self.platform_id)
        if raw is None:
            return  # forgotten: the platform is gone
        self.cursor = Cursor.parse(raw)
        while not (self.retiring or self.lost):
            self.wake.clear()
            try:
                more = await self._batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery batch failed", platform_id=self.platform_id, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            if more or self.retiring or self.lost:
                continue
            if await self._forget_if_gone():
                return
            try:
                async with asyncio.timeout(1.0):  # a missed wake-up costs a second at most
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def _forget_if_gone(self) -> bool:
        """A platform no longer registered, and caught up: its cursor goes."""
        snapshot = await self.services.registry.snapshot()
        if self.platform_id in snapshot.platforms:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(Keys.delivery_cursors, self.platform_id)
            pipe.zrem(Keys.delivery_cursor_times, self.platform_id)
            await pipe.execute()
        return True

    # -- one batch ---------------------------------------------------------------------------

    async def _batch(self) -> bool:
        """Deliver the next batch; True when more may be waiting."""
        assert self.cursor is not None
        entries = await self.services.log.after(self.cursor.entry, BATCH)
        if not entries:
            return False
        if await self.redis.get(Keys.delivery_lease(self.platform_id)) != self.owner.encode():
            self.lost = True
            return False
        snapshot = await self.services.registry.refresh_if_stale()
        outcomes = Outcomes()
        lanes: dict[tuple[PartyKey, str, str], tuple[Party, str, list[Job]]] = {}
        chosen: Chosen = {}
        for entry in entries:
            job = entry.job
            outcomes.seen(job.id)
            for party, endpoint, connected in self._receivers(snapshot, job, chosen):
                if not connected:
                    outcomes.count([job], "skipped")
                    continue
                lane = (party.key, job.module, lane_of(job.suffix))
                lanes.setdefault(lane, (party, endpoint, []))[2].append(job)
        platform = snapshot.platforms.get(self.platform_id)
        if lanes and platform is not None:
            await asyncio.gather(
                *(self._lane(platform, p, e, jobs, outcomes) for p, e, jobs in lanes.values())
            )
        cursor = Cursor(entries[-1].id, entries[-1].number)
        if not await self._record(outcomes, cursor):
            self.lost = True
            return False
        self.cursor = cursor
        return len(entries) == BATCH

    def _receivers(self, snapshot: Snapshot, job: Job, chosen: Chosen) -> list[Receiving]:
        """This platform's parties a push goes to: (party, endpoint, connected now)."""
        key = (job.module, job.sender, job.sender_role, job.sender_platform, job.target)
        found = chosen.get(key)
        if found is not None:
            return found
        found = chosen[key] = []
        platform = snapshot.platforms.get(self.platform_id)
        if platform is None or platform.id == job.sender_platform:
            return found
        endpoint = platform.endpoint(module_facts(job.module).id, InterfaceRole.RECEIVER)
        if endpoint is None:
            return found
        roles = opposite_roles(job.sender_role)
        for party in snapshot.parties_on(self.platform_id):
            if (
                party.role in roles
                and party.status in (ConnectionStatus.CONNECTED, ConnectionStatus.OFFLINE)
                and (job.target is None or party.key == job.target)
                and self.services.policy.allows(snapshot, job.sender, party.code, job.module)
            ):
                found.append((party, endpoint.url, party.status == ConnectionStatus.CONNECTED))
        return found

    async def _lane(
        self, platform: Platform, party: Party, endpoint: str, jobs: list[Job], outcomes: Outcomes
    ) -> None:
        """One object's deliveries to one party, in order; after a failure the rest of the
        lane is not sent (a PATCH must not overtake the PUT that failed)."""
        async with self.slots:
            failed: DeadLetter | None = None
            for step in fold(jobs):
                if failed is not None:
                    outcomes.count(step.pushes, "dead")
                    self._letter(outcomes, party, step, "blocked", failed.error, None, 0)
                    continue
                failed = await self._step(platform, party, endpoint, step, outcomes)

    async def _step(
        self, platform: Platform, party: Party, endpoint: str, step: Step[Job], outcomes: Outcomes
    ) -> DeadLetter | None:
        settings = self.settings
        if self._age(step) > settings.delivery_max_age:
            outcomes.count(step.pushes, "dead")
            self._letter(outcomes, party, step, "stale", "older than DELIVERY_MAX_AGE", None, 0)
            return None
        digest = _digest(step)
        sent_key = (party.key, step.suffix)
        if settings.delivery_drop_identical and self.sent.get(sent_key) == digest:
            outcomes.count(step.pushes, "dropped")
            return None
        body = await self._in_version_of(platform, step)
        if body is None:
            outcomes.count(step.pushes, "dropped")
            return None
        attempts = 0
        while True:
            attempts += 1
            delivery = await self._send(platform, party, endpoint, step, body)
            if delivery.ok:
                self.failures_in_a_row = 0
                outcomes.made(step, party, delivery)
                outcomes.count([step.newest], "delivered")
                outcomes.count(step.pushes[:-1], "coalesced")
                self._remember(sent_key, digest)
                return None
            outcomes.stats["failed"] += 1
            self._failed(platform)
            wait = settings.delivery_backoff * 2 ** (attempts - 1)
            if (
                not _retryable(delivery)
                or attempts > settings.delivery_retries
                or self._age(step) + wait > settings.delivery_max_age
                or not await self._still_connected(party)
            ):
                break
            await asyncio.sleep(wait)
        outcomes.made(step, party, delivery)
        outcomes.count(step.pushes, "dead")
        self.sent.pop(sent_key, None)
        reason = "refused" if not _retryable(delivery) else "failed"
        return self._letter(outcomes, party, step, reason, delivery.error, delivery, attempts)

    async def _in_version_of(self, platform: Platform, step: Step[Job]) -> bytes | None:
        """The step's body in the receiver's OCPI version; None when the object cannot
        exist there (left out for this receiver, and counted as a loss)."""
        job = step.newest
        if not translated(job.module, job.version, platform.version):
            return step.body
        try:
            document = msgspec.json.decode(step.body)
        except msgspec.DecodeError:
            return step.body
        source, target = job.version, platform.version or job.version
        at = level(InterfaceRole.RECEIVER, step.suffix)
        try:
            data, lost = translate(job.module, at, document, source, target)
        except Untranslatable as exc:
            lost, data = [f"an object ({exc})"], None
        await self.services.losses.record(platform.id, job.module, source, target, lost)
        return None if data is None else msgspec.json.encode(data)

    def _age(self, step: Step[Job]) -> float:
        return time.time() - step.newest.accepted.timestamp()

    async def _still_connected(self, party: Party) -> bool:
        snapshot = await self.services.registry.snapshot()
        current = snapshot.parties.get(party.key)
        return current is not None and current.status == ConnectionStatus.CONNECTED

    def _failed(self, platform: Platform) -> None:
        """DELIVERY_FAILURES_CHECK failures in a row: a still-alive check at once, which may
        mark the platform OFFLINE (and then its deliveries are skipped)."""
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.settings.delivery_failures_check:
            self.failures_in_a_row = 0
            self.services.on_failing(platform)

    def _remember(self, key: tuple[PartyKey, str], digest: bytes) -> None:
        self.sent[key] = digest
        self.sent.move_to_end(key)
        if len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)

    def _letter(
        self,
        outcomes: Outcomes,
        party: Party,
        step: Step[Job],
        reason: str,
        error: str | None,
        delivery: Delivery | None,
        attempts: int,
    ) -> DeadLetter:
        letter = DeadLetter(
            country_code=party.country_code,
            party_id=party.party_id,
            role=party.role,
            platform_id=self.platform_id,
            module=step.newest.module,
            method=step.method,
            path=step.suffix,
            reason=reason,
            error=error,
            status_code=delivery.status_code if delivery else None,
            http_status=delivery.http_status if delivery else None,
            attempts=attempts,
            accepted=step.newest.accepted,
            at=now(),
            broadcasts=[job.id for job in step.pushes],
        )
        outcomes.letters.append(encode_letter(letter))
        log.warning(
            "delivery not made",
            platform_id=self.platform_id,
            receiver=letter.receiver,
            module=letter.module,
            path=letter.path,
            reason=reason,
            error=error,
        )
        return letter

    async def _send(
        self, platform: Platform, party: Party, endpoint: str, step: Step[Job], body: bytes
    ) -> Delivery:
        """Party to Party Broadcast Push: from = the hub, to = this receiver, a new
        X-Request-ID each, the newest push's X-Correlation-ID; the push's method and path."""
        job = step.newest
        forwarder = self.services.forwarder
        # transport_and_format "Request format": a body goes with Content-Type application/json.
        content_type = job.content_type if body is step.body and not step.merged else None
        content_type = content_type or ("application/json" if body else None)
        out = forwarder.outgoing_headers(
            {"Content-Type": content_type} if content_type else {},
            platform,
            job.correlation_id,
            routing_headers(self.services.hub_party, party.code),
        )
        url = join_url(endpoint, step.suffix, step.query)
        status_code = http_status = None
        error = None
        async with self.services.in_flight:
            began = time.perf_counter()
            try:
                http_status, _, answer = await forwarder.fetch(
                    platform, step.method, url, out, body, background=True
                )
                status_code = status_code_of(answer)
            except BadJson:
                status_code, error = StatusCode.HUB_ERROR, "answer is not an OCPI response"
            except OcpiError as exc:
                status_code, error = exc.status_code, exc.message
            except Exception as exc:  # a broken answer must not stop the other deliveries
                status_code, error = StatusCode.HUB_ERROR, str(exc) or type(exc).__name__
        oldest = step.pushes[0].accepted.timestamp()
        return Delivery(
            country_code=party.country_code,
            party_id=party.party_id,
            role=party.role,
            platform_id=platform.id,
            status_code=int(status_code) if status_code is not None else None,
            http_status=http_status,
            latency_ms=round((time.perf_counter() - began) * 1000, 2),
            error=error,
            pushes=len(step.pushes),
            lag_ms=round((time.time() - oldest) * 1000, 2),
        )

    async def _record(self, outcomes: Outcomes, cursor: Cursor) -> bool:
        """The batch's outcomes and the cursor move, at once; False if the lease was lost
        meanwhile (then nothing is recorded and the new owner reads the batch again)."""
        ids = list(outcomes.counts)
        keys = [
            Keys.delivery_lease(self.platform_id),
            Keys.delivery_cursors,
            Keys.delivery_cursor_times,
            Keys.delivery_stats(self.platform_id),
            Keys.dead_letters,
        ]
        for broadcast_id in ids:
            keys += [Keys.broadcast(broadcast_id), Keys.deliveries(broadcast_id)]
        updates = [[dict(outcomes.counts[i]), outcomes.deliveries.get(i, {})] for i in ids]
        done = await self._commit(
            keys=keys,
            args=[
                self.owner,
                self.platform_id,
                str(cursor),
                cursor.ms,
                REPORT_TTL,
                now().isoformat(),
                _encode(dict(outcomes.stats)),
                DEAD_LETTERS,
                _encode(updates),
                *outcomes.letters,
            ],
        )
        if done:
            for outcome, count in outcomes.stats.items():
                metrics.DELIVERIES.labels(outcome).inc(count)
        return bool(done)


def _retryable(delivery: Delivery) -> bool:
    """No answer, HTTP 5xx, or a server or hub error (3xxx, 4xxx) may pass; a 2xxx is the
    receiver refusing this content, and sending it again would be refused again."""
    code = delivery.status_code
    return (
        delivery.http_status is None
        or delivery.http_status >= 500
        or code is None
        or not (1000 <= code < 3000)
    )


def _digest(step: Step[Job]) -> bytes:
    parts = (step.method, step.suffix, step.query)
    return hashlib.blake2b("\n".join(parts).encode() + b"\n" + step.body, digest_size=16).digest()
