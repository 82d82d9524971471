"""Liveness and readiness for load balancers and orchestrators (no token needed).

``/healthz``: the process serves HTTP. ``/readyz``: it can also reach Redis, so requests
that need the store will be answered; 503 otherwise, so a load balancer sends traffic to
another replica until Redis is back.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.registry.store import StoreUnavailable
from hub.web.access import runtime
from hub.web.responses import json_response


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await runtime(request).redis.ping()
    except StoreUnavailable as exc:
        return json_response({"status": "unavailable", "error": exc.args[0]}, 503)
    return json_response({"status": "ready"})


routes = [
    Route("/healthz", healthz, methods=["GET"], name="healthz"),
    Route("/readyz", readyz, methods=["GET"], name="readyz"),
]
