"""The registry of platforms, their parties and endpoints, kept in Redis.

Writes are optimistic transactions (WATCH/MULTI) that also bump a generation counter and
announce the change on a pub/sub channel. Each hub process keeps a read-only snapshot of the
whole registry for the hot path (token -> platform, party -> platform): a request costs no
Redis round trip while the snapshot is current, and every process drops its snapshot as soon
as any process writes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from hub.logs import get_logger
from hub.ocpi.auth import token_candidates
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.models import (
    ConnectionStatus,
    CredentialsRole,
    Endpoint,
    InterfaceRole,
    ModuleID,
    Role,
)
from hub.ocpi.status import StatusCode
from hub.registry.store import Keys
from hub.registry.tokens import new_token, token_hash

log = get_logger(__name__)


class PlatformState(StrEnum):
    PENDING = "PENDING"  # created by an operator, not registered yet
    REGISTERED = "REGISTERED"  # credentials exchanged
    SUSPENDED = "SUSPENDED"  # unregistered or suspended: tokens void


class TokenKind(StrEnum):
    REGISTRATION = "A"  # CREDENTIALS_TOKEN_A: versions and credentials only
    CREDENTIALS = "C"  # the token a registered platform calls the hub with


class Platform(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    state: PlatformState = PlatformState.PENDING
    created: datetime
    updated: datetime
    versions_url: str | None = None
    version: str | None = None
    endpoints: list[Endpoint] = []
    roles: list[CredentialsRole] = []
    token_b: str | None = None  # the token the hub calls this platform with
    token_hashes: dict[str, TokenKind] = {}  # hashes of the tokens it calls the hub with
    raw_token: bool = False  # legacy peers that expect the token unencoded

    def endpoint(self, module: str, role: InterfaceRole) -> Endpoint | None:
        """Identifiers are stored normalized (hub/client.py negotiate)."""
        module = ModuleID.normalize(module)
        for endpoint in self.endpoints:
            if endpoint.identifier == module and (
                endpoint.role == role or module == ModuleID.CREDENTIALS
            ):
                return endpoint
        return None

    def urls(self) -> list[str]:
        """Every URL the platform gave the hub: its versions URL and its endpoints."""
        return [u for u in (self.versions_url, *(e.url for e in self.endpoints)) if u]

    def public(self) -> dict[str, Any]:
        """The record as the admin API shows it: never a token."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "created": self.created,
            "updated": self.updated,
            "versions_url": self.versions_url,
            "version": self.version,
            "raw_token": self.raw_token,
            "roles": [
                {"role": r.role, "country_code": r.country_code, "party_id": r.party_id}
                for r in self.roles
            ],
            "endpoints": self.endpoints,
        }


PartyKey = tuple[str, str, Role]  # (country_code, party_id, role), upper case


def party_key(country_code: str, party_id: str, role: Role | str) -> PartyKey:
    return (country_code.upper(), party_id.upper(), Role(role))


def party_field(key: PartyKey) -> str:
    return f"{key[0]}:{key[1]}:{key[2]}"


def party_keys(roles: Iterable[CredentialsRole]) -> list[PartyKey]:
    return [party_key(r.country_code, r.party_id, r.role) for r in roles]


class PartyState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A party's connection status as the hub keeps it (mod_hub_client_info, ClientInfo)."""

    status: ConnectionStatus
    last_updated: datetime
    name: str | None = None  # the name an operator announced a PLANNED party with


class Transition(msgspec.Struct, frozen=True):
    """One change of a party's status: what it was, what it became, when and why."""

    at: datetime
    status: ConnectionStatus
    previous: ConnectionStatus | None
    cause: str


class Party(msgspec.Struct, frozen=True):
    """A party reachable (or once reachable) through the hub, with its connection status."""

    country_code: str
    party_id: str
    role: Role
    platform_id: str | None  # None: announced (PLANNED), no platform yet
    name: str
    status: ConnectionStatus
    last_updated: datetime

    @property
    def key(self) -> PartyKey:
        return (self.country_code, self.party_id, self.role)

    def public(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__struct_fields__}


_STATE_ONLY = (ConnectionStatus.PLANNED, ConnectionStatus.SUSPENDED)
_PLATFORM_STATUS = {
    PlatformState.REGISTERED: ConnectionStatus.CONNECTED,
    PlatformState.SUSPENDED: ConnectionStatus.SUSPENDED,
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Platform)
_state = msgspec.json.Decoder(PartyState)
_transition = msgspec.json.Decoder(Transition)
HISTORY = 200  # transitions kept per party
MEMO = 100_000  # Authorization header values remembered per snapshot


class Snapshot:
    """An immutable view of the registry at one generation, indexed for the hot path."""

    def __init__(
        self,
        generation: int,
        platforms: dict[str, Platform],
        states: dict[PartyKey, PartyState] | None = None,
    ) -> None:
        self.generation = generation
        self.platforms = platforms
        states = states or {}
        self.by_token: dict[str, tuple[Platform, TokenKind]] = {}
        self.by_header: dict[str, tuple[Platform, TokenKind]] = {}  # memo, see authenticate
        self.parties: dict[PartyKey, Party] = {}
        # A party taken over by a new registration is kept once, under its current platform.
        for platform in sorted(platforms.values(), key=lambda p: p.created):
            for digest, kind in platform.token_hashes.items():
                self.by_token[digest] = (platform, kind)
            default = _PLATFORM_STATUS.get(platform.state)
            if default is None:
                continue
            for role in platform.roles:
                key = party_key(role.country_code, role.party_id, role.role)
                held = self.parties.get(key)
                if held is not None and held.status != ConnectionStatus.SUSPENDED:
                    continue
                state = states.get(key)
                status = default
                if state is not None and default == ConnectionStatus.CONNECTED:
                    status = state.status  # CONNECTED or OFFLINE
                self.parties[key] = Party(
                    country_code=key[0],
                    party_id=key[1],
                    role=key[2],
                    platform_id=platform.id,
                    name=role.business_details.name,
                    status=status,
                    last_updated=state.last_updated if state else platform.updated,
                )
        # Announced parties, and parties a platform dropped from its roles (SUSPENDED).
        for key, state in states.items():
            if key not in self.parties and state.status in _STATE_ONLY:
                self.parties[key] = Party(
                    *key, None, state.name or "", state.status, state.last_updated
                )
        self.by_code: dict[tuple[str, str], list[Party]] = {}
        self.by_platform: dict[str, list[Party]] = {}
        for party in sorted(self.parties.values(), key=lambda p: p.key):
            self.by_code.setdefault((party.country_code, party.party_id), []).append(party)
            if party.platform_id is not None:
                self.by_platform.setdefault(party.platform_id, []).append(party)
        self.offline = {
            platform_id
            for platform_id, parties in self.by_platform.items()
            if any(p.status == ConnectionStatus.OFFLINE for p in parties)
        }

    def token(self, token: str) -> tuple[Platform, TokenKind] | None:
        return self.by_token.get(token_hash(token))

    def parties_of(self, country_code: str, party_id: str) -> list[Party]:
        """Every role a (country_code, party_id) pair holds, case-insensitively."""
        return self.by_code.get((country_code.upper(), party_id.upper()), [])

    def parties_on(self, platform_id: str) -> list[Party]:
        return self.by_platform.get(platform_id, [])

    def connected(self, platform: Platform) -> bool:
        """A registered platform with at least one CONNECTED party."""
        return platform.state == PlatformState.REGISTERED and any(
            p.status == ConnectionStatus.CONNECTED for p in self.parties_on(platform.id)
        )


Mutation = Callable[[Platform | None, dict[PartyKey, str]], Platform]


class Registry:
    """Reads through the snapshot; every write goes through :meth:`_commit`."""

    def __init__(self, redis: aioredis.Redis, reserved: tuple[str, str] = ("", "")) -> None:
        self.redis = redis
        self.reserved = reserved  # the hub's own (country_code, party_id): no platform's
        self._snapshot: Snapshot | None = None
        self._epoch = 0  # bumped by every invalidation
        self._loading: asyncio.Lock = asyncio.Lock()
        self._seen: dict[str, float] = {}

    # -- reads -------------------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        async with self._loading:
            if self._snapshot is not None:
                return self._snapshot
            epoch = self._epoch
            loaded = await self._load()
            if epoch == self._epoch:  # no invalidation arrived while loading: keep it
                self._snapshot = loaded
            return loaded

    async def _load(self) -> Snapshot:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(Keys.generation).hgetall(Keys.platforms).hgetall(Keys.party_states)
            generation, records, states = await pipe.execute()
        platforms = {key.decode(): _decoder.decode(value) for key, value in records.items()}
        parties = {parse_party_field(k.decode()): _state.decode(v) for k, v in states.items()}
        return Snapshot(int(generation or 0), platforms, parties)

    def invalidate(self) -> None:
        self._epoch += 1
        self._snapshot = None

    async def refresh_if_stale(self) -> Snapshot:
        """One round trip: reload when another process wrote since our snapshot was taken."""
        snapshot = await self.snapshot()
        generation = int(await self.redis.get(Keys.generation) or 0)
        if generation != snapshot.generation:
            self.invalidate()
            snapshot = await self.snapshot()
        return snapshot

    async def authenticate(self, header: str | None) -> tuple[Platform, TokenKind] | None:
        """Authorization header -> platform. A header seen before is one dict look-up (no
        base64, no hashing); an unknown token costs one check that the snapshot is current."""
        if not header:
            return None
        snapshot = await self.snapshot()
        found = snapshot.by_header.get(header)
        if found is not None:
            return found
        tokens = token_candidates(header)
        for current in (snapshot, await self.refresh_if_stale()):
            for token in tokens:
                if found := current.token(token):
                    if len(current.by_header) < MEMO:  # remembered where it was found
                        current.by_header[header] = found
                    return found
        return None

    async def get(self, platform_id: str) -> Platform | None:
        return (await self.snapshot()).platforms.get(platform_id)

    async def touch(self, platform_id: str, interval: float = 1.0) -> None:
        """Record that a platform spoke to the hub; at most one write per interval."""
        moment = time.time()
        if moment - self._seen.get(platform_id, 0.0) < interval:
            return
        self._seen[platform_id] = moment
        await self.redis.hset(Keys.last_seen, platform_id, str(moment))

    async def last_seen(self) -> dict[str, float]:
        raw = await self.redis.hgetall(Keys.last_seen)
        return {key.decode(): float(value) for key, value in raw.items()}

    # -- writes ------------------------------------------------------------------------------

    async def _commit(
        self, platform_id: str | None, mutate: Mutation, cause: str = "registry update"
    ) -> Platform:
        """Read, mutate, write atomically; parties are claimed and released, and their
        statuses move, in the same step.

        ``mutate`` gets the current record (None for a new one) and the party claims, and
        returns the new record or raises OcpiError to abort with nothing written.
        """
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(Keys.platforms, Keys.parties, Keys.party_states)
                    current = None
                    if platform_id is not None:
                        raw = await pipe.hget(Keys.platforms, platform_id)
                        current = _decoder.decode(raw) if raw else None
                    claims = _claims(await pipe.hgetall(Keys.parties))
                    updated = mutate(current, claims)
                    await self._check_claims(pipe, updated, claims)
                    moves = _status_moves(current, updated, claims)
                    states = await self._states(pipe, list(moves))
                    pipe.multi()
                    if current is not None:
                        released = set(party_keys(current.roles)) - set(party_keys(updated.roles))
                        for key in released:
                            if claims.get(key) == updated.id:
                                pipe.hdel(Keys.parties, party_field(key))
                    if updated.state != PlatformState.SUSPENDED:
                        for key in party_keys(updated.roles):
                            pipe.hset(Keys.parties, party_field(key), updated.id)
                    pipe.hset(Keys.platforms, updated.id, _encoder.encode(updated))
                    self._record(pipe, moves, states, cause)
                    if updated.state == PlatformState.REGISTERED and (
                        current is None or current.state != PlatformState.REGISTERED
                    ):
                        pipe.xadd(Keys.clientinfo_queue, {"sync": updated.id})
                    pipe.incr(Keys.generation)
                    pipe.publish(Keys.channel, updated.id)
                    await pipe.execute()
                except WatchError:
                    continue
            self.invalidate()
            return updated

    @staticmethod
    async def _states(pipe: Any, keys: list[PartyKey]) -> dict[PartyKey, PartyState]:
        if not keys:
            return {}
        raw = await pipe.hmget(Keys.party_states, [party_field(k) for k in keys])
        return {k: _state.decode(v) for k, v in zip(keys, raw, strict=True) if v is not None}

    @staticmethod
    def _record(
        pipe: Any,
        moves: dict[PartyKey, ConnectionStatus],
        states: dict[PartyKey, PartyState],
        cause: str,
        name: str | None = None,
    ) -> None:
        """Queue the writes of every real status change: state, history, ClientInfo push."""
        moment = now()
        for key, status in moves.items():
            previous = states.get(key)
            if previous is not None and previous.status == status:
                continue
            field = party_field(key)
            state = PartyState(status, moment, name)
            transition = Transition(moment, status, previous.status if previous else None, cause)
            pipe.hset(Keys.party_states, field, _encoder.encode(state))
            pipe.lpush(Keys.history(field), _encoder.encode(transition))
            pipe.ltrim(Keys.history(field), 0, HISTORY - 1)
            pipe.xadd(Keys.clientinfo_queue, {"party": field})

    async def set_status(
        self, platform_id: str, status: ConnectionStatus, cause: str
    ) -> list[PartyKey]:
        """CONNECTED <-> OFFLINE for every party of a registered platform; returns the
        parties that changed (none when they already had that status)."""
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(Keys.platforms, Keys.party_states)
                    raw = await pipe.hget(Keys.platforms, platform_id)
                    platform = _decoder.decode(raw) if raw else None
                    if platform is None or platform.state != PlatformState.REGISTERED:
                        return []
                    keys = party_keys(platform.roles)
                    states = await self._states(pipe, keys)
                    changed = [k for k in keys if k not in states or states[k].status != status]
                    if not changed:
                        return []
                    pipe.multi()
                    self._record(pipe, dict.fromkeys(changed, status), states, cause)
                    pipe.incr(Keys.generation)
                    pipe.publish(Keys.channel, platform_id)
                    await pipe.execute()
                except WatchError:
                    continue
            self.invalidate()
            log.info("party status changed", platform_id=platform_id, status=status, cause=cause)
            return changed

    async def announce(self, key: PartyKey, name: str) -> None:
        """An operator announces a party that has not connected yet: PLANNED."""
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(Keys.parties, Keys.party_states)
                    if await pipe.hget(Keys.parties, party_field(key)) is not None:
                        raise OcpiError(
                            StatusCode.CLIENT_ERROR,
                            f"party {'/'.join(key)} is registered already",
                            409,
                        )
                    states = await self._states(pipe, [key])
                    if key in states:
                        raise OcpiError(
                            StatusCode.CLIENT_ERROR,
                            f"party {'/'.join(key)} is known already ({states[key].status})",
                            409,
                        )
                    pipe.multi()
                    self._record(
                        pipe, {key: ConnectionStatus.PLANNED}, {}, "announced by operator", name
                    )
                    pipe.incr(Keys.generation)
                    pipe.publish(Keys.channel, party_field(key))
                    await pipe.execute()
                except WatchError:
                    continue
            self.invalidate()
            return

    async def history(self, key: PartyKey) -> list[Transition]:
        raw = await self.redis.lrange(Keys.history(party_field(key)), 0, HISTORY - 1)
        return [_transition.decode(r) for r in raw]

    async def _check_claims(
        self, pipe: Any, platform: Platform, claims: dict[PartyKey, str]
    ) -> None:
        """One party belongs to one platform; a suspended platform's parties may move; the
        hub's own identity belongs to no platform."""
        if platform.state == PlatformState.SUSPENDED:
            return
        seen: set[PartyKey] = set()
        for key in party_keys(platform.roles):
            if key[:2] == self.reserved:
                raise OcpiError(
                    StatusCode.INVALID_PARAMETERS,
                    f"party {key[0]}/{key[1]} is the hub's own identity",
                )
            if key in seen:
                raise OcpiError(
                    StatusCode.INVALID_PARAMETERS,
                    f"party {'/'.join(key)} is listed twice in roles",
                )
            seen.add(key)
            owner = claims.get(key)
            if owner is None or owner == platform.id:
                continue
            raw = await pipe.hget(Keys.platforms, owner)
            if raw and _decoder.decode(raw).state != PlatformState.SUSPENDED:
                raise OcpiError(
                    StatusCode.INVALID_PARAMETERS,
                    f"party {'/'.join(key)} is already registered by another platform",
                )

    async def create_platform(self, name: str) -> tuple[Platform, str]:
        """A new platform with a fresh CREDENTIALS_TOKEN_A; returns the record and the token."""
        token_a = new_token()
        moment = now()
        platform = Platform(
            id=uuid.uuid4().hex[:12],
            name=name,
            created=moment,
            updated=moment,
            token_hashes={token_hash(token_a): TokenKind.REGISTRATION},
        )
        await self._commit(None, lambda _current, _claims: platform)
        log.info("platform created", platform_id=platform.id, platform_name=name)
        return platform, token_a

    async def update(
        self,
        platform_id: str,
        change: Callable[[Platform], Platform | None],
        cause: str = "registry update",
    ) -> Platform:
        """Apply ``change`` to the current record; raises OcpiError if it is gone."""

        def mutate(current: Platform | None, _claims: dict[PartyKey, str]) -> Platform:
            if current is None:
                raise OcpiError(StatusCode.CLIENT_ERROR, f"unknown platform {platform_id}", 404)
            changed = change(current)
            if changed is None:
                return current
            return msgspec.structs.replace(changed, updated=now())

        return await self._commit(platform_id, mutate, cause)

    async def run_invalidation(self, ready: asyncio.Event | None = None) -> None:
        """Drop the snapshot whenever any process writes; reconnects until cancelled."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(Keys.channel)
                    self.invalidate()  # writes we missed while not subscribed
                    if ready is not None:
                        ready.set()
                    async for _message in pubsub.listen():
                        self.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: caches may be stale, start over
                self.invalidate()
                log.warning("registry invalidation channel lost", error=str(exc))
                await asyncio.sleep(0.5)


def _status_moves(
    current: Platform | None, updated: Platform, claims: dict[PartyKey, str]
) -> dict[PartyKey, ConnectionStatus]:
    """Statuses a platform write implies: its parties CONNECTED when it registers (or its
    credentials are updated: it just answered), SUSPENDED when it is suspended or drops them."""
    moves: dict[PartyKey, ConnectionStatus] = {}
    if current is not None:
        for key in set(party_keys(current.roles)) - set(party_keys(updated.roles)):
            if claims.get(key) == updated.id:
                moves[key] = ConnectionStatus.SUSPENDED
    target = _PLATFORM_STATUS.get(updated.state)
    if target is not None:
        for key in party_keys(updated.roles):
            owner = claims.get(key)
            if target == ConnectionStatus.CONNECTED or owner in (None, updated.id):
                moves[key] = target
    return moves


def _claims(raw: dict[bytes, bytes]) -> dict[PartyKey, str]:
    return {parse_party_field(k.decode()): v.decode() for k, v in raw.items()}


def parse_party_field(field: str) -> PartyKey:
    country_code, party_id, role = field.split(":")
    return (country_code, party_id, Role(role))
