"""Fake OCPI platforms: small aiohttp servers on 127.0.0.1 that record what they receive.

A fake platform offers versions, 2.3.0 details, credentials and the module endpoints it is
told to, checks the Authorization header of every request, and answers module calls through a
replaceable handler. Tests assert on ``received``: what actually arrived over HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support import RunningHub, token_header

FUNCTIONAL = (
    "cdrs", "chargingprofiles", "commands", "locations", "sessions",
    "tariffs", "tokens", "bookings", "payments",
)  # fmt: skip
ALL_MODULES = (
    *((m, r) for m in FUNCTIONAL for r in ("SENDER", "RECEIVER")),
    ("hubclientinfo", "RECEIVER"),
)
DEFAULT_MODULES = (
    ("locations", "SENDER"),
    ("locations", "RECEIVER"),
    ("tokens", "SENDER"),
    ("tokens", "RECEIVER"),
    ("hubclientinfo", "RECEIVER"),
)


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    token: str | None  # the credentials token, decoded as the platform expects it
    raw_path: str = ""  # the path as sent, percent-encoding kept

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Received, web.Request], Awaitable[web.StreamResponse]]


def envelope(data: Any = None, status_code: int = 1000, message: str | None = None) -> dict:
    body: dict[str, Any] = {"status_code": status_code, "timestamp": "2026-01-01T00:00:00Z"}
    if data is not None:
        body["data"] = data
    if message is not None:
        body["status_message"] = message
    return body


def ocpi(data: Any = None, status_code: int = 1000, http_status: int = 200, **headers: str):
    return web.json_response(envelope(data, status_code), status=http_status, headers=headers)


@dataclass(eq=False)
class FakePlatform:
    name: str
    parties: list[tuple[str, str, str]]  # (country_code, party_id, role)
    modules: Iterable[tuple[str, str]] = DEFAULT_MODULES
    raw_token: bool = False  # expects and sends the token unencoded (legacy peer)
    lists_credentials: bool = True  # whether its details list a credentials endpoint
    versions: list[str] = field(default_factory=lambda: ["2.2.1", "2.3.0"])
    version: str = "2.3.0"  # the version it registers with the hub in (and serves details of)
    received: list[Received] = field(default_factory=list)
    inbound_tokens: set[str] = field(default_factory=set)  # tokens the hub may call us with
    hub_token: str | None = None  # the token we call the hub with
    hub_credentials: dict[str, Any] | None = None
    handler: Handler | None = None
    versions_handler: Handler | None = None  # replaces the versions endpoint when set
    credentials_handler: Handler | None = None  # replaces POST credentials when set
    client_info_handler: Handler | None = None  # answers ClientInfo pushes when set
    host: str = "127.0.0.1"  # the host its URLs name (it listens on 127.0.0.1 whatever it is)

    def __post_init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FakePlatform:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def __aenter__(self) -> FakePlatform:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def versions_url(self) -> str:
        return f"{self.url}/ocpi/versions"

    def endpoint_url(self, module: str, role: str) -> str:
        return f"{self.url}/ocpi/{self.version}/{module}/{role.lower()}"

    def roles(self) -> list[dict[str, Any]]:
        return [
            {
                "role": role,
                "party_id": party_id,
                "country_code": country_code,
                "business_details": {"name": f"{self.name} {party_id}"},
            }
            for country_code, party_id, role in self.parties
        ]

    def credentials(self, token: str) -> dict[str, Any]:
        return {"token": token, "url": self.versions_url, "roles": self.roles()}

    def calls(self, path_prefix: str | None = None, method: str | None = None) -> list[Received]:
        """What arrived under ``path_prefix`` (its version's tree unless given), ClientInfo
        pushes left out (see client_infos)."""
        prefix = path_prefix or f"/ocpi/{self.version}/"
        return [
            r
            for r in self.received
            if r.path.startswith(prefix)
            and (method is None or r.method == method)
            and not r.path.startswith(self.CLIENT_INFO)
        ]

    @property
    def CLIENT_INFO(self) -> str:
        return f"/ocpi/{self.version}/hubclientinfo/"

    def client_infos(self) -> list[dict[str, Any]]:
        """The ClientInfo objects pushed to us, in arrival order."""
        return [r.json() for r in self.received if r.path.startswith(self.CLIENT_INFO)]

    def status_of(self, country_code: str, party_id: str) -> str | None:
        """The latest status pushed for a party."""
        found = [
            i["status"]
            for i in self.client_infos()
            if (i["country_code"], i["party_id"]) == (country_code, party_id)
        ]
        return found[-1] if found else None

    # -- serving ---------------------------------------------------------------------------

    def _token(self, header: str | None) -> str | None:
        if not header or not header.startswith("Token "):
            return None
        value = header[len("Token ") :]
        if self.raw_token:
            return value
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            token=self._token(request.headers.get("Authorization")),
            raw_path=request.raw_path.split("?")[0],
        )
        self.received.append(received)
        if received.token not in self.inbound_tokens:
            return web.json_response(envelope(None, 2000, "unknown token"), status=401)
        path = request.path
        if path == "/ocpi/versions":
            if self.versions_handler is not None:
                return await self.versions_handler(received, request)
            return ocpi([{"version": v, "url": f"{self.url}/ocpi/{v}"} for v in self.versions])
        if path == f"/ocpi/{self.version}":
            endpoints = [
                {"identifier": m, "role": r, "url": self.endpoint_url(m, r)}
                for m, r in self.modules
            ]
            if self.lists_credentials:
                credentials = {"identifier": "credentials", "role": "SENDER"}
                endpoints.insert(0, {**credentials, "url": self.credentials_url})
            return ocpi({"version": self.version, "endpoints": endpoints})
        if path == self.credentials_url.removeprefix(self.url):
            return await self._credentials(received, request)
        if path.startswith(self.CLIENT_INFO):
            if self.client_info_handler is not None:
                return await self.client_info_handler(received, request)
            return ocpi(None)
        if self.handler is not None:
            return await self.handler(received, request)
        return ocpi(None)

    @property
    def credentials_url(self) -> str:
        return f"{self.url}/ocpi/{self.version}/credentials"

    async def _credentials(self, received: Received, request: web.Request) -> web.StreamResponse:
        """We are the Receiver: the hub registers with us using the token A we issued."""
        if received.method == "DELETE":
            self.inbound_tokens.discard(received.token or "")
            self.hub_token = None
            return ocpi(None)
        if self.credentials_handler is not None and received.method in ("POST", "PUT"):
            return await self.credentials_handler(received, request)
        if received.method != "POST":
            return ocpi(None, 2000, 405)
        body = received.json()
        self.hub_token = body["token"]
        self.hub_credentials = body
        # A careful Receiver checks the hub's versions with the token it was just given.
        async with (
            aiohttp.ClientSession() as http,
            http.get(body["url"], headers=self.hub_headers()) as response,
        ):
            if response.status != 200:
                return ocpi(None, 3001)
        token_c = "fake-c-" + secrets.token_hex(16)
        self.inbound_tokens.discard(received.token or "")
        self.inbound_tokens.add(token_c)
        return ocpi(self.credentials(token_c))

    # -- calling the hub -------------------------------------------------------------------

    def hub_headers(self, token: str | None = None) -> dict[str, str]:
        return token_header(token or self.hub_token or "", self.raw_token)

    def routed(self, to: tuple[str, str] | None, sender: tuple[str, str] | None = None) -> dict:
        """Headers of a functional-module request from one of our parties (the first unless
        ``sender``), to ``to`` (None: an open routing request)."""
        country_code, party_id = sender or self.parties[0][:2]
        out = {
            **self.hub_headers(),
            "OCPI-from-country-code": country_code,
            "OCPI-from-party-id": party_id,
        }
        if to is not None:
            out.update({"OCPI-to-country-code": to[0], "OCPI-to-party-id": to[1]})
        return out

    def issue_token_a(self) -> str:
        """The token A this platform hands the hub operator for a hub-as-Sender connect."""
        token = "fake-a-" + secrets.token_hex(16)
        self.inbound_tokens.add(token)
        return token

    async def register(self, http: aiohttp.ClientSession, versions_url: str, token_a: str) -> Any:
        """We are the Sender: the registration flow of credentials.asciidoc, against the hub."""
        async with http.get(versions_url, headers=token_header(token_a)) as response:
            assert response.status == 200, await response.text()
            versions = (await response.json())["data"]
        details_url = next(v["url"] for v in versions if v["version"] == self.version)
        async with http.get(details_url, headers=token_header(token_a)) as response:
            endpoints = (await response.json())["data"]["endpoints"]
        credentials_url = next(e["url"] for e in endpoints if e["identifier"] == "credentials")
        token_b = "fake-b-" + secrets.token_hex(16)
        self.inbound_tokens.add(token_b)
        async with http.post(
            credentials_url, json=self.credentials(token_b), headers=token_header(token_a)
        ) as response:
            answer = await response.json()
            if response.status == 200 and answer["status_code"] == 1000:
                self.hub_token = answer["data"]["token"]
                self.hub_credentials = answer["data"]
            else:
                self.inbound_tokens.discard(token_b)
            return {"http_status": response.status, **answer}


async def register(hub: RunningHub, http: aiohttp.ClientSession, platform: FakePlatform) -> str:
    """Onboard ``platform`` with the hub as credentials Receiver; returns its platform id."""
    created = await hub.create_platform(http, platform.name)
    answer = await platform.register(http, hub.versions_url, created["token_a"])
    assert answer["status_code"] == 1000, answer
    return created["id"]


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for something the hub does in the background; bounded in time."""
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
