"""Where the hub connects (hub/outbound.py): public addresses only, unless OUTBOUND_ALLOW
opens loopback or private ranges. Security, not the spec: the hub holds every platform's
token and follows URLs any platform names.

Every connection these tests make goes to 127.0.0.1. Other addresses appear only where the
guard refuses them before any socket exists; the ``attempts`` tripwire records every socket
the hub creates (below its guard) and refuses any that is not loopback, so a regression fails
the test instead of reaching the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from hub.config import ConfigError, load_settings
from hub.outbound import GuardedConnector, GuardedResolver, RefusedAddress, refused, refused_kind
from tests.conftest import HubFactory
from tests.fakes import ALL_MODULES, FakePlatform, Received, register, until
from tests.support import RunningHub

CPO = [("NL", "CPA", "CPO")]
EMSP = [("DE", "MSA", "EMSP")]

# -- the policy ----------------------------------------------------------------------------

POLICY = [
    # address, what it is (None: public)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: a dual-stack socket reaches 127.0.0.1
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("169.254.169.254", "link-local"),  # AWS, GCP, Azure, OCI metadata
    ("169.254.170.2", "link-local"),  # ECS task metadata
    ("fe80::1", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("fd00:ec2::254", "cloud metadata"),  # AWS metadata over IPv6, inside fc00::/7
    ("168.63.129.16", "cloud metadata"),  # Azure WireServer
    ("100.100.100.200", "cloud metadata"),  # Alibaba Cloud
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("100.64.0.1", "not public"),  # shared address space (carrier-grade NAT)
    ("192.0.2.1", "not public"),  # documentation
    ("240.0.0.1", "not public"),  # reserved
    ("255.255.255.255", "not public"),
    ("0.1.2.3", "not public"),
    ("2001:db8::1", "not public"),
    ("172.32.0.1", None),
    ("8.8.8.8", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
]


@pytest.mark.parametrize(("address", "kind"), POLICY)
def test_what_each_address_is(address: str, kind: str | None) -> None:
    """Nothing open: everything but a public address is refused, named for what it is."""
    assert refused_kind(address) == kind


@pytest.mark.parametrize(("address", "kind"), POLICY)
@pytest.mark.parametrize(
    "allow", [("loopback",), ("private",), ("loopback", "private")], ids="+".join
)
def test_what_each_allow_token_opens(address: str, kind: str | None, allow: tuple[str]) -> None:
    """``loopback`` opens 127.0.0.0/8 and ::1, ``private`` 10/8, 172.16/12, 192.168/16 and
    fc00::/7; link-local, metadata, multicast, unspecified and the rest stay refused."""
    expected = None if kind is None or kind in allow else kind
    assert refused_kind(address, allow) == expected


def test_refusal_names_address_host_and_setting() -> None:
    assert str(RefusedAddress("x", "10.1.2.3", "private")) == (
        "address 10.1.2.3 of host x is private: refused (outbound_allow)"
    )
    assert str(RefusedAddress("169.254.169.254", "169.254.169.254", "link-local")) == (
        "address 169.254.169.254 is link-local: refused"
    )


def test_outbound_allow_setting() -> None:
    """Nothing is open by default (config/hub.toml); HUB_OUTBOUND_ALLOW is a comma list of
    known tokens, anything else stops start-up naming the key."""
    assert load_settings(environ={}).outbound_allow == ()
    environ = {"HUB_OUTBOUND_ALLOW": "loopback, private"}
    assert load_settings(environ=environ).outbound_allow == ("loopback", "private")
    assert load_settings(environ={"HUB_OUTBOUND_ALLOW": ""}).outbound_allow == ()
    with pytest.raises(ConfigError, match="HUB_OUTBOUND_ALLOW"):
        load_settings(environ={"HUB_OUTBOUND_ALLOW": "loopback,link-local"})


# -- the connector -------------------------------------------------------------------------


class Tripwire(GuardedConnector):
    """The hub's connector, recording every socket its guard lets through and refusing, in
    place of connecting, any that is not loopback."""

    def __init__(self, allow: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(allow, **kwargs)
        self.attempts: list[str] = []

    def _socket(self, addr_info: tuple[Any, ...]) -> socket.socket:
        return _tripwire(super()._socket, self.attempts)(addr_info)


def _tripwire(
    guard: Callable[[tuple[Any, ...]], socket.socket], attempts: list[str]
) -> Callable[[tuple[Any, ...]], socket.socket]:
    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        sock = guard(addr_info)  # raises RefusedAddress before any socket exists
        address = str(addr_info[4][0])
        attempts.append(address)
        if not ipaddress.ip_address(address).is_loopback:
            sock.close()
            raise AssertionError(f"the guard let a connection to {address} through")
        return sock

    return factory


def tripwire(hub: RunningHub) -> list[str]:
    """Every address the running hub opens a socket to, from now on (loopback only)."""
    connector = hub.runtime.session.connector
    attempts: list[str] = []
    connector._socket_factory = _tripwire(connector._socket_factory, attempts)
    return attempts


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 that records every request line it receives."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"status_code": 1000})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def _get(connector: GuardedConnector, url: str) -> BaseException | int:
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.get(url) as response:
                return response.status
        except aiohttp.ClientError as exc:
            return exc


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "127.0.0.1.nip-test.invalid"]
)
async def test_loopback_refused_before_connecting(host: str) -> None:
    """IP literals (never resolved by aiohttp), IPv4-mapped literals and names that resolve to
    loopback are all refused without a connection; the server gets nothing."""
    async with listener() as (url, seen):
        port = url.rsplit(":", 1)[1]
        connector = Tripwire(())
        if host.endswith(".invalid"):  # a name whose DNS answer is loopback (rebinding)
            connector._resolver = answering(["127.0.0.1"])
        started = time.monotonic()
        result = await _get(connector, f"http://{host}:{port}/ocpi/versions")
        assert isinstance(result, aiohttp.ClientConnectorError), result
        refusal = refused(result)
        assert refusal is not None and refusal.kind == "loopback"
        assert time.monotonic() - started < 0.5
        assert seen == [] and connector.attempts == []


async def test_loopback_open_with_the_setting() -> None:
    async with listener() as (url, seen):
        connector = Tripwire(("loopback",))
        assert await _get(connector, f"{url}/ocpi/versions") == 200
        assert seen == ["GET /ocpi/versions"] and connector.attempts == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.1:8080/ocpi/versions", "private"),
        ("http://[fe80::1]:80/", "link-local"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
async def test_refused_with_loopback_and_private_open(url: str, kind: str) -> None:
    """Even with both tokens set: refused at once, no socket created."""
    connector = Tripwire(("loopback", "private") if kind != "private" else ("loopback",))
    started = time.monotonic()
    result = await _get(connector, url)
    assert time.monotonic() - started < 0.5
    refusal = refused(result) if isinstance(result, BaseException) else None
    assert refusal is not None and refusal.kind == kind, result
    assert connector.attempts == []


async def test_only_http_and_https() -> None:
    async with listener() as (url, seen):
        result = await _get(Tripwire(("loopback",)), url.replace("http:", "ws:"))
        assert isinstance(result, aiohttp.NonHttpUrlClientError)
        assert seen == []


class _Dns(AbstractResolver):
    """A DNS that answers what the test says, one answer per question."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.answers.pop(0)
        ]

    async def close(self) -> None:
        pass


def answering(*answers: list[str]) -> GuardedResolver:
    """The hub's resolver (nothing open) over that DNS."""
    resolver = GuardedResolver(())
    resolver.inner = _Dns(*answers)  # type: ignore[assignment]
    return resolver


async def test_every_answer_is_screened() -> None:
    """The same name, asked twice, is judged on each answer: a rebind to a private address
    after a public one is refused; refused addresses are dropped from a mixed answer."""
    resolver = answering(["8.8.8.8"], ["10.0.0.7"], ["127.0.0.1", "8.8.4.4"])
    assert [r["host"] for r in await resolver.resolve("platform.test", 443)] == ["8.8.8.8"]
    with pytest.raises(RefusedAddress, match=r"10\.0\.0\.7 of host platform\.test is private"):
        await resolver.resolve("platform.test", 443)
    assert [r["host"] for r in await resolver.resolve("platform.test", 443)] == ["8.8.4.4"]


# -- end to end ----------------------------------------------------------------------------


async def test_registration_to_loopback_refused(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A hub with nothing open answers 3001 naming the refusal, and the platform's versions
    endpoint receives nothing; token A stays valid."""
    async with hub_factory(outbound_allow=()) as hub, FakePlatform("CPO Co", CPO) as cpo:
        attempts = tripwire(hub)
        created = await hub.create_platform(http, "CPO Co")
        for url in (cpo.url, cpo.url.replace("127.0.0.1", "localhost")):
            cpo.url = url
            answer = await cpo.register(http, hub.versions_url, created["token_a"])
            assert answer["status_code"] == 3001, answer
            message = answer["status_message"]
            assert f"GET {url}/ocpi/versions failed: address 127.0.0.1" in message
            assert "is loopback: refused (outbound_allow)" in message
        assert cpo.received == [] and attempts == []


async def test_connect_to_metadata_refused(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    """The hub as Sender, pointed by an operator (or a forged request) at cloud metadata or
    the private network: 3001 at once, no socket created."""
    attempts = tripwire(hub)
    created = await hub.create_platform(http, "Elsewhere")
    for versions_url, kind in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/ocpi/versions", "private"),
    ]:
        started = time.monotonic()
        async with http.post(
            f"{hub.url}/admin/platforms/{created['id']}/connect",
            json={"versions_url": versions_url, "token_a": "a"},
            headers=hub.admin,
        ) as response:
            body = await response.json()
        assert response.status == 502 and body["status_code"] == 3001
        assert f"is {kind}: refused" in body["error"]
        assert time.monotonic() - started < 1
    assert attempts == []


async def test_routed_request_to_refused_address(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A receiver whose endpoint the hub may not connect to: 4003 naming the refusal, nothing
    arrives, and no still-alive check runs (a policy refusal is not evidence of an outage).
    The platforms register through a hub that opens loopback; the request goes through a
    second process on the same Redis that opens nothing."""
    async with (
        hub_factory() as opened,
        hub_factory(outbound_allow=()) as closed,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
        FakePlatform("MSP Co", EMSP, ALL_MODULES) as emsp,
    ):
        await register(opened, http, cpo)
        await register(opened, http, emsp)
        attempts = tripwire(closed)
        headers = emsp.routed(("NL", "CPA"))
        url = f"{closed.url}/ocpi/2.3.0/locations/sender/NL/CPA/LOC1"
        async with http.get(url, headers=headers) as response:
            body = await response.json()
        assert response.status == 200 and body["status_code"] == 4003
        assert "127.0.0.1 is loopback: refused" in body["status_message"]
        # A check would start before the answer (``on_unreachable``): it would still be
        # running, or have marked the platform OFFLINE already (refused at once).
        assert closed.runtime._alive._checking == set()
        async with http.get(f"{opened.url}/admin/parties", headers=opened.admin) as response:
            statuses = {p["party_id"]: p["status"] for p in await response.json()}
        assert statuses["CPA"] == "CONNECTED"
        assert cpo.calls("/ocpi/2.3.0/locations") == []
        assert attempts == []


async def test_still_alive_check_to_refused_address(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A still-alive check the guard refuses fails like an unreachable platform: OFFLINE, the
    cause naming the refusal; the platform receives nothing."""
    async with (
        hub_factory() as opened,
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
    ):
        await register(opened, http, cpo)
        before = len(cpo.received)
        async with hub_factory(outbound_allow=(), alive_interval=1.0) as closed:
            history_url = f"{closed.url}/admin/parties/NL/CPA/CPO/history"

            async def history() -> list[dict[str, Any]]:
                async with http.get(history_url, headers=closed.admin) as response:
                    return await response.json()

            deadline = time.monotonic() + 8
            while (await history())[0]["status"] != "OFFLINE":
                assert time.monotonic() < deadline, "no still-alive check"
                await asyncio.sleep(0.1)
            cause = (await history())[0]["cause"]
            assert cause.startswith("still-alive check failed: GET ")
            assert "127.0.0.1 is loopback: refused" in cause
        assert [r for r in cpo.received[before:] if r.path == "/ocpi/versions"] == []


async def test_configuration_calls_follow_no_redirect(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """A versions endpoint answering 302 to another port (or 307 on its own origin) is not
    followed: 3001 naming the redirect, and the redirect's target receives nothing."""
    async with FakePlatform("CPO Co", CPO) as cpo, listener() as (elsewhere, seen):
        created = await hub.create_platform(http, "CPO Co")
        for status, target in [(302, f"{elsewhere}/x"), (307, f"{cpo.url}/ocpi/versions2")]:

            async def redirect(received: Received, request: web.Request) -> web.StreamResponse:
                return web.Response(status=status, headers={"Location": target})  # noqa: B023

            cpo.versions_handler = redirect
            answer = await cpo.register(http, hub.versions_url, created["token_a"])
            assert answer["status_code"] == 3001, answer
            assert f"answered HTTP {status}, a redirect to '{target}'" in answer["status_message"]
        assert seen == []
        assert [r.path for r in cpo.received] == ["/ocpi/versions", "/ocpi/versions"]


async def test_connection_failures_say_the_same(
    hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """No port-scanning oracle: a closed port, a port that closes at once, one that speaks
    another protocol and one that never answers all give the same message."""

    async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def speaks_ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the hub gives up

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (closes, speaks_ssh, hangs)]
    ports = [closed_port] + [s.sockets[0].getsockname()[1] for s in servers]
    try:
        async with hub_factory(forward_timeout=1.0) as hub, FakePlatform("CPO Co", CPO) as cpo:
            created = await hub.create_platform(http, "CPO Co")
            messages = []
            for port in ports:
                cpo.url = f"http://127.0.0.1:{port}"
                answer = await cpo.register(http, hub.versions_url, created["token_a"])
                assert answer["status_code"] == 3001
                messages.append(answer["status_message"].replace(str(port), "PORT"))
    finally:
        for server in servers:
            server.close()
    assert messages == ["GET http://127.0.0.1:PORT/ocpi/versions failed: cannot connect"] * 4


async def test_forged_host_never_redirects(hub: RunningHub, http: aiohttp.ClientSession) -> None:
    """A stray slash used to answer 307 to ``http://{Host}/...``: with a forged Host, an open
    redirect. It answers 404 with an envelope, whatever the Host."""
    for path in ("/ocpi/2.3.0/credentials//", "/ocpi/versions/", "/admin/platforms/"):
        async with http.get(
            f"{hub.url}{path}", headers={"Host": "evil.example"}, allow_redirects=False
        ) as response:
            assert response.status == 404, path
            assert "Location" not in response.headers
            body = await response.json()
        if path.startswith("/ocpi"):
            assert body["status_code"] == 2000 and "no such endpoint" in body["status_message"]
        else:
            assert "no such endpoint" in body["error"]


async def test_registered_platform_keeps_working(
    hub: RunningHub, http: aiohttp.ClientSession
) -> None:
    """The suite's hubs open loopback (tests/support.py): registration and routing work as
    before, every socket to 127.0.0.1."""
    attempts = tripwire(hub)
    async with (
        FakePlatform("CPO Co", CPO, ALL_MODULES) as cpo,
        FakePlatform("MSP Co", EMSP, ALL_MODULES) as emsp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)
        url = f"{hub.url}/ocpi/2.3.0/locations/sender/NL/CPA/LOC1"
        async with http.get(url, headers=emsp.routed(("NL", "CPA"))) as response:
            assert (await response.json())["status_code"] == 1000
        await until(lambda: bool(cpo.calls("/ocpi/2.3.0/locations")))
    assert attempts and set(attempts) == {"127.0.0.1"}
