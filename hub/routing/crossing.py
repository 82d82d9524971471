"""Objects crossing between OCPI versions: what goes as it is, and what does not go yet.

Routing is the same in 2.2.1 and 2.3.0 (transport_and_format, "Message Routing"), so one
decision serves both, and between two platforms of one version the body goes through byte for
byte. Between versions, the objects of some modules are the same on the wire, and 2.2.1
Locations and Tokens are valid 2.3.0 objects as they are (2.3.0 only adds optional fields and
opens enums). Everything else differs (Price in Sessions and CDRs, Tariff prices and
``tax_included``, 2.3.0-only enum values and fields going to 2.2.1): until the hub translates
those, it refuses them across versions rather than pass on what the receiver's version
cannot read. Custom commands have no 2.2.1 form (2.2.1 "CommandType" is a closed enum).
"""

from __future__ import annotations

from hub.ocpi.models import V2_2_1, VERSION, ModuleID

# The same on the wire in both versions (spec audit 3.5/3.6).
_SAME = frozenset({ModuleID.CHARGING_PROFILES, ModuleID.COMMANDS, ModuleID.HUB_CLIENT_INFO})
# 2.2.1 objects that are valid 2.3.0 objects as they are; not the other way.
_UPWARD = frozenset({ModuleID.LOCATIONS, ModuleID.TOKENS})
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
    if module in _SAME:
        command = suffix.strip("/").split("/")[0].upper()
        if module == ModuleID.COMMANDS and target == V2_2_1 and command not in COMMANDS_2_2_1:
            return f"command {command} does not exist in OCPI {V2_2_1}"
        return None
    if module in _UPWARD and target == VERSION:
        return None
    return (
        f"{module} objects differ between OCPI {source} and {target}, and the hub does not "
        "translate them yet"
    )
