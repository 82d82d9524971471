"""How long a callback relay lives, and what counts as one origin (hub.routing.relays)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hub.routing.relays import CALLBACK_TTL, _callback_ttl
from hub.routing.urls import origin, origins

DAY = 24 * 3600


def expiry_in(seconds: int, zone: str = "Z") -> str:
    """An expiry_date ``seconds`` from now, written with ``zone`` ('' for none)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + zone


@pytest.fixture
def local_zone_far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A zone-less date read as local time would be 9 hours off here."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    "expiry_date",
    [None, 1767225600, "", "tomorrow", "2026-13-01T00:00:00Z", ["2099-01-01T00:00:00Z"]],
)
def test_callback_ttl_without_a_usable_expiry_is_the_default(expiry_date: object) -> None:
    assert _callback_ttl(expiry_date) == CALLBACK_TTL


def test_a_past_expiry_keeps_the_default() -> None:
    assert _callback_ttl("2020-01-01T00:00:00Z") == CALLBACK_TTL


@pytest.mark.parametrize(
    "seconds",
    [-3600, 3600, DAY - 7200],  # ended, or ends within the default: the default holds
)
def test_callback_ttl_never_goes_below_the_default(seconds: int) -> None:
    assert _callback_ttl(expiry_in(seconds)) == CALLBACK_TTL


@pytest.mark.parametrize(
    ("seconds", "zone", "expected"),
    [
        (10 * DAY, "Z", 10 * DAY + 3600),
        (2 * DAY, "+00:00", 2 * DAY + 3600),
        (3 * DAY, ".250Z", 3 * DAY + 3600),  # fractional seconds
        (3 * DAY, "+02:00", 3 * DAY + 3600 - 7200),  # an offset is honoured
    ],
)
def test_callback_ttl_lasts_an_hour_past_the_reservation(
    seconds: int, zone: str, expected: int
) -> None:
    """mod_commands "Flow": the CPO may cancel a RESERVE_NOW with a result to the same
    response_url until the reservation's expiry_date."""
    assert abs(_callback_ttl(expiry_in(seconds, zone)) - expected) <= 2


@pytest.mark.usefixtures("local_zone_far_from_utc")
def test_callback_ttl_reads_a_date_without_zone_as_utc() -> None:
    """types "DateTime": the absence of the timezone designator implies UTC."""
    assert abs(_callback_ttl(expiry_in(5 * DAY, "")) - (5 * DAY + 3600)) <= 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://platform.example/ocpi/versions", ("https", "platform.example", 443)),
        ("HTTPS://Platform.EXAMPLE/OCPI/Versions", ("https", "platform.example", 443)),
        ("http://platform.example:8080/ocpi", ("http", "platform.example", 8080)),
        ("https://platform.example:8443/", ("https", "platform.example", 8443)),
        ("http://platform.example/", ("http", "platform.example", 80)),  # scheme's port
        ("https://user:secret@Platform.example:444/x", ("https", "platform.example", 444)),
        ("http://[::1]:9000/cb", ("http", "::1", 9000)),
        ("custom://platform.example/cb", ("custom", "platform.example", None)),
        ("/ocpi/callback", ("", "", None)),
        # unreadable: matches no platform
        ("http://platform.example:99999/", None),
        ("http://[::1", None),
        ("http://xn--/", None),
    ],
)
def test_origin(url: str, expected: tuple[str, str, int | None] | None) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ([], frozenset()),
        (["", "http://a.example/x"], {("http", "a.example", 80)}),
        (["http://a.example:99999/", "http://a.example/x"], {("http", "a.example", 80)}),
        (["http://a.example/x", "HTTP://A.example:80/y"], {("http", "a.example", 80)}),
        (
            ["https://a.example/", "https://a.example:8443/"],
            {("https", "a.example", 443), ("https", "a.example", 8443)},
        ),
    ],
)
def test_origins_skip_empty_urls_and_fold_equal_origins(
    urls: list[str], expected: set[tuple[str, str, int | None]]
) -> None:
    assert origins(urls) == expected
