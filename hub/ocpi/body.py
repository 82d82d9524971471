"""Decoding request and response bodies into OCPI objects, with errors that say what is wrong.

Every JSON document from outside (a request body, a platform's answer) is decoded here, so one
place turns every way decoding can fail into an error the caller answers: not JSON, nested
deeper than the decoder goes (msgspec stops at the interpreter's recursion limit, about 975
levels), or well-formed but not the expected object (a number beyond the decoder's range is
one of those).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode

T = TypeVar("T")


class BadJson(ValueError):
    """A document that could not be decoded. ``malformed``: not readable as JSON at all (a
    syntax error, or nested too deeply); otherwise JSON of the wrong shape."""

    def __init__(self, problem: str, malformed: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.malformed = malformed


def decode_json(body: bytes, type_: type[T] | msgspec.json.Decoder[T]) -> T:
    """``body`` decoded as ``type_`` (a type or a ``msgspec.json.Decoder``), or BadJson."""
    try:
        if isinstance(type_, msgspec.json.Decoder):
            return type_.decode(body)
        return msgspec.json.decode(body, type=type_)
    except RecursionError:
        raise BadJson("nested too deeply", malformed=True) from None
    except msgspec.ValidationError as exc:
        raise BadJson(str(exc), malformed=False) from None
    except msgspec.DecodeError as exc:
        raise BadJson(f"is not valid JSON: {exc}", malformed=True) from None


def decode_request(body: bytes, type_: type[T], what: str) -> T:
    """Invalid JSON (or nesting too deep to read) is HTTP 400 (status_codes); a well-formed
    but wrong object is 2001."""
    try:
        return decode_json(body, type_)
    except BadJson as exc:
        if exc.malformed:
            raise OcpiError(
                StatusCode.INVALID_PARAMETERS, f"request body {exc.problem}", 400
            ) from None
        raise OcpiError(StatusCode.INVALID_PARAMETERS, f"invalid {what}: {exc.problem}") from None


def check_json(body: bytes) -> None:
    """Raise HTTP 400 / 2001 unless ``body`` is one well-formed JSON value."""
    decode_request(body, msgspec.Raw, "JSON")


class _StatusOnly(msgspec.Struct):
    status_code: int


_status_only = msgspec.json.Decoder(_StatusOnly)


def status_code_of(body: bytes) -> int:
    """The status_code of a platform's OCPI answer; BadJson if it is not one."""
    return decode_json(body, _status_only).status_code
