"""Which party a functional-module request goes to: a pure function of request and registry.

transport_and_format, "Message Routing": functional modules carry OCPI-from-* (always) and
OCPI-to-* (unless the hub is to decide). The from pair must be a party of the platform that
authenticated; the to pair names the receiving party, whose platform offers the same module
and interface role the requester called on the hub.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from enum import StrEnum

import msgspec

from hub.ocpi import headers
from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import ConnectionStatus, InterfaceRole, Role
from hub.ocpi.status import StatusCode
from hub.registry.records import Party, Platform
from hub.registry.snapshot import Snapshot
from hub.routing.modules import ModuleFacts
from hub.routing.urls import join_url


def _country_code(value: str) -> bool:
    return len(value) == 2 and value.isascii() and value.isalpha()


def _party_id(value: str) -> bool:
    return len(value) == 3 and value.isascii() and value.isalnum()


UNREACHABLE = (ConnectionStatus.SUSPENDED, ConnectionStatus.PLANNED)


class Addressing(msgspec.Struct, frozen=True):
    """The routing headers of one request, validated and upper-cased (CiString): OCPI-from
    and OCPI-to as (country_code, party_id) pairs."""

    sender: tuple[str, str]
    receiver: tuple[str, str] | None = None


def _header(value: str | None, name: str, valid: Callable[[str], bool]) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not valid(value):
        form = "2 letters" if valid is _country_code else "3 letters or digits"
        raise OcpiError(StatusCode.INVALID_PARAMETERS, f"header {name}: {value!r} is not {form}")
    return value.upper()


def parse_addressing(
    values: Mapping[str, str], sole_party: tuple[str, str] | None = None
) -> Addressing:
    """Validate the four routing headers. OCPI-from-* are required on functional modules,
    except from a platform with one party (``sole_party``): there they can only name it
    (transport_and_format, "Message Routing Headers": "This does not mean they have to be
    present in all request")."""
    return _addressing(
        values.get(headers.FROM_COUNTRY_CODE),
        values.get(headers.FROM_PARTY_ID),
        values.get(headers.TO_COUNTRY_CODE),
        values.get(headers.TO_PARTY_ID),
        sole_party,
    )


@functools.lru_cache(maxsize=4096)
def _addressing(
    from_cc: str | None,
    from_pid: str | None,
    to_cc: str | None,
    to_pid: str | None,
    sole_party: tuple[str, str] | None,
) -> Addressing:
    """``parse_addressing`` of the four header values as sent, kept for the next request
    that sends the same: a platform sends few distinct pairs, every request validates
    them. (An invalid pair raises, and nothing is kept.)"""
    from_cc = _header(from_cc, headers.FROM_COUNTRY_CODE, _country_code)
    from_pid = _header(from_pid, headers.FROM_PARTY_ID, _party_id)
    to_cc = _header(to_cc, headers.TO_COUNTRY_CODE, _country_code)
    to_pid = _header(to_pid, headers.TO_PARTY_ID, _party_id)
    if from_cc is None and from_pid is None and sole_party is not None:
        from_cc, from_pid = sole_party
    if from_cc is None or from_pid is None:
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            "functional modules need the OCPI-from-country-code and OCPI-from-party-id headers",
        )
    if (to_cc is None) != (to_pid is None):
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            "OCPI-to-country-code and OCPI-to-party-id go together: send both or neither",
        )
    receiver = None if to_cc is None or to_pid is None else (to_cc, to_pid)
    return Addressing((from_cc, from_pid), receiver)


def sole_party(own: frozenset[tuple[str, str]]) -> tuple[str, str] | None:
    """The one (country_code, party_id) of a platform that has exactly one (in any roles),
    from its ``own`` parties (``Snapshot.own_parties``)."""
    return next(iter(own)) if len(own) == 1 else None


def check_sender(addressing: Addressing, own: frozenset[tuple[str, str]]) -> None:
    """No platform may speak for another: the from pair must be one of its ``own`` parties."""
    if addressing.sender not in own:
        cc, pid = addressing.sender
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            f"OCPI-from {cc}/{pid} is not a party of the platform this token belongs to",
        )


def check_owner(
    facts: ModuleFacts, interface: InterfaceRole, suffix: str, sender: tuple[str, str]
) -> None:
    """transport_and_format "Client Owned Object Push": on a RECEIVER interface the URL
    names the object's owner, /{country_code}/{party_id}/...; through the hub only the owner
    itself may use it (receivers cannot tell, since every party is in the hub's roles)."""
    if not facts.client_owned or interface != InterfaceRole.RECEIVER:
        return
    parts = [p for p in suffix.split("/") if p]
    owner = (parts[0].upper(), parts[1].upper()) if len(parts) >= 2 else None
    if owner != sender:
        named = "/".join(owner) if owner else "no /{country_code}/{party_id}"
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            f"{facts.id} objects are addressed under their owner's /country_code/party_id: "
            f"{named} is not the OCPI-from party {'/'.join(sender)}",
        )


class Direct(msgspec.Struct, frozen=True):
    """Forward to one receiving party's platform endpoint."""

    receiver: Party
    platform: Platform
    endpoint_url: str

    def url(self, suffix: str, query: str) -> str:
        return join_url(self.endpoint_url, suffix, query)


def route_direct(
    snapshot: Snapshot,
    facts: ModuleFacts,
    interface: InterfaceRole,
    receiver: tuple[str, str],
) -> Direct:
    """The receiving party of a direct request, and the URL on its platform.

    A (country_code, party_id) pair may hold several roles; the one whose platform offers
    the module's interface wins, connected parties before others.
    """
    candidates = snapshot.parties_of(*receiver)
    if not candidates:
        raise OcpiError(StatusCode.UNKNOWN_RECEIVER, f"unknown receiver {'/'.join(receiver)}")
    reachable = [p for p in candidates if p.status not in UNREACHABLE]
    if not reachable:
        status = candidates[0].status
        raise OcpiError(
            StatusCode.RECEIVER_NOT_CONNECTED,
            f"receiver {'/'.join(receiver)} is {status}",
        )
    for party in reachable:
        # A reachable party is CONNECTED or OFFLINE, so it has a platform.
        platform = snapshot.platforms.get(party.platform_id or "")
        endpoint = platform.endpoint(facts.id, interface) if platform else None
        if platform is not None and endpoint is not None:
            return Direct(party, platform, endpoint.url)
    raise OcpiError(
        StatusCode.HUB_ERROR,
        f"receiver {'/'.join(receiver)} does not offer the {facts.id} {interface} interface",
    )


class DirectRoutes:
    """``route_direct``'s answers, kept while the snapshot they came from is current: every
    direct request asks, and a snapshot never changes (a registry change makes a new one).
    Only answers are kept, at most KEPT of them: a refusal is worked out again each time."""

    KEPT = 10_000

    def __init__(self) -> None:
        self._of: Snapshot | None = None
        self._kept: dict[tuple[str, InterfaceRole, tuple[str, str]], Direct] = {}

    def __call__(
        self,
        snapshot: Snapshot,
        facts: ModuleFacts,
        interface: InterfaceRole,
        receiver: tuple[str, str],
    ) -> Direct:
        if snapshot is not self._of:
            self._of, self._kept = snapshot, {}
        key = (facts.id, interface, receiver)
        found = self._kept.get(key)
        if found is None:
            found = route_direct(snapshot, facts, interface, receiver)
            if len(self._kept) < self.KEPT:
                self._kept[key] = found
        return found


class Scenario(StrEnum):
    """transport_and_format, "Overview of required/optional routing headers"."""

    DIRECT = "direct"
    BROADCAST = "broadcast"
    GET_ALL = "get-all"
    OPEN = "open"


WRITES = frozenset({"PUT", "PATCH", "POST", "DELETE"})


def classify(
    addressing: Addressing, method: str, interface: InterfaceRole, hub: tuple[str, str]
) -> Scenario:
    """to = another party: Direct. to = the hub: a write on a RECEIVER interface is a
    Broadcast Push, a GET on a SENDER interface is GET All. No to-headers: Open Routing.
    Anything else addressed to the hub is refused: GET is never broadcast."""
    receiver = addressing.receiver
    if receiver is None:
        return Scenario.OPEN
    if receiver != hub:
        return Scenario.DIRECT
    if interface == InterfaceRole.RECEIVER and method in WRITES:
        return Scenario.BROADCAST
    if interface == InterfaceRole.SENDER and method == "GET":
        return Scenario.GET_ALL
    raise OcpiError(
        StatusCode.INVALID_PARAMETERS,
        f"a {method} on a {interface} interface cannot be addressed to the hub "
        f"({'/'.join(hub)}): omit the OCPI-to headers for an open routing request instead",
    )


def check_get_all(facts: ModuleFacts, suffix: str) -> None:
    """transport_and_format "GET All via Hubs": the hub merges the lists of the data owners.
    A path that names one object has one owner: it is routed, not merged."""
    if not facts.is_list(suffix):
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            f"{facts.id}/sender{suffix} names one object, not a list: omit the OCPI-to headers "
            "to have it routed to its owner, or name the owner in them",
        )


def opposite_roles(sender: Role) -> frozenset[Role]:
    """Broadcast Push: a CPO reaches every other role ("Other" counts as eMSP-like);
    any other role reaches CPOs only."""
    if sender == Role.CPO:
        return frozenset(Role) - {Role.CPO}
    return frozenset({Role.CPO})


def sender_role(
    snapshot: Snapshot, platform: Platform, sender: tuple[str, str], owner: Role | None
) -> Role:
    """The role the from pair speaks in: the module's data owner if it holds that role."""
    roles = [p.role for p in snapshot.parties_of(*sender) if p.platform_id == platform.id]
    if owner is not None and owner in roles:
        return owner
    return roles[0] if roles else Role.OTHER


def _connected_endpoints(
    snapshot: Snapshot,
    facts: ModuleFacts,
    interface: InterfaceRole,
    roles: frozenset[Role],
    exclude_platform: str,
) -> list[tuple[Party, Platform, str]]:
    """CONNECTED parties of ``roles`` whose platform offers the interface, in a stable
    order, none on ``exclude_platform``: (party, platform, endpoint URL)."""
    out = []
    for party in sorted(snapshot.parties.values(), key=lambda p: p.key):
        if (
            party.role in roles
            and party.status == ConnectionStatus.CONNECTED
            and party.platform_id not in (None, exclude_platform)
        ):
            platform = snapshot.platforms[party.platform_id]
            endpoint = platform.endpoint(facts.id, interface)
            if endpoint is not None:
                out.append((party, platform, endpoint.url))
    return out


def broadcast_receivers(
    snapshot: Snapshot, facts: ModuleFacts, sender_platform: str, role: Role
) -> list[tuple[Party, Platform, str]]:
    """Broadcast Push: the opposite role's parties offering the module's RECEIVER interface,
    never on the sender's own platform."""
    return _connected_endpoints(
        snapshot, facts, InterfaceRole.RECEIVER, opposite_roles(role), sender_platform
    )


def data_owners(
    snapshot: Snapshot, facts: ModuleFacts, requester_platform: str
) -> list[tuple[Party, Platform, str]]:
    """GET All: the data owner role's parties offering the SENDER interface, not on the
    requester's own platform."""
    if facts.data_owner is None:
        return []
    return _connected_endpoints(
        snapshot, facts, InterfaceRole.SENDER, frozenset({facts.data_owner}), requester_platform
    )


def reachable(snapshot: Snapshot, platform_id: str, party: tuple[str, str]) -> Platform:
    """The platform of a hub URL's receiver (a next page, a callback), if it may still be
    called: the party is still on that platform and neither SUSPENDED nor PLANNED."""
    platform = snapshot.platforms.get(platform_id)
    parties = [p for p in snapshot.parties_of(*party) if p.platform_id == platform_id]
    if platform is None or not parties or all(p.status in UNREACHABLE for p in parties):
        raise OcpiError(
            StatusCode.RECEIVER_NOT_CONNECTED, f"receiver {'/'.join(party)} is not connected"
        )
    return platform
