"""The cluster client's pipelines (``events.redis_client``) when a connection fails, beside its single commands: a
connection the cluster dropped is made again and the pipeline sent once more.

On the session's cluster (``redis_cluster``); what happens while a primary is down is in
tests/test_cluster_shard_failure.py."""

from __future__ import annotations

import itertools
import uuid

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

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

