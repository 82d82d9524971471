"""Paginated GET requests and responses (transport_and_format, "Pagination")."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import msgspec

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode

PAGING = frozenset({"offset", "limit", "walk"})  # what a next link sets itself


class Paging(msgspec.Struct, frozen=True):
    offset: int
    limit: int
    date_from: datetime | None
    date_to: datetime | None
    filters: list[tuple[str, str]]  # every other parameter as sent (date_from, timeslot_to..)
    params: dict[str, str]  # every query parameter

    def next_link(self, base_url: str, total: int, *extra: tuple[str, str]) -> str | None:
        """``Link: <...>; rel="next"`` unless this is the last page; it repeats the filters."""
        if self.offset + self.limit >= total:
            return None
        query = urlencode(
            [("offset", self.offset + self.limit), ("limit", self.limit), *self.filters, *extra]
        )
        return f'<{base_url}?{query}>; rel="next"'


def parse_datetime(value: str | None, name: str) -> datetime | None:
    """OCPI DateTime: RFC 3339 in UTC; no zone designator means UTC (types, DateTime)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OcpiError(StatusCode.INVALID_PARAMETERS, f"{name} is not a DateTime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


MAX_DIGITS = 18  # below 2**63: every store and peer can take it


def whole_number(text: str | bytes, max_digits: int = MAX_DIGITS) -> int | None:
    """A whole number >= 0 written in ASCII digits, None otherwise or when it has more than
    ``max_digits`` digits (leading zeros aside): Python's int() refuses more than 4,300 with
    ValueError, and nothing the hub counts comes near 18."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    return int(digits or 0) if len(digits) <= max_digits else None


def _count(value: str | None, name: str, default: int, beyond: int | None = None) -> int:
    """``beyond``: what a number of more than MAX_DIGITS digits counts as (None: refused)."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise OcpiError(StatusCode.INVALID_PARAMETERS, f"{name} must be a whole number >= 0")
    number = whole_number(value)
    if number is not None:
        return number
    if beyond is not None:
        return beyond
    raise OcpiError(
        StatusCode.INVALID_PARAMETERS,
        f"{name} has more than {MAX_DIGITS} digits: no list is that long",
    )


def parse_paging(query: str, default_limit: int = 100, max_limit: int = 1000) -> Paging:
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    # the server caps the limit ("Pagination"), however many digits it has
    limit = _count(params.get("limit"), "limit", default_limit, max_limit) or default_limit
    return Paging(
        offset=_count(params.get("offset"), "offset", 0),
        limit=min(limit, max_limit),
        date_from=parse_datetime(params.get("date_from"), "date_from"),
        date_to=parse_datetime(params.get("date_to"), "date_to"),
        filters=[(k, v) for k, v in pairs if k not in PAGING],
        params=params,
    )
