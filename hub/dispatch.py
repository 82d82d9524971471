"""Message Routing (transport_and_format): one functional-module request through its scenario.

Direct, Broadcast Push, GET All and Open Routing each get the same ``RoutedRequest``; hub URLs
that stand in for platform URLs (next pages, CDR locations, response_url callbacks) are
followed here too. Module differences live in the module table (hub/routing/modules.py),
never here. Nothing in this module knows HTTP framework types: it answers ``Relayed`` (a
receiver's answer) or ``HubAnswer`` (the hub's own).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from hub.background.broadcast import Broadcaster, Job, may_broadcast
from hub.config import Settings
from hub.ocpi.envelope import OcpiError, answering, encode_envelope, now
from hub.ocpi.headers import routing_headers
from hub.ocpi.models import InterfaceRole, ModuleID
from hub.ocpi.status import StatusCode
from hub.registry.records import Platform
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.routing.decide import WRITES, Scenario, reachable, route_direct, sender_role
from hub.routing.forwarder import Forwarder, Relayed
from hub.routing.get_all import GetAll
from hub.routing.open_routing import (
    Lookup,
    RoutingIndex,
    body_facts,
    learned_from,
    open_route_key,
)
from hub.routing.relays import Callback, Hop, Relays, proxy_response_url
from hub.routing.request import HubAnswer, RoutedRequest
from hub.routing.urls import origins

Answer = Relayed | HubAnswer
Detach = Callable[[Coroutine[Any, Any, None]], None]

_BODY_ROUTED = {ModuleID.COMMANDS, ModuleID.CDRS}


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        forwarder: Forwarder,
        relays: Relays,
        index: RoutingIndex,
        broadcaster: Broadcaster,
        get_all: GetAll,
        detach: Detach,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.forwarder = forwarder
        self.relays = relays
        self.index = index
        self.broadcaster = broadcaster
        self.get_all = get_all
        self.detach = detach
        self.hub_party = (settings.country_code, settings.party_id)

    async def route(self, request: RoutedRequest, scenario: Scenario, snapshot: Snapshot) -> Answer:
        """The scenario the routing headers chose; errors answer from the hub."""
        with answering(self.hub_party, request.sender):
            if scenario is Scenario.DIRECT:
                assert request.receiver is not None
                return await self.direct(request, snapshot, request.receiver)
            if scenario is Scenario.BROADCAST:
                return await self.broadcast(request, snapshot)
            if scenario is Scenario.GET_ALL:
                return await self.get_all.page(snapshot, request)
            return await self.open(request, snapshot)

    async def direct(
        self, request: RoutedRequest, snapshot: Snapshot, receiver: tuple[str, str]
    ) -> Relayed:
        facts, interface = request.facts, request.interface
        direct = route_direct(snapshot, facts, interface, receiver)
        hop = Hop(
            module=facts.id,
            interface=interface,
            requester_platform=request.platform.id,
            requester=request.sender,
            receiver_platform=direct.platform.id,
            receiver=receiver,
        )
        body, query = request.body, request.query
        carrier = facts.response_url_carrier(interface, request.method)
        if carrier is not None:
            allowed = origins(request.platform.urls())
            body, query = await proxy_response_url(self.relays, carrier, body, query, hop, allowed)
        self._learn(request, receiver)
        url = direct.url(request.raw_suffix, query)
        return await self._send(
            request.headers, request.correlation_id, direct.platform, request.method, url, body, hop
        )

    async def broadcast(self, request: RoutedRequest, snapshot: Snapshot) -> HubAnswer:
        """Broadcast Push: answered by the hub (from = hub, to = sender), delivered later."""
        settings, facts = self.settings, request.facts
        if not may_broadcast(settings, facts, request.suffix):
            raise OcpiError(
                StatusCode.INVALID_PARAMETERS,
                f"{facts.id}{request.suffix} is not broadcast (broadcast modules: "
                f"{', '.join(settings.broadcast_modules)}); objects that belong to one party, "
                "such as sessions and CDRs, need OCPI-to headers naming the receiver",
            )
        job = Job(
            id=uuid.uuid4().hex,
            module=facts.id,
            method=request.method,
            suffix=request.raw_suffix,
            query=request.query,
            body=request.body,
            content_type=request.content_type,
            sender=request.sender,
            sender_role=sender_role(snapshot, request.platform, request.sender, facts.data_owner),
            sender_platform=request.platform.id,
            correlation_id=request.correlation_id,
            accepted=now(),
        )
        self._learn(request, None)
        reply = routing_headers(self.hub_party, request.sender)
        if not settings.broadcast_wait:
            await self.broadcaster.accept(job)
            return _hub_answer(f"broadcast {job.id} accepted", reply)
        await self.broadcaster.accept(job, queue=False)
        deliveries = await self.broadcaster.deliver(job)
        failed = next((d for d in deliveries if not d.ok), None)
        if failed is None:
            return _hub_answer(
                f"broadcast {job.id} delivered to {len(deliveries)} receivers", reply
            )
        party = f"{failed.country_code}/{failed.party_id}"
        raise OcpiError(
            failed.status_code or StatusCode.HUB_ERROR,
            f"broadcast {job.id}: delivery to {party} failed: {failed.error or failed.status_code}",
        )

    async def open(self, request: RoutedRequest, snapshot: Snapshot) -> Answer:
        """Open Routing Request: the hub finds the receiver from what it has seen, or
        broadcasts a push it may broadcast."""
        facts, interface, method = request.facts, request.interface, request.method
        document = body_facts(request.body) if facts.id in _BODY_ROUTED else None
        key = open_route_key(facts, interface, method, request.suffix, document)
        what = f"{method} {facts.id} {interface}{request.suffix}"
        if isinstance(key, Lookup):
            owners = await self.index.owners(key)
            if owners == []:
                raise OcpiError(
                    StatusCode.UNKNOWN_RECEIVER,
                    f"{key.what} is known from more than one party: name the receiver",
                )
            receiver = next((o for o in owners or [] if o != request.sender), None)
            if receiver is not None:
                return await self.direct(request, snapshot, receiver)
            what = key.what
        elif key is not None:
            return await self.direct(request, snapshot, key)
        if (
            interface == InterfaceRole.RECEIVER
            and method in WRITES
            and may_broadcast(self.settings, facts, request.suffix)
        ):
            return await self.broadcast(request, snapshot)
        raise OcpiError(
            StatusCode.UNKNOWN_RECEIVER,
            f"open routing: the hub cannot tell the receiver of {what}; send OCPI-to headers",
        )

    def _learn(self, request: RoutedRequest, receiver: tuple[str, str] | None) -> None:
        learned = learned_from(request.facts, request.interface, request.method, request.suffix)
        if learned is None:
            return
        module, object_id, owner = learned
        if module == ModuleID.SESSIONS:
            if receiver is not None:
                self.detach(self.index.learn_session(object_id, owner, receiver))
        else:
            self.detach(self.index.learn(module, object_id, owner))

    async def follow(
        self, platform: Platform, relay_id: str, incoming: Mapping[str, str], correlation_id: str
    ) -> Relayed:
        """A next page or CDR location handed out by the hub: only its requester may
        follow it."""
        link = await self.relays.resolve_link(relay_id)
        if link is None or link.hop.requester_platform != platform.id:
            raise OcpiError(StatusCode.CLIENT_ERROR, "unknown or expired link", 404)
        hop = link.hop
        with answering(self.hub_party, hop.requester):
            target = reachable(await self.registry.snapshot(), hop.receiver_platform, hop.receiver)
            return await self._send(incoming, correlation_id, target, "GET", link.url, b"", hop)

    async def callback(self, platform: Platform, relay_id: str) -> Callback:
        """A callback handed to ``platform`` (the receiver of the original request)."""
        found = await self.relays.resolve_callback(relay_id)
        if found is None or found.hop.receiver_platform != platform.id:
            raise OcpiError(StatusCode.CLIENT_ERROR, "unknown or expired callback", 404)
        return found

    async def call_back(
        self, found: Callback, body: bytes, incoming: Mapping[str, str], correlation_id: str
    ) -> Relayed:
        """The receiver's asynchronous result (CommandResult, ChargingProfileResult, ...),
        relayed to the requester's original response_url with the requester's token."""
        back = found.hop.reversed()
        with answering(self.hub_party, back.requester):
            target = reachable(
                await self.registry.snapshot(), back.receiver_platform, back.receiver
            )
            return await self._send(
                incoming, correlation_id, target, "POST", found.response_url, body, back
            )

    async def _send(
        self,
        incoming: Mapping[str, str],
        correlation_id: str,
        target: Platform,
        method: str,
        url: str,
        body: bytes,
        hop: Hop,
    ) -> Relayed:
        """Party to Party via Hub: both legs carry from = requester, to = receiver; the
        answer comes back with from = receiver, to = requester."""
        out = self.forwarder.outgoing_headers(
            incoming, target, correlation_id, routing_headers(hop.requester, hop.receiver)
        )
        upstream = await self.forwarder.call(target, method, url, out, body)
        return await self.forwarder.relay(
            upstream, hop, routing_headers(hop.receiver, hop.requester)
        )


def _hub_answer(message: str, headers: dict[str, str]) -> HubAnswer:
    return HubAnswer(encode_envelope(None, status_message=message), headers)
