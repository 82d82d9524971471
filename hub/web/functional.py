"""The hub's endpoints of every functional module: one endpoint, one path for all of them.

authenticate -> routing headers -> one ``RoutedRequest`` value -> the scenario
(``hub/dispatch.py``) -> the answer. Module differences live in the module table
(hub/routing/modules.py), not here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.ocpi.body import check_json
from hub.ocpi.envelope import OcpiError, answering
from hub.ocpi.models import InterfaceRole, ModuleID, modules_of
from hub.ocpi.status import StatusCode
from hub.registry.snapshot import Snapshot
from hub.registry.traffic import CURRENT
from hub.routing.decide import (
    check_owner,
    check_sender,
    classify,
    parse_addressing,
    sole_party,
)
from hub.routing.modules import module_facts
from hub.routing.request import RoutedRequest
from hub.routing.urls import raw_suffix
from hub.web.access import authenticate, runtime
from hub.web.responses import answer_response
from hub.web.urls import VERSION_PATH

_INTERFACES = {"sender": InterfaceRole.SENDER, "receiver": InterfaceRole.RECEIVER}
_CONFIGURATION = {ModuleID.CREDENTIALS, ModuleID.HUB_CLIENT_INFO, "versions"}
_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


def not_found(request: Request) -> OcpiError:
    return OcpiError(StatusCode.CLIENT_ERROR, f"no such endpoint: {request.url.path}", 404)


def _advertised(snapshot: Snapshot, module: str) -> bool:
    return any(
        p.endpoint(module, role) for p in snapshot.platforms.values() for role in InterfaceRole
    )


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers decoded once, lower-case names (as ASGI gives them)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}


async def module_endpoint(request: Request) -> Response:
    interface = _INTERFACES.get(request.path_params["interface"].lower())
    facts = module_facts(request.path_params["module"])
    version = request.path_params["version"]
    if interface is None or facts.id in _CONFIGURATION:
        raise not_found(request)
    if not facts.custom and facts.id not in modules_of(version):
        raise OcpiError(StatusCode.CLIENT_ERROR, f"OCPI {version} has no {facts.id} module", 404)
    incoming = request_headers(request)
    platform = await authenticate(request, header=incoming.get("authorization", ""))
    hub = runtime(request)
    snapshot = await hub.registry.snapshot()
    if facts.custom and not _advertised(snapshot, facts.id):
        raise not_found(request)
    method = request.method
    if not facts.allows(interface, method):
        allowed = ", ".join(sorted(facts.methods[interface]))
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            f"the {facts.id} {interface} interface takes {allowed}, not {method}",
            405,
            headers={"Allow": allowed},
        )
    addressing = parse_addressing(incoming, sole_party(platform))
    hop = CURRENT.get()
    if hop is not None:
        hop.module, hop.interface = facts.id, interface
    with answering(hub.party, addressing.sender):
        check_sender(addressing, platform)
        if hop is not None:  # only once the sender is one of the platform's own parties
            hop.sender = "/".join(addressing.sender)
            hop.receiver = "/".join(addressing.receiver) if addressing.receiver else ""
        suffix: str = request.path_params["rest"]
        check_owner(facts, interface, suffix, addressing.sender)
        scenario = classify(addressing, method, interface, hub.party)
        body = await request.body() if method in _WITH_BODY else b""
        if body:
            check_json(body)
            if hop is not None and hub.traffic.keeps_body(facts.id):
                hop.body = hub.traffic.body_of(body)
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        routed = RoutedRequest(
            facts=facts,
            interface=interface,
            method=method,
            platform=platform,
            sender=addressing.sender,
            receiver=addressing.receiver,
            suffix=suffix,
            raw_suffix=raw_suffix(raw_path.decode("latin-1"), suffix),
            query=request.scope["query_string"].decode("latin-1"),
            body=body,
            headers=incoming,
            correlation_id=request.state.correlation_id,
            version=version,
        )
    return answer_response(await hub.dispatcher.route(routed, scenario, snapshot))


routes = [
    Route(
        f"{VERSION_PATH}/{{module}}/{{interface}}{{rest:path}}",
        module_endpoint,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        name="module",
    ),
]
