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
from urllib.parse import urlencode

import msgspec
from starlette.responses import Response

from hub.ocpi.envelope import Envelope, OcpiError, now
from hub.ocpi.pagination import Paging, parse_paging
from hub.ocpi.status import StatusCode
from hub.registry.registry import Snapshot
from hub.registry.store import PREFIX
from hub.routing.decide import data_owners, join_url
from hub.routing.forwarder import routing_headers
from hub.routing.modules import ModuleFacts
from hub.runtime import Runtime

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

    @property
    def party(self) -> tuple[str, str]:
        return (self.country_code, self.party_id)


class Walk(msgspec.Struct):
    id: str
    requester_platform: str
    requester: tuple[str, str]
    module: str
    filters: list[tuple[str, str]]
    sources: list[Source]


class _Page(msgspec.Struct):
    status_code: int
    data: list[msgspec.Raw] = []


_page = msgspec.json.Decoder(_Page)
_walk = msgspec.json.Decoder(Walk)


class GetAll:
    def __init__(self, hub: Runtime) -> None:
        self.hub = hub

    async def page(
        self,
        snapshot: Snapshot,
        facts: ModuleFacts,
        requester_platform: str,
        requester: tuple[str, str],
        query: str,
        correlation_id: str,
    ) -> Response:
        paging = parse_paging(query)
        walk = await self._walk(
            paging.params.get("walk"), snapshot, facts, requester_platform, requester, paging
        )
        objects, skipped = await self._collect(walk, paging.offset, paging.limit, correlation_id)
        await self.hub.redis.set(f"{PREFIX}walk:{walk.id}", msgspec.json.encode(walk), ex=WALK_TTL)
        total = sum(max(s.total, 0) for s in walk.sources)  # skipped sources keep their share
        headers = {
            "X-Total-Count": str(total),
            "X-Limit": str(paging.limit),
            **routing_headers(self.hub.party, requester),
        }
        base = f"{self.hub.settings.public_url}/ocpi/2.3.0/{facts.id}/sender"
        link = paging.next_link(base, total, ("walk", walk.id))
        if link:
            headers["Link"] = link
        message = None
        if skipped:
            message = "skipped " + "; ".join(f"{'/'.join(s.party)}: {s.error}" for s in skipped)
        body = msgspec.json.encode(
            Envelope(data=objects, status_code=1000, status_message=message, timestamp=now())
        )
        return Response(body, headers=headers, media_type="application/json")

    async def _walk(
        self,
        walk_id: str | None,
        snapshot: Snapshot,
        facts: ModuleFacts,
        requester_platform: str,
        requester: tuple[str, str],
        paging: Paging,
    ) -> Walk:
        if walk_id:
            raw = await self.hub.redis.get(f"{PREFIX}walk:{walk_id[:64]}")
            walk = _walk.decode(raw) if raw else None
            if walk is None or walk.requester_platform != requester_platform:
                raise OcpiError(StatusCode.CLIENT_ERROR, "unknown or expired walk", 404)
            return walk
        sources = [
            Source(p.country_code, p.party_id, platform.id, endpoint)
            for p, platform, endpoint in data_owners(snapshot, facts, requester_platform)
        ]
        return Walk(
            id=secrets.token_urlsafe(12),
            requester_platform=requester_platform,
            requester=requester,
            module=facts.id,
            filters=paging.filters,
            sources=sources,
        )

    async def _collect(
        self, walk: Walk, offset: int, limit: int, correlation_id: str
    ) -> tuple[list[msgspec.Raw], list[Source]]:
        """Objects offset..offset+limit of the merged sequence, then the totals still unknown.

        A source that failed keeps its place: the positions of its objects stay empty, so
        the objects of the sources after it neither move nor repeat from page to page."""
        objects: list[msgspec.Raw] = []
        holes = 0  # positions on this page that belong to failed sources
        before = 0  # objects of the sources ahead of this one
        for source in walk.sources:
            need = limit - len(objects) - holes
            start = max(0, offset - before)
            if (
                not source.skipped
                and need > 0
                and (source.total == UNKNOWN or start < source.total)
            ):
                got = await self._fetch(walk, source, start, need, correlation_id)
                objects += got
                need -= len(got)
            if source.skipped and need > 0 and start < source.total:
                holes += min(need, source.total - start)
            if source.total == UNKNOWN and need <= 0 and not source.skipped:
                continue  # learned below, in parallel
            before += max(source.total, 0)
        unknown = [s for s in walk.sources if s.total == UNKNOWN and not s.skipped]
        await asyncio.gather(*(self._fetch(walk, s, 0, 1, correlation_id) for s in unknown))
        return objects, [s for s in walk.sources if s.skipped]

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
                    walk, source, join_url(source.endpoint, "", query), correlation_id
                )
            except OcpiError as exc:
                source.skipped, source.error = True, exc.message
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
        platform = (await self.hub.registry.snapshot()).platforms.get(source.platform_id)
        if platform is None:
            raise OcpiError(StatusCode.RECEIVER_NOT_CONNECTED, "platform is gone")
        forwarder = self.hub.forwarder
        out = forwarder.outgoing_headers(
            {}, platform, correlation_id, routing_headers(walk.requester, source.party)
        )
        _, answer_headers, body = await forwarder.fetch(platform, "GET", url, out, None)
        total_header = answer_headers.get("X-Total-Count", "")
        try:
            page = _page.decode(body)
        except msgspec.DecodeError:
            raise OcpiError(StatusCode.HUB_ERROR, "answer is not an OCPI list") from None
        if page.status_code != StatusCode.SUCCESS:
            raise OcpiError(StatusCode.HUB_ERROR, f"answered status_code {page.status_code}")
        total = int(total_header) if total_header.isascii() and total_header.isdigit() else None
        return page.data, total
