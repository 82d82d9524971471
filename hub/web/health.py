"""Liveness and readiness for load balancers and orchestrators (no token needed).

``/healthz``: the process serves HTTP. ``/readyz``: it can also reach Redis, so requests
that need the store will be answered; 503 otherwise, so a load balancer sends traffic to
another replica until Redis is back.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.registry.client import StoreUnavailable
from hub.web.access import runtime
from hub.web.responses import json_response


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Redis answers and the registry can be read from it."""
    hub = runtime(request)
    try:
        await hub.redis.ping()
        await hub.registry.refresh_if_stale()
    except StoreUnavailable as exc:
        return json_response({"status": "unavailable", "error": exc.args[0]}, 503)
    except Exception as exc:  # a registry that cannot be read is not ready either
        return json_response({"status": "unavailable", "error": f"registry: {exc}"}, 503)
    return json_response({"status": "ready"})


routes = [
    Route("/healthz", healthz, methods=["GET"], name="healthz"),
    Route("/readyz", readyz, methods=["GET"], name="readyz"),
]
