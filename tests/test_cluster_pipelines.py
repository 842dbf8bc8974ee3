"""The cluster client's pipelines (``events.redis_client``) when a connection fails, beside its single commands: a
connection the cluster dropped is made again and the pipeline sent once more, and the client's own bound on a
node's connections is not taken for the node failing.

On the session's cluster (``redis_cluster``); what happens while a primary is down is in
tests/test_cluster_shard_failure.py."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import MaxConnectionsError

from events import history, redis_client
from testing import processes


@pytest.fixture
def on_cluster(settings, redis_cluster: processes.RedisClusterAddress) -> processes.RedisClusterAddress:
    settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = redis_cluster.host, redis_cluster.port, True
    return redis_cluster


def conversation_on_each_primary(client: RedisCluster) -> list[str]:
    """A new conversation name whose keys live on each primary (in primary order)."""
    found: dict[str, str] = {}
    run = uuid.uuid4().hex[:6]
    for number in itertools.count():
        name = f"projects/{processes.TEST_PROJECT}/conversations/pipelines-{run}-{number}"
        found.setdefault(client.get_node_from_key(history.conversation_key(name, "seq")).name, name)
        if len(found) == len(client.get_primaries()):
            return [found[node.name] for node in client.get_primaries()]
    raise AssertionError("unreachable")


async def drop_connections(node: ClusterNode) -> None:
    """Have the node close the client's connections to it, as Redis does to idle ones (its ``timeout``) or a node
    restarted for maintenance: the client finds out when it next reads one."""
    mine = {"%s:%s" % connection._writer.get_extra_info("sockname")[:2]
            for connection in node._connections if connection.is_connected}
    async with redis.Redis(host=node.host, port=node.port) as admin:
        for address in mine:
            await admin.execute_command("CLIENT", "KILL", "ADDR", address)


async def test_a_pipeline_rides_out_connections_the_cluster_dropped(on_cluster) -> None:
    store = history.get_history()
    client = redis_client.get_redis()
    await client.initialize()
    conversations = conversation_on_each_primary(client)
    for conversation in conversations:
        await store.append(conversation=conversation, kind="k", message_id="m", payload_json="{}")
    assert await history.accepted_count(conversations) == len(conversations)  # a pipeline to every primary

    for node in client.get_primaries():
        await drop_connections(node)
    # A single command sends again on a new connection; so does a pipeline.
    assert await history.accepted_count(conversations) == len(conversations)
    for conversation in conversations:
        await store.append(conversation=conversation, kind="k", message_id="n", payload_json="{}")


async def test_a_pipeline_finding_a_nodes_connections_busy_leaves_every_connection_alone(on_cluster,
                                                                                         monkeypatch) -> None:
    # The client's own bound on a node's connections reached is no node failing: a pipeline raises at once (single
    # commands wait for a connection), and the client neither learns the layout again nor so closes every
    # connection it has, to every node, to make them again: in a burst, when the bound is reached, that was a
    # connection made again for every command of the burst.
    monkeypatch.setattr(redis_client, "MAX_CONNECTIONS", 1)
    client = redis_client.get_redis()
    await client.initialize()
    busy, other = client.get_primaries()[:2]
    key = next(f"busy-{number}" for number in itertools.count() if client.get_node_from_key(f"busy-{number}") == busy)
    connection = await client.execute_command("CLIENT ID", target_nodes=other)

    blocked = asyncio.create_task(client.blpop([key], timeout=1))  # the one connection to ``busy``
    while busy._free or not busy._connections:
        await asyncio.sleep(0.01)
    pipeline = client.pipeline(transaction=False)
    pipeline.get(key)
    with pytest.raises(MaxConnectionsError):
        await pipeline.execute()
    await blocked

    assert await client.execute_command("CLIENT ID", target_nodes=other) == connection
