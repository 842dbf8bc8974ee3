"""On a Redis Cluster a shard that fails fails what goes to it, not every push from then on: with one shard's primary
killed (SIGKILL) and its replica not yet promoted, every append to a conversation on another shard is stored, and
every append to the dead shard's fails, in batches asked for in one turn of the event loop (each shard's appends in
a pipeline of its own), two batches in flight at once. Then the replica takes over and the dead shard's
conversations take appends again (the first one sent after the failover may still go to the dead node, and fail:
the client learns the layout again then).

redis-py's cluster pipeline, when a node's connection failed, closed every connection of the client (all its
nodes') before trying again, failing the other shards' appends then in flight (sent, their replies never read), and
often every batch's after the first: ``events.redis_client`` makes its pipelines learn the cluster's layout again
instead, which lets commands in flight finish."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from events import history
from testing import processes
from testing.cluster_layout import Layout

ROUNDS = 8


async def test_a_killed_primary_fails_the_appends_to_its_own_shard_and_every_other_shard_takes_its_own(
        settings) -> None:
    # The other nodes would mark the dead one failed after the node timeout, and then every node answers CLUSTERDOWN
    # (cluster-require-full-coverage) until a replica takes over: a minute here, far beyond this test's batches
    # however loaded the machine, so that what is checked holds on every run. The failover is then asked for.
    with processes.redis_cluster(private=True, node_timeout_ms=60_000) as cluster:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = cluster.host, cluster.port, True
        layout = Layout(cluster)
        shards = layout.on_each_shard(2, "isolated")
        store = history.get_history()
        for names in shards.values():  # the client knows every shard
            for name in names:
                await store.append(conversation=name, kind="k", message_id="before", payload_json="{}")
        await store.read({name: 0 for names in shards.values() for name in names})  # its script loaded everywhere
        doomed = layout.primaries()[0]
        replica = layout.kill_primary(doomed)

        async def batch(message_id: str, *, after_turns: int = 0) -> dict[tuple[int, str], object]:
            for _ in range(after_turns):  # sent while the batch before it is in flight
                await asyncio.sleep(0)
            asked = [(port, name) for port, names in shards.items() for name in names]
            answers = await asyncio.gather(*(store.append(conversation=name, kind="k", message_id=message_id,
                                                          payload_json="{}") for _, name in asked),
                                           return_exceptions=True)
            return dict(zip(asked, answers))

        for number in range(ROUNDS):
            for answers in await asyncio.gather(batch(f"a-{number}"), batch(f"b-{number}", after_turns=2)):
                for (port, name), answer in answers.items():
                    if port == doomed:
                        assert isinstance(answer, RedisError), (name, answer)
                    else:
                        assert isinstance(answer, history.Appended) and not answer.duplicate, (number, name, answer)

        # Each healthy conversation holds each of its events once: nothing was sent twice.
        healthy = [name for port, names in shards.items() if port != doomed for name in names]
        replay = await store.read({name: 0 for name in healthy})
        for name in healthy:
            stored = [event for event in replay.events if event.conversation == name]
            assert len(stored) == 1 + 2 * ROUNDS, (name, len(stored))

        layout.command(replica, "CLUSTER", "FAILOVER", "TAKEOVER")
        await asyncio.to_thread(layout.wait_for_failover, doomed, replica)
        for name in shards[doomed]:
            try:
                appended = await store.append(conversation=name, kind="k", message_id="after", payload_json="{}")
            except RedisError:  # sent where the client last saw the shard's primary: it learns the layout again
                appended = await store.append(conversation=name, kind="k", message_id="after", payload_json="{}")
            assert not appended.duplicate
