"""The routing table: the whole registry at one generation, indexed for the hot path.

Every request reads one of these (token -> platform, party -> platform, who is connected);
it is built from Redis once per registry change and never changed after, so readers need no
lock and cost no round trip.
"""

from __future__ import annotations

from hub.ocpi.models import ConnectionStatus
from hub.registry.records import (
    PLATFORM_STATUS,
    Agreement,
    Party,
    PartyCode,
    PartyKey,
    PartyState,
    Platform,
    PlatformState,
    TokenKind,
    party_key,
)
from hub.registry.tokens import token_hash

_STATE_ONLY = (ConnectionStatus.PLANNED, ConnectionStatus.SUSPENDED)


class Snapshot:
    """The registry at ``generation``: platforms, their parties and statuses, by every key
    a request looks them up by."""

    def __init__(
        self,
        generation: int,
        platforms: dict[str, Platform],
        states: dict[PartyKey, PartyState] | None = None,
        agreements: dict[str, Agreement] | None = None,
    ) -> None:
        self.generation = generation
        self.platforms = platforms
        self._own: dict[str, tuple[Platform, frozenset[PartyCode]]] = {}
        self.agreements = agreements or {}
        self.by_pair: dict[frozenset[PartyCode], list[Agreement]] = {}
        for agreement in self.agreements.values():
            self.by_pair.setdefault(frozenset(agreement.parties), []).append(agreement)
        self.by_token: dict[str, tuple[Platform, TokenKind]] = {}
        self.parties: dict[PartyKey, Party] = _parties(platforms, states or {}, self.by_token)
        self.by_code: dict[tuple[str, str], list[Party]] = {}
        self.by_platform: dict[str, list[Party]] = {}
        for party in sorted(self.parties.values(), key=lambda p: p.key):
            self.by_code.setdefault(party.code, []).append(party)
            if party.platform_id is not None:
                self.by_platform.setdefault(party.platform_id, []).append(party)
        self.offline = frozenset(
            platform_id
            for platform_id, parties in self.by_platform.items()
            if any(p.status == ConnectionStatus.OFFLINE for p in parties)
        )

    def own_parties(self, platform: Platform) -> frozenset[PartyCode]:
        """A platform's (country_code, party_id) pairs, upper-cased, in any roles: worked out
        once per record (a snapshot's records do not change), since every request a platform
        makes checks its sender against them, and a platform may hold a thousand parties."""
        kept = self._own.get(platform.id)
        if kept is None or kept[0] is not platform:
            codes = frozenset((r.country_code.upper(), r.party_id.upper()) for r in platform.roles)
            kept = self._own[platform.id] = (platform, codes)
        return kept[1]

    def token(self, token: str) -> tuple[Platform, TokenKind] | None:
        return self.by_token.get(token_hash(token))

    def parties_of(self, country_code: str, party_id: str) -> list[Party]:
        """Every role a (country_code, party_id) pair holds, case-insensitively."""
        return self.by_code.get((country_code.upper(), party_id.upper()), [])

    def agreements_between(self, a: PartyCode, b: PartyCode) -> list[Agreement]:
        return self.by_pair.get(frozenset((a, b)), [])

    def parties_on(self, platform_id: str) -> list[Party]:
        return self.by_platform.get(platform_id, [])

    def connected(self, platform: Platform) -> bool:
        """A registered platform with at least one CONNECTED party."""
        return platform.state == PlatformState.REGISTERED and any(
            p.status == ConnectionStatus.CONNECTED for p in self.parties_on(platform.id)
        )


def _parties(
    platforms: dict[str, Platform],
    states: dict[PartyKey, PartyState],
    by_token: dict[str, tuple[Platform, TokenKind]],
) -> dict[PartyKey, Party]:
    """Every party with its status. A party taken over by a newer registration (after its
    old platform was suspended) is kept once, under its current platform; announced parties
    and parties a platform dropped keep the status they were given."""
    parties: dict[PartyKey, Party] = {}
    for platform in sorted(platforms.values(), key=lambda p: p.created):
        for digest, kind in platform.token_hashes.items():
            by_token[digest] = (platform, kind)
        default = PLATFORM_STATUS.get(platform.state)
        if default is None:
            continue
        for role in platform.roles:
            key = party_key(role.country_code, role.party_id, role.role)
            held = parties.get(key)
            if held is not None and held.status != ConnectionStatus.SUSPENDED:
                continue
            state = states.get(key)
            status = default
            if state is not None and default == ConnectionStatus.CONNECTED:
                status = state.status  # CONNECTED or OFFLINE
            parties[key] = Party(
                country_code=key[0],
                party_id=key[1],
                role=key[2],
                platform_id=platform.id,
                name=role.business_details.name,
                status=status,
                last_updated=state.last_updated if state else platform.updated,
            )
    for key, state in states.items():
        if key not in parties and state.status in _STATE_ONLY:
            parties[key] = Party(*key, None, state.name or "", state.status, state.last_updated)
    return parties
