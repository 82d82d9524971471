"""The traffic log: every hop of every request, shared by all hub processes.

A hop is a platform calling the hub (``in``) or the hub calling a platform (``out``: a
forwarded request, a broadcast delivery, a GET All page, a still-alive check). Hops of one
exchange share its X-Correlation-ID. They are kept in a capped Redis stream
(TRAFFIC_MAX_ENTRIES, TRAFFIC_RETENTION) with no body and never a token; TRAFFIC_BODIES may
keep request bodies of one module, cut at TRAFFIC_BODY_MAX bytes, for debugging.

Recording costs a hop one list append. Everything else is done per batch, once a second or
every BATCH_MAX hops: the hops are counted in this process's metrics (alike hops at once),
then written in one script call with the quality counts they feed (hub/registry/quality.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from hub import metrics
from hub.logs import get_logger
from hub.metrics import labelled
from hub.ocpi.models import VERSIONS, ModuleID, modules_of
from hub.ocpi.status import StatusCode
from hub.registry.quality import (
    HOUR,
    MINUTE,
    Quality,
    Tally,
    Usage,
    bucket_of,
    hour_of,
    minute_of,
    quality,
    usage,
)
from hub.registry.store import Keys

log = get_logger(__name__)

FLUSH_SECONDS = 1.0
# Hops in one batch at most: a busy hub writes as soon as this many wait, so that the
# hops held in memory stay few and one write never holds Redis long.
BATCH_MAX = 1_000
PENDING_MAX = 20_000  # hops waiting for Redis; beyond, the oldest are dropped (and counted)
SCAN_MAX = 20_000  # hops a filtered read looks through at most
PAGE = 10  # stream entries (batches of up to a second) read at a time
FIELD_MAX = 256  # characters kept of a path, a message id or an error
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_STATUS_LABELS = {int(code): str(int(code)) for code in StatusCode}
_MODULES = frozenset(
    {"versions", "hub", *(str(m) for version in VERSIONS for m in modules_of(version))}
    | {ModuleID.CREDENTIALS, ModuleID.HUB_CLIENT_INFO}
)


def _status_label(ocpi_status: int | None) -> str:
    return _STATUS_LABELS.get(ocpi_status, "other") if ocpi_status else ""


def module_of(path: str) -> str:
    """What an OCPI path's module is, as far as the path says: /ocpi/{version}/{module}/...,
    one of the hub's own names or "other" (a metrics label: a caller must not make up
    series). The module endpoint names custom modules and Bookings' sub-modules itself;
    this is for the requests that never reach it (refused, unknown paths)."""
    parts = path.split("/", 4)
    if len(parts) > 3 and parts[2][:1].isdigit():
        name = "versions" if parts[3] == "details" else parts[3]
    else:
        name = parts[2] if len(parts) > 2 else ""
    return name if name in _MODULES else "other"


QUALITY_TTL = 8 * 24 * HOUR
USAGE_TTL = 2 * HOUR
ALIVE_KEEP = 50


class Exchange(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One hop. ``platform`` is the platform at the other end; ``sender`` and ``receiver``
    are the OCPI-from and OCPI-to parties ("CC/PID") where the hop names them.

    Untracked by the garbage collector (it holds only strings and numbers, so it can be
    part of no cycle): up to a batch of hops waits in memory to be written."""

    at: float
    direction: Literal["in", "out"]
    method: str
    path: str
    platform: str = ""
    sender: str = ""
    receiver: str = ""
    module: str = ""
    interface: str = ""
    http_status: int = 0  # 0: no HTTP answer (unreachable, timed out)
    ocpi_status: int | None = None
    latency_ms: float = 0.0
    request_id: str = ""
    correlation_id: str = ""
    error: str | None = None
    body: str | None = None

    @property
    def failed(self) -> bool:
        return _failed(self.ocpi_status, self.http_status)


def elapsed_ms(began: float) -> float:
    """Milliseconds since ``began`` (a ``time.perf_counter()`` reading), to the hundredth.
    Every request takes two: ``round(x, 2)`` goes through decimal text and costs three
    times as much."""
    return round((time.perf_counter() - began) * 100_000) / 100


def _failed(ocpi_status: int | None, http_status: int) -> bool:
    """No answer, an HTTP error without an OCPI status, or an OCPI status not 1xxx."""
    if ocpi_status is not None:
        return not 1000 <= ocpi_status < 2000
    return not 200 <= http_status < 400


# The hop a platform's request in is making, filled in by the layers it passes (who sent it,
# which module, what OCPI status the answer carries) and recorded when the answer is out.
CURRENT: ContextVar[Exchange | None] = ContextVar("hub_exchange", default=None)


class AliveCheck(msgspec.Struct):
    at: float
    ok: bool
    latency_ms: float
    detail: str


class TrafficFilter(msgspec.Struct, kw_only=True):
    platform: str | None = None
    party: str | None = None  # "CC/PID": as sender or receiver
    module: str | None = None
    status: Literal["ok", "error"] | None = None
    correlation_id: str | None = None

    def __call__(self, hop: Exchange) -> bool:
        return (
            (self.platform is None or hop.platform == self.platform)
            and (self.party is None or self.party in (hop.sender, hop.receiver))
            and (self.module is None or hop.module == self.module)
            and (self.status is None or hop.failed == (self.status == "error"))
            and (self.correlation_id is None or hop.correlation_id == self.correlation_id)
        )


class Entry(msgspec.Struct):
    """A hop as the log answers it: with its stream id, to page on."""

    id: str
    hop: Exchange


# One call per batch. Each flush is one stream entry holding its hops (``b``) and their
# number (``n``); the total number of hops is kept beside the stream, so that the oldest
# entries go while the log holds more than the cap or is older than the retention. Then
# the counts the hops add ("key", "field", n, ...) and their keys' expiry.
# KEYS: the stream, its hop count, then every counted key. ARGV: cap, oldest id kept, the
# batch, its size, number of counts, the counts as key index, field, n; each key's TTL.
_WRITE = """
local cap, oldest = tonumber(ARGV[1]), tonumber(ARGV[2])
local added = redis.call('XADD', KEYS[1], '*', 'n', ARGV[4], 'b', ARGV[3])
local total = redis.call('INCRBY', KEYS[2], ARGV[4])
while true do
    local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
    if first[1] == added then
        -- the new batch alone: the count starts again from it (the stream was emptied)
        redis.call('SET', KEYS[2], ARGV[4])
        break
    end
    local ms = tonumber(string.match(first[1], '^(%d+)'))
    if ms >= oldest and total <= cap then break end
    redis.call('XDEL', KEYS[1], first[1])
    total = redis.call('DECRBY', KEYS[2], first[2][2])
end
local at = 5
local counts = tonumber(ARGV[at])
for i = at + 1, at + 3 * counts, 3 do
    redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
at = at + 3 * counts + 1
for k = 3, #KEYS do
    redis.call('EXPIRE', KEYS[k], ARGV[at + k - 3])
end
"""
_encoder = msgspec.json.Encoder()
_batch = msgspec.json.Decoder(list[Exchange])
_alive = msgspec.json.Decoder(AliveCheck)


class TrafficLog:
    def __init__(
        self,
        redis: aioredis.Redis,
        retention: float,
        max_entries: int,
        bodies: str = "",
        body_max: int = 2048,
    ) -> None:
        self.redis = redis
        self.retention = retention
        self.max_entries = max_entries
        self.bodies = bodies
        self.body_max = body_max
        self._recorded: list[Exchange] = []  # not yet counted
        self._pending: list[Exchange] = []  # counted, waiting to be written
        self._rows: Counter[Row] = Counter()  # what the pending hops add to quality counts
        self._full = asyncio.Event()  # BATCH_MAX hops wait
        self._dropped = 0
        self._write = redis.register_script(_WRITE)

    def keeps_body(self, module: str) -> bool:
        return bool(self.bodies) and module == self.bodies

    def body_of(self, body: bytes) -> str:
        return body[: self.body_max].decode("utf-8", "replace")

    def record(self, hop: Exchange) -> None:
        """Queue a hop for the next batch (``count``, then ``flush``)."""
        recorded = self._recorded
        recorded.append(hop)
        if len(recorded) >= BATCH_MAX:
            self._full.set()
            if len(recorded) > PENDING_MAX:  # the writer is not keeping up: keep the newest
                del recorded[: len(recorded) - PENDING_MAX]
                self._dropped += 1

    def count(self) -> None:
        """Count the hops recorded since the last call in this process's metrics, and queue
        those of a platform for the next write, with what they add to the quality counts.
        Every label comes from a bounded set (a caller must not make up series); fields a
        caller sends are cut to FIELD_MAX.

        Each flush calls this, and so does /metrics before it answers: a scrape sees every
        request this process has answered. One pass makes each hop a ``Row`` and counts
        alike rows at once; the metrics and the quality counts are worked out once per
        distinct row. Only the latency histogram takes each hop out on its own."""
        recorded, self._recorded = self._recorded, []
        for hop in [
            h
            for h in recorded
            if not h.module
            or h.error is not None
            or len(h.path) > FIELD_MAX
            or len(h.request_id) > FIELD_MAX
            or len(h.correlation_id) > FIELD_MAX
        ]:
            if not hop.module and hop.direction == "in":
                hop.module = module_of(hop.path)  # refused before it reached a module
            if hop.error is not None:
                hop.error = hop.error[:FIELD_MAX]
            hop.path = hop.path[:FIELD_MAX]
            hop.request_id = hop.request_id[:FIELD_MAX]
            hop.correlation_id = hop.correlation_id[:FIELD_MAX]
        requests: Counter[tuple[str, str, str, int | None]] = Counter()
        failures: Counter[tuple[str, str, int | None]] = Counter()
        tallied = self._rows
        for row, n in rows_of(recorded).items():
            out, module, interface, method, platform, _, _, _, reached, status, _, _ = row
            if not out:
                requests[module, interface, method, status] += n
            elif not reached:
                failures[module, platform, status] += n
            if platform:
                tallied[row] += n
        for (module, interface, method, ocpi_status), n in requests.items():
            method = method if method in _METHODS else "other"
            labels = (module, interface, method, _status_label(ocpi_status))
            labelled(metrics.REQUESTS, *labels).inc(n)
        for (module, platform, ocpi_status), n in failures.items():
            labelled(metrics.FORWARD_FAILURES, module, platform, _status_label(ocpi_status)).inc(n)
        answered: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
        for module, platform, latency_ms in [
            (h.module, h.platform, h.latency_ms)
            for h in recorded
            if h.direction == "out" and h.http_status
        ]:
            answered[module, platform].append(latency_ms / 1000)
        for (module, platform), latencies in answered.items():
            observe = labelled(metrics.FORWARD_SECONDS, module, platform).observe
            for seconds in latencies:
                observe(seconds)
        # A caller without a valid token: counted, not logged (a flood of them would push
        # real traffic out of the log).
        pending = self._pending
        pending += [h for h in recorded if h.platform]
        if len(pending) > PENDING_MAX:  # Redis away: keep the newest
            self._dropped += len(pending) - PENDING_MAX
            del pending[: len(pending) - PENDING_MAX]
        if len(tallied) > PENDING_MAX:  # Redis away long: the two newest minutes' counts
            newest = sorted({row[7] for row in tallied})[-2:]
            for row in [r for r in tallied if r[7] not in newest]:
                del tallied[row]

    async def run(self) -> None:
        """Write what was recorded once a second, or as soon as BATCH_MAX hops wait, until
        cancelled (then once more). While Redis is away, once a second at most."""
        failed = False
        try:
            while True:
                if failed:  # Redis away: the hops wait, capped, and a full batch with them
                    await asyncio.sleep(FLUSH_SECONDS)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(FLUSH_SECONDS):
                            await self._full.wait()
                self._full.clear()  # hops recorded from here on may fill the next batch
                try:
                    await self.flush()
                    failed = False
                except Exception as exc:
                    log.warning("traffic log not written yet", error=str(exc))
                    failed = True
        finally:
            if self._recorded or self._pending:
                try:
                    await self.flush()
                except Exception as exc:
                    log.warning("traffic log not written at stop", error=str(exc))

    async def flush(self) -> None:
        """Count what was recorded and write it; on failure it waits for the next flush
        (capped)."""
        self.count()
        hops, self._pending = self._pending, []
        if self._dropped:
            log.warning("traffic log hops dropped: Redis was away", dropped=self._dropped)
            self._dropped = 0
        if not hops:
            return
        rows, self._rows = self._rows, Counter()
        logged = hops[-self.max_entries :]  # a batch is never trimmed: it fits the cap
        keys: list[str] = [Keys.traffic, Keys.traffic_hops]
        counts: list[object] = []
        ttls: list[int] = []
        for tallies, ttl in zip(_tallies(rows), (QUALITY_TTL, USAGE_TTL), strict=True):
            for key, fields in tallies.items():
                keys.append(key)
                ttls.append(ttl)
                for field, count in fields.items():
                    counts += (len(keys), field, count)
        oldest = int((time.time() - self.retention) * 1000)
        try:
            await self._write(
                keys=keys,
                args=[
                    self.max_entries,
                    oldest,
                    _encoder.encode(logged),
                    len(logged),
                    len(counts) // 3,
                    *counts,
                    *ttls,
                ],
            )
        except BaseException:  # back in front of what came since, within PENDING_MAX
            room = max(0, PENDING_MAX - len(self._pending))
            self._pending[:0] = hops[len(hops) - room :] if room else []
            self._rows.update(rows)
            raise

    async def recent(
        self, match: TrafficFilter, limit: int = 100, before: str = "+"
    ) -> list[Entry]:
        """The newest hops that ``match``, newest first, older than the hop ``before``
        (an ``Entry.id``: its stream entry and its place in that entry's batch)."""
        found: list[Entry] = []
        end, _, place = before.partition("/")
        below = int(place) if place.isdigit() else 0
        scanned = 0
        while len(found) < limit and scanned < SCAN_MAX:
            rows = await self.redis.xrevrange(Keys.traffic, end, "-", count=PAGE)
            for raw_id, fields in rows:
                if scanned >= SCAN_MAX:
                    return found
                entry_id = raw_id.decode()
                hops = _batch.decode(fields[b"b"])
                top = min(below, len(hops)) if entry_id == end else len(hops)
                for index in range(top - 1, -1, -1):
                    if match(hops[index]):
                        found.append(Entry(f"{entry_id}/{index}", hops[index]))
                        if len(found) == limit:
                            return found
                scanned += len(hops)
            if len(rows) < PAGE:
                break
            end = "(" + rows[-1][0].decode()  # older than the last entry read
        return found

    async def exchange(self, correlation_id: str) -> list[Entry]:
        """Every hop of one exchange, in the order they were logged."""
        hops = await self.recent(TrafficFilter(correlation_id=correlation_id), limit=1000)
        return sorted(hops, key=lambda e: (e.hop.at, e.id))

    async def quality(self, platform_id: str) -> list[Quality]:
        """Over the last 24 hours and the last 7 days."""
        now = hour_of()
        async with self.redis.pipeline(transaction=False) as pipe:
            for hour in range(now - 7 * 24 + 1, now + 1):
                pipe.hgetall(Keys.quality(platform_id, hour))
            raws = await pipe.execute()
        return [quality("24h", Tally.read(raws[-24:])), quality("7d", Tally.read(raws))]

    async def usage(self, parties: list[str]) -> dict[str, Usage]:
        """Per party ("CC/PID"): requests and errors in the last 5 minutes and the last hour."""
        now = minute_of()
        async with self.redis.pipeline(transaction=False) as pipe:
            for minute in range(now, now - 60, -1):
                pipe.hgetall(Keys.usage(minute))
            minutes = [Tally.read([raw]) for raw in await pipe.execute()]
        counted = usage(minutes)
        return {party: counted.get(party, Usage()) for party in parties}

    async def checked(self, platform_id: str, check: AliveCheck) -> None:
        """A still-alive check's outcome, kept with the platform's last ALIVE_KEEP."""
        metrics.ALIVE_CHECKS.labels("answered" if check.ok else "failed").inc()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(Keys.alive_history(platform_id), _encoder.encode(check))
            pipe.ltrim(Keys.alive_history(platform_id), 0, ALIVE_KEEP - 1)
            await pipe.execute()

    async def alive_history(self, platform_id: str) -> list[AliveCheck]:
        raws = await self.redis.lrange(Keys.alive_history(platform_id), 0, ALIVE_KEEP - 1)
        return [_alive.decode(raw) for raw in raws]


Tallies = defaultdict[str, Counter[str]]  # key -> field -> count
# What a hop counts as: out, module, interface, method, platform, sender, receiver, minute,
# HTTP status (0: no answer), OCPI status, latency bucket (hops out), error or not.
Row = tuple[bool, str, str, str, str, str, str, int, int, int | None, int, bool]


def rows_of(hops: list[Exchange]) -> Counter[Row]:
    """Each hop as one plain tuple of what it counts for, alike tuples counted in one go
    (``Counter`` counts in C): a busy second's batch holds few distinct ones."""
    return Counter(
        [
            (
                h.direction == "out",
                h.module,
                h.interface,
                h.method,
                h.platform,
                h.sender,
                h.receiver,
                int(h.at) // MINUTE,
                h.http_status,
                h.ocpi_status,
                bucket_of(h.latency_ms) if h.direction == "out" else 0,
                h.error is not None,
            )
            for h in hops
        ]
    )


def _tallies(rows: Mapping[Row, int]) -> tuple[Tallies, Tallies]:
    """What counted hops add to the hour of each platform (hops out only: how it answers
    the hub) and to the minute of each party, worked out once per distinct row."""
    quality: Tallies = defaultdict(Counter)
    usage: Tallies = defaultdict(Counter)
    for row, n in rows.items():
        out, _, _, _, platform, sender, receiver, minute, reached, status, bucket, error = row
        if out and platform:
            fields = quality[Keys.quality(platform, minute // (HOUR // MINUTE))]
            fields["tried"] += n
            if reached:
                fields["reached"] += n
                fields[f"ms:{bucket}"] += n
            if status is not None and 1000 <= status < 5000:
                fields[f"ocpi:{status // 1000}"] += n
            elif reached and (error or reached >= 400):
                fields["not-ocpi"] += n  # a large answer streamed through unread is not counted
        party = receiver if out else sender  # the sender of a request in, the receiver of one out
        if party:
            fields = usage[Keys.usage(minute)]
            fields[f"{party}|n"] += n
            if _failed(status, reached):
                fields[f"{party}|e"] += n
            if out and reached:
                fields[f"{party}|ms:{bucket}"] += n
    return quality, usage
