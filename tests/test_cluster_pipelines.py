"""The cluster client's pipelines (``events.redis_client``) when a connection fails, beside its single commands: a
connection the cluster dropped is made again and the pipeline sent once more, the client's own bound on a node's
connections is not taken for the node failing, and a node that stopped answering is the last asked for the layout.

On the session's cluster (``redis_cluster``), or a private one for a node stopped; what happens while a primary is
down is in tests/test_cluster_shard_failure.py."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import uuid

import pytest
import redis.asyncio as redis
import redis.asyncio.cluster as cluster_module
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import MaxConnectionsError, RedisError

from events import history, redis_client
from testing import processes
from testing.cluster_layout import Layout


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


async def test_the_layout_learnt_again_after_a_node_stopped_answering_is_asked_of_it_last(settings,
                                                                                           monkeypatch) -> None:
    # A node that stops answering without refusing connections (a hung host; SIGSTOP here) holds what is sent to
    # it for the socket timeout. The client learns the layout again after a pipeline to it timed out, and every
    # command of the client waits for that: asked of the stopped node, it waited out its timeout. redis-py asks the
    # nodes in a random order, the failed one last when told which failed; here the random order is the one that
    # puts the failed node first.
    monkeypatch.setattr(redis_client, "SOCKET_TIMEOUT_SECONDS", 3.0)
    monkeypatch.setattr(cluster_module.random, "shuffle", lambda nodes: nodes.reverse())
    with processes.redis_cluster(private=True, node_timeout_ms=60_000) as cluster:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = cluster.host, cluster.port, True
        layout = Layout(cluster)
        shards = layout.on_each_shard(1, "stopped")
        store = history.get_history()
        for (name,) in shards.values():
            await store.append(conversation=name, kind="k", message_id="m", payload_json="{}")
        stopped = layout.primaries()[0]
        healthy = [name for port, (name,) in shards.items() if port != stopped]
        process = cluster.node(stopped).process
        os.kill(process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisError):
                await history.accepted_count(shards[stopped])  # times out: the layout is to be learnt again
            # Answered by the other shards before the stopped node would have answered a timeout (the margin is the
            # whole timeout: what it took without asking the stopped node is a few round trips).
            timeout = asyncio.create_task(asyncio.sleep(redis_client.SOCKET_TIMEOUT_SECONDS))
            read = asyncio.create_task(history.accepted_count(healthy))
            done, _ = await asyncio.wait([timeout, read], return_when=asyncio.FIRST_COMPLETED)
            assert read in done, "learning the layout again asked the stopped node first"
            assert read.result() == len(healthy)
            timeout.cancel()
        finally:
            os.kill(process.pid, signal.SIGCONT)
