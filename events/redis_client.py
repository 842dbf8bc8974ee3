"""The shared redis-py asyncio client, one per event loop, for state kept in Redis outside the channel layer.

Created on first use in each loop (never at import), like channels-redis's own
connections, because an asyncio Redis connection belongs to the loop that
made it, and closed with that loop (``common.loop_local``). Every Redis client
of the service is made here, with the address, AUTH and TLS options of
``events.redis_config`` (Memorystore with ``--enable-auth`` and in-transit encryption).

With ``REDIS_CLUSTER`` the clients are redis-py's ``RedisCluster``: the address is
the cluster's discovery endpoint, from which the client learns every shard and
sends each command to the primary owning its key's slot. A command's keys (a
script's, a ``MULTI``'s) must then share one slot: ``events.redis_keys`` makes
the hash tags that see to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis.asyncio as redis
from django.conf import settings
from django.core.signals import setting_changed
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, PipelineStrategy, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.loop_local import LoopLocal
from events import redis_config

# Fail fast: a request waiting on a dead Redis should answer 503, not hang.
SOCKET_TIMEOUT_SECONDS = 5.0
# One quick retry rides out a dropped connection (Memorystore failover, idle
# disconnect); redis-py's default of three with backoff kept a request waiting
# seconds on a Redis that is simply down.
RETRY = Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1)


class RedisNotConfigured(RuntimeError):
    """No REDISHOST (development mode without Redis)."""


def is_configured() -> bool:
    """Whether REDISHOST names a Redis; without it callers fall back to in-process state (development mode)."""
    return bool(settings.REDISHOST)


def is_cluster() -> bool:
    """Whether Redis is a Redis Cluster (``REDIS_CLUSTER``): keys spread over shards by slot."""
    return bool(settings.REDIS_CLUSTER)


# Connections one process's client may open (on a cluster: to each node). Beyond, callers wait (up to
# SOCKET_TIMEOUT_SECONDS) for one to come free: redis-py's own pool raises "Too many connections" at its
# 100th instead, which a burst of desktops disconnecting at once (each starting its session's recovery
# window) reached.
MAX_CONNECTIONS = 64
# How often a command waiting for a cluster node's connection to come free looks again.
CLUSTER_WAIT_SECONDS = 0.005


class RedisClusterUnavailable(RedisError):
    """redis-py's cluster client failed outside ``RedisError`` (``RedisClusterException``: no node of the
    discovery endpoint reachable, a slot no node serves, redirections without end): a ``RedisError`` here, so
    every caller that survives Redis being down survives this too."""


class WaitingRedisCluster(RedisCluster):
    """``RedisCluster`` whose commands wait for a connection to a node at its bound, as standalone's
    ``BlockingConnectionPool`` does, instead of failing.

    redis-py's cluster client keeps up to ``max_connections`` per node and raises ``MaxConnectionsError`` when
    a command finds them all busy, before anything is sent (so trying again cannot run a command twice). A
    command here tries again every ``CLUSTER_WAIT_SECONDS`` for up to ``SOCKET_TIMEOUT_SECONDS``, then raises
    it (a ``ConnectionError``, which callers treat as Redis being unavailable). Pipelines are not covered:
    only the admin's reads use them on a cluster, one at a time. A node failing under a pipeline fails what the
    pipeline sent it, not what other pipelines have in flight to other nodes (``_RelearningPipelineStrategy``).
    """

    # The node whose failure made the client learn the layout again, until it has: asked it last.
    failed_node: str | None = None

    async def initialize(self, additional_startup_nodes_info: list | None = None,
                         last_failed_node_name: str | None = None) -> RedisCluster:
        # Commands, pipelines and pub/sub all learn the cluster's layout here first. redis-py asks the nodes in a
        # random order, the failed node last only when told which failed: the command that failed tells it, but
        # whichever command comes first learns the layout, and a node that stopped answering (a hung host) held
        # it, and every command of the client waiting for it, its socket timeout.
        failed = last_failed_node_name or self.failed_node
        try:
            await super().initialize(additional_startup_nodes_info, failed)
        except RedisClusterException as error:
            raise RedisClusterUnavailable(str(error)) from error
        if self.failed_node == failed:
            self.failed_node = None
        return self

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._execute_command(target_node, *args, **kwargs)
        except MaxConnectionsError:
            raise
        except (RedisConnectionError, RedisTimeoutError):  # redis-py learns the layout again: this node asked last
            self.failed_node = target_node.name
            raise

    async def _determine_slot(self, command: str, *args: Any) -> int:
        # FCALL names its keys as EVAL does (function, numkeys, keys...), but redis-py finds them only for
        # EVAL/EVALSHA: for FCALL (a command with "movable keys") it asked the server (COMMAND GETKEYS, the
        # whole command, payload included) before each call, a second round trip per push.
        if isinstance(command, str) and command.upper() in ("FCALL", "FCALL_RO") and len(args) >= 2:
            keys = args[2:2 + int(args[1])]
            if keys:
                slots = {self.keyslot(key) for key in keys}
                if len(slots) != 1:
                    raise RedisClusterException(f"{command} - all keys must map to the same key slot")
                return slots.pop()
        return await super()._determine_slot(command, *args)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        pipeline = super().pipeline(transaction, shard_hint)
        if not transaction:
            pipeline._execution_strategy = _RelearningPipelineStrategy(pipeline)
        return pipeline

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SOCKET_TIMEOUT_SECONDS
        while True:
            try:
                if self._initialize:
                    # Before redis-py routes the command: it picks the node for a key only once it knows the
                    # cluster, and a command routed before that goes to any node and is MOVED. A burst of them
                    # (the first requests on a new client) made it close every connection, commands in flight
                    # included, and send those again: an INCR counted twice.
                    await self.initialize()
                return await super().execute_command(*args, **kwargs)
            except MaxConnectionsError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(CLUSTER_WAIT_SECONDS)
            except RedisClusterException as error:
                raise RedisClusterUnavailable(str(error)) from error


class _RelearningPipelineStrategy(PipelineStrategy):
    """redis-py's cluster pipeline, except when a node's connection fails as it is made, written to or read (a
    primary killed, before its replica takes over; a connection the node dropped): then the pipeline is sent once
    more (the client's ``retry``), what it had not yet had answered, on new connections to its nodes, as redis-py
    does for a single command. A second failure, or a timeout (a node that stopped answering: sending again would
    hold its callers a second ``SOCKET_TIMEOUT_SECONDS``), raises, with the failed node put last and the cluster's
    layout to be learnt again before the next command: its callers answer as when Redis is unavailable. So does
    ``MaxConnectionsError`` (every connection to a node busy), at once and learning nothing: redis-py's pipeline
    took it for the node failing, and learning the layout again makes every connection of the client, to every
    node, again.

    redis-py's own pipeline closed every connection of the client there, to every node, before sending again: that
    failed the commands then in flight to the healthy nodes (sent, their replies never read), so while a primary
    was down the appends to the other shards failed too, often every batch's. Learning the layout again lets
    them finish (the nodes' connections are made again as they come free). The failed node goes last so that
    learning it again asks a live node for its commands (redis-py's ``COMMAND`` on its first primary; that
    failing closed every connection too) and for the layout (``WaitingRedisCluster.failed_node``)."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        if not self._command_queue:
            return []
        client = self._pipe.cluster_client
        targets = [command.kwargs.get("target_nodes") for command in self._command_queue]  # taken by _execute
        retries = client.retry.get_retries()
        try:
            while True:
                if client._initialize:
                    await client.initialize()
                try:
                    return await self._execute(client, self._command_queue, raise_on_error=raise_on_error,
                                               allow_redirections=allow_redirections)
                except MaxConnectionsError:  # the client's own bound on a node's connections: no node failed
                    raise
                except RedisCluster.ERRORS_ALLOW_RETRY as error:
                    nodes = await self._nodes(client, targets)
                    if retries > 0 and not isinstance(error, RedisTimeoutError):
                        # Sent again on the layout known, on new connections to the nodes it went to (as redis-py
                        # does for a single command's node): a connection the node dropped is so ridden out
                        # without learning the layout, and a node down fails it again (refused) before it is.
                        retries -= 1
                        for name in nodes:
                            node = client.get_node(node_name=name)
                            if node is not None:
                                node.update_active_connections_for_reconnect()
                                await node.disconnect_free_connections()
                        for command, target in zip(self._command_queue, targets):
                            if target is not None:  # a WAIT goes again where its appends went
                                command.kwargs["target_nodes"] = target
                        continue
                    if len(nodes) == 1:  # of several, which one failed is not known
                        client.failed_node = nodes.pop()
                        client.nodes_manager.move_node_to_end_of_cached_nodes(client.failed_node)
                    client._initialize = True
                    raise
        finally:
            await self.reset()

    async def _nodes(self, client: RedisCluster, targets: list) -> set[str]:
        """The names of the nodes the queued commands went to (the slot's primary when no target was given)."""
        names = set()
        for command, target in zip(self._command_queue, targets):
            if isinstance(target, ClusterNode):
                names.add(target.name)
                continue
            try:
                slot = await client._determine_slot(*command.args)
                names.add(client.nodes_manager.get_node_from_slot(slot).name)
            except (RedisError, RedisClusterException):
                continue
        return names


def _cluster_options() -> dict[str, Any]:
    options = redis_config.connection_options()
    # A cluster has only database 0 (the start-up checks refuse another with REDIS_CLUSTER).
    options.pop("db", None)
    return options


def _new_cluster_client() -> RedisCluster:
    return WaitingRedisCluster(
        **_cluster_options(),
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=RETRY,
        max_connections=MAX_CONNECTIONS,
    )


def _new_client() -> redis.Redis | RedisCluster:
    if is_cluster():
        return _new_cluster_client()
    client = redis.Redis(
        **redis_config.connection_options(),
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=RETRY,
    )
    # The same connections (address, AUTH, TLS), from a pool that makes callers wait instead of failing.
    made = client.connection_pool
    client.connection_pool = redis.BlockingConnectionPool(
        connection_class=made.connection_class,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_SECONDS,
        **made.connection_kwargs,
    )
    return client


async def _close(client: redis.Redis | RedisCluster) -> None:
    await client.aclose()


def _new_subscriber() -> redis.Redis | RedisCluster:
    # No socket timeout: a subscription sits idle for as long as no event comes, and a read
    # timing out would tear it down (channels-redis issue 422). Its reader pings when idle instead.
    if is_cluster():
        # Its pub/sub connections come from its nodes' pools: a shard's subscription is one connection to
        # that shard's primary (ssubscribe), a classic one a connection to one node.
        return WaitingRedisCluster(
            **_cluster_options(),
            socket_timeout=None,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_keepalive=True,
            retry=RETRY,
            max_connections=MAX_CONNECTIONS,
        )
    return redis.Redis(
        **redis_config.connection_options(),
        socket_timeout=None,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        retry=RETRY,
    )


_clients: LoopLocal[redis.Redis | RedisCluster] = LoopLocal(_new_client, close=_close)
_subscribers: LoopLocal[redis.Redis | RedisCluster] = LoopLocal(_new_subscriber, close=_close)


def get_redis() -> redis.Redis | RedisCluster:
    """The client for the running event loop; ``RedisNotConfigured`` without REDISHOST."""
    if not is_configured():
        raise RedisNotConfigured("REDISHOST is not set")
    return _clients.get()


T = TypeVar("T")


class PerClient(Generic[T]):
    """An object built around the running loop's client (``get_redis()``), made on first use.

    Kept per loop and keyed by the client, and made anew when the client changed: a
    setting change makes new clients (``_reset``), and an object holding the old one
    (registered scripts, say) would talk to a Redis no longer configured. The stored
    client is compared too, so an entry is never handed out for another client that
    happens to have the same id.
    """

    def __init__(self, factory: Callable[[redis.Redis], T]) -> None:
        self._factory = factory
        self._made: LoopLocal[dict[int, tuple[redis.Redis, T]]] = LoopLocal(dict)

    def get(self) -> T:
        """The object for the running loop's client; ``RedisNotConfigured`` without REDISHOST."""
        client = get_redis()
        made = self._made.get()
        entry = made.get(id(client))
        if entry is None or entry[0] is not client:
            entry = made[id(client)] = (client, self._factory(client))
        return entry[1]


def get_subscriber() -> redis.Redis | RedisCluster:
    """The running loop's client for pub/sub subscriptions (no read timeout); ``RedisNotConfigured`` without
    REDISHOST."""
    if not is_configured():
        raise RedisNotConfigured("REDISHOST is not set")
    return _subscribers.get()


async def subscriber_pubsub(*, relearn: bool = False, **options: Any) -> PubSub:
    """A new pub/sub of the running loop's subscriber client.

    On a cluster, redis-py's ``ClusterPubSub``: ``ssubscribe``/``get_sharded_message`` read each shard channel
    from the primary owning its slot; classic ``subscribe``/``psubscribe`` (whose messages the cluster passes to
    every node) use one connection to the primary of the first channel's slot. It picks nodes from the client's
    map of slots, which only a command fills: the client learns the cluster first (``KeyError`` otherwise).
    ``relearn`` after a subscription failed: a failed pub/sub connection does not make the client ask the
    cluster again, so once a primary failed over, every new pub/sub went to the dead node.
    """
    client = get_subscriber()
    if isinstance(client, RedisCluster):
        if relearn:
            client._initialize = True  # redis-py's own flag, as a failed command sets it
        await client.initialize()
    return client.pubsub(**options)


def _reset(*, setting: str, **kwargs) -> None:
    if setting in ("REDISHOST", "REDISPORT") or setting.startswith("REDIS_"):
        _clients.clear()
        _subscribers.clear()


setting_changed.connect(_reset)
