"""Events delivered and recovered end to end on a real Redis Cluster (``REDIS_CLUSTER``).

One interceptor process and two connector processes on the session's local cluster (three primaries, a
replica each): a push reaches desktops on both connectors; a redelivery is not sent again; a Socket.IO
desktop in two conversations whose keys live on different shards is cut off, misses pushes, and recovers
exactly on the other connector; a late joiner gets the history; a ``/ws/`` desktop resumes ``after`` an
offset; a long-polling desktop receives. Then what only a cluster has: the append function loaded again on
primaries that lost it, one round trip per push on each shard, and a sharded subscription that Redis ends
(its slot moved) made again at the slot's new owner, with the events published meanwhile caught up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from connector.desktops import subscriptions
from events import history, redis_client
from testing import clients, cluster_layout, processes, redis_monitor
from testing.push_bodies import push, push_body
from testing.tcp_proxy import tcp_proxy

PROJECT = processes.TEST_PROJECT


@pytest.fixture(scope="module")
def servers(redis_cluster) -> Iterator[tuple[processes.Server, processes.Server, processes.Server]]:
    """An interceptor and two connectors on the cluster, shared by this module's tests."""
    with processes.service_server(role="interceptor", redis=redis_cluster) as interceptor, \
            processes.service_server(role="connector", redis=redis_cluster) as first, \
            processes.service_server(role="connector", redis=redis_cluster) as second:
        yield interceptor, first, second
        for server in (interceptor, first, second):
            assert "Traceback" not in server.log(), server.log()[-3000:]



@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent")


def on_each_shard(client: RedisCluster, label: str) -> list[str]:
    """Conversation names whose keys live on each primary, in primary order."""
    found: dict[str, str] = {}
    run = uuid.uuid4().hex[:8]
    number = 0
    while len(found) < len(client.get_primaries()):
        name = f"projects/{PROJECT}/conversations/{label}-{run}-{number}"
        found.setdefault(client.get_node_from_key(history.conversation_key(name, "seq")).name, name)
        number += 1
    return [found[node.name] for node in client.get_primaries()]


def message_ids(desktop: clients.SocketIODesktop) -> list[tuple[str, str]]:
    return [(payload["conversation_name"], payload["message_id"]) for _, payload in desktop.events
            if isinstance(payload, dict) and "message_id" in payload]


async def test_a_push_reaches_desktops_on_both_connectors_once(servers, direct, token) -> None:
    interceptor, first, second = servers
    (name, *_) = on_each_shard(direct, "both")
    desktops = [clients.SocketIODesktop(), clients.SocketIODesktop()]
    await desktops[0].connect(first, token)
    await desktops[1].connect(second, token)
    try:
        for desktop in desktops:
            assert await desktop.join(name) == (True, name)
        await push(interceptor, name, "m-1")
        await push(interceptor, name, "m-1")  # a redelivery: acknowledged, not sent again
        await push(interceptor, name, "m-2")
        for desktop in desktops:
            await clients.wait_until(lambda d=desktop: len(message_ids(d)) >= 2, what="both events")
        await asyncio.sleep(0.5)  # a duplicate would show by now
        for desktop in desktops:
            assert message_ids(desktop) == [(name, "m-1"), (name, "m-2")]
    finally:
        for desktop in desktops:
            await desktop.disconnect()


async def test_a_desktop_in_conversations_on_two_shards_recovers_exactly_on_the_other_connector(
        servers, direct, token) -> None:
    interceptor, first, second = servers
    a, b, _ = on_each_shard(direct, "recover")
    before = [(a, "before-0"), (b, "before-1")]
    missed = [(b, "missed-0"), (a, "missed-1"), (b, "missed-2"), (a, "missed-3")]
    async with tcp_proxy(first.port) as proxy:
        desktop = clients.SocketIODesktop()
        await desktop.connect(proxy, token)
        for name in (a, b):
            assert await desktop.join(name) == (True, name)
        for name, message_id in before:
            await push(interceptor, name, message_id)
        await clients.wait_until(lambda: len(message_ids(desktop)) == 2, what="the events before")
        async def push_missed() -> None:
            for name, message_id in missed:
                await push(interceptor, name, message_id)

        back = await desktop.cut_then_recover(proxy, second, token, push_missed)
        try:
            assert back.pid == desktop.pid  # recovered, on the other connector
            await clients.wait_until(lambda: len(message_ids(back)) >= len(missed), what="the missed events")
            await asyncio.sleep(0.5)
            received = message_ids(back)
            assert sorted(received) == sorted(missed)
            assert [m for m in received if m[0] == a] == [m for m in missed if m[0] == a]  # in order
            assert [m for m in received if m[0] == b] == [m for m in missed if m[0] == b]
            await push(interceptor, b, "live")
            await clients.wait_until(lambda: message_ids(back)[-1:] == [(b, "live")], what="a live event")
            assert len(message_ids(back)) == len(missed) + 1
        finally:
            await back.disconnect()
            await desktop.disconnect()


async def test_a_late_joiner_gets_the_history_and_ws_resumes_after_an_offset(servers, direct, token) -> None:
    interceptor, first, second = servers
    _, name, _ = on_each_shard(direct, "ws")
    for number in range(3):
        await push(interceptor, name, f"old-{number}")
    late = await clients.PlainDesktop.connect(second, token)
    try:
        joined = await late.request({"type": "join", "conversation": name, "history": True})
        assert (joined["type"], joined["replayed"], joined["complete"]) == ("joined", 3, True), joined
        frames = [await late.next_frame() for _ in range(3)]
        assert [frame["payload"]["message_id"] for frame in frames] == ["old-0", "old-1", "old-2"]
        seen = frames[0]["offset"]
    finally:
        await late.close()
    again = await clients.PlainDesktop.connect(first, token)
    try:
        joined = await again.request({"type": "join", "conversation": name, "after": seen})
        assert (joined["replayed"], joined["complete"]) == (2, True), joined
        assert [(await again.next_frame())["payload"]["message_id"] for _ in range(2)] == ["old-1", "old-2"]
        await push(interceptor, name, "live")
        assert (await again.next_frame())["payload"]["message_id"] == "live"
    finally:
        await again.close()


async def test_a_long_polling_desktop_receives_and_one_that_upgrades_too(servers, direct, token) -> None:
    """One desktop stays on long-polling (its session's keys and wake channel in one slot); another
    starts on it and upgrades to WebSocket (the upgrade adopts the polling session's state)."""
    interceptor, _, second = servers
    _, _, name = on_each_shard(direct, "polling")
    polling, upgrading = clients.SocketIODesktop(), clients.SocketIODesktop()
    await polling.connect(second, token, transports=("polling",))
    await upgrading.connect(second, token, transports=None)
    try:
        for desktop in (polling, upgrading):
            assert await desktop.join(name) == (True, name)
        await clients.wait_until(lambda: upgrading.client.transport() == "websocket", what="the upgrade")
        await push(interceptor, name, "polled")
        for desktop in (polling, upgrading):
            await clients.wait_until(lambda d=desktop: message_ids(d) == [(name, "polled")], what="the event")
    finally:
        await polling.disconnect()
        await upgrading.disconnect()


# --- what only a cluster has ----------------------------------------------------------------------


@pytest.fixture
def on_cluster(settings, redis_cluster):
    settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = redis_cluster.host, redis_cluster.port, True
    return redis_cluster


async def test_primaries_that_lost_the_append_function_get_it_again(on_cluster, direct) -> None:
    names = on_each_shard(direct, "library")
    store = history.get_history()
    for name in names:
        await store.append(conversation=name, kind="k", message_id=None, payload_json="{}")
    # One primary lost it (a new node a slot was moved to), as every one would after a FUNCTION FLUSH.
    await direct.execute_command("FUNCTION DELETE", history.LIBRARY_NAME, target_nodes=direct.get_primaries()[1])
    appended = await asyncio.gather(*(store.append(conversation=name, kind="k", message_id="again", payload_json="{}")
                                      for name in names))
    assert [a.offset.seq for a in appended] == [2, 2, 2]
    assert (await store.position(names[0])).seq == 2


async def test_each_push_is_one_round_trip_to_its_shard(servers, direct, redis_cluster) -> None:
    """MONITOR on every primary around pushes through the interceptor process, spread over three shards: one
    FCALL per push at the shard owning its conversation, and nothing else naming it (redis-py asked the server
    for an FCALL's keys, ``COMMAND GETKEYS``, before each one: the service's client reads them itself)."""
    interceptor, _, _ = servers
    names = on_each_shard(direct, "trips")
    pushes = 30
    counted: Counter[tuple[int, str]] = Counter()

    def keep(shard: int, command: dict) -> None:
        text = command["command"]
        if any(name in text for name in names):
            counted[(shard, text.split(" ", 1)[0].strip('"').lower())] += 1

    async with httpx.AsyncClient(timeout=10) as http:

        async def one(name: str, message_id: str) -> None:
            body = push_body({"conversation": name}, messageId=message_id)
            response = await http.post(f"{interceptor.http_url}/new-message-event", content=body,
                                       headers={"Content-Type": "application/json"})
            assert response.status_code == 204

        for name in names:
            await one(name, "warm-up")
        async with redis_monitor.monitoring(direct.get_primaries(), keep) as monitor:
            await asyncio.gather(*(one(names[n % 3], f"m-{n}") for n in range(pushes)))
            for n in range(pushes):
                await one(names[n % 3], f"m-{n}")  # redeliveries: one round trip each too
            # Every command of every push ran before its answer: all of them, and any beyond one FCALL a push
            # (on a shard whose reports lag the others'), are counted by then.
            await monitor.caught_up()
    print(f"round trips per shard for {2 * pushes} pushes: {dict(counted)}")
    assert counted == {(shard, "fcall"): 2 * pushes // 3 for shard in range(3)}, counted


async def test_a_sharded_subscription_redis_ends_is_made_again_and_caught_up(on_cluster, direct) -> None:
    """Redis ends a sharded subscription by itself (``SUNSUBSCRIBE`` pushed, as when its slot moves): the reader
    makes its pub/sub again, subscribes at the slot's owner, and calls ``restored`` (the hub's catch-up)
    before it hands on any later message."""
    # A slot without keys: moving one with keys would need MIGRATE (the session-wide cluster holds other tests').
    for attempt in range(1000):
        channel = history.channel_name(on_each_shard(direct, f"ended-{attempt}")[0])
        if not await direct.execute_command("CLUSTER COUNTKEYSINSLOT", direct.keyslot(channel),
                                            target_nodes=direct.get_node_from_key(channel)):
            break
    received: list[bytes] = []
    restored: list[int] = []

    async def catch_up() -> None:
        restored.append(len(received))

    subscription = subscriptions.Subscription("test", logging.getLogger("test"),
                                              received=lambda _, data: received.append(data), restored=catch_up)
    await subscription.subscribe(channel, subscriptions.SHARD)
    try:
        client = redis_client.get_redis()
        await client.spublish(channel, "one")
        await clients.wait_until(lambda: received == [b"one"], what="the first message")
        # The channel's slot (no keys in it) moves to another primary: its owner ends the subscription.
        target = await cluster_layout.move_keyless_slot(direct, channel)
        await clients.wait_until(lambda: restored, what="the subscription made again", timeout=15)
        assert restored == [1]  # the catch-up ran after the first message, before any later one
        await client.spublish(channel, "two")  # (the client learns of the move: MOVED)
        await clients.wait_until(lambda: received == [b"one", b"two"], what="a message at the new owner")
        assert subscription._pubsub.node_pubsub_mapping.keys() == {target}
    finally:
        await subscription.close()


async def test_appends_in_many_pipelines_at_once_wait_for_connections_at_the_bound(on_cluster, monkeypatch) -> None:
    """Appends arriving turn after turn while earlier pipelines wait on Redis: at a bound of two connections per
    node, redis-py's cluster pipeline would fail (MaxConnectionsError); the history's wait their turn."""
    monkeypatch.setattr(redis_client, "MAX_CONNECTIONS", 2)
    store = history.get_history()
    run = uuid.uuid4().hex[:8]

    async def one(number: int) -> int:
        for _ in range(number % 7):
            await asyncio.sleep(0)  # in another turn of the loop: another pipeline
        appended = await store.append(conversation=f"projects/p/conversations/bound-{run}-{number % 5}", kind="k",
                                      message_id=f"m-{number}", payload_json="{}")
        return appended.offset.seq

    seqs = await asyncio.gather(*(one(number) for number in range(300)))
    assert sorted(seqs) == sorted(seq for _ in range(5) for seq in range(1, 61))


async def test_after_the_primary_of_a_conversation_fails_over_its_events_reach_the_hub_again(settings) -> None:
    """Kill the primary owning a conversation's slot while this process's hub is subscribed there: appends fail
    until its replica takes over, then succeed; the hub's subscription is made again at the new primary and
    its catch-up reads the history, so every accepted event reaches the member, in order."""
    from connector.desktops.fanout import get_hub
    from testing.event_listener import EventListener

    with processes.redis_cluster(private=True) as cluster:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = cluster.host, cluster.port, True
        direct = RedisCluster(host=cluster.host, port=cluster.port)
        await direct.initialize()
        name = on_each_shard(direct, "failover")[0]
        doomed = direct.get_node_from_key(history.channel_name(name))
        await direct.aclose()
        listener = EventListener()
        await get_hub().join(name, listener)
        store = history.get_history()
        await store.append(conversation=name, kind="k", message_id="before", payload_json='"before"')
        accepted = ["before"]
        cluster.node(doomed.port).kill()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        number = 0
        while len(accepted) < 4:
            assert loop.time() < deadline, "the shard did not come back"
            message_id = f"after-{number}"
            number += 1
            try:
                await store.append(conversation=name, kind="k", message_id=message_id, payload_json=f'"{message_id}"')
            except RedisError:  # Redis unavailable meanwhile: the push is answered 503 and redelivered
                await asyncio.sleep(0.2)
                continue
            accepted.append(message_id)
        # The hub hands its members what the catch-up read, and they drop what they already had, as a desktop
        # does: an event may come both live and in the catch-up. The promoted replica is another server process:
        # the conversation's epoch is renewed at its first append there, continuing the old one, so the catch-up
        # from a position of the old epoch reads on from it (or from where the replica took over).
        received: list[str] = []
        while len(received) < len(accepted):
            payload = (await listener.receive(timeout=20))["payload"]
            if payload not in received:
                received.append(payload)
        assert received == accepted
        await get_hub().leave(name, listener)
