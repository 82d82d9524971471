"""Keeping each platform's view of the hub's roles current, and scheduled token rotation.

2.3.0 asks a hub to list the parties reachable through it in its credentials ``roles``, but
a platform reads that list only in a credentials exchange. A 2.3.0 platform that does not
take HubClientInfo would never learn of parties that join later, so when the list it would
get now differs from the one it was last given, the hub sends it a credentials update (a PUT,
hub/onboarding/handshake.py ``rotate``: a new token under the grace rule) at most once per
ROLES_UPDATE_INTERVAL seconds however many changes, a few platforms at a time. Platforms that
take ClientInfo learn parties that way and are left alone (ROLES_UPDATE_CLIENTINFO).

With ROTATION_INTERVAL set, every platform's tokens are rotated that often (the spec advises
monthly). One process does this at a time (a lease).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as aioredis

from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.models import V2_2_1, VERSION, InterfaceRole, ModuleID
from hub.onboarding.handshake import Handshake, roles_signature
from hub.registry.errors import RegistryError
from hub.registry.events import PlatformEvent, PlatformEvents
from hub.registry.records import Platform, PlatformState
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys

log = get_logger(__name__)

AT_ONCE = 4  # platforms updated at the same time


class RolesKeeper:
    def __init__(
        self,
        redis: aioredis.Redis,
        registry: Registry,
        handshake: Handshake,
        events: PlatformEvents,
        settings: Settings,
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.handshake = handshake
        self.events = events
        self.settings = settings
        self.owner = uuid.uuid4().hex  # this process, as holder of the lease
        self.slots = asyncio.Semaphore(AT_ONCE)

    LEASE = 120.0  # seconds: outlives a few rotations (three tries each), renewed before each

    @property
    def tick(self) -> float:
        intervals = [self.settings.roles_update_interval, self.settings.rotation_interval]
        return min(5.0, *(i / 4 for i in intervals if i > 0))

    async def run(self) -> None:
        if self.settings.roles_update_interval <= 0 and self.settings.rotation_interval <= 0:
            return
        while True:
            try:
                if (
                    await self.redis.set(
                        Keys.roles_lease, self.owner, nx=True, px=int(self.tick * 3000)
                    )
                    or await self.redis.get(Keys.roles_lease) == self.owner.encode()
                ):
                    await self.redis.pexpire(Keys.roles_lease, int(self.tick * 3000))
                    await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("roles updates unavailable", error=str(exc))
            await asyncio.sleep(self.tick)

    async def _holding(self) -> bool:
        """Take or renew the lease; False while another process holds it."""
        lease_ms = int(self.LEASE * 1000)
        if await self.redis.set(Keys.roles_lease, self.owner, nx=True, px=lease_ms):
            return True
        if await self.redis.get(Keys.roles_lease) != self.owner.encode():
            return False
        await self.redis.pexpire(Keys.roles_lease, lease_ms)
        return True

    async def _round(self) -> None:
        snapshot = await self.registry.refresh_if_stale()
        raw = await self.redis.hgetall(Keys.roles_sent)
        sent = {k.decode(): v.decode() for k, v in raw.items()}
        moment = time.time()
        due = []
        for platform in snapshot.platforms.values():
            if platform.state != PlatformState.REGISTERED:
                continue
            signature = self._signature(snapshot, platform)
            last_signature, last_roles, last_rotation = _parse(sent.get(platform.id))
            if last_signature is None:  # not known what it was given: send it the list now
                await self._remember(platform.id, "-", 0.0, moment)
                last_signature, last_roles, last_rotation = "-", 0.0, moment
            rotation = self.settings.rotation_interval
            if rotation > 0 and moment - last_rotation >= rotation:
                due.append((platform, "rotate"))
            elif (
                signature is not None
                and signature != last_signature
                and 0 < self.settings.roles_update_interval <= moment - last_roles
            ):
                due.append((platform, "update"))
        await asyncio.gather(*(self._update(p, why) for p, why in due))

    def _signature(self, snapshot: Snapshot, platform: Platform) -> str | None:
        """What the platform's roles list would be now; None when it is not kept current
        (2.2.1: the hub lists only itself; one taking ClientInfo, unless asked)."""
        version = platform.version or VERSION
        takes_clientinfo = (
            platform.endpoint(ModuleID.HUB_CLIENT_INFO, InterfaceRole.RECEIVER) is not None
        )
        if version == V2_2_1 or (takes_clientinfo and not self.settings.roles_update_clientinfo):
            return None
        return roles_signature(self.handshake.credentials(snapshot, "", platform.id, version).roles)

    async def _update(self, platform: Platform, why: str) -> None:
        async with self.slots:
            if not await self._holding():  # another process took over: it decides now
                return
            try:
                updated = await self.handshake.rotate(platform.id)
            except (OcpiError, RegistryError) as exc:
                await self.events.record(platform.id, PlatformEvent(now(), why, "hub", exc.message))
                _, _, last_rotation = _parse(
                    (await self.redis.hget(Keys.roles_sent, platform.id) or b"").decode() or None
                )
                # Tried now: the next try of either kind waits a whole interval, and the list
                # it was last given is still the old one.
                moment = time.time()
                rotated_at = moment if why == "rotate" else last_rotation
                await self._remember(platform.id, "-", moment, rotated_at)
                return
            detail = "roles changed" if why == "update" else "scheduled rotation"
            event = PlatformEvent(now(), why, "hub", "ok", updated.version, detail)
            await self.events.record(platform.id, event)  # rotate() remembered the roles

    async def _remember(
        self, platform_id: str, signature: str | None, roles_at: float, rotated_at: float
    ) -> None:
        value = f"{signature or '-'} {roles_at} {rotated_at}"
        await self.redis.hset(Keys.roles_sent, platform_id, value)


def _parse(value: str | None) -> tuple[str | None, float, float]:
    """(signature last given, when roles were last sent, when tokens were last rotated)."""
    if not value:
        return None, 0.0, 0.0
    signature, roles_at, rotated_at = value.split()
    return signature, float(roles_at), float(rotated_at)
