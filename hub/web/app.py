"""The Starlette application: routes of every module, error handling, start and stop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from hub.config import Settings, load_settings, with_admin_token
from hub.logs import configure_logging
from hub.ocpi.envelope import OcpiError, error_response, ocpi_response
from hub.ocpi.status import StatusCode
from hub.runtime import Runtime
from hub.web import admin, credentials, functional, hubclientinfo, versions
from hub.web.access import AdminError
from hub.web.middleware import RequestContext


async def on_ocpi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OcpiError)
    return error_response(exc)


async def on_admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return admin.json_response({"error": exc.message}, exc.http_status)


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
    if request.url.path.startswith("/admin"):
        return admin.json_response({"error": message}, exc.status_code, headers)
    return ocpi_response(None, StatusCode.CLIENT_ERROR, message, exc.status_code, headers)


def create_app(settings: Settings) -> Starlette:
    hub = Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app = Starlette(
        routes=[
            *functional.routes,  # first: nearly all traffic, and Starlette tries in order
            *versions.routes,
            *credentials.routes,
            *hubclientinfo.routes,
            *admin.routes,
        ],
        middleware=[Middleware(RequestContext, max_body_bytes=settings.max_body_bytes)],
        exception_handlers={
            OcpiError: on_ocpi_error,
            AdminError: on_admin_error,
            HTTPException: on_http_error,
        },
        lifespan=lifespan,
    )
    app.state.runtime = hub
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` workers: settings come from HUB_* variables."""
    settings, _ = with_admin_token(load_settings())
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
