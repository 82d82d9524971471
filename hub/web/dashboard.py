"""The operator's dashboard (``/dashboard``): server-rendered pages over what the admin API
knows, refreshed in place every few seconds by a few lines of JavaScript.

Signing in takes the admin token once and gives a session cookie (HttpOnly,
SameSite=Strict, Secure behind https) naming a session kept in Redis, so that every hub
process knows it and ``/dashboard/logout`` ends it at once. Without a session only the
sign-in form is shown.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from hub.logs import get_logger
from hub.ocpi.models import ConnectionStatus, Role
from hub.registry.store import Keys
from hub.runtime import Runtime
from hub.web.access import AdminError, runtime
from hub.web.admin import read_query
from hub.web.monitoring import TrafficQuery

log = get_logger(__name__)
COOKIE = "hub_session"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _ago(moment: float | datetime | None) -> str:
    """ "12 s ago", "3 min ago", "2 h ago", "4 d ago"; "never" for None."""
    if moment is None:
        return "never"
    seconds = time.time() - (moment.timestamp() if isinstance(moment, datetime) else moment)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{max(0, int(seconds))} s ago"


def _clock(moment: float | datetime | None) -> str:
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["ago"] = _ago
templates.env.filters["clock"] = _clock


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


async def _signed_in(request: Request) -> bool:
    """A session that exists and was opened with the admin token in force now: changing
    the admin token ends every session."""
    session = request.cookies.get(COOKIE)
    if not session:
        return False
    hub = runtime(request)
    held = await hub.redis.get(Keys.dashboard_session(_digest(session)))
    return held is not None and hmac.compare_digest(
        held, _digest(hub.settings.admin_token).encode()
    )


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A whole page, or only its live part when the page's script asks for a refresh."""
    partial = request.headers.get("x-dashboard-refresh") == "1"
    context = {"partial": partial, "path": request.url.path, **context}
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _login(request: Request, error: str | None = None, status: int = 401) -> Response:
    return _page(request, "login.html", {"error": error}, status)


async def home(request: Request) -> Response:
    if not await _signed_in(request):
        return _login(request, status=200)
    return RedirectResponse("/dashboard/parties", 303)


async def login(request: Request) -> Response:
    """The admin token from the form, compared in constant time; a session on success."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].encode()
    hub = runtime(request)
    expected = hub.settings.admin_token.encode()
    if not expected or not hmac.compare_digest(token, expected):
        log.warning(
            "dashboard sign-in refused", client=request.client.host if request.client else ""
        )
        return _login(request, "That is not the admin token.")
    session = secrets.token_urlsafe(32)
    ttl = hub.settings.dashboard_session_ttl
    held = _digest(hub.settings.admin_token).encode()
    await hub.redis.set(Keys.dashboard_session(_digest(session)), held, ex=ttl)
    response = RedirectResponse("/dashboard/parties", 303)
    secure = request.url.scheme == "https" or hub.settings.public_url.startswith("https:")
    response.set_cookie(
        COOKIE,
        session,
        max_age=ttl,
        path="/dashboard",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    return response


async def logout(request: Request) -> Response:
    session = request.cookies.get(COOKIE)
    if session:
        await runtime(request).redis.delete(Keys.dashboard_session(_digest(session)))
    response = RedirectResponse("/dashboard", 303)
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


_PARTY_COLUMNS = (
    "party",
    "name",
    "role",
    "platform",
    "version",
    "status",
    "since",
    "last_seen",
    "requests_5m",
    "errors_5m",
    "requests_1h",
    "errors_1h",
    "p95_ms",
)


async def parties(request: Request) -> Response:
    """Every party: who, where, how connected, and its traffic of the last hour."""
    if not await _signed_in(request):
        return _login(request)
    hub = runtime(request)
    snapshot = await hub.registry.refresh_if_stale()
    seen = await hub.registry.last_seen()
    params = request.query_params
    status, role = params.get("status", ""), params.get("role", "")
    status = status if status in ConnectionStatus.__members__ else ""
    role = role if role in Role.__members__ else ""
    chosen = [
        p
        for p in snapshot.parties.values()
        if (not status or p.status == status) and (not role or p.role == role)
    ]
    usage = await hub.traffic.usage(sorted({f"{p.country_code}/{p.party_id}" for p in chosen}))
    rows = []
    for party in chosen:
        code = f"{party.country_code}/{party.party_id}"
        platform = snapshot.platforms.get(party.platform_id or "")
        figures = usage[code]
        rows.append(
            {
                "party": code,
                "name": party.name,
                "role": party.role.value,
                "platform_id": party.platform_id,
                "platform": platform.name if platform else "",
                "version": platform.version or "" if platform else "",
                "status": party.status.value,
                "since": party.last_updated.timestamp(),
                "last_seen": seen.get(party.platform_id or ""),
                **{f: getattr(figures, f) for f in figures.__struct_fields__},
            }
        )
    sort = params.get("sort", "party")
    sort = sort if sort in _PARTY_COLUMNS else "party"
    descending = params.get("order") == "desc"
    rows.sort(key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0))
    if descending:
        rows.reverse()
    context = {
        "rows": rows,
        "sort": sort,
        "order": "desc" if descending else "asc",
        "status": status,
        "role": role,
        "statuses": [s.value for s in ConnectionStatus],
        "roles": [r.value for r in Role if r != Role.HUB],
        "columns": _PARTY_COLUMNS,
    }
    return _page(request, "parties.html", context)


async def platform(request: Request) -> Response:
    """One platform: endpoints, credentials events, still-alive checks, quality, losses,
    deliveries waiting and dead letters."""
    if not await _signed_in(request):
        return _login(request)
    hub = runtime(request)
    platform_id = request.path_params["platform_id"]
    found = (await hub.registry.refresh_if_stale()).platforms.get(platform_id)
    if found is None:
        return _page(request, "missing.html", {"what": f"platform {platform_id}"}, 404)
    backlog = [row for row in await hub.engine.backlog() if row.platform_id == platform_id]
    context = {
        "platform": found,
        "events": await hub.events.of(platform_id),
        "alive": await hub.traffic.alive_history(platform_id),
        "quality": await hub.traffic.quality(platform_id),
        "losses": await hub.losses.of(platform_id),
        "backlog": backlog[0] if backlog else None,
        "letters": await hub.dead_letters.list(receiver=platform_id, limit=20),
    }
    return _page(request, "platform.html", context)


async def traffic(request: Request) -> Response:
    """The latest hops, filtered, tailing live."""
    if not await _signed_in(request):
        return _login(request)
    error = None
    try:
        query = read_query(request, TrafficQuery)
    except AdminError as exc:
        query, error = TrafficQuery(), exc.message
    match = query.filter()
    hub = runtime(request)
    entries = await hub.traffic.recent(match, query.limit)
    context = {"entries": entries, "match": match, "error": error, "names": await _names(hub)}
    return _page(request, "traffic.html", context)


async def _names(hub: Runtime) -> dict[str, str]:
    """Platform id -> name, to show who a hop was with."""
    return {p.id: p.name for p in (await hub.registry.snapshot()).platforms.values()}


async def exchange(request: Request) -> Response:
    """Every hop of one exchange, by its correlation id."""
    if not await _signed_in(request):
        return _login(request)
    hub, correlation_id = runtime(request), request.path_params["correlation_id"]
    entries = await hub.traffic.exchange(correlation_id)
    context = {"entries": entries, "correlation_id": correlation_id, "names": await _names(hub)}
    return _page(request, "exchange.html", context)


async def broadcasts(request: Request) -> Response:
    """Recent broadcasts with their outcome counts and lag, and each receiver's queue."""
    if not await _signed_in(request):
        return _login(request)
    hub = runtime(request)
    reports = []
    for broadcast_id in await hub.broadcaster.recent():
        report = await hub.broadcaster.report(broadcast_id)
        if report is not None:
            lag = (report.finished - report.accepted).total_seconds() if report.finished else None
            reports.append({"report": report.summary(), "lag": lag})
    context = {"reports": reports, "backlog": await hub.engine.backlog()}
    return _page(request, "broadcasts.html", context)


routes = [
    Route("/dashboard", home, methods=["GET"]),
    Route("/dashboard/login", login, methods=["POST"]),
    Route("/dashboard/logout", logout, methods=["POST"]),
    Route("/dashboard/parties", parties, methods=["GET"]),
    Route("/dashboard/platforms/{platform_id}", platform, methods=["GET"]),
    Route("/dashboard/traffic", traffic, methods=["GET"]),
    Route("/dashboard/traffic/{correlation_id}", exchange, methods=["GET"]),
    Route("/dashboard/broadcasts", broadcasts, methods=["GET"]),
]
