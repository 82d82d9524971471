"""Client input the hub must refuse with a clear 4xx (or pass through), never answer HTTP 500.

Each case was once an HTTP 500 (reliability probe, fuzzing); requests go over raw sockets so
the exact bytes (non-ASCII header values, huge bodies) reach the hub as an attacker sends them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from hub.routing.open_routing import Lookup
from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Handler, Received, register
from tests.rawhttp import Header, RawAnswer, raw_request
from tests.support import RunningHub, token_header

CPO, EMSP = ("NL", "CPA"), ("DE", "MSA")
NINES = "9" * 5000


@dataclass
class Peers:
    hub: RunningHub
    http: aiohttp.ClientSession
    cpo: FakePlatform
    emsp: FakePlatform
    emsp_id: str

    async def send(
        self,
        method: str,
        path: str,
        headers: list[Header] | None = None,
        body: bytes | str = b"",
    ) -> RawAnswer:
        data = body.encode() if isinstance(body, str) else body
        return await asyncio.to_thread(raw_request, self.hub.url, method, path, headers or [], data)

    def routed(self, to: tuple[str, str] | None, correlation_id: str = "") -> list[Header]:
        """An eMSP request (from DE/MSA), to ``to`` or open routed."""
        headers = self.emsp.routed(to)
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        return list(headers.items())


@pytest.fixture
async def peers(hub: RunningHub, http: aiohttp.ClientSession) -> AsyncIterator[Peers]:
    async with (
        FakePlatform("CPO", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        emsp_id = await register(hub, http, emsp)
        yield Peers(hub, http, cpo, emsp, emsp_id)


def admin(token: bytes | str) -> list[Header]:
    return [("Authorization", token)]


def nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def assert_ocpi_refusal(answer: RawAnswer, http_status: int, *words: str) -> dict[str, Any]:
    assert answer.status == http_status, (answer.status, answer.body[:300])
    envelope = answer.envelope()
    assert envelope is not None, answer.body[:300]
    assert envelope["status_code"] == 2001, envelope
    for word in words:
        assert word in envelope["status_message"], envelope
    return envelope


async def _learn_location(peers: Peers, location_id: str) -> None:
    """The CPO pushes a location to the eMSP: open routing now knows its owner."""
    async with peers.http.put(
        f"{peers.hub.endpoint('locations', 'receiver')}/NL/CPA/{location_id}",
        json={"id": location_id},
        headers=peers.cpo.routed(EMSP),
    ) as response:
        assert (await response.json())["status_code"] == 1000
    index = peers.hub.runtime.dispatcher.index
    for _ in range(100):
        if await index.owners(Lookup("locations", location_id, ""), EMSP):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("location not learned")


async def _command_callback(peers: Peers) -> str:
    """Send a command with a response_url; the hub callback path the CPO received."""
    body = {"response_url": peers.emsp.url + "/results", "location_id": "LOC1"}
    async with peers.http.post(
        peers.hub.endpoint("commands", "receiver") + "/START_SESSION",
        json=body,
        headers=peers.emsp.routed(CPO),
    ) as response:
        assert (await response.json())["status_code"] == 1000
    sent = peers.cpo.calls("/ocpi/2.3.0/commands")[-1].json()
    return "/" + sent["response_url"].split("/", 3)[3]


# -- the admin token -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Bearer été".encode(),  # UTF-8 bytes
        b"Bearer \xe9",  # Latin-1
        b"Bearer \xff\xfe",
        b"bearer \xc3\xa9",
    ],
)
async def test_non_ascii_admin_bearer_is_401_admin_json(peers: Peers, value: bytes) -> None:
    """hmac.compare_digest refuses non-ASCII str: the values are compared as bytes."""
    for method, path, body in [
        ("GET", "/admin/platforms", b""),
        ("POST", "/admin/platforms", b'{"name": "X"}'),
        ("PATCH", f"/admin/platforms/{peers.emsp_id}", b'{"raw_token": true}'),
        ("GET", "/admin/parties", b""),
        ("GET", "/admin/broadcasts", b""),
    ]:
        answer = await peers.send(method, path, admin(value), body)
        assert answer.status == 401, (method, path, answer.status, answer.body)
        assert "Bearer" in answer.json()["error"]


async def test_non_ascii_admin_token_matches_its_utf8_bytes(hub_factory: HubFactory) -> None:
    """An admin token configured with non-ASCII characters is the UTF-8 of those characters."""
    async with hub_factory(admin_token="tökén-admin") as hub:
        utf8 = await asyncio.to_thread(
            raw_request, hub.url, "GET", "/admin/platforms", admin("Bearer tökén-admin".encode())
        )
        latin1 = await asyncio.to_thread(
            raw_request, hub.url, "GET", "/admin/platforms", admin(b"Bearer t\xf6k\xe9n-admin")
        )
    assert (utf8.status, utf8.json()) == (200, [])
    assert latin1.status == 401


async def test_body_over_the_limit_is_413_admin_json_on_the_admin_api(
    hub_factory: HubFactory,
) -> None:
    """The size cap answers before any route: under /admin in the admin API's own form."""
    async with hub_factory(max_body_bytes=1000) as hub:
        bearer = admin(f"Bearer {hub.admin_token}")
        body = b'{"name":"' + b"x" * 2000 + b'"}'
        chunked = [*bearer, ("Transfer-Encoding", "chunked")]
        framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        for headers, data in [(bearer, body), (chunked, framed)]:
            answer = await asyncio.to_thread(
                raw_request, hub.url, "POST", "/admin/platforms", headers, data
            )
            assert answer.status == 413, answer.body
            assert answer.json() == {"error": "request body larger than 1000 bytes"}
        ocpi = await asyncio.to_thread(
            raw_request, hub.url, "POST", "/ocpi/2.3.0/credentials", [], body
        )
    assert ocpi.status == 413 and ocpi.json()["status_code"] == 2000


async def test_compressed_request_bodies_are_415_and_never_forwarded(peers: Peers) -> None:
    """Found by fuzzing: a JSON body labelled Content-Encoding: gzip passed the JSON check
    and reached the CPO with that label; the CPO could not decode it, and the broken
    connection then stalled the next request to the CPO (4002)."""
    marker = "gz-" + uuid.uuid4().hex
    plain = b'{"uid": "TOK1"}'
    for coding, body in [("gzip", plain), ("gzip", gzip.compress(plain)), ("br", plain)]:
        headers = [*peers.routed(CPO, marker), ("Content-Encoding", coding)]
        answer = await peers.send("PUT", "/ocpi/2.3.0/tokens/receiver/DE/MSA/TOK1", headers, body)
        assert answer.status == 415, answer.body
        assert answer.envelope() is not None and answer.header("Accept-Encoding") == "identity"
    bearer = [*admin(f"Bearer {peers.hub.admin_token}"), ("Content-Encoding", "gzip")]
    answer = await peers.send("POST", "/admin/platforms", bearer, b'{"name": "Z"}')
    assert answer.status == 415 and "uncompressed" in answer.json()["error"]
    assert not [r for r in peers.cpo.calls() if r.headers.get("x-correlation-id") == marker]
    # no body, nothing to decode: a GET with the header passes; so does identity
    get = [*peers.routed(CPO), ("Content-Encoding", "gzip")]
    answer = await peers.send("GET", "/ocpi/2.3.0/locations/sender/LOC1", get)
    assert answer.json()["status_code"] == 1000
    identity = [*peers.routed(CPO), ("Content-Encoding", "identity")]
    answer = await peers.send("PUT", "/ocpi/2.3.0/tokens/receiver/DE/MSA/TOK1", identity, plain)
    assert answer.json()["status_code"] == 1000


# -- bodies nested deeper than the decoder goes ----------------------------------------------


async def test_deeply_nested_bodies_are_refused_on_every_ocpi_endpoint(peers: Peers) -> None:
    """msgspec stops at the interpreter's recursion limit (about 975 levels here): HTTP 400,
    2001, and nothing is forwarded."""
    marker = "nest-" + uuid.uuid4().hex
    hub_party = (peers.hub.settings.country_code, peers.hub.settings.party_id)
    routed = [
        # direct, broadcast, open routed, and a command whose response_url the hub rewrites
        ("PUT", "/ocpi/2.3.0/tokens/receiver/DE/MSA/TOK1", peers.routed(CPO, marker)),
        ("PUT", "/ocpi/2.3.0/tokens/receiver/DE/MSA/TOK1", peers.routed(hub_party, marker)),
        ("POST", "/ocpi/2.3.0/commands/receiver/START_SESSION", peers.routed(None, marker)),
        ("POST", "/ocpi/2.3.0/commands/receiver/START_SESSION", peers.routed(CPO, marker)),
    ]
    for body in (nested(2000), "[" * 10000 + "]" * 10000):
        for method, path, headers in routed:
            answer = await peers.send(method, path, headers, body)
            assert_ocpi_refusal(answer, 400, "nested too deeply")
    # credentials update of a registered platform, registration with token A
    created = await peers.hub.create_platform(peers.http, "Newcomer")
    for method, auth in [
        ("PUT", peers.emsp.hub_headers()),
        ("POST", token_header(created["token_a"])),
    ]:
        answer = await peers.send(
            method, "/ocpi/2.3.0/credentials", list(auth.items()), nested(2000)
        )
        assert_ocpi_refusal(answer, 400, "nested too deeply")
    # Direct and command requests are forwarded before the answer; a broadcast after it.
    await peers.hub.broadcasts_finished(peers.http)
    for platform in (peers.cpo, peers.emsp):
        assert not [r for r in platform.calls() if r.headers.get("x-correlation-id") == marker]


async def test_deeply_nested_bodies_are_400_on_the_admin_api(peers: Peers) -> None:
    bearer = admin(f"Bearer {peers.hub.admin_token}")
    for method, path, status, error in [
        ("POST", "/admin/platforms", 400, "nested too deeply"),
        # Platform settings take no unknown field: refused before the nesting is read.
        ("PATCH", f"/admin/platforms/{peers.emsp_id}", 422, "unknown field"),
        ("POST", f"/admin/platforms/{peers.emsp_id}/connect", 400, "nested too deeply"),
        ("POST", "/admin/parties", 400, "nested too deeply"),
    ]:
        answer = await peers.send(method, path, bearer, nested(2000))
        assert answer.status == status, (method, path, answer.status, answer.body[:300])
        assert error in answer.json()["error"]


async def test_deeply_nested_callback_result_is_refused(peers: Peers) -> None:
    """The CPO's asynchronous result posted to a hub callback is checked like a request."""
    callback_url = await _command_callback(peers)
    cpo_headers = list(peers.cpo.hub_headers().items())
    answer = await peers.send("POST", callback_url, cpo_headers, nested(2000))
    assert_ocpi_refusal(answer, 400, "nested too deeply")
    assert not peers.emsp.calls("/results")


BAD_URLS = ["http://a:99999/", "http://a:-1/x", "http://[::1", "http://[zz]/", "http://xn--/"]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_unreadable_response_url_is_2001(peers: Peers, url: str) -> None:
    """Found by fuzzing: yarl raises ValueError on a port out of range (or a broken IPv6
    literal, a host IDNA refuses), which answered HTTP 500."""
    marker = "url-" + uuid.uuid4().hex
    body = json.dumps({"response_url": url, "location_id": "LOC1"})
    answer = await peers.send(
        "POST", "/ocpi/2.3.0/commands/receiver/START_SESSION", peers.routed(CPO, marker), body
    )
    assert_ocpi_refusal(answer, 200, "response_url")
    query = urlencode({"duration": 900, "response_url": url})
    answer = await peers.send(
        "GET", f"/ocpi/2.3.0/chargingprofiles/receiver/S1?{query}", peers.routed(CPO, marker)
    )
    assert_ocpi_refusal(answer, 200, "response_url")
    assert not [r for r in peers.cpo.calls() if r.headers.get("x-correlation-id") == marker]


async def test_unreadable_link_and_location_of_a_receiver_are_dropped(peers: Peers) -> None:
    async def odd(received: Received, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"},
            headers={"Link": '<http://a:99999/next>; rel="next"', "Location": "http://[::1"},
        )

    peers.cpo.handler = odd
    answer = await peers.send("GET", "/ocpi/2.3.0/locations/sender", peers.routed(CPO))
    assert answer.status == 200 and answer.json()["status_code"] == 1000, answer.body
    assert answer.header("Link") is None and answer.header("Location") is None


# -- numbers past Python's integer string limit ----------------------------------------------


async def test_huge_integer_in_an_open_routed_command_passes_through(peers: Peers) -> None:
    """Open routing reads location_id / session_id / cdr_token only; other fields are not
    decoded, so a 5,000-digit number reaches the CPO byte for byte."""
    await _learn_location(peers, "LOC1")
    body = '{"location_id":"LOC1","x":' + NINES + "}"
    answer = await peers.send(
        "POST", "/ocpi/2.3.0/commands/receiver/START_SESSION", peers.routed(None), body
    )
    assert answer.status == 200 and answer.json()["status_code"] == 1000, answer.body[:300]
    (got,) = peers.cpo.calls("/ocpi/2.3.0/commands")
    assert got.body == body.encode()


async def test_huge_integer_survives_the_response_url_rewrite(peers: Peers) -> None:
    """The body is re-encoded with the hub's callback URL; every other field stays as sent,
    numbers included."""
    body = (
        '{"response_url":"' + peers.emsp.url + '/results","location_id":"LOC1",'
        '"x":' + NINES + ',"y":1.50,"z":1e999}'
    )
    answer = await peers.send(
        "POST", "/ocpi/2.3.0/commands/receiver/START_SESSION", peers.routed(CPO), body
    )
    assert answer.status == 200 and answer.json()["status_code"] == 1000, answer.body[:300]
    (got,) = peers.cpo.calls("/ocpi/2.3.0/commands")
    assert b'"x":' + NINES.encode() + b',"y":1.50,"z":1e999}' in got.body
    assert json.loads(got.body.replace(NINES.encode(), b"9"))["response_url"].startswith(
        peers.hub.url + "/ocpi/hub/callbacks/"
    )


async def test_huge_integer_where_open_routing_needs_a_string_is_2001(peers: Peers) -> None:
    body = '{"location_id":' + NINES + "}"
    answer = await peers.send(
        "POST", "/ocpi/2.3.0/commands/receiver/START_SESSION", peers.routed(None), body
    )
    assert_ocpi_refusal(answer, 200, "location_id")
    assert peers.cpo.calls() == []


async def test_huge_paging_parameters_answer_without_int_conversion(peers: Peers) -> None:
    """Python's int() refuses more than 4,300 digits: a longer offset is 2001 naming it (no
    list is that long), a longer limit is capped like any limit above the maximum."""
    hub_party = (peers.hub.settings.country_code, peers.hub.settings.party_id)
    for path, headers in [
        ("/ocpi/2.3.0/hubclientinfo", list(peers.emsp.hub_headers().items())),
        ("/ocpi/2.3.0/locations/sender", peers.routed(hub_party)),  # GET All
    ]:
        answer = await peers.send("GET", f"{path}?offset={NINES}", headers)
        assert_ocpi_refusal(answer, 200, "offset")
        assert peers.cpo.calls() == []
        capped = await peers.send("GET", f"{path}?limit={NINES}", headers)
        assert capped.json()["status_code"] == 1000, capped.body[:300]
        assert capped.header("X-Limit") == "1000"
        # leading zeros are no digits of the number
        zeros = await peers.send("GET", f"{path}?offset={'0' * 5000}1", headers)
        assert zeros.json()["status_code"] == 1000, zeros.body[:300]
        peers.cpo.received.clear()


# -- platforms' answers ----------------------------------------------------------------------


def _page_answer(body: str, total: str) -> Handler:
    async def answer(received: Received, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=body, content_type="application/json", headers={"X-Total-Count": total}
        )

    return answer


async def test_get_all_survives_a_page_nested_too_deeply(peers: Peers) -> None:
    """The hub reads a page's status_code and list; a party whose answer cannot be read is
    left out and named, and the page answers 4000 (an incomplete list), never a 500."""
    page = '{"status_code":1000,"data":[' + nested(2000) + "]}"
    peers.cpo.handler = _page_answer(page, "1")
    hub_party = (peers.hub.settings.country_code, peers.hub.settings.party_id)
    answer = await peers.send("GET", "/ocpi/2.3.0/locations/sender", peers.routed(hub_party))
    envelope = answer.envelope()
    assert answer.status == 200 and envelope is not None, answer.body[:300]
    assert envelope["status_code"] == 4000 and envelope["data"] == []
    assert "NL/CPA: answer is not an OCPI list" in envelope["status_message"]


async def test_get_all_reads_a_huge_total_count_as_unknown(peers: Peers) -> None:
    peers.cpo.handler = _page_answer('{"status_code":1000,"data":[{"id":"L1"}]}', NINES)
    hub_party = (peers.hub.settings.country_code, peers.hub.settings.party_id)
    answer = await peers.send("GET", "/ocpi/2.3.0/locations/sender", peers.routed(hub_party))
    assert answer.status == 200, answer.body[:300]
    assert answer.json()["data"] == [{"id": "L1"}]


async def test_registration_with_versions_nested_too_deeply_is_3001(peers: Peers) -> None:
    async def versions(received: Received, request: web.Request) -> web.StreamResponse:
        return web.Response(text='{"status_code":1000,"data":' + nested(2000) + "}")

    async with FakePlatform("Deep", [("BE", "DEP", "CPO")], versions_handler=versions) as deep:
        created = await peers.hub.create_platform(peers.http, deep.name)
        answer = await deep.register(peers.http, peers.hub.versions_url, created["token_a"])
    assert (answer["http_status"], answer["status_code"]) == (200, 3001), answer
    assert "without an OCPI envelope" in answer["status_message"]
