"""What the hub has seen, for Open Routing Requests (no OCPI-to headers).

The index is learned from the pushes the hub routes and broadcasts: location id -> owning CPO,
tariff id -> CPO, token uid -> owning eMSP, session id -> its CPO and every party the CPO
pushed it to. An id pushed by two
different owners is remembered with both, and routed to neither (ambiguous) rather than
guessed. What to look up for a request is a
pure function (``open_route_key``); the look-up itself is one Redis read. Each id is a key of
its own that expires ``open_routing_ttl`` seconds after the id was last pushed (a process
renews an id it wrote at most every tenth of that time, so an id pushed steadily may expire
up to a tenth early), so the index holds what is current, not every session ever seen.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from hub.ocpi.body import decode_request
from hub.ocpi.models import InterfaceRole, ModuleID
from hub.registry.store import Keys
from hub.routing.modules import ModuleFacts

INDEXED = (ModuleID.LOCATIONS, ModuleID.TARIFFS, ModuleID.TOKENS, ModuleID.SESSIONS)


def _parts(suffix: str) -> list[str]:
    return [p for p in suffix.split("/") if p]


def learned_from(
    facts: ModuleFacts, interface: InterfaceRole, method: str, suffix: str
) -> tuple[str, str, tuple[str, str]] | None:
    """A push to a RECEIVER at /{country_code}/{party_id}/{id}: (module, id, owner)."""
    if facts.id not in INDEXED or interface != InterfaceRole.RECEIVER:
        return None
    if method not in ("PUT", "PATCH"):
        return None
    parts = _parts(suffix)
    if len(parts) < 3:
        return None
    return facts.id, parts[2], (parts[0].upper(), parts[1].upper())


class BodyFacts(msgspec.Struct):
    """The fields of a request body open routing reads (commands, CDRs). Every other field
    is skipped unread: the body is forwarded as sent, whatever numbers or depth it holds."""

    location_id: Any = None
    session_id: Any = None
    cdr_token: Any = None


_OBJECT = re.compile(rb"[ \t\r\n]*\{")  # JSON whitespace, then an object


def body_facts(body: bytes) -> dict[str, Any] | None:
    """What ``open_route_key`` reads from a JSON body: None unless it is an object."""
    if not _OBJECT.match(body):
        return None
    found = decode_request(body, BodyFacts, "request body")
    return {name: getattr(found, name) for name in BodyFacts.__struct_fields__}


class Lookup(msgspec.Struct, frozen=True):
    """Look ``id`` up in the index of ``module``; what the request is about, for messages."""

    module: str
    id: str
    what: str


def open_route_key(
    facts: ModuleFacts, interface: InterfaceRole, method: str, suffix: str, body: Any
) -> Lookup | tuple[str, str] | None:
    """What decides the receiver of a request without to-headers: an index look-up, a
    party named in the body, or nothing."""
    parts = _parts(suffix)
    module = facts.id
    if module == ModuleID.LOCATIONS and interface == InterfaceRole.SENDER and parts:
        return Lookup(ModuleID.LOCATIONS, parts[0], f"location {parts[0]}")
    if module == ModuleID.TOKENS and interface == InterfaceRole.SENDER and len(parts) >= 2:
        return Lookup(ModuleID.TOKENS, parts[0], f"token {parts[0]}")
    if (
        module == ModuleID.COMMANDS
        and interface == InterfaceRole.RECEIVER
        and isinstance(body, dict)
    ):
        if isinstance(body.get("location_id"), str):
            return Lookup(
                ModuleID.LOCATIONS, body["location_id"], f"location {body['location_id']}"
            )
        if isinstance(body.get("session_id"), str):
            return Lookup(ModuleID.SESSIONS, body["session_id"], f"session {body['session_id']}")
    if module == ModuleID.CHARGING_PROFILES and interface == InterfaceRole.RECEIVER and parts:
        return Lookup(ModuleID.SESSIONS, parts[0], f"session {parts[0]}")
    if module == ModuleID.SESSIONS:
        if interface == InterfaceRole.SENDER and parts:
            return Lookup(ModuleID.SESSIONS, parts[0], f"session {parts[0]}")
        if interface == InterfaceRole.RECEIVER and len(parts) >= 3:
            return Lookup(ModuleID.SESSIONS, parts[2], f"session {parts[2]}")
    if (
        module == ModuleID.BOOKINGS
        and interface == InterfaceRole.SENDER
        and method == "POST"
        and isinstance(body, dict)
        and isinstance(body.get("location_id"), str)
    ):  # mod_bookings: a BookingRequest names the CPO's location
        return Lookup(ModuleID.LOCATIONS, body["location_id"], f"location {body['location_id']}")
    if module == ModuleID.CDRS and interface == InterfaceRole.RECEIVER and isinstance(body, dict):
        token = body.get("cdr_token")
        if isinstance(token, dict) and isinstance(token.get("party_id"), str):
            return (str(token.get("country_code", "")).upper(), token["party_id"].upper())
    return None


MEMO = 100_000  # entries this process remembers having written


class RoutingIndex:
    def __init__(self, redis: aioredis.Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        # (module, id) -> (value, when written): a push seen again within a tenth of the
        # TTL costs nothing; later, it renews the key's expiry.
        self._written: dict[tuple[str, str], tuple[str, float]] = {}

    def _seen(self, module: str, object_id: str, value: str) -> bool:
        """True when this process wrote exactly this recently; remembers it otherwise."""
        key = (module, object_id)
        moment = time.monotonic()
        written = self._written.get(key)
        if written is not None and written[0] == value and moment - written[1] < self.ttl / 10:
            return True
        if len(self._written) >= MEMO:
            self._written.clear()
        self._written[key] = (value, moment)
        return False

    async def learn(self, module: str, object_id: str, owner: tuple[str, str]) -> None:
        await self._learn(module, object_id, ":".join(owner))

    async def learn_session(
        self, session_id: str, cpo: tuple[str, str], receiver: tuple[str, str]
    ) -> None:
        """A session belongs to its CPO and is shared with each party it was pushed to (an
        eMSP, and an SCSP the CPO delegated smart charging to): one field per pair."""
        field = f"{':'.join(cpo)}|{':'.join(receiver)}"
        if self._seen(ModuleID.SESSIONS, session_id, field):
            return
        key = Keys.route(ModuleID.SESSIONS, session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, "1").expire(key, self.ttl)
            await pipe.execute()

    async def _learn(self, module: str, object_id: str, value: str) -> None:
        """Remember an owner of an id; a second owner is added to the first (the id is then
        ambiguous). Every write starts the key's time to live again."""
        if self._seen(module, object_id, value):
            return
        key = Keys.route(module, object_id)
        if await self.redis.set(key, value, nx=True, ex=self.ttl):
            return
        current = await self.redis.get(key)
        known = set(current.decode().split(",")) if current else set()  # None: just expired
        await self.redis.set(key, ",".join(sorted({*known, value})), ex=self.ttl)

    async def owners(
        self, lookup: Lookup, requester: tuple[str, str]
    ) -> list[tuple[str, str]] | None:
        """The parties ``requester`` may mean by an id: None when the id is unknown, more
        than one when it is ambiguous, none when the requester is its only owner."""
        key = Keys.route(lookup.module, lookup.id)
        if lookup.module == ModuleID.SESSIONS:
            fields = await self.redis.hkeys(key)
            if not fields:
                return None
            return session_parties([f.decode() for f in fields], requester)
        raw = await self.redis.get(key)
        if raw is None:
            return None
        owners = [_pair(owner) for owner in raw.decode().split(",")]
        return owners if len(owners) > 1 else [p for p in owners if p != requester]


def session_parties(fields: list[str], requester: tuple[str, str]) -> list[tuple[str, str]]:
    """Who a request about a session goes to. Its CPO asking: the parties it pushed the
    session to. Anyone else: the CPO that pushed it to them (or, if it pushed it to no
    one the requester knows of, every CPO of that id)."""
    pairs = [
        (_pair(cpo), _pair(receiver)) for cpo, _, receiver in (f.partition("|") for f in fields)
    ]
    if any(cpo == requester for cpo, _ in pairs):
        return sorted({receiver for cpo, receiver in pairs if cpo == requester})
    mine = {cpo for cpo, receiver in pairs if receiver == requester}
    return sorted(mine or {cpo for cpo, _ in pairs})


def _pair(text: str) -> tuple[str, str]:
    country_code, _, party_id = text.partition(":")
    return (country_code, party_id)
