"""The OCPI vocabulary: Authorization header, envelope, objects, module identifiers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec
import pytest

from hub.ocpi.auth import authorization_header, token_candidates
from hub.ocpi.envelope import encode_envelope
from hub.ocpi.models import ClientInfo, ConnectionStatus, Credentials, ModuleID, Role
from hub.ocpi.status import StatusCode


def test_authorization_header_is_base64_of_utf8() -> None:
    """transport_and_format, "Authorization header": Token base64(utf8(token))."""
    assert authorization_header("example-token") == "Token ZXhhbXBsZS10b2tlbg=="
    assert authorization_header("example-token", raw=True) == "Token example-token"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Token ZXhhbXBsZS10b2tlbg==", ("example-token", "ZXhhbXBsZS10b2tlbg==")),
        ("Token ZXhhbXBsZS10b2tlbgo=", ("example-token", "ZXhhbXBsZS10b2tlbgo=")),  # with \n
        ("token ZXhhbXBsZS10b2tlbg==", ("example-token", "ZXhhbXBsZS10b2tlbg==")),
        ("Token raw-token-with-dashes", ("raw-token-with-dashes",)),
        ("Token " + base64.b64encode("tökén".encode()).decode(), ("tökén", "dMO2a8Opbg==")),
        ("Bearer abc", ()),
        ("Token ", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_token_candidates(header: str | None, expected: tuple[str, ...]) -> None:
    assert token_candidates(header) == expected


def test_envelope_timestamp_is_utc_with_z_and_no_empty_fields() -> None:
    body = msgspec.json.decode(encode_envelope(None, StatusCode.UNKNOWN_RECEIVER, "who?"))
    assert set(body) == {"status_code", "status_message", "timestamp"}
    assert body["status_code"] == 4001 and body["timestamp"].endswith("Z")


def test_objects_accept_unknown_fields() -> None:
    """transport_and_format, "Non-specified JSON fields": never a reason to refuse."""
    raw = (
        b'{"token": "t", "url": "http://127.0.0.1/v", "new_field": 1, "roles": [{"role": "CPO",'
        b' "party_id": "ABC", "country_code": "NL", "extra": true,'
        b' "business_details": {"name": "X", "future": [1]}}]}'
    )
    credentials = msgspec.json.decode(raw, type=Credentials)
    assert credentials.roles[0].role is Role.CPO


def test_client_info_datetime_written_in_utc() -> None:
    info = ClientInfo(
        "ABC", "NL", Role.CPO, ConnectionStatus.OFFLINE, datetime(2026, 1, 2, tzinfo=UTC)
    )
    assert b'"last_updated":"2026-01-02T00:00:00Z"' in msgspec.json.encode(info)


@pytest.mark.parametrize(
    ("given", "normal"),
    [("Booking", "bookings"), ("LOCATIONS", "locations"), ("nltnm-x", "nltnm-x")],
)
def test_module_identifiers(given: str, normal: str) -> None:
    assert ModuleID.normalize(given) == normal


def test_payments_role() -> None:
    assert Role("PTP") is Role.PTP
