"""The Starlette application: routes of every module, each edge's error answers, start and stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from hub.config import Settings, load_settings, with_admin_token
from hub.logs import configure_logging
from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode
from hub.registry.client import StoreUnavailable
from hub.registry.errors import RegistryError
from hub.registry.ratelimit import RateLimited
from hub.runtime import Runtime
from hub.web import (
    admin,
    agreements,
    credentials,
    dashboard,
    deliveries,
    functional,
    health,
    hubclientinfo,
    monitoring,
    openapi,
    relays,
    versions,
)
from hub.web.access import AdminError
from hub.web.errors import admin_http, answer_of, as_ocpi
from hub.web.middleware import RequestContext
from hub.web.responses import error_response, json_response, ocpi_response
from hub.web.urls import RouteUrls


def _admin(request: Request) -> bool:
    return request.url.path.startswith("/admin")


async def on_ocpi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OcpiError)
    if _admin(request):
        body = {"error": exc.message, "status_code": exc.status_code}
        return json_response(body, admin_http(exc))
    return error_response(exc)


async def on_registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    if _admin(request):
        answer = answer_of(exc)
        body = {"error": exc.message, "status_code": answer.status_code}
        return json_response(body, answer.admin_http)
    return error_response(as_ocpi(exc))


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    """Redis cannot be reached or did not answer in time: 503, the request changed nothing
    the hub knows of, and the caller may retry (``/readyz`` says when)."""
    assert isinstance(exc, StoreUnavailable)
    message = f"the hub cannot reach its store, retry later: {exc.args[0]}"
    if _admin(request):
        return json_response({"error": message}, 503, {"Retry-After": "1"})
    return ocpi_response(None, StatusCode.SERVER_ERROR, message, 503, {"Retry-After": "1"})


async def on_rate_limited(request: Request, exc: Exception) -> Response:
    """A platform over its rate limit: 429, nothing forwarded, and when to come back; held
    for a moment first (``RateLimited``), and left out of the request log (the limiter logs
    a count instead), so that a flood costs the hub as little as possible."""
    assert isinstance(exc, RateLimited)
    request.state.unlogged = True
    await asyncio.sleep(exc.hold)
    headers = {"Retry-After": str(exc.retry_after)}
    return ocpi_response(None, StatusCode.CLIENT_ERROR, exc.message, 429, headers)


async def on_admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return json_response({"error": exc.message}, exc.http_status)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """404 and 405 from the router, as an envelope (or admin JSON under /admin)."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    if _admin(request):
        return json_response({"error": message}, exc.status_code, headers)
    return ocpi_response(None, StatusCode.CLIENT_ERROR, message, exc.status_code, headers)


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(
        routes=[
            *functional.routes,  # first: nearly all traffic, and Starlette tries in order
            *relays.routes,
            *versions.routes,
            *credentials.routes,
            *hubclientinfo.routes,
            *admin.routes,
            *agreements.routes,
            *deliveries.routes,
            *monitoring.routes,
            *dashboard.routes,
            *openapi.routes,
            *health.routes,
        ],
        middleware=[Middleware(RequestContext, max_body_bytes=settings.max_body_bytes)],
        exception_handlers={
            OcpiError: on_ocpi_error,
            RegistryError: on_registry_error,
            StoreUnavailable: on_store_unavailable,
            RateLimited: on_rate_limited,
            AdminError: on_admin_error,
            HTTPException: on_http_error,
        },
        lifespan=lifespan,
    )
    # Starlette answers a path with a stray slash by a redirect built from the Host header:
    # a forged Host makes that an open redirect (security). Such paths answer 404 instead.
    app.router.redirect_slashes = False
    runtime = Runtime(settings, RouteUrls(app.router, settings.public_url))
    app.state.runtime = runtime
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` workers: settings come from HUB_* variables."""
    settings, _ = with_admin_token(load_settings())
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
