"""``MONITOR`` on several Redis nodes at once, for tests that count the commands each node was sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from redis.asyncio import Redis


@contextlib.asynccontextmanager
async def monitoring(nodes: Sequence[Any], keep: Callable[[int, dict], None]) -> AsyncIterator[None]:
    """Until the block ends, ``keep(i, command)`` for each command a client sent ``nodes[i]`` (anything with
    ``host`` and ``port``; a redis-py monitor's dict per command: ``command``, ``client_port``, ...). Commands
    a script ran are left out. Every node is monitored before the block starts (its ``MONITOR`` answered);
    a command is reported once it ran, which may be after its client had the reply."""
    clients = [Redis(host=node.host, port=node.port, decode_responses=True) for node in nodes]
    watching: list[tuple[Any, asyncio.Task]] = []
    try:
        for index, client in enumerate(clients):
            context = client.monitor()
            watcher = await context.__aenter__()

            async def record(index: int = index, watcher: Any = watcher) -> None:
                async for command in watcher.listen():
                    if command.get("client_type") != "lua":
                        keep(index, command)

            watching.append((context, asyncio.create_task(record())))
        yield
    finally:
        for context, task in watching:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await context.__aexit__(None, None, None)
        for client in clients:
            await client.aclose()
