"""The Versions module (version_information_endpoint): where parties learn the hub's URLs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.ocpi.models import (
    FUNCTIONAL_MODULES,
    VERSION,
    Endpoint,
    InterfaceRole,
    ModuleID,
    Version,
    VersionDetails,
)
from hub.routing.urls import HubUrls
from hub.web.access import authenticate, runtime
from hub.web.responses import ocpi_response

# The Bookings chapter names its identifier "Booking", other places "bookings": the hub
# lists both, at the same URLs, so a platform finds it either way.
BOOKING_IDENTIFIER = "Booking"


def hub_endpoints(urls: HubUrls) -> list[Endpoint]:
    """Every endpoint of the hub: credentials, the hubclientinfo Sender, and both interfaces
    of every functional module."""
    endpoints = [
        Endpoint(ModuleID.CREDENTIALS, InterfaceRole.SENDER, urls("credentials")),
        Endpoint(ModuleID.HUB_CLIENT_INFO, InterfaceRole.SENDER, urls("hubclientinfo")),
    ]
    for module in FUNCTIONAL_MODULES:
        for role in (InterfaceRole.SENDER, InterfaceRole.RECEIVER):
            url = urls("module", module=module, interface=role.lower(), rest="")
            endpoints.append(Endpoint(module, role, url))
            if module == ModuleID.BOOKINGS:  # mod_bookings: "Module Identifier: Booking"
                endpoints.append(Endpoint(BOOKING_IDENTIFIER, role, url))
    return endpoints


async def versions(request: Request) -> Response:
    await authenticate(request, allow_token_a=True)
    return ocpi_response([Version(VERSION, runtime(request).urls("details"))])


async def version_details(request: Request) -> Response:
    await authenticate(request, allow_token_a=True)
    return ocpi_response(VersionDetails(VERSION, hub_endpoints(runtime(request).urls)))


routes = [
    Route("/ocpi/versions", versions, methods=["GET"], name="versions"),
    Route(f"/ocpi/{VERSION}/details", version_details, methods=["GET"], name="details"),
]
