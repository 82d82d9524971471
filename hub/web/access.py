"""Who is calling: the platform behind an OCPI credentials token, or the operator."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from hub.logs import bind_request
from hub.ocpi import headers
from hub.ocpi.auth import token_candidates
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.status import StatusCode
from hub.registry.records import Platform, TokenKind
from hub.registry.traffic import CURRENT
from hub.runtime import Runtime


def runtime(request: Request) -> Runtime:
    """What this hub process holds (set on the app by ``create_app``)."""
    runtime: Runtime = request.app.runtime
    return runtime


class AdminError(Exception):
    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


async def authenticate(request: Request, allow_token_a: bool = False) -> Platform:
    """The calling platform of a request to one of the hub's own endpoints (``identify``)."""
    return await identify(
        runtime(request), request.headers.get(headers.AUTHORIZATION), allow_token_a
    )


async def identify(hub: Runtime, header: str | None, allow_token_a: bool = False) -> Platform:
    """The platform whose token the Authorization ``header`` carries.

    HTTP 401 for a missing or unknown token, and for token A outside versions/credentials;
    HTTP 429 (``RateLimited``) for a platform over its rate limit. Every request a platform
    makes passes here, so this is where its limit applies; the hub's own calls do not."""
    found = await hub.registry.authenticate(header)
    if found is None:
        if not token_candidates(header):
            raise OcpiError(
                StatusCode.CLIENT_ERROR, "missing Authorization: Token <credentials token>", 401
            )
        raise OcpiError(StatusCode.CLIENT_ERROR, "unknown credentials token", 401)
    platform, kind = found
    if kind == TokenKind.RETIRING and not (
        platform.retiring_until is not None and now() < platform.retiring_until
    ):
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            "this credentials token was replaced by a credentials update: use the new one",
            401,
        )
    if kind == TokenKind.UNCONFIRMED:
        hub.confirm_token(platform.id)  # it took the hub's update whose answer was lost
    elif kind == TokenKind.CREDENTIALS and platform.retiring_until is not None:
        replaced = frozenset(h for h, k in platform.token_hashes.items() if k == TokenKind.RETIRING)
        hub.retire_old_tokens(platform.id, replaced)  # its first call with the new token
    if kind == TokenKind.REGISTRATION and not allow_token_a:
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            "CREDENTIALS_TOKEN_A is only valid for versions and credentials",
            401,
        )
    hop = CURRENT.get()
    if hop is not None:
        hop.platform = platform.id
    bind_request(platform_id=platform.id)
    if hub.registry.touch_due(platform.id):
        hub.detach(hub.registry.touch(platform.id))  # off the request path
    if platform.id in (hub.registry.current or await hub.registry.snapshot()).offline:
        hub.revive(platform.id)
    await hub.limiter.admit(platform)  # after the above: a limited platform is still alive
    return platform


def require_admin(request: Request) -> None:
    require_bearer(
        request,
        [runtime(request).settings.admin_token],
        "admin API needs Authorization: Bearer <admin token>",
    )


def require_bearer(request: Request, tokens: list[str], refusal: str) -> None:
    """401 unless ``Authorization: Bearer`` carries one of ``tokens``. Compared as bytes: the
    header's bytes as sent (Starlette decodes them as Latin-1) with each token's UTF-8, in
    constant time; a str comparison raises on non-ASCII input. An empty token (an emptied
    token file) opens nothing."""
    scheme, _, value = request.headers.get(headers.AUTHORIZATION, "").partition(" ")
    presented = value.strip().encode("latin-1")
    allowed = [token.encode("utf-8") for token in tokens if token]
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(presented, t) for t in allowed):
        raise AdminError(401, refusal)


async def known_platform(request: Request) -> Platform:
    """The admin path's platform (``platform_id``), 404 unless the registry has it."""
    require_admin(request)
    platform_id = request.path_params["platform_id"]
    platform = (await runtime(request).registry.refresh_if_stale()).platforms.get(platform_id)
    if platform is None:
        raise AdminError(404, f"unknown platform {platform_id}")
    return platform
