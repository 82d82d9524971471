"""The hub's endpoints of every functional module, and the hub URLs that stand in for
platform URLs (next-page links, CDR locations, response_url callbacks).

Every request takes the same path: authenticate -> routing headers -> decision (pure, from
the registry snapshot) -> forward -> relay the answer. Module differences live in the
module table (hub/modules.py), not here.
"""

from __future__ import annotations

import uuid

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.background.broadcast import Job, may_broadcast
from hub.ocpi.body import check_json
from hub.ocpi.envelope import OcpiError, now, ocpi_response
from hub.ocpi.models import VERSION, InterfaceRole, ModuleID
from hub.ocpi.status import StatusCode
from hub.registry.registry import Platform, Snapshot
from hub.routing.decide import (
    UNREACHABLE,
    WRITES,
    Scenario,
    check_owner,
    check_sender,
    classify,
    parse_addressing,
    raw_suffix,
    route_direct,
    sender_role,
)
from hub.routing.forwarder import routing_headers
from hub.routing.get_all import GetAll
from hub.routing.modules import ModuleFacts, module_facts
from hub.routing.open_routing import Lookup, learned_from, open_route_key
from hub.routing.relays import Hop, origins, proxy_response_url
from hub.runtime import Runtime, runtime
from hub.web.access import authenticate

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
    incoming = request_headers(request)
    platform = await authenticate(request, header=incoming.get("authorization", ""))
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
    addressing = parse_addressing(incoming)
    try:
        check_sender(addressing, platform)
        check_owner(facts, interface, request.path_params["rest"], addressing.sender)
        scenario = classify(addressing, method, interface, hub.party)
        body = await request.body() if method in _WITH_BODY else b""
        if body:
            check_json(body)
        call = Call(
            hub,
            request,
            incoming,
            snapshot,
            platform,
            facts,
            interface,
            method,
            addressing.sender,
            body,
        )
        if scenario is Scenario.DIRECT:
            assert addressing.receiver is not None
            return await call.direct(addressing.receiver)
        if scenario is Scenario.BROADCAST:
            return await call.broadcast()
        if scenario is Scenario.GET_ALL:
            return await GetAll(hub).page(
                snapshot,
                facts,
                platform.id,
                addressing.sender,
                call.query,
                request.state.correlation_id,
            )
        return await call.open()
    except OcpiError as exc:
        exc.headers = {**routing_headers(hub.party, addressing.sender), **exc.headers}
        raise


class Call:
    """One functional-module request on its way through the hub."""

    def __init__(
        self,
        hub: Runtime,
        request: Request,
        incoming: dict[str, str],
        snapshot: Snapshot,
        platform: Platform,
        facts: ModuleFacts,
        interface: InterfaceRole,
        method: str,
        sender: tuple[str, str],
        body: bytes,
    ) -> None:
        self.hub = hub
        self.request = request
        self.incoming = incoming
        self.query = request.scope["query_string"].decode("latin-1")
        self.snapshot = snapshot
        self.platform = platform
        self.facts = facts
        self.interface = interface
        self.method = method
        self.sender = sender
        self.body = body
        self.suffix: str = request.path_params["rest"]  # decoded, for decisions
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        self.raw_suffix = raw_suffix(raw_path.decode("latin-1"), self.suffix)  # forwarded

    async def direct(self, receiver: tuple[str, str]) -> Response:
        direct = route_direct(self.snapshot, self.facts, self.interface, receiver)
        hop = Hop(
            module=self.facts.id,
            interface=self.interface,
            requester_platform=self.platform.id,
            requester=self.sender,
            receiver_platform=direct.platform.id,
            receiver=receiver,
        )
        body, query = self.body, self.query
        carrier = self.facts.response_url_carrier(self.interface, self.method)
        if carrier is not None:
            allowed = origins(self.platform.urls())
            body, query = await proxy_response_url(
                self.hub.relays, carrier, body, query, hop, allowed
            )
        self._learn(receiver)
        url = direct.url(self.raw_suffix, query)
        return await _forward(
            self.hub, self.incoming, self.request, direct.platform, self.method, url, body, hop
        )

    async def broadcast(self) -> Response:
        """Broadcast Push: answered by the hub (from = hub, to = sender), delivered later."""
        settings = self.hub.settings
        if not may_broadcast(settings, self.facts, self.suffix):
            raise OcpiError(
                StatusCode.INVALID_PARAMETERS,
                f"{self.facts.id}{self.suffix} is not broadcast (broadcast modules: "
                f"{', '.join(settings.broadcast_modules)}); objects that belong to one party, "
                "such as sessions and CDRs, need OCPI-to headers naming the receiver",
            )
        owner = self.facts.data_owner
        job = Job(
            id=uuid.uuid4().hex,
            module=self.facts.id,
            method=self.method,
            suffix=self.raw_suffix,
            query=self.query,
            body=self.body,
            content_type=self.incoming.get("content-type"),
            sender=self.sender,
            sender_role=sender_role(self.snapshot, self.platform, self.sender, owner),
            sender_platform=self.platform.id,
            correlation_id=self.request.state.correlation_id,
            accepted=now(),
        )
        self._learn(None)
        broadcaster = self.hub.broadcaster
        reply = routing_headers(self.hub.party, self.sender)
        if not settings.broadcast_wait:
            await broadcaster.accept(job)
            return ocpi_response(None, status_message=f"broadcast {job.id} accepted", headers=reply)
        await broadcaster.accept(job, queue=False)
        deliveries = await broadcaster.deliver(job)
        failed = next((d for d in deliveries if not d.ok), None)
        if failed is None:
            message = f"broadcast {job.id} delivered to {len(deliveries)} receivers"
            return ocpi_response(None, status_message=message, headers=reply)
        party = f"{failed.country_code}/{failed.party_id}"
        raise OcpiError(
            failed.status_code or StatusCode.HUB_ERROR,
            f"broadcast {job.id}: delivery to {party} failed: {failed.error or failed.status_code}",
        )

    async def open(self) -> Response:
        """Open Routing Request: the hub finds the receiver from what it has seen, or
        broadcasts a push it may broadcast."""
        document = _json(self.body) if self.facts.id in _BODY_ROUTED else None
        key = open_route_key(self.facts, self.interface, self.method, self.suffix, document)
        what = f"{self.method} {self.facts.id} {self.interface}{self.suffix}"
        if isinstance(key, Lookup):
            owners = await self.hub.index.owners(key)
            if owners == []:
                raise OcpiError(
                    StatusCode.UNKNOWN_RECEIVER,
                    f"{key.what} is known from more than one party: name the receiver",
                )
            receiver = next((o for o in owners or [] if o != self.sender), None)
            if receiver is not None:
                return await self.direct(receiver)
            what = key.what
        elif key is not None:
            return await self.direct(key)
        if (
            self.interface == InterfaceRole.RECEIVER
            and self.method in WRITES
            and may_broadcast(self.hub.settings, self.facts, self.suffix)
        ):
            return await self.broadcast()
        raise OcpiError(
            StatusCode.UNKNOWN_RECEIVER,
            f"open routing: the hub cannot tell the receiver of {what}; send OCPI-to headers",
        )

    def _learn(self, receiver: tuple[str, str] | None) -> None:
        learned = learned_from(self.facts, self.interface, self.method, self.suffix)
        if learned is None:
            return
        module, object_id, owner = learned
        if module == ModuleID.SESSIONS:
            if receiver is not None:
                self.hub.detach(self.hub.index.learn_session(object_id, owner, receiver))
        else:
            self.hub.detach(self.hub.index.learn(module, object_id, owner))


_BODY_ROUTED = {ModuleID.COMMANDS, ModuleID.CDRS}


def _json(body: bytes) -> object:
    return msgspec.json.decode(body) if body else None


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers decoded once, lower-case names (as ASGI gives them)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}


async def _forward(
    hub: Runtime,
    incoming: dict[str, str],
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
        incoming,
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
        return await _forward(
            hub, request_headers(request), request, target, "GET", link.url, b"", hop
        )
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
    body = await request.body()
    if body:
        check_json(body)
    back = found.hop.reversed()
    try:
        target = _reachable(await hub.registry.snapshot(), back.receiver_platform, back.receiver)
        return await _forward(
            hub, request_headers(request), request, target, "POST", found.response_url, body, back
        )
    except OcpiError as exc:
        exc.headers = {**routing_headers(hub.party, back.requester), **exc.headers}
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
