"""The Credentials module (credentials.asciidoc), with the hub on either side of the handshake.

As Receiver, a platform POSTs with CREDENTIALS_TOKEN_A and gets token C; PUT rotates,
DELETE unregisters. As Sender, an operator asks the hub to connect to a platform's versions URL
with the token A that platform issued. Either way nothing is stored until every call has
succeeded, and a failure leaves the previous state in force.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.logs import get_logger
from hub.ocpi import headers
from hub.ocpi.auth import token_candidates
from hub.ocpi.body import decode_request
from hub.ocpi.envelope import OcpiError, ocpi_response
from hub.ocpi.models import (
    VERSION,
    BusinessDetails,
    Credentials,
    CredentialsRole,
    Role,
)
from hub.ocpi.status import StatusCode
from hub.onboarding.client import Negotiated, PlatformClient
from hub.registry.registry import Platform, PlatformState, Snapshot, TokenKind
from hub.registry.tokens import new_token, token_hash
from hub.runtime import Runtime, runtime
from hub.web.access import authenticate

log = get_logger(__name__)


def hub_credentials(hub: Runtime, snapshot: Snapshot, token: str, for_platform: str) -> Credentials:
    """The hub's credentials: itself (role OTHER) first, then every party reachable through it.

    2.3.0 asks a hub to list the parties reachable through it in ``roles``; the hub itself is
    always listed, so ``roles`` is never empty and names the party that broadcasts come from.
    """
    settings = hub.settings
    roles = [
        CredentialsRole(
            role=Role.OTHER,
            business_details=BusinessDetails(name=settings.business_name),
            party_id=settings.party_id,
            country_code=settings.country_code,
        )
    ]
    for platform in sorted(snapshot.platforms.values(), key=lambda p: p.created):
        if platform.id != for_platform and platform.state == PlatformState.REGISTERED:
            roles.extend(platform.roles)
    return Credentials(
        token=token, url=hub.versions_url, roles=roles, hub_party_id=settings.hub_party_id
    )


def _not_registered(method: str) -> OcpiError:
    return OcpiError(
        StatusCode.CLIENT_ERROR,
        f"{method} needs a registered platform: register first with POST",
        405,
        headers={"Allow": "POST"},
    )


def _client(hub: Runtime, request: Request, token: str, platform: Platform) -> PlatformClient:
    return PlatformClient(
        hub.session,
        token,
        platform.raw_token,
        hub.settings.forward_timeout,
        request.state.correlation_id,
    )


def _registered(platform: Platform, body: Credentials, negotiated: Negotiated) -> Platform:
    return msgspec.structs.replace(
        platform,
        state=PlatformState.REGISTERED,
        versions_url=body.url,
        version=negotiated.version,
        endpoints=negotiated.endpoints,
        roles=body.roles,
        token_b=body.token,
    )


async def _exchange(
    request: Request,
    platform: Platform,
    still_valid: Callable[[Platform], bool],
    conflict: OcpiError,
    cause: str,
) -> Response:
    """Registration and update alike: fetch the platform's endpoints with its (new) token B,
    then switch to them and to a new token C in one registry write, or change nothing."""
    body = decode_request(await request.body(), Credentials, "Credentials object")
    hub = runtime(request)
    negotiated = await _client(hub, request, body.token, platform).negotiate(body.url)
    token_c = new_token()

    def switch(current: Platform) -> Platform:
        if not still_valid(current):
            raise conflict
        return msgspec.structs.replace(
            _registered(current, body, negotiated),
            token_hashes={token_hash(token_c): TokenKind.CREDENTIALS},
        )

    updated = await hub.registry.update(platform.id, switch, cause)
    log.info(cause, parties=len(updated.roles), version=updated.version)
    snapshot = await hub.registry.snapshot()
    return ocpi_response(hub_credentials(hub, snapshot, token_c, platform.id))


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
    )


async def put_credentials(request: Request) -> Response:
    """Update: re-fetch endpoints with the new token B, issue a new token C, atomically."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state != PlatformState.REGISTERED:
        raise _not_registered("PUT")
    old_hashes = set(platform.token_hashes)
    return await _exchange(
        request,
        platform,
        lambda current: (
            current.state == PlatformState.REGISTERED and set(current.token_hashes) == old_hashes
        ),
        OcpiError(StatusCode.CLIENT_ERROR, "credentials changed meanwhile; retry", 409),
        "platform credentials updated",
    )


async def delete_credentials(request: Request) -> Response:
    """Unregistration: tokens void both ways, the platform's parties become SUSPENDED."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state != PlatformState.REGISTERED:
        raise _not_registered("DELETE")
    await runtime(request).registry.update(platform.id, suspended, "platform unregistered")
    log.info("platform unregistered")
    return ocpi_response(None)


async def get_credentials(request: Request) -> Response:
    """The hub's credentials for the caller; the token is the one it called with (token C)."""
    platform = await authenticate(request, allow_token_a=True)
    if platform.state != PlatformState.REGISTERED:
        raise _not_registered("GET")
    hub = runtime(request)
    token = _presented_token(request, platform)
    return ocpi_response(hub_credentials(hub, await hub.registry.snapshot(), token, platform.id))


def _presented_token(request: Request, platform: Platform) -> str:
    for token in token_candidates(request.headers.get(headers.AUTHORIZATION)):
        if token_hash(token) in platform.token_hashes:
            return token
    raise AssertionError("authenticate() accepted one of these tokens")


def suspended(platform: Platform) -> Platform:
    return msgspec.structs.replace(
        platform, state=PlatformState.SUSPENDED, token_hashes={}, token_b=None
    )


async def connect(hub: Runtime, platform_id: str, versions_url: str, token_a: str) -> Platform:
    """The hub as Sender: register with a platform that issued ``token_a`` to the hub.

    The token the platform will call the hub with is valid (for versions and credentials only)
    while the platform handles the POST, since it fetches the hub's versions with it.
    """
    platform = await hub.registry.get(platform_id)
    if platform is None:
        raise OcpiError(StatusCode.CLIENT_ERROR, f"unknown platform {platform_id}", 404)
    if platform.state != PlatformState.PENDING:
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            f"platform {platform_id} is {platform.state}: connect needs a new (PENDING) platform",
            409,
        )
    client = PlatformClient(hub.session, token_a, platform.raw_token, hub.settings.forward_timeout)
    negotiated = await client.negotiate(versions_url)
    token_for_platform = new_token()
    pending_hash = token_hash(token_for_platform)

    def add_pending(current: Platform) -> Platform:
        hashes = {**current.token_hashes, pending_hash: TokenKind.REGISTRATION}
        return msgspec.structs.replace(current, token_hashes=hashes)

    def drop_pending(current: Platform) -> Platform:
        hashes = {k: v for k, v in current.token_hashes.items() if k != pending_hash}
        return msgspec.structs.replace(current, token_hashes=hashes)

    await hub.registry.update(platform_id, add_pending)
    try:
        ours = hub_credentials(hub, await hub.registry.snapshot(), token_for_platform, platform_id)
        theirs = await client.call("POST", negotiated.credentials_url(), Credentials, ours)
    except BaseException:
        await hub.registry.update(platform_id, drop_pending)
        raise

    def register(current: Platform) -> Platform:
        registered = _registered(current, theirs, negotiated)
        return msgspec.structs.replace(
            registered,
            versions_url=versions_url,
            token_hashes={pending_hash: TokenKind.CREDENTIALS},
        )

    try:
        updated = await hub.registry.update(platform_id, register, "connected by operator")
    except OcpiError:
        # The platform registered the hub, but the hub cannot keep it (a party is taken):
        # undo on their side too, so neither side holds half a connection.
        undo = PlatformClient(
            hub.session, theirs.token, platform.raw_token, hub.settings.forward_timeout
        )
        try:
            await undo.call("DELETE", negotiated.credentials_url(), object)
        except OcpiError as exc:
            log.warning("could not undo registration at the platform", error=exc.message)
        await hub.registry.update(platform_id, drop_pending)
        raise
    log.info("connected to platform", platform_id=platform_id, parties=len(updated.roles))
    return updated


routes = [
    Route(f"/ocpi/{VERSION}/credentials", get_credentials, methods=["GET"]),
    Route(f"/ocpi/{VERSION}/credentials", post_credentials, methods=["POST"]),
    Route(f"/ocpi/{VERSION}/credentials", put_credentials, methods=["PUT"]),
    Route(f"/ocpi/{VERSION}/credentials", delete_credentials, methods=["DELETE"]),
]
