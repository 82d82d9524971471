"""The Versions module (version_information_endpoint): where parties learn the hub's URLs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.config import Settings
from hub.ocpi.envelope import ocpi_response
from hub.ocpi.models import (
    FUNCTIONAL_MODULES,
    VERSION,
    Endpoint,
    InterfaceRole,
    ModuleID,
    Version,
    VersionDetails,
)
from hub.runtime import runtime
from hub.web.access import authenticate

BASE = f"/ocpi/{VERSION}"


def module_url(settings: Settings, module: str, role: InterfaceRole) -> str:
    """The hub's own endpoint of a module and interface role."""
    return f"{settings.public_url}{BASE}/{module}/{role.lower()}"


def hub_endpoints(settings: Settings) -> list[Endpoint]:
    endpoints = [
        Endpoint(
            ModuleID.CREDENTIALS, InterfaceRole.SENDER, f"{settings.public_url}{BASE}/credentials"
        ),
        Endpoint(
            ModuleID.HUB_CLIENT_INFO,
            InterfaceRole.SENDER,
            f"{settings.public_url}{BASE}/hubclientinfo",
        ),
    ]
    for module in FUNCTIONAL_MODULES:
        for role in (InterfaceRole.SENDER, InterfaceRole.RECEIVER):
            endpoints.append(Endpoint(module, role, module_url(settings, module, role)))
    return endpoints


async def versions(request: Request) -> Response:
    await authenticate(request, allow_token_a=True)
    settings = runtime(request).settings
    return ocpi_response([Version(VERSION, f"{settings.public_url}{BASE}/details")])


async def version_details(request: Request) -> Response:
    await authenticate(request, allow_token_a=True)
    return ocpi_response(VersionDetails(VERSION, hub_endpoints(runtime(request).settings)))


routes = [
    Route("/ocpi/versions", versions, methods=["GET"]),
    Route(f"{BASE}/details", version_details, methods=["GET"]),
]
