"""What the hub knows of each functional module: one table drives every routing decision.

Methods per interface come from each module chapter's interface tables (SENDER is implemented
by the data owner, RECEIVER by the party the data is pushed to). ``response_url`` says where a
request carries the URL the receiver answers asynchronously to. Custom modules a platform
advertises get permissive facts: every method on both interfaces, nothing rewritten.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from hub.ocpi.models import InterfaceRole, ModuleID, Role


class Carrier(StrEnum):
    BODY = "body"  # a "response_url" field of the JSON body
    QUERY = "query"  # a "response_url" query parameter


S, R = InterfaceRole.SENDER, InterfaceRole.RECEIVER
ALL_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class ModuleFacts(msgspec.Struct, frozen=True):
    id: str
    data_owner: Role | None
    methods: dict[InterfaceRole, frozenset[str]]
    response_url: dict[tuple[InterfaceRole, str], Carrier] = {}
    client_owned: bool = False  # RECEIVER URLs carry /{country_code}/{party_id}/...
    custom: bool = False
    # SENDER paths (after the endpoint URL) that answer a paginated list: what GET All merges.
    lists: frozenset[str] = frozenset({""})

    def is_list(self, suffix: str) -> bool:
        return suffix.strip("/") in self.lists

    def allows(self, interface: InterfaceRole, method: str) -> bool:
        return method in self.methods.get(interface, frozenset())

    def response_url_carrier(self, interface: InterfaceRole, method: str) -> Carrier | None:
        return self.response_url.get((interface, method))


def _facts(
    module: str,
    owner: Role | None,
    sender: str,
    receiver: str,
    **extra: object,
) -> ModuleFacts:
    return ModuleFacts(
        id=module,
        data_owner=owner,
        methods={S: frozenset(sender.split()), R: frozenset(receiver.split())},
        **extra,  # type: ignore[arg-type]
    )


MODULES: dict[str, ModuleFacts] = {
    f.id: f
    for f in (
        # mod_cdrs: CPO Sender GET list; eMSP Receiver POST (answers Location) and GET by it.
        _facts(ModuleID.CDRS, Role.CPO, "GET", "GET POST"),
        # mod_charging_profiles: CPO Receiver GET/PUT/DELETE with response_url; the Sender
        # (SCSP/eMSP) takes the asynchronous result (POST) and unsolicited updates (PUT).
        _facts(
            ModuleID.CHARGING_PROFILES,
            None,
            "POST PUT",
            "GET PUT DELETE",
            response_url={
                (R, "GET"): Carrier.QUERY,
                (R, "PUT"): Carrier.BODY,
                (R, "DELETE"): Carrier.QUERY,
            },
        ),
        # mod_commands: CPO Receiver POST {command} with response_url in every command object;
        # the eMSP Sender takes the CommandResult.
        _facts(
            ModuleID.COMMANDS,
            None,
            "POST",
            "POST",
            response_url={(R, "POST"): Carrier.BODY},
        ),
        _facts(ModuleID.LOCATIONS, Role.CPO, "GET", "GET PUT PATCH", client_owned=True),
        # mod_sessions: the Sender also takes PUT {session_id}/charging_preferences.
        _facts(ModuleID.SESSIONS, Role.CPO, "GET PUT", "GET PUT PATCH", client_owned=True),
        _facts(ModuleID.TARIFFS, Role.CPO, "GET", "GET PUT DELETE", client_owned=True),
        # mod_tokens: eMSP Sender GET list and POST {uid}/authorize (real-time authorization).
        _facts(ModuleID.TOKENS, Role.EMSP, "GET POST", "GET PUT PATCH", client_owned=True),
        # mod_bookings: CPO Sender GET lists and POST BookingRequest; eMSP Receiver
        # GET/PUT/PATCH of Bookings and BookingLocations.
        # GET of the Bookings list and of /booking_locations; the Sender takes booking changes
        # (PUT, PATCH: "n/c" in the Booking Interface table) as well.
        _facts(
            ModuleID.BOOKINGS,
            Role.CPO,
            "GET POST PUT PATCH",
            "GET PUT PATCH",
            client_owned=True,
            lists=frozenset({"", "booking_locations"}),
        ),
        # mod_payments: the CPO writes to the PTP's Sender too (terminals, activation).
        _facts(
            ModuleID.PAYMENTS,
            Role.PTP,
            "GET POST PUT PATCH",
            "GET POST",
            lists=frozenset({"terminals", "financial-advice-confirmations"}),
        ),
    )
}


def module_facts(identifier: str) -> ModuleFacts:
    """Facts of a known module, or permissive facts for a custom one."""
    module = ModuleID.normalize(identifier)
    known = MODULES.get(module)
    if known is not None:
        return known
    return ModuleFacts(
        id=module, data_owner=None, methods={S: ALL_METHODS, R: ALL_METHODS}, custom=True
    )
