"""Who may reach whom: the one question every scenario asks before it routes.

``routing_policy = "open"``: every party may reach every other. ``"agreements"``: two parties
exchange traffic only under an agreement in force for the module (roaming contracts, as every
commercial hub keeps them). Hub URLs already handed out (next pages, callbacks) keep working
for the request they were issued for: they are not asked again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from hub.registry.records import PartyCode
from hub.registry.snapshot import Snapshot


class RoutingPolicy(StrEnum):
    OPEN = "open"
    AGREEMENTS = "agreements"


class Entitlement(NamedTuple):
    allowed: bool
    reason: str
    agreement_id: str | None = None


class Policy:
    def __init__(self, mode: RoutingPolicy | str) -> None:
        self.mode = RoutingPolicy(mode)

    @property
    def open(self) -> bool:
        return self.mode is RoutingPolicy.OPEN

    def entitled(
        self,
        snapshot: Snapshot,
        a: PartyCode,
        b: PartyCode,
        module: str | None,
        at: datetime | None = None,
    ) -> Entitlement:
        """May ``a`` and ``b`` exchange ``module`` traffic at ``at`` (now)? ``module`` None:
        any module (ClientInfo visibility, roles)."""
        if self.mode is RoutingPolicy.OPEN:
            return Entitlement(True, "routing policy is open")
        if a == b:
            return Entitlement(True, "a party may reach itself")
        moment = at or datetime.now(UTC)
        for agreement in snapshot.agreements_between(a, b):
            if agreement.covers(module, moment):
                return Entitlement(True, f"agreement {agreement.id}", agreement.id)
        what = f"for {module} " if module else ""
        return Entitlement(
            False, f"no roaming agreement between {'/'.join(a)} and {'/'.join(b)} {what}in force"
        )

    def allows(self, snapshot: Snapshot, a: PartyCode, b: PartyCode, module: str | None) -> bool:
        return self.open or self.entitled(snapshot, a, b, module).allowed

    def sees(self, snapshot: Snapshot, viewer_platform: str, party: PartyCode) -> bool:
        """Under agreements, a platform sees a party as it is only when one of its own
        parties may reach it; otherwise as PLANNED (mod_hub_client_info, ConnectionStatus)."""
        if self.open:
            return True
        return any(
            self.allows(snapshot, own.code, party, None)
            for own in snapshot.parties_on(viewer_platform)
        )
