"""The admin API described as OpenAPI 3.1, at ``GET /admin/openapi.json``.

Each admin route is an ``AdminRoute`` that names the msgspec types it reads and answers; the
document is built from the application's routes and its schemas from those types, so what it
says cannot drift from what the handlers do.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub import __version__
from hub.web.responses import JSON

REF = "#/components/schemas/{name}"
_NULL = {"type": "null"}
_PATH_TYPES = {IntegerConvertor: "integer", FloatConvertor: "number"}


class AdminRoute(Route):
    """A route of the admin API with the types its OpenAPI description is made of:
    ``request`` the body it reads, ``query`` a Struct whose fields are its query parameters,
    ``response`` the body of its ``status`` answer (None: no body). Everything else is
    ``Route``'s."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        request: type | None = None,
        response: Any,
        status: int = 200,
        query: type | None = None,
        **options: Any,
    ) -> None:
        super().__init__(path, endpoint, **options)
        self.request = request
        self.response = response
        self.status = status
        self.query = query


class AdminErrorBody(msgspec.Struct):
    """Every admin error answer: what went wrong, and the OCPI status code if it has one."""

    error: str
    status_code: int | msgspec.UnsetType = msgspec.UNSET


def openapi(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of every ``AdminRoute`` among ``routes``."""
    admin = [route for route in routes if isinstance(route, AdminRoute)]
    declared = (t for r in admin for t in (r.request, r.response, r.query) if t is not None)
    types = list(dict.fromkeys([AdminErrorBody, *declared]))
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in admin:
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path_format, {})[method.lower()] = _operation(
                route, schema_of, schemas
            )
    # A query Struct's fields are parameters: the Struct itself is no schema of the API.
    bodies = {type_ for route in admin for type_ in (route.request, route.response)}
    for query in {route.query for route in admin} - bodies - {None}:
        schemas.pop(_name(schema_of[query]))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OCPI hub admin API",
            "version": __version__,
            "description": "The operator's API: plain JSON, not OCPI envelopes.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "Refused or failed: what went wrong, and the OCPI status "
                    "code where the error has one.",
                    "content": {JSON: {"schema": schema_of[AdminErrorBody]}},
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the admin token"}
            },
        },
        "security": [{"bearer": []}],
    }


def _operation(
    route: AdminRoute, schema_of: dict[Any, dict[str, Any]], schemas: dict[str, Any]
) -> dict[str, Any]:
    summary, description = _doc(route.endpoint)
    operation: dict[str, Any] = {"operationId": route.name, "summary": summary}
    if description:
        operation["description"] = description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": _PATH_TYPES.get(type(convertor), "string")},
        }
        for name, convertor in route.param_convertors.items()
    ]
    if route.query is not None:
        parameters += _query_parameters(schemas[_name(schema_of[route.query])])
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        body = {"schema": schema_of[route.request]}
        operation["requestBody"] = {"required": True, "content": {JSON: body}}
    answer: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.response is not None:
        answer["content"] = {JSON: {"schema": schema_of[route.response]}}
    error = {"$ref": "#/components/responses/Error"}
    operation["responses"] = {str(route.status): answer, "4XX": error, "5XX": error}
    if route.endpoint is openapi_json:
        operation["security"] = []
    return operation


def _query_parameters(struct: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of a query Struct's schema as parameters; a query string has no null, so
    an optional field is just not required."""
    required = set(struct.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _not_null(field)}
        for name, field in struct["properties"].items()
    ]


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" not in schema:
        return schema
    options = [option for option in schema["anyOf"] if option != _NULL]
    rest = {k: v for k, v in schema.items() if k != "anyOf" and v is not None}
    return {**rest, **options[0]} if len(options) == 1 else {**rest, "anyOf": options}


def _name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[-1]


def _doc(endpoint: Callable[..., Any]) -> tuple[str, str | None]:
    """The docstring's first sentence as the summary, the whole of it as the description
    when there is more."""
    doc = inspect.getdoc(endpoint) or endpoint.__name__
    text = "\n\n".join(" ".join(paragraph.split()) for paragraph in doc.split("\n\n"))
    summary = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return summary, text if text != summary else None


async def openapi_json(request: Request) -> Response:
    """The admin API's OpenAPI document. No token needed: it describes the routes and holds
    no secret."""
    state = request.app.state
    cached: bytes | None = getattr(state, "openapi_json", None)
    if cached is None:  # the routes are fixed once the application is made
        cached = state.openapi_json = msgspec.json.encode(openapi(request.app.routes))
    return Response(cached, media_type=JSON)


routes = [
    AdminRoute("/admin/openapi.json", openapi_json, methods=["GET"], response=dict[str, Any]),
]
