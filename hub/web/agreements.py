"""Roaming agreements in the admin API, and "why would this request (not) be routed?".

``/admin/agreements``: who may reach whom under ``routing_policy = "agreements"``.
``/admin/routes/explain``: the decision for one pair and module, with its reasons.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.ocpi.models import ModuleID
from hub.registry.policy import RoutingPolicy
from hub.registry.records import Agreement, Party, PartyCode, PartyRef, PublicAgreement
from hub.registry.snapshot import Snapshot
from hub.routing.decide import UNREACHABLE
from hub.web.access import AdminError, require_admin, runtime
from hub.web.admin import read_body, read_query
from hub.web.openapi import AdminRoute
from hub.web.responses import json_response

Module = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PartyText = Annotated[
    str, msgspec.Meta(description="country code and party id: NLCPO, NL/CPO or NL-CPO")
]


class NewAgreement(msgspec.Struct):
    parties: Annotated[list[PartyRef], msgspec.Meta(min_length=2, max_length=2)]
    modules: list[Module] = []
    valid_from: datetime | None = None
    valid_until: datetime | None = None


def party_code(text: str) -> PartyCode:
    """``NLCPO`` or ``NL/CPO`` or ``NL-CPO`` -> ("NL", "CPO"); AdminError otherwise."""
    plain = text.replace("/", "").replace("-", "").upper()
    if len(plain) != 5 or not (plain[:2].isalpha() and plain[2:].isalnum() and plain.isascii()):
        raise AdminError(422, f"{text!r} is not a party: country code and party id, e.g. NLCPO")
    return (plain[:2], plain[2:])


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def add_agreement(request: Request) -> Response:
    """A roaming agreement between two parties, for some modules or all of them."""
    require_admin(request)
    body = await read_body(request, NewAgreement)
    first, second = (p.code for p in body.parties)
    if first == second:
        raise AdminError(422, "an agreement is between two different parties")
    valid_from, valid_until = _utc(body.valid_from), _utc(body.valid_until)
    if valid_from and valid_until and valid_from >= valid_until:
        raise AdminError(422, "valid_from must be before valid_until")
    agreement = Agreement(
        id=secrets.token_hex(8),
        parties=(first, second),
        modules=tuple(sorted({ModuleID.normalize(m) for m in body.modules})),
        valid_from=valid_from,
        valid_until=valid_until,
        created=datetime.now(UTC),
    )
    await runtime(request).writer.add_agreement(agreement)
    return json_response(agreement.public(), 201)


class AgreementsQuery(msgspec.Struct):
    party: PartyText | None = None


async def list_agreements(request: Request) -> Response:
    """Every agreement, or those of ``?party=NLCPO``."""
    require_admin(request)
    query = read_query(request, AgreementsQuery)
    snapshot = await runtime(request).registry.refresh_if_stale()
    code = party_code(query.party) if query.party else None
    rows = sorted(snapshot.agreements.values(), key=lambda a: (a.created, a.id))
    return json_response([a.public() for a in rows if code is None or code in a.parties])


async def get_agreement(request: Request) -> Response:
    """One agreement."""
    require_admin(request)
    snapshot = await runtime(request).registry.refresh_if_stale()
    agreement = snapshot.agreements.get(request.path_params["agreement_id"])
    if agreement is None:
        raise AdminError(404, f"unknown agreement {request.path_params['agreement_id']}")
    return json_response(agreement.public())


async def remove_agreement(request: Request) -> Response:
    """End an agreement at once; the answer is the agreement removed."""
    require_admin(request)
    removed = await runtime(request).writer.remove_agreement(request.path_params["agreement_id"])
    return json_response(removed.public())


class ExplainQuery(msgspec.Struct):
    from_: PartyText = msgspec.field(name="from")
    to: PartyText
    module: str | None = None


class Explanation(msgspec.Struct):
    """Whether a request would be routed, the reasons, and the parties on either side."""

    routed: bool
    policy: RoutingPolicy
    agreement: str | None  # the agreement that allows it
    reasons: list[str]
    from_: list[Party] = msgspec.field(name="from")
    to: list[Party]


async def explain_route(request: Request) -> Response:
    """Would a request be routed now, and why. ``?from=NLCPO&to=DEMSP&module=sessions``: the
    decision for that sender, receiver and module, with its reasons (policy, agreement, party
    states, endpoints)."""
    require_admin(request)
    query = read_query(request, ExplainQuery)
    sender, receiver = party_code(query.from_), party_code(query.to)
    module = ModuleID.normalize(query.module) if query.module else None
    hub = runtime(request)
    snapshot = await hub.registry.refresh_if_stale()
    entitlement = hub.policy.entitled(snapshot, sender, receiver, module)
    reasons = [entitlement.reason]
    receivers = snapshot.parties_of(*receiver)
    reachable = [p for p in receivers if p.status not in UNREACHABLE]
    offers = module is None or any(_offers(snapshot, p.platform_id, module) for p in reachable)
    if not receivers:
        reasons.append(f"{'/'.join(receiver)} is not a party the hub knows (4001)")
    elif not reachable:
        reasons.append(f"{'/'.join(receiver)} is {receivers[0].status} (4003)")
    elif not offers:
        reasons.append(f"{'/'.join(receiver)} offers no {module} endpoint (4000)")
    explanation = Explanation(
        routed=entitlement.allowed and bool(reachable) and offers,
        policy=hub.policy.mode,
        agreement=entitlement.agreement_id,
        reasons=reasons,
        from_=snapshot.parties_of(*sender),
        to=receivers,
    )
    return json_response(explanation)


def _offers(snapshot: Snapshot, platform_id: str | None, module: str) -> bool:
    platform = snapshot.platforms.get(platform_id or "")
    return platform is not None and any(e.identifier == module for e in platform.endpoints)


routes = [
    AdminRoute(
        "/admin/agreements",
        add_agreement,
        methods=["POST"],
        request=NewAgreement,
        response=PublicAgreement,
        status=201,
    ),
    AdminRoute(
        "/admin/agreements",
        list_agreements,
        methods=["GET"],
        query=AgreementsQuery,
        response=list[PublicAgreement],
    ),
    AdminRoute(
        "/admin/agreements/{agreement_id}",
        get_agreement,
        methods=["GET"],
        response=PublicAgreement,
    ),
    AdminRoute(
        "/admin/agreements/{agreement_id}",
        remove_agreement,
        methods=["DELETE"],
        response=PublicAgreement,
    ),
    AdminRoute(
        "/admin/routes/explain",
        explain_route,
        methods=["GET"],
        query=ExplainQuery,
        response=Explanation,
    ),
]
