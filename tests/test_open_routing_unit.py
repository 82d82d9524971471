"""What decides the receiver of an Open Routing Request, and what a push teaches the index:
pure functions, one rule a row (transport_and_format, "Open Routing Request")."""

from __future__ import annotations

from typing import Any

import pytest

from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import InterfaceRole
from hub.ocpi.status import StatusCode
from hub.routing.modules import module_facts
from hub.routing.open_routing import Lookup, body_facts, learned_from, open_route_key

S, R = InterfaceRole.SENDER, InterfaceRole.RECEIVER


def location(lid: str) -> Lookup:
    return Lookup("locations", lid, f"location {lid}")


def token(uid: str) -> Lookup:
    return Lookup("tokens", uid, f"token {uid}")


def session(sid: str) -> Lookup:
    return Lookup("sessions", sid, f"session {sid}")


def cdr(**token_fields: Any) -> dict[str, Any]:
    return {"id": "CDR1", "cdr_token": {"uid": "U1", "type": "RFID", **token_fields}}


@pytest.mark.parametrize(
    ("module", "interface", "method", "suffix", "body", "expected"),
    [
        # mod_locations "Sender Interface": GET /{location_id}[/{evse_uid}[/{connector_id}]].
        ("locations", S, "GET", "/LOC1", None, location("LOC1")),
        ("locations", S, "GET", "/LOC1/EVSE1/2", None, location("LOC1")),
        ("locations", S, "GET", "", None, None),  # the list: no id, nothing to look up
        ("locations", R, "PUT", "/NL/CPA/LOC1", None, None),  # a push: broadcast instead
        # mod_tokens "Real-time authorization": POST /{token_uid}/authorize.
        ("tokens", S, "POST", "/U1/authorize", None, token("U1")),
        ("tokens", S, "POST", "/U1", None, None),
        ("tokens", S, "GET", "", None, None),
        ("tokens", R, "GET", "/DE/MSA/U1", None, None),
        # mod_commands "Flow": the command object names the location or the session.
        ("commands", R, "POST", "/START_SESSION", {"location_id": "LOC1"}, location("LOC1")),
        ("commands", R, "POST", "/STOP_SESSION", {"session_id": "S1"}, session("S1")),
        (
            "commands",
            R,
            "POST",
            "/START_SESSION",
            {"location_id": "LOC1", "session_id": "S1"},
            location("LOC1"),
        ),
        (
            "commands",
            R,
            "POST",
            "/STOP_SESSION",
            {"location_id": 7, "session_id": "S1"},
            session("S1"),
        ),
        ("commands", R, "POST", "/CANCEL_RESERVATION", {"reservation_id": "RES1"}, None),
        ("commands", R, "POST", "/START_SESSION", None, None),
        ("commands", R, "POST", "/START_SESSION", ["LOC1"], None),
        ("commands", S, "POST", "/START_SESSION", {"location_id": "LOC1"}, None),  # a result
        # mod_charging_profiles "Receiver Interface": /{session_id}.
        ("chargingprofiles", R, "GET", "/S1", None, session("S1")),
        ("chargingprofiles", R, "PUT", "/S1", None, session("S1")),
        ("chargingprofiles", R, "DELETE", "/S1", None, session("S1")),
        ("chargingprofiles", R, "GET", "", None, None),
        ("chargingprofiles", S, "POST", "/S1", None, None),
        # mod_sessions "Set: Charging Preferences": PUT /{session_id}/charging_preferences
        # on the Sender; pushes to the Receiver at /{country_code}/{party_id}/{session_id}.
        ("sessions", S, "PUT", "/S1/charging_preferences", None, session("S1")),
        ("sessions", S, "GET", "", None, None),
        ("sessions", R, "PUT", "/NL/CPA/S1", None, session("S1")),
        ("sessions", R, "PATCH", "/NL/CPA/S1", None, session("S1")),
        ("sessions", R, "GET", "/NL/CPA", None, None),
        # mod_cdrs "CdrToken class": the eMSP that owns the token, case-insensitive.
        ("cdrs", R, "POST", "", cdr(country_code="de", party_id="msa"), ("DE", "MSA")),
        ("cdrs", R, "POST", "", cdr(country_code="DE", party_id="MSA"), ("DE", "MSA")),
        ("cdrs", R, "POST", "", cdr(country_code="DE", party_id=123), None),
        ("cdrs", R, "POST", "", {"id": "CDR1", "cdr_token": "DE*MSA"}, None),
        ("cdrs", R, "POST", "", {"id": "CDR1"}, None),
        ("cdrs", R, "POST", "", None, None),
        ("cdrs", S, "GET", "", None, None),
        # Modules the hub keeps no index for.
        ("tariffs", S, "GET", "/T1", None, None),
        ("tariffs", R, "PUT", "/NL/CPA/T1", None, None),
        ("bookings", R, "PUT", "/NL/CPA/B1", None, None),
        ("payments", S, "GET", "/P1", None, None),
        ("nltnm-tokens", S, "POST", "/U1/authorize", None, None),  # custom module
    ],
)
def test_open_route_key(
    module: str,
    interface: InterfaceRole,
    method: str,
    suffix: str,
    body: Any,
    expected: Lookup | tuple[str, str] | None,
) -> None:
    assert open_route_key(module_facts(module), interface, method, suffix, body) == expected


@pytest.mark.parametrize(
    ("module", "interface", "method", "suffix", "expected"),
    [
        # transport_and_format "Client Owned Object Push": /{country_code}/{party_id}/{id}.
        ("locations", R, "PUT", "/nl/cpa/LOC1", ("locations", "LOC1", ("NL", "CPA"))),
        ("locations", R, "PATCH", "/NL/CPA/LOC1/EVSE1", ("locations", "LOC1", ("NL", "CPA"))),
        ("tariffs", R, "PUT", "/NL/CPA/T1", ("tariffs", "T1", ("NL", "CPA"))),
        ("tokens", R, "PUT", "/de/msa/U1", ("tokens", "U1", ("DE", "MSA"))),
        ("tokens", R, "PATCH", "/DE/MSA/U1", ("tokens", "U1", ("DE", "MSA"))),
        ("sessions", R, "PUT", "/NL/CPA/S1", ("sessions", "S1", ("NL", "CPA"))),
        ("sessions", R, "PATCH", "/NL/CPA/S1", ("sessions", "S1", ("NL", "CPA"))),
        # Nothing learned: not a PUT/PATCH, not a RECEIVER, too short, not indexed.
        ("locations", R, "GET", "/NL/CPA/LOC1", None),
        ("tariffs", R, "DELETE", "/NL/CPA/T1", None),
        ("sessions", S, "PUT", "/NL/CPA/S1", None),
        ("locations", R, "PUT", "/NL/CPA", None),
        ("locations", R, "PUT", "/NL/CPA/", None),
        ("cdrs", R, "POST", "/NL/CPA/CDR1", None),
        ("bookings", R, "PUT", "/NL/CPA/B1", None),
        ("commands", R, "POST", "/NL/CPA/START_SESSION", None),
        ("nltnm-tokens", R, "PUT", "/DE/MSA/U1", None),
    ],
)
def test_learned_from(
    module: str,
    interface: InterfaceRole,
    method: str,
    suffix: str,
    expected: tuple[str, str, tuple[str, str]] | None,
) -> None:
    assert learned_from(module_facts(module), interface, method, suffix) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", None),
        (b"[1]", None),
        (b'"LOC1"', None),
        (b' \n{"location_id": "LOC1"}', {"location_id": "LOC1"}),
        # other fields are skipped unread: no range or type to fail on
        (b'{"session_id": "S1", "x": ' + b"9" * 5000 + b', "y": 1e999}', {"session_id": "S1"}),
        (b'{"cdr_token": {"party_id": "MSA"}}', {"cdr_token": {"party_id": "MSA"}}),
    ],
)
def test_body_facts_decode_only_what_open_routing_reads(
    body: bytes, expected: dict[str, Any] | None
) -> None:
    found = body_facts(body)
    if expected is None:
        assert found is None
    else:
        assert found == {"location_id": None, "session_id": None, "cdr_token": None, **expected}


def test_body_facts_refuse_a_field_they_read_beyond_range() -> None:
    with pytest.raises(OcpiError) as error:
        body_facts(b'{"location_id": ' + b"9" * 5000 + b"}")
    assert error.value.status_code == StatusCode.INVALID_PARAMETERS
    assert "location_id" in error.value.message
