"""The hub's endpoints of every functional module, and the hub URLs that stand in for
platform URLs (next-page links, CDR locations, response_url callbacks).

Every request takes the same path: authenticate -> routing headers -> decision (pure, from
the registry snapshot) -> forward -> relay the answer. Module differences live in the
module table (hub/modules.py), not here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.access import authenticate
from hub.forwarder import routing_headers
from hub.modules import module_facts
from hub.ocpi.body import check_json
from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import VERSION, InterfaceRole, ModuleID
from hub.ocpi.status import StatusCode
from hub.registry import Platform, Snapshot
from hub.relays import Hop, proxy_response_url
from hub.routing import UNREACHABLE, check_sender, parse_addressing, route_direct
from hub.runtime import Runtime, runtime

_INTERFACES = {"sender": InterfaceRole.SENDER, "receiver": InterfaceRole.RECEIVER}
_CONFIGURATION = {ModuleID.CREDENTIALS, ModuleID.HUB_CLIENT_INFO, "versions"}
_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


def _not_found(request: Request) -> OcpiError:
    return OcpiError(StatusCode.CLIENT_ERROR, f"no such endpoint: {request.url.path}", 404)


def _advertised(snapshot: Snapshot, module: str) -> bool:
    return any(
        p.endpoint(module, role) for p in snapshot.platforms.values() for role in InterfaceRole
    )


async def module_endpoint(request: Request) -> Response:
    interface = _INTERFACES.get(request.path_params["interface"].lower())
    facts = module_facts(request.path_params["module"])
    if interface is None or facts.id in _CONFIGURATION:
        raise _not_found(request)
    platform = await authenticate(request)
    hub = runtime(request)
    snapshot = await hub.registry.snapshot()
    if facts.custom and not _advertised(snapshot, facts.id):
        raise _not_found(request)
    method = request.method
    if not facts.allows(interface, method):
        allowed = ", ".join(sorted(facts.methods[interface]))
        raise OcpiError(
            StatusCode.CLIENT_ERROR,
            f"the {facts.id} {interface} interface takes {allowed}, not {method}",
            405,
            headers={"Allow": allowed},
        )
    addressing = parse_addressing(request.headers)
    reply_to_requester = routing_headers(hub.party, addressing.sender)
    try:
        check_sender(addressing, platform)
        receiver = addressing.receiver
        if receiver is None:
            raise OcpiError(
                StatusCode.UNKNOWN_RECEIVER,
                "no OCPI-to-country-code / OCPI-to-party-id: the hub cannot tell the receiver",
            )
        direct = route_direct(snapshot, facts, interface, receiver)
        body = await request.body() if method in _WITH_BODY else b""
        if body:
            check_json(body)
        hop = Hop(
            module=facts.id,
            interface=interface,
            requester_platform=platform.id,
            requester=addressing.sender,
            receiver_platform=direct.platform.id,
            receiver=receiver,
        )
        query = request.url.query
        carrier = facts.response_url_carrier(interface, method)
        if carrier is not None:
            body, query = await proxy_response_url(hub.relays, carrier, body, query, hop)
        return await _forward(
            hub,
            request,
            direct.platform,
            method,
            direct.url(request.path_params["rest"], query),
            body,
            hop,
        )
    except OcpiError as exc:
        exc.headers = {**reply_to_requester, **exc.headers}
        raise


async def _forward(
    hub: Runtime,
    request: Request,
    target: Platform,
    method: str,
    url: str,
    body: bytes,
    hop: Hop,
) -> Response:
    """Party to Party via Hub: both legs carry from = requester, to = receiver; the answer
    comes back with from = receiver, to = requester."""
    out = hub.forwarder.outgoing_headers(
        request.headers,
        target,
        request.state.correlation_id,
        routing_headers(hop.requester, hop.receiver),
    )
    upstream = await hub.forwarder.call(target, method, url, out, body)
    return await hub.forwarder.relay(upstream, hop, routing_headers(hop.receiver, hop.requester))


def _reachable(snapshot: Snapshot, platform_id: str, party: tuple[str, str]) -> Platform:
    platform = snapshot.platforms.get(platform_id)
    parties = [p for p in snapshot.parties_of(*party) if p.platform_id == platform_id]
    if platform is None or not parties or all(p.status in UNREACHABLE for p in parties):
        raise OcpiError(
            StatusCode.RECEIVER_NOT_CONNECTED, f"receiver {'/'.join(party)} is not connected"
        )
    return platform


async def follow_link(request: Request) -> Response:
    """A next page or CDR location handed out by the hub: only its requester may follow it."""
    platform = await authenticate(request)
    hub = runtime(request)
    link = await hub.relays.resolve_link(request.path_params["relay_id"])
    if link is None or link.hop.requester_platform != platform.id:
        raise OcpiError(StatusCode.CLIENT_ERROR, "unknown or expired link", 404)
    hop = link.hop
    try:
        target = _reachable(await hub.registry.snapshot(), hop.receiver_platform, hop.receiver)
        return await _forward(hub, request, target, "GET", link.url, b"", hop)
    except OcpiError as exc:
        exc.headers = {**routing_headers(hub.party, hop.requester), **exc.headers}
        raise


async def callback(request: Request) -> Response:
    """The receiver's asynchronous result (CommandResult, ChargingProfileResult, ...),
    relayed to the requester's original response_url with the requester's token."""
    platform = await authenticate(request)
    hub = runtime(request)
    found = await hub.relays.resolve_callback(request.path_params["relay_id"])
    if found is None or found.hop.receiver_platform != platform.id:
        raise OcpiError(StatusCode.CLIENT_ERROR, "unknown or expired callback", 404)
    hop = found.hop
    body = await request.body()
    if body:
        check_json(body)
    reverse = Hop(
        module=hop.module,
        interface=hop.interface,
        requester_platform=hop.receiver_platform,
        requester=hop.receiver,
        receiver_platform=hop.requester_platform,
        receiver=hop.requester,
    )
    try:
        target = _reachable(await hub.registry.snapshot(), hop.requester_platform, hop.requester)
        out = hub.forwarder.outgoing_headers(
            request.headers,
            target,
            request.state.correlation_id,
            routing_headers(reverse.requester, reverse.receiver),
        )
        upstream = await hub.forwarder.call(target, "POST", found.response_url, out, body)
        return await hub.forwarder.relay(
            upstream, None, routing_headers(reverse.receiver, reverse.requester)
        )
    except OcpiError as exc:
        exc.headers = {**routing_headers(hub.party, hop.receiver), **exc.headers}
        raise


routes = [
    Route(
        f"/ocpi/{VERSION}/{{module}}/{{interface}}{{rest:path}}",
        module_endpoint,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    ),
    Route("/ocpi/hub/links/{relay_id}", follow_link, methods=["GET"]),
    Route("/ocpi/hub/callbacks/{relay_id}", callback, methods=["POST"]),
]
