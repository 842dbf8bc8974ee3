"""The subscription reader on a real Redis Cluster: each primary's connection waited on at once.

redis-py's ``get_sharded_message`` reads a cluster pub/sub's primaries in turn, waiting on each quiet one, so
a busy primary was read only between waits on the others. These tests hold properties of the reader rather
than its speed: reads of redis-py's pub/subs are counted (a spy on redis-py's ``PubSub.get_message``, which
still does the reading), and a read that ends empty is a wait on a quiet connection. Messages that alternate
between two primaries, each published once the previous one arrived, are read with no such wait, and an idle
reader makes no reads at all (no polling). The inbox between the connections' tasks and the reader is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from redis.asyncio import client as redis_asyncio_client
from redis.asyncio.cluster import RedisCluster

from connector.desktops import cluster_reads, subscriptions
from events import history, redis_client
from testing import clients


@pytest.fixture
def on_cluster(settings, redis_cluster):
    settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = redis_cluster.host, redis_cluster.port, True
    return redis_cluster



def channel_on_each_primary(client: RedisCluster, label: str) -> list[str]:
    """A conversation's event channel on each primary, in primary order."""
    found: dict[str, str] = {}
    run = uuid.uuid4().hex[:8]
    number = 0
    while len(found) < len(client.get_primaries()):
        channel = history.channel_name(f"projects/p/conversations/{label}-{run}-{number}")
        found.setdefault(client.get_node_from_key(channel).name, channel)
        number += 1
    return [found[node.name] for node in client.get_primaries()]


class Reads:
    """Counts redis-py's pub/sub reads while installed: all of them, and those that ended with nothing."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        self.empty = 0
        original = redis_asyncio_client.PubSub.get_message

        async def counted(pubsub, *args, **kwargs):
            self.calls += 1
            message = await original(pubsub, *args, **kwargs)
            if message is None:
                self.empty += 1
            return message

        monkeypatch.setattr(redis_asyncio_client.PubSub, "get_message", counted)


class Received:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()

    def __call__(self, channel: str, data: bytes) -> None:
        self.messages.append((channel, data))
        self.arrived.set()

    async def next(self) -> None:
        await asyncio.wait_for(self.arrived.wait(), clients.CLIENT_TIMEOUT)
        self.arrived.clear()


async def nothing_to_restore() -> None:
    raise AssertionError("no connection was lost")


async def test_messages_alternating_between_primaries_are_read_without_waiting_on_a_quiet_one(
        on_cluster, direct, monkeypatch) -> None:
    """Round trips alternating between two primaries (the third quiet): each message is published once the one
    before it was received. Read in turn, one in two would wait out the quiet primary's connection (an empty
    read of 20 ms: about 100 of them, 2 s, for these round trips); read at once, no read ends empty."""
    first, second, quiet = channel_on_each_primary(direct, "alternating")
    received = Received()
    subscription = subscriptions.Subscription("test", logging.getLogger("test"), received=received,
                                              restored=nothing_to_restore)
    try:
        for channel in (first, second, quiet):
            await subscription.subscribe(channel, subscriptions.SHARD)
        publisher = redis_client.get_redis()
        reads = Reads(monkeypatch)
        started = time.monotonic()
        round_trips = 200
        for number in range(round_trips):
            await publisher.spublish((first, second)[number % 2], str(number))
            await received.next()
        print(f"{round_trips} round trips in {time.monotonic() - started:.2f} s, {reads.calls} reads")
        assert received.messages == [((first, second)[n % 2], str(n).encode()) for n in range(round_trips)]
        assert reads.empty == 0
    finally:
        await subscription.close()


async def test_an_idle_reader_makes_no_reads(on_cluster, direct, monkeypatch) -> None:
    """With nothing published, the reader's tasks each wait on their connection: no read begins, where reads
    in turn would begin one every 20 ms."""
    received = Received()
    subscription = subscriptions.Subscription("test", logging.getLogger("test"), received=received,
                                              restored=nothing_to_restore)
    try:
        channels = channel_on_each_primary(direct, "idle")
        for channel in channels:
            await subscription.subscribe(channel, subscriptions.SHARD)
        reads = Reads(monkeypatch)
        await asyncio.sleep(0.5)
        assert reads.calls == 0
        await redis_client.get_redis().spublish(channels[-1], "still read")
        await received.next()
        assert received.messages == [(channels[-1], b"still read")]
    finally:
        await subscription.close()


async def test_a_primary_left_and_subscribed_again_is_read_again(on_cluster, direct) -> None:
    """The last channel on a primary goes (redis-py closes that primary's pub/sub, and its task stops), then a
    channel there is wanted again: the new connection is read, and nothing is taken for a lost subscription."""
    kept, churned, _ = channel_on_each_primary(direct, "left")
    received = Received()
    subscription = subscriptions.Subscription("test", logging.getLogger("test"), received=received,
                                              restored=nothing_to_restore)
    try:
        await subscription.subscribe(kept, subscriptions.SHARD)
        for number in range(20):
            await subscription.subscribe(churned, subscriptions.SHARD)
            await redis_client.get_redis().spublish(churned, str(number))
            await received.next()
            subscription.discard(churned, subscriptions.SHARD)
            await subscription.unsubscribe(churned, subscriptions.SHARD)
        await redis_client.get_redis().spublish(kept, "kept")
        await received.next()
        assert received.messages == [*((churned, str(n).encode()) for n in range(20)), (kept, b"kept")]
    finally:
        await subscription.close()


async def test_past_the_inbox_bound_a_connection_waits_and_nothing_is_lost(on_cluster, direct, monkeypatch) -> None:
    """Nobody takes from the inbox: it fills to its bound and the primary's task stops reading (what Redis sends
    waits in the connection); taken later, every message comes, in order."""
    monkeypatch.setattr(cluster_reads, "INBOX_MESSAGES", 8)
    channel = channel_on_each_primary(direct, "bound")[0]
    pubsub = await redis_client.subscriber_pubsub()
    reads = cluster_reads.ClusterReads(pubsub)
    try:
        await pubsub.ssubscribe(channel)
        reads.follow()
        publisher = redis_client.get_redis()
        for number in range(40):
            await publisher.spublish(channel, str(number))
        await clients.wait_until(reads._inbox.full, what="the inbox to fill")
        assert reads._inbox.qsize() == 8
        deadline = asyncio.get_running_loop().time() + clients.CLIENT_TIMEOUT
        taken = [await reads.get(deadline) for _ in range(41)]
        assert taken[0] is not None and taken[0][0]["type"] == "ssubscribe"
        assert [(read[0]["type"], read[0]["data"]) for read in taken[1:]] == [
            ("smessage", str(n).encode()) for n in range(40)]
    finally:
        await reads.aclose()
        await pubsub.aclose()


async def test_a_dropped_connection_is_caught_up_without_waiting_for_the_idle_check(
        on_cluster, direct, monkeypatch) -> None:
    """Redis drops one primary's pub/sub connection, read by a task while the reader waits on the inbox: the
    task hands on the failure (or, had redis-py made the connection again by itself, the confirmations of its
    subscribing again), so the subscription is made again and caught up (``restored``) at once, not at the
    reader's next idle check (made an hour here); later messages there arrive."""
    monkeypatch.setattr(subscriptions, "IDLE_CHECK_SECONDS", 3600.0)
    channels = channel_on_each_primary(direct, "remade")
    received = Received()
    restored: list[int] = []

    async def catch_up() -> None:
        restored.append(len(received.messages))

    subscription = subscriptions.Subscription("test", logging.getLogger("test"), received=received,
                                              restored=catch_up)
    try:
        for channel in channels:
            await subscription.subscribe(channel, subscriptions.SHARD)
        await direct.execute_command("CLIENT KILL", "TYPE", "pubsub", target_nodes=direct.get_primaries()[0])
        await clients.wait_until(lambda: restored, what="the catch-up")
        assert restored == [0]
        await redis_client.get_redis().spublish(channels[0], "after")
        await received.next()
        assert received.messages == [(channels[0], b"after")]
    finally:
        await subscription.close()
