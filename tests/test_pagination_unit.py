"""Paginated requests and the next-page link (transport_and_format, "Pagination")."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from hub.ocpi.envelope import OcpiError
from hub.ocpi.pagination import Paging, parse_paging
from hub.ocpi.status import StatusCode

BASE = "https://hub.example/ocpi/2.3.0/locations/sender"


def paging(offset: int, limit: int, *filters: tuple[str, str]) -> Paging:
    return Paging(offset, limit, None, None, list(filters), {})


@pytest.mark.parametrize(
    ("query", "offset", "limit"),
    [
        ("", 0, 100),  # "Paginated Request": offset defaults to 0; the server picks a limit
        ("offset=20&limit=10", 20, 10),
        ("limit=1000", 0, 1000),
        ("limit=1001", 0, 1000),  # "the server limits the maximum number of objects"
        ("limit=99999999999999999999", 0, 1000),
        ("limit=0", 0, 100),
        ("limit=", 0, 100),
        ("offset=", 0, 100),
        ("offset=0007&limit=005", 7, 5),
        ("limit=5&limit=7", 0, 7),  # a repeated parameter: the last one counts
        # past int()'s 4,300-digit limit: capped, never converted
        ("limit=" + "9" * 5000, 0, 1000),
        ("offset=" + "0" * 5000 + "7", 7, 100),  # leading zeros are not digits of it
        ("offset=" + "9" * 18, 10**18 - 1, 100),
    ],
)
def test_offset_and_limit(query: str, offset: int, limit: int) -> None:
    parsed = parse_paging(query)
    assert (parsed.offset, parsed.limit) == (offset, limit)


def test_default_and_maximum_limit_are_the_callers() -> None:
    assert parse_paging("", default_limit=25).limit == 25
    assert parse_paging("limit=0", default_limit=25).limit == 25
    assert parse_paging("limit=60", max_limit=50).limit == 50


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("limit=%2B5", "limit"),  # "+5"
        ("limit=1.5", "limit"),
        ("limit=%205", "limit"),  # " 5"
        ("limit=%D9%A3", "limit"),  # ARABIC-INDIC DIGIT THREE
        ("offset=-10", "offset"),
        ("offset=x", "offset"),
        ("offset=" + "9" * 19, "offset"),  # no list is that long
        ("offset=" + "9" * 5000, "offset"),
        ("date_from=yesterday", "date_from"),
        ("date_to=2024-02-30T00:00:00Z", "date_to"),
    ],
)
def test_malformed_parameters_are_2001(query: str, name: str) -> None:
    with pytest.raises(OcpiError) as error:
        parse_paging(query)
    assert error.value.status_code == StatusCode.INVALID_PARAMETERS
    assert error.value.message.startswith(f"{name} ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        # types "DateTime": no zone designator means UTC; fractional seconds may be used.
        ("2024-03-01T12:00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00.5Z", datetime(2024, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2024-03-01T14:00:00+02:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_date_filters_are_utc_moments(value: str, expected: datetime) -> None:
    parsed = parse_paging(urlencode({"date_from": value, "date_to": value}))
    assert parsed.date_from == expected and parsed.date_to == expected
    assert parsed.date_from.utcoffset() is not None


@pytest.mark.parametrize(
    ("query", "filters", "params"),
    [
        ("", [], {}),
        ("offset=5", [], {"offset": "5"}),
        (
            "date_to=2024-02-01T00:00:00Z&foo=bar&date_from=2024-01-01T00:00:00Z",
            [
                ("date_to", "2024-02-01T00:00:00Z"),
                ("foo", "bar"),
                ("date_from", "2024-01-01T00:00:00Z"),
            ],
            {
                "date_to": "2024-02-01T00:00:00Z",
                "foo": "bar",
                "date_from": "2024-01-01T00:00:00Z",
            },
        ),
    ],
)
def test_filters_and_params_are_kept_as_sent(
    query: str, filters: list[tuple[str, str]], params: dict[str, str]
) -> None:
    """Every parameter but offset, limit and walk is a filter, kept in order: module filters
    such as timeslot_from go on to the data owners and into the next Link."""
    parsed = parse_paging(query)
    assert (parsed.filters, parsed.params) == (filters, params)
    assert (parsed.date_from is None, parsed.date_to is None) == (not filters, not filters)


@pytest.mark.parametrize(
    ("page", "total", "extra", "expected"),
    [
        # "Paginated Response": a Link to the 'next' page unless this is the last page.
        (paging(0, 10), 10, (), None),
        (paging(0, 10), 3, (), None),
        (paging(0, 10), 0, (), None),
        (paging(90, 10), 100, (), None),
        (paging(95, 10), 100, (), None),
        (paging(0, 10), 11, (), f'<{BASE}?offset=10&limit=10>; rel="next"'),
        (paging(40, 20), 100, (), f'<{BASE}?offset=60&limit=20>; rel="next"'),
        # "The Link should also contain any filters present in the original request."
        (
            paging(0, 10, ("date_from", "2024-01-01T00:00:00Z")),
            25,
            (),
            f'<{BASE}?offset=10&limit=10&date_from=2024-01-01T00%3A00%3A00Z>; rel="next"',
        ),
        (
            paging(0, 10, ("date_from", "2024-01-01T00:00:00+01:00"), ("date_to", "2024-02-01")),
            25,
            (("walk", "w1"),),
            f"<{BASE}?offset=10&limit=10&date_from=2024-01-01T00%3A00%3A00%2B01%3A00"
            f'&date_to=2024-02-01&walk=w1>; rel="next"',
        ),
        (
            paging(10, 10),
            30,
            (("walk", "a b"),),
            f'<{BASE}?offset=20&limit=10&walk=a+b>; rel="next"',
        ),
    ],
)
def test_next_link(
    page: Paging, total: int, extra: tuple[tuple[str, str], ...], expected: str | None
) -> None:
    assert page.next_link(BASE, total, *extra) == expected


def test_next_link_of_a_parsed_request_repeats_every_filter() -> None:
    page = parse_paging("limit=2&date_to=2024-02-01T00:00:00Z&foo=bar&offset=0&walk=w1")
    assert page.next_link(BASE, 5) == (
        f'<{BASE}?offset=2&limit=2&date_to=2024-02-01T00%3A00%3A00Z&foo=bar>; rel="next"'
    )
