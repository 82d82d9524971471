"""Random requests at one running hub: whatever a client sends, the hub answers it sanely.

One hub process (``python -m hub serve`` with its embedded Redis) serves the whole module,
with fake platforms behind it in a thread of their own: a CPO, an eMSP, a third platform the
fuzzer may suspend or unregister, and a platform created but never registered (token A).
Hypothesis draws the method, path, query, headers (routing headers, Authorization in every
form incl. the platforms' real tokens, message ids; long, non-ASCII, control characters) and
body (invalid JSON, deep nesting, huge numbers, wrong types, valid-looking OCPI objects), and
each request goes over a raw socket (tests/rawhttp.py), byte for byte. After every request:

- no HTTP 5xx at all (Redis is up); on /ocpi paths every answer of the hub is an envelope;
- no traceback text in any answer;
- a request the hub refused (HTTP >= 400, or an envelope status other than 1000) never
  reached a platform (each request carries a unique X-Correlation-ID marker; the calls a
  registration makes to the URL it names are the handshake, not a request passed on);
- a known-good routed GET (eMSP -> CPO) still answers 1000;
- and at the end, the hub has logged no error (background work included).

A fifth of the requests also get an odd answer from the platforms (not OCPI, broken Link or
Location, huge totals, deep nesting, compressed, 5xx): the hub must cope with those too.

``make test`` runs HUB_FUZZ_EXAMPLES (default 150) derandomized cases; ``make fuzz`` runs
10,000 random ones and prints "fuzz: N cases, M distinct answers".
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gzip
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import (
    ALL_MODULES,
    DEFAULT_MODULES,
    FUNCTIONAL,
    FakePlatform,
    Received,
    register,
)
from tests.rawhttp import NoAnswer, RawAnswer, raw_request
from tests.support import HubClient
from tests.test_serve import HubProcess

EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "150"))
RANDOM = bool(os.environ.get("HUB_FUZZ_EXAMPLES"))  # make fuzz: random; make test: fixed
ADMIN_TOKEN = "fuzz-admin-" + "k" * 32
CPO, EMSP, VICTIM, HUB = ("NL", "CPA"), ("DE", "MSA"), ("BE", "VIC"), ("NL", "HUB")


def b64(value: bytes | str) -> str:
    raw = value if isinstance(value, bytes) else value.encode()
    return base64.b64encode(raw).decode()


def nested(levels: int, array: bool = False) -> str:
    if array:
        return "[" * levels + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


# -- the world: one hub process and the platforms behind it ----------------------------------


@dataclass
class World:
    hub: HubProcess
    loop: asyncio.AbstractEventLoop
    cpo: FakePlatform
    emsp: FakePlatform
    victim: FakePlatform
    victim_id: str
    token_a: str  # of a platform created but never registered
    callback_id: str  # a hub callback the CPO may post a result to
    cases: int = 0
    # (HTTP status, envelope status_code; "json" for admin JSON, "http" for the HTTP
    # server's own refusal of a request it could not parse) -> how often
    answers: collections.Counter[tuple[int, int | str]] = field(default_factory=collections.Counter)
    # correlation marker of each request the hub refused -> what it was and what it answered
    refused: dict[str, str] = field(default_factory=dict)
    # what reached the platforms, by correlation marker; how much of each one's list is read
    arrivals: dict[str, list[str]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)  # by marker, for this case only

    async def reply(self, received: Received, request: web.Request) -> web.StreamResponse:
        """The platforms' module endpoints: the case's planned answer, or 1000."""
        found = MARKER.match(received.headers.get("x-correlation-id", ""))
        planned = self.replies.get(found.group()) if found else None
        if planned is None:
            return web.Response(body=OK, content_type="application/json")
        status, headers, body = planned
        headers = [(k, self.url_of(v)) for k, v in headers]
        return web.Response(status=status, headers=headers, body=body or None)

    @property
    def url(self) -> str:
        return self.hub.url

    def url_of(self, template: str) -> str:
        return template.format(hub=self.url, cpo=self.cpo.url, emsp=self.emsp.url)

    @property
    def platforms(self) -> tuple[FakePlatform, ...]:
        return (self.cpo, self.emsp, self.victim)

    def hub_errors(self) -> str:
        """What the hub logged at error level: the cause of a 500, with its trace."""
        lines = [
            f"{line.get('event')}: {line.get('exception', '')}"[-3000:]
            for line in self.hub.log_lines()
            if line.get("level") in ("error", "critical")
        ]
        return "\n".join(lines[-3:])


def _thread_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-platforms", daemon=True)
    thread.start()
    return loop, thread


async def _start(platforms: list[FakePlatform], hub: HubProcess) -> dict[str, str]:
    """Start and register the platforms (their ids by name); then a platform's token A and
    a hub callback id handed to the CPO."""
    client = HubClient(hub.url, ADMIN_TOKEN)
    cpo, emsp, _ = platforms
    ids = {}
    async with aiohttp.ClientSession() as http:
        for platform in platforms:
            await platform.start()
            ids[platform.name] = await register(client, http, platform)  # type: ignore[arg-type]
        created = await client.create_platform(http, "Fuzz newcomer")
        body = {"response_url": emsp.url + "/results", "location_id": "LOC1"}
        async with http.post(
            client.endpoint("commands", "RECEIVER") + "/START_SESSION",
            json=body,
            headers=emsp.routed(CPO),
        ) as response:
            assert (await response.json())["status_code"] == 1000
    sent = cpo.calls("/ocpi/2.3.0/commands")[-1].json()
    ids["token_a"] = created["token_a"]
    ids["callback"] = sent["response_url"].rsplit("/", 1)[1]
    return ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    hub = HubProcess(
        data,
        HUB_ADMIN_TOKEN=ADMIN_TOKEN,
        HUB_FORWARD_TIMEOUT="2",
        HUB_LOG_LEVEL="WARNING",
    ).start()
    loop, thread = _thread_loop()
    platforms = [
        FakePlatform("Fuzz CPO", [(*CPO, "CPO")], ALL_MODULES),
        FakePlatform("Fuzz MSP", [(*EMSP, "EMSP")], ALL_MODULES),
        FakePlatform("Fuzz VIC", [(*VICTIM, "CPO")], DEFAULT_MODULES),
    ]
    try:
        ids = asyncio.run_coroutine_threadsafe(_start(platforms, hub), loop).result(60)
        cpo, emsp, victim = platforms
        world = World(
            hub, loop, cpo, emsp, victim, ids[victim.name], ids["token_a"], ids["callback"]
        )
        for platform in platforms:
            platform.handler = world.reply
        yield world
    finally:
        for platform in platforms:
            asyncio.run_coroutine_threadsafe(platform.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        hub.stop()


# -- what a request may look like --------------------------------------------------------------


@dataclass
class Case:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    marker: bytes  # X-Correlation-ID prefix, filled in when the case runs
    answer: Reply | None = None  # what the platforms answer this request, if not the usual

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How Hypothesis shows a failing case: bounded, a 4 MB body is not printed."""
        printer.text(self.describe())

    def describe(self) -> str:
        headers = [(k, v[:200]) for k, v in self.headers]
        text = f"{self.method!r} {self.target[:300]!r}\n{headers}\nbody {self.body[:300]!r}"
        if self.answer is not None:
            status, answer_headers, body = self.answer
            text += f"\nplatforms answer {status} {answer_headers} {body[:300]!r}"
        return text


Reply = tuple[int, list[tuple[str, str]], bytes]  # HTTP status, headers, body
OK = b'{"status_code":1000,"timestamp":"2026-01-01T00:00:00Z"}'
PAGE = b'{"status_code":1000,"timestamp":"2026-01-01T00:00:00Z","data":[{"id":"L1"}]}'
REPLIES: list[Reply] = [  # {cpo}: the CPO's base URL
    (200, [("Link", '<{cpo}/ocpi/2.3.0/locations/sender?offset=1>; rel="next"')], PAGE),
    (200, [("Link", '<http://a:99999/next>; rel="next"')], PAGE),
    (200, [("Link", '<http://evil.example/next>; rel="next"')], PAGE),
    (200, [("Link", "garbage"), ("X-Total-Count", "x")], PAGE),
    (200, [("X-Total-Count", "9" * 5000), ("X-Limit", "-1")], PAGE),
    (201, [("Location", "{cpo}/ocpi/2.3.0/cdrs/receiver/1")], OK),
    (201, [("Location", "http://[::1")], OK),
    (201, [("Location", "../../credentials")], OK),
    (200, [("X-Request-ID", "theirs"), ("OCPI-from-party-id", "ZZZ")], OK),
    (200, [("Content-Type", "text/html")], b"<html>not OCPI</html>"),
    (200, [], b""),
    (200, [], b"[1, 2]"),
    (200, [], b'{"status_code": "1000"}'),
    (200, [], b'{"status_code":1000,"data":[' + nested(3000).encode() + b"]}"),
    (200, [], b'{"status_code":1000,"data":[' + b"9" * 5000 + b"]}"),
    (200, [], b'{"status_code":1000,"data":"' + b"x" * 300_000 + b'"}'),  # streamed
    (200, [], b"x" * 300_000),  # streamed, not JSON
    (200, [("Content-Encoding", "gzip")], gzip.compress(OK)),
    (400, [], b'{"status_code":2001,"status_message":"theirs"}'),
    (404, [], b"not found"),
    (500, [], b"internal error"),
    (502, [], b'{"status_code":3000,"timestamp":"2026-01-01T00:00:00Z"}'),
    (204, [], b""),
    (302, [("Location", "http://evil.example/")], b""),
]


HUGE = ["9" * 4301, "-" + "9" * 5000, "1" + "0" * 400, "1e999", "-1e999", "1.5e-400"]
FRAGMENTS = [
    *HUGE,
    nested(974),
    nested(975),
    nested(3000),
    nested(3000, array=True),
    "NaN",
    "Infinity",
    '"\\ud800"',
    '"\\u0000"',
    "null",
    "true",
    "[]",
    "{}",
    '"' + "x" * 70_000 + '"',
]
INVALID_BODIES = [
    b"{",
    b"}",
    b"{'a': 1}",
    b'{"a":1,}',
    b"[1,]",
    b"nul",
    b"\xff\xfe\x00",
    b"\xef\xbb\xbf{}",  # BOM
    b"{}garbage",
    b'{"a":"\xff"}',  # not UTF-8
    b'{"a":"\\ud800"}',
    b"\x00",
    b" ",
    b'{"a":' * 100_000,  # unclosed, deep
]
DATES = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00",
    "9999-12-31T23:59:59+23:59",
    "0001-01-01T00:00:00-23:59",
    "2024-02-30T00:00:00Z",
    "yesterday",
    "",
    "2024-01-01T00:00:00Z+01:00",
]
SEGMENTS = [
    "LOC1", "TOK1", "S1", "CDR1", "START_SESSION", "STOP_SESSION", "RESERVE_NOW",
    "NL", "CPA", "DE", "MSA", "BE", "VIC", "HUB", "nl", "cpa", "authorize",
    ".", "..", "%2e%2e", "%2E", ".%2e", "%00", "%ff", "%zz", "%", "%2F", "%20",
    "%C3%A9t%C3%A9", "%E9", "%C3%A9t%C3%A9", "été", "x" * 5000, "", "~", "@", ";a=b", "*",
]  # fmt: skip
MODULES = [
    *FUNCTIONAL,
    *FUNCTIONAL,
    "hubclientinfo", "credentials", "versions", "Booking", "LOCATIONS", "nltnm-tokens",
    "x" * 300, "%00", "été", "",
]  # fmt: skip
INTERFACES = ["sender", "receiver", "sender", "receiver", "SENDER", "Receiver", "both", ""]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ODD_METHODS = ["HEAD", "OPTIONS", "TRACE", "CONNECT", "FOO", "get", "PUT\x01", "G\xc3\xa9T"]
QUERY_KEYS = ["offset", "limit", "date_from", "date_to", "response_url", "walk", "x", ""]
NUMBERS = ["0", "1", "10", "-1", "1.5", "99999999999999999999", "9" * 5000, "0" * 5000 + "1", ""]
PARTIES = [
    CPO, EMSP, VICTIM, HUB, ("FR", "XYZ"), ("nl", "cpa"), ("de", "msa"),
    ("N", "CPAA"), ("NL", "C P"), ("ÉT", "MSA"), ("\x01L", "CPA"), ("", ""),
    (" NL ", " CPA "), ("NL", "CPA\x7f"), ("NL", "x" * 9000),
]  # fmt: skip
URLS = [  # {hub}, {cpo}, {emsp}: the running hub's and the platforms' base URLs
    "{emsp}/results",
    "{cpo}/results",
    "{hub}/ocpi/versions",
    "{hub}/healthz",
    "http://127.0.0.1:9/versions",
    "http://a:99999/",
    "http://a:-1/",
    "http://[::1",
    "http://[zz]/",
    "http://xn--/",
    "http://é.example/",
    "ftp://x/",
    "file:///etc/passwd",
    "/relative",
    "",
    "x" * 3000,
]
ODD_VALUES = [
    "",
    "é",
    "\xe9",  # sent as the Latin-1 byte
    "\x01",
    "\x7f",
    "\t",
    "x" * 8000,
    "a b",
    "ü" * 100,
]


def _encode(value: str, latin1: bool) -> bytes:
    """Header text as bytes: UTF-8, or each character as one byte where it fits."""
    if latin1 and all(ord(c) < 256 for c in value):
        return value.encode("latin-1")
    return value.encode("utf-8")


def _authorizations(world: World) -> list[str | None]:
    tokens = [world.cpo.hub_token, world.emsp.hub_token, world.victim.hub_token]
    valid = [f"Token {b64(t)}" for t in tokens if t] * 4  # mostly authenticated
    return [
        *valid,
        *(f"Token {t}" for t in tokens if t),  # raw (legacy) form
        f"token {b64(world.emsp.hub_token or '')}",
        f"Token   {b64(world.cpo.hub_token or '')}  ",
        f"Token {b64(world.token_a)}",
        f"Token {b64(world.token_a)}",
        f"Bearer {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN}x",
        "Bearer été",
        "Bearer \xe9",
        "Token",
        "Token ",
        "Basic YTpi",
        "Token " + b64(b"\xff\xfe\xfd"),  # not UTF-8
        "Token " + b64("tok\x01en"),
        "Token \x01",
        "Token é",
        "Token " + "A" * 20000,
        "Token " + b64("x" * 15000),
        "",
        None,
    ]


def _objects(world: World, fragment: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Valid-looking OCPI and admin objects, some with one field spliced in raw."""
    urls = [world.url_of(u) for u in URLS]
    text = st.sampled_from(["LOC1", "S1", "TOK1", "", "é", "x" * 1000, "\x00"])
    url = st.sampled_from(urls)
    value = st.one_of(text, url, st.sampled_from(DATES), st.integers(), st.none(), st.booleans())
    token = st.fixed_dictionaries(
        {
            "country_code": st.sampled_from(["DE", "NL", "d", 5]),
            "party_id": st.sampled_from(["MSA", "CPA", "XYZ", "", None, 7]),
            "uid": text,
            "type": st.sampled_from(["RFID", "APP_USER", "x"]),
            "contract_id": text,
        }
    )
    role = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["CPO", "EMSP", "OTHER", "HUB", "x"]),
            "party_id": st.sampled_from(["XYZ", "CPA", "MSA", "HUB", "Q", ""]),
            "country_code": st.sampled_from(["FR", "NL", "DE", "x"]),
            "business_details": st.fixed_dictionaries({"name": text}),
        }
    )
    objects = st.one_of(
        st.fixed_dictionaries(  # commands
            {"response_url": url, "location_id": text},
            optional={
                "token": token,
                "session_id": text,
                "expiry_date": st.sampled_from(DATES),
                "reservation_id": text,
                "evse_uid": text,
            },
        ),
        st.fixed_dictionaries(  # CDR / session with the token open routing reads
            {"id": text, "country_code": st.just("NL"), "party_id": st.just("CPA")},
            optional={"cdr_token": token, "last_updated": st.sampled_from(DATES)},
        ),
        st.fixed_dictionaries(  # Credentials
            {"token": st.sampled_from(["tok-b", "", "é" * 10, "x" * 300]), "url": url},
            optional={"roles": st.lists(role, max_size=3)},
        ),
        st.fixed_dictionaries({"name": text}),  # admin: new platform
        st.fixed_dictionaries({"raw_token": value}),
        st.fixed_dictionaries(
            {"versions_url": url, "token_a": st.sampled_from([world.token_a, "", "t" * 100])}
        ),
        st.fixed_dictionaries(  # admin: announce a party
            {
                "country_code": st.sampled_from(["FR", "NL", "x", ""]),
                "party_id": st.sampled_from(["ABC", "CPA", "HUB", "Q"]),
                "role": st.sampled_from(["CPO", "EMSP", "OTHER", "x"]),
                "name": text,
            }
        ),
        st.fixed_dictionaries({"result": st.sampled_from(["ACCEPTED", "x", 1])}),  # results
        st.dictionaries(st.sampled_from(["id", "x", "", "é"]), value, max_size=4),
    )

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        document = draw(objects)
        encoded = json.dumps(document, ensure_ascii=draw(st.booleans()))
        if draw(st.integers(0, 3)) == 0:
            key = draw(st.sampled_from([*document, "x"])) if document else "x"
            document[key] = "@@FRAGMENT@@"
            encoded = json.dumps(document).replace('"@@FRAGMENT@@"', draw(fragment))
        return encoded.encode()

    return spliced()


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def bodies(world: World) -> st.SearchStrategy[bytes]:
    fragment = st.sampled_from(FRAGMENTS)
    return st.one_of(
        st.just(b""),
        _objects(world, fragment),
        _objects(world, fragment),
        json_values.map(lambda v: json.dumps(v).encode()),
        fragment.map(str.encode),
        st.sampled_from(INVALID_BODIES),
        st.binary(max_size=40),
        st.sampled_from([70_000, 1_000_000, 4_200_000]).map(lambda n: b'{"x":"' + b"a" * n + b'"}'),
    )


def queries() -> st.SearchStrategy[str]:
    value = st.one_of(
        st.sampled_from(NUMBERS),
        st.sampled_from(DATES),
        st.sampled_from(
            ["http://a:99999/", "%ff", "%00", "%C3%A9", "%E9", "é", "x" * 3000, "a=b", "+"]
        ),
    )
    pair = st.tuples(st.sampled_from(QUERY_KEYS), value).map(lambda kv: f"{kv[0]}={kv[1]}")
    return st.one_of(
        st.just(""),
        st.lists(pair, min_size=1, max_size=4).map(lambda pairs: "?" + "&".join(pairs)),
        st.sampled_from(["?", "?&&", "?=", "?offset", "?%zz=%zz"]),
    )


def paths(world: World) -> st.SearchStrategy[str]:
    module = st.sampled_from(MODULES)
    interface = st.sampled_from(INTERFACES)
    suffix = st.lists(st.sampled_from(SEGMENTS), max_size=5).map(
        lambda parts: "".join("/" + p for p in parts)
    )
    functional = st.builds(lambda m, i, s: f"/ocpi/2.3.0/{m}/{i}{s}", module, interface, suffix)
    junk_id = st.sampled_from(["x", "0" * 64, "é", "%00", "..", "x" * 500])
    vid = world.victim_id
    fixed = st.sampled_from(
        [
            "/ocpi/versions", "/ocpi/2.3.0", "/ocpi/2.3.0/", "/ocpi/2.3.0/credentials",
            "/ocpi/2.3.0/credentials/", "/ocpi/2.3.0/credentials//", "/ocpi/2.3.0/hubclientinfo",
            "/ocpi/2.2.1/credentials", f"/ocpi/hub/callbacks/{world.callback_id}",
            "/ocpi/hub/links/x", "/ocpi/hub/callbacks/", "/healthz", "/readyz", "/healthz/",
            "/", "/ocpi", "/admin", "/admin/", "/admin/platforms", f"/admin/platforms/{vid}",
            f"/admin/platforms/{vid}/connect", "/admin/platforms/nope",
            "/admin/platforms/nope/connect", "/admin/parties", "/admin/parties/BE/VIC/cpo/history",
            "/admin/parties/NL/CPA/CPO/history", "/admin/parties/x/y/z/history",
            "/admin/broadcasts", "/admin/broadcasts/nope", "*", "http://evil.example/healthz",
            "//admin/platforms", "/ocpi/2.3.0/locations/sender/LOC1#frag",
        ]
    )  # fmt: skip
    relay = st.builds(
        lambda kind, rid: f"/ocpi/hub/{kind}/{rid}",
        st.sampled_from(["links", "callbacks"]),
        junk_id,
    )
    admin_id = st.builds(lambda rid: f"/admin/platforms/{rid}", junk_id)
    return st.one_of(functional, functional, functional, fixed, relay, admin_id)


TOKEN = {
    "country_code": "DE",
    "party_id": "MSA",
    "uid": "TOK1",
    "type": "RFID",
    "contract_id": "DE-MSA-C1",
    "issuer": "MSP",
    "valid": True,
    "whitelist": "ALLOWED",
    "last_updated": "2024-01-01T00:00:00Z",
}
LOCATION = {
    "country_code": "NL",
    "party_id": "CPA",
    "id": "LOC1",
    "publish": True,
    "address": "Street 1",
    "city": "Town",
    "country": "NLD",
    "coordinates": {"latitude": "52.0", "longitude": "4.0"},
    "time_zone": "Europe/Amsterdam",
    "last_updated": "2024-01-01T00:00:00Z",
}
CDR_TOKEN = {"country_code": "DE", "party_id": "MSA", "uid": "TOK1", "type": "RFID"}


@dataclass
class Draft:
    """A request being built: a realistic one first, then mutated."""

    method: str
    path: str
    query: str = ""
    headers: list[tuple[str, str | bytes]] = field(default_factory=list)
    body: Any = None  # a JSON document, or bytes as they are
    fragments: dict[str, str] = field(default_factory=dict)  # placeholder -> raw JSON text

    def header(self, name: str, value: str | bytes | None) -> None:
        """Replace (None: remove) every header of that name."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        text = json.dumps(self.body)
        for placeholder, raw in self.fragments.items():
            text = text.replace(json.dumps(placeholder), raw)
        return text.encode()


def _routed(platform: FakePlatform, to: tuple[str, str] | None) -> list[tuple[str, str | bytes]]:
    return list(platform.routed(to).items())


def bases(world: World) -> list[Draft]:
    """Requests the hub accepts (1000 or a platform's answer) before any mutation."""
    cpo, emsp, victim = world.cpo, world.emsp, world.victim
    results = emsp.url + "/results"
    admin = [("Authorization", f"Bearer {ADMIN_TOKEN}")]
    start = {"response_url": results, "token": CDR_TOKEN, "location_id": "LOC1"}
    reserve = {
        **start,
        "expiry_date": "2030-01-01T00:00:00Z",
        "reservation_id": "R1",
    }
    credentials = {
        "token": "tok-b",
        "url": "http://127.0.0.1:9/ocpi/versions",
        "roles": [
            {
                "role": "EMSP",
                "party_id": "MSA",
                "country_code": "DE",
                "business_details": {"name": "MSP"},
            }
        ],
    }
    v = "/ocpi/2.3.0"
    return [
        Draft("GET", f"{v}/locations/sender/LOC1", "", _routed(emsp, CPO)),
        Draft("GET", f"{v}/locations/sender/LOC1/E1/C1", "", _routed(emsp, None)),
        Draft("GET", f"{v}/locations/sender", "offset=0&limit=10", _routed(emsp, HUB)),
        Draft("PUT", f"{v}/tokens/receiver/DE/MSA/TOK1", "", _routed(emsp, CPO), TOKEN),
        Draft("PUT", f"{v}/tokens/receiver/DE/MSA/TOK1", "", _routed(emsp, HUB), TOKEN),
        Draft(
            "PATCH",
            f"{v}/tokens/receiver/DE/MSA/TOK1",
            "type=RFID",
            _routed(emsp, CPO),
            {"valid": False},
        ),
        Draft("PUT", f"{v}/locations/receiver/NL/CPA/LOC1", "", _routed(cpo, HUB), LOCATION),
        Draft("PUT", f"{v}/locations/receiver/NL/CPA/LOC1", "", _routed(cpo, None), LOCATION),
        Draft("POST", f"{v}/commands/receiver/START_SESSION", "", _routed(emsp, None), start),
        Draft("POST", f"{v}/commands/receiver/START_SESSION", "", _routed(emsp, CPO), start),
        Draft("POST", f"{v}/commands/receiver/RESERVE_NOW", "", _routed(emsp, CPO), reserve),
        Draft(
            "POST",
            f"{v}/commands/receiver/STOP_SESSION",
            "",
            _routed(emsp, None),
            {"response_url": results, "session_id": "S1"},
        ),
        Draft(
            "GET",
            f"{v}/chargingprofiles/receiver/S1",
            f"duration=900&response_url={results}",
            _routed(emsp, CPO),
        ),
        Draft(
            "PUT",
            f"{v}/chargingprofiles/receiver/S1",
            "",
            _routed(emsp, CPO),
            {"response_url": results, "charging_profile": {"charging_rate_unit": "W"}},
        ),
        Draft(
            "POST",
            f"{v}/cdrs/receiver",
            "",
            _routed(cpo, None),
            {"id": "CDR1", "country_code": "NL", "party_id": "CPA", "cdr_token": CDR_TOKEN},
        ),
        Draft(
            "PATCH",
            f"{v}/sessions/receiver/NL/CPA/S1",
            "",
            _routed(cpo, EMSP),
            {"kwh": 1.5, "last_updated": "2024-01-01T00:00:00Z"},
        ),
        Draft("POST", f"{v}/tokens/sender/TOK1/authorize", "type=RFID", _routed(cpo, None)),
        Draft("GET", f"{v}/hubclientinfo", "offset=0&limit=5", list(emsp.hub_headers().items())),
        Draft("GET", f"{v}/credentials", "", list(cpo.hub_headers().items())),
        Draft("PUT", f"{v}/credentials", "", list(emsp.hub_headers().items()), credentials),
        Draft(
            "POST",
            f"{v}/credentials",
            "",
            [("Authorization", f"Token {b64(world.token_a)}")],
            credentials,
        ),
        Draft("GET", "/ocpi/versions", "", list(emsp.hub_headers().items())),
        Draft("GET", v, "", list(cpo.hub_headers().items())),
        Draft(
            "POST",
            f"/ocpi/hub/callbacks/{world.callback_id}",
            "",
            list(cpo.hub_headers().items()),
            {"result": "ACCEPTED"},
        ),
        Draft("GET", "/ocpi/hub/links/nope", "", list(emsp.hub_headers().items())),
        Draft("GET", "/admin/platforms", "", admin),
        Draft("POST", "/admin/platforms", "", admin, {"name": "Fuzzed Co"}),
        Draft("GET", f"/admin/platforms/{world.victim_id}", "", admin),
        Draft("PATCH", f"/admin/platforms/{world.victim_id}", "", admin, {"raw_token": True}),
        Draft("DELETE", f"/admin/platforms/{world.victim_id}", "", admin),
        Draft(
            "POST",
            f"/admin/platforms/{world.victim_id}/connect",
            "",
            admin,
            {"versions_url": "http://127.0.0.1:9/versions", "token_a": "a" * 20},
        ),
        Draft("GET", "/admin/parties", "", admin),
        Draft(
            "POST",
            "/admin/parties",
            "",
            admin,
            {"country_code": "FR", "party_id": "ABC", "role": "CPO", "name": "Planned"},
        ),
        Draft("GET", "/admin/parties/NL/CPA/CPO/history", "", admin),
        Draft("GET", "/admin/broadcasts", "", admin),
        Draft("GET", "/healthz"),
        Draft("GET", "/readyz"),
        Draft("GET", f"{v}/tokens/sender", "", _routed(victim, EMSP)),
    ]


HEADER_NAMES = [
    "Authorization",
    "OCPI-from-country-code",
    "OCPI-from-party-id",
    "OCPI-to-country-code",
    "OCPI-to-party-id",
    "X-Request-ID",
    "X-Correlation-ID",
    "Content-Type",
]


def mutations(world: World) -> list[Any]:
    """Each takes (draw, draft) and changes one thing."""
    authorizations = _authorizations(world)
    any_body = bodies(world)
    fragment = st.sampled_from(FRAGMENTS)
    wrong_type = st.sampled_from(
        [None, 0, -1, 1.5, True, "", "x" * 3000, [], {}, ["LOC1"], {"a": None}, "é\u0000"]
    )

    def method(draw: st.DrawFn, d: Draft) -> None:
        d.method = draw(st.sampled_from(METHODS + ODD_METHODS))

    def path(draw: st.DrawFn, d: Draft) -> None:
        parts = d.path.split("/")
        at = draw(st.integers(1, len(parts)))
        how = draw(st.sampled_from(["replace", "insert", "truncate", "case", "anew"]))
        segment = draw(st.sampled_from([*SEGMENTS, *MODULES, *INTERFACES]))
        if how == "replace" and at < len(parts):
            parts[at] = segment
        elif how == "insert":
            parts.insert(at, segment)
        elif how == "truncate":
            parts = parts[:at]
        elif how == "case":
            parts = [p.upper() if draw(st.booleans()) else p for p in parts]
        else:
            d.path = draw(paths(world))
            return
        d.path = "/".join(parts) or "/"

    def query(draw: st.DrawFn, d: Draft) -> None:
        extra = draw(queries()).lstrip("?")
        d.query = "&".join(q for q in (d.query, extra) if q) if draw(st.booleans()) else extra

    def authorization(draw: st.DrawFn, d: Draft) -> None:
        d.header("Authorization", draw(st.sampled_from(authorizations)))

    def header(draw: st.DrawFn, d: Draft) -> None:
        name = draw(st.sampled_from(HEADER_NAMES))
        if name.startswith("OCPI-"):
            party = draw(st.sampled_from(PARTIES))
            value = party[0] if "country" in name else party[1]
        else:
            value = draw(st.sampled_from(ODD_VALUES))
        latin1 = draw(st.booleans())
        how = draw(st.sampled_from(["set", "set", "remove", "add"]))
        if how == "set":
            d.header(name, _encode(value, latin1))
        elif how == "remove":
            d.header(name, None)
        else:
            d.headers.append((name, _encode(value, latin1)))

    def extra_headers(draw: st.DrawFn, d: Draft) -> None:
        d.headers += draw(st.sampled_from(EXTRA_HEADERS))

    def body(draw: st.DrawFn, d: Draft) -> None:
        d.body, d.fragments = draw(any_body), {}

    def field_value(draw: st.DrawFn, d: Draft) -> None:
        """One field of the JSON body (nested ones too): a raw fragment, a wrong type,
        gone, or one more field."""
        if not isinstance(d.body, dict):
            d.body, d.fragments = {}, {}
        document = d.body = json.loads(json.dumps(d.body))  # a copy: bases are shared
        while True:
            keys = sorted(document)
            key = draw(st.sampled_from([*keys, "x", "response_url", "location_id"]))
            if isinstance(document.get(key), dict) and draw(st.booleans()):
                document = document[key]
                continue
            break
        how = draw(st.sampled_from(["fragment", "fragment", "type", "remove", "url"]))
        if how == "fragment":
            placeholder = f"@@{len(d.fragments)}@@"
            d.fragments[placeholder] = draw(fragment)
            document[key] = placeholder
        elif how == "type":
            document[key] = draw(wrong_type)
        elif how == "url":
            document[key] = world.url_of(draw(st.sampled_from(URLS)))
        else:
            document.pop(key, None)

    return [method, path, query, authorization, header, header, extra_headers, body] + [
        field_value
    ] * 3


CONTENT_TYPES = [None, None, "application/json", "text/plain", "application/json; charset=x", "é"]
EXTRA_HEADERS: list[list[tuple[str, str | bytes]]] = [
    [("Content-Encoding", "gzip")],
    [("Expect", "100-continue")],
    [("Accept-Encoding", "gzip, br")],
    [("Connection", "close")],
    [(f"X-Extra-{i}", "v") for i in range(100)],
    [("Authorization", "Token x")],  # a second one
    [("OCPI-from-party-id", "ZZZ")],
    [("Link", "<http://evil.example/>; rel=next")],
    [("Host", "evil.example")],
]  # framing headers (Content-Length, Transfer-Encoding) stay the client's: a mismatch
# would make the bytes after it a second request, which tests the HTTP server, not the hub


def cases(world: World) -> st.SearchStrategy[Case]:
    """Mostly a realistic request with up to three mutations; sometimes anything at all."""
    drafts = bases(world)
    changes = mutations(world)
    anything = random_drafts(world)
    protected = {
        value.encode()
        for platform in (world.cpo, world.emsp)
        for value in (f"Token {b64(platform.hub_token or '')}", f"Token {platform.hub_token}")
    }
    victim = f"Token {b64(world.victim.hub_token or '')}".encode()

    @st.composite
    def case(draw: st.DrawFn) -> Case:
        if draw(st.integers(0, 5)) == 0:
            d = draw(anything)
        else:
            base = draw(st.sampled_from(drafts))
            d = Draft(base.method, base.path, base.query, list(base.headers), base.body)
            for change in draw(st.lists(st.sampled_from(changes), max_size=3)):
                change(draw, d)
        headers = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in d.headers]
        if d.method == "DELETE" and d.path.startswith("/ocpi/2.3.0/credentials"):
            # Unregistering the CPO or eMSP would end every later case's canary: the
            # fuzzer unregisters the third platform instead.
            headers = [
                (k, victim if k.lower() == b"authorization" and v.strip() in protected else v)
                for k, v in headers
            ]
        target = d.path + (f"?{d.query}" if d.query else "")
        reply = draw(st.sampled_from(REPLIES)) if draw(st.integers(0, 4)) == 0 else None
        return Case(d.method.encode(), target.encode(), headers, d.encoded_body(), b"", reply)

    return case()


def random_drafts(world: World) -> st.SearchStrategy[Draft]:
    """Any path, method, headers and body, each drawn on its own."""
    authorizations = _authorizations(world)

    @st.composite
    def draft(draw: st.DrawFn) -> Draft:
        d = Draft(
            draw(st.sampled_from(METHODS * 8 + ODD_METHODS)),
            draw(paths(world)),
            draw(queries()).lstrip("?"),
        )
        latin1 = draw(st.booleans())

        def add(name: str, value: str) -> None:
            d.headers.append((name, _encode(value, latin1)))

        authorization = draw(st.sampled_from(authorizations))
        if authorization is not None:
            add("Authorization", authorization)
        if d.path.startswith("/ocpi/2.3.0/") or draw(st.integers(0, 4)) == 0:
            sender = draw(st.sampled_from([*PARTIES[:3], *PARTIES]))
            if draw(st.integers(0, 5)):
                add("OCPI-from-country-code", sender[0])
                add("OCPI-from-party-id", sender[1])
            to = draw(st.one_of(st.none(), st.none(), st.sampled_from(PARTIES)))
            if to is not None:
                which = draw(st.sampled_from(["both", "both", "both", "country", "party"]))
                if which != "party":
                    add("OCPI-to-country-code", to[0])
                if which != "country":
                    add("OCPI-to-party-id", to[1])
        if draw(st.integers(0, 3)) == 0:
            add("X-Request-ID", draw(st.sampled_from(ODD_VALUES)))
        correlation = draw(st.one_of(st.none(), st.none(), st.sampled_from(ODD_VALUES)))
        if correlation is not None:
            add("X-Correlation-ID", correlation)
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type is not None:
            add("Content-Type", content_type)
        if draw(st.integers(0, 2)) == 0:
            d.headers += draw(st.sampled_from(EXTRA_HEADERS))
        if d.method not in ("GET", "HEAD") or draw(st.booleans()):
            d.body = draw(bodies(world))
        return d

    return draft()


# -- running one case and checking what came back -------------------------------------------


CANARY = "/ocpi/2.3.0/locations/sender/LOC1"


async def _broadcasts_finished(url: str) -> None:
    """Bounded by more than DELIVERY_MAX_AGE (60 s): a delivery a platform refuses is tried
    again until then."""
    async with aiohttp.ClientSession() as http:
        await HubClient(url, ADMIN_TOKEN).broadcasts_finished(http, seconds=100)


def _canary(world: World) -> RawAnswer:
    headers = list(world.emsp.routed(CPO).items())
    return raw_request(world.url, "GET", CANARY, headers)


MARKER = re.compile(r"fz\d+x\d+-")


def _reached(world: World, marker: str) -> list[str]:
    """What arrived at the platforms with ``marker`` in X-Correlation-ID."""
    for platform in world.platforms:
        start = world.seen.get(platform.name, 0)
        arrived = platform.received[start:]
        world.seen[platform.name] = start + len(arrived)
        for request in arrived:
            found = MARKER.match(request.headers.get("x-correlation-id", ""))
            if found:
                line = f"{platform.name}: {request.method} {request.path}"
                world.arrivals.setdefault(found.group(), []).append(line)
    return world.arrivals.get(marker, [])


def _decoded(reply: Reply) -> bytes:
    _, headers, body = reply
    return gzip.decompress(body) if ("Content-Encoding", "gzip") in headers else body


def _path(target: bytes) -> bytes:
    return target.split(b"?", 1)[0]


def check(world: World, case: Case) -> None:
    world.cases += 1
    marker = f"fz{world.cases}x{os.getpid()}-"
    headers = []
    for name, value in case.headers:
        if name.lower() == b"x-correlation-id":
            value = marker.encode() + value
        headers.append((name, value))
    if not any(name.lower() == b"x-correlation-id" for name, _ in headers):
        headers.append((b"X-Correlation-ID", marker.encode()))
    case = Case(case.method, case.target, headers, case.body, marker.encode(), case.answer)
    what = case.describe()
    if case.answer is not None:
        world.replies[marker] = case.answer
    try:
        answer = raw_request(world.url, case.method, case.target, case.headers, case.body)
    except NoAnswer as exc:
        raise AssertionError(f"no answer ({exc}) to\n{what}\n{world.hub_errors()}") from None
    if answer.header("Content-Encoding") == "gzip":  # a platform's answer, relayed as it came
        answer.body = gzip.decompress(answer.body)
    envelope = answer.envelope()
    from_hub = answer.header("X-Request-ID") is not None  # not the HTTP server's own refusal
    kind = envelope["status_code"] if envelope else "json" if from_hub else "http"
    world.answers[(answer.status, kind)] += 1
    everything = answer.body + b"".join(k + b":" + v for k, v in answer.headers)
    assert b"Traceback" not in everything and b'File "' not in everything, what
    relayed_5xx = case.answer is not None and case.answer[0] >= 500 and envelope is not None
    assert answer.status < 500 or relayed_5xx, (
        f"HTTP {answer.status} {answer.body[:300]!r} to\n{what}\n{world.hub_errors()}"
    )
    path = _path(case.target)
    with_body = from_hub and case.method != b"HEAD"
    redirect = answer.status in (301, 302, 303, 307, 308)
    # the hub checks a platform's answer only for the look of an envelope (README, "Not
    # OCPI") and relays it as it came: that is the other answer allowed here
    relayed = case.answer is not None and answer.body == _decoded(case.answer)
    if with_body and path.startswith(b"/ocpi") and not redirect and not relayed:
        assert envelope is not None, f"not an envelope: {answer.body[:300]!r} to\n{what}"
    if with_body and path.startswith(b"/admin") and answer.status >= 400:
        assert "error" in answer.json(), what
    refused = answer.status >= 400 or (envelope is not None and envelope["status_code"] != 1000)
    # A registration (credentials, admin connect) calls the URL its body names before it can
    # fail: that call is the handshake, not a refused request passed on.
    handshake = path.startswith((b"/ocpi/2.3.0/credentials", b"/admin/"))
    if refused and case.answer is None and not handshake:  # else the platform's own refusal
        world.refused[marker] = f"{what}\nanswered {answer.status} {answer.body[:300]!r}"
        reached = _reached(world, marker)
        assert not reached, f"refused ({answer.status} {envelope}) yet {reached}:\n{what}"
    canary = _canary(world)
    assert canary.status == 200 and canary.json()["status_code"] == 1000, (
        f"after\n{what}\nthe routed GET answered {canary.status} {canary.body[:300]!r}"
    )


@pytest.mark.fuzz
@pytest.mark.timeout(300 + EXAMPLES // 10)
def test_no_input_breaks_the_hub(world: World) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=cases(world))
    def one(case: Case) -> None:
        check(world, case)

    began = time.monotonic()
    one()
    # Broadcasts are delivered after their answer: had the hub accepted a refused request
    # as one, its deliveries would have arrived once every broadcast is finished.
    asyncio.run_coroutine_threadsafe(_broadcasts_finished(world.url), world.loop).result(120)
    late = [
        f"{_reached(world, m)} after\n{w}" for m, w in world.refused.items() if _reached(world, m)
    ]
    assert not late, "refused requests reached a platform later:\n" + "\n\n".join(late[:3])
    assert not world.hub_errors(), f"the hub logged errors:\n{world.hub_errors()}"
    seconds = time.monotonic() - began
    top = ", ".join(f"{s}/{c}: {n}" for (s, c), n in world.answers.most_common(12))
    print(
        f"\nfuzz: {world.cases} cases, {len(world.answers)} distinct answers "
        f"in {seconds:.0f} s ({'random' if RANDOM else 'derandomized'}); {top}"
    )
