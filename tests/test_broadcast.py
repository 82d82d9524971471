"""Broadcast Push (transport_and_format, "Broadcast Push" and "Party to Party Broadcast Push")."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, ocpi, register, until
from tests.support import REDIS_MODE, HubClient, RunningHub

HUB = ("NL", "HUB")


@dataclass
class Network:
    hub: HubClient
    http: aiohttp.ClientSession
    cpo_a: FakePlatform
    cpo_b: FakePlatform
    emsp_a: FakePlatform
    emsp_b: FakePlatform
    nsp: FakePlatform
    ids: dict[str, str]

    @property
    def everyone(self) -> list[FakePlatform]:
        return [self.cpo_a, self.cpo_b, self.emsp_a, self.emsp_b, self.nsp]

    async def push(
        self,
        sender: FakePlatform,
        method: str,
        module: str,
        suffix: str,
        body: Any = None,
        to: tuple[str, str] | None = HUB,
        interface: str = "receiver",
    ) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
        headers = {**sender.routed(to), "X-Correlation-ID": "corr-" + uuid.uuid4().hex}
        url = f"{self.hub.url}/ocpi/2.3.0/{module}/{interface}{suffix}"
        async with self.http.request(method, url, json=body, headers=headers) as response:
            response.correlation_id = headers["X-Correlation-ID"]  # type: ignore[attr-defined]
            return response, await response.json()


@contextlib.asynccontextmanager
async def network_of(hub: HubClient, http: aiohttp.ClientSession) -> AsyncIterator[Network]:
    async with (
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo_a,
        FakePlatform("CPO B", [("NL", "CPB", "CPO")], ALL_MODULES) as cpo_b,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp_a,
        FakePlatform("MSP B", [("DE", "MSB", "EMSP")], ALL_MODULES) as emsp_b,
        FakePlatform("Nav", [("BE", "NAV", "NSP")], ALL_MODULES) as nsp,
    ):
        ids = {}
        for platform in (cpo_a, cpo_b, emsp_a, emsp_b, nsp):
            ids[platform.name] = await register(hub, http, platform)
            platform.received.clear()
        yield Network(hub, http, cpo_a, cpo_b, emsp_a, emsp_b, nsp, ids)


@pytest.fixture
async def network(hub: RunningHub, http: aiohttp.ClientSession) -> AsyncIterator[Network]:
    async with network_of(hub, http) as value:
        yield value


LOCATION = {
    "id": "LOC1",
    "country_code": "NL",
    "party_id": "CPA",
    "last_updated": "2020-01-01T00:00:00Z",
}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_location_push_reaches_every_non_cpo(network: Network, method: str) -> None:
    """From a CPO to every eMSP and NSP (not the other CPO, not back to the sender), with
    from = the hub and to = each receiver; the URL keeps the owner's country_code/party_id."""
    response, body = await network.push(
        network.cpo_a, method, "locations", "/NL/CPA/LOC1", LOCATION
    )
    assert body["status_code"] == 1000 and "broadcast" in body["status_message"]
    broadcast_id = accepted(body)
    assert (
        response.headers["OCPI-from-country-code"],
        response.headers["OCPI-from-party-id"],
    ) == HUB
    assert (response.headers["OCPI-to-country-code"], response.headers["OCPI-to-party-id"]) == (
        "NL",
        "CPA",
    )

    receivers = {
        network.emsp_a: ("DE", "MSA"),
        network.emsp_b: ("DE", "MSB"),
        network.nsp: ("BE", "NAV"),
    }
    await until(lambda: all(p.calls() for p in receivers))
    request_ids = set()
    for platform, party in receivers.items():
        (got,) = platform.calls()
        assert got.method == method
        assert got.path == "/ocpi/2.3.0/locations/receiver/NL/CPA/LOC1"
        assert got.json() == LOCATION
        assert (got.headers["ocpi-from-country-code"], got.headers["ocpi-from-party-id"]) == HUB
        assert (got.headers["ocpi-to-country-code"], got.headers["ocpi-to-party-id"]) == party
        assert got.headers["x-correlation-id"] == response.correlation_id  # type: ignore[attr-defined]
        assert got.token in platform.inbound_tokens
        request_ids.add(got.headers["x-request-id"])
    assert len(request_ids) == 3, "a new X-Request-ID for each receiver"
    # Finished: every delivery of the broadcast has been made and recorded, so what the
    # platforms hold now is all they will get from it.
    report = await _report(network, broadcast_id)
    assert parties_of(report) == set(receivers.values())
    assert all(len(p.calls()) == 1 for p in receivers), "one push each"
    assert network.cpo_a.calls() == [] and network.cpo_b.calls() == []


async def test_token_push_reaches_cpos_only(network: Network) -> None:
    token = {
        "uid": "UID1",
        "country_code": "DE",
        "party_id": "MSA",
        "last_updated": "2020-01-01T00:00:00Z",
    }
    _, body = await network.push(network.emsp_a, "PUT", "tokens", "/DE/MSA/UID1", token)
    assert body["status_code"] == 1000
    report = await _report(network, accepted(body))
    assert parties_of(report) == {("NL", "CPA"), ("NL", "CPB")}
    assert [c.path for c in network.cpo_a.calls()] == ["/ocpi/2.3.0/tokens/receiver/DE/MSA/UID1"]
    assert [c.path for c in network.cpo_b.calls()] == ["/ocpi/2.3.0/tokens/receiver/DE/MSA/UID1"]
    assert (
        network.emsp_b.calls() == [] and network.nsp.calls() == [] and network.emsp_a.calls() == []
    )


@pytest.mark.parametrize(
    ("module", "method", "suffix"),
    [("sessions", "PUT", "/NL/CPA/S1"), ("cdrs", "POST", ""), ("bookings", "PUT", "/NL/CPA/B1")],
)
async def test_objects_of_one_party_are_not_broadcast(
    network: Network, module: str, method: str, suffix: str
) -> None:
    _, body = await network.push(network.cpo_a, method, module, suffix, {"id": "X"})
    assert body["status_code"] == 2001
    assert "not broadcast" in body["status_message"]
    # Answered before anything was queued: a broadcast is recorded (and listed) in the same
    # transaction that queues it, so an empty list means nothing is on its way.
    async with network.http.get(
        f"{network.hub.url}/admin/broadcasts", headers=network.hub.admin
    ) as response:
        assert response.status == 200 and await response.json() == []
    assert all(p.calls() == [] for p in network.everyone)


async def test_booking_locations_are_broadcast(network: Network) -> None:
    _, body = await network.push(
        network.cpo_a, "PUT", "bookings", "/NL/CPA/booking_locations/BL1", {"id": "BL1"}
    )
    assert body["status_code"] == 1000
    await until(lambda: network.emsp_a.calls() and network.emsp_b.calls())


async def test_get_addressed_to_the_hub_on_a_receiver_interface_is_refused(
    network: Network,
) -> None:
    """GET SHALL NOT be used in combination with Broadcast Push."""
    _, body = await network.push(network.cpo_a, "GET", "locations", "/NL/CPA/LOC1")
    assert body["status_code"] == 2001 and "omit the OCPI-to headers" in body["status_message"]


async def test_push_from_other_reaches_cpos_only(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """'Other' receives a CPO's broadcasts, but its own go to CPOs only."""
    async with (
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP A", [("DE", "MSA", "EMSP")], ALL_MODULES) as emsp,
        FakePlatform("Other", [("BE", "OTH", "OTHER")], ALL_MODULES) as other,
    ):
        for platform in (cpo, emsp, other):
            await register(hub, http, platform)
            platform.received.clear()
        network = Network(hub, http, cpo, cpo, emsp, emsp, other, {})
        _, body = await network.push(other, "PUT", "tokens", "/BE/OTH/UID1", {"uid": "UID1"})
        report = await _report(network, accepted(body))
        assert parties_of(report) == {("NL", "CPA")}
        _, body = await network.push(cpo, "PUT", "locations", "/NL/CPA/LOC1", LOCATION)
        report = await _report(network, accepted(body))
        assert parties_of(report) == {("DE", "MSA"), ("BE", "OTH")}
        assert [c.path for c in emsp.calls()] == ["/ocpi/2.3.0/locations/receiver/NL/CPA/LOC1"]
        assert [c.path for c in other.calls()] == ["/ocpi/2.3.0/locations/receiver/NL/CPA/LOC1"]
        assert [c.path for c in cpo.calls()] == ["/ocpi/2.3.0/tokens/receiver/BE/OTH/UID1"]


async def test_suspended_parties_are_skipped(network: Network) -> None:
    async with network.http.delete(
        f"{network.hub.url}/admin/platforms/{network.ids['MSP B']}", headers=network.hub.admin
    ):
        pass
    _, body = await network.push(network.cpo_a, "PUT", "locations", "/NL/CPA/LOC1", LOCATION)
    broadcast_id = body["status_message"].split()[1]
    await until(lambda: bool(network.emsp_a.calls()) and bool(network.nsp.calls()))
    report = await _report(network, broadcast_id)
    assert {(d["country_code"], d["party_id"]) for d in report["deliveries"]} == {
        ("DE", "MSA"),
        ("BE", "NAV"),
    }
    assert network.emsp_b.calls(path_prefix="/ocpi/2.3.0/locations") == []


def accepted(body: dict[str, Any]) -> str:
    """The broadcast id in the hub's answer: "broadcast <id> accepted"."""
    found = re.fullmatch(r"broadcast (\w+) accepted", body.get("status_message", ""))
    assert body["status_code"] == 1000 and found, body
    return found[1]


def parties_of(report: dict[str, Any]) -> set[tuple[str, str]]:
    """The parties the hub delivered a broadcast to, by its own record."""
    return {(d["country_code"], d["party_id"]) for d in report["deliveries"]}


async def _report(network: Network, broadcast_id: str) -> dict[str, Any]:
    url = f"{network.hub.url}/admin/broadcasts/{broadcast_id}"
    for _ in range(250):
        async with network.http.get(url, headers=network.hub.admin) as response:
            report = await response.json()
        if report.get("finished"):
            return report
        await asyncio.sleep(0.02)
    raise AssertionError(f"broadcast not finished: {report}")


async def test_delivery_report_per_receiver(network: Network) -> None:
    async def refuse(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi(None, 2001, 400)

    network.nsp.handler = refuse  # answers, but refuses: stays CONNECTED, fails delivery
    _, body = await network.push(network.cpo_a, "PATCH", "locations", "/NL/CPA/LOC1", LOCATION)
    broadcast_id = body["status_message"].split()[1]
    report = await _report(network, broadcast_id)
    assert (
        report["receivers"] == 3 and report["module"] == "locations" and report["method"] == "PATCH"
    )
    outcomes = {d["party_id"]: d for d in report["deliveries"]}
    assert outcomes["MSA"]["status_code"] == 1000 and outcomes["MSA"]["http_status"] == 200
    assert outcomes["MSA"]["latency_ms"] >= 0 and outcomes["MSA"]["error"] is None
    assert outcomes["NAV"]["status_code"] == 2001 and outcomes["NAV"]["http_status"] == 400
    async with network.http.get(
        f"{network.hub.url}/admin/broadcasts", headers=network.hub.admin
    ) as r:
        listed = await r.json()
    assert (
        listed[0]["id"] == broadcast_id and listed[0]["delivered"] == 2 and listed[0]["failed"] == 1
    )
    async with network.http.get(
        f"{network.hub.url}/admin/broadcasts/nope", headers=network.hub.admin
    ) as r:
        assert r.status == 404


async def test_wait_mode_answers_1000_with_a_delivery_summary(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """status_codes "4xxx": a receiver's error is forwarded "when the request was not a
    Broadcast Push": the sender never gets a receiver's 2001 as its own; the summary names
    the receiver that refused."""
    async with hub_factory(broadcast_wait=True) as hub, network_of(hub, http) as network:

        async def refuse(received: Received, request: web.Request) -> web.StreamResponse:
            return ocpi(None, 2001)

        _, body = await network.push(network.cpo_a, "PUT", "locations", "/NL/CPA/LOC1", LOCATION)
        assert body["status_code"] == 1000 and "delivered to 3 of 3" in body["status_message"]
        network.emsp_b.handler = refuse
        newer = {**LOCATION, "last_updated": "2020-01-02T00:00:00Z"}
        _, body = await network.push(network.cpo_a, "PUT", "locations", "/NL/CPA/LOC1", newer)
        assert body["status_code"] == 1000 and "delivered to 2 of 3" in body["status_message"]
        assert "DE/MSB 2001" in body["status_message"]


async def test_fifty_receivers_fifty_outcomes(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    parties = [("DE", f"M{i:02d}", "EMSP") for i in range(50)]
    async with (
        FakePlatform("CPO A", [("NL", "CPA", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("Many MSPs", parties, ALL_MODULES) as many,
    ):
        await register(hub, http, cpo)
        await register(hub, http, many)
        many.received.clear()
        network = Network(hub, http, cpo, cpo, many, many, many, {})
        _, body = await network.push(cpo, "PATCH", "locations", "/NL/CPA/LOC1", LOCATION)
        report = await _report(network, body["status_message"].split()[1])
        assert report["receivers"] == 50 and len(report["deliveries"]) == 50
        assert all(d["status_code"] == 1000 for d in report["deliveries"])
        assert sorted(c.headers["ocpi-to-party-id"] for c in many.calls()) == [
            p for _, p, _ in parties
        ]


async def test_broadcast_survives_the_process_that_accepted_it(
    hub_factory: HubFactory, http: aiohttp.ClientSession, redis_url: str, tmp_path: Any
) -> None:
    """A hub process killed while delivering: another process claims the pending broadcast
    and delivers it (durable Redis Stream with a consumer group)."""
    from tests.test_serve import HubProcess

    doomed = HubProcess(
        tmp_path / "doomed",
        HUB_REDIS_URL=redis_url,
        HUB_REDIS_MODE=REDIS_MODE,
        HUB_ADMIN_TOKEN="x" * 40,
        HUB_BROADCAST_CLAIM_IDLE="1",
    )
    await asyncio.to_thread(doomed.start)
    killed = False
    try:
        async with network_of(HubClient(doomed.url, "x" * 40), http) as network:
            release = asyncio.Event()

            async def slow(received: Received, request: web.Request) -> web.StreamResponse:
                await release.wait()
                return ocpi(None)

            for platform in (network.emsp_a, network.emsp_b, network.nsp):
                platform.handler = slow
            _, body = await network.push(
                network.cpo_a, "PUT", "locations", "/NL/CPA/LOC1", LOCATION
            )
            assert body["status_code"] == 1000
            broadcast_id = body["status_message"].split()[1]
            await until(lambda: bool(network.emsp_a.calls()) and bool(network.emsp_b.calls()))
            await asyncio.to_thread(doomed.stop, 9)  # SIGKILL: no chance to finish
            killed = True
            for platform in network.everyone:
                platform.received.clear()
            release.set()

            async with hub_factory(broadcast_claim_idle=1.0) as survivor:
                network.hub = survivor
                report = await _report(network, broadcast_id)
            assert {d["party_id"] for d in report["deliveries"]} == {"MSA", "MSB", "NAV"}
            assert all(d["status_code"] == 1000 for d in report["deliveries"])
            assert all(p.calls() for p in (network.emsp_a, network.emsp_b, network.nsp))
            assert network.cpo_b.calls() == []
    finally:
        if not killed:
            await asyncio.to_thread(doomed.stop)


async def test_broadcast_does_not_crowd_out_routed_requests(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """Background deliveries have their own connection slots per platform: broadcasts stuck
    on a slow receiver leave routed requests to that platform going through."""
    async with (
        hub_factory(platform_concurrency=2, forward_timeout=10.0) as hub,
        network_of(hub, http) as network,
    ):
        release = asyncio.Event()

        async def slow_pushes(received: Received, request: web.Request) -> web.StreamResponse:
            if received.method == "PUT":
                await release.wait()
            return ocpi({"id": "LOC1"})

        network.emsp_a.handler = slow_pushes
        try:
            broadcasts = []
            for location in ("LOC1", "LOC2"):  # two deliveries fill the lane of 2
                body = {**LOCATION, "id": location}
                _, answer = await network.push(
                    network.cpo_a, "PUT", "locations", f"/NL/CPA/{location}", body
                )
                broadcasts.append(accepted(answer))
            await until(lambda: len(network.emsp_a.calls(method="PUT")) == 2)
            began = time.monotonic()
            _, answer = await network.push(
                network.cpo_a, "GET", "locations", "/NL/CPA/LOC1", to=("DE", "MSA")
            )
            elapsed = time.monotonic() - began
            assert answer["status_code"] == 1000 and answer["data"] == {"id": "LOC1"}
            # The mechanism: both deliveries to MSP A still hold their slots (the hub has no
            # outcome for them yet), so the GET did not get a slot one of them gave back.
            for broadcast_id in broadcasts:
                url = f"{network.hub.url}/admin/broadcasts/{broadcast_id}"
                async with network.http.get(url, headers=network.hub.admin) as response:
                    report = await response.json()
                assert report["finished"] is None and ("DE", "MSA") not in parties_of(report)
            # A slot is given back only when a delivery ends, at the latest at the 10 s
            # FORWARD_TIMEOUT; a GET queued behind the broadcasts would take that long.
            assert elapsed < 5.0, "waited for the broadcast's slots"
        finally:
            release.set()


async def test_reports_beyond_the_newest_are_forgotten(redis: aioredis.Redis) -> None:
    """Reports beyond the newest KEEP go at once, finished or not (the soak saw two hashes
    per broadcast pile up for a week); the delivery engine records outcomes only into a
    report that still exists, so a late outcome does not bring one back."""
    from hub.background.broadcast import _TRIM
    from hub.registry.store import Keys

    trim = redis.register_script(_TRIM)
    for n, finished in enumerate([True, False, True, True]):
        await redis.zadd(Keys.broadcasts, {f"b{n}": n})
        await redis.hset(Keys.broadcast(f"b{n}"), "job", "{}")
        await redis.hset(Keys.deliveries(f"b{n}"), "NL:CPA:CPO", "{}")
        if finished:
            await redis.hset(Keys.broadcast(f"b{n}"), "finished", "2026-01-01T00:00:00Z")
    await trim(keys=[Keys.broadcasts], args=[2, Keys.broadcast("")])
    assert await redis.zrange(Keys.broadcasts, 0, -1) == [b"b2", b"b3"]
    assert not await redis.exists(Keys.broadcast("b0"), Keys.deliveries("b0"))
    assert not await redis.exists(Keys.broadcast("b1"), Keys.deliveries("b1"))
    assert await redis.exists(Keys.broadcast("b2"), Keys.deliveries("b2")) == 2
