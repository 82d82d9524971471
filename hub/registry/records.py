"""The registry's record types: platforms, their parties, and each party's status history.

Plain msgspec structs with no behaviour beyond reading themselves: the snapshot indexes them,
the writer stores them, and nothing here touches Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from hub.ocpi.models import (
    ConnectionStatus,
    CountryCode,
    CredentialsRole,
    Endpoint,
    InterfaceRole,
    ModuleID,
    PartyId,
    Role,
)


class PlatformState(StrEnum):
    PENDING = "PENDING"  # created by an operator, not registered yet
    REGISTERED = "REGISTERED"  # credentials exchanged
    SUSPENDED = "SUSPENDED"  # unregistered or suspended: tokens void


class TokenKind(StrEnum):
    REGISTRATION = "A"  # CREDENTIALS_TOKEN_A: versions and credentials only
    CREDENTIALS = "C"  # the token a registered platform calls the hub with
    # A token C a credentials update replaced: still valid until the platform first uses
    # the new one, or until the platform's ``retiring_until`` (ROTATION_GRACE).
    RETIRING = "R"
    # The token C a hub-sent credentials update carried when no answer came back: the
    # platform may have taken it. Valid; its first use retires every other one.
    UNCONFIRMED = "U"


def retire_old_tokens(platform: Platform, replaced: frozenset[str]) -> Platform:
    """The platform used its new token C: the ``replaced`` ones stop working now. A token
    that began retiring since (a later update committed before this write) keeps its grace:
    ``retiring_until`` is its."""
    kept = {h: k for h, k in platform.token_hashes.items() if h not in replaced}
    retiring = any(k == TokenKind.RETIRING for k in kept.values())
    return msgspec.structs.replace(
        platform,
        token_hashes=kept,
        retiring_until=platform.retiring_until if retiring else None,
    )


def confirm_token(platform: Platform) -> Platform:
    """The platform called with the token of a hub update that got no answer: it took it,
    so that token is its token C now and every other one stops working."""
    return msgspec.structs.replace(
        platform,
        token_hashes={
            h: TokenKind.CREDENTIALS
            for h, k in platform.token_hashes.items()
            if k == TokenKind.UNCONFIRMED
        },
        retiring_until=None,
    )


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``. A zero in
    either means no limit (hub/registry/ratelimit.py)."""

    per_second: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]
    burst: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0 or self.burst <= 0

    def describe(self) -> str:
        return f"{self.per_second:g} requests/s (burst {self.burst})"


class PartyRef(msgspec.Struct, frozen=True):
    """A party in any role: its country code and party id."""

    country_code: CountryCode
    party_id: PartyId

    @property
    def code(self) -> PartyCode:
        return (self.country_code.upper(), self.party_id.upper())


class PlatformRole(msgspec.Struct, frozen=True):
    """One of a platform's routable parties, without its business details."""

    role: Role
    country_code: CountryCode
    party_id: PartyId


class PublicPlatform(msgspec.Struct, kw_only=True):
    """A platform as the admin API shows it: never a token."""

    id: str
    name: str
    state: PlatformState
    created: datetime
    updated: datetime
    versions_url: str | None
    version: str | None
    raw_token: bool
    extra_origins: list[str]
    rate_limit: RateLimit | None  # None: the hub-wide default
    roles: list[PlatformRole]
    peer_hub: PartyRef | None
    endpoints: list[Endpoint]


class Platform(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    state: PlatformState = PlatformState.PENDING
    created: datetime
    updated: datetime
    versions_url: str | None = None
    version: str | None = None
    endpoints: list[Endpoint] = []
    roles: list[CredentialsRole] = []  # its routable parties
    peer_hub: CredentialsRole | None = None  # a 2.2.1 hub peer's own identity (role HUB)
    token_b: str | None = None  # the token the hub calls this platform with
    token_hashes: dict[str, TokenKind] = {}  # hashes of the tokens it calls the hub with
    retiring_until: datetime | None = None  # when its RETIRING tokens stop working
    raw_token: bool = False  # legacy peers that expect the token unencoded
    extra_origins: list[str] = []  # hosts an operator allowed beyond those it named
    rate_limit: RateLimit | None = None  # None: the hub-wide default

    def endpoint(self, module: str, role: InterfaceRole) -> Endpoint | None:
        """Identifiers are stored normalized (hub/onboarding/client.py negotiate)."""
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

    def own_urls(self) -> list[str]:
        """URLs whose hosts are this platform's: the ones it named and the extra origins an
        operator allowed (next pages and callbacks on a separate host)."""
        return [*self.urls(), *self.extra_origins]

    def public(self) -> PublicPlatform:
        """The record as the admin API shows it: never a token."""
        peer_hub = self.peer_hub
        return PublicPlatform(
            id=self.id,
            name=self.name,
            state=self.state,
            created=self.created,
            updated=self.updated,
            versions_url=self.versions_url,
            version=self.version,
            raw_token=self.raw_token,
            extra_origins=self.extra_origins,
            rate_limit=self.rate_limit,
            roles=[PlatformRole(r.role, r.country_code, r.party_id) for r in self.roles],
            peer_hub=PartyRef(peer_hub.country_code, peer_hub.party_id) if peer_hub else None,
            endpoints=self.endpoints,
        )


PartyKey = tuple[str, str, Role]  # (country_code, party_id, role), upper case


def party_key(country_code: str, party_id: str, role: Role | str) -> PartyKey:
    return (country_code.upper(), party_id.upper(), Role(role))


def party_field(key: PartyKey) -> str:
    """The one text form of a party key in Redis: ``CC:PID:ROLE``."""
    return f"{key[0]}:{key[1]}:{key[2]}"


def parse_party_field(field: str) -> PartyKey:
    country_code, party_id, role = field.split(":")
    return (country_code, party_id, Role(role))


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

    @property
    def code(self) -> tuple[str, str]:
        """(country_code, party_id): how routing headers name the party."""
        return (self.country_code, self.party_id)


# The status a platform's state gives its parties; REGISTERED ones may be OFFLINE instead.
PLATFORM_STATUS = {
    PlatformState.REGISTERED: ConnectionStatus.CONNECTED,
    PlatformState.SUSPENDED: ConnectionStatus.SUSPENDED,
}


PartyCode = tuple[str, str]  # (country_code, party_id), upper case: a party in any role


class PublicAgreement(msgspec.Struct, kw_only=True):
    """An agreement as the admin API shows it: the parties as objects, not pairs."""

    id: str
    parties: list[PartyRef]
    modules: list[str]
    valid_from: datetime | None
    valid_until: datetime | None
    created: datetime


class Agreement(msgspec.Struct, frozen=True, kw_only=True):
    """Two parties may exchange traffic (for ``modules``, or every module when empty) while
    ``valid_from`` <= now < ``valid_until``. Symmetric: the order of ``parties`` means nothing."""

    id: str
    parties: tuple[PartyCode, PartyCode]
    modules: tuple[str, ...] = ()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    created: datetime

    def covers(self, module: str | None, at: datetime) -> bool:
        """In force at ``at`` for ``module`` (None: for any module)."""
        if self.valid_from is not None and at < self.valid_from:
            return False
        if self.valid_until is not None and at >= self.valid_until:
            return False
        return module is None or not self.modules or module in self.modules

    def public(self) -> PublicAgreement:
        return PublicAgreement(
            id=self.id,
            parties=[PartyRef(cc, pid) for cc, pid in self.parties],
            modules=list(self.modules),
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            created=self.created,
        )
