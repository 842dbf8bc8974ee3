"""A Redis connection kept for one caller's commands, written and read without redis-py's pipeline machinery.

On the interceptor's hot path a push is one Redis command: redis-py's pipeline around it (the blocking pool's
condition and timeout, the retry wrapper, the pipeline object and its reset, and ``asyncio.wait_for``, which in
Python 3.11 starts a task for each write) cost about a third of a paced push's CPU (docs/performance.md,
"Scenario c at 1,000 desktops"). A ``Line`` holds one connection of the client's pool for good (the client's
close closes it) and runs a list of commands on it, one at a time: one write, their replies read in order, one
timer for the whole exchange. Commands are of str, bytes and int arguments only. Its owner sends elsewhere (a
pooled pipeline) while it is ``busy``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, ResponseError, TimeoutError


class Line:
    """One connection of ``client``'s, for commands run one list at a time; ``timeout``: seconds for a whole
    exchange (connecting, writing, reading every reply)."""

    def __init__(self, client: Redis, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self.busy = False

    async def run(self, commands: Sequence[tuple]) -> list:
        """The replies to ``commands``, in order, an error reply as its ``ResponseError``. Redis unreachable or
        slower than the timeout: ``ConnectionError`` or ``TimeoutError`` for all of them, after one more try on
        a new connection (as the client's own retry: an idle connection dropped, a failover)."""
        self.busy = True
        try:
            try:
                return await self._exchange(commands)
            except (ConnectionError, TimeoutError):
                return await self._exchange(commands)
        finally:
            self.busy = False

    async def _exchange(self, commands: Sequence[tuple]) -> list:
        connection = self._connection
        if connection is None:
            # Taken and never given back: the pool's other connections serve everything else, and the client's
            # close disconnects this one with them.
            connection = self._connection = await self._client.connection_pool.get_connection()
        # hiredis packs a command in about a tenth of the time redis-py's own packer takes, byte for byte the
        # same for the str and int arguments given here (redis-py packs in Python on its asyncio connections).
        packed = b"".join([hiredis.pack_command(command) for command in commands])
        try:
            async with asyncio.timeout(self._timeout):
                if not connection.is_connected:
                    await connection.connect()
                # Written here rather than by send_packed_command, which wraps each write in its own
                # wait_for (a task per write): this exchange's timer bounds the write too.
                writer = connection._writer
                writer.write(packed)
                await writer.drain()
                replies = []
                for _ in commands:
                    try:
                        replies.append(await connection.read_response(timeout=math.inf))
                    except ResponseError as error:  # an error reply: the connection is fine, read on
                        replies.append(error)
                return replies
        except asyncio.TimeoutError:
            await connection.disconnect(nowait=True)  # replies may still come: never read them as another's
            raise TimeoutError(f"Timeout after {self._timeout}s talking to Redis") from None
        except OSError as error:
            await connection.disconnect(nowait=True)
            raise ConnectionError(f"Error talking to Redis: {error}") from error
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
