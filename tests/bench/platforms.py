"""Fake OCPI platforms in one process of their own: ``python -m tests.bench.platforms PORT``.

Any number of platforms live under ``/p/{name}``; each offers versions, 2.3.0 details (2.2.1
for platforms named ``v221*``),
credentials, and Locations/Tokens SENDER and RECEIVER, and accepts only the token
``bench-{name}`` (the token B the load client hands the hub in the handshake). Platforms
named ``fill*`` (the filler parties of the registry-scale scenario) do not offer the
hubclientinfo RECEIVER, so that seeding 10,000 parties does not cost 100,000 ClientInfo
pushes the bench would have to wait out; every other platform does. Answers are
precomputed bytes so that the fake costs as little as possible on both the direct and the
routed path. Receiver calls are counted per object id and receiving party, with the
system-wide monotonic time of the last arrival, for the broadcast scenario. EVSE pushes
(``/locations/receiver/{cc}/{pid}/{location}/{evse}``) are held per receiving party as the
storm scenario's receivers: the ``last_updated`` each one holds, every arrival (what it
held before, what it holds now, the wall-clock time) and each arrival older than the one
it held (an order violation).

A separate process keeps the fake's event loop apart from the hub's and the load client's.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from typing import Any

from aiohttp import web

from tests.bench import data

MODULES = (
    ("locations", "SENDER"),
    ("locations", "RECEIVER"),
    ("tokens", "SENDER"),
    ("tokens", "RECEIVER"),
    ("sessions", "RECEIVER"),
    ("hubclientinfo", "RECEIVER"),
)
LIST_SIZE = 200  # Locations each platform publishes on its paginated SENDER list
BIG_PAGE = 1024 * 1024  # bytes of the ?page=big answer (the streaming case)
JSON = "application/json"
MAX_BODY = 8 * 1024 * 1024


def version_of(name: str) -> str:
    """The OCPI version a fake platform speaks: 2.2.1 for ``v221*`` names."""
    return "2.2.1" if name.startswith("v221") else "2.3.0"


def token_b(name: str) -> str:
    return f"bench-{name}"


def authorization(token: str) -> str:
    return "Token " + base64.b64encode(token.encode()).decode()


class Platforms:
    """The state of every fake platform; dispatches ``/p/{name}/...`` and ``/bench/...``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self._auth: dict[str, str] = {}
        self._object = data.envelope(data.location("LOC1"))
        self._big_page = data.envelope(data.location_page("BIG", BIG_PAGE))
        self._ok = data.envelope(None)
        self._unauthorized = data.envelope(None, 2000, "unknown token")
        self._pages: dict[tuple[str, int, int], bytes] = {}
        # object id -> (receiving parties seen, monotonic time of the last arrival)
        self.arrivals: dict[str, tuple[set[str], float]] = {}
        self.storm = Storm()

    def platform_url(self, name: str) -> str:
        return f"{self.base}/p/{name}"

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/bench/"):
            return await self._control(request, path[len("/bench/") :])
        parts = path.split("/", 3)  # "", "p", name, rest
        if len(parts) < 4 or parts[1] != "p":
            return web.Response(status=404)
        name, rest = parts[2], parts[3]
        expected = self._auth.get(name)
        if expected is None:
            expected = self._auth[name] = authorization(token_b(name))
        if request.headers.get("Authorization") != expected:
            return web.Response(body=self._unauthorized, status=401, content_type=JSON)
        version = version_of(name)
        tree = f"ocpi/{version}/"
        if rest.startswith(tree + "locations/"):
            return await self._locations(request, name, rest[len(tree + "locations/") :])
        if rest == "ocpi/versions":
            versions = [{"version": version, "url": f"{self.platform_url(name)}/ocpi/{version}"}]
            return web.Response(body=data.envelope(versions), content_type=JSON)
        if rest == f"ocpi/{version}":
            return web.Response(body=data.envelope(self._details(name)), content_type=JSON)
        if request.method in ("PUT", "PATCH", "POST"):
            await request.read()
        return web.Response(body=self._ok, content_type=JSON)

    def _details(self, name: str) -> dict[str, Any]:
        version = version_of(name)
        base = f"{self.platform_url(name)}/ocpi/{version}"
        endpoints = [{"identifier": "credentials", "role": "SENDER", "url": f"{base}/credentials"}]
        endpoints += [
            {"identifier": m, "role": r, "url": f"{base}/{m}/{r.lower()}"}
            for m, r in MODULES
            if not (m == "hubclientinfo" and name.startswith("fill"))
        ]
        return {"version": version, "endpoints": endpoints}

    async def _locations(self, request: web.BaseRequest, name: str, rest: str) -> web.Response:
        if rest.startswith("sender"):
            if rest.startswith("sender/"):
                return web.Response(body=self._object, content_type=JSON)
            if request.query.get("page") == "big":
                return web.Response(body=self._big_page, content_type=JSON)
            return self._list(request, name)
        body = await request.read()
        if rest.count("/") == 4:  # receiver/{cc}/{pid}/{location}/{evse}
            self.storm.arrived(_party(request), rest.split("/", 1)[1], body)
        elif request.method == "PATCH":
            self._arrived(rest.rsplit("/", 1)[-1], request)
        return web.Response(body=self._ok, content_type=JSON)

    def _list(self, request: web.BaseRequest, name: str) -> web.Response:
        """Pagination as transport_and_format describes it: X-Total-Count, X-Limit, Link."""
        offset = max(0, int(request.query.get("offset", "0")))
        limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        key = (name, offset, limit)
        body = self._pages.get(key)
        if body is None:
            end = min(LIST_SIZE, offset + limit)
            page = [data.location(f"{name.upper()}-{n}") for n in range(offset, end)]
            body = self._pages[key] = data.envelope(page)
        headers = {"X-Total-Count": str(LIST_SIZE), "X-Limit": str(limit)}
        if offset + limit < LIST_SIZE:
            url = f"{self.platform_url(name)}/ocpi/2.3.0/locations/sender"
            headers["Link"] = f'<{url}?offset={offset + limit}&limit={limit}>; rel="next"'
        return web.Response(body=body, content_type=JSON, headers=headers)

    def _arrived(self, object_id: str, request: web.BaseRequest) -> None:
        party = _party(request)
        seen = self.arrivals.get(object_id)
        parties = seen[0] if seen is not None else set()
        parties.add(party)
        self.arrivals[object_id] = (parties, time.monotonic())

    async def _control(self, request: web.BaseRequest, what: str) -> web.Response:
        if what == "ping":
            return web.Response(body=b"{}", content_type=JSON)
        if what.startswith("storm/"):
            return web.Response(
                body=data.encode(self.storm.control(what[6:], await request.read())),
                content_type=JSON,
            )
        if what.startswith("arrivals/"):
            parties, last = self.arrivals.get(what[len("arrivals/") :], (set(), 0.0))
            return web.Response(
                body=data.encode({"count": len(parties), "last": last}), content_type=JSON
            )
        if what == "reset":
            self.arrivals.clear()
            return web.Response(body=b"{}", content_type=JSON)
        return web.Response(status=404)


def _party(request: web.BaseRequest) -> str:
    return "{}/{}".format(
        request.headers.get("OCPI-to-country-code", ""),
        request.headers.get("OCPI-to-party-id", ""),
    )


class Storm:
    """The storm scenario's receivers: per (party, EVSE) the ``last_updated`` held."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.held: dict[tuple[str, str], tuple[str, float]] = {}  # -> (last_updated, at)
        self.log: list[tuple[str, str, str, str, float]] = []  # party, evse, before, now, at
        self.violations = 0
        self.expected: dict[str, str] = {}

    def arrived(self, party: str, evse: str, body: bytes) -> None:
        now = time.time()
        stamp = data.decode(body)["last_updated"]
        before = self.held.get((party, evse), ("", 0.0))[0]
        if stamp < before:
            self.violations += 1
        self.held[(party, evse)] = (stamp, now)
        self.log.append((party, evse, before, stamp, now))

    def control(self, what: str, body: bytes) -> dict[str, Any]:
        if what == "reset":
            self.reset()
            return {}
        if what == "expect":  # {evse: the last_updated every party must end with}
            self.expected = data.decode(body)
            return {}
        if what == "converged":
            done = [
                at
                for (_, evse), (stamp, at) in self.held.items()
                if self.expected.get(evse) == stamp
            ]
            return {"pairs": len(done), "last": max(done, default=0.0)}
        if what == "log":
            return {"log": self.log, "violations": self.violations}
        return {"error": what}


class _Server(web.Server):
    """aiohttp's low-level server, taking bodies up to the hub's MAX_BODY_BYTES (the
    default cap is 1 MiB)."""

    def _make_request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, self._loop, client_max_size=MAX_BODY
        )


async def serve(port: int) -> None:
    platforms = Platforms(port)
    server = _Server(platforms.handle, access_log=None)
    loop = asyncio.get_running_loop()
    await loop.create_server(server, "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:  # uvloop comes with uvicorn[standard]; plain asyncio otherwise
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
