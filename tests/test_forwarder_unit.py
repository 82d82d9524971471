"""What the hub accepts as an OCPI response from a receiver (transport_and_format,
"Response format"): a JSON object with a status_code, checked without decoding the body."""

from __future__ import annotations

import pytest

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode
from hub.routing.forwarder import _check_envelope


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}', 1000),
        (b'{"data":[],"status_code":2001,"status_message":"bad"}', 2001),
        (b' \r\n\t{"status_code": 1000}', 1000),
        (b'{"status_code": "1000"}', 0),  # passed on as it is; logged as no OCPI status
    ],
)
def test_an_envelope_passes_with_its_status(body: bytes, status: int) -> None:
    assert _check_envelope(body) == status


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"<html><body>502 Bad Gateway</body></html>",
        b'[{"status_code": 1000}]',
        b'"status_code"',
        b'{"data": [], "timestamp": "2026-01-01T00:00:00Z"}',
        b'{"status": 1000}',
        b'{"message": "status_code missing"}',
    ],
)
def test_anything_else_is_4000(body: bytes) -> None:
    with pytest.raises(OcpiError) as error:
        _check_envelope(body, 404)
    assert error.value.status_code == StatusCode.HUB_ERROR
    assert error.value.message == (
        "the receiver answered HTTP 404 with something that is not an OCPI response"
    )
    assert error.value.http_status == 404, "status_codes 4xxx: the receiver's status stays"
