"""What an operator watches: the traffic log, each platform's quality and still-alive
history (``/admin/...``), and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import metrics
from hub.ocpi.models import ConnectionStatus, Role
from hub.registry.quality import Quality
from hub.registry.traffic import AliveCheck, Entry, TrafficFilter
from hub.web.access import AdminError, known_platform, require_admin, require_bearer, runtime
from hub.web.admin import read_query
from hub.web.openapi import AdminRoute
from hub.web.responses import json_response


class TrafficQuery(msgspec.Struct):
    platform: str | None = None
    party: Annotated[str, msgspec.Meta(description="CC/PID, as sender or receiver")] | None = None
    module: str | None = None
    status: Literal["ok", "error"] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    before: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^(\+|[0-9]{1,15}-[0-9]{1,18}(/[0-9]{1,9})?)$",
            description="an entry id: older hops only",
        ),
    ] = "+"

    def filter(self) -> TrafficFilter:
        party = self.party.upper() if self.party else None
        return TrafficFilter(
            platform=self.platform, party=party, module=self.module, status=self.status
        )


async def list_traffic(request: Request) -> Response:
    """The newest hops, newest first. ``platform``, ``party`` (CC/PID), ``module`` and
    ``status`` (ok, error) filter; ``limit`` (default 100, at most 1000) caps; ``before``
    (an entry id) pages back."""
    require_admin(request)
    query = read_query(request, TrafficQuery)
    entries = await runtime(request).traffic.recent(query.filter(), query.limit, query.before)
    return json_response(entries)


async def get_exchange(request: Request) -> Response:
    """Every hop of one exchange (its X-Correlation-ID), oldest first."""
    require_admin(request)
    correlation_id = request.path_params["correlation_id"]
    hops = await runtime(request).traffic.exchange(correlation_id)
    if not hops:
        raise AdminError(404, f"no hop with correlation id {correlation_id} in the traffic log")
    return json_response(hops)


async def platform_quality(request: Request) -> Response:
    """The platform as a receiver over 24 hours and 7 days: availability, latency, errors."""
    platform = await known_platform(request)
    return json_response(await runtime(request).traffic.quality(platform.id))


async def platform_alive(request: Request) -> Response:
    """Its latest still-alive checks, newest first."""
    platform = await known_platform(request)
    return json_response(await runtime(request).traffic.alive_history(platform.id))


class _Shared(Collector):
    """Figures every process would give alike, read once per scrape from the registry and
    Redis: parties by role and status, deliveries waiting per receiver platform."""

    def __init__(
        self, parties: Counter[tuple[Role, ConnectionStatus]], waiting: dict[str, tuple[int, float]]
    ) -> None:
        self.parties = parties
        self.waiting = waiting

    def collect(self):
        parties = GaugeMetricFamily(
            "hub_parties", "Parties the hub knows, by role and status", labels=["role", "status"]
        )
        for role in Role:
            for status in ConnectionStatus:
                parties.add_metric([role.value, status.value], self.parties[(role, status)])
        yield parties
        depth = GaugeMetricFamily(
            "hub_delivery_queue_depth",
            "Broadcast pushes waiting for delivery, per receiver platform",
            labels=["receiver"],
        )
        oldest = GaugeMetricFamily(
            "hub_delivery_oldest_seconds",
            "Age of the oldest push waiting for delivery, per receiver platform",
            labels=["receiver"],
        )
        for platform_id, (count, age) in sorted(self.waiting.items()):
            depth.add_metric([platform_id], count)
            oldest.add_metric([platform_id], age)
        yield depth
        yield oldest


async def prometheus(request: Request) -> Response:
    """Prometheus text: this process's (or every worker's) counters, and the shared gauges."""
    hub = runtime(request)
    tokens = [hub.settings.admin_token, hub.settings.metrics_token]
    require_bearer(request, tokens, "metrics need Authorization: Bearer <metrics or admin token>")
    snapshot = await hub.registry.refresh_if_stale()
    parties = Counter((party.role, party.status) for party in snapshot.parties.values())
    waiting = {
        row.platform_id: (row.waiting, row.oldest_waiting_s or 0.0)
        for row in await hub.engine.backlog()
    }
    shared = CollectorRegistry()
    shared.register(_Shared(parties, waiting))
    hub.traffic.count()  # what this process answered, counted before its next batch
    body, content_type = metrics.exposition()
    return Response(body + generate_latest(shared), media_type=content_type)


routes = [
    AdminRoute(
        "/admin/traffic",
        list_traffic,
        methods=["GET"],
        query=TrafficQuery,
        response=list[Entry],
    ),
    AdminRoute(
        "/admin/traffic/{correlation_id}", get_exchange, methods=["GET"], response=list[Entry]
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}/quality",
        platform_quality,
        methods=["GET"],
        response=list[Quality],
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}/alive",
        platform_alive,
        methods=["GET"],
        response=list[AliveCheck],
    ),
    Route("/metrics", prometheus, methods=["GET"]),
]
