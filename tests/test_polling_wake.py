"""A long-poll waiting on one connector process is woken by a POST on another, over sharded pub/sub, on a
standalone Redis and on a Redis Cluster.

The wake is an ``SPUBLISH`` on the session's own channel (in its keys' slot), which each process holding a
poller of the session reads through one ``SSUBSCRIBE`` made with the poller and dropped with it; no classic
pattern subscription is left (a cluster would broadcast its messages to every node). The ping interval is
far longer than the client's timeout, so a poll that was not woken would not answer in time. On a cluster, a
wake channel whose slot moves is subscribed again at its new owner.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from connector.desktops.polling.waiting import Pollers
from connector.desktops.subscriptions import SHARD, Subscription
from events import redis_client
from testing import clients, cluster_layout, processes
from testing.engineio_polling import connected_session, session_url

PROJECT = processes.TEST_PROJECT
SLOW_PING = {"SOCKETIO_PING_INTERVAL": "25", "SOCKETIO_PING_TIMEOUT": "5"}


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def store(request) -> processes.RedisAddress | processes.RedisClusterAddress:
    return request.getfixturevalue("redis_server" if request.param == "standalone" else "redis_cluster")


@pytest.fixture(scope="module")
def connectors(store) -> Iterator[tuple[processes.Server, processes.Server]]:
    with processes.service_server(role="connector", redis=store, **SLOW_PING) as first, \
            processes.service_server(role="connector", redis=store, **SLOW_PING) as second:
        yield first, second
        for server in (first, second):
            assert "Traceback" not in server.log(), server.log()[-3000:]


class Direct:
    """Commands to the node that owns a channel or key, whichever kind of Redis ``store`` is."""

    def __init__(self, store) -> None:
        self.cluster = isinstance(store, processes.RedisClusterAddress)
        self.client = (RedisCluster if self.cluster else redis.Redis)(host=store.host, port=store.port)

    async def on_owner(self, name: str, *command):
        if self.cluster:
            return await self.client.execute_command(*command, target_nodes=self.client.get_node_from_key(name))
        return await self.client.execute_command(*command)

    async def subscribers(self, channel: str) -> int:
        return int((await self.on_owner(channel, "PUBSUB", "SHARDNUMSUB", channel))[1])

    async def patterns(self) -> int:
        """Classic pattern subscriptions, on every primary."""
        if not self.cluster:
            return int(await self.client.execute_command("PUBSUB", "NUMPAT"))
        return sum([int(await self.client.execute_command("PUBSUB", "NUMPAT", target_nodes=node))
                    for node in self.client.get_primaries()])


@pytest.fixture
async def direct(store) -> AsyncIterator[Direct]:
    direct = Direct(store)
    if direct.cluster:
        await direct.client.initialize()
    yield direct
    await direct.client.aclose()


async def until(condition, *, what: str, timeout: float = clients.CLIENT_TIMEOUT) -> None:
    """Ask ``condition()`` (a coroutine) until it is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def wake_channel(sid: str) -> str:
    return f"aa:eio:{{{sid}}}:wake"  # the server processes' key prefix is the default one


async def waiting_get(direct: Direct, client: httpx.AsyncClient, url: str, sid: str) -> asyncio.Task:
    """A GET of ``sid`` on ``url``, once it waits (its process subscribed, its poll holds the session)."""
    get = asyncio.create_task(client.get(session_url(url, sid)))
    key = f"aa:eio:{{{sid}}}"
    await until(lambda: direct.on_owner(key, "HEXISTS", key, "poll"), what="the GET to wait")
    assert not get.done()
    return get


async def test_a_post_on_one_process_wakes_the_poll_waiting_on_the_other(connectors, direct, settings) -> None:
    first, second = connectors
    token = clients.server_token(settings, user="agent")
    name = f"projects/{PROJECT}/conversations/wake-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=15) as client:
        sid = await connected_session(client, first.http_url, token, ping_ms=(25000, 5000))
        channel = wake_channel(sid)
        get = await waiting_get(direct, client, first.http_url, sid)
        assert await direct.subscribers(channel) == 1  # the process the GET waits on; the POST's holds none
        assert await direct.patterns() == 0
        posted = await client.post(session_url(second.http_url, sid),
                                   content=f'421["join-conversation","{name}"]'.encode())
        assert posted.text == "ok"
        assert (await get).text == f'431[true,"{name}"]'  # woken at once: no ping is due for 25 s

        # The client's CLOSE, POSTed to the other process: the waiting GET answers a noop, and its process
        # drops the session's subscription.
        get = await waiting_get(direct, client, first.http_url, sid)
        assert (await client.post(session_url(second.http_url, sid), content=b"1")).text == "ok"
        assert (await get).text == "6"
        await until(lambda: _none(direct.subscribers(channel)), what="the unsubscribe")


async def _none(count) -> bool:
    return await count == 0


async def test_a_wake_reaches_the_lingering_poller_of_the_process_an_earlier_get_went_to(
        connectors, direct, settings) -> None:
    """Round-robin: the session's GETs went to both processes, so both subscribed; a wake reaches both."""
    first, second = connectors
    token = clients.server_token(settings, user="agent")
    async with httpx.AsyncClient(timeout=15) as client:
        sid = await connected_session(client, first.http_url, token, ping_ms=(25000, 5000))
        get = await waiting_get(direct, client, second.http_url, sid)
        assert await direct.subscribers(wake_channel(sid)) == 2  # first's poller lingers after its GET
        assert (await client.post(session_url(first.http_url, sid), content=b"1")).text == "ok"
        assert (await get).text == "6"
        await until(lambda: _none(direct.subscribers(wake_channel(sid))),
                                       what="both processes to unsubscribe")


@pytest.mark.usefixtures("redis_kind")
async def test_a_channel_unsubscribed_and_wanted_again_before_redis_confirmed_stays_subscribed(settings) -> None:
    """A poller that goes while its session's next GET comes: the SUNSUBSCRIBE's confirmation, read after
    the channel is wanted again, is not taken for Redis ending the subscription (a moved slot), which would
    remake the whole subscription and wake every poll."""
    received: list[bytes] = []
    restored: list[bool] = []

    async def on_restored() -> None:
        restored.append(True)

    subscription = Subscription("Test subscription", logging.getLogger(__name__),
                                received=lambda channel, data: received.append(data), restored=on_restored)
    channel = f"{settings.EVENT_KEY_PREFIX}eio:{{{uuid.uuid4().hex}}}:wake"
    try:
        await subscription.subscribe(channel, SHARD)
        for round_ in range(5):
            subscription.discard(channel, SHARD)
            await subscription.unsubscribe(channel, SHARD)
            await subscription.subscribe(channel, SHARD)
            await redis_client.get_redis().spublish(channel, f"wake-{round_}")
            await clients.wait_until(lambda r=round_: len(received) == r + 1, what="the wake")
        assert received == [f"wake-{number}".encode() for number in range(5)]
        assert restored == []
    finally:
        await subscription.close()


async def test_a_wake_channel_whose_slot_moves_is_subscribed_again_at_its_new_owner(settings, redis_cluster) -> None:
    """On a cluster, Redis ends the subscription of a wake channel whose slot moves to another primary: the
    process subscribes again at the new owner and wakes its polls (a wake may have been missed meanwhile); later
    wakes, published at the new owner, reach the poll."""
    settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = redis_cluster.host, redis_cluster.port, True
    direct = RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    await direct.initialize()
    pollers = Pollers()
    sid = uuid.uuid4().hex  # no session: its slot holds no keys, so it moves without a MIGRATE
    poller = await pollers.attach(sid)
    try:
        assert poller is not None
        await redis_client.get_redis().spublish(poller.channel, "1")
        await clients.wait_until(lambda: poller.woken_by_session, what="the first wake")
        poller.rearm()
        target = await cluster_layout.move_keyless_slot(direct, poller.channel)
        await clients.wait_until(lambda: poller.woken_by_session, what="the wake of a restored subscription",
                                 timeout=15)
        poller.rearm()
        await redis_client.get_redis().spublish(poller.channel, "1")  # (the client learns of the move: MOVED)
        await clients.wait_until(lambda: poller.woken_by_session, what="a wake at the new owner")
        assert pollers._wakes._pubsub.node_pubsub_mapping.keys() == {target}
    finally:
        poller.ended = True
        pollers.detach(poller)
        await pollers._wakes.close()
        await direct.aclose()


async def test_a_primary_left_without_wake_channels_is_no_lost_subscription(settings, redis_cluster) -> None:
    """On a cluster, the last channel a process held on a primary goes (its poller's session ended): redis-py
    closes that primary's pub/sub, and a read that was about to take its turn there is not taken for a lost
    subscription, which would be made again and wake every poll of the process."""
    settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = redis_cluster.host, redis_cluster.port, True
    direct = RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    await direct.initialize()
    restored: list[bool] = []

    async def on_restored() -> None:
        restored.append(True)

    subscription = Subscription("Test subscription", logging.getLogger(__name__), received=lambda *_: None,
                                restored=on_restored)
    by_primary: dict[str, str] = {}
    while len(by_primary) < 2:
        channel = f"{settings.EVENT_KEY_PREFIX}eio:{{{uuid.uuid4().hex}}}:wake"
        by_primary.setdefault(direct.get_node_from_key(channel).name, channel)
    kept, churned = by_primary.values()
    try:
        await subscription.subscribe(kept, SHARD)
        for number in range(40):
            await subscription.subscribe(churned, SHARD)
            subscription.discard(churned, SHARD)
            await subscription.unsubscribe(churned, SHARD)
            await asyncio.sleep(0.001 * (number % 25))  # at any point of the reader's reads
        assert restored == []
    finally:
        await subscription.close()
        await direct.aclose()
