"""The hub's ASGI application: routes of every module, each edge's error answers, start and
stop, and a front that takes functional module requests, nearly all traffic, straight to
their endpoint."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.config import Settings, load_settings, with_admin_token
from hub.logs import configure_logging
from hub.ocpi.status import StatusCode
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
from hub.web.failures import ANSWERED, failure
from hub.web.middleware import RequestContext
from hub.web.responses import json_response, ocpi_response
from hub.web.urls import RouteUrls


def _admin(request: Request) -> bool:
    return request.url.path.startswith("/admin")


async def on_failure(request: Request, exc: Exception) -> Response:
    """Errors the hub answers for (``failures.ANSWERED``), outside the module endpoint."""
    return await failure(request.scope, exc, admin=_admin(request))


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


class Hub(Starlette):
    """Starlette with the hub's front: ``RequestContext`` (ids, body cap, the 500 guard, the
    request log), then the module route tried first and, when it matches, its endpoint
    called at once; every other request goes through Starlette's exception layer and router.

    The module endpoint answers its own errors (hub/web/failures.py), so a routed request
    passes no framework layer it does not need: they were a fifth of its CPU. Starlette's
    own 500 layer is left out, since ``RequestContext`` is the hub's, outermost."""

    runtime: Runtime  # what this hub process holds: set by ``create_app``

    def __init__(self, settings: Settings, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.front = RequestContext(self._dispatch, max_body_bytes=settings.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        await self.front(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and functional.matches(scope):
            await functional.endpoint(scope, receive, send)
            return
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        return ExceptionMiddleware(self.router, handlers=self.exception_handlers)


def create_app(settings: Settings) -> Hub:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]
    handlers = {answered: on_failure for answered in ANSWERED}
    handlers[HTTPException] = on_http_error
    app = Hub(
        settings,
        routes=[
            *functional.routes,
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
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    # Starlette answers a path with a stray slash by a redirect built from the Host header:
    # a forged Host makes that an open redirect (security). Such paths answer 404 instead.
    app.router.redirect_slashes = False
    runtime = Runtime(settings, RouteUrls(app.router, settings.public_url))
    app.runtime = runtime
    return app


def app_from_env() -> Hub:
    """Factory for ``uvicorn --factory`` workers: settings come from HUB_* variables."""
    settings, _ = with_admin_token(load_settings())
    configure_logging(settings.log_level, settings.log_format)
    return serving(create_app(settings))


# Allocations between two collections of the young generation (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def serving(app: Hub) -> Hub:
    """The app as a server process runs it, with the garbage collector set for a server.

    What was made before serving (modules, the app) lives as long as the process: frozen,
    it is left out of every collection. A routed request allocates some hundreds of
    containers and frees them by reference counting (the hot path makes no garbage only a
    collection finds), so the young generation is collected less often: at the default, the
    collector took about 3 % of the hub's CPU under load. Only a serving process does this:
    tests make many apps in one process."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return app
