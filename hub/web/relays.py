"""The hub URLs that stand in for platform URLs: next pages and CDR locations (GET), and
response_url callbacks (POST). Only the platform each was handed to may use it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.ocpi.body import check_json
from hub.web.access import authenticate, runtime
from hub.web.functional import request_headers
from hub.web.responses import answer_response


async def follow_link(request: Request) -> Response:
    """A next page or CDR location handed out by the hub."""
    platform = await authenticate(request)
    relayed = await runtime(request).dispatcher.follow(
        platform,
        request.path_params["relay_id"],
        request_headers(request.scope),
        request.state.correlation_id,
    )
    return answer_response(relayed)


async def callback(request: Request) -> Response:
    """A receiver's asynchronous result, on its way to the requester's response_url."""
    platform = await authenticate(request)
    dispatcher = runtime(request).dispatcher
    found = await dispatcher.callback(platform, request.path_params["relay_id"])
    body = await request.body()
    if body:
        check_json(body)
    relayed = await dispatcher.call_back(
        found, body, request_headers(request.scope), request.state.correlation_id
    )
    return answer_response(relayed)


routes = [
    Route("/ocpi/hub/links/{relay_id}", follow_link, methods=["GET"], name="link"),
    Route("/ocpi/hub/callbacks/{relay_id}", callback, methods=["POST"], name="callback"),
]
