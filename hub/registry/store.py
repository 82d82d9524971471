"""Redis: every key the hub writes (the client is hub/registry/client.py).

``SCHEMA`` is the one list of the hub's keys: name, Redis type, the module that writes it, and
how it is bounded (an expiry, a trim, or the number of platforms and parties). Every key
carries the hash tag ``{hub}`` so that multi-key transactions stay in one hash slot on a
Redis Cluster too. ``tests/test_store.py`` checks that a hub under traffic writes no key
outside this list and that every key said to expire does.
"""

from __future__ import annotations

import fnmatch

import msgspec

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
    pushes = PREFIX + "pushes"
    push_count = PREFIX + "pushes:count"
    delivery_cursors = PREFIX + "delivery-cursors"
    delivery_cursor_times = PREFIX + "delivery-cursor-times"
    delivery_workers = PREFIX + "delivery-workers"
    dead_letters = PREFIX + "dead-letters"
    roles_sent = PREFIX + "roles-sent"
    roles_lease = PREFIX + "roles-lease"
    agreements = PREFIX + "agreements"
    broadcasts = PREFIX + "broadcasts"
    traffic = PREFIX + "traffic"
    traffic_hops = PREFIX + "traffic:hops"

    @staticmethod
    def quality(platform_id: str, hour: int | str) -> str:
        return f"{PREFIX}quality:{platform_id}:{hour}"

    @staticmethod
    def usage(minute: int | str) -> str:
        return f"{PREFIX}usage:{minute}"

    @staticmethod
    def alive_history(platform_id: str) -> str:
        return f"{PREFIX}alive-history:{platform_id}"

    @staticmethod
    def dashboard_session(digest: str) -> str:
        return f"{PREFIX}dashboard-session:{digest}"

    @staticmethod
    def agreement_edge(agreement_id: str, moment: int) -> str:
        return f"{PREFIX}agreement-edge:{agreement_id}:{moment}"

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
    def delivery_lease(platform_id: str) -> str:
        return f"{PREFIX}delivery-lease:{platform_id}"

    @staticmethod
    def delivery_stats(platform_id: str) -> str:
        return f"{PREFIX}delivery-stats:{platform_id}"

    @staticmethod
    def platform_events(platform_id: str) -> str:
        return f"{PREFIX}platform-events:{platform_id}"

    @staticmethod
    def losses(platform_id: str) -> str:
        return f"{PREFIX}losses:{platform_id}"

    @staticmethod
    def latest(module: str, lane: str) -> str:
        return f"{PREFIX}latest:{module}:{lane}"

    @staticmethod
    def relay(kind: str, relay_id: str) -> str:
        return f"{PREFIX}{kind}:{relay_id}"

    @staticmethod
    def walk(walk_id: str) -> str:
        return f"{PREFIX}walk:{walk_id}"

    @staticmethod
    def route(module: str, object_id: str) -> str:
        return f"{PREFIX}route:{module}:{object_id}"

    @staticmethod
    def rate(platform_id: str) -> str:
        return f"{PREFIX}rate:{platform_id}"


SCHEMA = (
    KeySpec(Keys.platforms, "hash", "registry.writer", "id -> Platform JSON; one per platform"),
    KeySpec(Keys.parties, "hash", "registry.writer", "CC:PID:ROLE -> platform id; one per party"),
    KeySpec(Keys.party_states, "hash", "registry.writer", "CC:PID:ROLE -> PartyState; per party"),
    KeySpec(Keys.generation, "string", "registry.writer", "a counter"),
    KeySpec(Keys.history("*"), "list", "registry.writer", "per party, trimmed to HISTORY"),
    KeySpec(Keys.agreements, "hash", "registry.writer", "id -> Agreement; set by operators"),
    KeySpec(
        PREFIX + "agreement-edge:*",
        "string",
        "background.clientinfo",
        "one per validity edge, an hour",
        expires=True,
    ),
    KeySpec(Keys.last_seen, "hash", "registry.registry", "id -> unix time; one per platform"),
    KeySpec(Keys.alive_checked, "hash", "background.alive", "id -> unix time; per platform"),
    KeySpec(Keys.alive_lease("*"), "string", "background.alive", "a lease", expires=True),
    KeySpec(Keys.clientinfo_queue, "stream", "registry.writer", "entries deleted once pushed"),
    KeySpec(Keys.pushes, "stream", "background.broadcast", "trimmed below every cursor"),
    KeySpec(Keys.push_count, "string", "background.broadcast", "a counter"),
    KeySpec(Keys.delivery_cursors, "hash", "background.delivery", "one per receiver platform"),
    KeySpec(Keys.delivery_cursor_times, "zset", "background.delivery", "one per receiver"),
    KeySpec(Keys.delivery_workers, "zset", "background.engine", "live processes only"),
    KeySpec(Keys.delivery_lease("*"), "string", "background.engine", "a lease", expires=True),
    KeySpec(Keys.delivery_stats("*"), "hash", "background.delivery", "six counters a platform"),
    KeySpec(Keys.dead_letters, "stream", "background.delivery", "capped at DEAD_LETTERS"),
    KeySpec(Keys.roles_sent, "hash", "background.roles", "id -> last roles update; per platform"),
    KeySpec(Keys.roles_lease, "string", "background.roles", "a lease", expires=True),
    KeySpec(Keys.platform_events("*"), "list", "registry.events", "per platform, trimmed to KEEP"),
    KeySpec(Keys.losses("*"), "hash", "routing.losses", "module and field -> count; per platform"),
    KeySpec(Keys.latest("*", "*"), "list", "background.broadcast", "LATEST_TTL", expires=True),
    KeySpec(Keys.broadcasts, "zset", "background.broadcast", "trimmed to the newest KEEP"),
    KeySpec(Keys.deliveries("*"), "hash", "background.broadcast", "REPORT_TTL", expires=True),
    KeySpec(Keys.broadcast("*"), "hash", "background.broadcast", "REPORT_TTL", expires=True),
    KeySpec(Keys.relay("link", "*"), "string", "routing.relays", "PAGE/LOCATION_TTL", True),
    KeySpec(Keys.relay("callback", "*"), "string", "routing.relays", "CALLBACK_TTL", True),
    KeySpec(Keys.walk("*"), "string", "routing.get_all", "WALK_TTL", expires=True),
    KeySpec(Keys.route("sessions", "*"), "hash", "routing.open_routing", "OPEN_ROUTING_TTL", True),
    KeySpec(Keys.route("*", "*"), "string", "routing.open_routing", "OPEN_ROUTING_TTL", True),
    KeySpec(Keys.rate("*"), "hash", "registry.ratelimit", "per platform; until full again", True),
    KeySpec(Keys.traffic, "stream", "registry.traffic", "TRAFFIC_MAX_ENTRIES, TRAFFIC_RETENTION"),
    KeySpec(Keys.traffic_hops, "string", "registry.traffic", "a counter"),
    KeySpec(Keys.quality("*", "*"), "hash", "registry.traffic", "QUALITY_TTL", expires=True),
    KeySpec(Keys.usage("*"), "hash", "registry.traffic", "USAGE_TTL", expires=True),
    KeySpec(Keys.alive_history("*"), "list", "registry.traffic", "per platform, ALIVE_KEEP"),
    KeySpec(Keys.dashboard_session("*"), "string", "web.dashboard", "SESSION_TTL", expires=True),
)


def spec_of(key: str) -> KeySpec | None:
    """The schema entry a key belongs to: the first, most specific, pattern it matches."""
    return next((spec for spec in SCHEMA if spec.matches(key)), None)
