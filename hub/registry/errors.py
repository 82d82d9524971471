"""What can go wrong in a registry write, in the registry's own words.

The edges map these once each (``hub/web/errors.py``): the OCPI edge to a status code, the
admin API to an HTTP status. Nothing here knows either.
"""

from __future__ import annotations


class RegistryError(Exception):
    """A write refused for a reason the caller can act on; nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownPlatform(RegistryError):
    def __init__(self, platform_id: str) -> None:
        super().__init__(f"unknown platform {platform_id}")


class PartyTaken(RegistryError):
    """One party belongs to one platform (unless that platform is suspended)."""


class ReservedParty(RegistryError):
    """The hub's own country code and party id belong to no platform."""


class PartyListedTwice(RegistryError):
    """A platform's roles name the same party twice."""


class PartyKnown(RegistryError):
    """An operator announced a party the hub already knows."""


class WrongPlatformState(RegistryError):
    """The platform is not in the state the operation needs (connect needs PENDING)."""


class UnknownAgreement(RegistryError):
    def __init__(self, agreement_id: str) -> None:
        super().__init__(f"unknown agreement {agreement_id}")
