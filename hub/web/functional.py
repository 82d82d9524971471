"""The hub's endpoints of every functional module: one endpoint, one path for all of them.

authenticate -> routing headers -> one ``RoutedRequest`` value -> the scenario
(``hub/dispatch.py``) -> the answer. Module differences live in the module table
(hub/routing/modules.py), not here.

The endpoint is a plain ASGI app that answers its own errors: the hub's front calls it
without Starlette's layers (hub/web/app.py), and Starlette's router reaches the same app.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hub.dispatch import Answer
from hub.ocpi.body import check_json
from hub.ocpi.envelope import OcpiError, answering
from hub.ocpi.models import VERSIONS, InterfaceRole, ModuleID, modules_of
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
from hub.runtime import Runtime
from hub.web.access import identify
from hub.web.failures import ANSWERED, failure
from hub.web.responses import answer_response
from hub.web.urls import VERSION_PATH

_INTERFACES = {"sender": InterfaceRole.SENDER, "receiver": InterfaceRole.RECEIVER}
_CONFIGURATION = {ModuleID.CREDENTIALS, ModuleID.HUB_CLIENT_INFO, "versions"}
_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


def not_found(scope: Scope) -> OcpiError:
    return OcpiError(StatusCode.CLIENT_ERROR, f"no such endpoint: {scope['path']}", 404)


def _advertised(snapshot: Snapshot, module: str) -> bool:
    return any(
        p.endpoint(module, role) for p in snapshot.platforms.values() for role in InterfaceRole
    )


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers with lower-case names (as ASGI gives them), decoded once by the
    hub's front (``RequestContext``)."""
    decoded: dict[str, str] = scope["state"]["headers"]
    return decoded


class ModuleEndpoint:
    """The module route's ASGI app (an instance, so that Starlette calls it as one)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = answer_response(await routed(scope, receive))
        except ANSWERED as exc:
            response = await failure(scope, exc)
        await response(scope, receive, send)


async def routed(scope: Scope, receive: Receive) -> Answer:
    params = scope["path_params"]
    interface = _INTERFACES.get(params["interface"].lower())
    facts = module_facts(params["module"])
    version = params["version"]
    if interface is None or facts.id in _CONFIGURATION:
        raise not_found(scope)
    if not facts.custom and facts.id not in modules_of(version):
        raise OcpiError(StatusCode.CLIENT_ERROR, f"OCPI {version} has no {facts.id} module", 404)
    incoming = request_headers(scope)
    hub: Runtime = scope["app"].runtime
    platform = await identify(hub, incoming.get("authorization", ""))
    snapshot = hub.registry.current or await hub.registry.snapshot()
    if facts.custom and not _advertised(snapshot, facts.id):
        raise not_found(scope)
    method: str = scope["method"]
    if not facts.allows(interface, method):
        allowed = ", ".join(sorted(facts.methods[interface]))
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            f"the {facts.id} {interface} interface takes {allowed}, not {method}",
            405,
            headers={"Allow": allowed},
        )
    own = snapshot.own_parties(platform)
    addressing = parse_addressing(incoming, sole_party(own))
    sender, receiver = addressing.sender, addressing.receiver
    hop = CURRENT.get()
    if hop is not None:
        hop.module, hop.interface = facts.id, interface
    with answering(hub.party, sender):
        check_sender(addressing, own)
        if hop is not None:  # only once the sender is one of the platform's own parties
            hop.sender = "/".join(sender)
            hop.receiver = "/".join(receiver) if receiver else ""
        suffix: str = params["rest"]
        check_owner(facts, interface, suffix, sender)
        scenario = classify(addressing, method, interface, hub.party)
        body = await Request(scope, receive).body() if method in _WITH_BODY else b""
        if body:
            check_json(body)
            if hop is not None and hub.traffic.keeps_body(facts.id):
                hop.body = hub.traffic.body_of(body)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        request = RoutedRequest(
            facts=facts,
            interface=interface,
            method=method,
            platform=platform,
            sender=sender,
            receiver=receiver,
            suffix=suffix,
            raw_suffix=raw_suffix(raw_path.decode("latin-1"), suffix),
            query=scope["query_string"].decode("latin-1"),
            body=body,
            headers=incoming,
            correlation_id=scope["state"]["correlation_id"],
            version=version,
        )
    return await hub.dispatcher.route(request, scenario, snapshot)


endpoint = ModuleEndpoint()
route = Route(
    f"{VERSION_PATH}/{{module}}/{{interface}}{{rest:path}}",
    endpoint,
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    name="module",
)
routes = [route]
_ROUTE_METHODS = frozenset(route.methods or ())


def matches(scope: Scope) -> bool:
    """Whether ``route`` takes this request, its path parameters set in ``scope`` if so:
    what ``route.matches`` answers, by splitting the path instead of running the route's
    regex and convertors (a test holds the two to the same answers). Anything unusual (a
    root path, a line break) is left to the route itself."""
    path: str = scope["path"]
    parts = path.split("/", 5)
    if (
        len(parts) < 5
        or parts[1] != "ocpi"
        or parts[2] not in VERSIONS
        or not parts[3]
        or not parts[4]
        or scope["method"] not in _ROUTE_METHODS
        or scope.get("root_path")
        or "\n" in path
    ):
        return False
    scope["path_params"] = {
        "version": parts[2],
        "module": parts[3],
        "interface": parts[4],
        "rest": "/" + parts[5] if len(parts) == 6 else "",
    }
    return True
