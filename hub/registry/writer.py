"""The write side of the registry: every change is one optimistic Redis transaction.

A write reads what it needs under WATCH, decides, then queues in one MULTI: the records,
the status changes with their history and ClientInfo entries (a transactional outbox), a
bump of the generation, and a message on the channel every process listens to. A concurrent
write to a watched key makes redis-py run the whole step again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from hub.logs import get_logger
from hub.ocpi.envelope import now
from hub.ocpi.models import ConnectionStatus
from hub.registry.client import NotReplicated, StoreUnavailable
from hub.registry.errors import (
    PartyKnown,
    PartyListedTwice,
    PartyTaken,
    ReservedParty,
    UnknownAgreement,
    UnknownPlatform,
)
from hub.registry.records import (
    PLATFORM_STATUS,
    Agreement,
    PartyCode,
    PartyKey,
    PartyState,
    Platform,
    PlatformState,
    TokenKind,
    Transition,
    parse_party_field,
    party_field,
    party_keys,
)
from hub.registry.registry import HISTORY, Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys
from hub.registry.tokens import new_token, token_hash

log = get_logger(__name__)

T = TypeVar("T")
Claims = dict[PartyKey, str]  # party -> the platform that holds it
Mutation = Callable[[Platform | None, Claims], Platform]

_encoder = msgspec.json.Encoder()
_platform = msgspec.json.Decoder(Platform)
_state = msgspec.json.Decoder(PartyState)
_agreement = msgspec.json.Decoder(Agreement)
WATCH_DELAY = 0.005  # seconds before a transaction that lost a race runs again


class RegistryWriter:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: Registry,
        reserved: tuple[str, str] = ("", ""),
        wait_replicas: int = 0,
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.wait_replicas = wait_replicas  # REDIS_WAIT_REPLICAS: see HubPipeline
        self.reserved = reserved  # the hub's own (country_code, party_id): no platform's

    async def _transaction(self, step: Callable[[Pipeline], Awaitable[T]], *watches: str) -> T:
        """Run ``step`` until no watched key changed under it; then this process's snapshot
        is dropped at once, and the others drop theirs on the channel message. (Published
        after the transaction: a Redis Cluster takes no PUBLISH inside one.)"""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.wait_replicas = self.wait_replicas
            while True:  # redis-py's ``transaction``, minus the Cluster client's blocking sleep
                try:
                    await pipe.watch(*watches)
                    result = await step(pipe)
                    written = await pipe.execute()
                    break
                except WatchError:
                    await asyncio.sleep(WATCH_DELAY)
                except NotReplicated:  # committed all the same: every process must see it
                    await self._announce()
                    raise
        if written:  # every step that writes bumps the generation (``_changed``)
            await self._announce()
        else:
            self.registry.invalidate()
        return result

    async def _announce(self) -> None:
        """This process's snapshot dropped now, the others' on the channel message (a
        process that misses it reloads when its subscription comes back)."""
        self.registry.invalidate()
        try:
            await self.redis.publish(Keys.channel, b"changed")
        except StoreUnavailable as exc:  # the change stands: do not answer that it failed
            log.warning("registry change not announced", error=str(exc))

    @staticmethod
    def _changed(pipe: Pipeline) -> None:
        """A new registry generation (published once committed)."""
        pipe.incr(Keys.generation)

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
        """Apply ``change`` to the current record (None: no change); UnknownPlatform if it
        is gone. ``change`` may raise to abort with nothing written."""

        def mutate(current: Platform | None, _claims: Claims) -> Platform:
            if current is None:
                raise UnknownPlatform(platform_id)
            changed = change(current)
            if changed is None:
                return current
            return msgspec.structs.replace(changed, updated=now())

        return await self._commit(platform_id, mutate, cause)

    async def _commit(
        self, platform_id: str | None, mutate: Mutation, cause: str = "registry update"
    ) -> Platform:
        """Read, mutate, write atomically; parties are claimed and released, and their
        statuses move, in the same step."""

        async def step(pipe: Pipeline) -> Platform:
            current = None
            if platform_id is not None:
                raw = await pipe.hget(Keys.platforms, platform_id)
                current = _platform.decode(raw) if raw else None
            claims = _claims(await pipe.hgetall(Keys.parties))
            updated = mutate(current, claims)
            await self._check_claims(pipe, updated, claims)
            moves = status_moves(current, updated, claims)
            states = await _states(pipe, list(moves))
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
            _record(pipe, moves, states, cause)
            if updated.state == PlatformState.REGISTERED and (
                current is None or current.state != PlatformState.REGISTERED
            ):
                pipe.xadd(Keys.clientinfo_queue, {"sync": updated.id})
            self._changed(pipe)
            return updated

        return await self._transaction(step, Keys.platforms, Keys.parties, Keys.party_states)

    async def set_status(
        self, platform_id: str, status: ConnectionStatus, cause: str
    ) -> list[PartyKey]:
        """CONNECTED <-> OFFLINE for every party of a registered platform; returns the
        parties that changed (none when they already had that status)."""

        async def step(pipe: Pipeline) -> list[PartyKey]:
            raw = await pipe.hget(Keys.platforms, platform_id)
            platform = _platform.decode(raw) if raw else None
            if platform is None or platform.state != PlatformState.REGISTERED:
                return []
            keys = party_keys(platform.roles)
            states = await _states(pipe, keys)
            changed = [k for k in keys if k not in states or states[k].status != status]
            if changed:
                pipe.multi()
                _record(pipe, dict.fromkeys(changed, status), states, cause)
                self._changed(pipe)
            return changed

        changed = await self._transaction(step, Keys.platforms, Keys.party_states)
        if changed:
            log.info("party status changed", platform_id=platform_id, status=status, cause=cause)
        return changed

    async def announce(self, key: PartyKey, name: str) -> None:
        """An operator announces a party that has not connected yet: PLANNED."""

        async def step(pipe: Pipeline) -> None:
            if await pipe.hget(Keys.parties, party_field(key)) is not None:
                raise PartyKnown(f"party {'/'.join(key)} is registered already")
            states = await _states(pipe, [key])
            if key in states:
                raise PartyKnown(f"party {'/'.join(key)} is known already ({states[key].status})")
            pipe.multi()
            _record(pipe, {key: ConnectionStatus.PLANNED}, {}, "announced by operator", name)
            self._changed(pipe)

        await self._transaction(step, Keys.parties, Keys.party_states)

    async def add_agreement(self, agreement: Agreement) -> None:
        """Store an agreement; every process sees it at once, and both parties' ClientInfo is
        pushed again (under the agreements policy, each now sees the other)."""

        async def step(pipe: Pipeline) -> None:
            pipe.multi()
            pipe.hset(Keys.agreements, agreement.id, _encoder.encode(agreement))
            self._changed(pipe)

        await self._transaction(step, Keys.agreements)
        await self.push_client_info(agreement.parties)
        log.info("agreement added", agreement_id=agreement.id)

    async def remove_agreement(self, agreement_id: str) -> Agreement:
        """UnknownAgreement if there is none by that id."""

        async def step(pipe: Pipeline) -> Agreement:
            raw = await pipe.hget(Keys.agreements, agreement_id)
            if raw is None:
                raise UnknownAgreement(agreement_id)
            pipe.multi()
            pipe.hdel(Keys.agreements, agreement_id)
            self._changed(pipe)
            return _agreement.decode(raw)

        removed = await self._transaction(step, Keys.agreements)
        await self.push_client_info(removed.parties)
        log.info("agreement removed", agreement_id=agreement_id)
        return removed

    async def push_client_info(self, codes: Iterable[PartyCode]) -> None:
        """Queue a ClientInfo push of every role of these parties (the viewers it goes to, and
        the status each sees, are decided when it is pushed, from a current snapshot)."""
        await queue_client_info(self.redis, await self.registry.recent(), codes)

    async def _check_claims(self, pipe: Pipeline, platform: Platform, claims: Claims) -> None:
        """One party belongs to one platform; a suspended platform's parties may move; the
        hub's own identity belongs to no platform."""
        if platform.state == PlatformState.SUSPENDED:
            return
        seen: set[PartyKey] = set()
        for key in party_keys(platform.roles):
            if key[:2] == self.reserved:
                raise ReservedParty(f"party {key[0]}/{key[1]} is the hub's own identity")
            if key in seen:
                raise PartyListedTwice(f"party {'/'.join(key)} is listed twice in roles")
            seen.add(key)
            owner = claims.get(key)
            if owner is None or owner == platform.id:
                continue
            raw = await pipe.hget(Keys.platforms, owner)
            if raw and _platform.decode(raw).state != PlatformState.SUSPENDED:
                raise PartyTaken(f"party {'/'.join(key)} is already registered by another platform")


async def queue_client_info(
    redis: aioredis.Redis, snapshot: Snapshot, codes: Iterable[PartyCode]
) -> None:
    """One ClientInfo queue entry per role these parties hold in ``snapshot``."""
    fields = [party_field(p.key) for code in codes for p in snapshot.parties_of(*code)]
    if fields:
        async with redis.pipeline(transaction=False) as pipe:
            for field in fields:
                pipe.xadd(Keys.clientinfo_queue, {"party": field})
            await pipe.execute()


async def _states(pipe: Pipeline, keys: list[PartyKey]) -> dict[PartyKey, PartyState]:
    if not keys:
        return {}
    raw = await pipe.hmget(Keys.party_states, [party_field(k) for k in keys])
    return {k: _state.decode(v) for k, v in zip(keys, raw, strict=True) if v is not None}


def _record(
    pipe: Pipeline,
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


def status_moves(
    current: Platform | None, updated: Platform, claims: Claims
) -> dict[PartyKey, ConnectionStatus]:
    """Statuses a platform write implies: its parties CONNECTED when it registers (or its
    credentials are updated: it just answered), SUSPENDED when it is suspended or drops them."""
    moves: dict[PartyKey, ConnectionStatus] = {}
    if current is not None:
        for key in set(party_keys(current.roles)) - set(party_keys(updated.roles)):
            if claims.get(key) == updated.id:
                moves[key] = ConnectionStatus.SUSPENDED
    target = PLATFORM_STATUS.get(updated.state)
    if target is not None:
        for key in party_keys(updated.roles):
            owner = claims.get(key)
            if target == ConnectionStatus.CONNECTED or owner in (None, updated.id):
                moves[key] = target
    return moves


def _claims(raw: dict[bytes, bytes]) -> Claims:
    return {parse_party_field(k.decode()): v.decode() for k, v in raw.items()}
