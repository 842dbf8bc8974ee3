"""``connector.desktops.fanout``: one subscription per conversation per process, shared by its members."""

from __future__ import annotations

import asyncio

import pytest

from connector.desktops.fanout import get_hub
from events.history import channel_name
from events.publish import publish
from testing.event_listener import EventListener

PAYLOAD = {"message_id": "m"}


@pytest.mark.usefixtures("redis_kind")  # on a cluster: shard channels of every primary
async def test_concurrent_first_joins_of_many_conversations_all_subscribe(redis_events) -> None:
    """Fifty members joining fifty conversations at once (a reconnect storm) each get their events: the
    hub's first SUBSCRIBEs must not race each other onto separate connections."""
    names = [f"projects/p/conversations/storm-{number}" for number in range(50)]
    listeners = [EventListener() for _ in names]
    await asyncio.gather(*(get_hub().join(name, listener) for name, listener in zip(names, listeners)))
    for name in names:
        await publish(conversation_name=name, event="new-message-event", payload=PAYLOAD)
    for name, listener in zip(names, listeners):
        assert (await listener.receive())["payload"] == PAYLOAD, name


async def test_members_of_one_conversation_share_one_subscription(redis_events) -> None:
    import redis.asyncio as redis

    name = "projects/p/conversations/shared"
    listeners = [EventListener() for _ in range(3)]
    for listener in listeners:
        await get_hub().join(name, listener)
    client = redis.Redis(host=redis_events.host, port=redis_events.port)
    try:
        assert (await client.pubsub_shardnumsub(channel_name(name)))[0][1] == 1
        for listener in listeners[:2]:
            await get_hub().leave(name, listener)
        assert (await client.pubsub_shardnumsub(channel_name(name)))[0][1] == 1
        await get_hub().leave(name, listeners[2])
        for _ in range(100):
            if (await client.pubsub_shardnumsub(channel_name(name)))[0][1] == 0:
                break
            await asyncio.sleep(0.02)
        assert (await client.pubsub_shardnumsub(channel_name(name)))[0][1] == 0
    finally:
        await client.aclose()


async def test_a_conversation_left_during_an_outage_is_unsubscribed_once_redis_is_back(settings, caplog) -> None:
    """The last member leaves while Redis is down (its UNSUBSCRIBE fails); after the reconnection the
    process must not stay subscribed to it, nor stop delivering the conversations still joined."""
    import redis.asyncio as redis

    from testing import clients, processes

    with processes.restartable_redis() as store:
        settings.REDISHOST, settings.REDISPORT = store.address.host, store.address.port
        gone, kept = "projects/p/conversations/gone", "projects/p/conversations/kept"
        leaving, staying = EventListener(), EventListener()
        hub = get_hub()
        await hub.join(gone, leaving)
        await hub.join(kept, staying)
        store.stop()
        await clients.wait_until(lambda: any(r.name == "connector.desktops.fanout" for r in caplog.records),
                                 what="the hub to notice")
        try:
            await hub.leave(gone, leaving)
        except Exception:
            pass  # the UNSUBSCRIBE could not be sent
        store.start()
        inspector = redis.Redis(host=store.address.host, port=store.address.port)
        try:
            for _ in range(200):
                channels = await inspector.pubsub_shardchannels()
                if channels == [channel_name(kept).encode()]:
                    break
                await asyncio.sleep(0.05)
            assert await inspector.pubsub_shardchannels() == [channel_name(kept).encode()]
            await publish(conversation_name=kept, event="new-message-event", payload=PAYLOAD)
            assert (await staying.receive())["payload"] == PAYLOAD
        finally:
            await inspector.aclose()


async def test_a_burst_of_redis_calls_waits_for_connections_instead_of_failing(redis_events) -> None:
    """Hundreds of concurrent calls (desktops disconnecting at once, each expiring its session record)
    share the bounded pool: none fails with "Too many connections"."""
    from events import redis_client

    client = redis_client.get_redis()
    await asyncio.gather(*(client.set(f"test-burst:{number}", "1", ex=5) for number in range(300)))
    assert await client.exists(*(f"test-burst:{number}" for number in range(300))) == 300


async def test_events_published_while_redis_py_silently_remakes_the_subscription_arrive(settings, redis_events) -> None:
    """redis-py makes a dropped subscription connection again by itself (its retry) and re-subscribes,
    with no error reaching the hub: what was published between the drop and the new SUBSCRIBE must still
    arrive, in order (the hub catches up from the history), not be lost for every desktop of the process."""
    import redis.asyncio as redis

    from events.history import RedisHistory
    from testing import clients
    from testing.tcp_proxy import tcp_proxy

    name = "projects/p/conversations/silent-reconnect"
    direct = redis.Redis(host=redis_events.host, port=redis_events.port)
    writer = RedisHistory(direct)  # the interceptor's side: straight to Redis, not through the proxy

    async def append(message_id: str) -> None:
        await writer.append(conversation=name, kind="new-message-event", message_id=message_id,
                            payload_json=f'{{"message_id":"{message_id}"}}')

    try:
        async with tcp_proxy(redis_events.port) as proxy:
            settings.REDISPORT = proxy.port  # the hub's subscription and history reads go through the proxy
            listener = EventListener()
            await get_hub().join(name, listener)
            await append("before")
            assert (await listener.receive())["payload"] == {"message_id": "before"}
            proxy.hold()
            proxy.cut()
            await clients.wait_until(lambda: proxy.held > 0, what="the subscription to be made again")
            await append("during")  # published while nothing of this process is subscribed
            proxy.release()
            await append("after")
            received = [(await listener.receive())["payload"]["message_id"] for _ in range(2)]
            assert received == ["during", "after"]
            await get_hub().leave(name, listener)
    finally:
        await direct.aclose()


async def test_the_catch_up_reads_each_conversation_after_its_own_last_event(settings, redis_events) -> None:
    """Each conversation numbers its own events: after a silently remade subscription the hub reads each
    conversation after the last event it got of it, or, for one that had none yet, after where it was when the
    process subscribed. Both conversations' events of the outage arrive, once, in order."""
    import redis.asyncio as redis

    from events.history import RedisHistory
    from testing import clients
    from testing.tcp_proxy import tcp_proxy

    busy, quiet = "projects/p/conversations/catch-up-busy", "projects/p/conversations/catch-up-quiet"
    direct = redis.Redis(host=redis_events.host, port=redis_events.port)
    writer = RedisHistory(direct)

    async def append(name: str, message_id: str) -> None:
        await writer.append(conversation=name, kind="new-message-event", message_id=message_id,
                            payload_json=f'{{"message_id":"{message_id}"}}')

    for number in range(3):
        await append(quiet, f"old-{number}")  # stored before the process subscribed: not caught up
    try:
        async with tcp_proxy(redis_events.port) as proxy:
            settings.REDISPORT = proxy.port
            listeners = {busy: EventListener(), quiet: EventListener()}
            for name, listener in listeners.items():
                await get_hub().join(name, listener)
            for number in range(5):
                await append(busy, f"before-{number}")
            for number in range(5):
                assert (await listeners[busy].receive())["payload"] == {"message_id": f"before-{number}"}
            proxy.hold()
            proxy.cut()
            await clients.wait_until(lambda: proxy.held > 0, what="the subscription to be made again")
            for name, message_id in ((quiet, "during-0"), (busy, "during-1"), (quiet, "during-2")):
                await append(name, message_id)  # published while nothing of this process is subscribed
            proxy.release()
            await append(busy, "after")
            assert [(await listeners[busy].receive())["payload"]["message_id"] for _ in range(2)] == [
                "during-1", "after"]
            assert [(await listeners[quiet].receive())["payload"]["message_id"] for _ in range(2)] == [
                "during-0", "during-2"]
            await asyncio.sleep(0.3)
            assert all(listener.events.empty() for listener in listeners.values())  # nothing twice, nothing old
            for name, listener in listeners.items():
                await get_hub().leave(name, listener)
    finally:
        await direct.aclose()


@pytest.mark.usefixtures("redis_kind")  # on a cluster: shard channels of every primary
async def test_a_join_racing_the_last_leave_keeps_its_subscription(redis_events) -> None:
    """A desktop leaves and another joins the same conversation at once (a page reload): the leave's
    UNSUBSCRIBE, sent after its presence update, must not undo the join's SUBSCRIBE."""
    name = "projects/p/conversations/rejoined"
    leaving, joining = EventListener(), EventListener()
    await get_hub().join(name, leaving)
    await asyncio.gather(get_hub().leave(name, leaving), get_hub().join(name, joining))
    await publish(conversation_name=name, event="new-message-event", payload=PAYLOAD)
    assert (await joining.receive())["payload"] == PAYLOAD
    await get_hub().leave(name, joining)


async def test_members_waiting_on_a_subscription_that_is_never_confirmed_fail_with_it(settings, redis_events) -> None:
    """When Redis does not confirm a conversation's SUBSCRIBE in time, the first join fails, and so must the
    joins that came meanwhile and wait on the same confirmation (rather than wait for ever); once Redis
    answers again, a new join of that conversation gets its events."""
    from testing.tcp_proxy import tcp_proxy

    first_name, stalled_name = "projects/p/conversations/first", "projects/p/conversations/stalled"
    async with tcp_proxy(redis_events.port) as proxy:
        settings.REDISPORT = proxy.port
        settings.EVENT_STORE_TIMEOUT = 0.5
        settings.PRESENCE_KEYS = False
        hub = get_hub()
        first = EventListener()
        await hub.join(first_name, first)  # the subscription's connection is made
        proxy.stall()
        joins = [asyncio.ensure_future(hub.join(stalled_name, EventListener())) for _ in range(2)]
        done, _ = await asyncio.wait(joins, timeout=10)
        assert done == set(joins), "a join waited on a confirmation that never came"
        assert all(isinstance(join.exception(), TimeoutError) for join in joins)
        proxy.resume()
        again = EventListener()
        await hub.join(stalled_name, again)
        await publish(conversation_name=stalled_name, event="new-message-event", payload=PAYLOAD)
        assert (await again.receive())["payload"] == PAYLOAD
        await hub.leave(stalled_name, again)
        await hub.leave(first_name, first)


@pytest.mark.usefixtures("redis_kind")
async def test_a_catch_up_while_a_first_join_waits_for_its_subscribe_sends_its_member_nothing_older() -> None:
    """A restored subscription's catch-up that comes while a conversation's first join waits for its SUBSCRIBE
    (no position of it known yet) owes the joining member nothing: read from the start, the conversation's
    whole kept history would reach a desktop that did not ask for it, or one that recovered past it."""
    name, other = "projects/p/conversations/mid-join", "projects/p/conversations/mid-join-other"
    for number in range(3):
        await publish(conversation_name=name, event="new-message-event", payload={"message_id": f"old-{number}"})
    hub = get_hub()
    await hub.join(other, EventListener())  # the subscription is up
    listener = EventListener()
    async with hub._subscription._commands:  # the join's SUBSCRIBE waits for its turn
        joining = asyncio.create_task(hub.join(name, listener))
        await asyncio.sleep(0.1)
        await hub._catch_up()  # what the reader runs once a lost connection is back
    await joining
    await publish(conversation_name=name, event="new-message-event", payload={"message_id": "live"})
    assert (await listener.receive())["payload"] == {"message_id": "live"}
