"""``GET /admin/openapi.json``: every admin route is described, the document is valid OpenAPI
3.1, and the hub's real answers fit the schemas it documents."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jsonschema
import msgspec
from aiohttp import web
from openapi_spec_validator import validate
from starlette.routing import BaseRoute

from hub.web.openapi import AdminRoute
from tests.conftest import HubFactory
from tests.fakes import Received, ocpi
from tests.support import RunningHub
from tests.test_delivery import cpo_and_msp, evse, finished, push

JSON = "application/json"


def admin_routes(hub: RunningHub) -> list[BaseRoute]:
    """Every route of the running application under /admin, whatever module it comes from."""
    return [r for r in hub.app.routes if getattr(r, "path", "").startswith("/admin")]


async def fetch_document(hub: RunningHub, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{hub.url}/admin/openapi.json") as response:  # no token
        assert response.status == 200, await response.text()
        assert response.content_type == JSON
        document: dict[str, Any] = await response.json()
    return document


def fits(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """``value`` is valid under ``schema``, whose references point into the document."""
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(
        value
    )


async def test_every_admin_route_is_described(hub: RunningHub, http: aiohttp.ClientSession):
    document = await fetch_document(hub, http)
    assert document["openapi"].startswith("3.1")
    validate(document)

    described = set()
    for route in admin_routes(hub):
        assert isinstance(route, AdminRoute), f"{route}: admin routes are AdminRoutes"
        for method in sorted((route.methods or set()) - {"HEAD"}):
            where = f"{method} {route.path}"
            operation = document["paths"][route.path_format][method.lower()]
            described.add((route.path_format, method.lower()))
            assert operation["summary"], where
            answer = operation["responses"][str(route.status)]
            if route.response is not None:
                assert answer["content"][JSON]["schema"], where
            assert operation["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}
            assert ("requestBody" in operation) == (route.request is not None), where
            if route.request is not None:
                assert operation["requestBody"]["content"][JSON]["schema"], where
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(route.param_convertors), where
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == described
    assert document["paths"]["/admin/openapi.json"]["get"]["security"] == []
    assert document["security"] == [{"bearer": []}]


async def test_answers_fit_their_documented_schemas(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    """Real answers of a hub with platforms, a party, an agreement and a dead letter, checked
    against the document with a JSON Schema validator and decoded into the route's type."""

    async def refuse(received: Received, request: web.Request) -> web.StreamResponse:
        return ocpi(None, 2001, 400)

    async with cpo_and_msp(hub_factory, http) as pair:
        hub = pair.hub
        document = await fetch_document(hub, http)
        routes = [r for r in admin_routes(hub) if isinstance(r, AdminRoute)]

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(
                method, hub.url + path, json=body, headers=hub.admin
            ) as response:
                status, raw = response.status, await response.read()
            (route,) = [
                r
                for r in routes
                if method in (r.methods or ()) and r.path_regex.match(path.partition("?")[0])
            ]
            assert status == route.status, raw
            operation = document["paths"][route.path_format][method.lower()]
            fits(
                document,
                operation["responses"][str(status)]["content"][JSON]["schema"],
                json.loads(raw),
            )
            msgspec.json.decode(raw, type=route.response)
            return json.loads(raw)

        pair.msp.handler = refuse
        await finished(http, hub, await push(http, hub, pair.cpo, "PUT", evse("AVAILABLE", 0)))
        pair.msp.handler = None

        await call("POST", "/admin/platforms", {"name": "Planned Co", "version": "2.2.1"})
        await call(
            "POST",
            "/admin/parties",
            {"country_code": "BE", "party_id": "NEW", "role": "CPO", "name": "New CPO"},
        )
        parties = [
            {"country_code": "NL", "party_id": "CPA"},
            {"country_code": "DE", "party_id": "MSA"},
        ]
        agreement = await call("POST", "/admin/agreements", {"parties": parties})

        platforms = await call("GET", "/admin/platforms")
        assert len(platforms) == 3 and any(p["endpoints"] for p in platforms)
        assert len(await call("GET", "/admin/parties")) == 3
        assert await call("GET", "/admin/agreements?party=NLCPA") == [agreement]
        await call("GET", f"/admin/agreements/{agreement['id']}")
        await call("GET", "/admin/routes/explain?from=NLCPA&to=DEMSA&module=locations")
        assert {b["platform_id"] for b in await call("GET", "/admin/deliveries")} >= {pair.msp_id}
        (letter,) = await call("GET", "/admin/dead-letters?limit=10")
        (broadcast,) = await call("GET", "/admin/broadcasts")
        await call("GET", f"/admin/broadcasts/{broadcast['id']}")
        await call("GET", f"/admin/platforms/{pair.msp_id}")
        assert await call("GET", f"/admin/platforms/{pair.msp_id}/events")
        await call("GET", f"/admin/platforms/{pair.msp_id}/losses")
        assert await call("GET", "/admin/parties/NL/CPA/cpo/history")
        replay = await call("POST", f"/admin/dead-letters/{letter['id']}/replay")
        assert replay["dead_letter"] == letter
        await call("PATCH", f"/admin/platforms/{pair.msp_id}", {"raw_token": False})
        await call("DELETE", f"/admin/agreements/{agreement['id']}")

        error = document["components"]["responses"]["Error"]["content"][JSON]["schema"]
        for path, status in (("/admin/platforms/nope", 404), ("/admin/dead-letters?limit=0", 400)):
            async with http.get(hub.url + path, headers=hub.admin) as response:
                assert response.status == status
                fits(document, error, await response.json())
