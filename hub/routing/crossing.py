"""Objects crossing between OCPI versions: what goes as it is, what is translated, and what
cannot go.

Routing is the same in 2.2.1 and 2.3.0 (transport_and_format, "Message Routing"), so one
decision serves both, and between two platforms of one version the body goes through byte for
byte. Between versions, the objects of Commands, ChargingProfiles and HubClientInfo are the
same on the wire; those of Locations, Tokens, Tariffs, Sessions and CDRs are translated
(hub/ocpi/translation.py). Custom commands have no 2.2.1 form (2.2.1 "CommandType" is a
closed enum), and the objects of custom modules are passed as they are (both sides agreed on
them).
"""

from __future__ import annotations

import msgspec

from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import V2_2_1, VERSION, InterfaceRole, ModuleID
from hub.ocpi.status import StatusCode
from hub.ocpi.translation import TRANSLATED, Untranslatable, translate

# mod_commands (2.2.1) "CommandType": a closed enum.
COMMANDS_2_2_1 = frozenset(
    {"CANCEL_RESERVATION", "RESERVE_NOW", "START_SESSION", "STOP_SESSION", "UNLOCK_CONNECTOR"}
)


def flow(method: str, requester: str, receiver: str) -> tuple[str, str]:
    """The versions the module's objects go from and to: a GET brings the receiver's
    objects to the requester; a push brings the requester's to the receiver."""
    return (receiver, requester) if method == "GET" else (requester, receiver)


def untranslated(module: str, source: str | None, target: str | None, suffix: str) -> str | None:
    """Why ``module``'s objects cannot go from OCPI ``source`` to ``target`` as they are;
    None when they can. A platform of unknown version is taken to speak the newest."""
    source, target = source or VERSION, target or VERSION
    if source == target:
        return None
    command = suffix.strip("/").split("/")[0].upper()
    if module == ModuleID.COMMANDS and target == V2_2_1 and command not in COMMANDS_2_2_1:
        return f"command {command} does not exist in OCPI {V2_2_1}"
    return None


def translated(module: str, source: str | None, target: str | None) -> bool:
    """Whether ``module``'s objects are decoded and translated on the way."""
    return (source or VERSION) != (target or VERSION) and module in TRANSLATED


def level(interface: InterfaceRole, suffix: str) -> int:
    """Which object a URL names (mod_locations: 1 Location, 2 EVSE, 3 Connector): a RECEIVER
    URL starts with the owner's country_code and party_id, a SENDER URL does not."""
    segments = [s for s in suffix.split("/") if s]
    named = len(segments) - 2 if interface == InterfaceRole.RECEIVER else len(segments)
    return max(1, named)


class Crossing:
    """One request between platforms of two versions whose objects are translated: the
    request's body on the way there, the answer's ``data`` on the way back, and what each
    lost (named in the answer's status_message)."""

    def __init__(
        self, module: str, level: int, requester: str, receiver: str, receiver_name: str
    ) -> None:
        self.module, self.level = module, level
        self.requester, self.receiver, self.receiver_name = requester, receiver, receiver_name
        self.lost_there: list[str] = []
        self.lost_back: list[str] = []

    def request(self, body: bytes) -> bytes:
        """The request body in the receiver's version; 4000 when it has no form there."""
        if not body:
            return body
        try:
            document = _decode(body)
        except msgspec.DecodeError:
            return body  # not JSON: the receiver answers it as it would
        try:
            data, self.lost_there = translate(
                self.module, self.level, document, self.requester, self.receiver
            )
        except Untranslatable as exc:
            raise OcpiError(
                StatusCode.HUB_ERROR,
                f"receiver {self.receiver_name} speaks OCPI {self.receiver}: {exc}",
            ) from None
        return _encode(data)

    def answer(self, body: bytes) -> bytes:
        """The receiver's envelope with its ``data`` in the requester's version."""
        envelope = _decode(body)
        if not isinstance(envelope, dict):
            return body
        had_data = "data" in envelope
        try:
            envelope["data"], self.lost_back = translate(
                self.module, self.level, envelope.get("data"), self.receiver, self.requester
            )
        except Untranslatable as exc:
            envelope.pop("data", None)
            envelope["status_code"] = int(StatusCode.HUB_ERROR)
            envelope["status_message"] = (
                f"{self.receiver_name} answered in OCPI {self.receiver}: {exc}"
            )
            return _encode(envelope)
        if not had_data:
            envelope.pop("data")
        notes = [note(self.lost_there, self.receiver)] if self.lost_there else []
        notes += [note(self.lost_back, self.requester)] if self.lost_back else []
        if notes:
            previous = envelope.get("status_message")
            envelope["status_message"] = "; ".join([*([previous] if previous else []), *notes])
        return _encode(envelope)


def note(lost: list[str], target: str) -> str:
    """The words an answer's status_message carries about a translation."""
    return f"translated to OCPI {target}; left out, not expressible there: {', '.join(lost)}"


_decode = msgspec.json.decode
_encode = msgspec.json.encode
