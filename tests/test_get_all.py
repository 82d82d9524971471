"""GET All via the hub (transport_and_format, "GET All via Hubs") and pagination."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register
from tests.support import RunningHub


def locations_of(party_id: str, count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{party_id}-{i}", "country_code": "NL", "party_id": party_id,
         "last_updated": f"2020-01-0{i + 1}T00:00:00Z", "x-extra": {"n": 1.50}}
        for i in range(count)
    ]  # fmt: skip


def paginated(platform: FakePlatform, objects: list[dict[str, Any]], page_size: int = 1000):
    """A Sender list with offset/limit, X-Total-Count, X-Limit and a next Link."""

    async def handler(received: Received, request: web.Request) -> web.StreamResponse:
        offset = int(received.query.get("offset", 0))
        limit = min(int(received.query.get("limit", page_size)), page_size)
        page = objects[offset : offset + limit]
        headers = {"X-Total-Count": str(len(objects)), "X-Limit": str(page_size)}
        if offset + limit < len(objects):
            url = f"{platform.url}{received.path}?offset={offset + limit}&limit={limit}"
            headers["Link"] = f'<{url}>; rel="next"'
        return ocpi(page, **headers)

    return handler


@contextlib.asynccontextmanager
async def network(
    hub: RunningHub, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[FakePlatform, ...]]:
    """Two CPOs with 3 and 4 locations (CPO B pages by 3), two eMSPs, all registered."""
    async with (
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo_a,
        FakePlatform("CPO B", [("NL", "CPB", "CPO")], ALL_MODULES) as cpo_b,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as other_emsp,
    ):
        for platform in (cpo_a, cpo_b, emsp, other_emsp):
            await register(hub, http, platform)
            platform.received.clear()
        cpo_a.handler = paginated(cpo_a, locations_of("CPA", 3))
        cpo_b.handler = paginated(cpo_b, locations_of("CPB", 4), page_size=3)
        yield cpo_a, cpo_b, emsp, other_emsp


@pytest.fixture
async def cpos(
    hub: RunningHub, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[FakePlatform, ...]]:
    async with network(hub, http) as platforms:
        yield platforms


def headers_of(platform: FakePlatform, party: tuple[str, str]) -> dict[str, str]:
    return platform.routed(("NL", "HUB"), party)


async def test_walk_merges_all_cpos_with_totals_and_links(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    """2 CPOs with 3 and 4 locations walked with limit=2: 7 distinct objects, unchanged."""
    cpo_a, cpo_b, emsp, _ = cpos
    headers = headers_of(emsp, ("DE", "MSA"))
    url: str | None = (
        f"{hub.endpoint('locations', 'SENDER')}?limit=2&date_from=2020-01-01T00:00:00Z"
    )
    seen: list[dict[str, Any]] = []
    pages = 0
    while url is not None and pages < 10:
        async with http.get(url, headers=headers) as response:
            assert response.status == 200
            body = await response.json()
            assert body["status_code"] == 1000
            assert response.headers["X-Total-Count"] == "7"
            assert response.headers["X-Limit"] == "2"
            assert (
                response.headers["OCPI-from-country-code"],
                response.headers["OCPI-from-party-id"],
            ) == ("NL", "HUB")
            assert (
                response.headers["OCPI-to-country-code"],
                response.headers["OCPI-to-party-id"],
            ) == ("DE", "MSA")
            link = response.headers.get("Link")
        assert len(body["data"]) <= 2
        seen += body["data"]
        pages += 1
        url = link[1 : link.index(">")] if link else None
        if url:
            assert url.startswith(hub.url) and "date_from=" in url
    assert pages == 4
    assert seen == locations_of("CPA", 3) + locations_of(
        "CPB", 4
    )  # objects as their owners sent them
    for cpo, party in ((cpo_a, "CPA"), (cpo_b, "CPB")):
        asked = cpo.calls()
        assert asked, party
        assert all(c.query.get("date_from") == "2020-01-01T00:00:00Z" for c in asked)
        assert all(
            (c.headers["ocpi-from-party-id"], c.headers["ocpi-to-party-id"]) == ("MSA", party)
            for c in asked
        )
    assert emsp.calls() == []


async def test_page_beyond_the_end_is_empty(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    emsp = cpos[2]
    url = f"{hub.endpoint('locations', 'SENDER')}?offset=10&limit=5"
    async with http.get(url, headers=headers_of(emsp, ("DE", "MSA"))) as response:
        body = await response.json()
        assert body["data"] == [] and response.headers["X-Total-Count"] == "7"
        assert "Link" not in response.headers


async def broken(received: Received, request: web.Request) -> web.StreamResponse:
    return ocpi(None, 3000, 500)  # answers (stays CONNECTED), but fails


async def test_failing_party_answers_the_hub_code_with_what_was_read(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    """mod_locations "GET List: Response Data": all pages together are the new truth. A page
    with a data owner missing answers the hub code of the failure (4000: its answer was not
    a list), names the party, and carries the objects that were read."""
    _, cpo_b, emsp, _ = cpos
    cpo_b.handler = broken
    url = f"{hub.endpoint('locations', 'SENDER')}?limit=10"
    async with http.get(url, headers=headers_of(emsp, ("DE", "MSA"))) as response:
        body = await response.json()
    assert [o["id"] for o in body["data"]] == ["CPA-0", "CPA-1", "CPA-2"]
    assert body["status_code"] == 4000
    assert "NL/CPB" in body["status_message"] and "not the whole truth" in body["status_message"]
    assert response.headers["X-Total-Count"] == "3"


async def test_partial_lists_answer_1000_when_the_operator_allows_them(
    hub_factory: Any, http: aiohttp.ClientSession
) -> None:
    """GET_ALL_PARTIAL=true: the party that failed is skipped and named, the page is 1000."""
    async with hub_factory(get_all_partial=True) as hub, network(hub, http) as cpos:
        _, cpo_b, emsp, _ = cpos
        cpo_b.handler = broken
        url = f"{hub.endpoint('locations', 'SENDER')}?limit=10"
        async with http.get(url, headers=headers_of(emsp, ("DE", "MSA"))) as response:
            body = await response.json()
    assert [o["id"] for o in body["data"]] == ["CPA-0", "CPA-1", "CPA-2"]
    assert body["status_code"] == 1000 and "NL/CPB" in body["status_message"]
    assert response.headers["X-Total-Count"] == "3"


async def test_get_all_carries_the_path_and_every_filter(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    """mod_bookings "GET BookingLocations": {bookings_endpoint_url}/booking_locations with
    timeslot_from and timeslot_to. Each data owner gets the path and the filters, and the
    next Link keeps both."""
    cpo_a, cpo_b, emsp, _ = cpos
    cpo_a.handler = paginated(cpo_a, locations_of("CPA", 3))
    cpo_b.handler = paginated(cpo_b, locations_of("CPB", 4))
    query = "timeslot_from=2030-01-01T10%3A00%3A00Z&timeslot_to=2030-01-01T12%3A00%3A00Z"
    url = f"{hub.endpoint('bookings', 'SENDER')}/booking_locations?{query}&limit=5"
    async with http.get(url, headers=headers_of(emsp, ("DE", "MSA"))) as response:
        body = await response.json()
        link = response.headers["Link"]
    assert body["status_code"] == 1000 and len(body["data"]) == 5
    for cpo in (cpo_a, cpo_b):
        calls = cpo.calls("/ocpi/2.3.0/bookings/sender/booking_locations", "GET")
        assert calls, f"{cpo.name} was asked for its booking locations"
        assert all(c.query["timeslot_from"] == "2030-01-01T10:00:00Z" for c in calls)
        assert all(c.query["timeslot_to"] == "2030-01-01T12:00:00Z" for c in calls)
    assert "/ocpi/2.3.0/bookings/sender/booking_locations?" in link
    assert "timeslot_from=2030-01-01T10%3A00%3A00Z" in link and "timeslot_to=" in link
    async with http.get(link[1 : link.index(">")], headers=headers_of(emsp, ("DE", "MSA"))) as r:
        rest = await r.json()
    assert [o["id"] for o in body["data"] + rest["data"]] == [
        "CPA-0", "CPA-1", "CPA-2", "CPB-0", "CPB-1", "CPB-2", "CPB-3",
    ]  # fmt: skip


async def test_get_all_of_one_object_is_refused(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    """A GET addressed to the hub that names one object has one owner: 2001, nothing sent."""
    cpo_a, cpo_b, emsp, _ = cpos
    url = f"{hub.endpoint('locations', 'SENDER')}/LOC1"
    async with http.get(url, headers=headers_of(emsp, ("DE", "MSA"))) as response:
        body = await response.json()
    assert body["status_code"] == 2001 and "omit the OCPI-to headers" in body["status_message"]
    assert cpo_a.calls() == [] and cpo_b.calls() == []


async def test_walk_belongs_to_its_requester(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    _, _, emsp, other = cpos
    async with http.get(
        f"{hub.endpoint('locations', 'SENDER')}?limit=2", headers=headers_of(emsp, ("DE", "MSA"))
    ) as response:
        link = response.headers["Link"]
    async with http.get(link[1 : link.index(">")], headers=headers_of(other, ("DE", "MSB"))) as r:
        assert r.status == 404


async def test_bad_paging_parameters(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    url = f"{hub.endpoint('locations', 'SENDER')}?offset=-1"
    async with http.get(url, headers=headers_of(cpos[2], ("DE", "MSA"))) as response:
        body = await response.json()
    assert body["status_code"] == 2001 and "offset" in body["status_message"]


async def test_party_failing_mid_walk_neither_shifts_nor_repeats_the_others(
    hub: RunningHub, http: aiohttp.ClientSession, cpos: tuple[FakePlatform, ...]
) -> None:
    """CPO A fails after the first page: its places stay empty, every object of CPO B comes
    exactly once, and the totals stay as the walk began."""
    cpo_a, _, emsp, _ = cpos
    headers = headers_of(emsp, ("DE", "MSA"))
    url: str | None = f"{hub.endpoint('locations', 'SENDER')}?limit=2"
    seen: list[str] = []
    messages: list[str] = []
    codes: list[int] = []
    for page in range(10):
        if url is None:
            break
        if page == 1:
            await cpo_a.stop()
        async with http.get(url, headers=headers) as response:
            body = await response.json()
            assert response.headers["X-Total-Count"] == "7"
            link = response.headers.get("Link")
        seen += [o["id"] for o in body["data"]]
        messages.append(body.get("status_message") or "")
        codes.append(body["status_code"])
        url = link[1 : link.index(">")] if link else None
    assert seen == ["CPA-0", "CPA-1", "CPB-0", "CPB-1", "CPB-2", "CPB-3"]
    assert all("NL/CPA" in m for m in messages[1:])
    assert codes[0] == 1000 and set(codes[1:]) == {4003}, "CPO A cannot be reached: 4003"
