"""Calls from the hub to a platform's configuration modules (versions, details, credentials).

Every failure becomes an OcpiError with the code the credentials chapter asks for: 3001 when
the platform's API cannot be used, 3002 when there is no mutual version, 3003 when the
expected endpoints are missing.
"""

from __future__ import annotations

from typing import Any, TypeVar

import aiohttp
import msgspec

from hub.ocpi import headers
from hub.ocpi.auth import authorization_header
from hub.ocpi.body import BadJson, decode_json
from hub.ocpi.envelope import Envelope, OcpiError
from hub.ocpi.models import (
    VERSIONS,
    Endpoint,
    ModuleID,
    Version,
    VersionDetails,
    modules_of,
)
from hub.ocpi.status import StatusCode
from hub.outbound import refused

T = TypeVar("T")

_envelope = msgspec.json.Decoder(Envelope)


class Negotiated(msgspec.Struct):
    """What the hub learns from a platform's versions and details endpoints."""

    version: str
    endpoints: list[Endpoint]

    def credentials_url(self) -> str:
        for endpoint in self.endpoints:
            if endpoint.identifier == ModuleID.CREDENTIALS:
                return endpoint.url
        raise AssertionError("negotiate() guarantees a credentials endpoint")


class PlatformClient:
    """One platform's configuration endpoints, called with the token the hub holds for it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        raw_token: bool = False,
        timeout: float = 10.0,
        correlation_id: str | None = None,
    ) -> None:
        self.session = session
        self.authorization = authorization_header(token, raw_token)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.correlation_id = correlation_id or headers.new_message_id()

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": self.authorization,
            headers.REQUEST_ID: headers.new_message_id(),
            headers.CORRELATION_ID: self.correlation_id,
        }

    async def call(self, method: str, url: str, type_: type[T], body: Any = None) -> T:
        """One OCPI call; returns ``data`` decoded as ``type_`` or raises OcpiError(3001).
        Redirects are not followed; a connection failure says only "cannot connect"."""
        request_headers = self._headers()
        payload = None
        if body is not None:
            payload = msgspec.json.encode(body)
            request_headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method,
                url,
                data=payload,
                headers=request_headers,
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
                location = response.headers.get("Location", "")
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise _unusable(f"{method} {url} failed: {_failure(exc)}") from None
        if 300 <= status < 400:
            # Security: a redirect would send the hub's request (its token too, on the same
            # host) to a URL the platform never named. None is followed, same origin or not.
            raise _unusable(
                f"{method} {url} answered HTTP {status}, a redirect to {location[:200]!r}: "
                "configuration calls follow no redirects"
            )
        try:
            envelope = decode_json(raw, _envelope)
        except BadJson:
            raise _unusable(
                f"{method} {url} answered HTTP {status} without an OCPI envelope"
            ) from None
        if status >= 300 or envelope.status_code != StatusCode.SUCCESS:
            detail = f": {envelope.status_message}" if envelope.status_message else ""
            code = envelope.status_code
            raise _unusable(f"{method} {url} answered HTTP {status}, status_code {code}{detail}")
        try:
            return msgspec.convert(envelope.data, type_, strict=False)
        except msgspec.ValidationError as exc:
            raise _unusable(f"{method} {url} answered data that is not valid: {exc}") from None

    async def negotiate(self, versions_url: str, wanted: str | None = None) -> Negotiated:
        """Versions -> details of ``wanted`` (the version whose credentials endpoint the
        platform called, credentials "PUT Method") when it offers that one, else of the
        newest version both sides speak; 3002 only when there is none. Checks what the hub
        needs from every platform."""
        versions = await self.call("GET", versions_url, list[Version])
        offered = {v.version: v for v in versions}
        mutual = [v for v in VERSIONS if v in offered]
        if not mutual:
            raise OcpiError(
                StatusCode.UNSUPPORTED_VERSION,
                f"no mutual OCPI version: the platform offers {sorted(offered) or 'none'}, "
                f"the hub speaks {' and '.join(VERSIONS)}",
            )
        version = wanted if wanted in mutual else mutual[0]
        details = await self.call("GET", offered[version].url, VersionDetails)
        endpoints = [
            Endpoint(ModuleID.normalize(e.identifier), e.role, e.url) for e in details.endpoints
        ]
        identifiers = {e.identifier for e in endpoints}
        if ModuleID.CREDENTIALS not in identifiers:
            raise OcpiError(
                StatusCode.NO_MATCHING_ENDPOINTS,
                f"the platform's {version} details list no credentials endpoint",
            )
        usable = identifiers & {*modules_of(version), ModuleID.HUB_CLIENT_INFO}
        if not usable:
            raise OcpiError(
                StatusCode.NO_MATCHING_ENDPOINTS,
                f"the platform's {version} details list no module the hub can use "
                f"(expected any of {', '.join(modules_of(version))} or hubclientinfo)",
            )
        return Negotiated(version, endpoints)


def _failure(exc: BaseException) -> str:
    """What went wrong, without telling a closed port from a filtered one or from an open one
    that does not speak HTTP (security: no port-scanning oracle for platforms)."""
    refusal = refused(exc)
    if refusal is not None:
        return str(refusal)
    if isinstance(exc, ValueError | aiohttp.NonHttpUrlClientError):
        return "not an http(s) URL"
    return "cannot connect"


def _unusable(message: str) -> OcpiError:
    return OcpiError(StatusCode.UNABLE_TO_USE_CLIENT_API, message)
