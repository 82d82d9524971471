"""The operator's API under ``/admin`` (Bearer admin token): onboarding and watching platforms.

Plain JSON, not OCPI envelopes: errors are ``{"error": "..."}`` with a fitting HTTP status.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.access import AdminError, require_admin
from hub.runtime import runtime

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(data), status_code=status, media_type="application/json")


async def read_body(request: Request, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(await request.body(), type=type_)
    except msgspec.ValidationError as exc:
        raise AdminError(422, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise AdminError(400, f"request body is not valid JSON: {exc}") from None


class NewPlatform(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


async def create_platform(request: Request) -> Response:
    require_admin(request)
    body = await read_body(request, NewPlatform)
    hub = runtime(request)
    platform, token_a = await hub.registry.create_platform(body.name)
    return json_response(
        {
            "id": platform.id,
            "name": platform.name,
            "token_a": token_a,
            "versions_url": hub.versions_url,
        },
        201,
    )


async def list_platforms(request: Request) -> Response:
    require_admin(request)
    snapshot = await runtime(request).registry.refresh_if_stale()
    platforms = sorted(snapshot.platforms.values(), key=lambda p: p.created)
    return json_response([p.public() for p in platforms])


async def get_platform(request: Request) -> Response:
    require_admin(request)
    snapshot = await runtime(request).registry.refresh_if_stale()
    platform = snapshot.platforms.get(request.path_params["platform_id"])
    if platform is None:
        raise AdminError(404, f"unknown platform {request.path_params['platform_id']}")
    return json_response(platform.public())


routes = [
    Route("/admin/platforms", create_platform, methods=["POST"]),
    Route("/admin/platforms", list_platforms, methods=["GET"]),
    Route("/admin/platforms/{platform_id}", get_platform, methods=["GET"]),
]
