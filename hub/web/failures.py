"""What went wrong, as each edge answers it: an OCPI envelope, or the admin API's JSON.

One function per edge, used by Starlette's exception handlers and by the module endpoint,
which the hub's front reaches without Starlette's error layers (hub/web/app.py).
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.types import Scope

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode
from hub.registry.client import StoreUnavailable
from hub.registry.errors import RegistryError
from hub.registry.ratelimit import RateLimited
from hub.web.access import AdminError
from hub.web.errors import admin_http, answer_of, as_ocpi
from hub.web.responses import error_response, json_response, ocpi_response

# What the hub answers for: anything else is a bug, answered 500 by RequestContext.
ANSWERED = (OcpiError, RegistryError, StoreUnavailable, RateLimited, AdminError)


def _unavailable(exc: StoreUnavailable) -> str:
    """Redis cannot be reached or did not answer in time: the request changed nothing the
    hub knows of, and the caller may retry (``/readyz`` says when)."""
    return f"the hub cannot reach its store, retry later: {exc.args[0]}"


async def failure(scope: Scope, exc: Exception, admin: bool = False) -> Response:
    """The answer to one of ``ANSWERED``: the admin API's JSON when ``admin`` (or for an
    ``AdminError``), else an OCPI envelope."""
    if isinstance(exc, AdminError) or (admin and not isinstance(exc, RateLimited)):
        return _admin_failure(exc)
    return await _ocpi_failure(scope, exc)


async def _ocpi_failure(scope: Scope, exc: Exception) -> Response:
    """A platform over its rate limit gets 429, nothing forwarded, and when to come back;
    held for a moment first (``RateLimited``), and left out of the request log (the limiter
    logs a count instead), so that a flood costs the hub as little as possible."""
    if isinstance(exc, OcpiError):
        return error_response(exc)
    if isinstance(exc, RegistryError):
        return error_response(as_ocpi(exc))
    if isinstance(exc, StoreUnavailable):
        headers = {"Retry-After": "1"}
        return ocpi_response(None, StatusCode.SERVER_ERROR, _unavailable(exc), 503, headers)
    assert isinstance(exc, RateLimited)
    scope.setdefault("state", {})["unlogged"] = True
    await asyncio.sleep(exc.hold)
    headers = {"Retry-After": str(exc.retry_after)}
    return ocpi_response(None, StatusCode.CLIENT_ERROR, exc.message, 429, headers)


def _admin_failure(exc: Exception) -> Response:
    """``{"error": ...}`` and an HTTP status, with the OCPI status code where there is one,
    so an operator's tooling can tell them apart."""
    if isinstance(exc, AdminError):
        return json_response({"error": exc.message}, exc.http_status)
    if isinstance(exc, OcpiError):
        body = {"error": exc.message, "status_code": exc.status_code}
        return json_response(body, admin_http(exc))
    if isinstance(exc, RegistryError):
        answer = answer_of(exc)
        body = {"error": exc.message, "status_code": answer.status_code}
        return json_response(body, answer.admin_http)
    assert isinstance(exc, StoreUnavailable)
    return json_response({"error": _unavailable(exc)}, 503, {"Retry-After": "1"})
