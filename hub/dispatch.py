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

from hub.background.broadcast import Broadcaster, Job, Report, may_broadcast
from hub.config import Settings
from hub.ocpi.envelope import OcpiError, answering, encode_envelope, now
from hub.ocpi.headers import raw_routing_headers, routing_headers
from hub.ocpi.models import VERSION, InterfaceRole, ModuleID
from hub.ocpi.status import StatusCode
from hub.registry.policy import Policy
from hub.registry.records import Platform
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.routing.authorize import Authorizer, ema_id_owner, is_authorize
from hub.routing.crossing import Crossing, flow, level, translated, untranslated
from hub.routing.decide import (
    WRITES,
    DirectRoutes,
    Scenario,
    check_get_all,
    reachable,
    sender_role,
)
from hub.routing.forwarder import Forwarder, Relayed
from hub.routing.get_all import GetAll
from hub.routing.losses import Losses
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

_BODY_ROUTED = {ModuleID.COMMANDS, ModuleID.CDRS, ModuleID.BOOKINGS}


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
        policy: Policy,
        detach: Detach,
        losses: Losses,
    ) -> None:
        self.losses = losses
        self.policy = policy
        self.settings = settings
        self.registry = registry
        self.forwarder = forwarder
        self.relays = relays
        self.index = index
        self.broadcaster = broadcaster
        self.get_all = get_all
        self.detach = detach
        self.hub_party = (settings.country_code, settings.party_id)
        self.routes = DirectRoutes()
        self.authorizer = Authorizer(
            forwarder, index, settings.authorize_deadline, self.hub_party, policy
        )

    async def route(self, request: RoutedRequest, scenario: Scenario, snapshot: Snapshot) -> Answer:
        """The scenario the routing headers chose; errors answer from the hub."""
        with answering(self.hub_party, request.sender):
            if scenario is Scenario.DIRECT:
                assert request.receiver is not None
                return await self.direct(request, snapshot, request.receiver)
            if scenario is Scenario.BROADCAST:
                return await self.broadcast(request, snapshot)
            if scenario is Scenario.GET_ALL:
                check_get_all(request.facts, request.suffix)
                return await self.get_all.page(snapshot, request)
            return await self.open(request, snapshot)

    async def direct(
        self, request: RoutedRequest, snapshot: Snapshot, receiver: tuple[str, str]
    ) -> Relayed:
        facts, interface = request.facts, request.interface
        if not self.policy.open and snapshot.parties_of(*receiver):
            entitlement = self.policy.entitled(snapshot, request.sender, receiver, facts.id)
            if not entitlement.allowed:
                raise OcpiError(StatusCode.UNKNOWN_RECEIVER, entitlement.reason)
        direct = self.routes(snapshot, facts, interface, receiver)
        theirs = direct.platform.version
        source, target = flow(request.method, request.version, theirs or VERSION)
        reason = untranslated(facts.id, source, target, request.suffix)
        if reason is not None:
            raise OcpiError(
                StatusCode.HUB_ERROR,
                f"receiver {'/'.join(receiver)} speaks OCPI {theirs}: {reason}",
            )
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
            allowed = origins(request.platform.own_urls())
            body, query = await proxy_response_url(self.relays, carrier, body, query, hop, allowed)
        self._learn(request, receiver)
        url = direct.url(request.raw_suffix, query)
        if not translated(facts.id, request.version, theirs):
            return await self._send(
                request.headers, request.correlation_id, direct.platform, request.method, url,
                body, hop,
            )  # fmt: skip
        return await self._crossing(request, direct.platform, receiver, url, body, hop)

    async def _crossing(
        self,
        request: RoutedRequest,
        target: Platform,
        receiver: tuple[str, str],
        url: str,
        body: bytes,
        hop: Hop,
    ) -> Relayed:
        """A direct request between versions: translated there and back; what the
        receiver's or the requester's version cannot hold is named in the answer, logged
        and counted."""
        theirs = target.version or VERSION
        crossing = Crossing(
            request.facts.id,
            level(request.interface, request.suffix),
            request.version,
            theirs,
            "/".join(receiver),
        )
        body = crossing.request(body)
        # The answer is decoded to be translated: it must come uncompressed.
        incoming = {k: v for k, v in request.headers.items() if k != "accept-encoding"}
        relayed = await self._send(
            incoming, request.correlation_id, target, request.method, url, body, hop,
            crossing.answer,
        )  # fmt: skip
        module = request.facts.id
        await self.losses.record(target.id, module, request.version, theirs, crossing.lost_there)
        await self.losses.record(
            request.platform.id, module, theirs, request.version, crossing.lost_back
        )
        return relayed

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
            version=request.version,
        )
        self._learn(request, None)
        reply = routing_headers(self.hub_party, request.sender)
        await self.broadcaster.accept(job, snapshot)
        if not settings.broadcast_wait:
            return _hub_answer(f"broadcast {job.id} accepted", reply)
        # Every delivery is made or given up on by then (DELIVERY_MAX_AGE).
        deadline = settings.delivery_max_age + settings.forward_timeout
        report = await self.broadcaster.wait(job.id, deadline)
        assert report is not None, "a report is kept for REPORT_TTL"
        return _hub_answer(delivery_summary(report), reply)

    async def open(self, request: RoutedRequest, snapshot: Snapshot) -> Answer:
        """Open Routing Request: the hub finds the receiver from what it has seen, asks every
        eMSP about a token it has never seen, or broadcasts a push it may broadcast."""
        facts, interface, method = request.facts, request.interface, request.method
        document = body_facts(request.body) if facts.id in _BODY_ROUTED else None
        key = open_route_key(facts, interface, method, request.suffix, document)
        what = f"{method} {facts.id} {interface}{request.suffix}"
        if isinstance(key, Lookup):
            owners = await self.index.owners(key, request.sender)
            if owners and not self.policy.open:
                owners = [
                    o for o in owners if self.policy.allows(snapshot, request.sender, o, facts.id)
                ] or None  # the hub knows no owner this requester may reach
            if owners is not None and len(owners) > 1:
                raise OcpiError(
                    StatusCode.UNKNOWN_RECEIVER,
                    f"{key.what} is known from more than one party: name the receiver",
                )
            if owners:
                return await self.direct(request, snapshot, owners[0])
            if owners is None and is_authorize(facts, method, request.suffix):
                named = ema_id_owner(snapshot, key.id)
                if named is not None:
                    return await self.direct(request, snapshot, named)
                return await self.authorizer.ask_all(request, snapshot, key.id)
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
            if not translated(hop.module, target.version, platform.version):
                return await self._send(incoming, correlation_id, target, "GET", link.url, b"", hop)
            # A next page or a CDR across versions: translated like the first answer was.
            ours, theirs = platform.version or VERSION, target.version or VERSION
            crossing = Crossing(hop.module, 1, ours, theirs, "/".join(hop.receiver))
            plain = {k: v for k, v in incoming.items() if k != "accept-encoding"}
            relayed = await self._send(
                plain, correlation_id, target, "GET", link.url, b"", hop, crossing.answer
            )
            await self.losses.record(platform.id, hop.module, theirs, ours, crossing.lost_back)
            return relayed

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
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> Relayed:
        """Party to Party via Hub: both legs carry from = requester, to = receiver; the
        answer comes back with from = receiver, to = requester."""
        out = self.forwarder.outgoing_headers(
            incoming, target, correlation_id, routing_headers(hop.requester, hop.receiver)
        )
        upstream = await self.forwarder.call(
            target, method, url, out, body, module=hop.module, relayed=True
        )
        return await self.forwarder.relay(
            upstream, hop, raw_routing_headers(hop.receiver, hop.requester), rewrite
        )


def delivery_summary(report: Report) -> str:
    """BROADCAST_WAIT's answer. status_codes "4xxx": a receiver's error is not forwarded to
    the sender of a Broadcast Push, so its code never becomes the sender's: 1000, and the
    failures named here. A push merged into a later one, or identical to what a receiver
    already had, reached it too."""
    reached = report.delivered + report.coalesced + report.dropped
    message = f"broadcast {report.id} delivered to {reached} of {report.receivers} receivers"
    failed = [d for d in report.deliveries if not d.ok]
    if failed:
        message += "; failed: " + "; ".join(
            f"{d.country_code}/{d.party_id} {d.status_code}: {d.error or 'refused'}" for d in failed
        )
    if report.finished is None:
        message += "; some deliveries are still under way"
    return message


def _hub_answer(message: str, headers: dict[str, str]) -> HubAnswer:
    return HubAnswer(encode_envelope(None, status_message=message), headers)
