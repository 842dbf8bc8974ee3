"""The presence key Google's companion services poll (``EXISTS projects/P/conversations/C``), across two
connector processes: there while any desktop on any process has joined, gone when the last one leaves."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as redis

from connector.desktops import presence
from events import redis_client, redis_keys
from testing import clients, processes, redis_kinds
from testing.clients import SocketIODesktop


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def presence_store(request) -> processes.RedisAddress | processes.RedisClusterAddress:
    return request.getfixturevalue("redis_server" if request.param == "standalone" else "redis_cluster")


@pytest.fixture(scope="module")
def two_connectors(presence_store):
    with processes.service_server(role="connector", redis=presence_store, PRESENCE_KEY_TTL_SECONDS="3") as a, \
            processes.service_server(role="connector", redis=presence_store, PRESENCE_KEY_TTL_SECONDS="3") as b:
        yield a, b


async def test_the_key_lives_while_any_process_has_a_desktop_in_the_conversation(
    two_connectors, presence_store, settings
) -> None:
    first, second = two_connectors
    name = f"projects/{processes.TEST_PROJECT}/conversations/presence-{uuid.uuid4().hex[:8]}"
    token = clients.server_token(settings, user="agent")
    client = redis_kinds.async_client(presence_store)
    on_first, on_second = SocketIODesktop("first"), SocketIODesktop("second")
    try:
        assert await client.exists(name) == 0
        await on_first.connect(first, token)
        await on_first.join(name)
        assert await client.exists(name) == 1
        await on_second.connect(second, token)
        # The other accepted form: the key is still the name without its location, which companions poll.
        await on_second.join(name.replace("/conversations/", "/locations/global/conversations/"))
        await on_first.leave(name)
        assert await client.exists(name) == 1  # the second process's desktop is still in it
        await asyncio.sleep(4)  # longer than the key's 3 s lifetime: the second process keeps renewing it
        assert await client.exists(name) == 1
        await on_second.disconnect()
        for _ in range(100):
            if await client.exists(name) == 0:
                break
            await asyncio.sleep(0.05)
        assert await client.exists(name) == 0
    finally:
        await on_first.disconnect()
        await on_second.disconnect()
        await client.aclose()


async def test_a_killed_process_leaves_no_key_behind_for_long(redis_server, settings) -> None:
    name = f"projects/{processes.TEST_PROJECT}/conversations/presence-{uuid.uuid4().hex[:8]}"
    token = clients.server_token(settings, user="agent")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        with processes.service_server(role="connector", redis=redis_server, PRESENCE_KEY_TTL_SECONDS="3") as server:
            desktop = SocketIODesktop()
            await desktop.connect(server, token)
            await desktop.join(name)
            assert await client.exists(name) == 1
            server.process.kill()
            server.process.wait()
        await asyncio.sleep(3.5)
        assert await client.exists(name) == 0
    finally:
        await client.aclose()


async def test_presence_keys_can_be_turned_off(redis_server, settings) -> None:
    name = f"projects/{processes.TEST_PROJECT}/conversations/presence-{uuid.uuid4().hex[:8]}"
    token = clients.server_token(settings, user="agent")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        with processes.service_server(role="connector", redis=redis_server, PRESENCE_KEYS="false") as server:
            desktop = SocketIODesktop()
            await desktop.connect(server, token)
            await desktop.join(name)
            assert await client.exists(name) == 0
            await desktop.disconnect()
    finally:
        await client.aclose()


async def test_a_refresh_renews_every_conversations_keys_over_several_script_calls(settings, redis_kind) -> None:
    """Cut into slices of ``REFRESH_SLICE`` conversations: every slice renewed, the one that expired recreated."""
    settings.PRESENCE_KEY_TTL_SECONDS = 60
    run = uuid.uuid4().hex[:8]
    names = [f"projects/{processes.TEST_PROJECT}/conversations/refresh-{run}-{i}"
             for i in range(2 * presence.REFRESH_SLICE + 7)]
    client = redis_client.get_redis()
    keys = [key for name in names for key in presence._keys(name)]
    try:
        await presence.joined(names[0])
        await client.expire(presence.key_name(names[0]), 2)  # about to lapse
        await presence.refresh(names)
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.ttl(presence.key_name(name))
                pipe.smembers(presence._keys(name)[1])
            answers = await pipe.execute()
        ttls, members = answers[0::2], answers[1::2]
        assert min(ttls) > 50
        assert all(member == {presence.PROCESS_ID.encode()} for member in members)
    finally:
        await client.delete(*keys)


async def test_the_key_goes_with_the_last_process_to_leave(settings, redis_kind) -> None:
    """In this process, on the standalone Redis and on a Redis Cluster (the key and its member set in one slot):
    another process's member keeps the key; it goes when the last member leaves."""
    name = f"projects/{processes.TEST_PROJECT}/conversations/members-{uuid.uuid4().hex[:8]}"
    client = redis_client.get_redis()
    key, members = presence._keys(name)
    assert redis_keys.key_slot(key.encode()) == redis_keys.key_slot(members.encode())
    await presence.joined(name)
    await client.sadd(members, "another-process")
    await presence.left(name)
    assert await client.exists(key) == 1
    await client.srem(members, "another-process")
    await presence.joined(name)
    await presence.left(name)
    assert await client.exists(key, members) == 0
