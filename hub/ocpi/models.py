"""OCPI objects the hub reads or writes itself, as msgspec Structs.

Unknown JSON fields are accepted and ignored (transport_and_format, "Non-specified JSON
fields"); optional fields that are unset are left out when encoding.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

VERSION = "2.3.0"
V2_2_1 = "2.2.1"
# The versions the hub speaks, newest first: of those both sides offer, the first is used.
VERSIONS = (VERSION, V2_2_1)

CountryCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2}$", description="2 letters")]
PartyId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{3}$", description="3 letters/digits")]
CredentialsToken = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class Role(StrEnum):
    CPO = "CPO"
    EMSP = "EMSP"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"
    PTP = "PTP"  # the Payments module's terminal provider; not in the 2.3.0 Role enum
    HUB = "HUB"  # 2.2.1 only (types "Role"): how a hub names itself; never a routable party

    @property
    def outward(self) -> Role:
        """types "Role": a closed enum without PTP, so a strict peer would refuse a PTP
        party; it is accepted from platforms and sent to others as OTHER."""
        return Role.OTHER if self is Role.PTP else self


class InterfaceRole(StrEnum):
    SENDER = "SENDER"
    RECEIVER = "RECEIVER"


class ConnectionStatus(StrEnum):
    CONNECTED = "CONNECTED"
    OFFLINE = "OFFLINE"
    PLANNED = "PLANNED"
    SUSPENDED = "SUSPENDED"


class ModuleID:
    """Known module identifiers; ModuleID is an open enum, so any string is allowed."""

    CDRS = "cdrs"
    CHARGING_PROFILES = "chargingprofiles"
    COMMANDS = "commands"
    CREDENTIALS = "credentials"
    HUB_CLIENT_INFO = "hubclientinfo"
    LOCATIONS = "locations"
    SESSIONS = "sessions"
    TARIFFS = "tariffs"
    TOKENS = "tokens"
    BOOKINGS = "bookings"
    PAYMENTS = "payments"

    # The Bookings chapter names its identifier `Booking` while its URLs say `bookings`.
    ALIASES = {"booking": BOOKINGS}

    @classmethod
    def normalize(cls, identifier: str) -> str:
        """Module identifiers are compared case-insensitively, aliases folded to one form."""
        lowered = identifier.strip().lower()
        return cls.ALIASES.get(lowered, lowered)


FUNCTIONAL_MODULES = (
    ModuleID.CDRS,
    ModuleID.CHARGING_PROFILES,
    ModuleID.COMMANDS,
    ModuleID.LOCATIONS,
    ModuleID.SESSIONS,
    ModuleID.TARIFFS,
    ModuleID.TOKENS,
    ModuleID.BOOKINGS,
    ModuleID.PAYMENTS,
)


# Modules that exist only from 2.3.0 on: a 2.2.1 platform is never offered them.
_SINCE_2_3_0 = (ModuleID.BOOKINGS, ModuleID.PAYMENTS)


def modules_of(version: str) -> tuple[str, ...]:
    """The functional modules of ``version`` (2.2.1 "ModuleID" is a closed enum)."""
    if version == V2_2_1:
        return tuple(m for m in FUNCTIONAL_MODULES if m not in _SINCE_2_3_0)
    return FUNCTIONAL_MODULES


class Version(msgspec.Struct):
    version: str
    url: Url


class Endpoint(msgspec.Struct):
    identifier: str
    role: InterfaceRole
    url: Url


class VersionDetails(msgspec.Struct):
    version: str
    endpoints: list[Endpoint]


class Image(msgspec.Struct, omit_defaults=True):
    url: Url
    category: str
    type: str
    thumbnail: Url | None = None
    width: int | None = None
    height: int | None = None


class BusinessDetails(msgspec.Struct, omit_defaults=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    website: Url | None = None
    logo: Image | None = None


class CredentialsRole(msgspec.Struct):
    role: Role
    business_details: BusinessDetails
    party_id: PartyId
    country_code: CountryCode


class Credentials(msgspec.Struct, omit_defaults=True):
    token: CredentialsToken
    url: Url
    roles: Annotated[list[CredentialsRole], msgspec.Meta(min_length=1)]
    # CiString(5) in the spec; the hub never uses a peer's value, so an odd one is let be.
    hub_party_id: str | None = None


class ClientInfo(msgspec.Struct):
    party_id: str
    country_code: str
    role: Role
    status: ConnectionStatus
    last_updated: datetime
