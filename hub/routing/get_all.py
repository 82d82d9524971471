"""GET All via the hub (transport_and_format, "GET All via Hubs").

The hub combines the Sender lists of every connected data owner into one sequence: the
parties in a fixed order, each party's objects in its own (stable) order. offset/limit work
over that sequence; a walk id in the next link keeps the party order and the totals learned
on the first page, so pages stay consistent. Pages are fetched as the requester walks: the
hub holds at most one page of objects, as raw JSON it never decodes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import msgspec
import redis.asyncio as aioredis

from hub.ocpi.body import BadJson, decode_json
from hub.ocpi.envelope import Envelope, OcpiError, now
from hub.ocpi.headers import routing_headers
from hub.ocpi.models import VERSION
from hub.ocpi.pagination import Paging, parse_paging, whole_number
from hub.ocpi.status import StatusCode
from hub.ocpi.translation import Untranslatable, translate
from hub.registry.policy import Policy
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys
from hub.routing.crossing import note, translated
from hub.routing.decide import data_owners
from hub.routing.forwarder import Forwarder
from hub.routing.losses import Losses
from hub.routing.request import HubAnswer, RoutedRequest
from hub.routing.urls import HubUrls, join_url

WALK_TTL = 3600
UNKNOWN = -1


class Source(msgspec.Struct):
    """One data owner in a walk, with its total once known."""

    country_code: str
    party_id: str
    platform_id: str
    endpoint: str
    total: int = UNKNOWN
    skipped: bool = False  # failed during the walk: left out, its place in the sequence kept
    error: str | None = None
    status_code: int | None = None  # the hub code of the failure: 4002, 4003 or 4000
    version: str | None = None  # the OCPI version its platform speaks

    @property
    def party(self) -> tuple[str, str]:
        return (self.country_code, self.party_id)


class Walk(msgspec.Struct):
    id: str
    requester_platform: str
    requester: tuple[str, str]
    module: str
    filters: list[tuple[str, str]]  # every non-paging query parameter, sent to every source
    sources: list[Source]
    suffix: str = ""  # the list's path after the SENDER endpoint, as the requester sent it
    path: str = ""  # the same, decoded: for the next Link
    version: str = VERSION  # the requester's OCPI version: every object goes into it


LEFT_OUT = msgspec.Raw(b"null")  # a place held by an object the requester's version lacks


class _Page(msgspec.Struct):
    status_code: int
    data: list[msgspec.Raw] = []


_page = msgspec.json.Decoder(_Page)
_walk = msgspec.json.Decoder(Walk)


class GetAll:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: Registry,
        forwarder: Forwarder,
        urls: HubUrls,
        hub_party: tuple[str, str],
        policy: Policy,
        losses: Losses,
        partial: bool = False,
    ) -> None:
        self.losses = losses
        self.policy = policy
        self.redis = redis
        self.registry = registry
        self.forwarder = forwarder
        self.urls = urls
        self.hub_party = hub_party
        self.partial = partial  # GET_ALL_PARTIAL: a page with a party missing answers 1000

    async def page(self, snapshot: Snapshot, request: RoutedRequest) -> HubAnswer:
        facts, requester = request.facts, request.sender
        paging = parse_paging(request.query)
        walk = await self._walk(paging.params.get("walk"), snapshot, request, paging)
        lost: list[str] = []

        async def raw(source: Source, start: int, need: int) -> list[msgspec.Raw]:
            return await self._fetch(walk, source, start, need, request.correlation_id)

        async def fetch(source: Source, start: int, need: int) -> list[msgspec.Raw]:
            return await self._in_version(walk, source, await raw(source, start, need), lost)

        # The probes that learn totals read objects that are not on the page: untranslated.
        placed = await collect(walk.sources, paging.offset, paging.limit, fetch, probe=raw)
        objects = [o for o in placed if o is not LEFT_OUT]
        skipped = [s for s in walk.sources if s.skipped]
        await self.redis.set(Keys.walk(walk.id), msgspec.json.encode(walk), ex=WALK_TTL)
        total = sum(max(s.total, 0) for s in walk.sources)  # skipped sources keep their share
        headers = {
            "X-Total-Count": str(total),
            "X-Limit": str(paging.limit),
            **routing_headers(self.hub_party, requester),
        }
        base = self.urls(
            "module", version=request.version, module=facts.id, interface="sender", rest=walk.path
        )
        link = paging.next_link(base, total, ("walk", walk.id))
        if link:
            headers["Link"] = link
        status_code, message = self._outcome(skipped)
        if lost:
            message = "; ".join([*([message] if message else []), note(lost, walk.version)])
        body = msgspec.json.encode(
            Envelope(data=objects, status_code=status_code, status_message=message, timestamp=now())
        )
        return HubAnswer(body, headers)

    def _outcome(self, skipped: list[Source]) -> tuple[int, str | None]:
        """mod_locations "GET List": all pages together are the new truth, so a page of a walk
        with a data owner missing must not look like success: it answers the hub code of the
        first failure, naming every party left out (unless GET_ALL_PARTIAL)."""
        if not skipped:
            return StatusCode.SUCCESS, None
        named = "; ".join(f"{'/'.join(s.party)}: {s.error}" for s in skipped)
        if self.partial:
            return StatusCode.SUCCESS, f"skipped {named}"
        code = next((s.status_code for s in skipped if s.status_code), StatusCode.HUB_ERROR)
        return code, f"incomplete list, not the whole truth: left out {named}"

    async def _walk(
        self, walk_id: str | None, snapshot: Snapshot, request: RoutedRequest, paging: Paging
    ) -> Walk:
        requester_platform = request.platform.id
        if walk_id:
            raw = await self.redis.get(Keys.walk(walk_id[:64]))
            walk = _walk.decode(raw) if raw else None
            if walk is None or walk.requester_platform != requester_platform:
                raise OcpiError(StatusCode.CLIENT_ERROR, "unknown or expired walk", 404)
            return walk
        owners = data_owners(snapshot, request.facts, requester_platform)
        sources = [
            Source(*p.code, platform.id, endpoint, version=platform.version)
            for p, platform, endpoint in owners
            if self.policy.allows(snapshot, request.sender, p.code, request.facts.id)
        ]
        return Walk(
            id=secrets.token_urlsafe(12),
            requester_platform=requester_platform,
            requester=request.sender,
            module=request.facts.id,
            filters=paging.filters,
            sources=sources,
            suffix=request.raw_suffix,
            path=request.suffix,
            version=request.version,
        )

    async def _in_version(
        self, walk: Walk, source: Source, got: list[msgspec.Raw], lost: list[str]
    ) -> list[msgspec.Raw]:
        """Each object of a source of another version in the requester's; one that cannot
        exist there keeps its place (LEFT_OUT) so that the walk's positions hold."""
        if not translated(walk.module, source.version, walk.version):
            return got
        source_version = source.version or VERSION
        out: list[msgspec.Raw] = []
        lost_here: list[str] = []
        for raw in got:
            try:
                data, names = translate(
                    walk.module, 1, msgspec.json.decode(raw), source_version, walk.version
                )
            except Untranslatable as exc:
                out.append(LEFT_OUT)
                names, data = [f"an object of {'/'.join(source.party)} ({exc})"], None
            except msgspec.DecodeError:
                out.append(raw)
                continue
            if data is not None:
                out.append(msgspec.Raw(msgspec.json.encode(data)))
            lost_here += [n for n in names if n not in lost_here]
        lost += [n for n in lost_here if n not in lost]
        await self.losses.record(
            walk.requester_platform, walk.module, source_version, walk.version, lost_here
        )
        return out

    async def _fetch(
        self, walk: Walk, source: Source, start: int, need: int, correlation_id: str
    ) -> list[msgspec.Raw]:
        """Up to ``need`` objects of one source from ``start``, over as many of its pages as
        it takes (a party may return fewer than asked); learns the source's total."""
        got: list[msgspec.Raw] = []
        for _ in range(50):
            query = urlencode(
                [*walk.filters, ("offset", start + len(got)), ("limit", need - len(got))]
            )
            try:
                data, total = await self._get(
                    walk, source, join_url(source.endpoint, walk.suffix, query), correlation_id
                )
            except OcpiError as exc:
                source.skipped, source.error = True, exc.message
                source.status_code = exc.status_code
                return []
            source.total = total if total is not None else start + len(got) + len(data)
            got += data
            if not data or len(got) >= need or start + len(got) >= source.total:
                break
        return got[:need]

    async def _get(
        self, walk: Walk, source: Source, url: str, correlation_id: str
    ) -> tuple[list[msgspec.Raw], int | None]:
        """One page of one party, with the direct relay headers (from = the requester)."""
        platform = (await self.registry.snapshot()).platforms.get(source.platform_id)
        if platform is None:
            raise OcpiError(StatusCode.RECEIVER_NOT_CONNECTED, "platform is gone")
        forwarder = self.forwarder
        out = forwarder.outgoing_headers(
            {}, platform, correlation_id, routing_headers(walk.requester, source.party)
        )
        _, answer_headers, body = await forwarder.fetch(platform, "GET", url, out, None)
        try:
            page = decode_json(body, _page)
        except BadJson:
            raise OcpiError(StatusCode.HUB_ERROR, "answer is not an OCPI list") from None
        if page.status_code != StatusCode.SUCCESS:
            raise OcpiError(StatusCode.HUB_ERROR, f"answered status_code {page.status_code}")
        return page.data, whole_number(answer_headers.get("X-Total-Count", ""))


Fetch = Callable[["Source", int, int], Awaitable[list[msgspec.Raw]]]


async def collect(
    sources: list[Source], offset: int, limit: int, fetch: Fetch, probe: Fetch | None = None
) -> list[msgspec.Raw]:
    """Objects offset..offset+limit of the merged sequence, then the totals still unknown.

    ``fetch(source, start, need)`` returns up to ``need`` objects of one source from
    ``start`` and records the source's total, or marks it skipped. A source that failed once
    its total was known keeps its place: the positions of its objects stay empty, so the
    objects of the sources after it neither move nor repeat from page to page (one that
    failed before has no place, and no share of the total). ``probe`` (default ``fetch``)
    learns the totals still unknown."""
    objects: list[msgspec.Raw] = []
    holes = 0  # positions on this page that belong to failed sources
    before = 0  # objects of the sources ahead of this one
    for source in sources:
        need = limit - len(objects) - holes
        start = max(0, offset - before)
        if not source.skipped and need > 0 and (source.total == UNKNOWN or start < source.total):
            got = await fetch(source, start, need)
            objects += got
            need -= len(got)
        if source.skipped and need > 0 and start < source.total:
            holes += min(need, source.total - start)
        if source.total == UNKNOWN and need <= 0 and not source.skipped:
            continue  # learned below, in parallel
        before += max(source.total, 0)
    unknown = [s for s in sources if s.total == UNKNOWN and not s.skipped]
    await asyncio.gather(*((probe or fetch)(s, 0, 1) for s in unknown))
    return objects
