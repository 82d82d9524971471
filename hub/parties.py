"""Parties as the operator and other parties see them: who is reachable, in which state."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.ocpi.models import ConnectionStatus, Role
from hub.registry import PartyKey, PlatformState, Snapshot, party_key

_STATUS = {
    PlatformState.REGISTERED: ConnectionStatus.CONNECTED,
    PlatformState.SUSPENDED: ConnectionStatus.SUSPENDED,
}


class Party(msgspec.Struct, frozen=True):
    country_code: str
    party_id: str
    role: Role
    platform_id: str
    name: str
    status: ConnectionStatus

    @property
    def key(self) -> PartyKey:
        return party_key(self.country_code, self.party_id, self.role)

    def public(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__struct_fields__}


def parties(snapshot: Snapshot) -> list[Party]:
    """Every party of every registered or suspended platform; a party taken over by a new
    registration is shown once, under the platform that holds it now."""
    found: dict[PartyKey, Party] = {}
    for platform in sorted(snapshot.platforms.values(), key=lambda p: p.created):
        status = _STATUS.get(platform.state)
        if status is None:
            continue
        for role in platform.roles:
            party = Party(
                country_code=role.country_code.upper(),
                party_id=role.party_id.upper(),
                role=role.role,
                platform_id=platform.id,
                name=role.business_details.name,
                status=status,
            )
            held = found.get(party.key)
            if held is None or held.status == ConnectionStatus.SUSPENDED:
                found[party.key] = party
    return sorted(found.values(), key=lambda p: (p.country_code, p.party_id, p.role))
