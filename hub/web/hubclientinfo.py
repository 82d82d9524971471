"""The hubclientinfo Sender interface: the list of every party the hub knows, paginated."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.background.clientinfo import client_info
from hub.ocpi import headers
from hub.ocpi.envelope import Envelope, now
from hub.ocpi.pagination import parse_paging
from hub.web.access import authenticate, runtime
from hub.web.urls import VERSION_PATH


async def list_client_info(request: Request) -> Response:
    """The Sender interface: every ClientInfo object, paginated (transport_and_format,
    "Pagination"), oldest last_updated first so pages stay stable while a client walks;
    each party as the caller sees it under the routing policy."""
    platform = await authenticate(request)
    hub = runtime(request)
    paging = parse_paging(request.url.query)
    snapshot = await hub.registry.snapshot()
    matching = sorted(
        (
            p
            for p in snapshot.parties.values()
            if (paging.date_from is None or p.last_updated >= paging.date_from)
            and (paging.date_to is None or p.last_updated < paging.date_to)
        ),
        key=lambda p: (p.last_updated, p.key),
    )
    window = matching[paging.offset : paging.offset + paging.limit]
    sees = hub.policy.sees
    page = [client_info(p, sees(snapshot, platform.id, p.code)) for p in window]
    response_headers = {headers.TOTAL_COUNT: str(len(matching)), headers.LIMIT: str(paging.limit)}
    version = request.path_params["version"]
    link = paging.next_link(hub.urls("hubclientinfo", version=version), len(matching))
    if link:
        response_headers["Link"] = link
    body = msgspec.json.encode(Envelope(data=page, status_code=1000, timestamp=now()))
    return Response(body, headers=response_headers, media_type="application/json")


routes = [
    Route(f"{VERSION_PATH}/hubclientinfo", list_client_info, methods=["GET"], name="hubclientinfo"),
    # The spec's examples end the URL with a slash: the same list, no redirect.
    Route(f"{VERSION_PATH}/hubclientinfo/", list_client_info, methods=["GET"]),
]
