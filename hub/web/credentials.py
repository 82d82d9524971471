"""The Credentials module's endpoints (credentials.asciidoc): the hub as Receiver.

A platform POSTs with CREDENTIALS_TOKEN_A and gets token C; PUT rotates, DELETE unregisters.
The handshake itself lives in ``hub/onboarding/handshake.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.logs import get_logger
from hub.ocpi import headers
from hub.ocpi.auth import token_candidates
from hub.ocpi.body import decode_request
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.models import Credentials
from hub.ocpi.status import StatusCode
from hub.onboarding.handshake import suspended
from hub.registry.errors import RegistryError
from hub.registry.events import PlatformEvent
from hub.registry.records import Platform, PlatformState
from hub.registry.tokens import token_hash
from hub.web.access import authenticate, runtime
from hub.web.responses import ocpi_response
from hub.web.urls import VERSION_PATH

log = get_logger(__name__)


def _not_registered(method: str) -> OcpiError:
    return OcpiError(
        StatusCode.CLIENT_ERROR,
        f"{method} needs a registered platform: register first with POST",
        405,
        headers={"Allow": "POST"},
    )


async def _exchange(
    request: Request,
    platform: Platform,
    still_valid: Callable[[Platform], bool],
    conflict: OcpiError,
    cause: str,
    event: str,
) -> Response:
    """POST and PUT alike: the platform's Credentials in, the hub's (with token C) out; the
    attempt is recorded in the platform's events, whatever came of it."""
    version = request.path_params["version"]
    hub = runtime(request)
    try:
        body = decode_request(await request.body(), Credentials, "Credentials object")
        ours = await hub.handshake.exchange(
            platform,
            body,
            still_valid,
            conflict,
            cause,
            request.state.correlation_id,
            version,
            rotating=request.method == "PUT",
        )
    except (OcpiError, RegistryError) as exc:
        outcome = exc.message
        await hub.events.record(platform.id, PlatformEvent(now(), event, "platform", outcome))
        raise
    await hub.events.record(platform.id, PlatformEvent(now(), event, "platform", "ok", version))
    return ocpi_response(ours)


async def post_credentials(request: Request) -> Response:
    """Registration: fetch the platform's endpoints with token B, answer with token C."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state == PlatformState.REGISTERED:
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            "platform is already registered: use PUT to update its credentials",
            405,
            headers={"Allow": "GET, PUT, DELETE"},
        )
    token_a_hash = token_hash(_presented_token(request, platform))
    return await _exchange(
        request,
        platform,
        lambda current: (
            current.state == PlatformState.PENDING and token_a_hash in current.token_hashes
        ),
        OcpiError(StatusCode.CLIENT_ERROR, "token A was used by another request", 401),
        "platform registered",
        "register",
    )


async def put_credentials(request: Request) -> Response:
    """Update: re-fetch endpoints with the new token B, issue a new token C, atomically."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state != PlatformState.REGISTERED:
        raise _not_registered("PUT")
    # Another update (or the retiring of old tokens) may land meanwhile; what matters is
    # that the token this update came with is still the platform's.
    presented = token_hash(_presented_token(request, platform))
    return await _exchange(
        request,
        platform,
        lambda current: (
            current.state == PlatformState.REGISTERED and presented in current.token_hashes
        ),
        OcpiError(StatusCode.CLIENT_ERROR, "credentials changed meanwhile; retry", 409),
        "platform credentials updated",
        "update" if platform.version == request.path_params["version"] else "version switch",
    )


async def delete_credentials(request: Request) -> Response:
    """Unregistration: tokens void both ways, the platform's parties become SUSPENDED."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state != PlatformState.REGISTERED:
        raise _not_registered("DELETE")
    hub = runtime(request)
    await hub.writer.update(platform.id, suspended, "platform unregistered")
    await hub.events.record(platform.id, PlatformEvent(now(), "unregister", "platform", "ok"))
    log.info("platform unregistered")
    return ocpi_response(None)


async def get_credentials(request: Request) -> Response:
    """The hub's credentials for the caller; the token is the one it called with (token C)."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state != PlatformState.REGISTERED:
        raise _not_registered("GET")
    hub = runtime(request)
    token = _presented_token(request, platform)
    snapshot = await hub.registry.snapshot()
    # The platform's own version: its credentials endpoint of the other tree answers the
    # same (a PUT there is what switches).
    version = platform.version or request.path_params["version"]
    return ocpi_response(hub.handshake.credentials(snapshot, token, platform.id, version))


def _presented_token(request: Request, platform: Platform) -> str:
    for token in token_candidates(request.headers.get(headers.AUTHORIZATION)):
        if token_hash(token) in platform.token_hashes:
            return token
    raise AssertionError("authenticate() accepted one of these tokens")


routes = [
    Route(f"{VERSION_PATH}/credentials", get_credentials, methods=["GET"], name="credentials"),
    Route(f"{VERSION_PATH}/credentials", post_credentials, methods=["POST"]),
    Route(f"{VERSION_PATH}/credentials", put_credentials, methods=["PUT"]),
    Route(f"{VERSION_PATH}/credentials", delete_credentials, methods=["DELETE"]),
]
