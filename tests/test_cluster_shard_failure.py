"""On a Redis Cluster a shard that fails fails what goes to it, not every push from then on: appends asked for in
one turn of the event loop (one batch) for conversations on every shard, one shard's primary killed and its replica
not yet promoted. Each shard's appends go in a pipeline of their own; redis-py still closes every connection of the
client when one node's fails, so the other shards' appends fail in some batches (often in every batch after the
first): what is checked is that the dead shard's append fails and another shard's is stored while it is down."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from events import history
from testing import processes
from testing.cluster_layout import Layout


async def test_a_killed_primary_fails_the_appends_to_its_own_shard_not_the_others(settings) -> None:
    # A failed primary is noticed after 8 s here, not 2: until then the other shards answer (then the whole cluster
    # says CLUSTERDOWN until the failover), and a loaded machine needs that long for some batches to get through.
    with processes.redis_cluster(private=True, node_timeout_ms=8000) as cluster:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = cluster.host, cluster.port, True
        layout = Layout(cluster)
        shards = {port: names[0] for port, names in layout.on_each_shard(1, "isolated").items()}
        store = history.get_history()
        for name in shards.values():  # the client knows every shard
            await store.append(conversation=name, kind="k", message_id="before", payload_json="{}")
        doomed = layout.primaries()[0]
        layout.kill_primary(doomed)
        loop = asyncio.get_running_loop()
        # Batches until another shard's append succeeds in one (not in every one: redis-py closes every connection
        # of the client when one node's fails, which fails the appends then in flight, and then often the next
        # batches' too), within the cluster's node timeout: then the whole cluster answers CLUSTERDOWN until the
        # failover. One pipeline for the whole batch failed every shard's appends in every batch.
        deadline, batches = loop.time() + 6, []
        while loop.time() < deadline and not any("stored" in batch for batch in batches):
            message_id = f"after-{len(batches)}"
            answers = await asyncio.gather(*(store.append(conversation=name, kind="k", message_id=message_id,
                                                          payload_json="{}") for name in shards.values()),
                                           return_exceptions=True)
            by_shard = dict(zip(shards, answers))
            assert isinstance(by_shard.pop(doomed), RedisError)
            batches.append(["stored" if isinstance(answer, history.Appended) else type(answer).__name__
                            for answer in by_shard.values()])
            await asyncio.sleep(0.1)
        assert any("stored" in batch for batch in batches), batches
