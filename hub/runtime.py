"""What one hub process holds while it runs: settings, Redis, the registry, the HTTP client,
and the services built on them. The composition root: everything is wired here, once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from hub import __version__
from hub.background.alive import AliveChecker
from hub.background.broadcast import Broadcaster
from hub.background.clientinfo import ClientInfoPusher
from hub.background.deadletters import DeadLetters
from hub.background.delivery import Services
from hub.background.engine import DeliveryEngine
from hub.background.pushlog import PushLog
from hub.background.roles import RolesKeeper
from hub.background.tasks import cancel_and_wait
from hub.background.workqueue import WorkQueue
from hub.config import Settings
from hub.dispatch import Dispatcher
from hub.logs import get_logger
from hub.ocpi.models import ConnectionStatus
from hub.onboarding.handshake import Handshake
from hub.outbound import GuardedConnector
from hub.registry.client import connect
from hub.registry.events import PlatformEvents
from hub.registry.policy import Policy
from hub.registry.ratelimit import RateLimiter
from hub.registry.records import Platform, confirm_token, retire_old_tokens
from hub.registry.registry import Registry
from hub.registry.traffic import TrafficLog
from hub.registry.writer import RegistryWriter
from hub.routing.forwarder import Forwarder
from hub.routing.get_all import GetAll
from hub.routing.losses import Losses
from hub.routing.open_routing import RoutingIndex
from hub.routing.relays import Lifetimes, Relays
from hub.routing.urls import HubUrls

log = get_logger(__name__)


class Runtime:
    def __init__(self, settings: Settings, urls: HubUrls) -> None:
        self.settings = settings
        self.urls = urls
        # The hub's own (country_code, party_id): OCPI-from of what the hub itself says.
        self.party = (settings.country_code, settings.party_id)
        self.redis: aioredis.Redis = connect(
            settings.redis_url,
            settings.redis_timeout,
            settings.redis_max_connections,
            settings.redis_mode,
        )
        self.registry = Registry(self.redis)
        # Requests of platforms, not the hub's own calls to them (see hub/web/access.py).
        self.limiter = RateLimiter(
            self.redis, settings.rate_limit_per_second, settings.rate_limit_burst
        )
        self.writer = RegistryWriter(
            self.redis, self.registry, self.party, settings.redis_wait_replicas
        )
        self.policy = Policy(settings.routing_policy)
        lifetimes = Lifetimes(
            settings.page_link_ttl, settings.cdr_location_ttl, settings.callback_ttl
        )
        self.relays = Relays(self.redis, urls, lifetimes)
        self.index = RoutingIndex(self.redis, settings.open_routing_ttl)
        self.losses = Losses(self.redis)
        self.events = PlatformEvents(self.redis)
        self.traffic = TrafficLog(
            self.redis,
            settings.traffic_retention,
            settings.traffic_max_entries,
            settings.traffic_bodies,
            settings.traffic_body_max,
        )
        self.http: aiohttp.ClientSession | None = None
        self._forwarder: Forwarder | None = None
        self._broadcaster: Broadcaster | None = None
        self._engine: DeliveryEngine | None = None
        self.dead_letters = DeadLetters(self.redis)
        self._dispatcher: Dispatcher | None = None
        self._handshake: Handshake | None = None
        self._alive: AliveChecker | None = None
        self._reviving: set[str] = set()
        self._retiring: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._detached: set[asyncio.Task[None]] = set()
        self._queues: list[WorkQueue] = []
        self._traffic_task: asyncio.Task[None] | None = None
        # How long shutdown waits for each group of background tasks to end.
        self.stop_grace = 5.0

    @property
    def versions_url(self) -> str:
        return self.urls("versions")

    @property
    def forwarder(self) -> Forwarder:
        assert self._forwarder is not None, "runtime not started"
        return self._forwarder

    @property
    def broadcaster(self) -> Broadcaster:
        assert self._broadcaster is not None, "runtime not started"
        return self._broadcaster

    @property
    def engine(self) -> DeliveryEngine:
        assert self._engine is not None, "runtime not started"
        return self._engine

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "runtime not started"
        return self._dispatcher

    @property
    def handshake(self) -> Handshake:
        assert self._handshake is not None, "runtime not started"
        return self._handshake

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self.http is not None, "runtime not started"
        return self.http

    async def start(self) -> None:
        await self.redis.ping()
        # One pooled session per process; per-request timeouts are set by each caller. Every
        # outbound connection passes its connector: public addresses only, unless
        # OUTBOUND_ALLOW opens more (hub/outbound.py).
        self.http = aiohttp.ClientSession(
            connector=GuardedConnector(
                self.settings.outbound_allow, limit=0, limit_per_host=0, keepalive_timeout=30
            ),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.settings.forward_timeout),
            auto_decompress=False,
            # A cookie one platform sets is no business of the next requester's call to it.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Answers are relayed undecoded and the hub's own calls read plain JSON: no coding
            # is asked for unless a requester asks (its Accept-Encoding replaces this one).
            # Defaults given here, not left out per request (aiohttp's skip_auto_headers
            # rebuilds the headers of every request).
            headers={"Accept-Encoding": "identity", "User-Agent": f"ocpi-hub/{__version__}"},
        )
        self._forwarder = Forwarder(self.http, self.settings, self.relays, self.traffic)
        policy = self.policy
        pusher = ClientInfoPusher(self.registry, self._forwarder, self.settings, policy)
        self._alive = AliveChecker(
            self.redis, self.registry, self.writer, self.http, self.settings, self.traffic
        )
        self._engine = DeliveryEngine(
            Services(
                self.redis,
                self.registry,
                self._forwarder,
                self.settings,
                policy,
                self.party,
                self._alive.check_soon,
                asyncio.Semaphore(self.settings.deliveries_in_flight),
                PushLog(self.redis),
                self.losses,
            )
        )
        self._broadcaster = Broadcaster(
            self.redis, self.registry, self.settings, policy, self._engine.notify
        )
        get_all = GetAll(
            self.redis,
            self.registry,
            self._forwarder,
            self.urls,
            self.party,
            policy,
            self.losses,
            self.settings.get_all_partial,
        )
        self._dispatcher = Dispatcher(
            self.settings,
            self.registry,
            self._forwarder,
            self.relays,
            self.index,
            self._broadcaster,
            get_all,
            policy,
            self.detach,
            self.losses,
        )
        self._handshake = Handshake(
            self.registry, self.writer, self.http, self.settings, self.versions_url, policy
        )
        self._forwarder.on_unreachable = self._alive.check_soon
        ready = asyncio.Event()
        self.spawn(self.registry.run_invalidation(ready))
        async with asyncio.timeout(10):
            await ready.wait()
        self._queues = [pusher.queue]
        for queue in self._queues:
            self.spawn(queue.run())
        self.spawn(self._engine.run())
        self._traffic_task = asyncio.ensure_future(self.traffic.run())
        self.spawn(self._alive.run())
        roles = RolesKeeper(self.redis, self.registry, self._handshake, self.events, self.settings)
        self.spawn(roles.run())
        if not policy.open:
            self.spawn(pusher.run_agreement_clock())

    def revive(self, platform_id: str) -> None:
        """A request from a platform whose parties are OFFLINE: they are back."""
        if platform_id in self._reviving:
            return
        self._reviving.add(platform_id)

        async def mark() -> None:
            try:
                await self.writer.set_status(
                    platform_id, ConnectionStatus.CONNECTED, "request received from the platform"
                )
            finally:
                self._reviving.discard(platform_id)

        self.detach(mark())

    def retire_old_tokens(self, platform_id: str, replaced: frozenset[str]) -> None:
        """The platform called with its new token C: the ``replaced`` tokens (those that
        were retiring then, not any replaced later) stop working, on every process."""
        self._token_write(
            platform_id,
            lambda current: retire_old_tokens(current, replaced),
            "old credentials token retired: the new one was used",
        )

    def confirm_token(self, platform_id: str) -> None:
        """The platform called with the token of a hub update that got no answer."""
        self._token_write(
            platform_id, confirm_token, "credentials token of an unanswered update confirmed"
        )

    def _token_write(
        self, platform_id: str, change: Callable[[Platform], Platform], cause: str
    ) -> None:
        """Once per platform at a time, off the request path (a registry write)."""
        if platform_id in self._retiring:
            return
        self._retiring.add(platform_id)

        async def write() -> None:
            try:
                await self.writer.update(platform_id, change, cause)
            finally:
                self._retiring.discard(platform_id)

        self.detach(write())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A background loop that lives as long as the process."""
        self._tasks.append(asyncio.ensure_future(coro))

    def detach(self, coro: Coroutine[Any, Any, None]) -> None:
        """Work the answer need not wait for (index learning); errors are logged."""
        task = asyncio.ensure_future(coro)
        self._detached.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._detached.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work failed", error=str(task.exception()))

    async def stop(self) -> None:
        """The loops first, so they start nothing new; then the work they started."""
        await cancel_and_wait(self._tasks, self.stop_grace)
        self._tasks.clear()
        for queue in self._queues:
            await queue.stop(self.stop_grace)
        if self._engine is not None:
            await self._engine.stop(self.stop_grace)
        if self._alive is not None:
            await self._alive.stop(self.stop_grace)
        await cancel_and_wait(self._detached, self.stop_grace)
        if self._traffic_task is not None:  # last: it writes what the others recorded
            await cancel_and_wait([self._traffic_task], self.stop_grace)
        if self.http is not None:
            await self.http.close()
        await self.redis.aclose()
