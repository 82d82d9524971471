"""Decoding request and response bodies into OCPI objects, with errors that say what is wrong."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode

T = TypeVar("T")


def decode_request(body: bytes, type_: type[T], what: str) -> T:
    """Invalid JSON is HTTP 400 (status_codes); a well-formed but wrong object is 2001."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise OcpiError(StatusCode.INVALID_PARAMETERS, f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS, f"request body is not valid JSON: {exc}", 400
        ) from None


def check_json(body: bytes) -> None:
    """Raise HTTP 400 / 2001 unless ``body`` is one well-formed JSON value."""
    decode_request(body, msgspec.Raw, "JSON")
