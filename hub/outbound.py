"""Where the hub may connect: only public addresses, over http or https.

Security, not the spec: the hub holds every platform's token, and every URL it follows
(versions, endpoints, response_url, next links, CDR Locations) was named by some platform. Left
open, any platform could make the hub reach its loopback services, the private network or a
cloud metadata endpoint. So the address is checked when the connection is made, after DNS:
``GuardedConnector`` screens what its resolver returns and every address right before a
socket is connected to it (IP literals included), so a name that resolves to a refused
address, now or after a DNS rebind, gets nowhere. Nothing is connected to on a refusal.

``OUTBOUND_ALLOW`` opens loopback and/or private ranges (tests, private deployments);
link-local (cloud metadata), multicast, unspecified and other non-public addresses stay
refused whatever it says.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection, Sequence
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from hub.logs import get_logger

log = get_logger(__name__)

Allow = Literal["loopback", "private"]  # the OUTBOUND_ALLOW tokens
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# What OUTBOUND_ALLOW=private opens: RFC 1918, IPv6 unique local and deprecated site-local.
# (127.0.0.0/8 and ::1 are ``loopback``; the stdlib's is_private is wider and differs
# between Python versions, so the ranges are spelled out.)
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)

# Cloud metadata and host services outside link-local, refused whatever OUTBOUND_ALLOW says
# (169.254.169.254 itself is link-local): AWS over IPv6, Azure's WireServer, Alibaba Cloud.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "168.63.129.16", "100.100.100.200")
)


def kind_of(address: Address) -> str | None:
    """Why ``address`` is not a public address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    if address in METADATA:
        return "cloud metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in network for network in PRIVATE):
        return "private"
    if not address.is_global:  # reserved, documentation, shared (CGNAT), broadcast, ...
        return "not public"
    return None


def refused_kind(address: str, allow: Collection[str] = ()) -> str | None:
    """Why the hub must not connect to ``address`` (a numeric IP), or None when it may."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    kind = kind_of(parsed)
    return None if kind is None or kind in allow else kind


class RefusedAddress(OSError):
    """A connection the outbound policy refused before it was attempted. An OSError, so
    aiohttp reports it as a connection error (``ClientConnectorError``) like any other."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        of_host = "" if host == address else f" of host {host}"
        opens = " (outbound_allow)" if kind in ("loopback", "private") else ""
        super().__init__(f"address {address}{of_host} is {kind}: refused{opens}")
        self.host = host
        self.address = address
        self.kind = kind


def refused(exc: BaseException) -> RefusedAddress | None:
    """The refusal behind a connection error aiohttp raised, if that is what it was."""
    current: BaseException | None = exc
    for _ in range(8):  # aiohttp wraps it once or twice; never loop on a cycle
        if current is None or isinstance(current, RefusedAddress):
            return current
        current = current.__cause__ or getattr(current, "os_error", None)
    return None


def screen(
    host: str, found: Sequence[ResolveResult], allow: Collection[str]
) -> list[ResolveResult]:
    """The resolved addresses the hub may connect to; RefusedAddress when none is left."""
    kept: list[ResolveResult] = []
    refusals: list[RefusedAddress] = []
    for result in found:
        kind = refused_kind(result["host"], allow)
        if kind is None:
            kept.append(result)
        else:
            refusals.append(RefusedAddress(host, result["host"], kind))
    if refusals:
        log.warning("outbound address refused", host=host, refused=[str(r) for r in refusals])
    if not kept and refusals:
        raise refusals[0]
    return kept


class GuardedResolver(AbstractResolver):
    """aiohttp's threaded resolver, keeping only the addresses the hub may connect to."""

    def __init__(self, allow: Collection[str]) -> None:
        self.allow = frozenset(allow)
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return screen(host, await self.inner.resolve(host, port, family), self.allow)

    async def close(self) -> None:
        await self.inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """The one connector of the hub's client session: http(s) only, public addresses only.

    Names are resolved through ``GuardedResolver``, which screens every answer at every
    connection (DNS rebinding gains nothing). aiohttp never resolves an IP-literal host
    (``TCPConnector._resolve_host`` passes it straight on), so the socket factory, which aiohttp
    calls for every connection attempt right before it connects, has the last word on every
    address, literals included.
    """

    allowed_protocol_schema_set = frozenset({"http", "https"})

    def __init__(self, allow: Collection[str], **kwargs: Any) -> None:
        self.allow = frozenset(allow)
        super().__init__(resolver=GuardedResolver(allow), socket_factory=self._socket, **kwargs)

    def _socket(self, addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        kind = refused_kind(address, self.allow)
        if kind is not None:
            log.warning("outbound address refused", address=address, kind=kind)
            raise RefusedAddress(address, address, kind)
        return socket.socket(family=family, type=type_, proto=proto)
