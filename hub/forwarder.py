"""Sending a request on to a platform and relaying its answer back, for every module.

The body goes out byte for byte and comes back streamed: a 20 MB Locations page passes
through in chunks, never decoded. Failures to reach the receiver become hub status codes:
4003 when it cannot be connected to, 4002 when it does not answer in time, 4000 when what it
answers is not OCPI.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping

import aiohttp
import msgspec
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from yarl import URL

from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi import headers
from hub.ocpi.auth import authorization_header
from hub.ocpi.envelope import OcpiError, status_code_of
from hub.ocpi.status import StatusCode
from hub.registry import Platform
from hub.relays import LOCATION_TTL, Hop, Link, Relays

log = get_logger(__name__)

# Never copied from one leg to the other: hop-by-hop (RFC 9110 7.6.1) and what the hub sets.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
        "authorization",
        "date",
        "server",
        headers.REQUEST_ID,
        headers.CORRELATION_ID,
        headers.LINK,
        headers.LOCATION,
        *headers.ROUTING,
    }
)
SMALL_BODY = 256 * 1024  # answers up to this size are checked whole; larger ones stream


def routing_headers(sender: tuple[str, str], receiver: tuple[str, str]) -> dict[str, str]:
    return {
        headers.FROM_COUNTRY_CODE: sender[0],
        headers.FROM_PARTY_ID: sender[1],
        headers.TO_COUNTRY_CODE: receiver[0],
        headers.TO_PARTY_ID: receiver[1],
    }


class Upstream:
    """A platform's answer with its headers read and its body not yet; holds one slot."""

    def __init__(self, response: aiohttp.ClientResponse, slot: asyncio.Semaphore) -> None:
        self.response = response
        self._slot: asyncio.Semaphore | None = slot

    def release(self) -> None:
        self.response.release()
        if self._slot is not None:
            self._slot.release()
            self._slot = None


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings, relays: Relays) -> None:
        self.session = session
        self.relays = relays
        self.timeout = settings.forward_timeout
        self.concurrency = settings.platform_concurrency
        self._slots: dict[str, asyncio.Semaphore] = {}
        # Told when a platform cannot be connected to: evidence for a still-alive check.
        self.on_unreachable: Callable[[Platform], None] | None = None
        self._read_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )

    def outgoing_headers(
        self,
        incoming: Mapping[str, str],
        target: Platform,
        correlation_id: str,
        routing: Mapping[str, str],
    ) -> dict[str, str]:
        """End-to-end headers of the request, with the target's token, a NEW X-Request-ID,
        the SAME X-Correlation-ID (transport_and_format, "Unique message IDs")."""
        out = {k: v for k, v in incoming.items() if k.lower() not in _NOT_FORWARDED}
        out["Authorization"] = authorization_header(target.token_b or "", target.raw_token)
        out[headers.REQUEST_ID] = str(uuid.uuid4())
        out[headers.CORRELATION_ID] = correlation_id
        out.update(routing)
        return out

    async def call(
        self, target: Platform, method: str, url: str, out: Mapping[str, str], body: bytes | None
    ) -> Upstream:
        """Send and wait for the answer's headers, at most FORWARD_TIMEOUT seconds in all
        (waiting for one of the target platform's connection slots included)."""
        slot = self._slots.get(target.id)
        if slot is None:
            slot = self._slots[target.id] = asyncio.Semaphore(self.concurrency)
        acquired = False
        try:
            async with asyncio.timeout(self.timeout):
                await slot.acquire()
                acquired = True
                response = await self.session.request(
                    method,
                    url,
                    headers=out,
                    data=body or None,
                    timeout=self._read_timeout,
                    allow_redirects=False,
                )
        except TimeoutError:
            if acquired:
                slot.release()
            raise OcpiError(
                StatusCode.FORWARD_TIMEOUT,
                f"no answer from the receiver within {self.timeout:g} s",
            ) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            slot.release()
            if self.on_unreachable is not None:
                self.on_unreachable(target)
            raise OcpiError(
                StatusCode.RECEIVER_NOT_CONNECTED,
                f"receiver cannot be reached: {exc or type(exc).__name__}",
            ) from None
        except aiohttp.ClientError as exc:
            slot.release()
            raise OcpiError(
                StatusCode.HUB_ERROR, f"forwarding failed: {exc or type(exc).__name__}"
            ) from None
        return Upstream(response, slot)

    async def relay(
        self, upstream: Upstream, hop: Hop | None, routing: Mapping[str, str]
    ) -> Response:
        """The receiver's status and body, its pagination headers, links rewritten to the hub."""
        response = upstream.response
        try:
            out = [(k, v) for k, v in response.headers.items() if k.lower() not in _NOT_FORWARDED]
            out += list(routing.items())
            if hop is not None:
                out += await self._rewrite_links(response, hop)
            encoded = response.headers.get("Content-Encoding", "identity") != "identity"
            length = response.content_length
            if length is not None and length <= SMALL_BODY:
                body = await response.read()
                if not encoded:
                    _check_envelope(body)
                upstream.release()
                return Response(body, response.status, headers=dict(out))
            first = await _first_bytes(response)
            if not encoded and not first.lstrip().startswith(b"{"):
                raise _not_ocpi()
            if length is not None:
                out.append(("Content-Length", str(length)))
            return StreamedResponse(upstream, response.status, out, first)
        except BaseException:
            upstream.release()
            raise

    async def _rewrite_links(
        self, response: aiohttp.ClientResponse, hop: Hop
    ) -> list[tuple[str, str]]:
        """transport_and_format "Pagination": a next link into the receiver's platform is
        replaced by a hub URL that leads there for this requester only; likewise Location."""
        out = []
        next_link = response.links.get("next")
        if next_link is not None and str(next_link.get("url", "")):
            hub_url = await self.relays.link(Link(hop, str(next_link["url"])))
            out.append(("Link", f'<{hub_url}>; rel="next"'))
        location = response.headers.get(headers.LOCATION, "").strip()
        if location:
            target = str(response.url.join(URL(location)))
            out.append(("Location", await self.relays.link(Link(hop, target), LOCATION_TTL)))
        return out


def _not_ocpi() -> OcpiError:
    return OcpiError(
        StatusCode.HUB_ERROR, "the receiver answered something that is not an OCPI response"
    )


def _check_envelope(body: bytes) -> None:
    try:
        status_code_of(body)
    except msgspec.DecodeError:
        raise _not_ocpi() from None


async def _first_bytes(response: aiohttp.ClientResponse) -> bytes:
    """Read until the first non-blank byte (or the end), to tell JSON from anything else."""
    first = b""
    while not first.strip():
        chunk = await response.content.readany()
        if not chunk:
            break
        first += chunk
    return first


class StreamedResponse(Response):
    """Passes the platform's body through chunk by chunk: memory stays flat."""

    def __init__(
        self, upstream: Upstream, status: int, header_list: list[tuple[str, str]], first: bytes
    ) -> None:
        self.upstream = upstream
        self.status_code = status
        self.first = first
        self.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in header_list
        ]
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self.first:
                await send({"type": "http.response.body", "body": self.first, "more_body": True})
            async for chunk in self.upstream.response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("receiver's answer broke off while streaming", error=str(exc))
            raise
        finally:
            self.upstream.release()
