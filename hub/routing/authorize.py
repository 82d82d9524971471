"""Real-time authorization of a token the hub has never seen (mod_tokens, "Real-time
authorization"; transport_and_format, "Open Routing Request").

"When an eMSP does not want to Push the full list of tokens to CPOs, the CPOs will need to
call the POST Authorize request": a CPO behind a hub cannot know which eMSP issued an RFID
card it never received. A uid in eMA-ID form names its eMSP; any other unknown uid is asked
of every connected eMSP at once, under a deadline, and the most useful answer is relayed.
"""

from __future__ import annotations

import asyncio
import re

import msgspec

from hub.logs import get_logger
from hub.ocpi.envelope import OcpiError, encode_envelope
from hub.ocpi.headers import routing_headers
from hub.ocpi.models import ConnectionStatus, InterfaceRole, ModuleID, Role
from hub.ocpi.status import StatusCode
from hub.registry.policy import Policy
from hub.registry.records import Party, Platform
from hub.registry.snapshot import Snapshot
from hub.routing.forwarder import Forwarder
from hub.routing.modules import ModuleFacts
from hub.routing.open_routing import RoutingIndex
from hub.routing.request import HubAnswer, RoutedRequest
from hub.routing.urls import join_url

log = get_logger(__name__)

# eMA-ID (eMI3 / ISO 15118 contract id): country, provider id, 9 characters, check digit.
_EMA_ID = re.compile(r"^([A-Za-z]{2})-?([A-Za-z0-9]{3})-?[A-Za-z0-9]{9}(?:-?[A-Za-z0-9])?$")
# mod_tokens AllowedType, most useful first; an unknown token (HTTP 404) comes after all.
_RANK = {"ALLOWED": 0, "BLOCKED": 1, "EXPIRED": 2, "NO_CREDIT": 3, "NOT_ALLOWED": 4}


class _Allowed(msgspec.Struct):
    allowed: str


class _AuthorizationAnswer(msgspec.Struct):
    status_code: int
    data: _Allowed | None = None


_answer = msgspec.json.Decoder(_AuthorizationAnswer)


def is_authorize(facts: ModuleFacts, method: str, suffix: str) -> bool:
    """POST {tokens SENDER}/{uid}/authorize."""
    parts = [p for p in suffix.split("/") if p]
    return (
        facts.id == ModuleID.TOKENS
        and method == "POST"
        and len(parts) == 2
        and parts[1] == "authorize"
    )


def ema_id_owner(snapshot: Snapshot, uid: str) -> tuple[str, str] | None:
    """The eMSP a contract id in eMA-ID form names by its prefix, if it is reachable."""
    match = _EMA_ID.match(uid)
    if match is None:
        return None
    code = (match.group(1).upper(), match.group(2).upper())
    named = [p for p in snapshot.parties_of(*code) if p.role == Role.EMSP]
    return code if any(p.status == ConnectionStatus.CONNECTED for p in named) else None


class Reply(msgspec.Struct, frozen=True):
    """One eMSP's answer: what the requester would get, and how useful it is."""

    party: tuple[str, str]
    http_status: int
    body: bytes
    rank: int  # _RANK, 5 for "unknown token", 6 for a failure


class Authorizer:
    def __init__(
        self,
        forwarder: Forwarder,
        index: RoutingIndex,
        deadline: float,
        hub_party: tuple[str, str],
        policy: Policy,
    ) -> None:
        self.policy = policy
        self.forwarder = forwarder
        self.index = index
        self.deadline = deadline
        self.hub_party = hub_party

    async def ask_all(self, request: RoutedRequest, snapshot: Snapshot, uid: str) -> HubAnswer:
        """The first ALLOWED answer wins at once; otherwise, once all answered or the deadline
        passed, the most informative one (BLOCKED, EXPIRED, NO_CREDIT, NOT_ALLOWED); all
        unknown: HTTP 404 as mod_tokens asks. The owner found is remembered."""
        askable = [
            target
            for target in _emsps(snapshot, request.platform.id)
            if self.policy.allows(snapshot, request.sender, target[0].code, ModuleID.TOKENS)
        ]
        if not askable:
            raise OcpiError(
                StatusCode.UNKNOWN_RECEIVER,
                f"token {uid} is unknown to the hub and no eMSP offers real-time authorization",
            )
        tasks = [asyncio.create_task(self._ask(request, *target)) for target in askable]
        replies: list[Reply] = []
        try:
            async with asyncio.timeout(self.deadline):
                for next_done in asyncio.as_completed(tasks):
                    reply = await next_done
                    replies.append(reply)
                    if reply.rank == 0:
                        break
        except TimeoutError:
            log.info("authorization deadline passed", uid=uid, answered=len(replies))
        finally:
            for task in tasks:
                task.cancel()
        best = min(replies, key=lambda r: r.rank, default=None)
        if best is not None and best.rank < 5:
            await self.index.learn(ModuleID.TOKENS, uid, best.party)
            return HubAnswer(
                best.body, routing_headers(best.party, request.sender), best.http_status
            )
        if best is not None and len(replies) == len(askable) and all(r.rank == 5 for r in replies):
            body = encode_envelope(None, StatusCode.UNKNOWN_TOKEN, f"token {uid} is unknown")
            headers = routing_headers(self.hub_party, request.sender)
            return HubAnswer(body, headers, 404, StatusCode.UNKNOWN_TOKEN)
        missing = len(askable) - len(replies) + sum(r.rank == 6 for r in replies)
        raise OcpiError(
            StatusCode.FORWARD_TIMEOUT,
            f"no eMSP recognised token {uid}; {missing} of {len(askable)} did not answer in time",
        )

    async def _ask(
        self, request: RoutedRequest, party: Party, platform: Platform, endpoint: str
    ) -> Reply:
        receiver = party.code
        out = self.forwarder.outgoing_headers(
            request.headers,
            platform,
            request.correlation_id,
            routing_headers(request.sender, receiver),
        )
        url = join_url(endpoint, request.raw_suffix, request.query)
        try:
            status, _, body = await self.forwarder.fetch(
                platform, "POST", url, out, request.body or None
            )
        except OcpiError:
            return Reply(receiver, 0, b"", 6)
        return Reply(receiver, status, body, _rank(status, body))


def _rank(status: int, body: bytes) -> int:
    if status == 404:
        return 5
    try:
        answer = _answer.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return 6
    if answer.status_code == StatusCode.UNKNOWN_TOKEN:
        return 5
    if answer.data is None:
        return 6
    return _RANK.get(answer.data.allowed, 6)


def _emsps(snapshot: Snapshot, requester_platform: str) -> list[tuple[Party, Platform, str]]:
    """Connected eMSPs whose platform offers the tokens SENDER interface, not the
    requester's own platform, each platform once per party."""
    out: list[tuple[Party, Platform, str]] = []
    for party in sorted(snapshot.parties.values(), key=lambda p: p.key):
        if party.role != Role.EMSP or party.status != ConnectionStatus.CONNECTED:
            continue
        platform = snapshot.platforms.get(party.platform_id or "")
        if platform is None or platform.id == requester_platform:
            continue
        endpoint = platform.endpoint(ModuleID.TOKENS, InterfaceRole.SENDER)
        if endpoint is not None:
            out.append((party, platform, endpoint.url))
    return out
