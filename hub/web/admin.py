"""The operator's API under ``/admin`` (Bearer admin token): onboarding and watching platforms.

Plain JSON, not OCPI envelopes: errors are ``{"error": "..."}`` with a fitting HTTP status
(and the OCPI ``status_code`` where the error has one: hub/web/errors.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.background.broadcast import Report, Summary
from hub.ocpi.body import BadJson, decode_json
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.models import CountryCode, PartyId, Role
from hub.onboarding.handshake import suspended
from hub.registry.errors import RegistryError, UnknownPlatform
from hub.registry.events import PlatformEvent
from hub.registry.records import (
    Party,
    Platform,
    PublicPlatform,
    RateLimit,
    Transition,
    party_key,
)
from hub.web.access import AdminError, known_platform, require_admin, runtime
from hub.web.openapi import AdminRoute
from hub.web.responses import json_response

T = TypeVar("T")


async def read_body(request: Request, type_: type[T]) -> T:
    """400 for a body that is not JSON (or nested too deeply to read), 422 for a wrong one."""
    try:
        return decode_json(await request.body(), type_)
    except BadJson as exc:
        if exc.malformed:
            raise AdminError(400, f"request body {exc.problem}") from None
        raise AdminError(422, f"invalid request: {exc.problem}") from None


def read_query(request: Request, type_: type[T]) -> T:
    """The query parameters as ``type_`` (a Struct of their names); 400 when they do not fit."""
    try:
        return msgspec.convert(dict(request.query_params), type_, strict=False)
    except msgspec.ValidationError as exc:
        raise AdminError(400, f"invalid query: {exc}") from None


class NewPlatform(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    # Hand the platform a versions URL listing only this version (a strict 2.2.1 parser
    # refuses "2.3.0": 2.2.1 "VersionNumber" is a closed enum).
    version: Literal["2.3.0", "2.2.1"] | None = None


class CreatedPlatform(msgspec.Struct):
    """The one time token A is shown: the hub keeps only its hash."""

    id: str
    name: str
    token_a: str
    versions_url: str


async def create_platform(request: Request) -> Response:
    """A new PENDING platform, and the token A and versions URL to hand its operator."""
    require_admin(request)
    body = await read_body(request, NewPlatform)
    hub = runtime(request)
    platform, token_a = await hub.writer.create_platform(body.name)
    versions_url = hub.urls("versions-of", version=body.version) if body.version else None
    created = CreatedPlatform(platform.id, platform.name, token_a, versions_url or hub.versions_url)
    return json_response(created, 201)


async def list_platforms(request: Request) -> Response:
    """Every platform, oldest first; never a token."""
    require_admin(request)
    snapshot = await runtime(request).registry.refresh_if_stale()
    platforms = sorted(snapshot.platforms.values(), key=lambda p: p.created)
    return json_response([p.public() for p in platforms])


async def get_platform(request: Request) -> Response:
    """One platform, with its OCPI version and endpoints."""
    return json_response((await known_platform(request)).public())


async def platform_events(request: Request) -> Response:
    """Its credentials events, newest first: when, by whom, with what outcome."""
    platform = await known_platform(request)
    return json_response(await runtime(request).events.of(platform.id))


async def platform_losses(request: Request) -> Response:
    """What translation between OCPI versions left out of the objects this platform got:
    ``"module: field"`` -> how many times."""
    platform = await known_platform(request)
    return json_response(await runtime(request).losses.of(platform.id))


async def _audited(request: Request, event: str, work: Awaitable[Platform]) -> Response:
    """An operator's credentials action, recorded in the platform's events whatever came of
    it; the platform as it is after."""
    hub, platform_id = runtime(request), request.path_params["platform_id"]
    try:
        platform = await work
    except (OcpiError, RegistryError) as exc:
        if not isinstance(exc, UnknownPlatform):
            failed = PlatformEvent(now(), event, "operator", exc.message)
            await hub.events.record(platform_id, failed)
        raise
    done = PlatformEvent(now(), event, "operator", "ok", platform.version)
    await hub.events.record(platform_id, done)
    return json_response(platform.public())


class Connect(msgspec.Struct):
    versions_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    token_a: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


Origin = Annotated[str, msgspec.Meta(pattern=r"^https?://[^/?#\s]+/?$", max_length=255)]


class PlatformSettings(msgspec.Struct, forbid_unknown_fields=True):
    raw_token: bool | None = None
    # scheme://host[:port] the platform also uses for next pages, CDR Locations, callbacks
    extra_origins: Annotated[list[Origin], msgspec.Meta(max_length=20)] | None = None
    # {"per_second", "burst"}: this platform's own limit; null: the hub's default again
    rate_limit: RateLimit | msgspec.UnsetType | None = msgspec.UNSET


async def connect_platform(request: Request) -> Response:
    """The hub as credentials Sender: register with a platform that gave us its token A."""
    require_admin(request)
    body = await read_body(request, Connect)
    handshake, platform_id = runtime(request).handshake, request.path_params["platform_id"]
    connecting = handshake.connect(platform_id, body.versions_url, body.token_a)
    return await _audited(request, "register", connecting)


async def rotate_platform(request: Request) -> Response:
    """A credentials update started by the hub: new tokens both ways, endpoints fetched
    again. A failure is answered with what went wrong and recorded."""
    require_admin(request)
    rotating = runtime(request).handshake.rotate(request.path_params["platform_id"])
    return await _audited(request, "rotate", rotating)


async def update_platform(request: Request) -> Response:
    """Per-platform settings: the legacy raw Authorization token, the extra origins its
    links and callbacks may use, the rate limit."""
    require_admin(request)
    body = await read_body(request, PlatformSettings)

    def change(platform: Platform) -> Platform | None:
        changes: dict[str, object] = {}
        if body.raw_token is not None:
            changes["raw_token"] = body.raw_token
        if body.extra_origins is not None:
            changes["extra_origins"] = body.extra_origins
        if body.rate_limit is not msgspec.UNSET:
            changes["rate_limit"] = body.rate_limit
        return msgspec.structs.replace(platform, **changes) if changes else None

    platform = await _update(request, change)
    return json_response(platform.public())


async def suspend_platform(request: Request) -> Response:
    """Tokens void both ways; the platform's parties become SUSPENDED."""
    require_admin(request)
    hub = runtime(request)
    before = await hub.registry.get(request.path_params["platform_id"])
    platform = await _update(request, suspended, "suspended by operator")

    async def tell() -> None:
        told = await hub.handshake.tell_suspended(before) if before else "not told"
        await hub.events.record(
            platform.id, PlatformEvent(now(), "suspend", "operator", "ok", detail=told)
        )

    hub.detach(tell())  # the suspension stands whatever the platform answers
    return json_response(platform.public())


async def _update(
    request: Request,
    change: Callable[[Platform], Platform | None],
    cause: str = "changed by operator",
) -> Platform:
    writer = runtime(request).writer
    return await writer.update(request.path_params["platform_id"], change, cause)


class ListedParty(Party, frozen=True):
    """A party, and when its platform last called the hub (null: never, or no platform yet)."""

    last_seen: datetime | None


async def list_parties(request: Request) -> Response:
    """Every party the hub knows, with its status and when its platform was last seen."""
    require_admin(request)
    hub = runtime(request)
    snapshot = await hub.registry.refresh_if_stale()
    seen = await hub.registry.last_seen()
    rows = [
        ListedParty(**msgspec.structs.asdict(party), last_seen=_moment(seen, party.platform_id))
        for party in sorted(snapshot.parties.values(), key=lambda p: p.key)
    ]
    return json_response(rows)


def _moment(seen: dict[str, float], platform_id: str | None) -> datetime | None:
    moment = seen.get(platform_id or "")
    return None if moment is None else datetime.fromtimestamp(moment, UTC)


async def list_broadcasts(request: Request) -> Response:
    """The newest broadcasts with their delivery counts."""
    require_admin(request)
    broadcaster = runtime(request).broadcaster
    rows = []
    for broadcast_id in await broadcaster.recent():
        report = await broadcaster.report(broadcast_id)
        if report is not None:
            rows.append(report.summary())
    return json_response(rows)


async def get_broadcast(request: Request) -> Response:
    """One broadcast: its outcome counts, and per delivery made its status code, HTTP
    status, latency and error."""
    require_admin(request)
    report = await runtime(request).broadcaster.report(request.path_params["broadcast_id"])
    if report is None:
        raise AdminError(404, f"unknown broadcast {request.path_params['broadcast_id']}")
    return json_response(report)


class NewParty(msgspec.Struct):
    country_code: CountryCode
    party_id: PartyId
    role: Role
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


async def announce_party(request: Request) -> Response:
    """A party that will connect: PLANNED, pushed to every connected platform."""
    require_admin(request)
    body = await read_body(request, NewParty)
    if body.role == Role.HUB:
        raise AdminError(422, "invalid request: HUB is a hub's own role, not a party's")
    key = party_key(body.country_code, body.party_id, body.role)
    await runtime(request).writer.announce(key, body.name)
    party = (await runtime(request).registry.snapshot()).parties[key]
    return json_response(party, 201)


async def party_history(request: Request) -> Response:
    """Every status change of one party: when, from what, to what, and why."""
    require_admin(request)
    params = request.path_params
    try:
        key = party_key(params["country_code"], params["party_id"], params["role"].upper())
    except ValueError:
        raise AdminError(404, f"unknown role {params['role']}") from None
    history = await runtime(request).registry.history(key)
    if not history:
        raise AdminError(404, f"unknown party {'/'.join(key)}")
    return json_response(history)


routes = [
    AdminRoute(
        "/admin/platforms",
        create_platform,
        methods=["POST"],
        request=NewPlatform,
        response=CreatedPlatform,
        status=201,
    ),
    AdminRoute("/admin/platforms", list_platforms, methods=["GET"], response=list[PublicPlatform]),
    AdminRoute(
        "/admin/platforms/{platform_id}", get_platform, methods=["GET"], response=PublicPlatform
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}/losses",
        platform_losses,
        methods=["GET"],
        response=dict[str, int],
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}/events",
        platform_events,
        methods=["GET"],
        response=list[PlatformEvent],
    ),
    AdminRoute(
        "/admin/parties",
        announce_party,
        methods=["POST"],
        request=NewParty,
        response=Party,
        status=201,
    ),
    AdminRoute(
        "/admin/parties/{country_code}/{party_id}/{role}/history",
        party_history,
        methods=["GET"],
        response=list[Transition],
    ),
    AdminRoute("/admin/broadcasts", list_broadcasts, methods=["GET"], response=list[Summary]),
    AdminRoute("/admin/broadcasts/{broadcast_id}", get_broadcast, methods=["GET"], response=Report),
    AdminRoute(
        "/admin/platforms/{platform_id}",
        update_platform,
        methods=["PATCH"],
        request=PlatformSettings,
        response=PublicPlatform,
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}",
        suspend_platform,
        methods=["DELETE"],
        response=PublicPlatform,
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}/connect",
        connect_platform,
        methods=["POST"],
        request=Connect,
        response=PublicPlatform,
    ),
    AdminRoute(
        "/admin/platforms/{platform_id}/rotate",
        rotate_platform,
        methods=["POST"],
        response=PublicPlatform,
    ),
    AdminRoute("/admin/parties", list_parties, methods=["GET"], response=list[ListedParty]),
]
