"""Appends confirmed on replicas (``REDIS_ACK_REPLICAS``): a Redis ``WAIT`` after them, on their connection.

Redis replicates asynchronously: a primary that fails loses whatever it had
not yet sent its replicas, and the replica promoted in its place never had
those events, though their pushes were acknowledged (Pub/Sub will not send
them again). ``WAIT <replicas> <timeout>`` blocks the connection until that
many replicas acknowledged every write the connection made so far, or the
timeout passes, and says how many did. It counts only its own connection's
writes, so it goes in the pipeline that carries the appends, after them: still
one write and one read per batch of appends.

On a Redis Cluster redis-py's pipeline sends each node its share of the
commands, in their order, over one connection to that node: a ``WAIT``
addressed to each node the appends went to (``target_nodes``) follows them on
that connection. An append redirected elsewhere (MOVED, a slot migrating) ran
on another connection that no ``WAIT`` covered: it counts as not confirmed. So
does one redirected by ``ASK`` or ``TRYAGAIN`` (a slot half-moved): redis-py
would send it again after the pipeline, its ``WAIT`` included, had run, and
the owner's ``WAIT`` says nothing of a write made at the importing primary, so
it is sent again here (``redirected``) and answered ``ReplicasBehind`` whatever
its outcome: the redelivery is a duplicate, confirmed once the slot has moved.

An append found a duplicate (a redelivery) is confirmed the same way: the copy
stored by the first delivery may not have reached a replica yet, and the
duplicate's call writes too (it renews the sequence's expiry), so a ``WAIT``
after it covers the first copy's writes as well.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError, TryAgainError

logger = logging.getLogger(__name__)


class ReplicasBehind(Exception):
    """The event is stored on the primary, but fewer replicas than ``REDIS_ACK_REPLICAS`` confirmed it in time."""

    def __init__(self, confirmed: int | None, wanted: int, timeout_ms: int) -> None:
        self.confirmed, self.wanted, self.timeout_ms = confirmed, wanted, timeout_ms
        seen = "no answer from WAIT" if confirmed is None else f"{confirmed} of {wanted} replicas"
        super().__init__(f"stored on the primary, not confirmed on its replicas ({seen} within {timeout_ms} ms)")


def wanted() -> int:
    """How many replicas must confirm an append before its push is acknowledged (0: none asked)."""
    return settings.REDIS_ACK_REPLICAS


@dataclass
class Waits:
    """The ``WAIT`` commands added to a pipeline after ``count`` appends, and which one covers each append."""

    count: int
    wanted: int
    timeout_ms: int
    # Per append: the index of its WAIT's reply among the pipeline's replies, and the node it was sent to
    # (None on a single Redis).
    covering: list[int]
    nodes: list

    def judge(self, client, keys: Sequence[str], replies: list) -> list:
        """The appends' replies, each one its WAIT found short replaced by ``ReplicasBehind``."""
        judged = list(replies[:self.count])
        for i, reply in enumerate(judged):
            if isinstance(reply, Exception):
                continue
            answer = replies[self.covering[i]]
            confirmed = None if isinstance(answer, Exception) else int(answer)
            moved = self.nodes[i] is not None and _owner(client, keys[i]) != self.nodes[i].name
            if confirmed is None or confirmed < self.wanted or moved:
                judged[i] = ReplicasBehind(confirmed, self.wanted, self.timeout_ms)
        return judged


def single_wait(count: int) -> tuple[tuple, Waits]:
    """The WAIT to send after ``count`` appends on a single Redis's connection, and the ``Waits`` judging them."""
    replicas, timeout_ms = wanted(), settings.REDIS_ACK_REPLICAS_TIMEOUT_MS
    return ("WAIT", replicas, timeout_ms), Waits(count, replicas, timeout_ms, [count] * count, [None] * count)


async def add_waits(client, pipeline, keys: Sequence[str]) -> Waits:
    """Add to ``pipeline`` (whose commands so far are appends, one per key of ``keys``) the WAITs confirming
    them: one at the end on a single Redis, one per node on a cluster."""
    if not isinstance(client, RedisCluster):
        wait, waits = single_wait(len(keys))
        pipeline.execute_command(*wait)
        return waits
    count, replicas, timeout_ms = len(keys), wanted(), settings.REDIS_ACK_REPLICAS_TIMEOUT_MS
    if client._initialize:
        await client.initialize()  # the node owning each key is known only once the client learned the cluster
    nodes = [_node(client, key) for key in keys]
    waits: dict[str, int] = {}
    for node in nodes:
        if node.name not in waits:
            waits[node.name] = count + len(waits)
            pipeline.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
    return Waits(count, replicas, timeout_ms, [waits[node.name] for node in nodes], nodes)


async def redirected(client: RedisCluster, commands: Sequence[tuple], judged: list, waits: Waits) -> list:
    """``judged`` (a cluster pipeline's appends, run without redis-py following redirections) with each append
    Redis redirected run again through ``client`` (which follows MOVED, ASK and TRYAGAIN), stored but not
    confirmed: no ``WAIT`` followed it where it ran."""
    for i, reply in enumerate(judged):
        if isinstance(reply, (AskError, MovedError, TryAgainError)):
            try:
                await client.execute_command(*commands[i])
            except Exception as error:
                judged[i] = error
            else:
                judged[i] = ReplicasBehind(None, waits.wanted, waits.timeout_ms)
    return judged


def _node(client: RedisCluster, key: str):
    return client.get_node_from_key(key)


def _owner(client: RedisCluster, key: str) -> str | None:
    """The name of the node ``key``'s slot is known to live on now; None when the client lost track of it (its
    map is being learnt again after a failure)."""
    try:
        return _node(client, key).name
    except (RedisError, RedisClusterException):
        return None


async def warn_if_short(client) -> None:
    """Log a WARNING when a primary has fewer replicas connected than ``REDIS_ACK_REPLICAS`` asks for: every push
    it stores would be refused until they come back. Readiness does not depend on it: an instance taken out of
    service would not bring a replica back, and Pub/Sub keeps the events while pushes are refused."""
    if not wanted():
        return
    if isinstance(client, RedisCluster):
        found = await client.info("replication", target_nodes=RedisCluster.PRIMARIES)
        nodes = {name: info for name, info in found.items() if isinstance(info, dict)}
    else:
        nodes = {"the primary": await client.info("replication")}
    for name, info in sorted(nodes.items()):
        connected = int(info.get("connected_slaves", 0))
        if connected < wanted():
            logger.warning("REDIS_ACK_REPLICAS is %d but %s has %d replica(s) connected: every push stored there is "
                           "answered 503 until enough replicas are back", wanted(), name, connected)
