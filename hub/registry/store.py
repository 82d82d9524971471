"""Redis: the client the hub uses and the names of its keys.

Every key carries the hash tag ``{hub}`` so that multi-key transactions stay in one hash slot
on a Redis Cluster too.
"""

from __future__ import annotations

import redis.asyncio as aioredis

PREFIX = "{hub}:"


class Keys:
    platforms = PREFIX + "platforms"  # hash: platform id -> Platform JSON
    parties = PREFIX + "parties"  # hash: "CC:PID:ROLE" -> platform id
    generation = PREFIX + "registry:generation"  # counter bumped by every registry write
    channel = PREFIX + "registry"  # pub/sub: registry changed, drop caches
    last_seen = PREFIX + "last-seen"  # hash: platform id -> unix time of its last request
    party_states = PREFIX + "party-states"  # hash: "CC:PID:ROLE" -> PartyState JSON
    clientinfo_queue = PREFIX + "clientinfo-queue"  # stream: parties whose ClientInfo changed
    alive_checked = PREFIX + "alive-checked"  # hash: platform id -> unix time of last check

    @staticmethod
    def history(field: str) -> str:
        return f"{PREFIX}party-history:{field}"


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
