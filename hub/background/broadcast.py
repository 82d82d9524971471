"""Broadcast Push (transport_and_format, "Broadcast Push"): one push to the hub, delivered
to every connected party of the opposite role.

The hub answers the sender once the push is recorded: one entry in the ``pushes`` stream,
numbered in the order the hub accepted it, and its report. The delivery engine
(hub/background/engine.py) then delivers it to each receiver platform in that order. The
latest state of every pushed object is kept as well (``latest``), so that an operator can
bring a receiver that missed it up to date (a dead letter's replay).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import msgspec
import redis.asyncio as aioredis

from hub import metrics
from hub.background.coalesce import fold, lane_of, segments
from hub.background.deadletters import DeadLetter
from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.envelope import now
from hub.ocpi.headers import new_message_id
from hub.ocpi.models import VERSION, Role
from hub.registry.client import StoreUnavailable
from hub.registry.policy import Policy
from hub.registry.records import Party, PartyKey, Platform
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys
from hub.routing.decide import broadcast_receivers
from hub.routing.modules import ModuleFacts, module_facts

log = get_logger(__name__)

Receiver = tuple[Party, Platform, str]  # the party, its platform, the module endpoint

KEEP = 1000  # reports listed; older ones expire
REPORT_TTL = 7 * 24 * 3600
LATEST_TTL = 7 * 24 * 3600  # how long the hub holds an object's state for a replay
LATEST_FOLD = 16  # pushes kept per object before they are folded into fewer


class Job(msgspec.Struct, frozen=True):
    """One accepted push, as the delivery engine reads it from the stream."""

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
    target: PartyKey | None = None  # a replay: one receiver only
    version: str = VERSION  # the OCPI version the sender pushed in


class Delivery(msgspec.Struct, frozen=True):
    """One request the hub sent a receiver; ``pushes`` > 1 when it carried merged pushes."""

    country_code: str
    party_id: str
    role: Role
    platform_id: str
    status_code: int | None
    http_status: int | None
    latency_ms: float
    error: str | None = None
    pushes: int = 1
    lag_ms: float = 0.0  # from accepting the oldest push it carries to the answer

    @property
    def ok(self) -> bool:
        """1xxx: success, custom success codes (19xx) included."""
        return self.status_code is not None and 1000 <= self.status_code < 2000


# What became of one push for one receiver: exactly one of these.
OUTCOMES = ("delivered", "coalesced", "dropped", "skipped", "dead")


class BroadcastCounts(msgspec.Struct, kw_only=True):
    """A broadcast push and what became of it, counted per receiver."""

    id: str
    module: str
    method: str
    path: str
    sender: str
    accepted: datetime
    receivers: int | None
    finished: datetime | None
    not_entitled: list[str] = []  # receivers left out for want of an agreement (not failures)
    delivered: int = 0  # sent and answered 1xxx
    coalesced: int = 0  # merged into a later delivery to the same receiver
    dropped: int = 0  # identical to what the receiver was last sent
    skipped: int = 0  # the receiver was OFFLINE
    dead: int = 0  # not made: failed, refused or too old (see the dead letters)


class Summary(BroadcastCounts, kw_only=True):
    """A report without its deliveries, and how many of them failed."""

    failed: int = 0


class Report(BroadcastCounts, kw_only=True):
    deliveries: list[Delivery]

    def summary(self) -> Summary:
        counts = {f: getattr(self, f) for f in BroadcastCounts.__struct_fields__}
        return Summary(**counts, failed=sum(not d.ok for d in self.deliveries))


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


# KEYS: pushes, push count, report, report index, latest state, cursors, cursor times,
# registry generation. ARGV: job, slim job, accepted (unix s), report TTL,
# "reset"/"append"/"", latest TTL, receivers, not entitled (JSON), broadcast id, now (ISO),
# the registry generation the receivers were chosen at, then the receiver platform ids.
# Refused (-1) when the registry changed since: the receivers are chosen again. A receiver
# platform without a cursor starts just before this push, so nothing accepted for it is
# missed however late its first delivery worker starts. Returns the pushes the object's
# latest state now holds, and how many receiver platforms got their first cursor. Reports
# beyond the newest KEEP go in the same step.
_FORGET = """
local function forget(index, keep, prefix)
    local old = redis.call('ZRANGE', index, 0, -keep - 1)
    for _, id in ipairs(old) do
        local key = prefix .. id
        redis.call('DEL', key, key .. ':deliveries')
        redis.call('ZREM', index, id)
    end
    return #old
end
"""
_ACCEPT = (
    _FORGET
    + """
if (redis.call('GET', KEYS[8]) or '0') ~= ARGV[11] then return {-1, 0} end
local n = redis.call('INCR', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local before = '0-0'
if #last > 0 then before = last[1][1] end
local id = redis.call('XADD', KEYS[1], '*', 'n', n, 'job', ARGV[1])
local platforms = #ARGV - 11
redis.call('HSET', KEYS[3], 'job', ARGV[2], 'n', n, 'entry', id, 'receivers', ARGV[7],
           'left_out', ARGV[8], 'waiting', platforms)
if platforms == 0 then redis.call('HSET', KEYS[3], 'finished', ARGV[10]) end
local started = 0
for i = 12, #ARGV do
    redis.call('HSET', KEYS[3], 'p:' .. ARGV[i], 1)
    if redis.call('HSETNX', KEYS[6], ARGV[i], before .. ' ' .. (n - 1)) == 1 then
        redis.call('ZADD', KEYS[7], tonumber(string.match(before, '^(%d+)')), ARGV[i])
        started = started + 1
    end
end
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[9])
local kept = 0
if ARGV[5] ~= '' then
    if ARGV[5] == 'reset' then redis.call('DEL', KEYS[5]) end
    kept = redis.call('RPUSH', KEYS[5], ARGV[1])
    redis.call('EXPIRE', KEYS[5], ARGV[6])
end
forget(KEYS[4], KEEP, string.sub(KEYS[3], 1, #KEYS[3] - #ARGV[9]))
return {kept, started}
""".replace("KEEP", str(KEEP))
)

# The same trim alone. KEYS[1]: the index; ARGV[1]: how many to keep; ARGV[2]: the report
# key prefix.
_TRIM = _FORGET + "return forget(KEYS[1], tonumber(ARGV[1]), ARGV[2])\n"

encode_job = msgspec.msgpack.Encoder().encode
decode_job = msgspec.msgpack.Decoder(Job).decode
_encode = msgspec.json.Encoder().encode


_names = msgspec.json.Decoder(list[str])
_delivery = msgspec.json.Decoder(Delivery)


class Broadcaster:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: Registry,
        settings: Settings,
        policy: Policy,
        notify: Callable[[bool], None],
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.settings = settings
        self.policy = policy
        # On every push: this process's delivery workers look at once (and, when a receiver
        # platform got its first cursor, the engine starts a worker for it).
        self.notify = notify
        self._chosen_at: Snapshot | None = None
        self._chosen: dict[tuple[str, str, Role], list[Receiver]] = {}
        self._accept = redis.register_script(_ACCEPT)

    # -- accepting ---------------------------------------------------------------------------

    async def accept(self, job: Job, snapshot: Snapshot, remember: bool = True) -> None:
        """Record the push, its report and (``remember``) the object's latest state, in one
        atomic step: a push the sender was told about is never half recorded."""
        lane = lane_of(job.suffix)
        state = ""
        if remember:
            root = job.method in ("PUT", "DELETE") and len(segments(job.suffix)) <= 3
            state = "reset" if root else "append"
        for _ in range(5):
            receivers, left_out = self._receivers(job, snapshot)
            kept, started = await self._accept(
                keys=[
                    Keys.pushes,
                    Keys.push_count,
                    Keys.broadcast(job.id),
                    Keys.broadcasts,
                    Keys.latest(job.module, lane),
                    Keys.delivery_cursors,
                    Keys.delivery_cursor_times,
                    Keys.generation,
                ],
                args=[
                    encode_job(job),
                    encode_job(_slim(job)),
                    job.accepted.timestamp(),
                    REPORT_TTL,
                    state,
                    LATEST_TTL,
                    len(receivers),
                    _encode(left_out),
                    job.id,
                    now().isoformat(),
                    snapshot.generation,
                    *sorted({platform.id for _, platform, _ in receivers}),
                ],
            )
            if int(kept) >= 0:
                break
            snapshot = await self.registry.refresh_if_stale()  # parties connected meanwhile
        else:
            raise StoreUnavailable("the registry kept changing while a broadcast was accepted")
        self.notify(bool(started))
        metrics.BROADCASTS.labels(job.module).inc()
        if int(kept) > LATEST_FOLD:
            await self._fold_latest(job.module, lane)
        log.info(
            "broadcast accepted",
            broadcast_id=job.id,
            module=job.module,
            method=job.method,
            receivers=len(receivers),
        )

    def _receivers(self, job: Job, snapshot: Snapshot) -> tuple[list[Receiver], list[str]]:
        """The parties a push goes to, and those left out for want of an agreement."""
        if snapshot is not self._chosen_at:  # candidates depend on the registry only
            self._chosen_at, self._chosen = snapshot, {}
        key = (job.module, job.sender_platform, job.sender_role)
        candidates = self._chosen.get(key)
        if candidates is None:
            facts = module_facts(job.module)
            candidates = self._chosen[key] = broadcast_receivers(
                snapshot, facts, job.sender_platform, job.sender_role
            )
        if job.target is not None:
            candidates = [c for c in candidates if c[0].key == job.target]
        if self.policy.open:
            return candidates, []
        receivers = [
            c for c in candidates if self.policy.allows(snapshot, job.sender, c[0].code, job.module)
        ]
        return receivers, sorted("/".join(c[0].code) for c in candidates if c not in receivers)

    async def replay(self, letter: DeadLetter, snapshot: Snapshot) -> list[str]:
        """Send the dead letter's receiver the latest state the hub holds of its object, as
        pushes for that receiver only, in order behind anything already on its way to it.
        Returns the new pushes' ids (none when the hub holds no state of the object)."""
        ids = []
        for job in await self.latest(letter.module, lane_of(letter.path)):
            replayed = msgspec.structs.replace(
                job,
                id=uuid.uuid4().hex,
                correlation_id=new_message_id(),
                accepted=now(),
                target=letter.party_key,
            )
            await self.accept(replayed, snapshot, remember=False)
            ids.append(replayed.id)
        return ids

    # -- latest state ------------------------------------------------------------------------

    async def latest(self, module: str, lane: str) -> list[Job]:
        """The pushes that make up an object's latest state, folded (oldest first)."""
        raw = await self.redis.lrange(Keys.latest(module, lane), 0, -1)
        jobs = [decode_job(item) for item in raw]
        return [_as_job(step.newest, step.method, step.body) for step in fold(jobs)]

    async def _fold_latest(self, module: str, lane: str) -> None:
        """Replace an object's pushes by their fold, unless a push arrived meanwhile (then
        the next one folds)."""
        key = Keys.latest(module, lane)

        async def replace(pipe: aioredis.client.Pipeline) -> None:
            raw = await pipe.lrange(key, 0, -1)
            steps = fold(decode_job(item) for item in raw)
            pipe.multi()
            pipe.delete(key)
            pipe.rpush(key, *(encode_job(_as_job(s.newest, s.method, s.body)) for s in steps))
            pipe.expire(key, LATEST_TTL)

        await self.redis.transaction(replace, key)

    # -- reports -----------------------------------------------------------------------------

    async def report(self, broadcast_id: str) -> Report | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(Keys.broadcast(broadcast_id)).hvals(Keys.deliveries(broadcast_id))
            meta, deliveries = await pipe.execute()
        if b"job" not in meta:
            return None
        job = decode_job(meta[b"job"])
        finished = meta.get(b"finished")
        left_out = meta.get(b"left_out")
        return Report(
            id=job.id,
            module=job.module,
            method=job.method,
            path=job.suffix,
            sender="/".join(job.sender),
            accepted=job.accepted,
            receivers=int(meta[b"receivers"]),
            not_entitled=_names.decode(left_out) if left_out else [],
            finished=datetime.fromisoformat(finished.decode()) if finished else None,
            deliveries=sorted(
                (_delivery.decode(d) for d in deliveries),
                key=lambda d: (d.country_code, d.party_id, d.role),
            ),
            **{outcome: int(meta.get(outcome.encode(), 0)) for outcome in OUTCOMES},
        )

    async def wait(self, broadcast_id: str, deadline: float) -> Report | None:
        """The report once every receiver platform is done with the push, or as it stands
        after ``deadline`` seconds (BROADCAST_WAIT)."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline
        while loop.time() < ends:
            if await self.redis.hexists(Keys.broadcast(broadcast_id), "finished"):
                break
            await asyncio.sleep(0.01)
        return await self.report(broadcast_id)

    async def recent(self, count: int = 100) -> list[str]:
        return [i.decode() for i in await self.redis.zrevrange(Keys.broadcasts, 0, count - 1)]


def _slim(job: Job) -> Job:
    """What the report keeps: not the payload."""
    return msgspec.structs.replace(job, body=b"", query="")


def _as_job(job: Job, method: str, body: bytes) -> Job:
    return msgspec.structs.replace(job, method=method, body=body)
