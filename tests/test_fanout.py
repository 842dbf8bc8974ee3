"""``connector.fanout``: one subscription per conversation per process, shared by its members."""

from __future__ import annotations

import asyncio

from connector.fanout import get_hub
from events.history import channel_name
from events.publish import publish
from tests.event_listener import EventListener

PAYLOAD = {"message_id": "m"}


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
        assert (await client.pubsub_numsub(channel_name(name)))[0][1] == 1
        for listener in listeners[:2]:
            await get_hub().leave(name, listener)
        assert (await client.pubsub_numsub(channel_name(name)))[0][1] == 1
        await get_hub().leave(name, listeners[2])
        for _ in range(100):
            if (await client.pubsub_numsub(channel_name(name)))[0][1] == 0:
                break
            await asyncio.sleep(0.02)
        assert (await client.pubsub_numsub(channel_name(name)))[0][1] == 0
    finally:
        await client.aclose()
