"""Redis: the client the hub uses, and every key it writes.

``SCHEMA`` is the one list of the hub's keys: name, Redis type, the module that writes it, and
how it is bounded (an expiry, a trim, or the number of platforms and parties). Every key
carries the hash tag ``{hub}`` so that multi-key transactions stay in one hash slot on a
Redis Cluster too. ``tests/test_store.py`` checks that a hub under traffic writes no key
outside this list and that every key said to expire does.
"""

from __future__ import annotations

import fnmatch

import msgspec
import redis.asyncio as aioredis

PREFIX = "{hub}:"


class KeySpec(msgspec.Struct, frozen=True):
    pattern: str  # glob over the key name; ``*`` stands for an id
    type: str  # Redis type
    writer: str  # the module that writes it
    bound: str  # why it cannot grow forever
    expires: bool = False  # every key of this pattern carries a TTL

    def matches(self, key: str) -> bool:
        return fnmatch.fnmatchcase(key, self.pattern)


class Keys:
    """Names of the hub's keys. Registry keys grow with platforms and parties only."""

    platforms = PREFIX + "platforms"
    parties = PREFIX + "parties"
    party_states = PREFIX + "party-states"
    generation = PREFIX + "registry:generation"
    channel = PREFIX + "registry"  # pub/sub channel, not a key
    last_seen = PREFIX + "last-seen"
    alive_checked = PREFIX + "alive-checked"
    clientinfo_queue = PREFIX + "clientinfo-queue"
    broadcast_queue = PREFIX + "broadcast-queue"
    broadcasts = PREFIX + "broadcasts"

    @staticmethod
    def history(field: str) -> str:
        return f"{PREFIX}party-history:{field}"

    @staticmethod
    def alive_lease(platform_id: str) -> str:
        return f"{PREFIX}alive-lease:{platform_id}"

    @staticmethod
    def broadcast(broadcast_id: str) -> str:
        return f"{PREFIX}broadcast:{broadcast_id}"

    @staticmethod
    def deliveries(broadcast_id: str) -> str:
        return f"{PREFIX}broadcast:{broadcast_id}:deliveries"

    @staticmethod
    def relay(kind: str, relay_id: str) -> str:
        return f"{PREFIX}{kind}:{relay_id}"

    @staticmethod
    def walk(walk_id: str) -> str:
        return f"{PREFIX}walk:{walk_id}"

    @staticmethod
    def route(module: str, object_id: str) -> str:
        return f"{PREFIX}route:{module}:{object_id}"


SCHEMA = (
    KeySpec(Keys.platforms, "hash", "registry.writer", "id -> Platform JSON; one per platform"),
    KeySpec(Keys.parties, "hash", "registry.writer", "CC:PID:ROLE -> platform id; one per party"),
    KeySpec(Keys.party_states, "hash", "registry.writer", "CC:PID:ROLE -> PartyState; per party"),
    KeySpec(Keys.generation, "string", "registry.writer", "a counter"),
    KeySpec(Keys.history("*"), "list", "registry.writer", "per party, trimmed to HISTORY"),
    KeySpec(Keys.last_seen, "hash", "registry.registry", "id -> unix time; one per platform"),
    KeySpec(Keys.alive_checked, "hash", "background.alive", "id -> unix time; per platform"),
    KeySpec(Keys.alive_lease("*"), "string", "background.alive", "a lease", expires=True),
    KeySpec(Keys.clientinfo_queue, "stream", "registry.writer", "entries deleted once pushed"),
    KeySpec(Keys.broadcast_queue, "stream", "background.broadcast", "entries deleted once done"),
    KeySpec(Keys.broadcasts, "zset", "background.broadcast", "trimmed to the newest KEEP"),
    KeySpec(Keys.deliveries("*"), "hash", "background.broadcast", "REPORT_TTL", expires=True),
    KeySpec(Keys.broadcast("*"), "hash", "background.broadcast", "REPORT_TTL", expires=True),
    KeySpec(Keys.relay("link", "*"), "string", "routing.relays", "PAGE/LOCATION_TTL", True),
    KeySpec(Keys.relay("callback", "*"), "string", "routing.relays", "CALLBACK_TTL", True),
    KeySpec(Keys.walk("*"), "string", "routing.get_all", "WALK_TTL", expires=True),
    KeySpec(Keys.route("*", "*"), "string", "routing.open_routing", "OPEN_ROUTING_TTL", True),
)


def spec_of(key: str) -> KeySpec | None:
    """The schema entry a key belongs to: the first, most specific, pattern it matches."""
    return next((spec for spec in SCHEMA if spec.matches(key)), None)


def connect(url: str) -> aioredis.Redis:
    """The hub's Redis client.

    ``socket_timeout`` stays off on purpose. redis-py 8 defaults it to 5 s, and with it set,
    every command is sent under ``asyncio.wait_for``. On Python 3.11, ``wait_for`` returns
    normally when a cancel and the send complete at the same moment, so the cancel is lost.
    A background loop cancelled at shutdown then runs on, and the process hangs on exit.
    """
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=None,
        health_check_interval=30,
        decode_responses=False,
    )
