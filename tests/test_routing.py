"""Message routing end to end: fake platforms assert on what actually reached them.

transport_and_format, "Party to Party via Hub": both legs of a request carry from = the
requesting party and to = the receiving party; the response comes back with them swapped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register, until
from tests.support import RunningHub, token_header

CPO, EMSP, PTP = ("NL", "CPA"), ("DE", "MSA"), ("NL", "PTP")


@dataclass
class Roaming:
    hub: RunningHub
    http: aiohttp.ClientSession
    cpo: FakePlatform
    emsp: FakePlatform
    ptp: FakePlatform

    def platform(self, party: tuple[str, str]) -> FakePlatform:
        return {CPO: self.cpo, EMSP: self.emsp, PTP: self.ptp}[party]

    async def call(
        self,
        sender: tuple[str, str],
        receiver: tuple[str, str] | None,
        method: str,
        module: str,
        interface: str,
        suffix: str = "",
        body: Any = None,
        query: str = "",
        extra: dict[str, str] | None = None,
        url: str | None = None,
    ) -> tuple[aiohttp.ClientResponse, Any]:
        headers = {
            **self.platform(sender).routed(receiver, sender),
            "X-Request-ID": "req-" + uuid.uuid4().hex,
            "X-Correlation-ID": "corr-" + uuid.uuid4().hex,
            **(extra or {}),
        }
        target = url or self.hub.endpoint(module, interface) + suffix + (
            f"?{query}" if query else ""
        )
        async with self.http.request(method, target, json=body, headers=headers) as response:
            response.request_headers = headers  # type: ignore[attr-defined]
            return response, await response.json()


@pytest.fixture
async def roaming(hub: RunningHub, http: aiohttp.ClientSession) -> AsyncIterator[Roaming]:
    async with (
        FakePlatform("CPO Co", [(*CPO, "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
        FakePlatform("PTP Co", [(*PTP, "PTP")], ALL_MODULES) as ptp,
    ):
        for platform in (cpo, emsp, ptp):
            await register(hub, http, platform)
            platform.received.clear()
        yield Roaming(hub, http, cpo, emsp, ptp)


# (sender, receiver, method, module, hub interface, path suffix, query, body): at least one
# call per module in each direction its chapter allows.
CALLS = [
    (EMSP, CPO, "GET", "cdrs", "SENDER", "", "date_from=2026-01-01T00:00:00Z&limit=10", None),
    (
        CPO,
        EMSP,
        "POST",
        "cdrs",
        "RECEIVER",
        "",
        "",
        {"id": "CDR1", "last_updated": "2026-01-01T00:00:00Z"},
    ),
    (
        EMSP,
        CPO,
        "PUT",
        "chargingprofiles",
        "RECEIVER",
        "/S1",
        "",
        {"charging_profile": {}, "response_url": "SENDER/x"},
    ),
    (
        CPO,
        EMSP,
        "PUT",
        "chargingprofiles",
        "SENDER",
        "/S1",
        "",
        {"start_date_time": "2026-01-01T00:00:00Z"},
    ),
    (
        EMSP,
        CPO,
        "POST",
        "commands",
        "RECEIVER",
        "/STOP_SESSION",
        "",
        {"session_id": "S1", "response_url": "SENDER/r"},
    ),
    (EMSP, CPO, "GET", "locations", "SENDER", "/LOC1/EVSE1", "", None),
    (
        CPO,
        EMSP,
        "PUT",
        "locations",
        "RECEIVER",
        "/NL/CPA/LOC1",
        "",
        {"id": "LOC1", "last_updated": "2020-02-02T02:02:02Z", "x-unknown": [1, 2.50]},
    ),
    (
        CPO,
        EMSP,
        "PATCH",
        "locations",
        "RECEIVER",
        "/NL/CPA/LOC1/EVSE1",
        "",
        {"status": "CHARGING", "last_updated": "2020-02-02T02:02:02Z"},
    ),
    (EMSP, CPO, "GET", "sessions", "SENDER", "", "date_from=2026-01-01T00:00:00Z", None),
    (
        EMSP,
        CPO,
        "PUT",
        "sessions",
        "SENDER",
        "/S1/charging_preferences",
        "",
        {"profile_type": "FAST"},
    ),
    (CPO, EMSP, "PUT", "sessions", "RECEIVER", "/NL/CPA/S1", "", {"id": "S1"}),
    (EMSP, CPO, "GET", "tariffs", "SENDER", "", "offset=0&limit=5", None),
    (CPO, EMSP, "DELETE", "tariffs", "RECEIVER", "/NL/CPA/T1", "", None),
    (CPO, EMSP, "GET", "tokens", "SENDER", "", "", None),
    (
        CPO,
        EMSP,
        "POST",
        "tokens",
        "SENDER",
        "/UID1/authorize",
        "type=RFID",
        {"location_id": "LOC1"},
    ),
    (EMSP, CPO, "PUT", "tokens", "RECEIVER", "/DE/MSA/UID1", "type=RFID", {"uid": "UID1"}),
    (EMSP, CPO, "PATCH", "tokens", "RECEIVER", "/DE/MSA/UID1", "", {"valid": False}),
    (EMSP, CPO, "POST", "bookings", "SENDER", "", "", {"request_id": "R1"}),
    (EMSP, CPO, "GET", "bookings", "SENDER", "/booking_locations", "limit=2", None),
    (CPO, EMSP, "PUT", "bookings", "RECEIVER", "/NL/CPA/B1", "", {"id": "B1"}),
    (CPO, PTP, "GET", "payments", "SENDER", "/terminals/T1", "", None),
    (CPO, PTP, "PATCH", "payments", "SENDER", "/terminals/T1", "", {"location_ids": ["LOC1"]}),
    (PTP, CPO, "POST", "payments", "RECEIVER", "/terminals", "", {"terminal_id": "T1"}),
]


@pytest.mark.parametrize(
    ("sender", "receiver", "method", "module", "interface", "suffix", "query", "body"),
    CALLS,
    ids=[f"{c[3]}-{c[4]}-{c[2]}{c[5]}" for c in CALLS],
)
async def test_routed_call_reaches_receiver_as_spec_says(
    roaming: Roaming,
    sender: tuple[str, str],
    receiver: tuple[str, str],
    method: str,
    module: str,
    interface: str,
    suffix: str,
    query: str,
    body: Any,
) -> None:
    target = roaming.platform(receiver)

    async def answer(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi({"echo": received.path}, 1000, 200, **{"X-Total-Count": "7", "X-Limit": "5"})

    target.handler = answer
    if isinstance(body, dict) and str(body.get("response_url", "")).startswith("SENDER/"):
        body = {**body, "response_url": roaming.platform(sender).url + body["response_url"][6:]}
    response, answered = await roaming.call(
        sender, receiver, method, module, interface, suffix, body, query
    )
    sent = response.request_headers  # type: ignore[attr-defined]

    # What reached the receiver.
    calls = target.calls()
    assert len(calls) == 1, [c.path for c in target.received]
    got = calls[0]
    assert got.method == method
    assert got.path == f"/ocpi/2.3.0/{module}/{interface.lower()}{suffix}"
    assert got.query == dict(p.split("=", 1) for p in query.split("&")) if query else not got.query
    assert got.headers["authorization"] == "Token " + base64.b64encode(got.token.encode()).decode()
    assert got.token in target.inbound_tokens
    assert (got.headers["ocpi-from-country-code"], got.headers["ocpi-from-party-id"]) == sender
    assert (got.headers["ocpi-to-country-code"], got.headers["ocpi-to-party-id"]) == receiver
    assert got.headers["x-request-id"] != sent["X-Request-ID"]
    uuid.UUID(got.headers["x-request-id"])
    assert got.headers["x-correlation-id"] == sent["X-Correlation-ID"]
    if body is not None and module not in ("commands", "chargingprofiles"):
        assert got.json() == body  # byte for byte below; last_updated untouched
        assert got.headers["content-type"].startswith("application/json")
    for platform in (roaming.cpo, roaming.emsp, roaming.ptp):
        if platform is not target:
            assert platform.calls() == [], "nothing reaches anyone else"

    # What came back to the requester.
    assert response.status == 200
    assert answered["data"] == {"echo": got.path}
    assert response.headers["X-Request-ID"] == sent["X-Request-ID"]
    assert response.headers["X-Correlation-ID"] == sent["X-Correlation-ID"]
    assert (
        response.headers["OCPI-from-country-code"],
        response.headers["OCPI-from-party-id"],
    ) == receiver
    assert (
        response.headers["OCPI-to-country-code"],
        response.headers["OCPI-to-party-id"],
    ) == sender
    assert response.headers["X-Total-Count"] == "7" and response.headers["X-Limit"] == "5"


async def test_body_forwarded_byte_for_byte(roaming: Roaming) -> None:
    """Unknown fields, number formats, key order and last_updated pass untouched."""
    raw = (
        b'{"id":"LOC1","z":1.50,"a":[],'
        b'"last_updated":"2020-02-02T02:02:02.123Z" ,"extra":{"k":1e3}}'
    )
    headers = {**roaming.cpo.routed(EMSP), "Content-Type": "application/json"}
    url = roaming.hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC1"
    async with roaming.http.put(url, data=raw, headers=headers) as response:
        assert response.status == 200
    assert roaming.emsp.calls()[0].body == raw


async def test_a_receivers_cookie_goes_to_no_one(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A cookie a receiver sets is not kept by the hub: the next call to that receiver, for
    this requester or another, carries none (the hub's calls share one client session). The
    receiver is named by host name: cookies of an IP address are never kept anyway."""

    async def set_cookie(received: Received, request: web.Request) -> web.StreamResponse:
        response = ocpi(None)
        response.set_cookie("session", "for-whoever-asked-first")
        return response

    async with (
        FakePlatform("CPO Co", [(*CPO, "CPO")], ALL_MODULES, host="localhost") as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
        FakePlatform("PTP Co", [(*PTP, "PTP")], ALL_MODULES) as ptp,
    ):
        for platform in (cpo, emsp, ptp):
            await register(hub, http, platform)
        roaming = Roaming(hub, http, cpo, emsp, ptp)
        cpo.handler = set_cookie
        for sender in (EMSP, PTP, EMSP):
            response, body = await roaming.call(sender, CPO, "GET", "locations", "SENDER", "/L1")
            assert response.status == 200 and body["status_code"] == 1000
            assert "set-cookie" in response.headers  # relayed: the requester's to keep
        calls = cpo.calls("/ocpi/2.3.0/locations")
        assert len(calls) == 3
        assert not any("cookie" in call.headers for call in calls)


async def test_the_hub_asks_for_no_coding_and_labels_json_bodies(roaming: Roaming) -> None:
    """README "Routing": no Accept-Encoding from the requester -> identity toward the
    receiver (answers are relayed undecoded), the requester's own passes unchanged; a body
    without Content-Type goes as application/json, the hub's own User-Agent when none."""
    url = roaming.hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC1"
    plain = {**roaming.cpo.routed(EMSP), "Accept-Encoding": "", "User-Agent": ""}
    gzip = {**roaming.cpo.routed(EMSP), "Accept-Encoding": "gzip", "User-Agent": "cpo/1"}
    for headers in (plain, gzip):
        headers = {k: v for k, v in headers.items() if v}
        async with roaming.http.put(
            url,
            data=b'{"id":"LOC1"}',
            headers=headers,
            skip_auto_headers=["Content-Type", "Accept-Encoding", "User-Agent"],
        ) as response:
            assert response.status == 200
    first, second = roaming.emsp.calls("/ocpi/2.3.0/locations")
    assert first.headers["accept-encoding"] == "identity"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"].startswith("ocpi-hub/")
    assert second.headers["accept-encoding"] == "gzip"
    assert second.headers["user-agent"] == "cpo/1"


async def test_receiver_errors_reach_requester_unchanged(roaming: Roaming) -> None:
    """status_codes "4xxx": 2xxx and 3xxx of the receiver are forwarded as they are."""

    async def unknown_location(received: Received, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "status_code": 2003,
                "status_message": "Unknown location LOCX",
                "timestamp": "2026-01-01T00:00:00Z",
            },
            status=404,
        )

    roaming.cpo.handler = unknown_location
    response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER", "/LOCX")
    assert response.status == 404
    assert body == {
        "status_code": 2003,
        "status_message": "Unknown location LOCX",
        "timestamp": "2026-01-01T00:00:00Z",
    }


async def test_missing_and_spoofed_from_headers(roaming: Roaming) -> None:
    url = roaming.hub.endpoint("locations", "SENDER")
    async with roaming.http.get(
        url,
        headers={
            **roaming.emsp.hub_headers(),
            "OCPI-to-country-code": "NL",
            "OCPI-to-party-id": "CPA",
        },
    ) as response:
        body = await response.json()
    # One party on the eMSP's platform: the hub fills OCPI-from in (with two it is 2001:
    # tests/test_spec_corners.py).
    assert body["status_code"] == 1000
    assert response.headers["OCPI-to-party-id"] == EMSP[1]
    roaming.cpo.received.clear()

    # The eMSP's platform pretends to be the CPO (or the PTP) toward the PTP.
    response, body = await roaming.call(
        EMSP,
        PTP,
        "GET",
        "payments",
        "SENDER",
        "/terminals",
        extra={"OCPI-from-country-code": "NL", "OCPI-from-party-id": "CPA"},
    )
    assert body["status_code"] == 2001 and "NL/CPA is not a party" in body["status_message"]
    response, body = await roaming.call(
        EMSP, CPO, "GET", "locations", "SENDER", extra={"OCPI-from-party-id": "C"}
    )
    assert body["status_code"] == 2001
    assert all(p.calls() == [] for p in (roaming.cpo, roaming.emsp, roaming.ptp)), (
        "nothing forwarded"
    )


async def test_token_a_is_refused_on_functional_modules(
    roaming: Roaming, http: aiohttp.ClientSession
):
    """transport_and_format "Authorization header": token A outside versions/credentials -> 401."""
    created = await roaming.hub.create_platform(http, "Newcomer")
    async with http.get(
        roaming.hub.endpoint("locations", "SENDER"), headers=token_header(created["token_a"])
    ) as r:
        assert r.status == 401
        assert "CREDENTIALS_TOKEN_A" in (await r.json())["status_message"]


async def test_method_the_interface_does_not_take_is_405(roaming: Roaming) -> None:
    response, body = await roaming.call(
        CPO, EMSP, "POST", "locations", "RECEIVER", "/NL/CPA/L1", {}
    )
    assert response.status == 405
    assert "GET, PATCH, PUT" in body["status_message"]
    assert roaming.emsp.calls() == []


async def test_unknown_module_and_interface_are_404(roaming: Roaming) -> None:
    for module, interface in (
        ("nosuchmodule", "SENDER"),
        ("locations", "middle"),
        ("credentials", "SENDER"),
    ):
        response, _body = await roaming.call(CPO, EMSP, "GET", module, interface)
        assert response.status == 404, module


async def test_custom_module_advertised_by_a_platform_is_routed(
    hub: RunningHub, http: aiohttp.ClientSession
):
    async with (
        FakePlatform("CPO Co", [(*CPO, "CPO")], (*ALL_MODULES, ("nlcpa-extras", "SENDER"))) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        roaming = Roaming(hub, http, cpo, emsp, emsp)
        _response, body = await roaming.call(
            EMSP, CPO, "DELETE", "nlcpa-extras", "SENDER", "/thing/1"
        )
        assert body["status_code"] == 1000
        assert cpo.calls()[0].path == "/ocpi/2.3.0/nlcpa-extras/sender/thing/1"


async def test_4001_unknown_receiver(roaming: Roaming) -> None:
    response, body = await roaming.call(EMSP, ("BE", "XYZ"), "GET", "locations", "SENDER")
    assert body["status_code"] == 4001 and "BE/XYZ" in body["status_message"]
    assert (response.headers["OCPI-from-country-code"], response.headers["OCPI-from-party-id"]) == (
        "NL",
        "HUB",
    )
    assert (response.headers["OCPI-to-country-code"], response.headers["OCPI-to-party-id"]) == EMSP


async def test_4003_suspended_receiver_without_network_call(roaming: Roaming) -> None:
    platforms = await (
        await roaming.http.get(f"{roaming.hub.url}/admin/platforms", headers=roaming.hub.admin)
    ).json()
    cpo_id = next(p["id"] for p in platforms if p["name"] == "CPO Co")
    async with roaming.http.delete(
        f"{roaming.hub.url}/admin/platforms/{cpo_id}", headers=roaming.hub.admin
    ):
        pass
    # The suspension tells the platform (DELETE on its credentials endpoint); then nothing.
    await until(lambda: bool(roaming.cpo.calls(method="DELETE")))
    roaming.cpo.received.clear()
    _response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER")
    assert body["status_code"] == 4003 and "SUSPENDED" in body["status_message"]
    assert roaming.cpo.calls() == []


async def test_4003_unreachable_receiver_quickly(roaming: Roaming) -> None:
    await roaming.cpo.stop()
    began = time.monotonic()
    _response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER")
    assert body["status_code"] == 4003
    # A refused connection is answered at once, not after FORWARD_TIMEOUT (3 s here).
    assert time.monotonic() - began < roaming.hub.settings.forward_timeout / 2


async def test_4002_timeout_within_forward_timeout(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    async with (
        hub_factory(forward_timeout=0.5) as hub,
        FakePlatform("CPO Co", [(*CPO, "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)

        release = asyncio.Event()

        async def hang(received: Received, request: web.Request) -> web.StreamResponse:
            with contextlib.suppress(TimeoutError):  # answers after 5 s, or once released
                await asyncio.wait_for(release.wait(), 5)
            return ocpi(None)

        cpo.handler = hang
        roaming = Roaming(hub, http, cpo, emsp, emsp)
        began = time.monotonic()
        try:
            _response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER")
        finally:
            release.set()
        elapsed = time.monotonic() - began
        assert body["status_code"] == 4002 and "0.5 s" in body["status_message"]
        # The hub's own 0.5 s, not the receiver's 5 s: between them, room for a loaded runner.
        assert 0.45 <= elapsed < 2.5


async def test_4000_receiver_lacks_the_module(hub: RunningHub, http: aiohttp.ClientSession):
    async with (
        FakePlatform("CPO Co", [(*CPO, "CPO")], (("locations", "SENDER"),)) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        _response, body = await Roaming(hub, http, cpo, emsp, emsp).call(
            EMSP,
            CPO,
            "POST",
            "commands",
            "RECEIVER",
            "/START_SESSION",
            {"response_url": "http://127.0.0.1:9/"},
        )
        assert body["status_code"] == 4000 and "commands RECEIVER" in body["status_message"]


async def test_4000_answer_that_is_not_ocpi(roaming: Roaming) -> None:
    async def gateway_error(received: Received, request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    roaming.cpo.handler = gateway_error
    response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER", "/L1")
    assert response.status == 502, "status_codes 4xxx: the receiver's HTTP status stays"
    assert body["status_code"] == 4000 and "not an OCPI response" in body["status_message"]


async def test_invalid_json_body_is_400_and_not_forwarded(roaming: Roaming) -> None:
    headers = {**roaming.cpo.routed(EMSP), "Content-Type": "application/json"}
    url = roaming.hub.endpoint("locations", "RECEIVER") + "/NL/CPA/LOC1"
    async with roaming.http.put(url, data=b'{"id": "LOC1",', headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["status_code"] == 2001
    assert roaming.emsp.calls() == []


async def test_configuration_modules_ignore_routing_headers(roaming: Roaming) -> None:
    headers = {**roaming.cpo.hub_headers(), "OCPI-to-country-code": "ZZ", "OCPI-to-party-id": "!!"}
    async with roaming.http.get(roaming.hub.versions_url, headers=headers) as response:
        assert response.status == 200


async def test_next_link_rewritten_and_followed(
    roaming: Roaming, http: aiohttp.ClientSession
) -> None:
    """transport_and_format "Pagination": Link rel=next leads back through the hub, and only
    for the requester it was handed to."""
    cpo = roaming.cpo

    async def paged(received: Received, request: web.Request) -> web.StreamResponse:
        offset = int(received.query.get("offset", "0"))
        headers = {"X-Total-Count": "4", "X-Limit": "2"}
        if offset < 2:
            headers["Link"] = (
                f'<{cpo.url}/ocpi/2.3.0/locations/sender?offset={offset + 2}&limit=2>; rel="next"'
            )
        return ocpi([{"id": f"L{offset}"}, {"id": f"L{offset + 1}"}], **headers)

    cpo.handler = paged
    response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER", query="limit=2")
    link = response.headers["Link"]
    assert link.startswith(f"<{roaming.hub.url}/ocpi/hub/links/") and link.endswith('>; rel="next"')
    assert cpo.url not in link
    next_url = link[1 : link.index(">")]

    response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER", url=next_url)
    assert [o["id"] for o in body["data"]] == ["L2", "L3"]
    assert "Link" not in response.headers  # last page
    followed = cpo.calls()[-1]
    assert followed.query == {"offset": "2", "limit": "2"}
    assert (followed.headers["ocpi-from-party-id"], followed.headers["ocpi-to-party-id"]) == (
        "MSA",
        "CPA",
    )
    assert (response.headers["OCPI-from-party-id"], response.headers["OCPI-to-party-id"]) == (
        "CPA",
        "MSA",
    )

    # The PTP's platform cannot use the eMSP's link; nobody can use a made-up one.
    response, body = await roaming.call(PTP, CPO, "GET", "locations", "SENDER", url=next_url)
    assert response.status == 404
    response, body = await roaming.call(
        EMSP, CPO, "GET", "locations", "SENDER", url=next_url[:-3] + "xyz"
    )
    assert response.status == 404


async def test_cdr_location_rewritten_and_followed(roaming: Roaming) -> None:
    """mod_cdrs: the eMSP answers a CDR POST with Location; the CPO GETs it via the hub."""
    emsp = roaming.emsp

    async def store(received: Received, request: web.Request) -> web.StreamResponse:
        if received.method == "POST":
            return ocpi(None, Location=f"{emsp.url}/ocpi/2.3.0/cdrs/receiver/stored/CDR1")
        return ocpi({"id": "CDR1", "path": received.path})

    emsp.handler = store
    response, body = await roaming.call(CPO, EMSP, "POST", "cdrs", "RECEIVER", body={"id": "CDR1"})
    location = response.headers["Location"]
    assert location.startswith(f"{roaming.hub.url}/ocpi/hub/links/")
    response, body = await roaming.call(CPO, EMSP, "GET", "cdrs", "RECEIVER", url=location)
    assert body["data"] == {"id": "CDR1", "path": "/ocpi/2.3.0/cdrs/receiver/stored/CDR1"}
    assert emsp.calls()[-1].method == "GET"


async def test_start_session_round_trip(roaming: Roaming) -> None:
    """mod_commands: the CommandResult reaches the eMSP's own response_url via the hub."""
    cpo, emsp = roaming.cpo, roaming.emsp
    original = f"{emsp.url}/results/start/42"
    command = {
        "response_url": original,
        "token": {"uid": "UID1", "country_code": "DE", "party_id": "MSA"},
        "location_id": "LOC1",
        "evse_uid": "EVSE1",
    }

    async def accept(received: Received, request: web.Request) -> web.StreamResponse:
        if received.path.startswith("/results/"):
            return ocpi(None)
        return ocpi({"result": "ACCEPTED", "timeout": 30})

    cpo.handler = accept
    emsp.handler = accept
    _, body = await roaming.call(
        EMSP, CPO, "POST", "commands", "RECEIVER", "/START_SESSION", command
    )
    assert body["data"] == {"result": "ACCEPTED", "timeout": 30}
    delivered = cpo.calls()[0].json()
    callback_url = delivered.pop("response_url")
    assert callback_url.startswith(f"{roaming.hub.url}/ocpi/hub/callbacks/")
    assert delivered == {k: v for k, v in command.items() if k != "response_url"}

    # The CPO posts the result to the hub URL, as its own platform.
    result = {"result": "ACCEPTED"}
    headers = {**cpo.hub_headers(), "X-Correlation-ID": "corr-result"}
    async with roaming.http.post(callback_url, json=result, headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["status_code"] == 1000
    arrived = emsp.calls("/results/")
    assert len(arrived) == 1
    assert arrived[0].path == "/results/start/42" and arrived[0].json() == result
    assert arrived[0].token in emsp.inbound_tokens
    assert (arrived[0].headers["ocpi-from-party-id"], arrived[0].headers["ocpi-to-party-id"]) == (
        "CPA",
        "MSA",
    )
    assert arrived[0].headers["x-correlation-id"] == "corr-result"

    # Only the receiver may use the callback.
    async with roaming.http.post(
        callback_url, json=result, headers=roaming.ptp.hub_headers()
    ) as response:
        assert response.status == 404
    async with roaming.http.post(callback_url, json=result) as response:
        assert response.status == 401


async def test_charging_profile_result_round_trip(roaming: Roaming) -> None:
    """mod_charging_profiles: GET carries response_url as a query parameter."""
    cpo, emsp = roaming.cpo, roaming.emsp
    original = f"{emsp.url}/results/profile/7"
    await roaming.call(
        EMSP,
        CPO,
        "GET",
        "chargingprofiles",
        "RECEIVER",
        "/S1",
        query=f"duration=900&response_url={original}",
    )
    asked = cpo.calls()[0]
    assert asked.query["duration"] == "900"
    callback_url = asked.query["response_url"]
    assert callback_url.startswith(f"{roaming.hub.url}/ocpi/hub/callbacks/")
    async with roaming.http.post(
        callback_url, json={"result": "ACCEPTED", "profile": {}}, headers=cpo.hub_headers()
    ) as response:
        assert (await response.json())["status_code"] == 1000
    arrived = emsp.calls("/results/profile/7")
    assert len(arrived) == 1 and arrived[0].json() == {"result": "ACCEPTED", "profile": {}}


async def test_real_time_authorization_cpo_to_emsp(roaming: Roaming) -> None:
    """mod_tokens "Real-time authorization": POST tokens/{uid}/authorize to the eMSP."""

    async def authorize(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi(
            {"allowed": "ALLOWED", "token": {"uid": "UID1"}, "authorization_reference": "AR1"}
        )

    roaming.emsp.handler = authorize
    _response, body = await roaming.call(
        CPO,
        EMSP,
        "POST",
        "tokens",
        "SENDER",
        "/UID1/authorize",
        {"location_id": "LOC1"},
        "type=APP_USER",
    )
    assert body["data"]["allowed"] == "ALLOWED"
    got = roaming.emsp.calls()[0]
    assert got.path == "/ocpi/2.3.0/tokens/sender/UID1/authorize" and got.query == {
        "type": "APP_USER"
    }


async def test_twenty_megabyte_page_streams(roaming: Roaming) -> None:
    """A 20 MB Locations page passes through chunk by chunk: the hub never holds it whole."""
    import hashlib
    import tracemalloc

    chunk = b'{"id":"LOC","name":"' + b"x" * 65_000 + b'"},'
    count = 20 * 1024 * 1024 // len(chunk)

    async def big(received: Received, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"status_code":1000,"timestamp":"2026-01-01T00:00:00Z","data":[')
        for _ in range(count):
            await response.write(chunk)
        await response.write(b'{"id":"END"}]}')
        await response.write_eof()
        return response

    roaming.cpo.handler = big
    headers = roaming.emsp.routed(CPO)
    digest, size = hashlib.sha256(), 0
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        async with roaming.http.get(
            roaming.hub.endpoint("locations", "SENDER"), headers=headers
        ) as response:
            assert response.status == 200
            async for piece in response.content.iter_chunked(1 << 16):
                digest.update(piece)
                size += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 20 * 1024 * 1024 - 70_000
    expected = hashlib.sha256(
        b'{"status_code":1000,"timestamp":"2026-01-01T00:00:00Z","data":['
        + chunk * count
        + b'{"id":"END"}]}'
    )
    assert digest.hexdigest() == expected.hexdigest()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB: the page was buffered"


async def test_hanging_receiver_does_not_starve_others(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    """A cap of concurrent requests per receiver platform: the third request to a hanging
    platform waits for a slot (and times out), while a request to another platform goes
    through. With one deadline for the wait and the call, the third may still be sent in
    what is left of it once one of the first two has timed out: never before."""
    async with (
        hub_factory(forward_timeout=1.0, platform_concurrency=2) as hub,
        FakePlatform("CPO Co", [(*CPO, "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
        FakePlatform("PTP Co", [(*PTP, "PTP")], ALL_MODULES) as ptp,
    ):
        for platform in (cpo, emsp, ptp):
            await register(hub, http, platform)
        roaming = Roaming(hub, http, cpo, emsp, ptp)
        release = asyncio.Event()
        arrived: list[float] = []

        async def hang(received: Received, request: web.Request) -> web.StreamResponse:
            arrived.append(time.monotonic())
            await release.wait()
            return ocpi(None)

        cpo.handler = hang
        hanging = [
            asyncio.create_task(roaming.call(EMSP, CPO, "GET", "locations", "SENDER"))
            for _ in range(3)
        ]
        try:
            await until(lambda: len(arrived) >= 2)
            _, body = await roaming.call(EMSP, PTP, "GET", "payments", "SENDER", "/terminals")
            assert body["status_code"] == 1000
            # The hanging calls still hold both slots and wait (until FORWARD_TIMEOUT, 1 s):
            # had the call to PTP needed one of those slots, it could not be answered yet.
            assert not any(t.done() for t in hanging), "waited for the hanging platform's slots"
            results = [body for _, body in await asyncio.gather(*hanging)]
        finally:
            release.set()  # a failure above must not leave the fake's handlers hanging
        assert sorted(r["status_code"] for r in results) == [4002, 4002, 4002]
        # All three are over, so whatever was sent has arrived. Without the cap the third
        # arrives with the first two; with it, a slot frees when the first times out (1 s).
        assert len(arrived) in (2, 3)
        if len(arrived) == 3:
            late = arrived[2] - arrived[0]
            assert late >= 0.5, f"the third arrived {late:.3f} s after the first"


async def test_waiting_for_a_slot_shares_the_forward_timeout(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    """One deadline per forwarded request: the wait for a platform's slot uses part of
    FORWARD_TIMEOUT and the answer gets the rest. With one slot and a receiver that hangs,
    the second requester used to wait FORWARD_TIMEOUT for the slot and FORWARD_TIMEOUT
    again for the answer (2 s here); now both hear 4002 at about 1 s."""
    timeout = 1.0
    async with (
        hub_factory(forward_timeout=timeout, platform_concurrency=1) as hub,
        FakePlatform("CPO Co", [(*CPO, "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        release = asyncio.Event()

        async def hang(received: Received, request: web.Request) -> web.StreamResponse:
            await release.wait()
            return ocpi(None)

        cpo.handler = hang
        roaming = Roaming(hub, http, cpo, emsp, emsp)

        async def timed() -> tuple[float, dict[str, Any]]:
            began = time.monotonic()
            _, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER")
            return time.monotonic() - began, body

        try:
            results = await asyncio.gather(timed(), timed())
        finally:
            release.set()
        assert [body["status_code"] for _, body in results] == [4002, 4002]
        assert max(elapsed for elapsed, _ in results) < 1.5 * timeout, results


async def test_odd_but_common_peer_habits(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    """Trailing slashes on every endpoint URL, a single object answered as [obj], an empty
    Link on the last page: forwarded as they are, never a crash."""

    class Slashy(FakePlatform):
        def endpoint_url(self, module: str, role: str) -> str:
            return super().endpoint_url(module, role) + "/"

    async with (
        Slashy("CPO Co", [(*CPO, "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)

        async def odd(received: Received, request: web.Request) -> web.StreamResponse:
            return ocpi([{"id": "LOC1"}], Link="")

        cpo.handler = odd
        roaming = Roaming(hub, http, cpo, emsp, emsp)
        response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER", "/LOC1")
        assert body["data"] == [{"id": "LOC1"}]
        assert "Link" not in response.headers
        assert cpo.calls()[-1].path == "/ocpi/2.3.0/locations/sender/LOC1"
        await roaming.call(EMSP, CPO, "GET", "locations", "SENDER", "/")
        assert cpo.calls()[-1].path == "/ocpi/2.3.0/locations/sender/"


@pytest.mark.parametrize(
    ("module", "method", "suffix", "query", "body"),
    [
        ("commands", "POST", f"/{command}", "", {"response_url": "ORIGINAL", "x": 1})
        for command in (
            "CANCEL_RESERVATION", "RESERVE_NOW", "START_SESSION", "STOP_SESSION", "UNLOCK_CONNECTOR"
        )
    ]
    + [
        ("chargingprofiles", "PUT", "/S1", "", {"charging_profile": {}, "response_url": "ORIGINAL"}),  # noqa: E501
        ("chargingprofiles", "DELETE", "/S1", "response_url=ORIGINAL", None),
        ("chargingprofiles", "GET", "/S1", "duration=60&response_url=ORIGINAL", None),
    ],
)  # fmt: skip
async def test_every_response_url_is_proxied(
    roaming: Roaming, module: str, method: str, suffix: str, query: str, body: Any
) -> None:
    """mod_commands / mod_charging_profiles: wherever a response_url is carried, the receiver
    gets a hub callback instead, and the result reaches the original URL."""
    original = f"{roaming.emsp.url}/results/{module}/{method}{suffix}"
    if body is not None:
        body = {k: original if v == "ORIGINAL" else v for k, v in body.items()}
    query = query.replace("ORIGINAL", original)
    await roaming.call(EMSP, CPO, method, module, "RECEIVER", suffix, body, query)
    (got,) = roaming.cpo.calls()
    carried = got.json()["response_url"] if body is not None else got.query["response_url"]
    assert carried.startswith(f"{roaming.hub.url}/ocpi/hub/callbacks/")
    if body is not None:
        assert {k: v for k, v in got.json().items() if k != "response_url"} == {
            k: v for k, v in body.items() if k != "response_url"
        }
    async with roaming.http.post(
        carried, json={"result": "ACCEPTED"}, headers=roaming.cpo.hub_headers()
    ) as r:
        assert (await r.json())["status_code"] == 1000
    assert [c.path for c in roaming.emsp.calls("/results/")] == [
        f"/results/{module}/{method}{suffix}"
    ]


@pytest.mark.parametrize(
    "suffix",
    [
        "/%2e%2e/credentials",
        "/NL/CPA/%2E%2E/%2e%2e/%2e%2e/credentials",
        "/../credentials",
        "/a/./b",
    ],
)
async def test_dot_segments_cannot_climb_out_of_the_endpoint(roaming: Roaming, suffix: str) -> None:
    """A URL library resolves '..' (even %2e%2e): forwarded, it would reach the receiver's
    credentials endpoint with the hub's token. Refused, nothing forwarded."""
    from yarl import URL

    url = URL(roaming.hub.endpoint("locations", "SENDER") + suffix, encoded=True)  # sent as is
    headers = roaming.emsp.routed(("NL", "CPA"))
    async with roaming.http.get(url, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["status_code"] == 2001
    assert roaming.cpo.calls() == []


async def test_path_is_forwarded_as_encoded(roaming: Roaming) -> None:
    """A token uid with an encoded slash or question mark stays one segment."""
    await roaming.call(CPO, EMSP, "POST", "tokens", "SENDER", "/UID%2F1%3Fx/authorize", {})
    (got,) = roaming.emsp.calls()
    assert got.raw_path == "/ocpi/2.3.0/tokens/sender/UID%2F1%3Fx/authorize"
    assert got.query == {}


@pytest.mark.parametrize("suffix", ["/NL/CPB/LOC1", "/DE/MSA/LOC1", "/LOC1", ""])
async def test_client_owned_url_must_name_the_sender(roaming: Roaming, suffix: str) -> None:
    """transport_and_format "Client Owned Object Push": the CPO NL/CPA may push under its own
    /NL/CPA/ only, not under another party's country_code/party_id."""
    _, body = await roaming.call(CPO, EMSP, "PUT", "locations", "RECEIVER", suffix, {"id": "LOC1"})
    assert body["status_code"] == 2001 and "OCPI-from party NL/CPA" in body["status_message"]
    assert roaming.emsp.calls() == []


async def test_response_url_must_point_at_the_requester(roaming: Roaming) -> None:
    """The hub relays results only to the requesting platform, never to a URL elsewhere."""
    command = {"session_id": "S1", "response_url": f"{roaming.ptp.url}/r"}
    _, body = await roaming.call(
        EMSP, CPO, "POST", "commands", "RECEIVER", "/STOP_SESSION", command
    )
    assert body["status_code"] == 2001 and "response_url" in body["status_message"]
    assert roaming.cpo.calls() == []


async def test_links_to_other_hosts_are_dropped(roaming: Roaming) -> None:
    """A next link or Location that leaves the receiver's own hosts is not handed out."""

    async def elsewhere(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi(
            [],
            Link=f'<{roaming.ptp.url}/internal?offset=2>; rel="next"',
            Location="http://10.0.0.1/x",
        )

    roaming.cpo.handler = elsewhere
    response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER")
    assert body["status_code"] == 1000
    assert "Link" not in response.headers and "Location" not in response.headers
    assert "did not pass on a link" in body["status_message"]
    assert f"{roaming.ptp.url}/internal?offset=2" in body["status_message"]
    assert "http://10.0.0.1/x" in response.headers["Warning"]


async def _platform_id(roaming: Roaming, name: str) -> str:
    async with roaming.http.get(
        f"{roaming.hub.url}/admin/platforms", headers=roaming.hub.admin
    ) as response:
        return next(p["id"] for p in await response.json() if p["name"] == name)


async def _allow(roaming: Roaming, name: str, origins: list[str]) -> None:
    url = f"{roaming.hub.url}/admin/platforms/{await _platform_id(roaming, name)}"
    async with roaming.http.patch(
        url, json={"extra_origins": origins}, headers=roaming.hub.admin
    ) as response:
        assert response.status == 200
        assert (await response.json())["extra_origins"] == origins


async def test_extra_origins_widen_links_and_callbacks(roaming: Roaming) -> None:
    """An operator allows a platform's separate API host: next pages pointing there are
    handed out (and followed there), and a response_url there is accepted."""

    async def elsewhere(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi([], Link=f'<{roaming.ptp.url}/internal?offset=2>; rel="next"')

    roaming.cpo.handler = elsewhere
    await _allow(roaming, "CPO Co", [roaming.ptp.url])
    response, body = await roaming.call(EMSP, CPO, "GET", "locations", "SENDER")
    assert body["status_code"] == 1000 and "Warning" not in response.headers
    link = response.headers["Link"]
    assert link.startswith(f"<{roaming.hub.url}/ocpi/hub/links/")
    async with roaming.http.get(link[1 : link.index(">")], headers=roaming.emsp.hub_headers()):
        pass
    assert [c.path for c in roaming.ptp.calls("/internal")] == ["/internal"]

    await _allow(roaming, "MSP Co", [roaming.ptp.url])
    command = {"session_id": "S1", "response_url": f"{roaming.ptp.url}/r"}
    _, body = await roaming.call(
        EMSP, CPO, "POST", "commands", "RECEIVER", "/STOP_SESSION", command
    )
    assert body["status_code"] == 1000


async def test_extra_origins_must_be_origins(roaming: Roaming) -> None:
    cpo_id = await _platform_id(roaming, "CPO Co")
    for bad in (["ftp://x"], ["https://x/path"], ["not a url"]):
        async with roaming.http.patch(
            f"{roaming.hub.url}/admin/platforms/{cpo_id}",
            json={"extra_origins": bad},
            headers=roaming.hub.admin,
        ) as response:
            assert response.status == 422, bad


async def test_cdr_location_outlives_a_year_of_disputes(roaming: Roaming, redis: Any) -> None:
    """mod_cdrs "Response Headers": the CPO may GET the CDR again by its Location; the hub's
    stand-in for it lives CDR_LOCATION_TTL (400 days), next pages only PAGE_LINK_TTL."""

    async def created(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi(None, Location=f"{roaming.emsp.url}/ocpi/2.3.0/cdrs/receiver/CDR1")

    roaming.emsp.handler = created
    response, body = await roaming.call(CPO, EMSP, "POST", "cdrs", "RECEIVER", "", {"id": "CDR1"})
    assert body["status_code"] == 1000
    relay_id = response.headers["Location"].rsplit("/", 1)[1]
    assert await redis.ttl("{hub}:link:" + relay_id) > 365 * 24 * 3600
