"""Errors of the core as each edge answers them: one table, one row per error.

The registry and onboarding raise errors in their own words; the OCPI edge answers them as an
envelope with a status code, the admin API as JSON with an HTTP status (and the same status
code, so an operator's tooling can tell them apart).
"""

from __future__ import annotations

from typing import NamedTuple

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode
from hub.registry import errors


class Answer(NamedTuple):
    status_code: StatusCode  # OCPI status code, both edges
    ocpi_http: int  # HTTP status on the OCPI edge
    admin_http: int  # HTTP status on the admin API


ANSWERS: dict[type[errors.RegistryError], Answer] = {
    errors.UnknownPlatform: Answer(StatusCode.CLIENT_ERROR, 404, 404),
    errors.UnknownAgreement: Answer(StatusCode.CLIENT_ERROR, 404, 404),
    errors.WrongPlatformState: Answer(StatusCode.CLIENT_ERROR, 409, 409),
    errors.PartyTaken: Answer(StatusCode.INVALID_PARAMETERS, 200, 409),
    errors.ReservedParty: Answer(StatusCode.INVALID_PARAMETERS, 200, 409),
    errors.PartyListedTwice: Answer(StatusCode.INVALID_PARAMETERS, 200, 409),
    errors.PartyKnown: Answer(StatusCode.CLIENT_ERROR, 409, 409),
}
_FALLBACK = Answer(StatusCode.CLIENT_ERROR, 400, 400)

# OCPI errors an admin call can meet (connecting to a platform), as admin HTTP statuses:
# the platform failed us (502) or the request conflicts with what is registered (409).
ADMIN_HTTP: dict[int, int] = {
    StatusCode.UNABLE_TO_USE_CLIENT_API: 502,
    StatusCode.UNSUPPORTED_VERSION: 502,
    StatusCode.NO_MATCHING_ENDPOINTS: 502,
    StatusCode.INVALID_PARAMETERS: 409,
}


def answer_of(error: errors.RegistryError) -> Answer:
    return ANSWERS.get(type(error), _FALLBACK)


def as_ocpi(error: errors.RegistryError) -> OcpiError:
    answer = answer_of(error)
    return OcpiError(answer.status_code, error.message, answer.ocpi_http)


def admin_http(error: OcpiError) -> int:
    """The admin API's HTTP status for an OCPI error met while serving it."""
    default = error.http_status if error.http_status != 200 else 422
    return ADMIN_HTTP.get(error.status_code, default)
