"""Every connection of one Redis Cluster pub/sub read at once, their messages handed on in one line.

redis-py's cluster pub/sub holds a connection per primary for the sharded channels (its
``node_pubsub_mapping``) and one more for classic channels and patterns. Its ``get_sharded_message`` reads
them in turn, waiting on each quiet one, so a busy primary is read only between the others' waits. Here each
connection has a task of its own that waits on it with no timeout and puts what it reads in a bounded inbox,
which the subscription's reader takes from: a message is read as soon as it arrives on any primary, and an
idle pub/sub wakes nothing. A channel lives on one primary, so its messages keep their order.

A sharded read still goes through ``get_sharded_message`` (for that primary only), which keeps redis-py's
books: the channels confirmed unsubscribed, and a primary's pub/sub closed once it holds none. A task stops
quietly when its pub/sub is no longer the primary's; an error ends it and is handed on in its turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub

# Messages read but not yet taken by the reader. Past it a connection's task stops reading, so what Redis sends
# waits in the socket and in Redis's output buffer for the client (whose limit is Redis's to enforce), as it
# would for a reader reading each connection itself.
INBOX_MESSAGES = 256
_CLASSIC = ""  # the key of the classic channels' connection; primaries are "host:port"


class ClusterReads:
    """The tasks reading a ``ClusterPubSub``'s connections, and the inbox they fill."""

    def __init__(self, pubsub: ClusterPubSub) -> None:
        self._pubsub = pubsub
        self._inbox: asyncio.Queue[tuple[dict | None, BaseException | None]] = asyncio.Queue(INBOX_MESSAGES)
        self._readers: dict[str, tuple[PubSub, asyncio.Task]] = {}
        self._tasks: set[asyncio.Task] = set()

    def follow(self) -> None:
        """Read each connection the pub/sub has made that no task reads yet (a new primary's, a new classic
        one, or one whose task has ended)."""
        connections: dict[str, PubSub] = dict(self._pubsub.node_pubsub_mapping)
        connections[_CLASSIC] = self._pubsub
        for name, pubsub in connections.items():
            if pubsub.connection is None:
                continue  # none yet (redis-py lists a new primary's pub/sub before it connects), or closed
            current = self._readers.get(name)
            if current is not None and current[0] is pubsub and not current[1].done():
                continue
            task = asyncio.create_task(self._read(name, pubsub))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._readers[name] = (pubsub, task)

    async def get(self, deadline: float) -> tuple[dict | None, BaseException | None] | None:
        """The next of: ``(message, None)``; ``(None, error)`` for the error that ended a connection's task;
        ``(None, None)`` when a task stopped because redis-py closed its pub/sub. None at the loop's
        ``deadline`` with nothing read."""
        try:
            return self._inbox.get_nowait()
        except asyncio.QueueEmpty:
            pass
        try:
            async with asyncio.timeout_at(deadline):
                return await self._inbox.get()
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        """Stop every task (before the pub/sub is closed: none then reads a connection being closed)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._readers.clear()

    def _current(self, name: str, pubsub: PubSub) -> bool:
        if name == _CLASSIC:
            return pubsub.connection is not None
        return self._pubsub.node_pubsub_mapping.get(name) is pubsub

    async def _read(self, name: str, pubsub: PubSub) -> None:
        try:
            node = None if name == _CLASSIC else self._node(name)
            # Checked before each read, with no wait between the check and the read's choice of connection
            # (``get_sharded_message`` reads the primary's pub/sub now): no two tasks ever read one connection.
            while self._current(name, pubsub):
                if node is None:
                    message = await pubsub.get_message(timeout=None)
                else:
                    message = await self._pubsub.get_sharded_message(timeout=None, target_node=node)
                if message is not None:  # (None: a health check's reply)
                    await self._inbox.put((message, None))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._inbox.put((None, error))
            return
        await self._inbox.put((None, None))

    def _node(self, name: str) -> Any:
        node = self._pubsub.cluster.get_node(node_name=name)
        if node is None:
            # Gone from the client's layout of the cluster (a failover): its subscriptions are to be made again.
            raise RuntimeError(f"primary {name} is no longer in the cluster's layout")
        return node
