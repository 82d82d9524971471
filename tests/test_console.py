"""What an operator watches: the traffic log, partner quality, /metrics, health, and the
dashboard's sign-in, over real HTTP against a real Redis and fake platforms."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hub.config import ConfigError, load_settings
from tests.conftest import HubFactory
from tests.fakes import FakePlatform, ocpi, register
from tests.support import REDIS_MODE, RunningHub, eventually

ROOT = Path(__file__).resolve().parent.parent
CPO, EMSP = ("NL", "CPA"), ("DE", "MSA")
MODULES = [("locations", "SENDER"), ("sessions", "RECEIVER"), ("locations", "RECEIVER")]


@pytest.fixture
async def pair(
    hub: RunningHub, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[FakePlatform, FakePlatform, str, str]]:
    async with (
        FakePlatform("CPO Co", [(*CPO, "CPO")], MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], MODULES) as emsp,
    ):
        cpo_id = await register(hub, http, cpo)
        emsp_id = await register(hub, http, emsp)
        yield cpo, emsp, cpo_id, emsp_id


async def _get(http: aiohttp.ClientSession, hub: RunningHub, path: str) -> Any:
    async with http.get(f"{hub.url}{path}", headers=hub.admin) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _hops(http: aiohttp.ClientSession, hub: RunningHub, correlation_id: str, n: int):
    """The exchange's hops once ``n`` are logged (they are written once a second)."""
    hops: list[dict[str, Any]] = []

    async def logged() -> bool:
        nonlocal hops
        async with http.get(f"{hub.url}/admin/traffic/{correlation_id}", headers=hub.admin) as r:
            hops = [e["hop"] for e in await r.json()] if r.status == 200 else []
        return len(hops) >= n

    await eventually(logged)
    return hops


async def test_traffic_log_keeps_every_hop_of_an_exchange_and_no_token(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis, pair
):
    """Both hops share the requester's X-Correlation-ID (transport_and_format, "Unique
    message IDs"); each names its platform, parties, module, statuses and latency."""
    cpo, emsp, cpo_id, emsp_id = pair
    cpo.handler = lambda received, request: _answer(ocpi({"id": "LOC1"}))
    correlation_id = str(uuid.uuid4())
    headers = {**emsp.routed(CPO), "X-Correlation-ID": correlation_id}
    async with http.get(hub.endpoint("locations", "sender") + "/LOC1", headers=headers) as r:
        assert r.status == 200
    hops = await _hops(http, hub, correlation_id, 2)
    assert [(h["direction"], h["platform"]) for h in hops] == [("in", emsp_id), ("out", cpo_id)]
    for hop in hops:
        assert (hop["sender"], hop["receiver"], hop["module"]) == ("DE/MSA", "NL/CPA", "locations")
        assert (hop["method"], hop["http_status"], hop["ocpi_status"]) == ("GET", 200, 1000)
        assert hop["latency_ms"] > 0 and hop["request_id"]
    assert hops[0]["path"] == "/ocpi/2.3.0/locations/sender/LOC1"
    assert hops[1]["path"] == "/ocpi/2.3.0/locations/sender/LOC1"  # the fake CPO's own URL
    assert hops[0]["request_id"] != hops[1]["request_id"]
    assert "body" not in hops[0]
    logged = b"".join(f[b"b"] for _, f in await redis.xrange("{hub}:traffic"))
    for token in (emsp.hub_token, cpo.hub_token, *emsp.inbound_tokens, *cpo.inbound_tokens):
        assert token and token.encode() not in logged


async def _answer(response: web.Response) -> web.Response:
    return response


async def test_traffic_filters_and_errors(hub: RunningHub, http: aiohttp.ClientSession, pair):
    _, emsp, cpo_id, _ = pair
    failing = str(uuid.uuid4())
    headers = {**emsp.routed(("FR", "XXX")), "X-Correlation-ID": failing}
    async with http.get(hub.endpoint("locations", "sender"), headers=headers) as response:
        assert (await response.json())["status_code"] == 4001  # unknown receiver
    fine = str(uuid.uuid4())
    headers = {**emsp.routed(CPO), "X-Correlation-ID": fine}
    async with http.get(hub.endpoint("locations", "sender"), headers=headers) as response:
        assert response.status == 200
    await _hops(http, hub, fine, 2)

    errors = await _get(http, hub, "/admin/traffic?status=error&party=de/msa")
    assert [e["hop"]["correlation_id"] for e in errors] == [failing]
    assert errors[0]["hop"]["ocpi_status"] == 4001
    mine = await _get(http, hub, f"/admin/traffic?platform={cpo_id}&module=locations")
    assert [(e["hop"]["direction"], e["hop"]["correlation_id"]) for e in mine] == [("out", fine)]
    assert await _get(http, hub, "/admin/traffic?module=sessions") == []
    newest = await _get(http, hub, "/admin/traffic?limit=1")
    older = await _get(http, hub, f"/admin/traffic?before={newest[0]['id']}")
    assert newest[0]["id"] not in {e["id"] for e in older} and len(older) >= 2
    for query, problem in (("status=maybe", "status"), ("limit=0", "limit"), ("limit=x", "limit")):
        async with http.get(f"{hub.url}/admin/traffic?{query}", headers=hub.admin) as response:
            assert response.status == 400 and problem in (await response.json())["error"]
    async with http.get(f"{hub.url}/admin/traffic/{uuid.uuid4()}", headers=hub.admin) as r:
        assert r.status == 404
    async with http.get(f"{hub.url}/admin/traffic") as response:
        assert response.status == 401


async def test_bodies_of_one_module_kept_when_asked_capped(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    async with (
        hub_factory(traffic_bodies="sessions", traffic_body_max=24) as hub,
        FakePlatform("CPO Co", [(*CPO, "CPO")], MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        session = {"country_code": "NL", "party_id": "CPA", "id": "S1", "kwh": 1.5}
        kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
        url = hub.endpoint("sessions", "receiver") + "/NL/CPA/S1"
        headers = {**cpo.routed(EMSP), "X-Correlation-ID": kept}
        async with http.put(url, json=session, headers=headers) as response:
            assert response.status == 200
        location = {"country_code": "NL", "party_id": "CPA", "id": "L1"}
        url = hub.endpoint("locations", "receiver") + "/NL/CPA/L1"
        headers = {**cpo.routed(EMSP), "X-Correlation-ID": dropped}
        async with http.put(url, json=location, headers=headers) as response:
            assert response.status == 200
        (inbound, _) = await _hops(http, hub, kept, 2)
        assert inbound["body"] == '{"country_code": "NL", "'  # 24 bytes of it
        assert all("body" not in hop for hop in await _hops(http, hub, dropped, 2))
    with pytest.raises(ConfigError, match="TRAFFIC_BODIES"):
        load_settings(environ={"HUB_TRAFFIC_BODIES": "credentials"})


async def _versions_calls(http: aiohttp.ClientSession, hub: RunningHub, n: int) -> dict:
    created = await hub.create_platform(http, "Caller")
    headers = {"Authorization": f"Token {created['token_a']}"}
    for _ in range(n):
        async with http.get(hub.versions_url, headers=headers) as response:
            assert response.status == 200
    return headers


async def test_traffic_log_capped(
    hub_factory: HubFactory, http: aiohttp.ClientSession, redis: aioredis.Redis
):
    async with hub_factory(traffic_max_entries=100) as hub:
        await _versions_calls(http, hub, 150)

        async def written() -> bool:
            return int(await redis.get("{hub}:traffic:hops") or 0) > 0

        await eventually(written)
        (first,) = await redis.xrevrange("{hub}:traffic", count=1)
        await _versions_calls(http, hub, 150)  # another batch at least: older ones go

        async def added() -> bool:
            return (await redis.xrevrange("{hub}:traffic", count=1))[0][0] != first[0]

        await eventually(added)
        hops = await _stream_hops(redis)
        assert 0 < hops <= 100
        assert hops == int(await redis.get("{hub}:traffic:hops"))
        (hop,) = await _get(http, hub, "/admin/traffic?limit=1")
        assert hop["hop"]["module"] == "versions" and hop["hop"]["direction"] == "in"


async def test_traffic_log_retention(
    hub_factory: HubFactory, http: aiohttp.ClientSession, redis: aioredis.Redis
):
    async with hub_factory(traffic_retention=1) as hub:
        headers = await _versions_calls(http, hub, 20)

        async def written() -> bool:
            return await _stream_hops(redis) == 20

        await eventually(written)
        last = (await redis.xrevrange("{hub}:traffic", count=1))[0][0]

        async def expired() -> bool:  # hops older than TRAFFIC_RETENTION go at each write
            async with http.get(hub.versions_url, headers=headers) as response:
                assert response.status == 200
            oldest = (await redis.xrange("{hub}:traffic", count=1))[0][0]
            return _stream_id(oldest) > _stream_id(last)

        await eventually(expired)
        assert await _stream_hops(redis) < 200_000  # not the cap: its default


async def _stream_hops(redis: aioredis.Redis) -> int:
    """Hops in the traffic log: each entry is one batch, ``n`` hops long."""
    return sum(int(fields[b"n"]) for _, fields in await redis.xrange("{hub}:traffic"))


def _stream_id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


async def test_quality_of_a_platform_over_24_hours_and_7_days(
    hub: RunningHub, http: aiohttp.ClientSession, pair
):
    """Availability counts requests sent and still-alive checks; errors by status class."""
    cpo, emsp, cpo_id, emsp_id = pair
    answers = iter([200] * 3 + [500])
    cpo.handler = lambda received, request: _answer(
        ocpi({"id": "L"}) if next(answers) == 200 else ocpi(None, 3000, 500)
    )
    for _ in range(4):
        async with http.get(hub.endpoint("locations", "sender"), headers=emsp.routed(CPO)) as r:
            await r.read()
    await cpo.stop()  # the next request cannot connect: 4003 and a still-alive check
    async with http.get(hub.endpoint("locations", "sender"), headers=emsp.routed(CPO)) as r:
        assert (await r.json())["status_code"] == 4003

    async def counted() -> bool:
        alive = await _get(http, hub, f"/admin/platforms/{cpo_id}/alive")
        day = (await _get(http, hub, f"/admin/platforms/{cpo_id}/quality"))[0]
        return len(alive) == 1 and day["attempts"] == 6

    await eventually(counted)
    day, week = await _get(http, hub, f"/admin/platforms/{cpo_id}/quality")
    assert (day["window"], week["window"]) == ("24h", "7d")
    assert {k: v for k, v in day.items() if k != "window"} == {
        k: v for k, v in week.items() if k != "window"
    }
    assert day["availability"] == round(4 / 6, 4)  # 4 answered of 5 requests and 1 check
    assert day["answers"] == 5 and day["error_rate"] == 0.4
    assert day["by_status_class"] == {
        "success": 0.6,
        "client_error": 0.0,
        "server_error": 0.2,
        "hub_error": 0.2,  # the hub's 4003: nothing answered
        "not_ocpi": 0.0,
    }
    assert 0 < day["p50_ms"] <= day["p95_ms"]
    (check,) = await _get(http, hub, f"/admin/platforms/{cpo_id}/alive")
    assert check["ok"] is False and "cannot connect" in check["detail"]
    assert (await _get(http, hub, f"/admin/platforms/{emsp_id}/quality"))[0]["attempts"] == 0
    async with http.get(f"{hub.url}/admin/platforms/nope/quality", headers=hub.admin) as r:
        assert r.status == 404


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(http: aiohttp.ClientSession, hub: RunningHub, token: str):
    async with http.get(f"{hub.url}/metrics", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        return _samples(await r.text())


async def test_metrics_move_with_traffic(hub_factory: HubFactory, http: aiohttp.ClientSession):
    async with (
        hub_factory(metrics_token="scraper") as hub,
        FakePlatform("CPO Co", [(*CPO, "CPO")], MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], MODULES) as emsp,
    ):
        cpo_id = await register(hub, http, cpo)
        await register(hub, http, emsp)
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Token scraper"}):
            async with http.get(f"{hub.url}/metrics", headers=headers) as response:
                assert response.status == 401
        before = await _scrape(http, hub, "scraper")
        requests = (
            "hub_requests_total",
            frozenset(
                {
                    "module": "locations",
                    "interface": "SENDER",
                    "method": "GET",
                    "ocpi_status": "1000",
                }.items()
            ),
        )
        forwarded = (
            "hub_forward_seconds_count",
            frozenset({"module": "locations", "receiver": cpo_id}.items()),
        )
        for _ in range(7):
            async with http.get(hub.endpoint("locations", "sender"), headers=emsp.routed(CPO)) as r:
                assert r.status == 200
        after = await _scrape(http, hub, hub.admin_token)
        assert after[requests] - before.get(requests, 0) == 7
        assert after[forwarded] - before.get(forwarded, 0) == 7
        connected = frozenset({"role": "CPO", "status": "CONNECTED"}.items())
        assert after[("hub_parties", connected)] == 1
        await cpo.stop()
        async with http.get(hub.endpoint("locations", "sender"), headers=emsp.routed(CPO)) as r:
            assert (await r.json())["status_code"] == 4003
        failed = ("hub_alive_checks_total", frozenset({"outcome": "failed"}.items()))
        offline = ("hub_parties", frozenset({"role": "CPO", "status": "OFFLINE"}.items()))

        async def checked() -> bool:
            now = await _scrape(http, hub, "scraper")
            return now.get(failed, 0) - before.get(failed, 0) == 1 and now[offline] == 1

        await eventually(checked)
        now = await _scrape(http, hub, "scraper")
        unreachable = frozenset(
            {"module": "locations", "receiver": cpo_id, "ocpi_status": "4003"}.items()
        )
        assert now[("hub_forward_failures_total", unreachable)] == 1


async def test_health(hub: RunningHub, http: aiohttp.ClientSession):
    async with http.get(f"{hub.url}/healthz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ok"
    async with http.get(f"{hub.url}/readyz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ready"


# -- the dashboard's sign-in ---------------------------------------------------------------


async def _sign_in(http: aiohttp.ClientSession, hub: RunningHub, token: str):
    return await http.post(
        f"{hub.url}/dashboard/login", data={"token": token}, allow_redirects=False
    )


async def test_dashboard_shows_only_the_form_without_a_session(
    hub: RunningHub, http: aiohttp.ClientSession, pair
):
    for path in ("/dashboard", "/dashboard/parties", "/dashboard/traffic", "/dashboard/broadcasts"):
        async with http.get(f"{hub.url}{path}", allow_redirects=False) as response:
            page = await response.text()
        assert re.search(r'<input[^>]*name="token"[^>]*type="password"', page), path
        assert "NL/CPA" not in page and "CPO Co" not in page and "Sign out" not in page
    async with await _sign_in(http, hub, "wrong") as response:
        assert response.status == 401 and "not the admin token" in await response.text()
        assert "Set-Cookie" not in response.headers


async def test_dashboard_session_cookie_and_logout(hub: RunningHub, redis: aioredis.Redis, pair):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with await _sign_in(browser, hub, hub.admin_token) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/dashboard/parties"
            cookie = response.headers["Set-Cookie"]
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/dashboard", "Max-Age=28800"):
            assert attribute.lower() in cookie.lower()
        assert "secure" not in cookie.lower()  # plain http here
        async with browser.get(f"{hub.url}/dashboard/parties") as response:
            page = await response.text()
        assert response.status == 200 and "NL/CPA" in page and "DE/MSA" in page
        assert "CONNECTED" in page and "CPO Co" in page
        assert await redis.keys("{hub}:dashboard-session:*")
        async with browser.post(f"{hub.url}/dashboard/logout", allow_redirects=False) as response:
            assert response.status == 303
        assert await redis.keys("{hub}:dashboard-session:*") == []
        session = re.search(r"hub_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    async with (
        aiohttp.ClientSession(cookies={"hub_session": session}) as stolen,
        stolen.get(f"{hub.url}/dashboard/parties") as response,
    ):
        assert response.status == 401 and "NL/CPA" not in await response.text()


async def test_dashboard_cookie_secure_behind_https(hub_factory: HubFactory, http):
    async with hub_factory(public_url="https://hub.example.com") as hub:
        hub.url = f"http://127.0.0.1:{hub.settings.port}"  # TLS ends at a proxy in front
        async with await _sign_in(http, hub, hub.admin_token) as response:
            assert response.status == 303
            assert "secure" in response.headers["Set-Cookie"].lower()


async def test_grafana_dashboard_reads_only_metrics_the_hub_exports(
    hub: RunningHub, http: aiohttp.ClientSession
):
    """deploy/grafana-dashboard.json: every metric its queries name is one /metrics has."""
    async with http.get(f"{hub.url}/metrics", headers=hub.admin) as response:
        text = await response.text()
    exported = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        exported |= {name.removesuffix("_total") + s for s in suffixes.get(kind, ("",))}
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {name for query in queries for name in re.findall(r"\bhub_[a-z_]+", query)}
    assert len(queries) >= 10 and named
    assert named - exported == set()
    families = {n for n, _ in re.findall(r"^# TYPE (hub_\S+) (\S+)$", text, re.MULTILINE)}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
    assert {f.removesuffix("_total") for f in families} - shown == set()  # each has a panel


async def test_dashboard_platform_and_broadcast_pages(
    hub: RunningHub, http: aiohttp.ClientSession, pair
):
    cpo, _, cpo_id, _ = pair
    location = {"country_code": "NL", "party_id": "CPA", "id": "LOC9"}
    url = hub.endpoint("locations", "receiver") + "/NL/CPA/LOC9"
    async with http.put(url, json=location, headers=cpo.routed(("NL", "HUB"))) as response:
        broadcast_id = (await response.json())["status_message"].split()[1]

    async def delivered() -> bool:
        async with http.get(f"{hub.url}/admin/broadcasts/{broadcast_id}", headers=hub.admin) as r:
            return r.status == 200 and (await r.json())["finished"] is not None

    await eventually(delivered)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with await _sign_in(browser, hub, hub.admin_token) as response:
            assert response.status == 303
        async with browser.get(f"{hub.url}/dashboard/broadcasts") as response:
            page = await response.text()
        row = re.search(rf"<tr><td>[^<]*</td><td><code>{broadcast_id}</code>.*?</tr>", page, re.S)
        assert row is not None and "NL/CPA" in row.group(0) and "locations" in row.group(0)
        cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row.group(0))
        assert cells[:2] == ["1", "1"]  # one receiver, delivered
        async with browser.get(f"{hub.url}/dashboard/platforms/{cpo_id}") as response:
            page = await response.text()
        assert response.status == 200 and "CPO Co" in page
        for part in ("Quality as a receiver", "Still-alive checks", "Endpoints", "register"):
            assert part in page
        headers = {"X-Dashboard-Refresh": "1"}
        async with browser.get(f"{hub.url}/dashboard/platforms/{cpo_id}", headers=headers) as r:
            live = await r.text()
        assert "Endpoints" in live and "<html" not in live and "<script" not in live
        async with browser.get(f"{hub.url}/dashboard/platforms/nope") as response:
            assert response.status == 404 and "No platform nope" in await response.text()
        async with browser.get(f"{hub.url}/dashboard/traffic?status=maybe") as response:
            page = await response.text()
        assert response.status == 200 and "invalid query" in page and "status" in page


async def test_dashboard_parties_filter_and_sort(hub: RunningHub, pair):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with await _sign_in(browser, hub, hub.admin_token) as response:
            assert response.status == 303

        async def parties(query: str) -> list[str]:
            async with browser.get(f"{hub.url}/dashboard/parties?{query}") as response:
                return re.findall(r'<tr data-party="([^"]+)"', await response.text())

        assert await parties("") == ["DE/MSA", "NL/CPA"]
        assert await parties("sort=party&order=desc") == ["NL/CPA", "DE/MSA"]
        assert await parties("sort=role") == ["NL/CPA", "DE/MSA"]  # CPO before EMSP
        assert await parties("role=EMSP") == ["DE/MSA"]
        assert await parties("status=OFFLINE") == []
        assert await parties("status=CONNECTED&sort=nonsense") == ["DE/MSA", "NL/CPA"]


async def test_metrics_count_broadcasts_deliveries_and_translation_losses(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A Location pushed to the hub, delivered to a 2.3.0 and a 2.2.1 eMSP: the 2.2.1 one
    gets it without the 2.3.0-only ``help_phone`` (a translation loss)."""
    async with (
        FakePlatform("CPO Co", [(*CPO, "CPO")], MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], MODULES) as emsp,
        FakePlatform(
            "Old MSP", [("BE", "OLD", "EMSP")], MODULES, versions=["2.2.1"], version="2.2.1"
        ) as old,
    ):
        for platform in (cpo, emsp, old):
            await register(hub, http, platform)
        before = await _scrape(http, hub, hub.admin_token)
        location = {"country_code": "NL", "party_id": "CPA", "id": "LOC7", "help_phone": "+31"}
        url = hub.endpoint("locations", "receiver") + "/NL/CPA/LOC7"
        async with http.put(url, json=location, headers=cpo.routed(("NL", "HUB"))) as r:
            assert (await r.json())["status_code"] == 1000
        delivered = ("hub_deliveries_total", frozenset({"outcome": "delivered"}.items()))

        async def counted() -> bool:
            now = await _scrape(http, hub, hub.admin_token)
            return now.get(delivered, 0) - before.get(delivered, 0) == 2

        await eventually(counted)
        after = await _scrape(http, hub, hub.admin_token)
        pushed = ("hub_broadcasts_total", frozenset({"module": "locations"}.items()))
        lost = (
            "hub_translation_losses_total",
            frozenset({"module": "locations", "target": "2.2.1"}.items()),
        )
        assert after[pushed] - before.get(pushed, 0) == 1
        assert after[lost] - before.get(lost, 0) >= 1


async def test_made_up_modules_and_odd_ids_stay_bounded(
    hub: RunningHub, http: aiohttp.ClientSession, redis: aioredis.Redis, pair
) -> None:
    """A caller cannot make up metric series (module names from the path become "other")
    nor fill the log with long ids (cut to 256 characters)."""
    _, emsp, _, _ = pair
    for n in range(5):
        async with http.get(f"{hub.url}/ocpi/2.2.1/madeup{n}/sender") as response:
            assert response.status in (401, 404)
    samples = await _scrape(http, hub, hub.admin_token)
    modules = {dict(labels).get("module") for name, labels in samples}
    assert not any(m and m.startswith("madeup") for m in modules)
    assert "other" in modules
    long_id = "c" * 5000
    headers = {**emsp.routed(CPO[:2]), "X-Correlation-ID": long_id}
    async with http.get(hub.endpoint("locations", "sender"), headers=headers) as response:
        assert response.status == 200

    async def logged() -> bool:
        return bool(await _get(http, hub, "/admin/traffic?module=locations"))

    await eventually(logged)
    for entry in await _get(http, hub, "/admin/traffic?limit=10"):
        assert len(entry["hop"]["correlation_id"]) <= 256


async def test_traffic_paging_ids_are_checked(hub: RunningHub, http: aiohttp.ClientSession, pair):
    _, emsp, _, _ = pair
    async with http.get(hub.endpoint("locations", "sender"), headers=emsp.routed(CPO[:2])) as r:
        assert r.status == 200

    async def logged() -> bool:
        return len(await _get(http, hub, "/admin/traffic")) >= 2

    await eventually(logged)
    newest = (await _get(http, hub, "/admin/traffic?limit=1"))[0]["id"]
    entry = newest.split("/")[0]
    assert isinstance(await _get(http, hub, f"/admin/traffic?before={entry}/99"), list)
    for bad in ("garbage", "99999999999999999999-0", f"{entry}/%C2%B2", "1-1/x"):
        async with http.get(f"{hub.url}/admin/traffic?before={bad}", headers=hub.admin) as r:
            assert r.status == 400, bad
            assert "before" in (await r.json())["error"]


async def test_a_sender_the_platform_does_not_hold_is_not_counted_for_that_party(
    hub: RunningHub, http: aiohttp.ClientSession, pair
) -> None:
    """OCPI-from naming another platform's party is refused (2001) and the refused hop is
    not put on that party's account."""
    _, emsp, _, _ = pair
    spoofed = str(uuid.uuid4())
    headers = {**emsp.routed(CPO[:2], sender=CPO[:2]), "X-Correlation-ID": spoofed}
    async with http.get(hub.endpoint("locations", "sender"), headers=headers) as response:
        assert (await response.json())["status_code"] == 2001
    (hop,) = await _hops(http, hub, spoofed, 1)
    assert "sender" not in hop and hop["ocpi_status"] == 2001
    assert all(
        e["hop"]["correlation_id"] != spoofed
        for e in await _get(http, hub, "/admin/traffic?party=NL/CPA")
    )


async def test_a_change_no_replica_confirms_answers_503_and_stands(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """REDIS_WAIT_REPLICAS=1 on a Redis without replicas: the registry change commits, the
    answer is 503 (not confirmed), and every process sees the change."""
    with pytest.raises(ConfigError, match="REDIS_WAIT_REPLICAS"):
        load_settings(
            environ={"HUB_REDIS_MODE": "cluster", "HUB_REDIS_URL": "redis://x:1"},
            redis_wait_replicas=1,
        )
    if REDIS_MODE == "cluster":
        pytest.skip("WAIT needs one master: this run's Redis is a Cluster")
    async with (
        hub_factory(redis_wait_replicas=1, redis_timeout=0.4) as waiting,
        hub_factory() as other,
    ):
        async with http.get(f"{other.url}/admin/platforms", headers=other.admin) as response:
            assert await response.json() == []  # the other process has its snapshot
        async with http.post(
            f"{waiting.url}/admin/platforms", json={"name": "Unconfirmed"}, headers=waiting.admin
        ) as response:
            assert response.status == 503
            assert "replicas confirmed" in (await response.json())["error"]
        for hub in (waiting, other):
            async with http.get(f"{hub.url}/admin/platforms", headers=hub.admin) as response:
                assert [p["name"] for p in await response.json()] == ["Unconfirmed"]


async def test_a_new_admin_token_ends_dashboard_sessions_and_an_empty_one_opens_nothing(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    async with hub_factory() as hub, await _sign_in(http, hub, hub.admin_token) as response:
        assert response.status == 303
        session = re.search(r"hub_session=([^;]+)", response.headers["Set-Cookie"])
    assert session is not None
    cookies = {"hub_session": session.group(1)}
    async with hub_factory(admin_token="a-new-admin-token") as renewed:
        async with http.get(f"{renewed.url}/dashboard/parties", cookies=cookies) as response:
            assert response.status == 401
        async with http.get(f"{renewed.url}/dashboard/logout") as response:
            assert response.status == 405  # a link cannot sign anyone out
    async with hub_factory(admin_token="") as open_hub:
        for header in ("Bearer ", "Bearer"):
            headers = {"Authorization": header}
            async with http.get(f"{open_hub.url}/admin/platforms", headers=headers) as response:
                assert response.status == 401
        async with await _sign_in(http, open_hub, "") as response:
            assert response.status == 401
