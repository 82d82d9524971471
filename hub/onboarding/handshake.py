"""The credentials handshake (credentials.asciidoc), with the hub on either side.

As Receiver, a platform sends its Credentials and gets the hub's, with token C; as Sender, the
hub registers with a platform that gave an operator its token A. Either way nothing is stored
until every call has succeeded, and a failure leaves the previous state in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import timedelta

import aiohttp
import msgspec

from hub.config import Settings
from hub.logs import get_logger
from hub.ocpi.envelope import OcpiError, now
from hub.ocpi.models import (
    V2_2_1,
    VERSION,
    BusinessDetails,
    Credentials,
    CredentialsRole,
    InterfaceRole,
    ModuleID,
    Role,
)
from hub.ocpi.status import StatusCode
from hub.onboarding.client import Negotiated, PlatformClient
from hub.registry.errors import RegistryError, UnknownPlatform, WrongPlatformState
from hub.registry.policy import Policy
from hub.registry.records import Platform, PlatformState, TokenKind
from hub.registry.registry import Registry
from hub.registry.snapshot import Snapshot
from hub.registry.store import Keys
from hub.registry.tokens import new_token, token_hash
from hub.registry.writer import RegistryWriter

log = get_logger(__name__)


def suspended(platform: Platform) -> Platform:
    """Tokens void both ways; the writer makes the platform's parties SUSPENDED."""
    return msgspec.structs.replace(
        platform, state=PlatformState.SUSPENDED, token_hashes={}, token_b=None
    )


def _registered(platform: Platform, body: Credentials, negotiated: Negotiated) -> Platform:
    """A 2.2.1 hub peer's own HUB entry is kept as its identity, not as a routable party."""
    return msgspec.structs.replace(
        platform,
        state=PlatformState.REGISTERED,
        versions_url=body.url,
        version=negotiated.version,
        endpoints=negotiated.endpoints,
        roles=[r for r in body.roles if r.role != Role.HUB],
        peer_hub=next((r for r in body.roles if r.role == Role.HUB), None),
        token_b=body.token,
    )


def roles_signature(roles: list[CredentialsRole]) -> str:
    """A short digest of a roles list: has the list a platform was given changed?"""
    listed = sorted(f"{r.country_code}/{r.party_id}/{r.role}" for r in roles)
    return hashlib.blake2b("|".join(listed).encode(), digest_size=8).hexdigest()


def _check_registered(platform: Platform) -> None:
    if platform.state != PlatformState.REGISTERED:
        raise WrongPlatformState(f"platform {platform.id} is {platform.state}: not registered")


def _unexpired(platform: Platform) -> dict[str, TokenKind]:
    """Its token hashes without the RETIRING ones whose grace is over: a replaced token
    never comes back to life with a later update."""
    over = platform.retiring_until is None or now() >= platform.retiring_until
    return {
        h: k for h, k in platform.token_hashes.items() if not (k == TokenKind.RETIRING and over)
    }


def check_roles(body: Credentials, version: str) -> None:
    """types "Role": HUB exists in 2.2.1 only (a 2.3.0 hub lists the parties it reaches)."""
    if version != V2_2_1 and any(r.role == Role.HUB for r in body.roles):
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS,
            f"role HUB does not exist in OCPI {version}: list the parties behind the hub",
        )


class Handshake:
    def __init__(
        self,
        registry: Registry,
        writer: RegistryWriter,
        session: aiohttp.ClientSession,
        settings: Settings,
        versions_url: str,
        policy: Policy,
    ) -> None:
        self.policy = policy
        self.registry = registry
        self.writer = writer
        self.session = session
        self.settings = settings
        self.versions_url = versions_url

    def credentials(
        self, snapshot: Snapshot, token: str, for_platform: str, version: str
    ) -> Credentials:
        """The hub's credentials in ``version``.

        2.3.0: itself (role OTHER) first, then every party reachable through it (under the
        agreements policy: that this platform may reach), and ``hub_party_id``. 2.3.0 asks a
        hub to list the parties reachable through it in ``roles``; the hub itself is always
        listed, so ``roles`` is never empty and names the party that broadcasts come from.

        2.2.1 (credentials, "Credentials object"): "A Hub SHALL only reports itself as role:
        Hub": one HUB role and no ``hub_party_id`` (a 2.2.1 field list has none); the
        platform learns the parties through HubClientInfo.
        """
        settings = self.settings
        roles = [
            CredentialsRole(
                role=Role.HUB if version == V2_2_1 else Role.OTHER,
                business_details=BusinessDetails(name=settings.business_name),
                party_id=settings.party_id,
                country_code=settings.country_code,
            )
        ]
        if version == V2_2_1:
            # Its versions URL lists 2.2.1 only: 2.2.1 "VersionNumber" is a closed enum.
            return Credentials(token=token, url=f"{self.versions_url}/{V2_2_1}", roles=roles)
        for platform in sorted(snapshot.platforms.values(), key=lambda p: p.created):
            if platform.id != for_platform and platform.state == PlatformState.REGISTERED:
                roles.extend(
                    msgspec.structs.replace(r, role=r.role.outward)
                    for r in platform.roles
                    if self.policy.sees(snapshot, for_platform, (r.country_code, r.party_id))
                )
        return Credentials(
            token=token, url=self.versions_url, roles=roles, hub_party_id=settings.hub_party_id
        )

    def _client(self, token: str, platform: Platform, correlation_id: str | None) -> PlatformClient:
        return PlatformClient(
            self.session,
            token,
            platform.raw_token,
            self.settings.forward_timeout,
            correlation_id,
        )

    async def exchange(
        self,
        platform: Platform,
        body: Credentials,
        still_valid: Callable[[Platform], bool],
        conflict: OcpiError,
        cause: str,
        correlation_id: str,
        version: str,
        rotating: bool = False,
    ) -> Credentials:
        """Registration and update alike: fetch the platform's endpoints of ``version`` (the
        version whose credentials endpoint it called; the newest both speak if it does not
        offer that one) with its (new) token B, then switch to
        them and to a new token C in one registry write, or change nothing. ``conflict`` is
        raised when ``still_valid`` says another request won. A PUT on the other version's
        endpoint switches the platform's version (credentials, "PUT Method"). ``rotating``
        (a PUT): the tokens C it replaces keep working for ROTATION_GRACE seconds, or until
        the platform uses the new one, so a lost answer does not lock the platform out."""
        client = self._client(body.token, platform, correlation_id)
        negotiated = await client.negotiate(body.url, version)
        check_roles(body, negotiated.version)
        token_c = new_token()

        def switch(current: Platform) -> Platform:
            if not still_valid(current):
                raise conflict
            hashes = {token_hash(token_c): TokenKind.CREDENTIALS}
            until = None
            if rotating and self.settings.rotation_grace > 0:
                retiring = (TokenKind.CREDENTIALS, TokenKind.RETIRING)
                old = {h: k for h, k in _unexpired(current).items() if k in retiring}
                hashes |= dict.fromkeys(old, TokenKind.RETIRING)
                until = now() + timedelta(seconds=self.settings.rotation_grace)
            return msgspec.structs.replace(
                _registered(current, body, negotiated), token_hashes=hashes, retiring_until=until
            )

        updated = await self.writer.update(platform.id, switch, cause)
        log.info(cause, parties=len(updated.roles), version=updated.version)
        snapshot = await self.registry.snapshot()
        ours = self.credentials(snapshot, token_c, platform.id, negotiated.version)
        await self.given(platform.id, ours.roles)
        return ours

    async def rotate(self, platform_id: str, tries: int = 3) -> Platform:
        """The hub as client of a credentials update ("PUT Method"): a new token C for the
        platform, its new token B from the answer, its endpoints fetched again.

        The new token C is valid from before the PUT is sent (the platform may use it at
        once) and stays valid if no answer comes, since the platform may have applied it;
        it replaces the token of an earlier rotation that got no answer, so they never pile
        up. The hub keeps calling with the old token B and sends the PUT again, up to
        ``tries`` times. Once the platform answered, its new token B is kept whatever comes
        after. Then the older tokens C retire under the grace rule. A platform suspended
        meanwhile stays suspended."""
        platform = await self.registry.get(platform_id)
        if platform is None:
            raise UnknownPlatform(platform_id)
        _check_registered(platform)
        endpoint = platform.endpoint(ModuleID.CREDENTIALS, InterfaceRole.SENDER)
        if endpoint is None or not platform.versions_url or not platform.token_b:
            raise WrongPlatformState(f"platform {platform_id} listed no credentials endpoint")
        version = platform.version or VERSION
        token_c = new_token()
        new_hash = token_hash(token_c)

        def add_new(current: Platform) -> Platform:
            _check_registered(current)
            # An earlier update's token the platform never used: it did not take it.
            hashes: dict[str, TokenKind] = {
                h: k for h, k in _unexpired(current).items() if k != TokenKind.UNCONFIRMED
            }
            hashes[new_hash] = TokenKind.UNCONFIRMED
            return msgspec.structs.replace(current, token_hashes=hashes)

        await self.writer.update(platform_id, add_new, "credentials rotation started")
        client = self._client(platform.token_b, platform, None)
        for attempt in range(1, tries + 1):
            ours = self.credentials(await self.registry.snapshot(), token_c, platform_id, version)
            try:
                theirs = await client.call("PUT", endpoint.url, Credentials, ours)
                break
            except OcpiError as exc:
                log.warning(
                    "credentials rotation got no answer; the old token toward the platform "
                    "is kept and the update sent again",
                    platform_id=platform_id,
                    attempt=attempt,
                    error=exc.message,
                )
                if attempt == tries:
                    raise
                await asyncio.sleep(attempt * self.settings.rotation_retry)

        def take_token_b(current: Platform) -> Platform:
            return msgspec.structs.replace(current, token_b=theirs.token)

        try:
            check_roles(theirs, version)
            negotiated = await self._client(theirs.token, platform, None).negotiate(
                theirs.url, version
            )
        except OcpiError:
            # It answered, so it holds our new token and expects its new one from us.
            await self.writer.update(platform_id, take_token_b, "credentials rotation answered")
            raise
        grace = timedelta(seconds=self.settings.rotation_grace)

        def switch(current: Platform) -> Platform:
            _check_registered(current)
            old = {h for h in _unexpired(current) if h != new_hash}
            hashes = {new_hash: TokenKind.CREDENTIALS}
            if grace:
                hashes |= dict.fromkeys(old, TokenKind.RETIRING)
            return msgspec.structs.replace(
                _registered(current, theirs, negotiated),
                token_hashes=hashes,
                retiring_until=now() + grace if grace and old else None,
            )

        rotated = await self.writer.update(platform_id, switch, "credentials rotated by the hub")
        await self.given(platform_id, ours.roles, rotated=True)
        return rotated

    async def given(
        self, platform_id: str, roles: list[CredentialsRole], rotated: bool = False
    ) -> None:
        """Remember which roles list the platform was given, and when (hub/background/roles.py
        sends it the current one when they differ)."""
        moment = time.time()
        redis = self.registry.redis
        previous = await redis.hget(Keys.roles_sent, platform_id)
        rotated_at = moment
        if previous and not rotated:
            rotated_at = float(previous.split()[2])
        value = f"{roles_signature(roles)} {moment} {rotated_at}"
        await redis.hset(Keys.roles_sent, platform_id, value)

    async def tell_suspended(self, platform: Platform) -> str:
        """credentials "Unregistering": "Both parties must end any automated communication":
        DELETE on the platform's credentials endpoint, with the token it gave the hub (taken
        before the suspension voided it). Best effort: the outcome, in words."""
        endpoint = platform.endpoint(ModuleID.CREDENTIALS, InterfaceRole.SENDER)
        if endpoint is None or not platform.token_b:
            return "not told: no credentials endpoint or token known"
        client = self._client(platform.token_b, platform, None)
        try:
            await client.call("DELETE", endpoint.url, object)
        except OcpiError as exc:
            log.warning("suspended platform not told", platform_id=platform.id, error=exc.message)
            return f"DELETE credentials failed: {exc.message}"
        return "DELETE credentials answered"

    async def connect(self, platform_id: str, versions_url: str, token_a: str) -> Platform:
        """The hub as Sender: register with a platform that issued ``token_a`` to the hub.

        The token the platform will call the hub with is valid (for versions and credentials
        only) while the platform handles the POST, since it fetches the hub's versions with it.
        """
        platform = await self.registry.get(platform_id)
        if platform is None:
            raise UnknownPlatform(platform_id)
        if platform.state != PlatformState.PENDING:
            raise WrongPlatformState(
                f"platform {platform_id} is {platform.state}: "
                "connect needs a new (PENDING) platform"
            )
        client = self._client(token_a, platform, None)
        negotiated = await client.negotiate(versions_url)
        token_for_platform = new_token()
        pending_hash = token_hash(token_for_platform)

        def add_pending(current: Platform) -> Platform:
            hashes = {**current.token_hashes, pending_hash: TokenKind.REGISTRATION}
            return msgspec.structs.replace(current, token_hashes=hashes)

        def drop_pending(current: Platform) -> Platform:
            hashes = {k: v for k, v in current.token_hashes.items() if k != pending_hash}
            return msgspec.structs.replace(current, token_hashes=hashes)

        await self.writer.update(platform_id, add_pending)
        try:
            snapshot = await self.registry.snapshot()
            ours = self.credentials(snapshot, token_for_platform, platform_id, negotiated.version)
            theirs = await client.call("POST", negotiated.credentials_url(), Credentials, ours)
            check_roles(theirs, negotiated.version)
        except BaseException:
            # Runs on cancellation too: the pending token must not outlive the attempt.
            await self.writer.update(platform_id, drop_pending)
            raise

        def register(current: Platform) -> Platform:
            registered = _registered(current, theirs, negotiated)
            return msgspec.structs.replace(
                registered,
                versions_url=versions_url,
                token_hashes={pending_hash: TokenKind.CREDENTIALS},
            )

        try:
            updated = await self.writer.update(platform_id, register, "connected by operator")
        except RegistryError:
            # The platform registered the hub, but the hub cannot keep it (a party is taken):
            # undo on their side too, so neither side holds half a connection.
            undo = self._client(theirs.token, platform, None)
            try:
                await undo.call("DELETE", negotiated.credentials_url(), object)
            except OcpiError as exc:
                log.warning("could not undo registration at the platform", error=exc.message)
            await self.writer.update(platform_id, drop_pending)
            raise
        log.info("connected to platform", platform_id=platform_id, parties=len(updated.roles))
        await self.given(platform_id, ours.roles)
        return updated
