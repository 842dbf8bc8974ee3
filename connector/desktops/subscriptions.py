"""One Redis pub/sub connection that stays subscribed: the reader behind the hub and the long-poll wakes.

A ``Subscription`` owns a redis-py ``PubSub`` and its connection, made on the
first subscribe. It sends one SUBSCRIBE or UNSUBSCRIBE at a time, and a
subscribe returns once Redis has confirmed it, so that no later message is
missed. Its reader task hands each published message to the user's
``received`` callback. When the connection is lost, the reader makes it again
with a back-off (``RECONNECT_DELAYS``); redis-py then subscribes again to all
it had, sometimes by itself without an error reaching the reader. Either way,
what was published meanwhile never arrived, so once the connection is back the
reader drops what is no longer wanted and calls the user's ``restored``
callback (the hub catches up from the history; the long-polling pollers wake
every waiting poll) before it reads any later message. An idle connection is
checked with a PING every ``IDLE_CHECK_SECONDS``, so a dead one is noticed.

The kinds of subscription (``CHANNEL``, ``PATTERN``, ``SHARD``: Redis 7's
sharded channels, ``SSUBSCRIBE``, on which conversations' events are
published) differ only in their command and message names. On a standalone
Redis one connection holds all three kinds; on a Redis Cluster a sharded
channel is served by its slot's shard.

On a Redis Cluster (``REDIS_CLUSTER``) the ``PubSub`` is redis-py's cluster
one (``redis_client.subscriber_pubsub``): each sharded channel is read from
the primary owning its slot, one connection per primary, each read by a task
of its own (``cluster_reads``) so that a message on any primary is read as
soon as it arrives; a classic channel or pattern from one node (the cluster
passes every classic message to every node, which is what classic pub/sub
costs there). After any
failure, and when Redis ends a sharded subscription by itself (``SUNSUBSCRIBE``
pushed when its slot moved to another shard, or a failover), the reader makes a
new ``PubSub`` once the client has learned the cluster's layout again,
subscribes to all that is wanted (each channel at its slot's current owner),
and then calls ``restored`` as above: the hub catches up from the history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from connector.desktops.cluster_reads import ClusterReads
from events import metrics, redis_client

RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
# An idle subscription is checked with a PING this often, so a dead connection is noticed.
IDLE_CHECK_SECONDS = 15.0


@dataclass(frozen=True)
class Kind:
    """What is subscribed to: redis-py's method and attribute names, and Redis's message types, for it."""

    subscribe: str  # the PubSub method; also the type of the message confirming it
    unsubscribe: str  # the PubSub method
    published: str  # the type of a message published to it
    held: str  # the PubSub attribute holding what it is subscribed to


CHANNEL = Kind(subscribe="subscribe", unsubscribe="unsubscribe", published="message", held="channels")
PATTERN = Kind(subscribe="psubscribe", unsubscribe="punsubscribe", published="pmessage", held="patterns")
SHARD = Kind(subscribe="ssubscribe", unsubscribe="sunsubscribe", published="smessage", held="shard_channels")
_KINDS = (CHANNEL, PATTERN, SHARD)


class SubscriptionEnded(RedisError):
    """Redis ended a wanted subscription by itself (a sharded channel whose slot moved to another shard)."""


def _text(name: bytes | str) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else name


class Subscription:
    """Channels, patterns and sharded channels held on one Redis connection, read by one task, restored after a
    lost connection."""

    def __init__(self, name: str, logger: logging.Logger, *,
                 received: Callable[[str, bytes], None], restored: Callable[[], Awaitable[None]],
                 log_attempts: bool = True) -> None:
        """``name`` begins its log lines, written to the user's ``logger``; ``received(channel, data)`` takes
        each published message; ``restored()`` runs in the reader once a lost connection is back (when it
        fails, the next attempt runs it again). ``log_attempts``: say, after failed attempts, that the
        subscription is back."""
        self._logger = logger
        self._lost_line = f"{name} lost (%s: %s); reconnecting"
        self._restored_line = f"{name} restored after %s failed attempt(s)" if log_attempts else None
        self._received = received
        self._restored = restored
        self._wanted: dict[Kind, set[str]] = {kind: set() for kind in _KINDS}
        self._pubsub: PubSub | None = None
        self._reads: ClusterReads | None = None  # on a cluster, the tasks reading the pub/sub's connections
        self._reader: asyncio.Task | None = None
        self._confirmations: dict[tuple[Kind, str], asyncio.Future[None]] = {}
        # Sharded channels unsubscribed on the current connection whose SUNSUBSCRIBE Redis has not confirmed yet
        # (how many times each), and what a subscribe to one of them waits for: its confirmations read. Sent
        # before that, an SSUBSCRIBE's channel is dropped from redis-py's bookkeeping when the SUNSUBSCRIBE's
        # confirmation comes (a cluster's pub/sub then closes the primary's connection, ending the subscription;
        # a standalone one would not subscribe to it again after a reconnection).
        self._unsubscribing: dict[str, int] = {}
        self._unsubscribed: dict[str, asyncio.Future[None]] = {}
        self._subscribing = 0  # subscribes whose command is not sent yet
        # On a cluster, the primary ("host:port") whose pub/sub a subscribe is making anew: redis-py may hand it
        # the pooled connection an earlier one of that primary had, whose connect callback is then no remake.
        self._opening: str | None = None
        # One SUBSCRIBE or UNSUBSCRIBE at a time: redis-py's PubSub connects on its first command,
        # and two concurrent first commands would each open a connection of their own.
        self._commands = asyncio.Lock()
        # Set when redis-py made the connection again by itself (its retry re-subscribes without an
        # error reaching the reader): what was published meanwhile must be made up for.
        self._remade = False

    @property
    def started(self) -> bool:
        """Whether a subscribe has made its connection (and it was not closed since)."""
        return self._pubsub is not None

    async def subscribe(self, name: str, kind: Kind = CHANNEL) -> None:
        """Want ``name``, subscribe to it, and return once Redis has confirmed it (or raise, ``TimeoutError``
        after ``EVENT_STORE_TIMEOUT``). It stays wanted when this fails: the caller ``discard``s it."""
        self._wanted[kind].add(name)
        key = (kind, name)
        confirmation = self._confirmations[key] = asyncio.get_running_loop().create_future()
        self._subscribing += 1
        try:
            try:
                if kind is SHARD and name in self._unsubscribed:
                    if self._reader is None or self._reader.done():
                        self._reader = asyncio.create_task(self._read())  # it reads the confirmation
                    try:
                        await asyncio.wait_for(asyncio.shield(self._unsubscribed[name]), settings.EVENT_STORE_TIMEOUT)
                    except TimeoutError:
                        pass  # subscribed anyway: at worst the subscription is remade as if Redis had ended it
                async with self._commands:
                    if self._pubsub is None:
                        # (A cluster's client learns the layout first: its pub/sub picks nodes by slot.)
                        self._use(await redis_client.subscriber_pubsub())
                    self._opening = self._new_primary(name) if kind is SHARD else None
                    try:
                        await getattr(self._pubsub, kind.subscribe)(name)
                    finally:
                        self._opening = None
                        self._watch_connections()
            finally:
                self._subscribing -= 1
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read())
            await asyncio.wait_for(asyncio.shield(confirmation), settings.EVENT_STORE_TIMEOUT)
        finally:
            if self._confirmations.get(key) is confirmation:
                del self._confirmations[key]
            if not confirmation.done():
                # Those waiting in ``confirmed`` fail with this subscribe rather than wait for ever.
                confirmation.set_exception(TimeoutError("the subscription was not confirmed"))
                confirmation.exception()  # retrieved: no "never retrieved" warning when nobody waited

    async def confirmed(self, name: str, kind: Kind = CHANNEL) -> None:
        """Wait for the subscribe of ``name`` under way, if any; raise what it raises."""
        confirmation = self._confirmations.get((kind, name))
        if confirmation is not None:
            await asyncio.shield(confirmation)

    def discard(self, name: str, kind: Kind = CHANNEL) -> None:
        """Stop wanting ``name`` now; Redis hears of it at ``unsubscribe``, or at the next restored connection."""
        self._wanted[kind].discard(name)

    async def unsubscribe(self, name: str, kind: Kind = CHANNEL) -> None:
        """Unsubscribe from a discarded ``name``, unless it is wanted again by the time its command's turn comes."""
        if self._pubsub is None:
            return
        async with self._commands:
            if name in self._wanted[kind]:
                return
            await getattr(self._pubsub, kind.unsubscribe)(name)
            if kind is SHARD:
                self._unsubscribe_sent(name)

    def _use(self, pubsub: PubSub) -> None:
        """Make ``pubsub`` the subscription's; on a cluster, with tasks to read its connections."""
        self._pubsub = pubsub
        self._reads = ClusterReads(pubsub) if self._on_cluster else None

    def _watch_connections(self) -> None:
        """Hear of redis-py making a connection again by itself (``_connection_remade``): the pub/sub's own
        and, on a cluster, each primary's of its sharded channels. Registering again is harmless (once;
        weakly held). On a cluster, read any new connection (a subscribe's confirmation comes on it)."""
        if self._pubsub is None:
            return
        pubsubs = [self._pubsub, *getattr(self._pubsub, "node_pubsub_mapping", {}).values()]
        for pubsub in pubsubs:
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._connection_remade)
        if self._reads is not None:
            self._reads.follow()

    def _new_primary(self, channel: str) -> str | None:
        """On a cluster, the primary owning ``channel`` when this pub/sub holds no connection to it yet."""
        if not self._on_cluster:
            return None
        node = self._pubsub.cluster.get_node_from_key(channel)
        return None if node is None or node.name in self._pubsub.node_pubsub_mapping else node.name

    @property
    def _on_cluster(self) -> bool:
        return hasattr(self._pubsub, "node_pubsub_mapping")

    async def _next_message(self) -> dict | None:
        """The next message, or None after ``IDLE_CHECK_SECONDS`` without one."""
        assert self._pubsub is not None
        if self._reads is None:
            return await self._pubsub.get_message(timeout=IDLE_CHECK_SECONDS)
        # A cluster's connections, each read by its own task: whichever has a message first.
        deadline = asyncio.get_running_loop().time() + IDLE_CHECK_SECONDS
        while True:
            if not self._pubsub.node_pubsub_mapping and self._pubsub.connection is None:
                if self._subscribing:
                    # The last channel was unsubscribed (redis-py closed its primary's connection), and a
                    # subscribe is about to open one.
                    await asyncio.sleep(0.05)
                    return None
                # redis-py closed the last primary's connection (Redis ended its subscriptions) while channels
                # are still held: nothing reads them.
                raise SubscriptionEnded("no connection holds the subscriptions")
            self._reads.follow()
            read = await self._reads.get(deadline)
            if read is None:
                return None
            message, error = read
            if isinstance(error, RuntimeError):
                # A primary's pub/sub whose connection redis-py dropped (after a failure it reports elsewhere):
                # redis-py says "connection not set"; the subscription is made again like a lost one.
                raise SubscriptionEnded(str(error)) from error
            if error is not None:
                raise error
            if message is not None:
                return message
            # A connection's task stopped: redis-py closed that primary's pub/sub, holding no channel now.

    async def _ping(self) -> None:
        """A PING on each connection, so that a dead one is noticed."""
        assert self._pubsub is not None
        if self._pubsub.connection is not None or not self._on_cluster:
            await self._pubsub.ping()
        for pubsub in list(getattr(self._pubsub, "node_pubsub_mapping", {}).values()):
            await pubsub.ping()

    async def _remake(self) -> None:
        """On a cluster, after a failure: a new pub/sub, made once the client has learned the cluster again,
        subscribed to all that is wanted, each sharded channel at its slot's owner now (redis-py's own
        reconnection would subscribe again at the node it knew, which after a failover or a slot's move no
        longer serves it)."""
        async with self._commands:
            old, self._pubsub = self._pubsub, None
            reads, self._reads = self._reads, None
            self._forget_unsubscribes()
            if reads is not None:
                await reads.aclose()
            if old is not None:
                try:
                    await old.aclose()
                except (RedisError, OSError):
                    pass  # its connections are already gone
            pubsub = await redis_client.subscriber_pubsub(relearn=True)
            try:
                for kind in _KINDS:
                    for name in sorted(self._wanted[kind]):
                        await getattr(pubsub, kind.subscribe)(name)
            except BaseException:
                await pubsub.aclose()
                raise
            self._use(pubsub)
            self._watch_connections()
            self._remade = True

    async def close(self) -> None:
        """Stop reading and close the connection."""
        if self._reader is not None:
            self._reader.cancel()
        pubsub, self._pubsub = self._pubsub, None
        reads, self._reads = self._reads, None
        if reads is not None:
            await reads.aclose()
        if pubsub is not None:
            await pubsub.aclose()

    async def _read(self) -> None:
        """Receive every message; reconnect and restore after a lost connection."""
        failures = 0
        cluster = self._on_cluster
        while self._pubsub is not None or (cluster and failures):
            try:
                if failures and cluster:
                    await self._remake()  # sets _remade
                    if self._restored_line is not None:
                        self._logger.warning(self._restored_line, failures)
                    failures = 0
                elif failures:
                    await self._pubsub.connect()  # re-subscribes all it had; sets _remade
                    if self._restored_line is not None:
                        self._logger.warning(self._restored_line, failures)
                    failures = 0
                await self._after_remade_connection()
                if not self._pubsub.subscribed:
                    if not any(self._wanted.values()):
                        self._reader = None  # nothing to read; the next subscribe starts a reader
                        return
                    await asyncio.sleep(0.05)  # a SUBSCRIBE is on its way
                    continue
                message = await self._next_message()
                # Before this message: if the read remade the connection, older events come first.
                await self._after_remade_connection()
                if message is None:
                    await self._ping()
                else:
                    self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                metrics.redis_error("subscription")
                if not failures:
                    self._logger.warning(self._lost_line, type(error).__name__, error)
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                await asyncio.sleep(delay)

    def _unsubscribe_sent(self, name: str) -> None:
        self._unsubscribing[name] = self._unsubscribing.get(name, 0) + 1
        if name not in self._unsubscribed:
            self._unsubscribed[name] = asyncio.get_running_loop().create_future()

    def _unsubscribe_confirmed(self, name: str) -> bool:
        """Count a SUNSUBSCRIBE's confirmation; False when none of ours was waiting for one (Redis ended it)."""
        count = self._unsubscribing.get(name, 0)
        if not count:
            return False
        if count > 1:
            self._unsubscribing[name] = count - 1
            return True
        del self._unsubscribing[name]
        waiting = self._unsubscribed.pop(name, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
        return True

    def _forget_unsubscribes(self) -> None:
        """A new connection: no confirmation of the old one's comes, and nothing is left to wait for."""
        self._unsubscribing.clear()
        for waiting in self._unsubscribed.values():
            if not waiting.done():
                waiting.set_result(None)
        self._unsubscribed.clear()

    def _connection_remade(self, connection: Any) -> None:
        """redis-py's connect callback, after its own re-subscription."""
        if self._opening is not None and f"{connection.host}:{connection.port}" == self._opening:
            return  # a first connection of a new pub/sub, not a lost one made again: nothing was missed
        self._remade = True
        self._forget_unsubscribes()

    async def _after_remade_connection(self) -> None:
        """After the connection was made again: drop what is no longer wanted, then let the user make up
        for what was published while it was down (in the reader, so no later message overtakes it)."""
        if not self._remade:
            return
        self._remade = False
        try:
            await self._drop_stale()
            await self._restored()
        except BaseException:
            self._remade = True  # the next attempt restores instead
            raise

    def _handle(self, message: dict) -> None:
        channel = _text(message["channel"])
        if message["type"] in (SHARD.unsubscribe, SHARD.unsubscribe.encode()) and self._unsubscribe_confirmed(channel):
            return
        if message["type"] in (SHARD.unsubscribe, SHARD.unsubscribe.encode()) and channel in self._wanted[SHARD]:
            # Not ours (``unsubscribe`` sends one only for a channel no longer wanted): Redis moved the
            # channel's slot to another shard, and what is published there no longer reaches this connection.
            raise SubscriptionEnded(f"Redis ended the subscription to {channel!r} (its slot moved)")
        for kind in _KINDS:
            if message["type"] == kind.subscribe:
                confirmation = self._confirmations.get((kind, channel))
                if confirmation is not None and not confirmation.done():
                    confirmation.set_result(None)
                return
            if message["type"] == kind.published:
                self._received(channel, message["data"])
                return

    async def _drop_stale(self) -> None:
        """Unsubscribe what was discarded while Redis was unreachable (its UNSUBSCRIBE failed)."""
        assert self._pubsub is not None
        for kind in _KINDS:
            stale = [name for name in getattr(self._pubsub, kind.held) if _text(name) not in self._wanted[kind]]
            if stale:
                async with self._commands:
                    await getattr(self._pubsub, kind.unsubscribe)(*stale)
                if kind is SHARD:
                    for name in stale:
                        self._unsubscribe_sent(_text(name))
