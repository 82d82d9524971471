"""Hub URLs that stand in for platform URLs a requester must not (or cannot) call directly.

A ``Link: rel="next"`` or a CDR ``Location`` points into the receiver's platform; a
``response_url`` points into the requester's. Through a hub neither side can call the other,
so the hub hands out an opaque URL of its own, stored in Redis with a TTL, that leads to
exactly one URL on behalf of exactly one platform: no open proxy.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import msgspec
import redis.asyncio as aioredis

from hub.ocpi.body import decode_request
from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import InterfaceRole
from hub.ocpi.status import StatusCode
from hub.registry.store import Keys
from hub.routing.modules import Carrier
from hub.routing.urls import HubUrls, Origin, origin

T = TypeVar("T", bound=msgspec.Struct)

PAGE_TTL = 3600  # seconds a next-page link stays valid
LOCATION_TTL = 400 * 24 * 3600  # a CDR Location is fetched for disputes, months later
CALLBACK_TTL = 24 * 3600  # a command's result; RESERVE_NOW lives until its expiry


class Lifetimes(msgspec.Struct, frozen=True):
    """Seconds each kind of stand-in URL stays valid (settings page_link_ttl,
    cdr_location_ttl, callback_ttl)."""

    page: int = PAGE_TTL
    location: int = LOCATION_TTL
    callback: int = CALLBACK_TTL


class Hop(msgspec.Struct, frozen=True):
    """One requester party talking to one receiver party through the hub."""

    module: str
    interface: InterfaceRole
    requester_platform: str
    requester: tuple[str, str]  # (country_code, party_id)
    receiver_platform: str
    receiver: tuple[str, str]

    def reversed(self) -> Hop:
        """The way back: an asynchronous result goes from the receiver to the requester."""
        return Hop(
            module=self.module,
            interface=self.interface,
            requester_platform=self.receiver_platform,
            requester=self.receiver,
            receiver_platform=self.requester_platform,
            receiver=self.requester,
        )


class Link(msgspec.Struct, frozen=True):
    """Follow ``url`` on the receiver's platform for the requester (GET)."""

    hop: Hop
    url: str


class Callback(msgspec.Struct, frozen=True):
    """Relay the receiver's asynchronous result to the requester's ``response_url`` (POST)."""

    hop: Hop
    response_url: str


class Relays:
    def __init__(self, redis: aioredis.Redis, urls: HubUrls, lifetimes: Lifetimes) -> None:
        self.redis = redis
        self.urls = urls
        self.lifetimes = lifetimes

    async def _put(self, kind: str, value: msgspec.Struct, ttl: int) -> str:
        relay_id = secrets.token_urlsafe(18)
        await self.redis.set(Keys.relay(kind, relay_id), msgspec.json.encode(value), ex=ttl)
        return relay_id

    async def _get(self, kind: str, relay_id: str, type_: type[T]) -> T | None:
        if not relay_id or len(relay_id) > 64:
            return None
        raw = await self.redis.get(Keys.relay(kind, relay_id))
        return None if raw is None else msgspec.json.decode(raw, type=type_)

    async def link(self, link: Link) -> str:
        """A next page: valid for ``lifetimes.page``."""
        return self.urls("link", relay_id=await self._put("link", link, self.lifetimes.page))

    async def location(self, link: Link) -> str:
        """A CDR Location (mod_cdrs: the CPO may GET the CDR again): ``lifetimes.location``."""
        relay_id = await self._put("link", link, self.lifetimes.location)
        return self.urls("link", relay_id=relay_id)

    async def resolve_link(self, relay_id: str) -> Link | None:
        return await self._get("link", relay_id, Link)

    async def callback(self, callback: Callback, ttl: int | None = None) -> str:
        relay_id = await self._put("callback", callback, ttl or self.lifetimes.callback)
        return self.urls("callback", relay_id=relay_id)

    async def resolve_callback(self, relay_id: str) -> Callback | None:
        return await self._get("callback", relay_id, Callback)


def _check_response_url(url: str, allowed: frozenset[Origin]) -> None:
    """The hub posts results only to the requester's own platform (no open relay)."""
    if origin(url) not in allowed:
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            "response_url must point at the requesting platform (the host of its versions "
            "or module endpoints, or an extra origin the hub's operator allowed for it)",
        )


async def proxy_response_url(
    relays: Relays,
    carrier: Carrier,
    body: bytes,
    query: str,
    hop: Hop,
    allowed: frozenset[Origin],
) -> tuple[bytes, str]:
    """Put a hub callback URL where the requester's ``response_url`` was (body or query).

    A RESERVE_NOW's callback lives until the reservation expires: the CPO may cancel it
    later with a result to the same URL (mod_commands, "Flow").
    """
    if carrier is Carrier.QUERY:
        pairs = parse_qsl(query, keep_blank_values=True)
        original = next((v for k, v in pairs if k == "response_url"), None)
        if original is None:
            return body, query
        _check_response_url(original, allowed)
        hub_url = await relays.callback(Callback(hop, original))
        pairs = [(k, hub_url if k == "response_url" else v) for k, v in pairs]
        return body, urlencode(pairs)
    # Only the two fields the hub reads are decoded; every other one is re-encoded exactly
    # as sent (numbers beyond any decoder's range, deep nesting, number formats).
    document = decode_request(body, dict[str, msgspec.Raw], "request body")
    original = _field(document, "response_url")
    if not isinstance(original, str):
        return body, query
    _check_response_url(original, allowed)
    ttl = _callback_ttl(_field(document, "expiry_date"), relays.lifetimes.callback)
    hub_url = await relays.callback(Callback(hop, original), ttl)
    document["response_url"] = msgspec.Raw(msgspec.json.encode(hub_url))
    return msgspec.json.encode(document), query


def _field(document: dict[str, msgspec.Raw], name: str) -> Any:
    raw = document.get(name)
    return None if raw is None else decode_request(bytes(raw), object, "request body")


def _callback_ttl(expiry_date: object, floor: int = CALLBACK_TTL) -> int:
    """``floor``, or until an hour after a RESERVE_NOW's expiry_date if that is later."""
    if not isinstance(expiry_date, str):
        return floor
    try:
        expiry = datetime.fromisoformat(expiry_date.replace("Z", "+00:00"))
    except ValueError:
        return floor
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)  # types: no zone designator means UTC
    remaining = (expiry - datetime.now(UTC)).total_seconds() + 3600
    return max(floor, int(remaining))
