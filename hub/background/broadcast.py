"""Broadcast Push (transport_and_format, "Broadcast Push"): one push to the hub, delivered
to every connected party of the opposite role.

The hub answers the sender first, then delivers in the background through a Redis Stream
with a consumer group: a process that dies after answering leaves its entry pending, and
another process claims it once it has been idle for BROADCAST_CLAIM_IDLE seconds and delivers
to the receivers not yet recorded. Parties offline at delivery time are skipped (the spec says
not to queue for them; they re-sync with GET). Every delivery leaves a record: status code,
HTTP status, latency, error.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import msgspec
import redis.asyncio as aioredis

from hub.background.workqueue import Fields, WorkQueue
from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.body import BadJson, status_code_of
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.headers import routing_headers
from hub.ocpi.models import Role
from hub.ocpi.status import StatusCode
from hub.registry.policy import Policy
from hub.registry.records import Party, Platform, party_field
from hub.registry.registry import Registry
from hub.registry.store import Keys
from hub.routing.decide import broadcast_receivers
from hub.routing.forwarder import Forwarder
from hub.routing.modules import ModuleFacts, module_facts
from hub.routing.urls import join_url

log = get_logger(__name__)

GROUP = "delivery"
KEEP = 1000  # reports listed; older ones expire
REPORT_TTL = 7 * 24 * 3600
CONCURRENCY = 128  # deliveries in flight per broadcast (each platform's cap applies too)


class Job(msgspec.Struct, frozen=True):
    id: str
    module: str
    method: str
    suffix: str
    query: str
    body: bytes
    content_type: str | None
    sender: tuple[str, str]
    sender_role: Role
    sender_platform: str
    correlation_id: str
    accepted: datetime


class Delivery(msgspec.Struct, frozen=True):
    country_code: str
    party_id: str
    role: Role
    platform_id: str
    status_code: int | None
    http_status: int | None
    latency_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """1xxx: success, custom success codes (19xx) included."""
        return self.status_code is not None and 1000 <= self.status_code < 2000


class Report(msgspec.Struct):
    id: str
    module: str
    method: str
    path: str
    sender: str
    accepted: datetime
    receivers: int | None
    finished: datetime | None
    deliveries: list[Delivery]
    not_entitled: list[str] = []  # receivers left out for want of an agreement (not failures)


def may_broadcast(settings: Settings, facts: ModuleFacts, suffix: str) -> bool:
    """BROADCAST_MODULES entries: "module", or "module/resource" for one sub-resource
    (bookings/booking_locations: /{country_code}/{party_id}/booking_locations/...)."""
    parts = [p for p in suffix.split("/") if p]
    for entry in settings.broadcast_modules:
        module, _, resource = entry.partition("/")
        if module.lower() != facts.id:
            continue
        if not resource or (len(parts) > 2 and parts[2] == resource):
            return True
    return False


# KEYS[1]: the index; ARGV[1]: how many to keep; ARGV[2]: the report key prefix.
_TRIM = """
local old = redis.call('ZRANGE', KEYS[1], 0, -tonumber(ARGV[1]) - 1)
for _, id in ipairs(old) do
    local key = ARGV[2] .. id
    if redis.call('HEXISTS', key, 'finished') == 1 or redis.call('EXISTS', key) == 0 then
        redis.call('DEL', key, key .. ':deliveries')
        redis.call('ZREM', KEYS[1], id)
    end
end
return #old
"""

_job = msgspec.json.Decoder(Job)
_encode = msgspec.json.Encoder().encode
_names = msgspec.json.Decoder(list[str])
_delivery = msgspec.json.Decoder(Delivery)


class Broadcaster:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: Registry,
        forwarder: Forwarder,
        settings: Settings,
        policy: Policy,
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.forwarder = forwarder
        self.settings = settings
        self.policy = policy
        self.hub_party = (settings.country_code, settings.party_id)
        self._trim = redis.register_script(_TRIM)
        self.queue = WorkQueue(
            redis, Keys.broadcast_queue, GROUP, self._handle, settings.broadcast_claim_idle
        )

    # -- accepting ---------------------------------------------------------------------------

    async def accept(self, job: Job, queue: bool = True) -> None:
        """Record the broadcast and (unless delivered inline) queue it, in one round trip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(Keys.broadcast(job.id), "job", msgspec.json.encode(job))
            pipe.expire(Keys.broadcast(job.id), REPORT_TTL)
            pipe.zadd(Keys.broadcasts, {job.id: job.accepted.timestamp()})
            if queue:
                pipe.xadd(Keys.broadcast_queue, {"id": job.id})
            await pipe.execute()
        await self._forget_oldest()
        log.info("broadcast accepted", broadcast_id=job.id, module=job.module, method=job.method)

    async def _forget_oldest(self) -> None:
        """Beyond the newest KEEP, finished reports go at once (not after REPORT_TTL): at a
        few broadcasts a second they would otherwise hold millions of keys. One still being
        delivered stays until it finishes and a later broadcast trims it."""
        await self._trim(keys=[Keys.broadcasts], args=[KEEP, Keys.broadcast("")])

    # -- delivering --------------------------------------------------------------------------

    async def deliver(self, job: Job) -> list[Delivery]:
        """Deliver to every receiver not delivered to yet; returns this run's deliveries."""
        snapshot = await self.registry.refresh_if_stale()  # parties connected since it was cached
        candidates = broadcast_receivers(
            snapshot, module_facts(job.module), job.sender_platform, job.sender_role
        )
        targets = [
            t for t in candidates if self.policy.allows(snapshot, job.sender, t[0].code, job.module)
        ]
        left_out = sorted("/".join(t[0].code) for t in candidates if t not in targets)
        done = {k.decode() for k in await self.redis.hkeys(Keys.deliveries(job.id))}
        meta = {"receivers": len(targets), "not_entitled": _encode(left_out)}
        await self.redis.hset(Keys.broadcast(job.id), mapping=meta)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(party: Party, platform: Platform, endpoint: str) -> Delivery:
            async with slots:
                delivery = await self._deliver_one(job, party, platform, endpoint)
            async with self.redis.pipeline(transaction=True) as pipe:
                # Expires with each write: a broadcast given up on leaves no report forever.
                pipe.hset(Keys.deliveries(job.id), party_field(party.key), _encode(delivery))
                pipe.expire(Keys.deliveries(job.id), REPORT_TTL)
                await pipe.execute()
            return delivery

        results = await asyncio.gather(
            *(one(*t) for t in targets if party_field(t[0].key) not in done)
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(Keys.broadcast(job.id), "finished", now().isoformat())
            # The body is delivered; the report keeps what it shows, not the payload.
            pipe.hset(Keys.broadcast(job.id), "job", msgspec.json.encode(_slim(job)))
            pipe.expire(Keys.deliveries(job.id), REPORT_TTL)
            await pipe.execute()
        failed = sum(not d.ok for d in results)
        log.info("broadcast delivered", broadcast_id=job.id, receivers=len(targets), failed=failed)
        return list(results)

    async def _deliver_one(
        self, job: Job, party: Party, platform: Platform, endpoint: str
    ) -> Delivery:
        """Party to Party Broadcast Push: from = the hub, to = this receiver, a new
        X-Request-ID each, the same X-Correlation-ID; the same method, path and body."""
        # transport_and_format "Request format": a body goes with Content-Type application/json.
        content_type = job.content_type or ("application/json" if job.body else None)
        incoming = {"Content-Type": content_type} if content_type else {}
        out = self.forwarder.outgoing_headers(
            incoming,
            platform,
            job.correlation_id,
            routing_headers(self.hub_party, (party.country_code, party.party_id)),
        )
        url = join_url(endpoint, job.suffix, job.query)
        began = time.perf_counter()
        status_code = http_status = None
        error = None
        try:
            http_status, _, answer = await self.forwarder.fetch(
                platform, job.method, url, out, job.body, background=True
            )
            status_code = status_code_of(answer)
        except BadJson:
            status_code, error = StatusCode.HUB_ERROR, "answer is not an OCPI response"
        except OcpiError as exc:
            status_code, error = exc.status_code, exc.message
        except Exception as exc:  # a broken answer must not stop the other deliveries
            status_code, error = StatusCode.HUB_ERROR, str(exc) or type(exc).__name__
        return Delivery(
            country_code=party.country_code,
            party_id=party.party_id,
            role=party.role,
            platform_id=platform.id,
            status_code=int(status_code) if status_code is not None else None,
            http_status=http_status,
            latency_ms=round((time.perf_counter() - began) * 1000, 2),
            error=error,
        )

    # -- the work queue ----------------------------------------------------------------------

    async def _handle(self, fields: Fields) -> None:
        raw, finished = await self.redis.hmget(
            Keys.broadcast(fields[b"id"].decode()), ["job", "finished"]
        )
        # Gone (expired or trimmed), or finished by a process that died before it acked.
        if raw is not None and finished is None:
            await self.deliver(_job.decode(raw))

    # -- reports -----------------------------------------------------------------------------

    async def report(self, broadcast_id: str) -> Report | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(Keys.broadcast(broadcast_id)).hvals(Keys.deliveries(broadcast_id))
            meta, deliveries = await pipe.execute()
        if not meta:
            return None
        job = _job.decode(meta[b"job"])
        finished = meta.get(b"finished")
        receivers = meta.get(b"receivers")
        not_entitled = meta.get(b"not_entitled")
        return Report(
            id=job.id,
            module=job.module,
            method=job.method,
            path=job.suffix,
            sender="/".join(job.sender),
            accepted=job.accepted,
            receivers=int(receivers) if receivers is not None else None,
            not_entitled=_names.decode(not_entitled) if not_entitled else [],
            finished=datetime.fromisoformat(finished.decode()) if finished else None,
            deliveries=sorted(
                (_delivery.decode(d) for d in deliveries),
                key=lambda d: (d.country_code, d.party_id, d.role),
            ),
        )

    async def recent(self, count: int = 100) -> list[str]:
        return [i.decode() for i in await self.redis.zrevrange(Keys.broadcasts, 0, count - 1)]


def _slim(job: Job) -> Job:
    return msgspec.structs.replace(job, body=b"", query="")
