"""HubClientInfo (mod_hub_client_info): the hub tells every party who else is reachable.

Every status change is queued in the same Redis transaction that makes it, and pushed once
(whichever hub process takes the entry) to the hubclientinfo RECEIVER endpoint of every
connected platform but the party's own. A push sends the party's status as it is when the
push runs, so pushes that overtake each other still leave every receiver with the latest
state. A newly registered platform first gets the ClientInfo of every party it can see.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec

from hub.background.workqueue import Fields, WorkQueue
from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.body import BadJson, status_code_of
from hub.ocpi.envelope import OcpiError
from hub.ocpi.headers import new_message_id
from hub.ocpi.models import ClientInfo, ConnectionStatus, InterfaceRole, ModuleID
from hub.ocpi.status import StatusCode
from hub.registry.policy import Policy
from hub.registry.records import Party, Platform, parse_party_field
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys
from hub.registry.writer import queue_client_info
from hub.routing.forwarder import Forwarder
from hub.routing.urls import join_url

log = get_logger(__name__)

RETRIES = (0.5, 1.0, 2.0)  # seconds before each retry of a failed push
SYNC_CONCURRENCY = 16  # initial-sync pushes in flight to one new platform


def client_info(party: Party, seen: bool = True) -> ClientInfo:
    """The party as a viewer sees it: PLANNED when the routing policy gives the viewer no
    way to reach it (mod_hub_client_info allows this for "configuration indicating which
    parties have contracts which each other")."""
    return ClientInfo(
        party_id=party.party_id,
        country_code=party.country_code,
        role=party.role.outward,
        status=party.status if seen else ConnectionStatus.PLANNED,
        last_updated=party.last_updated,
    )


class ClientInfoPusher:
    def __init__(
        self, registry: Registry, forwarder: Forwarder, settings: Settings, policy: Policy
    ) -> None:
        self.registry = registry
        self.forwarder = forwarder
        self.policy = policy
        self.queue = WorkQueue(
            registry.redis,
            Keys.clientinfo_queue,
            "push",
            self._handle,
            settings.broadcast_claim_idle,
        )

    async def _handle(self, fields: Fields) -> None:
        # The entry was written with the change; our cached snapshot may predate both.
        snapshot = await self.registry.refresh_if_stale()
        if b"party" in fields:
            party = snapshot.parties.get(parse_party_field(fields[b"party"].decode()))
            if party is not None:
                await self.push(snapshot, party)
        elif b"sync" in fields:
            platform = snapshot.platforms.get(fields[b"sync"].decode())
            if platform is not None:
                await self.sync(snapshot, platform)

    async def push(self, snapshot: Snapshot, party: Party) -> None:
        """The party's ClientInfo to every connected platform but its own, as each sees it."""
        await asyncio.gather(
            *(
                self._put(platform, self._as_seen(snapshot, platform, party))
                for platform in snapshot.platforms.values()
                if platform.id != party.platform_id and snapshot.connected(platform)
            )
        )

    def _as_seen(self, snapshot: Snapshot, viewer: Platform, party: Party) -> ClientInfo:
        return client_info(party, self.policy.sees(snapshot, viewer.id, party.code))

    async def sync(self, snapshot: Snapshot, platform: Platform) -> None:
        """Initial sync: every party the new platform can see, its own excepted."""
        slots = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def one(party: Party) -> None:
            async with slots:
                await self._put(platform, self._as_seen(snapshot, platform, party))

        parties = sorted(snapshot.parties.values(), key=lambda p: p.key)
        await asyncio.gather(*(one(p) for p in parties if p.platform_id != platform.id))

    async def run_agreement_clock(self, tick: float = 1.0) -> None:
        """An agreement that starts or ends by its validity window changes what both parties
        see: queue their ClientInfo once (a key per edge keeps it to one process)."""
        last = datetime.now(UTC)
        while True:
            await asyncio.sleep(tick)
            moment = datetime.now(UTC)
            try:
                await self._agreement_edges(last, moment)
            except Exception as exc:  # Redis away: the next tick tries again
                log.warning("agreement clock failed", error=str(exc))
                continue
            last = moment

    async def _agreement_edges(self, since: datetime, until: datetime) -> None:
        snapshot = await self.registry.snapshot()
        redis = self.registry.redis
        for agreement in snapshot.agreements.values():
            for edge in (agreement.valid_from, agreement.valid_until):
                if edge is None or not since < edge <= until:
                    continue
                key = Keys.agreement_edge(agreement.id, int(edge.timestamp()))
                if not await redis.set(key, "1", nx=True, ex=3600):
                    continue  # another process queued it
                await queue_client_info(redis, snapshot, agreement.parties)

    async def _put(self, platform: Platform, info: ClientInfo) -> None:
        """PUT {hubclientinfo RECEIVER}/{country_code}/{party_id}: a configuration module, so
        no routing headers. Retried with backoff, then logged; never raised."""
        endpoint = platform.endpoint(ModuleID.HUB_CLIENT_INFO, InterfaceRole.RECEIVER)
        if endpoint is None:
            return
        url = join_url(endpoint.url, f"/{info.country_code}/{info.party_id}")
        body = msgspec.json.encode(info)
        error = ""
        for delay in (0.0, *RETRIES):
            await asyncio.sleep(delay)
            out = self.forwarder.outgoing_headers(
                {"Content-Type": "application/json"}, platform, new_message_id(), {}
            )
            try:
                _, _, answer = await self.forwarder.fetch(
                    platform, "PUT", url, out, body, background=True
                )
                status_code = status_code_of(answer)
                if status_code == StatusCode.SUCCESS:
                    return
                error = f"status_code {status_code}"
            except OcpiError as exc:
                error = exc.message
            except BadJson:
                error = "answer is not an OCPI response"
        log.warning(
            "ClientInfo push failed",
            platform_id=platform.id,
            party=f"{info.country_code}/{info.party_id}/{info.role}",
            error=error,
        )
