"""The hub's Redis client: one Redis server, a Redis Cluster, or a master Sentinel watches.

``REDIS_MODE`` picks redis-py's own client for each; ``REDIS_URL`` names
- ``standalone``: the server, ``redis://host:port/db`` (or ``rediss://``, ``unix://``);
- ``cluster``: any one node, ``redis://host:port``; the others are discovered;
- ``sentinel``: the sentinels and the service,
  ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``.

Every command, pipeline and transaction step is bounded in time (``_Bounded``), and a
failure to reach Redis becomes ``StoreUnavailable`` (HTTP 503), whatever the mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from hub import metrics
from hub.config import sentinel_address

T = TypeVar("T")
RedisMode = Literal["standalone", "cluster", "sentinel"]


class StoreUnavailable(Exception):
    """Redis did not answer in time or could not be reached: the hub answers 503."""


class NotReplicated(StoreUnavailable):
    """A transaction committed on the master, but too few replicas confirmed it: it may
    not survive a failover. Answered 503 like the rest; the change may stand."""


class _Bounded:
    """Every command, pipeline and transaction step gets ``command_timeout`` seconds.

    ``asyncio.timeout`` cancels the command, and redis-py drops a connection cut off
    mid-command, so a paused or half-open Redis holds a request for one timeout at most.
    (Not ``socket_timeout``: see ``connect``.)
    """

    command_timeout: float = 2.0

    async def _bounded(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.command_timeout):
                return await call
        except TimeoutError:
            metrics.REDIS_ERRORS.inc()
            raise StoreUnavailable(
                f"Redis did not answer within {self.command_timeout:g} s"
            ) from None
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
            redis.exceptions.MasterDownError,
        ) as exc:
            metrics.REDIS_ERRORS.inc()
            raise StoreUnavailable(f"Redis cannot be reached: {exc}") from None


class HubPipeline(_Bounded, aioredis.client.Pipeline):
    # Replicas that must confirm a transaction (WAIT, on its own connection) before it is
    # taken as done: a Sentinel failover keeps what a replica had, nothing else.
    wait_replicas = 0

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await self._bounded(super().execute(raise_on_error))

    async def _execute_transaction(
        self, connection: Any, commands: Any, raise_on_error: bool
    ) -> Any:
        response = await super()._execute_transaction(connection, commands, raise_on_error)
        if self.wait_replicas:
            timeout_ms = max(1, int(self.command_timeout * 500))
            try:
                await connection.send_command("WAIT", self.wait_replicas, timeout_ms)
                confirmed = await connection.read_response()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Not a ConnectionError: redis-py would take it for a lost WATCH, and the
                # writer would run a change that has committed once more.
                await connection.disconnect()
                confirmed = 0
            if confirmed < self.wait_replicas:
                metrics.REDIS_ERRORS.inc()
                raise NotReplicated(
                    f"the change reached Redis but {confirmed} of {self.wait_replicas} "
                    f"replicas confirmed it within {timeout_ms} ms (a failover?)"
                )
        return response

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._bounded(super().immediate_execute_command(*args, **options))


class HubRedis(_Bounded, aioredis.Redis):
    """The hub's client: bounded commands, pipelines of the same kind."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._bounded(super().execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> HubPipeline:
        pipe = HubPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.command_timeout = self.command_timeout
        return pipe


class HubClusterPipeline(_Bounded, ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        return await self._bounded(super().execute(raise_on_error, allow_redirections))


class HubRedisCluster(_Bounded, RedisCluster):
    """The same for a Redis Cluster: redis-py routes each command to its slot's master.
    The hub's multi-key steps (transactions, scripts) keep to one slot by hash tags
    (hub/registry/store.py)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._bounded(super().execute_command(*args, **options))

    def pipeline(
        self, transaction: bool | None = None, shard_hint: Any = None
    ) -> HubClusterPipeline:
        pipe = HubClusterPipeline(self, transaction)
        pipe.command_timeout = self.command_timeout
        return pipe


Client = HubRedis | HubRedisCluster


def connect(
    url: str,
    command_timeout: float = 2.0,
    max_connections: int = 64,
    mode: RedisMode = "standalone",
) -> Any:
    """The hub's Redis client for ``mode`` (a ``HubRedis`` or ``HubRedisCluster``).

    ``socket_timeout`` stays off on purpose. redis-py 8 defaults it to 5 s, and with it set,
    every command is sent under ``asyncio.wait_for``. On Python 3.11, ``wait_for`` returns
    normally when a cancel and the send complete at the same moment, so the cancel is lost.
    A background loop cancelled at shutdown then runs on, and the process hangs on exit.
    Commands are bounded by ``asyncio.timeout`` instead (``_Bounded``).

    A command that meets a connection Redis closed (a restart, a failover) is sent again
    once on a new one; with Sentinel that one goes to whichever server is master now.
    """
    common: dict[str, Any] = {
        "socket_connect_timeout": min(5.0, command_timeout),
        "socket_timeout": None,
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [redis.exceptions.ConnectionError],
    }
    client: Any
    if mode == "cluster":
        client = HubRedisCluster.from_url(
            url, max_connections=max_connections, decode_responses=False, **common
        )
    elif mode == "sentinel":
        sentinels, service, options = sentinel_address(url)
        sentinel = Sentinel(
            sentinels,
            sentinel_kwargs={"socket_connect_timeout": common["socket_connect_timeout"]},
            **options,
            **common,
        )
        client = sentinel.master_for(service, redis_class=HubRedis, max_connections=max_connections)
    else:
        # The pool waits for a free connection (within the command's bound) rather than
        # failing at once when every connection is busy.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,  # the command's own bound applies
            health_check_interval=30,
            **common,
        )
        client = HubRedis(connection_pool=pool, decode_responses=False)
    client.command_timeout = command_timeout
    return client
