"""The Versions module (version_information_endpoint): where parties learn the hub's URLs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.ocpi.models import (
    VERSIONS,
    Endpoint,
    InterfaceRole,
    ModuleID,
    Version,
    VersionDetails,
    modules_of,
)
from hub.routing.urls import HubUrls
from hub.web.access import authenticate, runtime
from hub.web.responses import ocpi_response
from hub.web.urls import VERSION_PATH

# The Bookings chapter names its identifier "Booking", other places "bookings": the hub
# lists both, at the same URLs, so a platform finds it either way.
BOOKING_IDENTIFIER = "Booking"


def hub_endpoints(urls: HubUrls, version: str) -> list[Endpoint]:
    """Every endpoint of the hub in ``version``: credentials, the hubclientinfo Sender, and
    both interfaces of every functional module of that version."""
    endpoints = [
        Endpoint(ModuleID.CREDENTIALS, InterfaceRole.SENDER, urls("credentials", version=version)),
        Endpoint(
            ModuleID.HUB_CLIENT_INFO, InterfaceRole.SENDER, urls("hubclientinfo", version=version)
        ),
    ]
    for module in modules_of(version):
        for role in (InterfaceRole.SENDER, InterfaceRole.RECEIVER):
            url = urls("module", version=version, module=module, interface=role.lower(), rest="")
            endpoints.append(Endpoint(module, role, url))
            if module == ModuleID.BOOKINGS:  # mod_bookings: "Module Identifier: Booking"
                endpoints.append(Endpoint(BOOKING_IDENTIFIER, role, url))
    return endpoints


async def versions(request: Request) -> Response:
    """Every version the hub speaks, or only the one the URL names (``/ocpi/versions/2.2.1``,
    for strict parsers of 2.2.1's closed VersionNumber enum)."""
    await authenticate(request, allow_token_a=True)
    only = request.path_params.get("version")
    urls = runtime(request).urls
    return ocpi_response(
        [Version(v, urls("details", version=v)) for v in VERSIONS if only in (None, v)]
    )


async def version_details(request: Request) -> Response:
    await authenticate(request, allow_token_a=True)
    version = request.path_params["version"]
    return ocpi_response(VersionDetails(version, hub_endpoints(runtime(request).urls, version)))


routes = [
    Route("/ocpi/versions", versions, methods=["GET"], name="versions"),
    Route("/ocpi/versions/{version:ocpi_version}", versions, methods=["GET"], name="versions-of"),
    Route(f"{VERSION_PATH}/details", version_details, methods=["GET"], name="details"),
]
