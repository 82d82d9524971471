"""Sending a request on to a platform and relaying its answer back, for every module.

The body goes out byte for byte and comes back streamed: a 20 MB Locations page passes
through in chunks, never decoded. Failures to reach the receiver become hub status codes:
4003 when it cannot (or, by hub/outbound.py, may not) be connected to, 4002 when it does not
answer in time, 4000 when what it answers is not OCPI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDictProxy
from yarl import URL

from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi import headers
from hub.ocpi.auth import authorization_header
from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode
from hub.outbound import refused
from hub.registry.records import Platform
from hub.registry.traffic import Exchange, TrafficLog, elapsed_ms
from hub.routing.relays import Hop, Link, Relays
from hub.routing.urls import Origin, origin, origins

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
_STALLED = "the receiver's answer stalled"


class Upstream:
    """A platform's answer with its headers read, and its body read whole (``body``) when a
    relayed answer is small, else not yet; holds one slot."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        slot: asyncio.Semaphore,
        target: Platform,
        body: bytes | None = None,
    ) -> None:
        self.response = response
        self.target = target
        self.body = body
        self._slot: asyncio.Semaphore | None = slot
        self.hop: Exchange | None = None
        self._traffic: TrafficLog | None = None

    async def chunk(self, seconds: float) -> bytes:
        """The next piece of the body (b"" at its end), within ``seconds``: aiohttp does not
        bound the reads of a relayed answer (see ``Forwarder.call``)."""
        async with asyncio.timeout(seconds):
            return await self.response.content.readany()

    def answered(self, body: bytes) -> bytes:
        """The whole body read: its OCPI status goes to the traffic log's hop."""
        if self.hop is not None:
            self.hop.ocpi_status = status_of(body)
            if self.hop.ocpi_status is None:
                self.hop.error = "not an OCPI response"
        return body

    def release(self) -> None:
        self.response.release()
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        if self.hop is not None and self._traffic is not None:
            self._traffic.record(self.hop)
            self.hop = None


_DROPPED = frozenset(name.encode() for name in _NOT_FORWARDED)
RawHeaders = list[tuple[bytes, bytes]]


class Relayed(NamedTuple):
    """A receiver's answer on its way back: status and headers ready, and either the whole
    body (``upstream`` None) or its first bytes with the rest still to stream."""

    status: int
    headers: RawHeaders
    first: bytes
    upstream: Upstream | None
    timeout: float  # seconds the requester gets to take each chunk
    ocpi_status: int | None = None  # the body's status_code, when read whole


class Forwarder:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        relays: Relays,
        traffic: TrafficLog | None = None,
    ) -> None:
        self.session = session
        self.relays = relays
        self.traffic = traffic
        self.timeout = settings.forward_timeout
        self.concurrency = settings.platform_concurrency
        # Made in the loop it serves; asking for the running loop is a system call on
        # Python 3.11 (it checks the process id).
        self._loop = asyncio.get_running_loop()
        # Per platform and lane: requests routed for a requester, and the hub's own
        # background deliveries (broadcasts, ClientInfo), which must not crowd them out.
        self._slots: dict[tuple[str, bool], asyncio.Semaphore] = {}
        self._authorization: dict[tuple[str, bool], str] = {}
        # Told when a platform cannot be connected to: evidence for a still-alive check.
        self.on_unreachable: Callable[[Platform], None] | None = None
        # Connecting gets FORWARD_TIMEOUT, and ``call`` bounds the whole wait for the answer
        # by one deadline. After that, each read of a whole answer (``fetch``) gets
        # FORWARD_TIMEOUT from aiohttp; a relayed answer is read by ``relay``, which bounds
        # its reads itself: aiohttp's timer per read was 1.5 % of a routed request's CPU.
        self._fetched = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        self._relayed = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)

    def outgoing_headers(
        self,
        incoming: Mapping[str, str],
        target: Platform,
        correlation_id: str,
        routing: Mapping[str, str],
    ) -> dict[str, str]:
        """End-to-end headers of the request (``incoming`` has lower-case names), with the
        target's token, a NEW X-Request-ID and the SAME X-Correlation-ID
        (transport_and_format, "Unique message IDs")."""
        out = {k: v for k, v in incoming.items() if k not in _NOT_FORWARDED}
        out["authorization"] = self._authorization_of(target)
        out[headers.REQUEST_ID] = headers.new_message_id()
        out[headers.CORRELATION_ID] = correlation_id
        out.update(routing)
        return out

    def _authorization_of(self, target: Platform) -> str:
        key = (target.token_b or "", target.raw_token)
        value = self._authorization.get(key)
        if value is None:
            if len(self._authorization) > 10_000:  # tokens rotate; never grow without bound
                self._authorization.clear()
            value = self._authorization[key] = authorization_header(*key)
        return value

    async def call(
        self,
        target: Platform,
        method: str,
        url: str,
        out: Mapping[str, str],
        body: bytes | None,
        background: bool = False,
        module: str | None = None,
        relayed: bool = False,
    ) -> Upstream:
        """Send and wait for the answer's headers, all within one FORWARD_TIMEOUT: the wait
        for one of the target platform's connection slots takes part of it and connecting and
        waiting for the answer get the rest, so a requester of a receiver that hangs hears
        4002 after FORWARD_TIMEOUT, never later. The body of a ``relayed`` answer of up to
        SMALL_BODY is read within the same deadline; any other body read gets
        FORWARD_TIMEOUT per read (``fetch``, ``relay``)."""
        parsed = URL(url)  # once: aiohttp takes it as it is
        hop = self._hop(target, method, url, parsed.path, out, module)
        began = time.perf_counter()
        try:
            upstream = await self._call(target, method, parsed, out, body, background, relayed)
        except OcpiError as exc:
            if hop is not None and self.traffic is not None:
                hop.latency_ms = elapsed_ms(began)
                hop.ocpi_status, hop.error = exc.status_code, exc.message
                self.traffic.record(hop)
            raise
        if hop is not None:
            hop.latency_ms = elapsed_ms(began)
            hop.http_status = upstream.response.status
            upstream.hop, upstream._traffic = hop, self.traffic
        return upstream

    def _hop(
        self,
        target: Platform,
        method: str,
        url: str,
        path: str,
        out: Mapping[str, str],
        module: str | None,
    ) -> Exchange | None:
        """The traffic log's record of a call to ``target``: its ``module`` (when the caller
        does not name it, the module whose endpoint the URL is under), and the parties its
        routing headers name."""
        if self.traffic is None:
            return None
        if module is None:
            module, longest = "", 0
            for endpoint in target.endpoints:
                if len(endpoint.url) > longest and url.startswith(endpoint.url):
                    module, longest = endpoint.identifier, len(endpoint.url)
            if not module and url == target.versions_url:
                module = "versions"
        sender = out.get(headers.FROM_COUNTRY_CODE)
        receiver = out.get(headers.TO_COUNTRY_CODE)
        return Exchange(
            at=time.time(),
            direction="out",
            method=method,
            path=path,
            platform=target.id,
            sender=f"{sender}/{out.get(headers.FROM_PARTY_ID)}" if sender else "",
            receiver=f"{receiver}/{out.get(headers.TO_PARTY_ID)}" if receiver else "",
            module=module,
            request_id=out.get(headers.REQUEST_ID, ""),
            correlation_id=out.get(headers.CORRELATION_ID, ""),
        )

    async def _call(
        self,
        target: Platform,
        method: str,
        url: URL,
        out: Mapping[str, str],
        body: bytes | None,
        background: bool,
        relayed: bool,
    ) -> Upstream:
        deadline = self._loop.time() + self.timeout
        slot = self._slots.get((target.id, background))
        if slot is None:
            slot = self._slots[(target.id, background)] = asyncio.Semaphore(self.concurrency)
        if body and not any(k.lower() == "content-type" for k in out):
            out = {**out, "Content-Type": "application/json"}  # checked JSON, not octet-stream
        held = False
        response: aiohttp.ClientResponse | None = None
        answer: bytes | None = None
        try:
            async with asyncio.timeout_at(deadline):
                await slot.acquire()  # at once while the platform has a slot free
                held = True
                response = await self.session.request(
                    method,
                    url,
                    headers=out,
                    data=body or None,
                    timeout=self._relayed if relayed else self._fetched,
                    allow_redirects=False,
                )
                length = response.content_length
                if relayed and length is not None and length <= SMALL_BODY:
                    answer = await _read(response.read())
        except BaseException as exc:  # cancelled too (the requester left): nothing kept
            if response is not None:
                response.release()
            if held:
                slot.release()
            failure = self._failure(target, exc, held, response is not None)
            if failure is None:
                raise
            raise failure from None
        return Upstream(response, slot, target, answer)

    def _failure(
        self, target: Platform, exc: BaseException, sent: bool, answered: bool
    ) -> OcpiError | None:
        """The hub's status for what stopped ``_call``; None for what is raised as it is (a
        cancellation, an OcpiError already)."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return self._unreachable(target, "connecting timed out")
        if isinstance(exc, TimeoutError):
            if answered:  # the answer's headers came, its body stalled
                return OcpiError(StatusCode.FORWARD_TIMEOUT, _STALLED)
            waited = "" if sent else f" ({self.concurrency} requests to its platform in flight)"
            return OcpiError(
                StatusCode.FORWARD_TIMEOUT,
                f"no answer from the receiver within {self.timeout:g} s{waited}",
            )
        if isinstance(exc, aiohttp.ClientConnectionError | OSError):
            refusal = refused(exc)
            if refusal is not None:
                # The hub's own policy, not evidence that the platform is down: no
                # still-alive check (hub/outbound.py).
                return OcpiError(
                    StatusCode.RECEIVER_NOT_CONNECTED, f"receiver cannot be reached: {refusal}"
                )
            return self._unreachable(target, str(exc) or type(exc).__name__)
        if isinstance(exc, aiohttp.ClientError):
            return OcpiError(
                StatusCode.HUB_ERROR, f"forwarding failed: {exc or type(exc).__name__}"
            )
        return None

    async def fetch(
        self,
        target: Platform,
        method: str,
        url: str,
        out: Mapping[str, str],
        body: bytes | None,
        background: bool = False,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """A whole answer, for the hub's own calls (broadcasts, ClientInfo, GET All pages):
        HTTP status, headers, body. An answer that breaks off is 4002."""
        upstream = await self.call(target, method, url, out, body, background)
        try:
            response = upstream.response
            return (
                response.status,
                response.headers,
                upstream.answered(await _read(response.read())),
            )
        finally:
            upstream.release()

    def _unreachable(self, target: Platform, reason: str) -> OcpiError:
        if self.on_unreachable is not None:
            self.on_unreachable(target)
        return OcpiError(StatusCode.RECEIVER_NOT_CONNECTED, f"receiver cannot be reached: {reason}")

    async def relay(
        self,
        upstream: Upstream,
        hop: Hop | None,
        routing: Sequence[tuple[bytes, bytes]],
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> Relayed:
        """The receiver's status and body, its pagination headers, links rewritten to the hub.
        A small body is checked to be a JSON object with a status_code (never re-encoded), a
        large one streams through; with ``rewrite`` (a translation between versions) the
        whole body is read and rewritten. An answer that stalls or breaks off before the
        requester got anything is 4002, like one that never came."""
        response = upstream.response
        try:
            out: RawHeaders = [
                (k.lower(), v) for k, v in response.raw_headers if k.lower() not in _DROPPED
            ]
            out += routing
            dropped: list[str] = []
            if hop is not None and (
                headers.LINK in response.headers or headers.LOCATION in response.headers
            ):
                allowed = origins(upstream.target.own_urls())
                out += await self._rewrite_links(response, hop, allowed, dropped)
            if dropped:
                warning = f'199 - "{_dropped_warning(dropped)}"'
                out.append((b"warning", warning.encode("latin-1", "replace")))
            encoded = response.headers.get("Content-Encoding", "identity") != "identity"
            length = response.content_length
            if rewrite is not None and encoded:
                raise OcpiError(
                    StatusCode.HUB_ERROR, "the receiver's answer is compressed: not translated"
                )
            if rewrite is not None or (length is not None and length <= SMALL_BODY):
                body = upstream.body
                if body is None:  # a large answer, translated
                    body = b"".join([piece async for piece in _pieces(upstream, self.timeout)])
                status = None
                if not encoded:
                    status = _check_envelope(body, response.status, upstream.hop)
                upstream.release()
                if not encoded:
                    if rewrite is not None:
                        body = rewrite(body)
                    if dropped:
                        body = with_message(body, _dropped_warning(dropped))
                out.append((b"content-length", str(len(body)).encode()))
                return Relayed(response.status, out, body, None, self.timeout, status)
            first = await _first_bytes(upstream, self.timeout)
            if not encoded and not first.lstrip().startswith(b"{"):
                if upstream.hop is not None:
                    upstream.hop.error = "not an OCPI response"
                raise _not_ocpi(response.status)
            if length is not None:
                out.append((b"content-length", str(length).encode()))
            return Relayed(response.status, out, first, upstream, self.timeout)
        except BaseException:
            upstream.release()
            raise

    async def _rewrite_links(
        self,
        response: aiohttp.ClientResponse,
        hop: Hop,
        allowed: frozenset[Origin],
        dropped: list[str],
    ) -> RawHeaders:
        """transport_and_format "Pagination": a next link into the receiver's platform is
        replaced by a hub URL that leads there for this requester only; likewise Location.
        A link to anywhere but the receiver's own hosts (and the extra origins an operator
        allowed) is not handed out, no open proxy, and is added to ``dropped``."""
        out: RawHeaders = []
        try:
            next_link = response.links.get("next")
            target = str(next_link.get("url", "")) if next_link is not None else ""
        except ValueError:  # a URL that cannot be read (port out of range, ...)
            log.warning("unreadable link dropped", link=response.headers.get(headers.LINK))
            target = ""
        if target and self._within(target, allowed, dropped):
            hub_url = await self.relays.link(Link(hop, target))
            out.append((b"link", f'<{hub_url}>; rel="next"'.encode()))
        location = response.headers.get(headers.LOCATION, "").strip()
        if location:
            try:
                target = str(response.url.join(URL(location)))
            except ValueError:
                log.warning("unreadable location dropped", location=location)
                target = ""
            if target and self._within(target, allowed, dropped):
                hub_url = await self.relays.location(Link(hop, target))
                out.append((b"location", hub_url.encode()))
        return out

    @staticmethod
    def _within(url: str, allowed: frozenset[Origin], dropped: list[str]) -> bool:
        if origin(url) in allowed:
            return True
        log.warning("link to a host the platform never named dropped", url=url)
        dropped.append(url)
        return False


def _dropped_warning(dropped: list[str]) -> str:
    return (
        "the hub did not pass on a link to a host the receiver never named: "
        + ", ".join(dropped)
        + " (an operator can allow it: PATCH /admin/platforms/{id} extra_origins)"
    )


def with_message(body: bytes, message: str) -> bytes:
    """The envelope with ``message`` added to its status_message: the requester must learn
    that a page or Location it expected was withheld."""
    document = msgspec.json.decode(body)
    if not isinstance(document, dict):
        return body
    previous = document.get("status_message")
    document["status_message"] = f"{previous}; {message}" if previous else message
    return msgspec.json.encode(document)


def _not_ocpi(http_status: int) -> OcpiError:
    """status_codes "4xxx": the receiver's HTTP status stays (a bare 404 from a token
    authorize is still 404 to the CPO); the body the hub could not pass on becomes 4000."""
    return OcpiError(
        StatusCode.HUB_ERROR,
        f"the receiver answered HTTP {http_status} with something that is not an OCPI response",
        http_status,
    )


class _Envelope(msgspec.Struct):
    status_code: object  # present at the top level; its value is the receiver's business


_envelope = msgspec.json.Decoder(_Envelope)


def status_of(body: bytes) -> int | None:
    """The status_code of an OCPI response (a whole, valid JSON document: a truncated one
    is not), read without building its data; None for anything else."""
    try:
        code = _envelope.decode(body).status_code
    except (msgspec.DecodeError, RecursionError):
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _check_envelope(body: bytes, http_status: int = 200, hop: Exchange | None = None) -> int:
    """An OCPI response is a JSON object with a status_code; its status_code (0 when it is
    not a number), recorded on the traffic log's ``hop``."""
    status = status_of(body)
    if hop is not None:
        hop.ocpi_status = status
        hop.error = None if status is not None else "not an OCPI response"
    if status is None:
        raise _not_ocpi(http_status)
    return status


T = TypeVar("T")


async def _read(reading: Awaitable[T]) -> T:
    """Reading a receiver's body: a stall past FORWARD_TIMEOUT is 4002, like an answer that
    never came; an answer that breaks off is 4000, an answer the hub cannot pass on."""
    try:
        return await reading
    except TimeoutError:
        raise OcpiError(StatusCode.FORWARD_TIMEOUT, _STALLED) from None
    except aiohttp.ClientError as exc:
        reason = str(exc) or type(exc).__name__
        raise OcpiError(
            StatusCode.HUB_ERROR, f"the receiver's answer broke off: {reason}"
        ) from None


async def _pieces(upstream: Upstream, seconds: float) -> AsyncIterator[bytes]:
    """The rest of a relayed answer's body, piece by piece, each within ``seconds`` (4002
    past it, 4000 when it breaks off)."""
    while piece := await _read(upstream.chunk(seconds)):
        yield piece


async def _first_bytes(upstream: Upstream, seconds: float) -> bytes:
    """Read until the first non-blank byte (or the end), to tell JSON from anything else."""
    first = b""
    while not first.strip():
        piece = await _read(upstream.chunk(seconds))
        if not piece:
            break
        first += piece
    return first
